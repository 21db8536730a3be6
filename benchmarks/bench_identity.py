"""Identity backends: frames/s on the same real frames, and the same/different-person similarity distributions.

    .venv/bin/python -m benchmarks.bench_identity [--frames 40] [--repeat 3] [--insightface-pack DIR] [--distributions]

Speed: the first ``--frames`` frames of the shared speaker clip (976x528). ``faces`` is the shared dlib detection +
68 landmarks (``metrics.faces``, the reference measured in the same run); each dlib-based backend's embedding cost is
timed on the faces found, so ``backend fps`` = frames / (faces time + embedding time), and the ratio column is the
backend's embedding cost relative to the detection it shares. ArcFace (SCRFD + ArcFace in one pass) runs only when a
real insightface pack directory is given. Medians of --repeat; torch/OpenCV at 1 thread.

Distributions (``--distributions``): real media only. Same person = each Hallo3 portrait vs 6 mild augmentations of
itself (+-5 % scale, +-8 px shift, +-15 % brightness, JPEG 60-90), and the speaker clip's faces against each other
(every 6th frame: a turning, tilting, singing head). Different person = portrait vs portrait (3 Hallo3 portraits +
skimage's astronaut) and portrait vs every speaker face. Prints min / p10 / mean / p90 / max of the cosine and the
ROC AUC of same vs different, per backend; these are the figures behind ``FACENET_THRESHOLD``.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from metrics.faces import FaceDetector
from metrics.identity import ArcFaceBackend, DlibResNetBackend, FaceNetBackend
from tests.metrics.face_fixtures import (
    augment,
    dlib_resnet,
    facenet_graph,
    landmarks_68,
    read_rgb,
    speaker_frames,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SPEAKER = DATA / "talking" / "speaker.avi"
PORTRAITS = [DATA / "portraits" / f"hallo3_{n}.jpg" for n in ("0001", "0003", "0008")]


def _median_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_speed(n_frames: int, repeat: int, pack: Path | None) -> None:
    frames = speaker_frames(str(SPEAKER))[:n_frames]
    detector = FaceDetector(landmarks_68())
    t_faces = _median_time(lambda: detector.track(frames), repeat)
    track = detector.track(frames)
    faces = [(f, face) for f, face in zip(frames, track.faces, strict=True) if face is not None]
    print(f"frames: {len(frames)} of {SPEAKER.name} ({frames.shape[2]}x{frames.shape[1]}), faces found: {len(faces)}")
    print(f"{'stage':28s} {'s/frame':>9s} {'frames/s':>9s} {'x faces':>8s}")
    print(f"{'faces (dlib HOG + 68 lm)':28s} {t_faces / len(frames):9.4f} {len(frames) / t_faces:9.2f} {1.0:8.2f}")
    backends = {
        "facenet": FaceNetBackend(landmarks_68(), facenet_graph()),
        "dlib": DlibResNetBackend(landmarks_68(), dlib_resnet()),
    }
    for name, backend in backends.items():
        t_emb = _median_time(lambda b=backend: [b.embed_face(f, face) for f, face in faces], repeat)
        total = t_faces + t_emb
        print(
            f"{name + ' (faces + embedding)':28s} {total / len(frames):9.4f} {len(frames) / total:9.2f} "
            f"{t_emb / t_faces:8.2f}"
        )
    if pack is None:
        print(f"{'arcface':28s} not run: pass --insightface-pack DIR (e.g. <root>/models/buffalo_l)")
    else:
        arc = ArcFaceBackend(pack)
        t_arc = _median_time(lambda: arc.embed_frames(frames), repeat)
        print(f"{'arcface (' + pack.name + ')':28s} {t_arc / len(frames):9.4f} {len(frames) / t_arc:9.2f} {'-':>8s}")


def _auc(same: np.ndarray, diff: np.ndarray) -> float:
    """P(same > diff) over all pairs (ties count half): the ROC AUC."""
    s = same[:, None]
    d = diff[None, :]
    return float(np.mean((s > d) + 0.5 * (s == d)))


def _stats(x: np.ndarray) -> str:
    return (
        f"n={len(x):3d} min={x.min():6.3f} p10={np.percentile(x, 10):6.3f} mean={x.mean():6.3f} "
        f"p90={np.percentile(x, 90):6.3f} max={x.max():6.3f}"
    )


def bench_distributions() -> None:
    import skimage.data

    detector = FaceDetector(landmarks_68())
    people: dict[str, list] = {}
    for i, p in enumerate(PORTRAITS):
        img = read_rgb(p)
        people[f"portrait{i}"] = [(im, detector.detect_image(im)) for im in [img] + [augment(img, k) for k in range(6)]]
    astro = skimage.data.astronaut()
    people["astronaut"] = [(astro, detector.detect_image(astro))]
    frames = speaker_frames(str(SPEAKER))[::6]
    track = detector.track(frames)
    speaker = [(f, face) for f, face in zip(frames, track.faces, strict=True) if face is not None]
    print(f"speaker: {len(speaker)} faces in {len(frames)} frames (every 6th frame)")
    backends = [FaceNetBackend(landmarks_68(), facenet_graph()), DlibResNetBackend(landmarks_68(), dlib_resnet())]
    for b in backends:
        emb = {k: [b.embed_face(im, f) for im, f in v if f is not None] for k, v in people.items()}
        spk = np.array([b.embed_face(im, f) for im, f in speaker])
        unit = {k: [e / np.linalg.norm(e) for e in v] for k, v in emb.items()}
        spk_u = spk / np.linalg.norm(spk, axis=1, keepdims=True)
        refs = [k for k in unit if k.startswith("portrait")]
        aug = np.array([unit[k][0] @ e for k in refs for e in unit[k][1:]])
        g = spk_u @ spk_u.T
        spk_same = g[np.triu_indices(len(spk_u), 1)]
        pp = np.array([unit[a][0] @ unit[c][0] for a, c in itertools.combinations(list(unit), 2)])
        ps = np.array([unit[k][0] @ s for k in unit for s in spk_u])
        same = np.concatenate([aug, spk_same])
        diff = np.concatenate([pp, ps])
        print(f"\n{b.name}: threshold {b.threshold.metric} {b.threshold.value}  ({b.threshold.source[:60]}...)")
        print(f"  same: portrait vs augmented self  {_stats(aug)}")
        print(f"  same: speaker face vs speaker face {_stats(spk_same)}")
        print(f"  diff: portrait vs portrait         {_stats(pp)}")
        print(f"  diff: portrait vs speaker          {_stats(ps)}")
        print(f"  ROC AUC (cosine) same vs diff: {_auc(same, diff):.3f}")
        if b.name == "dlib":
            d_aug = np.array([np.linalg.norm(emb[k][0] - e) for k in refs for e in emb[k][1:]])
            d_spk = np.linalg.norm(spk[:, None] - spk[None], axis=-1)[np.triu_indices(len(spk), 1)]
            d_diff = np.array([np.linalg.norm(emb[k][0] - s) for k in emb for s in spk])
            d_pp = np.array([np.linalg.norm(emb[a][0] - emb[c][0]) for a, c in itertools.combinations(list(emb), 2)])
            print(f"  euclidean same (aug / speaker): max {d_aug.max():.3f} / {d_spk.max():.3f}; ", end="")
            print(f"diff (portraits / vs speaker): min {d_pp.min():.3f} / {d_diff.min():.3f}; dlib rule < 0.6")
            same_ok = np.mean(np.concatenate([d_aug, d_spk]) < 0.6)
            diff_ok = np.mean(np.concatenate([d_pp, d_diff]) >= 0.6)
            print(f"  dlib rule: same pairs called same {same_ok:.0%}, different pairs called different {diff_ok:.0%}")
        else:
            t = b.threshold.value
            print(f"  at {t}: same pairs called same {np.mean(same >= t):.0%}, different called different ", end="")
            print(f"{np.mean(diff < t):.0%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--insightface-pack", type=Path, default=None)
    ap.add_argument("--distributions", action="store_true")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    if not SPEAKER.is_file():
        raise SystemExit(f"test media absent: {SPEAKER}")
    bench_speed(args.frames, args.repeat, args.insightface_pack)
    if args.distributions:
        bench_distributions()


if __name__ == "__main__":
    main()
