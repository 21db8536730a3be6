"""Sync-C / Sync-D (LSE-C / LSE-D): lip-sync confidence and distance by the syncnet_python protocol, in memory.

Steps (project spec ``specs/metrics.md`` section A; each step lives in its own module):

1. bring the clip to 25 fps (frame selection as ffmpeg ``-r 25``) and the audio to 16 kHz (``metrics.resample``);
2. S3FD on every frame at scale 0.25, confidence > 0.9 (``metrics.s3fd``);
3. scene cuts (PySceneDetect ContentDetector), face tracks (IoU > 0.5, gaps <= 25 frames, more than ``min_track``
   detections, mean face size > 100 px) and 224x224 mouth-centred crops (``metrics.tracking``);
4. SyncNet on each track's crops and its audio slice ``[start*640, stop*640)``: offset, min distance (Sync-D) and
   confidence (Sync-C) per track, plus a per-window confidence series (``metrics.syncnet``).

Clip-level rule: **Sync-C = max confidence over tracks, Sync-D = min distance over tracks** (the rule of
syncnet-python 0.2.3 / MoChaBench, ``best_conf`` / ``min_dist``), and the offset is that of the most confident
track. We use it because that package's published figures for the speaker clip are the expectation we check against,
and because for the usual single-speaker talking-head clip it coincides with LatentSync's mean over tracks and with
Wav2Lip's per-track lines. Every track's own numbers stay in the result for per-track (Wav2Lip-style) reporting.

Differences from running the reference pipeline on a file, all deliberate: frames come decoded from the candidate
video (the reference re-encodes it to MPEG-4 at q 2, extracts JPEGs, writes XVID crops and re-extracts JPEGs, so it
scores lossy copies of the frames); audio resampling is scipy's polyphase filter, not ffmpeg's swresample (no change
for 16 kHz input); everything else — detector, thresholds, tracking, crop geometry, windows, distances — is the same
arithmetic, which the tests prove on shared fixture weights.
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from metrics.measurement import Measurement
from metrics.resample import Resampling, resample_audio, resample_video
from metrics.s3fd import S3FDDetector, S3FDNet, load_s3fd
from metrics.syncnet import (
    SAMPLES_PER_FRAME,
    WINDOW_FRAMES,
    SyncNet,
    evaluate_sync,
    load_syncnet,
    pcm16_levels,
    usable_windows,
)
from metrics.tracking import FaceTrack, crop_track, detect_scenes, track_faces
from reports.errors import InputError, MeasurementError

PROTOCOL = (
    "syncnet_python (S3FD tracks, SyncNet v2, vshift 15, 25 fps / 16 kHz); clip = max conf / min dist over tracks"
)
MIN_FRAME_SIDE = 128  # below this S3FD at scale 0.25 has no feature map left, and no face can reach 100 px


@dataclass(frozen=True)
class LipsyncConfig:
    frame_rate: int = 25
    sample_rate: int = 16000
    facedet_scale: float = 0.25
    face_confidence: float = 0.9
    scene_threshold: float = 27.0
    min_scene_len: int = 15
    min_track: int = 50  # syncnet-python / LatentSync; joonson's run_pipeline uses 100
    max_gap: int = 25  # num_failed_det
    min_face_size: float = 100.0
    iou_threshold: float = 0.5
    crop_scale: float = 0.40
    vshift: int = 15
    batch_size: int = 20
    detector_batch_size: int = 8
    silence_dbfs: float = -60.0  # whole-clip RMS below this: nothing to synchronise with
    max_audio_shortfall_s: float = 0.04  # audio may end up to one frame before the video
    device: str = "cpu"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class TrackSync:
    """One face track and its SyncNet scores. Frame indices are on the 25 fps timeline."""

    frames: np.ndarray
    boxes: np.ndarray
    detections: int
    offset: int
    min_dist: float
    confidence: float
    mean_dists: np.ndarray
    framewise_confidence: np.ndarray  # window i covers frames frames[i] .. frames[i] + 4

    def to_dict(self) -> dict[str, object]:
        return {
            "start_frame": int(self.frames[0]),
            "stop_frame": int(self.frames[-1]) + 1,
            "detections": self.detections,
            "offset": self.offset,
            "min_dist": self.min_dist,
            "confidence": self.confidence,
        }


@dataclass(frozen=True)
class LipsyncResult:
    config: LipsyncConfig
    resampling: tuple[Resampling, ...]
    n_frames: int  # on the 25 fps timeline
    frames_with_face: int
    tracks: tuple[TrackSync, ...] = ()
    framewise_confidence: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [n_frames], NaN = no track
    reason: str | None = None  # why nothing was measured
    notes: tuple[str, ...] = ()

    @property
    def measured(self) -> bool:
        return self.reason is None and bool(self.tracks)

    @property
    def best_track(self) -> TrackSync | None:
        return max(self.tracks, key=lambda t: t.confidence) if self.tracks else None

    @property
    def sync_c(self) -> float | None:
        return max(t.confidence for t in self.tracks) if self.measured else None

    @property
    def sync_d(self) -> float | None:
        return min(t.min_dist for t in self.tracks) if self.measured else None

    @property
    def offset(self) -> int | None:
        best = self.best_track
        return best.offset if self.measured and best is not None else None

    def _details(self) -> dict[str, object]:
        return {
            "tracks": [t.to_dict() for t in self.tracks],
            "n_frames": self.n_frames,
            "frames_with_face": self.frames_with_face,
            "frames_in_tracks": int(np.isfinite(self.framewise_confidence).sum()),
            "resampling": [r.describe() for r in self.resampling],
            "notes": list(self.notes),
            "config": self.config.to_dict(),
        }

    def measurements(self) -> list[Measurement]:
        # unit and direction of each come from metrics.specs (filled in by Measurement)
        rows = (
            ("sync_c", self.sync_c),
            ("sync_d", self.sync_d),
            ("sync_offset", None if self.offset is None else float(self.offset)),
        )
        details = self._details()
        out = []
        for name, value in rows:
            if value is None:
                reason = self.reason or "no face track was scored"
                out.append(Measurement.not_measured(name, reason, PROTOCOL, details=details))
            else:
                out.append(Measurement(name, float(value), PROTOCOL, details=details))
        return out


# --------------------------------------------------------------------------------------------------------------------
# input checks


def _require_weights(syncnet_weights: Path, s3fd_weights: Path) -> None:
    for path, name in ((Path(syncnet_weights), "syncnet"), (Path(s3fd_weights), "s3fd")):
        if not path.is_file():
            raise MeasurementError("not measured", f"{path} missing — run `hallo3-gate weights fetch {name}`")


def _rgb_frames(frames: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """uint8 [T, H, W, 3] RGB; grey [T, H, W] or [T, H, W, 1] is replicated to three channels (and noted)."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        raise InputError("frames", "a uint8 numpy array [T, H, W, 3] (RGB)", getattr(frames, "dtype", type(frames)))
    if frames.ndim == 4 and frames.shape[-1] == 3:
        return frames, []
    if frames.ndim == 3 or (frames.ndim == 4 and frames.shape[-1] == 1):
        grey = frames.reshape(frames.shape[:3])
        return np.repeat(grey[..., None], 3, axis=3), ["grey frames: the single channel was replicated to RGB"]
    raise InputError("frames", "shape [T, H, W, 3] (RGB) or [T, H, W] / [T, H, W, 1] (grey)", frames.shape)


def _mono_audio(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim != 1 or not np.issubdtype(audio.dtype, np.floating):
        raise InputError("audio", "mono float samples in [-1, 1], shape [N]", f"{audio.dtype} {audio.shape}")
    bad = int((~np.isfinite(audio)).sum())
    if bad:
        raise InputError("audio", "finite samples (no NaN or inf)", f"{bad} non-finite samples")
    return audio


def _rms_dbfs(audio: np.ndarray) -> float:
    rms = math.sqrt(float(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    return 20 * math.log10(rms) if rms > 0 else -math.inf


def _not_measured_reason(
    frames: np.ndarray, audio: np.ndarray, fps: float, sample_rate: int, cfg: LipsyncConfig
) -> str | None:
    """Inputs that are valid but cannot be scored by this protocol."""
    video_s, audio_s = len(frames) / fps, len(audio) / sample_rate
    if audio_s < video_s - cfg.max_audio_shortfall_s:
        return f"audio ({audio_s:.3f} s) is shorter than the video ({video_s:.3f} s)"
    level = _rms_dbfs(audio)
    if level < cfg.silence_dbfs:
        return f"audio is silent (RMS {level:.1f} dBFS < {cfg.silence_dbfs:g} dBFS)"
    n25 = round(video_s * cfg.frame_rate)
    if n25 <= cfg.min_track:
        return (
            f"clip too short: {n25} frames at {cfg.frame_rate} fps; a face track needs more than "
            f"{cfg.min_track} frames ({cfg.min_track / cfg.frame_rate:.1f} s)"
        )
    if min(frames.shape[1:3]) < MIN_FRAME_SIDE:
        return f"frames of {frames.shape[2]}x{frames.shape[1]} px are too small (need >= {MIN_FRAME_SIDE} px a side)"
    return None


# --------------------------------------------------------------------------------------------------------------------
# the measurement


@functools.lru_cache(maxsize=4)
def _cached_syncnet(path: str, stamp: tuple[int, int], device: str) -> SyncNet:
    return load_syncnet(Path(path), device)


@functools.lru_cache(maxsize=4)
def _cached_s3fd(path: str, stamp: tuple[int, int], device: str) -> S3FDNet:
    return load_s3fd(Path(path), device)


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


def _score_track(
    net: SyncNet, frames_rgb: np.ndarray, pcm16: np.ndarray, track: FaceTrack, cfg: LipsyncConfig
) -> TrackSync | None:
    crops_bgr = crop_track(frames_rgb, track, cfg.crop_scale)[..., ::-1]
    audio = pcm16[track.start * SAMPLES_PER_FRAME : track.stop * SAMPLES_PER_FRAME]
    if usable_windows(len(crops_bgr), len(audio)) <= 0:
        return None
    scores = evaluate_sync(net, np.ascontiguousarray(crops_bgr), audio, vshift=cfg.vshift, batch_size=cfg.batch_size)
    return TrackSync(
        frames=track.frames,
        boxes=track.boxes,
        detections=track.detections,
        offset=scores.offset,
        min_dist=scores.min_dist,
        confidence=scores.confidence,
        mean_dists=scores.mean_dists,
        framewise_confidence=scores.framewise_confidence,
    )


def _framewise(n_frames: int, tracks: list[TrackSync]) -> np.ndarray:
    """Clip-level per-frame confidence: each window's value at its centre frame; max where tracks overlap."""
    series = np.full(n_frames, np.nan)
    for track in tracks:
        centres = track.frames[: len(track.framewise_confidence)] + WINDOW_FRAMES // 2
        series[centres] = np.fmax(series[centres], track.framewise_confidence)
    return series


def measure_lipsync(
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray,
    sample_rate: int,
    *,
    syncnet_weights: Path,
    s3fd_weights: Path,
    config: LipsyncConfig | None = None,
) -> LipsyncResult:
    """Sync-C / Sync-D of a clip: ``frames`` uint8 [T, H, W, 3] RGB (or grey), ``audio`` float mono in [-1, 1].

    Raises ``MeasurementError`` when a weight file is missing and ``InputError`` for malformed input; input that is
    valid but cannot be scored (silent, too short, audio shorter than video, no face track) gives a result whose
    ``measurements()`` are not-measured rows carrying the reason.
    """
    cfg = config or LipsyncConfig()
    _require_weights(syncnet_weights, s3fd_weights)
    frames_rgb, notes = _rgb_frames(frames)
    audio = _mono_audio(audio)
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps) or fps <= 0:
        raise InputError("fps", "a finite frame rate > 0", fps)
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Integral) or sample_rate <= 0:
        raise InputError("sample_rate", "an integer sample rate > 0", sample_rate)
    fps, sample_rate = float(fps), int(sample_rate)

    # 1. rates
    reason = _not_measured_reason(frames_rgb, audio, fps, sample_rate, cfg)
    frames25, video_rs = resample_video(frames_rgb, fps, cfg.frame_rate)
    audio16, audio_rs = resample_audio(audio, sample_rate, cfg.sample_rate)
    resampling = (video_rs, audio_rs)
    if reason is not None:
        return LipsyncResult(cfg, resampling, len(frames25), 0, reason=reason, notes=tuple(notes))
    if len(audio16) > len(frames25) * SAMPLES_PER_FRAME + SAMPLES_PER_FRAME:
        notes.append(
            f"audio is {len(audio16) / cfg.sample_rate - len(frames25) / cfg.frame_rate:.2f} s longer than the video; the tail is unused"
        )

    # 2. faces
    s3fd = _cached_s3fd(str(s3fd_weights), _stamp(Path(s3fd_weights)), cfg.device)
    syncnet = _cached_syncnet(str(syncnet_weights), _stamp(Path(syncnet_weights)), cfg.device)
    detector = S3FDDetector(
        s3fd, scale=cfg.facedet_scale, conf_threshold=cfg.face_confidence, batch_size=cfg.detector_batch_size
    )
    detections = detector.detect(frames25)
    with_face = sum(1 for d in detections if len(d))
    if with_face == 0:
        return LipsyncResult(
            cfg, resampling, len(frames25), 0, reason="no face detected in any frame", notes=tuple(notes)
        )

    # 3. scenes and tracks
    tracks: list[FaceTrack] = []
    for scene in detect_scenes(frames25, rgb=True, threshold=cfg.scene_threshold, min_scene_len=cfg.min_scene_len):
        tracks += track_faces(
            detections,
            scene,
            min_track=cfg.min_track,
            max_gap=cfg.max_gap,
            min_face_size=cfg.min_face_size,
            iou_threshold=cfg.iou_threshold,
        )
    if not tracks:
        reason = (
            f"no face track: faces in {with_face}/{len(frames25)} frames, but none tracked for more than "
            f"{cfg.min_track} frames within one shot with a mean size > {cfg.min_face_size:g} px"
        )
        return LipsyncResult(cfg, resampling, len(frames25), with_face, reason=reason, notes=tuple(notes))

    # 4. SyncNet per track
    pcm16 = pcm16_levels(audio16)
    scored = [s for t in tracks if (s := _score_track(syncnet, frames25, pcm16, t, cfg)) is not None]
    reason = None if scored else "no face track has audio for a full 5-frame window"
    return LipsyncResult(
        cfg,
        resampling,
        len(frames25),
        with_face,
        tracks=tuple(scored),
        framewise_confidence=_framewise(len(frames25), scored),
        reason=reason,
        notes=tuple(notes),
    )


__all__ = ["LipsyncConfig", "LipsyncResult", "TrackSync", "measure_lipsync"]
