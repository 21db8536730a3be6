"""Run every benchmark, one after the other: ``python -m benchmarks [name ...]`` (``make bench``).

Each benchmark prints its own figures and the ratio against the reference it measures in the same run. Run one alone
with ``python -m benchmarks.bench_<name> --help`` for its options. Timings on a shared or loaded machine are noisy:
the ratios, measured side by side, are the figures to compare.
"""

from __future__ import annotations

import runpy
import sys
import time

BENCHMARKS = ("watermark", "c2pa", "lipsync", "fvd", "identity", "transformer", "generator", "evaluate")


def main(argv: list[str]) -> int:
    chosen = argv or list(BENCHMARKS)
    unknown = [n for n in chosen if n not in BENCHMARKS]
    if unknown:
        print(f"benchmarks: unknown {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    for name in chosen:
        print(f"\n===== benchmarks.bench_{name} =====", flush=True)
        t0 = time.perf_counter()
        sys.argv = [f"benchmarks.bench_{name}"]
        try:
            runpy.run_module(f"benchmarks.bench_{name}", run_name="__main__")
        except SystemExit as exc:
            if exc.code not in (0, None):
                print(f"benchmarks.bench_{name} exited with {exc.code}", file=sys.stderr)
                return int(exc.code) if isinstance(exc.code, int) else 1
        print(f"===== {name}: {time.perf_counter() - t0:.1f} s =====", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
