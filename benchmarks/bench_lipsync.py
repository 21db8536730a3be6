"""Sync-C/D on the speaker clip: metrics.lipsync vs the syncnet-python 0.2.3 pipeline, same fixture weights.

    .venv/bin/python -m benchmarks.bench_lipsync [--threads 2] [--clip PATH --wav PATH]

Both sides get the same seeded fixture weights in the real file formats (random SyncNet; an S3FD that reports one
stable 256 px box — see tests/metrics/lipsync_fixtures.py), so the numbers are meaningless as lip-sync scores but
follow the same arithmetic. The reference runs its own file pipeline (ffmpeg -r 25 re-encode, JPEG frames, S3FD per
frame, scenedetect on the file, XVID crops, JPEG re-extraction, evaluate); ours decodes the clip once with PyAV and
works in memory. Its time includes decoding. The two sets of numbers differ by what the reference's lossy re-encodes
do to the pixels (the parity tests show the arithmetic is the same on identical pixels); the difference is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from scipy.io import wavfile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "metrics"))  # the fixture-weight builders live with the tests

from lipsync_fixtures import detecting_s3fd, write_s3fd_fixture, write_syncnet_fixture  # noqa: E402

from metrics.lipsync import measure_lipsync  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "talking"


def decode(clip: Path) -> tuple[np.ndarray, float]:
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        return frames, float(stream.average_rate)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    rate, pcm = wavfile.read(path)
    if pcm.ndim == 2:
        pcm = pcm.mean(axis=1)
    scale = 32768.0 if pcm.dtype == np.int16 else 1.0
    return (pcm / scale).astype(np.float32), int(rate)


@contextlib.contextmanager
def silenced_fds():
    """Send fds 1 and 2 to /dev/null (the reference's ffmpeg children print their banners there)."""
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "wb") as null:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (ffmpeg), user + system."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_ours(clip: Path, wav: Path, weights: dict[str, Path]) -> tuple[float, float, dict[str, float]]:
    cpu = cpu_seconds()
    start = time.perf_counter()
    frames, fps = decode(clip)
    audio, rate = read_wav(wav)
    result = measure_lipsync(frames, fps, audio, rate, syncnet_weights=weights["syncnet"], s3fd_weights=weights["s3fd"])
    elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    if not result.measured:
        raise SystemExit(f"ours did not measure: {result.reason}")
    numbers = {
        "offset": float(result.offset),
        "conf": result.sync_c,
        "dist": result.sync_d,
        "tracks": len(result.tracks),
    }
    return elapsed, cpu, numbers


def run_reference(clip: Path, wav: Path, weights: dict[str, Path]) -> tuple[float, float, dict[str, float]]:
    from syncnet_python import SyncNetPipeline

    cpu = cpu_seconds()
    start = time.perf_counter()
    pipe = SyncNetPipeline(
        {"s3fd_weights": str(weights["s3fd"]), "syncnet_weights": str(weights["syncnet"])},
        device="cpu",
    )
    with silenced_fds():
        offsets, confs, _, best_conf, min_dist, _, _ = pipe.inference(str(clip), str(wav))
    elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    if not offsets:
        raise SystemExit("the reference pipeline found no face track")
    best = int(np.argmax(confs))
    return elapsed, cpu, {"offset": float(offsets[best]), "conf": best_conf, "dist": min_dist, "tracks": len(offsets)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=DATA / "speaker.avi")
    parser.add_argument("--wav", type=Path, default=DATA / "speaker.wav")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not args.clip.is_file() or not args.wav.is_file():
        raise SystemExit(f"test media absent: {args.clip} / {args.wav} (see ../shared/data/README.md)")
    torch.set_num_threads(args.threads)
    logging.disable(logging.INFO)
    with tempfile.TemporaryDirectory() as tmp:
        weights = {
            "syncnet": write_syncnet_fixture(Path(tmp) / "syncnet_v2.model", seed=0),
            "s3fd": write_s3fd_fixture(Path(tmp) / "sfd_face.pth", detecting_s3fd(seed=0)),
        }
        ref_s, ref_cpu, ref = run_reference(args.clip, args.wav, weights)
        ours_s, ours_cpu, ours = run_ours(args.clip, args.wav, weights)
    print(f"clip: {args.clip.name}, torch threads: {args.threads}, fixture weights (random SyncNet, one-box S3FD)")
    print(f"{'':24}{'wall s':>9}{'cpu s':>9}{'offset':>8}{'Sync-C':>10}{'Sync-D':>10}{'tracks':>8}")
    rows = (("syncnet-python 0.2.3", ref_s, ref_cpu, ref), ("metrics.lipsync", ours_s, ours_cpu, ours))
    for name, seconds, cpu, n in rows:
        print(f"{name:24}{seconds:9.1f}{cpu:9.1f}{n['offset']:8.0f}{n['conf']:10.4f}{n['dist']:10.4f}{n['tracks']:8d}")
    print(f"speed-up: {ref_s / ours_s:.2f}x wall, {ref_cpu / ours_cpu:.2f}x cpu (incl. ffmpeg children)")
    print(
        f"|delta| Sync-C {abs(ref['conf'] - ours['conf']):.4f}  Sync-D {abs(ref['dist'] - ours['dist']):.4f}  offset {abs(ref['offset'] - ours['offset']):.0f}"
    )


if __name__ == "__main__":
    main()
