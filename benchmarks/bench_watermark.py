"""Watermark speed and robustness: our RivaGAN pipeline vs the naive per-frame invisible-watermark loop.

    .venv/bin/python -m benchmarks.bench_watermark [--frames 48] [--naive-frames 3] [--threads 2]

For 512x512 and 1280x720 clips made from the project's real test media, measures in the same run:
- ours: ``provenance.watermark.embed`` + ``decode`` (processing resolution, keyframes, batched onnxruntime, clip
  subset decode) — seconds, clip frames per second, PSNR, and after H.264 CRF 23 (``gate.media``) whether the exact
  payload comes back, with the mean per-frame bit accuracy;
- naive: ``WatermarkEncoder().encode(img_bgr, "rivaGan")`` / ``WatermarkDecoder.decode`` on every frame (a few
  frames only: seconds each), its PSNR and its per-frame and majority-vote bit accuracy after the same CRF 23;
and prints the speed-up (naive seconds per frame for embed+decode / ours). The machine may be shared: both sides
are measured back to back, so the ratio is the figure to read.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from gate import media
from provenance import watermark

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PAYLOAD = bytes.fromhex("0123456789abcdef")[: watermark.PAYLOAD_BYTES]


def _clip(size: tuple[int, int], n: int) -> np.ndarray:
    """Real content at (w, h): the speaker clip (moving head), resized; a portrait if the clip is absent."""
    w, h = size
    speaker = DATA / "talking" / "speaker.avi"
    if speaker.exists():
        frames = media.read_video(speaker, max_frames=n).frames
    else:
        img = media.read_image(DATA / "portraits" / "hallo3_0001.jpg")
        frames = np.stack([np.roll(img, t // 3, axis=1) for t in range(n)])
    return np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b) ** 2)))


def _crf23(frames: np.ndarray, tmp: Path) -> np.ndarray:
    return media.read_video(media.write_mp4(tmp / "bench.mp4", frames, 25, crf=23)).frames


def bench_ours(frames: np.ndarray, tmp: Path, threads: int) -> dict:
    cfg = watermark.WatermarkConfig(threads=threads)
    t0 = time.perf_counter()
    marked = watermark.embed(frames, PAYLOAD, cfg)
    t_embed = time.perf_counter() - t0
    t0 = time.perf_counter()
    clean_read = watermark.decode(marked, cfg)
    t_decode = time.perf_counter() - t0
    after = watermark.decode(_crf23(marked, tmp), cfg)
    n = len(frames)
    return {
        "embed_s_per_frame": t_embed / n,
        "decode_s_per_frame": t_decode / n,
        "fps": n / (t_embed + t_decode),
        "psnr": _psnr(marked, frames),
        "exact_clean": clean_read.payload == PAYLOAD,
        "exact_crf23": after.payload == PAYLOAD,
        "bit_acc_crf23": float(np.mean(after.bit_accuracy)) if after.bit_accuracy else float("nan"),
        "frames_decoded": clean_read.frames_decoded,
    }


def bench_naive(frames: np.ndarray, tmp: Path) -> dict:
    from imwatermark import WatermarkDecoder, WatermarkEncoder

    bits = np.unpackbits(np.frombuffer(PAYLOAD[:4], np.uint8)).tolist()
    enc = WatermarkEncoder()
    enc.set_watermark("bits", bits)
    WatermarkEncoder.loadModel()
    dec = WatermarkDecoder("bits", 32)
    t0 = time.perf_counter()
    marked = np.stack([enc.encode(np.ascontiguousarray(f[..., ::-1]), "rivaGan")[..., ::-1] for f in frames])
    t_embed = time.perf_counter() - t0
    t0 = time.perf_counter()
    for f in marked:
        dec.decode(np.ascontiguousarray(f[..., ::-1]), "rivaGan")
    t_decode = time.perf_counter() - t0
    coded = _crf23(np.ascontiguousarray(marked), tmp)
    read = np.array([dec.decode(np.ascontiguousarray(f[..., ::-1]), "rivaGan") for f in coded])
    truth = np.array(bits)
    n = len(frames)
    return {
        "embed_s_per_frame": t_embed / n,
        "decode_s_per_frame": t_decode / n,
        "fps": n / (t_embed + t_decode),
        "psnr": _psnr(marked, frames),
        "bit_acc_crf23": float((read == truth).mean()),
        "vote_acc_crf23": float(((read.mean(0) > 0.5) == truth).mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=48, help="clip length for our method")
    ap.add_argument("--naive-frames", type=int, default=3, help="frames through the naive per-frame loop")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    print(f"method {watermark.METHOD}, config {watermark.WatermarkConfig(threads=args.threads).to_dict()}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in ((512, 512), (1280, 720)):
            frames = _clip(size, max(args.frames, args.naive_frames))
            ours = bench_ours(frames[: args.frames], Path(tmp), args.threads)
            naive = bench_naive(frames[: args.naive_frames], Path(tmp))
            per_ours = ours["embed_s_per_frame"] + ours["decode_s_per_frame"]
            per_naive = naive["embed_s_per_frame"] + naive["decode_s_per_frame"]
            print(f"\n{size[0]}x{size[1]}  ours: {args.frames} frames   naive: {args.naive_frames} frames")
            print(
                f"  ours : embed {ours['embed_s_per_frame']:.3f} s/f, decode {ours['decode_s_per_frame']:.3f} s/f "
                f"({ours['frames_decoded']} decoded), {ours['fps']:.2f} frames/s, PSNR {ours['psnr']:.1f} dB, "
                f"CRF23 exact payload {ours['exact_crf23']} (bit acc {ours['bit_acc_crf23']:.3f}), "
                f"clean exact {ours['exact_clean']}"
            )
            print(
                f"  naive: embed {naive['embed_s_per_frame']:.3f} s/f, decode {naive['decode_s_per_frame']:.3f} s/f, "
                f"{naive['fps']:.2f} frames/s, PSNR {naive['psnr']:.1f} dB, CRF23 bit acc {naive['bit_acc_crf23']:.3f} "
                f"(vote {naive['vote_acc_crf23']:.3f})"
            )
            print(f"  speed-up (embed+decode per frame): {per_naive / per_ours:.1f}x")


if __name__ == "__main__":
    main()
