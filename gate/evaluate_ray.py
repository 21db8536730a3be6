"""``hallo3-gate evaluate --ray``: the cases of a suite as rows of a Ray Dataset, produced in an actor pool, finished
on the driver.

The split of a case's work is ``gate.evaluate``'s (read its module docstring for the contract):

* the worker half, ``produce_case(suite, model, case, out_dir) -> ProducedCase``, runs in a pool of actors
  (``Dataset.map_batches`` with a callable class and ``ray.data.ActorPoolStrategy(size=workers)``, one case per
  batch). An actor lives for the whole evaluation: the weights the gate loads are cached per process (the I3D, lip-sync,
  face and watermark models in ``gate.measure``/``metrics``/``provenance``), so each actor loads them once, on its first
  case, and keeps them for every later case. It writes nothing under ``out_dir`` and nothing to the ledger; the encoded
  MP4 travels inside the result as bytes (``Produced.detached``), so a cluster without a shared filesystem works for
  the results.
* the driver half, ``finish_case(suite, model, case, produced, out_dir) -> CaseResult``, runs here, in the order the
  results arrive: the run directories, the ledger and ``progress.jsonl`` have one writer (this process). The FVD
  features of each case come back with it (float32 ``[clips, 400]``); the per-model FVD is the sum of their
  statistics (``gate.evaluate.set_fvd``), so the order of arrival does not change it.

What travels: each result row is ``{model, case, payload}`` where ``payload`` is the pickled ``ProducedCase`` (or the
pickled error the worker raised: the driver raises the same exception type with the worker's traceback as a note;
``Hallo3Error`` keeps its exit code). A worker that crashes outright is retried by Ray Data (the worker half has no
side effects, so a retry is safe).

Memory on the driver: one result at a time is unpickled (one clip's frames, ``T*H*W*3`` bytes) and dropped once its
case is finished; ``CaseResult`` holds the table row and the FVD features, never frames
(``benchmarks/bench_evaluate.py`` measures the driver's peak RSS as the number of cases grows).

Cluster: with ``RaySettings.address`` it connects to that cluster (the workers then need this package installed, its
configuration (the provider name, the weights folder) and the suite's input files under the same paths, and the
ledger's consent registry under the same locator — a PostgreSQL ledger for a real cluster; they never need the
signing key: ``produce_case`` prepares without it and the driver signs); without, it starts a local one on this
machine's cores (``num_cpus``) and forwards the gate's environment (``HALLO3_GATE_*``, ``XDG_CACHE_HOME``) to its
actors. A Ray
runtime already initialised in this process (``ray.is_initialized()``) is used as it is and left running.

CPUs: each actor asks for ``cpus_per_worker`` (default ``min(1, cluster CPUs / workers)``, so that ``workers`` actors
fit the cluster together), ``num_gpus_per_generator`` GPUs (a request the cluster cannot meet is refused up front
instead of waiting forever).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reports.errors import UsageError

if TYPE_CHECKING:
    from gate.evaluate import CaseResult, ProducedCase
    from gate.suite import Suite

ProduceCase = Callable[..., "ProducedCase"]  # (suite, model name, case id, out_dir) -> ProducedCase
FinishCase = Callable[..., "CaseResult"]  # (suite, model name, case id, produced, out_dir) -> CaseResult
OnResult = Callable[["CaseResult"], None]

FORWARDED_PREFIXES = ("HALLO3_GATE_",)
FORWARDED_NAMES = ("XDG_CACHE_HOME",)


@dataclass(frozen=True)
class RaySettings:
    """Where and how wide ``evaluate --ray`` runs.

    ``address``: an existing cluster (``--ray-address``), or None for a local one on this machine; ``num_cpus``: the
    local cluster's CPUs (None: all of this machine's); ``workers``: actors in the producer pool (``--workers``);
    ``num_gpus_per_generator``: GPUs each actor asks for (fractions allowed); ``cpus_per_worker``: CPUs each actor asks
    for (None: ``min(1, cluster CPUs / workers)``)."""

    address: str | None = None
    num_cpus: int | None = None
    workers: int = 2
    num_gpus_per_generator: float = 0.0
    cpus_per_worker: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise UsageError("--workers", "must be a whole number of at least 1", self.workers)
        if self.num_cpus is not None and (
            isinstance(self.num_cpus, bool) or not isinstance(self.num_cpus, int) or self.num_cpus < 1
        ):
            raise UsageError("ray num_cpus", "must be a whole number of at least 1", self.num_cpus)
        if self.address is not None and not str(self.address).strip():
            raise UsageError("--ray-address", "must name a Ray cluster (host:port or ray://host:port)", "empty")
        if self.address is not None and self.num_cpus is not None:
            raise UsageError("ray num_cpus", "applies only to a local cluster, not with --ray-address", self.num_cpus)
        if not _non_negative(self.num_gpus_per_generator):
            raise UsageError("ray num_gpus_per_generator", "must be a number >= 0", self.num_gpus_per_generator)
        if self.cpus_per_worker is not None and not (_non_negative(self.cpus_per_worker) and self.cpus_per_worker > 0):
            raise UsageError("ray cpus_per_worker", "must be a number > 0", self.cpus_per_worker)


def _non_negative(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and np.isfinite(x) and x >= 0


# --- what travels back from a worker --------------------------------------------------------------------------------


def pack_result(produced: ProducedCase) -> bytes:
    return pickle.dumps(("ok", produced), protocol=pickle.HIGHEST_PROTOCOL)


def pack_error(exc: BaseException) -> bytes:
    """The worker's exception as bytes: its type, args and attributes (so that a ``Hallo3Error`` comes back with its
    subject, rule, value and exit code), and its traceback text. An exception that cannot be pickled comes back as a
    ``RuntimeError`` naming it."""
    tb = "".join(traceback.format_exception(exc))
    try:
        return pickle.dumps(("error", type(exc), exc.args, dict(vars(exc)), tb), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # any pickling failure: the message still comes back
        message = f"{type(exc).__name__}: {exc}"
        return pickle.dumps(("error", RuntimeError, (message,), {}, tb), protocol=pickle.HIGHEST_PROTOCOL)


def unpack(payload: bytes) -> ProducedCase:
    """The ``ProducedCase`` inside ``payload``; a packed worker error is raised here (same type, the worker's
    traceback as a note)."""
    kind, *rest = pickle.loads(payload)  # bytes made by this module's own actors
    if kind == "ok":
        return rest[0]
    cls, args, attrs, tb = rest
    exc = cls.__new__(cls, *args)
    exc.args = tuple(args)
    exc.__dict__.update(attrs)
    exc.add_note(f"raised on a Ray worker:\n{tb}")
    raise exc


class Producer:
    """The actor of the pool: holds the suite and the worker half, produces one case per row."""

    def __init__(self, suite: Suite, out_dir: str, produce_case: ProduceCase) -> None:
        import gate.measure  # the modules (torch, the metric code) load once per actor
        import gate.run  # noqa: F401

        self.suite = suite
        self.out_dir = Path(out_dir)
        self.produce_case = produce_case

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        payloads = [self.produce_one(str(m), str(c)) for m, c in zip(batch["model"], batch["case"], strict=True)]
        out = np.empty(len(payloads), dtype=object)
        out[:] = payloads
        return {"model": batch["model"], "case": batch["case"], "payload": out}

    def produce_one(self, model: str, case: str) -> bytes:
        try:
            return pack_result(self.produce_case(self.suite, model, case, self.out_dir))
        except Exception as exc:  # every failure goes back to the driver, which raises it
            return pack_error(exc)


# --- the cluster ----------------------------------------------------------------------------------------------------


def forwarded_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The gate's environment variables a local cluster's actors get (keys, weights, ledger, caches)."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in env.items() if k.startswith(FORWARDED_PREFIXES) or k in FORWARDED_NAMES}


@contextlib.contextmanager
def ray_session(settings: RaySettings) -> Iterator[dict[str, float]]:
    """A Ray runtime for the evaluation: the one already initialised in this process, or a new connection to
    ``settings.address``, or a new local cluster (``include_dashboard=False``); a runtime started here is shut down
    on leaving. Yields the cluster's resources (``{"CPU": ..., "GPU": ...}``). Ray Data's own progress bars are off
    (the caller has its own)."""
    import ray

    started = False
    if not ray.is_initialized():
        try:
            if settings.address is not None:
                ray.init(address=settings.address, logging_level="WARNING")
            else:
                ray.init(num_cpus=settings.num_cpus, include_dashboard=False, logging_level="WARNING")
        except (ConnectionError, ValueError, RuntimeError) as exc:
            subject = "--ray-address" if settings.address is not None else "--ray"
            raise UsageError(subject, "must reach a Ray cluster", f"{type(exc).__name__}: {exc}") from None
        started = True
    ctx = ray.data.DataContext.get_current()
    saved = (ctx.enable_progress_bars, ctx.print_on_execution_start)
    ctx.enable_progress_bars, ctx.print_on_execution_start = False, False
    try:
        yield {k: float(v) for k, v in ray.cluster_resources().items()}
    finally:
        ctx.enable_progress_bars, ctx.print_on_execution_start = saved
        if started:
            ray.shutdown()


def actor_resources(settings: RaySettings, resources: dict[str, float], workers: int) -> tuple[float, float]:
    """``(num_cpus, num_gpus)`` per actor; a pool the cluster cannot hold is refused (Ray would wait forever)."""
    cpus = resources.get("CPU", 0.0)
    gpus = resources.get("GPU", 0.0)
    per_cpu = settings.cpus_per_worker if settings.cpus_per_worker is not None else min(1.0, cpus / workers)
    per_gpu = float(settings.num_gpus_per_generator)
    if per_cpu <= 0 or per_cpu * workers > cpus + 1e-9:
        raise UsageError(
            "--workers", f"{workers} actor(s) x {per_cpu:g} CPU must fit the cluster's {cpus:g} CPU", workers
        )
    if per_gpu * workers > gpus + 1e-9:
        raise UsageError(
            "ray num_gpus_per_generator",
            f"{workers} actor(s) x {per_gpu:g} GPU must fit the cluster's {gpus:g} GPU",
            per_gpu,
        )
    return per_cpu, per_gpu


def case_dataset(pairs: Iterable[tuple[str, str]]) -> Any:
    """The cases as rows ``{"model", "case"}`` of a Ray Dataset, one block per case (so that every case can go to
    any actor)."""
    import ray

    rows = [{"model": m, "case": c} for m, c in pairs]
    return ray.data.from_items(rows, override_num_blocks=len(rows))


def run_on_ray(
    suite: Suite,
    out_dir: Path,
    settings: RaySettings,
    produce_case: ProduceCase,
    finish_case: FinishCase,
    progress: OnResult | None = None,
    *,
    pairs: Iterable[tuple[str, str]] | None = None,
) -> list[CaseResult]:
    """Produce every ``(model name, case id)`` of ``pairs`` (default: all of the suite's) in a Ray actor pool and
    finish each on this process as it arrives; ``progress`` is called with every ``CaseResult``. Returns them in the
    order they were finished. A worker's error is raised here (the cases finished before it stay finished: a rerun
    of the evaluation resumes after them)."""
    import ray

    todo = list(pairs) if pairs is not None else [(m.name, c.id) for m, c in suite.pairs()]
    if len(set(todo)) != len(todo):
        raise UsageError("pairs", "must name every (model, case) at most once", len(todo) - len(set(todo)))
    if not todo:
        return []
    workers = min(settings.workers, len(todo))
    expected = set(todo)
    results: list[CaseResult] = []
    with ray_session(settings) as resources:
        per_cpu, per_gpu = actor_resources(settings, resources, workers)
        remote: dict[str, Any] = {"num_cpus": per_cpu}
        if per_gpu > 0:
            remote["num_gpus"] = per_gpu
        if settings.address is None:
            remote["runtime_env"] = {"env_vars": forwarded_env()}
        ds = case_dataset(todo).map_batches(
            Producer,
            fn_constructor_kwargs={"suite": suite, "out_dir": str(out_dir), "produce_case": produce_case},
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            **remote,
        )
        for row in ds.iter_rows():
            key = (str(row["model"]), str(row["case"]))
            if key not in expected:
                raise RuntimeError(f"Ray returned a case that was not asked for or came twice: {key}")
            expected.discard(key)
            produced = unpack(row["payload"])
            del row
            result = finish_case(suite, key[0], key[1], produced, out_dir)
            del produced  # the frames: the driver holds one case's at a time
            results.append(result)
            if progress is not None:
                progress(result)
    if expected:
        raise RuntimeError(f"Ray finished without {len(expected)} case(s): {sorted(expected)[:5]}")
    return results


__all__ = [
    "Producer",
    "RaySettings",
    "actor_resources",
    "case_dataset",
    "forwarded_env",
    "pack_error",
    "pack_result",
    "ray_session",
    "run_on_ray",
    "unpack",
]
