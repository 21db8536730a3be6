"""``evaluate`` throughput and driver memory: sequential vs ``--ray`` (a local cluster on this machine's cores).

    .venv/bin/python -m benchmarks.bench_evaluate [--cases 6] [--models puppet,still] [--workers 2] [--cpus 2]
                                                   [--checkpoints 3,6,12] [--fixed-payload] [--trace-alloc] [--fvd]

One suite of ``len(models) x cases`` (model, case) pairs on the small real inputs of the e2e tests (tests/talking.py:
the astronaut portrait, 2.4 s of espeak-ng speech, development keys, a consent record) is evaluated twice, each in a
fresh child process (so that each driver's memory is its own): sequentially (``gate.evaluate.evaluate``) and on a
local Ray cluster of ``--cpus`` CPUs with ``--workers`` producer actors (``gate.evaluate_ray``). For each it prints:

- wall seconds, cases per hour (including the Ray cluster's start-up, and from the first finished case on), the
  seconds to the first finished case;
- the driver's resident memory (VmRSS, its own heap RssAnon, shared RssShmem) and peak (VmHWM) after the
  ``--checkpoints``-th finished cases and after every case, and the peak's growth per finished case between the
  first and the last checkpoint, next to the size of one case's decoded frames (a driver that kept the frames of
  finished cases would grow by at least that much per case). RSS also grows with the allocator's caching and
  fragmentation; ``--trace-alloc`` adds what Python objects and numpy arrays really hold after each case
  (tracemalloc, after a collection) — flat means no finished case's frames are held;

then the ratios measured in this run (ray / sequential cases per hour) and the largest difference between the two
evaluations' per-video measurements (with random watermark payloads unless ``--fixed-payload``: the payload changes
the watermarked pixels, so the last digits of the measurements may differ between any two runs, Ray or not).
The machine may be shared: the two modes run back to back, the ratio is the figure to read.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def proc_status_mb() -> dict[str, float]:
    """This process's memory in MB from ``/proc/self/status`` (Linux): VmRSS (resident), VmHWM (peak resident),
    RssAnon (its own heap: frames it holds live here) and RssShmem (shared memory it has mapped, e.g. Ray's object
    store pages of results it has read)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssShmem"):
            out[key] = int(rest.split()[0]) / 1024
    return out


def held_mb() -> float:
    """What Python objects and numpy arrays still hold (tracemalloc's current traced size, after a collection), in
    MB: unlike RSS, allocator caching and fragmentation do not count."""
    import gc
    import tracemalloc

    gc.collect()
    return tracemalloc.get_traced_memory()[0] / 2**20


def suite_text(inputs: Any, models: list[str], cases: int, reference: Path | None) -> str:
    head = 'name = "bench"\npolicy = "offline"\n'
    if reference is not None:
        head += f'fvd_reference = "{reference}"\n'
    body = "".join(f'[models.{m}]\nbackend = "{m}"\n' for m in models)
    body += "".join(
        f'[[cases]]\nid = "c{i:03d}"\nportrait = "{inputs.portrait}"\naudio = "{inputs.audio}"\nseed = {i}\n'
        for i in range(cases)
    )
    return head + body


# --- the child: one evaluation, measured from inside its driver ------------------------------------------------------


def child(args: argparse.Namespace) -> int:
    from gate.evaluate import ProgressEvent, evaluate
    from gate.evaluate_ray import RaySettings
    from gate.suite import Suite

    suite = Suite.load(Path(args.suite))
    settings = RaySettings(num_cpus=args.cpus, workers=args.workers) if args.mode == "ray" else None
    trace: list[dict[str, float]] = []
    if args.trace_alloc:
        import tracemalloc

        tracemalloc.start()
    t0 = time.perf_counter()
    init_s = None
    if settings is not None:  # started here to time it; evaluate uses the running cluster (gate.evaluate_ray)
        import ray

        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="WARNING")
        init_s = time.perf_counter() - t0

    def on_progress(e: ProgressEvent) -> None:
        if e.kind == "case":
            m = proc_status_mb()
            trace.append(
                {
                    "done": e.done,
                    "seconds": time.perf_counter() - t0,
                    "rss_mb": m["VmRSS"],
                    "hwm_mb": m["VmHWM"],
                    "anon_mb": m["RssAnon"],
                    "shmem_mb": m["RssShmem"],
                    "held_mb": held_mb() if args.trace_alloc else math.nan,
                }
            )

    try:
        result = evaluate(suite, Path(args.out), ray=settings, progress=on_progress, fixed_payload=args.fixed_payload)
    finally:
        if settings is not None:
            ray.shutdown()
    wall = time.perf_counter() - t0
    rows = [{k: v for k, v in r.items() if k.startswith(("m_", "model", "case", "decision"))} for r in result.rows]
    fvd = {m: s["fvd"] for m, s in result.summary["models"].items()}
    Path(args.json_out).write_text(
        json.dumps({"wall": wall, "init_s": init_s, "trace": trace, "rows": rows, "fvd": fvd, "ran": result.ran}),
        encoding="utf-8",
    )
    return 0


# --- the parent: inputs, both modes, the figures ---------------------------------------------------------------------


def run_mode(mode: str, suite: Path, root: Path, env: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    from gate.evaluate import DB_NAME
    from tests.talking import with_consent

    out = root / f"out-{mode}"
    out.mkdir()
    with_consent(args.inputs, out / DB_NAME)
    report = root / f"{mode}.json"
    cmd = [sys.executable, "-m", "benchmarks.bench_evaluate", "--child", mode, "--suite", str(suite)]
    cmd += ["--out", str(out), "--json-out", str(report), "--cpus", str(args.cpus), "--workers", str(args.workers)]
    if args.fixed_payload:
        cmd.append("--fixed-payload")
    if args.trace_alloc:
        cmd.append("--trace-alloc")
    print(f"[{mode}] evaluating ...", flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"bench_evaluate: the {mode} evaluation failed (exit {proc.returncode})")
    return json.loads(report.read_text(encoding="utf-8"))


def at(trace: list[dict[str, float]], done: int) -> dict[str, float] | None:
    return next((t for t in trace if t["done"] == done), None)


def frame_mb(rows: list[dict[str, Any]]) -> float:
    """The decoded frames of one case in MB (``frame_count * height * width * 3``), the largest in the suite."""
    sizes = [
        r["m_frame_count"] * r["m_height"] * r["m_width"] * 3 / 2**20
        for r in rows
        if None not in (r.get("m_frame_count"), r.get("m_height"), r.get("m_width"))
    ]
    return max(sizes) if sizes else float("nan")


def largest_difference(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> tuple[float, str, int]:
    """The largest absolute difference between the same (model, case, metric) of two evaluations, where, and how
    many values were compared (a metric measured in one and not the other counts as infinite)."""
    ib = {(r["model"], r["case"]): r for r in b}
    worst, where, n = 0.0, "-", 0
    for ra in a:
        rb = ib[(ra["model"], ra["case"])]
        for k, va in ra.items():
            if not k.startswith("m_"):
                continue
            vb = rb.get(k)
            if va is None and vb is None:
                continue
            n += 1
            d = math.inf if (va is None or vb is None) else abs(float(va) - float(vb))
            if d > worst:
                worst, where = d, f"{ra['model']}/{ra['case']} {k[2:]}"
    return worst, where, n


def summarise(mode: str, r: dict[str, Any], checkpoints: list[int], frames: float) -> dict[str, float]:
    trace = r["trace"]
    n = len(trace)
    first = trace[0]["seconds"] if trace else float("nan")
    steady = (n - 1) / (trace[-1]["seconds"] - first) * 3600 if n > 1 else float("nan")
    line = f"{mode:>10}: {n} cases in {r['wall']:.1f} s = {n / r['wall'] * 3600:.0f} cases/h"
    line += f" (after the first case: {steady:.0f} cases/h; first case after {first:.1f} s"
    line += f", of which ray.init {r['init_s']:.1f} s)" if r.get("init_s") is not None else ")"
    print(line)
    points = [(c, at(trace, c)) for c in checkpoints if at(trace, c) is not None]
    for c, t in points:
        print(
            f"{'':>12}after {c:>3} cases: driver RSS {t['rss_mb']:7.1f} MB (own heap {t.get('anon_mb', math.nan):7.1f}"
            f" MB, shared {t.get('shmem_mb', math.nan):6.1f} MB), peak {t['hwm_mb']:7.1f} MB"
        )
    print(f"{'':>12}per case (finished: RSS / own heap / held by objects, MB):")
    for t in trace:
        held = t.get("held_mb", math.nan)
        print(f"{'':>14}{int(t['done']):>3}: {t['rss_mb']:7.1f} / {t.get('anon_mb', math.nan):7.1f} / {held:7.1f}")
    growth = float("nan")
    if len(points) >= 2:
        (c0, t0), (c1, t1) = points[0], points[-1]
        growth = (t1["hwm_mb"] - t0["hwm_mb"]) / (c1 - c0)
        print(
            f"{'':>12}peak growth {c0}->{c1} cases: {growth:+.2f} MB per case "
            f"(one case's decoded frames: {frames:.1f} MB)"
        )
    for key, what in (("anon_mb", "own heap"), ("held_mb", "held by objects")):
        steps = [b[key] - a[key] for a, b in itertools.pairwise(trace) if key in a and key in b]
        if steps and not any(math.isnan(x) for x in steps):
            print(
                f"{'':>12}{what}: median growth per finished case {statistics.median(steps):+.2f} MB "
                f"(largest single step {max(steps):+.1f} MB; a one-time load such as the next model's code shows as one step)"
            )
    return {"per_hour": n / r["wall"] * 3600, "steady": steady, "growth": growth}


def parent(args: argparse.Namespace) -> int:
    from tests.talking import make_inputs

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    checkpoints = sorted({int(x) for x in args.checkpoints.split(",")})
    with tempfile.TemporaryDirectory(prefix="bench-evaluate-") as tmp:
        root = Path(tmp)
        (root / "inputs").mkdir()
        args.inputs = make_inputs(root / "inputs")
        env = {**os.environ, **args.inputs.env}
        env.pop("GITHUB_STEP_SUMMARY", None)
        env.setdefault("HALLO3_GATE_PROVIDER", "hallo3-gate benchmark")  # the shipped policies' disclosures name one
        reference = None
        if args.fvd:
            sys.path.insert(0, str(ROOT / "tests" / "metrics"))
            from i3d_fixtures import i3d_checkpoint

            from gate.cli import main as cli

            env["HALLO3_GATE_WEIGHTS"] = str(i3d_checkpoint().parent)
            os.environ.update(env)
            reference = root / "ref.npz"
            if cli(["fvd-stats", str(args.inputs.talking), "--out", str(reference)]) != 0:
                raise SystemExit("bench_evaluate: could not build the FVD reference")
        suite = root / "suite.toml"
        suite.write_text(suite_text(args.inputs, models, args.cases, reference), encoding="utf-8")
        total = len(models) * args.cases
        print(
            f"suite: {len(models)} model(s) ({', '.join(models)}) x {args.cases} cases = {total} runs; "
            f"{os.cpu_count()} CPU(s) here; ray: {args.cpus} CPU(s), {args.workers} worker(s); "
            f"watermark payload {'fixed' if args.fixed_payload else 'random per run'}; FVD {'on' if args.fvd else 'off'}"
        )
        results = {mode: run_mode(mode, suite, root, env, args) for mode in ("sequential", "ray")}
    frames = frame_mb(results["sequential"]["rows"])
    figures = {mode: summarise(mode, r, checkpoints, frames) for mode, r in results.items()}
    seq, ray = figures["sequential"], figures["ray"]
    print(f"ratio ray / sequential cases per hour: {ray['per_hour'] / seq['per_hour']:.2f}x overall, ", end="")
    print(f"{ray['steady'] / seq['steady']:.2f}x after the first case")
    worst, where, n = largest_difference(results["sequential"]["rows"], results["ray"]["rows"])
    same_fvd = results["sequential"]["fvd"] == results["ray"]["fvd"]
    print(
        f"measurements sequential vs ray: largest |difference| {worst:.3g} ({where}) over {n} values; "
        f"FVD {'identical' if same_fvd else 'DIFFERENT'}: {results['ray']['fvd']}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.bench_evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=6, help="cases per model (default 6: 12 runs with two models)")
    p.add_argument("--models", default="puppet,still", help="backends, one model each (default puppet,still)")
    p.add_argument("--workers", type=int, default=2, help="Ray producer actors (default 2)")
    p.add_argument("--cpus", type=int, default=2, help="the local Ray cluster's CPUs (default 2)")
    p.add_argument("--checkpoints", default="3,6,12", help="finished-case counts to report memory at")
    p.add_argument("--fixed-payload", action="store_true", help="the test-only deterministic watermark payload")
    p.add_argument(
        "--trace-alloc",
        action="store_true",
        help="also trace the driver's live Python/numpy allocations (tracemalloc: slows the driver, so the "
        "throughput figures of such a run are not comparable)",
    )
    p.add_argument("--fvd", action="store_true", help="measure FVD (real I3D weights, fetched once into a cache)")
    p.add_argument("--child", choices=("sequential", "ray"), help=argparse.SUPPRESS)
    p.add_argument("--suite", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--json-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.cases < 1 or args.workers < 1 or args.cpus < 1:
        p.error("--cases, --workers and --cpus must be at least 1")
    if args.child:
        args.mode = args.child
        return child(args)
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
