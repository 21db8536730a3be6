"""Offline audio-visual sync check: mouth aperture vs speech envelope, cross-correlated over +-15 frames.

This is *not* SyncNet (no Sync-C/Sync-D): it needs no downloaded weights, only dlib's 68-point landmarks.

1. Mouth aperture per frame: mean vertical gap of the three inner-lip landmark pairs (61-67, 62-66, 63-65, 0-based
   iBUG 300-W indices) divided by the outer-eye-corner distance (36-45), so it is independent of face size and
   in-plane rotation.
2. Speech envelope at the video frame rate: audio resampled to 16 kHz (``metrics.resample``), RMS over each frame's
   window ``[i/fps, (i+1)/fps)``, log-compressed (dB, floor -80 dB).
3. Both series are detrended (minus their 0.36 s moving average: slow head pitch and loudness drift are not lip
   sync) and z-scored over the frames where they are valid (face found; audio present); invalid frames are then 0.
4. Normalised cross-correlation ``r(k) = sum_t v[t] a[t+k] / sqrt(sum v^2 sum a^2)`` for k in [-15, 15] (the biased
   estimator: a shift is scored over the frames that overlap, divided by the full-length energies, so large shifts
   are penalised like SyncNet's zero padding). Offset = argmax_k r(k) (frames; positive: the audio lags the video),
   correlation = r(offset).

Not measured (with the reason): no face / too few frames with a face, clip shorter than the protocol needs, silent
audio, audio shorter than the video. Malformed input (NaN audio, wrong dtype or shape) raises ``InputError``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import uniform_filter1d

from metrics.faces import FaceDetector, FaceDetectorConfig, FaceTrack, as_rgb_frames
from metrics.measurement import Measurement
from metrics.resample import resample_audio
from reports.errors import InputError

PROTOCOL = "offline AV-sync: dlib inner-lip aperture vs 16 kHz log-RMS envelope, NCC over +-15 frames (not SyncNet)"
AUDIO_RATE = 16000
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))
OUTER_EYE_CORNERS = (36, 45)


@dataclass(frozen=True)
class AVSyncConfig:
    max_offset: int = 15  # frames searched either side
    min_seconds: float = 2.0  # shortest clip scored
    min_face_ratio: float = 0.5  # at least this share of frames must have a face
    silence_dbfs: float = -60.0  # audio whose overall RMS is below this is silent
    audio_slack_frames: int = 2  # audio may be this many frames shorter than the video (encoder padding)
    envelope_floor_db: float = -80.0
    detrend_seconds: float = 0.36  # moving-average window removed from both series (9 frames at 25 fps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AVSyncResult:
    offset: int | None  # frames, positive = audio lags video
    corr: float | None
    fps: float
    n_frames: int
    reason: str | None = None
    lags: list[int] = field(default_factory=list)
    curve: list[float] = field(default_factory=list)  # r(k) per lag
    aperture: list[float | None] = field(default_factory=list)
    envelope_db: list[float | None] = field(default_factory=list)
    missing_frames: list[int] = field(default_factory=list)
    config: AVSyncConfig = field(default_factory=AVSyncConfig)
    notes: list[str] = field(default_factory=list)
    second_peak: float | None = None  # best r(k) at least 3 frames from the peak: close to corr = ambiguous offset

    @property
    def measured(self) -> bool:
        return self.reason is None

    def measurements(self) -> list[Measurement]:
        details: dict[str, Any] = {
            "fps": self.fps,
            "n_frames": self.n_frames,
            "missing_frames": self.missing_frames,
            "config": self.config.to_dict(),
            "notes": self.notes,
        }
        if self.reason is not None or self.offset is None or self.corr is None:
            reason = self.reason or "not measured"
            return [
                Measurement.not_measured("avsync_offset", reason, PROTOCOL, details=details),
                Measurement.not_measured("avsync_corr", reason, PROTOCOL, details=details),
            ]
        details = {**details, "lags": self.lags, "curve": self.curve, "second_peak": self.second_peak}
        offset_ms = 1000.0 * self.offset / self.fps
        return [
            # unit and direction from metrics.specs (filled in by Measurement)
            Measurement("avsync_offset", float(self.offset), PROTOCOL, details={**details, "offset_ms": offset_ms}),
            Measurement("avsync_corr", self.corr, PROTOCOL, details=details),
        ]


def mouth_aperture(track: FaceTrack) -> np.ndarray:
    """Inner-lip opening / outer-eye-corner distance per frame; NaN where there is no face."""
    out = np.full(len(track.faces), np.nan)
    for i, face in enumerate(track.faces):
        if face is None:
            continue
        lm = face.landmarks.astype(np.float64)
        gap = np.mean([np.linalg.norm(lm[a] - lm[b]) for a, b in INNER_LIP_PAIRS])
        eyes = np.linalg.norm(lm[OUTER_EYE_CORNERS[0]] - lm[OUTER_EYE_CORNERS[1]])
        if eyes > 1.0:
            out[i] = gap / eyes
    return out


def speech_envelope_db(audio16k: np.ndarray, fps: float, n_frames: int, floor_db: float = -80.0) -> np.ndarray:
    """Log-RMS (dBFS) of the 16 kHz audio in each video frame's window; NaN for frames past the end of the audio."""
    out = np.full(n_frames, np.nan)
    for i in range(n_frames):
        start = round(i * AUDIO_RATE / fps)
        stop = round((i + 1) * AUDIO_RATE / fps)
        if stop > len(audio16k) or stop <= start:
            continue
        rms = math.sqrt(float(np.mean(np.square(audio16k[start:stop], dtype=np.float64))))
        out[i] = max(floor_db, 20.0 * math.log10(rms)) if rms > 0 else floor_db
    return out


def detrend(x: np.ndarray, window: int) -> np.ndarray:
    """``x`` minus its centred moving average over ``window`` frames; NaNs are bridged for the filter, kept NaN."""
    valid = np.isfinite(x)
    if window <= 1 or valid.sum() < 2:
        return x.copy()
    filled = np.interp(np.arange(len(x)), np.flatnonzero(valid), x[valid])
    return np.where(valid, filled - uniform_filter1d(filled, window, mode="nearest"), np.nan)


def normalised_xcorr(video: np.ndarray, audio: np.ndarray, max_offset: int) -> tuple[np.ndarray, np.ndarray]:
    """r(k) = sum_t v[t] a[t+k] / sqrt(sum v^2 sum a^2), NaNs as 0 after z-scoring over the valid samples."""
    v = _zscore(video)
    a = _zscore(audio)
    denom = math.sqrt(float(np.sum(v * v) * np.sum(a * a)))
    lags = np.arange(-max_offset, max_offset + 1)
    curve = np.zeros(len(lags))
    n = len(v)
    for j, k in enumerate(lags):
        if k >= 0:
            curve[j] = float(np.dot(v[: n - k], a[k:])) if k < n else 0.0
        else:
            curve[j] = float(np.dot(v[-k:], a[: n + k])) if -k < n else 0.0
    return lags, curve / denom if denom > 0 else curve


def _zscore(x: np.ndarray) -> np.ndarray:
    valid = np.isfinite(x)
    out = np.zeros(len(x))
    if valid.sum() < 2:
        return out
    m = x[valid].mean()
    s = x[valid].std()
    if s > 0:
        out[valid] = (x[valid] - m) / s
    return out


def _check_audio(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    arr = np.asarray(audio)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise InputError("audio", "mono samples, shape [N]", arr.shape)
    if not np.issubdtype(arr.dtype, np.floating):
        raise InputError("audio", "float samples in [-1, 1]", arr.dtype)
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if bad:
        raise InputError("audio", "all samples finite", f"{bad} NaN/inf samples of {arr.size}")
    if not isinstance(sample_rate, int) or sample_rate <= 0:
        raise InputError("sample_rate", "an integer sample rate > 0", sample_rate)
    return arr.astype(np.float32, copy=False)


def measure_avsync(
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray,
    sample_rate: int,
    *,
    landmarks_68: Path | str | None = None,
    track: FaceTrack | None = None,
    config: AVSyncConfig | None = None,
    detector_config: FaceDetectorConfig | None = None,
) -> AVSyncResult:
    """Offset (frames) and peak NCC between mouth aperture and speech envelope.

    Pass ``landmarks_68`` (dlib shape predictor path) or a ``track`` already computed on these frames.
    """
    cfg = config or AVSyncConfig()
    rgb = as_rgb_frames(frames)
    if not isinstance(fps, int | float) or not math.isfinite(fps) or fps <= 0:
        raise InputError("fps", "a finite frame rate > 0", fps)
    samples = _check_audio(audio, sample_rate)
    n = len(rgb)
    base: dict[str, Any] = {"fps": float(fps), "n_frames": n, "config": cfg}

    need = max(math.ceil(cfg.min_seconds * fps), 2 * cfg.max_offset + 1)
    if n < need:
        return AVSyncResult(None, None, **base, reason=f"clip too short: {n} frames, the protocol needs >= {need}")
    audio16k, rs = resample_audio(samples, sample_rate, AUDIO_RATE)
    notes = [rs.describe()]
    level = 20 * math.log10(max(float(np.sqrt(np.mean(np.square(audio16k, dtype=np.float64)))), 1e-12))
    if level < cfg.silence_dbfs:
        return AVSyncResult(
            None, None, **base, notes=notes, reason=f"audio is silent: {level:.1f} dBFS < {cfg.silence_dbfs:g} dBFS"
        )
    audio_s, video_s = len(audio16k) / AUDIO_RATE, n / fps
    if audio_s < video_s - cfg.audio_slack_frames / fps:
        return AVSyncResult(
            None, None, **base, notes=notes, reason=f"audio ({audio_s:.2f} s) shorter than video ({video_s:.2f} s)"
        )

    if track is None:
        if landmarks_68 is None:
            raise InputError("landmarks_68", "a dlib 68-point shape predictor path or a precomputed face track", None)
        track = FaceDetector(landmarks_68, detector_config).track(rgb)
    elif len(track.faces) != n:
        raise InputError("track", f"one entry per frame ({n})", len(track.faces))
    aperture = mouth_aperture(track)
    envelope = speech_envelope_db(audio16k, fps, n, cfg.envelope_floor_db)
    missing = [i for i in range(n) if not np.isfinite(aperture[i])]
    result_lists: dict[str, Any] = {
        "aperture": [None if not np.isfinite(x) else float(x) for x in aperture],
        "envelope_db": [None if not np.isfinite(x) else float(x) for x in envelope],
        "missing_frames": missing,
        "notes": notes,
    }
    face_ratio = 1.0 - len(missing) / n
    if face_ratio < cfg.min_face_ratio:
        reason = (
            "no face found in any frame"
            if face_ratio == 0
            else f"face found in {face_ratio:.0%} of frames, the protocol needs >= {cfg.min_face_ratio:.0%}"
        )
        return AVSyncResult(None, None, **base, **result_lists, reason=reason)
    if np.nanstd(aperture) == 0:
        return AVSyncResult(None, None, **base, **result_lists, reason="mouth aperture is constant (no lip motion)")
    window = max(1, round(cfg.detrend_seconds * fps)) | 1
    lags, curve = normalised_xcorr(detrend(aperture, window), detrend(envelope, window), cfg.max_offset)
    j = int(np.argmax(curve))
    far = np.abs(lags - lags[j]) >= 3
    second = float(curve[far].max())
    result_lists["notes"] = [
        *notes,
        f"peak minus median of r(k): {float(curve[j] - np.median(curve)):.3f}",
        f"best r(k) at least 3 frames from the peak: {second:.3f} (rhythmic speech or song makes this close)",
    ]
    return AVSyncResult(
        int(lags[j]),
        float(curve[j]),
        **base,
        **result_lists,
        lags=[int(k) for k in lags],
        curve=curve.tolist(),
        second_peak=second,
    )
