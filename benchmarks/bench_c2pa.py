"""C2PA sign + verify throughput on a ~50 MB H.264 + AAC MP4, against whole-file sha256 measured in the same run.

    .venv/bin/python -m benchmarks.bench_c2pa [--mb 50] [--repeat 3]

Sign = ``provenance.c2pa.sign_mp4`` (ES256 development key, portrait + audio ingredients, thumbnails off,
c2pa-rs verify-after-sign on; turning it off measured no difference); verify = ``provenance.c2pa.read_manifest`` (full validation, BMFF hash of every byte,
trust anchors given). References in the same run: ``hashlib.sha256`` over the file (1 MiB reads), and a durable copy
(write + fsync: the I/O floor of any signer that writes a new file atomically, as ``sign_mp4`` does). The file is in the page
cache for every measurement (it was just written), so these are CPU figures, not disk figures. Medians of --repeat.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from gate.media import write_mp4
from provenance.c2pa import read_manifest, sign_mp4
from provenance.keys import DEV_ROOT_CERT, SignerConfig, init_dev_keys, load_signer
from reports.hashing import sha256_file

GOAL_MB_S = 300.0


def make_mp4(path: Path, target_mb: float) -> Path:
    """Noise frames at 720p, CRF 0 ultrafast (~1-2 MB a frame), with an AAC track, until about ``target_mb``."""
    rng = np.random.default_rng(0)
    probe = path.with_name("probe.mp4")
    write_mp4(probe, rng.integers(0, 256, (4, 720, 1280, 3), dtype=np.uint8), 25.0, crf=0, preset="ultrafast")
    per_frame = probe.stat().st_size / 4
    n = max(4, int(target_mb * 1e6 / per_frame))
    frames = (rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8) for _ in range(n))
    audio = (0.1 * np.sin(np.arange(int(16000 * n / 25)) * 0.03)).astype(np.float32)
    return write_mp4(path, frames, 25.0, audio, 16000, crf=0, preset="ultrafast")


def ingredients(d: Path) -> tuple[Path, Path]:
    png = d / "portrait.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (480, 480, 3), dtype=np.uint8)).save(png)
    wav = d / "speech.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((3000 * np.sin(np.arange(16000 * 5) * 0.07)).astype("<i2").tobytes())
    return png, wav


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def durable_copy(src: Path, dst: Path) -> None:
    """What any signer that writes a new file must at least do: copy it and fsync it (1 MiB blocks)."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(1 << 20):
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())


def median_seconds(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median wall and median CPU (user+sys) seconds: on a shared machine CPU time is the steadier figure."""
    walls, cpus = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), _cpu()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(_cpu() - c0)
    return statistics.median(walls), statistics.median(cpus)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=50.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-c2pa-") as tmp:
        d = Path(tmp)
        src = make_mp4(d / "src.mp4", args.mb)
        mb = src.stat().st_size / 1e6
        keys = init_dev_keys(d / "keys")
        signer = load_signer(SignerConfig.development_keys(keys.directory))
        root = (keys.directory / DEV_ROOT_CERT).read_bytes()
        png, wav = ingredients(d)
        signed = d / "signed.mp4"

        def sign() -> None:
            sign_mp4(
                src, signed, signer=signer, portrait=png, audio=wav, watermark_payload=b"\x01" * 8,
                gate_results={"decision": "pass"}, title="bench", watermark_method="bench",
            )  # fmt: skip

        def verify() -> None:
            report = read_manifest(signed, trust_anchors_pem=root)
            if report.state != "Trusted":
                raise RuntimeError(f"benchmark file did not verify: {report.state} {report.failure_codes}")

        sha256_file(src)  # warm the page cache
        t_sign = median_seconds(sign, args.repeat)
        t_verify = median_seconds(verify, args.repeat)
        t_sha = median_seconds(lambda: sha256_file(signed), args.repeat)
        t_copy = median_seconds(lambda: durable_copy(signed, d / "copy.mp4"), args.repeat)
        both = (t_sign[0] + t_verify[0], t_sign[1] + t_verify[1])
        rows = [
            ("sha256 (reference)", t_sha),
            ("copy+fsync (I/O floor)", t_copy),
            ("sign", t_sign),
            ("verify", t_verify),
            ("sign+verify", both),
        ]
        print(f"file: {mb:.1f} MB H.264+AAC MP4; median of {args.repeat}; wall and CPU (user+sys) seconds")
        print(f"{'step':<24}{'wall s':>9}{'MB/s':>8}{'x sha256':>10}{'cpu s':>9}{'MB/cpu-s':>10}{'x sha256':>10}")
        for name, (wall, cpu) in rows:
            print(
                f"{name:<24}{wall:>9.3f}{mb / wall:>8.0f}{t_sha[0] / wall:>10.2f}"
                f"{cpu:>9.3f}{mb / max(cpu, 1e-9):>10.0f}{t_sha[1] / max(cpu, 1e-9):>10.2f}"
            )
        for name, (wall, _) in rows[2:]:
            verdict = "meets" if mb / wall >= GOAL_MB_S else "misses"
            print(f"{name}: {mb / wall:.0f} MB/s wall {verdict} the {GOAL_MB_S:.0f} MB/s goal")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
