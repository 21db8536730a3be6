"""Per-video metrics as ``torchmetrics.Metric`` objects: mean over videos, bootstrap interval, mergeable states.

Users drop these into their own validation loops (and under DDP / Lightning, where ``compute()`` reduces the states
across processes), and the evaluation driver merges the states that workers send back::

    metric = SyncConfidence()
    metric.update(torch.tensor([7.1, 6.4]))          # per-video Sync-C values
    metric.update_from(record_measurements)          # or straight from a gate result's measurements
    metric.compute()                                 # tensor(mean), float64
    metric.interval(n_boot=2000, seed=0)             # metrics.stats.BootstrapCI over the per-video values

States (all float64): ``total`` and ``count`` (``"sum"``), ``not_measured`` (``"sum"``: videos whose value was absent
or not measured, seen through :meth:`VideoMeanMetric.update_from`) and ``values`` (``"cat"``: the per-video values,
kept for bootstrap intervals). ``full_state_update = False``; ``merge_state`` takes another instance or its
``metric_state`` (tensors on any device; ship :meth:`MergeableMetric.cpu_state` between processes, never the
module).

:class:`MergeableMetric` is the small base shared with :class:`metrics.fvd_metric.FrechetVideoDistance`: only
``"sum"`` and ``"cat"`` states, every ``"cat"`` state a 1-D float64 tensor, and a ``merge_state`` that, unlike
torchmetrics 1.9's, keeps this instance's ``"cat"`` items *before* the incoming ones (so ``a.merge_state(b)`` holds
the same per-video order as one pass over a's data then b's), counts the merge as an update (no "compute before
update" warning) and drops a cached ``compute()`` result.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat, dim_zero_sum

from metrics.measurement import Measurement
from metrics.specs import SPECS
from metrics.stats import BootstrapCI, bootstrap_ci
from reports.errors import MeasurementError

StateDict = dict[str, Tensor | list[Tensor]]


def _f64(value: float = 0.0) -> Tensor:
    return torch.tensor(value, dtype=torch.float64)


class MergeableMetric(Metric):
    """A Metric whose states are ``"sum"`` tensors and 1-D float64 ``"cat"`` lists, mergeable across processes."""

    full_state_update: ClassVar[bool] = False
    is_differentiable: ClassVar[bool] = False

    def cpu_state(self) -> StateDict:
        """The states moved to CPU, each ``"cat"`` list concatenated into one tensor: what travels between processes
        (pickle it, or send it through Ray) and what :meth:`merge_state` takes on the other side."""
        out: StateDict = {}
        for name in self._defaults:
            value = getattr(self, name)
            if isinstance(value, list):
                out[name] = [_cat_1d(value).detach().cpu()]
            else:
                out[name] = value.detach().cpu().clone()
        return out

    def merge_state(self, incoming_state: Mapping[str, Any] | Metric) -> None:
        """Add another instance's states (an instance of this class, or its ``metric_state``/:meth:`cpu_state`).

        ``"sum"`` states are added; ``"cat"`` items are appended after this instance's own. A missing state, a state
        of the wrong shape, or an instance of another class is refused with a ``ValueError`` naming it.
        """
        if isinstance(incoming_state, Metric):
            if not isinstance(incoming_state, type(self)):
                raise ValueError(
                    f"{type(self).__name__}.merge_state: expected a {type(self).__name__}, "
                    f"got {type(incoming_state).__name__}"
                )
            self._check_compatible(incoming_state)
            incoming_state = incoming_state.metric_state
        if not isinstance(incoming_state, Mapping):
            raise ValueError(
                f"{type(self).__name__}.merge_state: expected a Metric or a dict of states, "
                f"got {type(incoming_state).__name__}"
            )
        merged: dict[str, Tensor | list[Tensor]] = {}
        for name in self._defaults:
            if name not in incoming_state:
                raise ValueError(
                    f"{type(self).__name__}.merge_state: incoming state lacks {name!r} (has {sorted(incoming_state)})"
                )
            merged[name] = self._merged(name, getattr(self, name), incoming_state[name])
        for name, value in merged.items():
            setattr(self, name, value)
        self._computed = None
        self._update_count += 1

    def _merged(self, name: str, local: Any, incoming: Any) -> Tensor | list[Tensor]:
        reduce_fn = self._reductions[name]
        if reduce_fn is dim_zero_sum:
            theirs = torch.as_tensor(incoming)
            if theirs.shape != local.shape:
                raise ValueError(
                    f"{type(self).__name__}.merge_state: state {name!r} must have shape {tuple(local.shape)}, "
                    f"got {tuple(theirs.shape)}"
                )
            return local + theirs.to(device=local.device, dtype=local.dtype)
        if reduce_fn is dim_zero_cat:
            items = [incoming] if isinstance(incoming, Tensor) else list(incoming)
            moved = [torch.as_tensor(t).to(device=self.device, dtype=torch.float64).reshape(-1) for t in items]
            return list(local) + moved
        raise TypeError(f"{type(self).__name__}: state {name!r} has an unsupported reduction {reduce_fn}")

    def _check_compatible(self, other: Metric) -> None:
        """Subclasses refuse merging with an instance measured differently (e.g. another FVD protocol)."""

    def _sync_dist(self, dist_sync_fn: Any = None, process_group: Any = None) -> None:
        # torchmetrics replaces an empty "cat" list by a tensor of the metric's default dtype (float32 unless
        # set_dtype was used, and reset to it by .to(device)); a rank that saw no data would then send float32 while
        # the others send float64 and the all-gather would fail. Give it a float64 empty tensor of its own.
        for name, reduce_fn in self._reductions.items():
            value = getattr(self, name)
            if reduce_fn is dim_zero_cat and isinstance(value, list) and not value:
                setattr(self, name, [torch.zeros(0, dtype=torch.float64, device=self.device)])
        kwargs: dict[str, Any] = {"process_group": process_group}
        if dist_sync_fn is not None:
            kwargs["dist_sync_fn"] = dist_sync_fn
        super()._sync_dist(**kwargs)

    @contextmanager
    def _synced(self) -> Iterator[None]:
        """States reduced across processes (as ``compute()`` sees them) for methods other than ``compute``."""
        if self._is_synced:
            yield
            return
        with self.sync_context(
            dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync, should_unsync=self._should_unsync
        ):
            yield


def _cat_1d(value: Tensor | list[Tensor]) -> Tensor:
    """A ``"cat"`` state as one 1-D float64 tensor (a list before sync, a tensor after it)."""
    if isinstance(value, Tensor):
        return value.reshape(-1).to(torch.float64)
    if not value:
        return torch.zeros(0, dtype=torch.float64)
    return torch.cat([v.reshape(-1).to(torch.float64) for v in value])


class VideoMeanMetric(MergeableMetric):
    """The mean of a per-video metric over videos, with a bootstrap interval over the per-video values.

    Subclasses set ``name`` (a key of :data:`metrics.specs.SPECS`); ``higher_is_better`` comes from the spec.
    """

    name: ClassVar[str] = ""
    higher_is_better: ClassVar[bool | None] = None

    total: Tensor
    count: Tensor
    not_measured: Tensor
    values: list[Tensor] | Tensor

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            if cls.name not in SPECS:
                raise ValueError(f"{cls.__name__}: metric {cls.name!r} is not in metrics.specs.SPECS")
            cls.higher_is_better = SPECS[cls.name].higher_is_better

    def __init__(self, **kwargs: Any) -> None:
        if not type(self).name:
            raise TypeError(f"{type(self).__name__} names no metric: use a subclass such as SyncConfidence")
        super().__init__(**kwargs)
        self.add_state("total", default=_f64(), dist_reduce_fx="sum")
        self.add_state("count", default=_f64(), dist_reduce_fx="sum")
        self.add_state("not_measured", default=_f64(), dist_reduce_fx="sum")
        self.add_state("values", default=[], dist_reduce_fx="cat")

    def update(self, values: Tensor | Sequence[float] | float, not_measured: int = 0) -> None:
        """Add per-video values (a scalar or a 1-D tensor/sequence; empty is allowed) and a count of videos whose
        value could not be measured. A non-finite value is refused: a failed measurement is not a number."""
        x = torch.as_tensor(values, dtype=torch.float64).detach()
        if x.ndim > 1:
            raise ValueError(f"{self.name}: per-video values must be a scalar or 1-D, got shape {tuple(x.shape)}")
        x = x.reshape(-1)
        bad = int((~torch.isfinite(x)).sum())
        if bad:
            raise MeasurementError(
                f"{self.name} values",
                "per-video values must be finite (pass a failed measurement as not measured)",
                f"{bad} non-finite of {x.numel()}",
            )
        if int(not_measured) < 0:
            raise ValueError(f"{self.name}: not_measured must be >= 0, got {not_measured}")
        x = x.to(self.device)
        self.total += x.sum()
        self.count += x.numel()
        self.not_measured += int(not_measured)
        self.values.append(x)  # type: ignore[union-attr]  # a list between syncs

    def update_from(self, measurements: Mapping[str, Measurement]) -> None:
        """Take this metric's value from one video's gate measurements (``{name: Measurement}``).

        A measurement that is absent or not measured is counted in ``not_measured`` and adds no value.
        """
        m = measurements.get(self.name)
        if m is not None and not isinstance(m, Measurement):
            raise ValueError(f"{self.name}: expected a metrics.measurement.Measurement, got {type(m).__name__}")
        if m is not None and m.name != self.name:
            raise ValueError(f"{self.name}: measurements[{self.name!r}] is a measurement of {m.name!r}")
        if m is None or m.value is None:
            self.update(torch.zeros(0, dtype=torch.float64), not_measured=1)
        else:
            self.update(float(m.value))

    def compute(self) -> Tensor:
        """The mean over the measured videos (float64); ``MeasurementError`` when no video was measured."""
        n = float(self.count)
        if n < 1:
            raise MeasurementError(
                self.name,
                "the mean needs at least one measured video",
                f"0 values, {int(self.not_measured)} not measured",
            )
        return self.total / self.count

    def per_video(self) -> np.ndarray:
        """The per-video values (float64), across processes when distributed."""
        with self._synced():
            return _cat_1d(self.values).cpu().numpy()

    def interval(self, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> BootstrapCI:
        """Seeded percentile-bootstrap interval of the mean over the per-video values (:func:`metrics.stats.
        bootstrap_ci`); ``MeasurementError`` when no video was measured."""
        values = self.per_video()
        if values.size == 0:
            raise MeasurementError(self.name, "an interval needs at least one measured video", "0 values")
        return bootstrap_ci(values, n_boot=n_boot, seed=seed, level=level)


class SyncConfidence(VideoMeanMetric):
    """Mean Sync-C over videos (SyncNet confidence, higher is better)."""

    name = "sync_c"


class SyncDistance(VideoMeanMetric):
    """Mean Sync-D over videos (SyncNet distance, lower is better)."""

    name = "sync_d"


class IdentitySimilarity(VideoMeanMetric):
    """Mean identity similarity over videos (each video's mean face-embedding cosine to its portrait)."""

    name = "identity_mean"


class AVSyncCorrelation(VideoMeanMetric):
    """Mean offline AV-sync correlation over videos (NCC at the peak, higher is better)."""

    name = "avsync_corr"


VIDEO_METRICS: dict[str, type[VideoMeanMetric]] = {
    cls.name: cls for cls in (SyncConfidence, SyncDistance, IdentitySimilarity, AVSyncCorrelation)
}
