"""``FrechetVideoDistance``: the FVD of :mod:`metrics.fvd` as a ``torchmetrics.Metric``, mergeable and DDP-correct.

The generated ("fake") side accumulates in Metric states; the reference side is a :class:`metrics.fvd.FVDState`
(statistics of the real videos, normally loaded from a ``.npz`` once) held outside the states, so it survives
``reset()`` (like torchmetrics' FID with ``reset_real_features=False``) and is never summed across processes: every
process holds the same reference. ::

    fvd = FrechetVideoDistance(reference=FVDState.load("refs.npz"))
    fvd.update(features)                        # I3D features [N, 400] of generated clips (any device)
    fvd.update_videos(videos, extractor)        # or uint8 videos through an injected extractor (metrics.fvd)
    fvd.compute()                               # tensor(FVD), float64; reduced over processes under DDP
    fvd.interval(n_boot=200, seed=0)            # bootstrap interval over videos (keep_features=True)
    fvd.result()                                # metrics.fvd.FVDResult: value or the not-measured reason

States (float64): ``fake_sum [400]``, ``fake_outer [400, 400]``, ``fake_n``, ``fake_videos``, ``fake_skipped``
(``"sum"``); with ``keep_features=True`` also ``fake_features`` (``"cat"``, the per-sample features flattened to 1-D,
float32 values stored as float64 — exact) and ``fake_video_sizes`` (``"cat"``, samples per video, in the same order),
from which the per-sample video ids of :class:`metrics.fvd.FVDState` are rebuilt for bootstrap intervals over videos.

``compute()`` builds an :class:`metrics.fvd.FVDState` from the states and calls :func:`metrics.fvd.compute_fvd`:
the same Fréchet function, so for the same features (added in the same batches) the value equals the
``metrics.fvd`` one exactly; states merged from other batches or processes differ only by float64 summation order.
The feature extractor is never part of the Metric (a state dict stays weights-free); ship :meth:`cpu_state`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from metrics.fvd import (
    NUM_CLASSES,
    PROTOCOL_STYLEGANV,
    FeatureExtractor,
    FVDResult,
    FVDState,
    compute_fvd,
    describe_protocol,
)
from metrics.specs import SPECS
from metrics.stats import BootstrapCI, MeanCovAccumulator
from metrics.video_metrics import MergeableMetric, _cat_1d
from reports.errors import InputError, MeasurementError


def _f64(shape: tuple[int, ...] = ()) -> Tensor:
    return torch.zeros(shape, dtype=torch.float64)


class FrechetVideoDistance(MergeableMetric):
    """FVD of the generated videos added so far against a fixed reference :class:`~metrics.fvd.FVDState`."""

    higher_is_better: ClassVar[bool | None] = SPECS["fvd"].higher_is_better
    name: ClassVar[str] = "fvd"

    fake_sum: Tensor
    fake_outer: Tensor
    fake_n: Tensor
    fake_videos: Tensor
    fake_skipped: Tensor
    fake_features: list[Tensor] | Tensor
    fake_video_sizes: list[Tensor] | Tensor

    def __init__(
        self,
        reference: FVDState | None = None,
        *,
        protocol: str | None = None,
        keep_features: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        chosen = protocol or (reference.protocol if reference is not None else PROTOCOL_STYLEGANV)
        describe_protocol(chosen)  # ValueError naming the known protocols
        self.protocol = chosen
        self.keep_features = bool(keep_features)
        self._reference: FVDState | None = None
        if reference is not None:
            self.set_reference(reference)
        self.add_state("fake_sum", default=_f64((NUM_CLASSES,)), dist_reduce_fx="sum")
        self.add_state("fake_outer", default=_f64((NUM_CLASSES, NUM_CLASSES)), dist_reduce_fx="sum")
        self.add_state("fake_n", default=_f64(), dist_reduce_fx="sum")
        self.add_state("fake_videos", default=_f64(), dist_reduce_fx="sum")
        self.add_state("fake_skipped", default=_f64(), dist_reduce_fx="sum")
        if self.keep_features:
            self.add_state("fake_features", default=[], dist_reduce_fx="cat")
            self.add_state("fake_video_sizes", default=[], dist_reduce_fx="cat")

    # --- reference ----------------------------------------------------------------------------------------------

    @property
    def reference(self) -> FVDState | None:
        return self._reference

    def set_reference(self, state: FVDState) -> None:
        """Use ``state`` as the reference set (it must share this metric's protocol); kept across ``reset()``."""
        if not isinstance(state, FVDState):
            raise TypeError(
                f"FrechetVideoDistance reference must be a metrics.fvd.FVDState, got {type(state).__name__}"
            )
        if state.protocol != self.protocol:
            raise InputError(
                "FVD reference", f"the reference must use this metric's protocol {self.protocol}", state.protocol
            )
        self._reference = state
        self._computed = None

    # --- accumulation -------------------------------------------------------------------------------------------

    def update(self, features: Tensor | np.ndarray | FVDState, video_ids: Tensor | np.ndarray | None = None) -> None:
        """Add generated samples: I3D features ``[N, 400]`` (float32 values; any device) with optional per-sample
        video ids (0-based, non-decreasing; default one video per sample), or a whole :class:`FVDState` of this
        protocol (its sums, counts and, when kept, features)."""
        if isinstance(features, FVDState):
            if video_ids is not None:
                raise ValueError("FrechetVideoDistance.update: video_ids go with features, not with an FVDState")
            state = features
        else:
            feats = features.detach().cpu().numpy() if isinstance(features, Tensor) else np.asarray(features)
            ids = None
            if video_ids is not None:
                ids = video_ids.detach().cpu().numpy() if isinstance(video_ids, Tensor) else np.asarray(video_ids)
            state = FVDState(self.protocol, keep_features=self.keep_features).add_features(feats, ids)
        self._add_state(state)

    def update_videos(
        self, videos: Sequence[np.ndarray], extractor: FeatureExtractor, *, chunk_clips: int = 32
    ) -> None:
        """Add uint8 videos ``[T,H,W,3]`` under this metric's protocol, through ``extractor`` (e.g.
        :class:`metrics.fvd.I3DFeatures`; clips ``[N,3,16,224,224]`` -> ``[N,400]``) — see ``FVDState.update``."""
        self.update(
            FVDState(self.protocol, keep_features=self.keep_features).update(videos, extractor, chunk_clips=chunk_clips)
        )

    def _add_state(self, state: FVDState) -> None:
        if state.protocol != self.protocol:
            raise InputError(
                "FVD update", f"added samples must use this metric's protocol {self.protocol}", state.protocol
            )
        if state.acc.dim != NUM_CLASSES:
            raise ValueError(f"FrechetVideoDistance.update: features must be {NUM_CLASSES}-d, got {state.acc.dim}")
        sizes = None
        if self.keep_features:
            if state.features is None or state.video_ids is None:
                raise ValueError("FrechetVideoDistance(keep_features=True).update: the FVDState has no features")
            ids = state.video_ids
            if len(ids) and (np.any(np.diff(ids) < 0) or ids.min() < 0):
                raise ValueError("FrechetVideoDistance.update: video_ids must be non-negative and non-decreasing")
            sizes = np.bincount(ids, minlength=state.n_videos) if len(ids) else np.zeros(state.n_videos, np.int64)
            if len(sizes) != state.n_videos:
                raise ValueError(
                    f"FrechetVideoDistance.update: video ids reach {len(sizes)} videos, the state says {state.n_videos}"
                )
        dev = self.device
        self.fake_sum += torch.from_numpy(state.acc.sum).to(dev)
        self.fake_outer += torch.from_numpy(state.acc.sum_outer).to(dev)
        self.fake_n += state.count
        self.fake_videos += state.n_videos
        self.fake_skipped += state.n_skipped
        if sizes is not None:
            assert state.features is not None  # checked above
            feats = torch.from_numpy(state.features.astype(np.float64).reshape(-1))
            self.fake_features.append(feats.to(dev))  # type: ignore[union-attr]  # a list between syncs
            self.fake_video_sizes.append(torch.from_numpy(sizes.astype(np.float64)).to(dev))  # type: ignore[union-attr]

    def _check_compatible(self, other: Metric) -> None:
        assert isinstance(other, FrechetVideoDistance)  # merge_state checked the class
        if other.protocol != self.protocol:
            raise InputError(
                "FVD states", "merged states must share one protocol", f"{self.protocol} vs {other.protocol}"
            )
        if other.keep_features != self.keep_features:
            raise ValueError(
                "FrechetVideoDistance.merge_state: both instances need the same keep_features "
                f"({self.keep_features} vs {other.keep_features})"
            )

    # --- results ------------------------------------------------------------------------------------------------

    def generated_state(self) -> FVDState:
        """The generated side as a :class:`metrics.fvd.FVDState` (save it, or use it with ``metrics.fvd``), reduced
        across processes when distributed."""
        with self._synced():
            return self._local_state()

    def _local_state(self) -> FVDState:
        n = round(float(self.fake_n))
        acc = MeanCovAccumulator.from_arrays(n, self.fake_sum.cpu().numpy(), self.fake_outer.cpu().numpy())
        state = FVDState(self.protocol, keep_features=False, acc=acc)
        state.n_videos = round(float(self.fake_videos))
        state.n_skipped = round(float(self.fake_skipped))
        if self.keep_features:
            feats = _cat_1d(self.fake_features).cpu().numpy().astype(np.float32).reshape(-1, NUM_CLASSES)
            sizes = np.rint(_cat_1d(self.fake_video_sizes).cpu().numpy()).astype(np.int64)
            if feats.shape[0] != n or int(sizes.sum()) != n:
                raise MeasurementError(
                    "FVD state", "retained features must match the sample count", (feats.shape[0], int(sizes.sum()), n)
                )
            state.features, state.video_ids = feats, np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
            state.keep_features = True
        return state

    def _result(self, **kw: Any) -> FVDResult:
        if self._reference is None:
            raise MeasurementError(
                "fvd", "FrechetVideoDistance needs a reference FVDState (reference= or set_reference())", None
            )
        return compute_fvd(self._local_state(), self._reference, **kw)

    def result(
        self, *, n_boot: int = 0, seed: int = 0, level: float = 0.95, unit: Literal["video", "sample"] = "video"
    ) -> FVDResult:
        """The full :class:`metrics.fvd.FVDResult` (value or the reason it is not measured, set sizes, an optional
        bootstrap interval), reduced across processes when distributed."""
        with self._synced():
            return self._result(n_boot=n_boot, seed=seed, level=level, unit=unit)

    def compute(self) -> Tensor:
        """FVD as a float64 scalar tensor; ``MeasurementError`` with the reason when it cannot be measured (no
        reference, fewer than 2 samples on a side)."""
        res = self._result()
        if res.value is None:
            raise MeasurementError("fvd", "FVD not measured", res.reason)
        return torch.tensor(res.value, dtype=torch.float64)

    def interval(
        self, n_boot: int = 200, seed: int = 0, level: float = 0.95, unit: Literal["video", "sample"] = "video"
    ) -> BootstrapCI:
        """Bias-corrected bootstrap interval of the FVD (:func:`metrics.fvd.bootstrap_fvd`; needs
        ``keep_features=True`` and a reference with features)."""
        res = self.result(n_boot=n_boot, seed=seed, level=level, unit=unit)
        if res.value is None:
            raise MeasurementError("fvd", "FVD not measured", res.reason)
        if res.ci is None:
            raise MeasurementError("fvd", "no FVD interval", res.ci_reason)
        return res.ci
