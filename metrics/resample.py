"""Bring audio and video to the rates a metric's protocol assumes, and say what was done.

* Audio: polyphase resampling (``scipy.signal.resample_poly``, Kaiser window, up/down reduced by their gcd).
* Video: frame selection equal to ffmpeg's fps filter (``-vf fps=25``, ``round=near``; the tests compare with ffmpeg
  itself): input frame ``i`` at ``t_i = i / fps_in`` gets the output slot ``round(t_i * fps_out)`` (halves away from
  zero); output frame ``n`` shows the last input frame whose slot is <= ``n`` (frames are dropped or repeated, never
  blended). The output has ``round(T * fps_out / fps_in)`` frames, i.e. the same duration, so it stays aligned with
  the audio. syncnet_python instead runs ``ffmpeg -r 25`` into an AVI, which ffmpeg (5.1) writes variable-rate: frames
  are only ever dropped, never repeated, so input below 25 fps comes out short and time-compressed (e.g. 72 frames
  for 3 s at 24 fps) and the phase of dropped frames above 25 fps differs. For 25 fps input both are the identity.

Both return a small record so results can state "resampled 44100 Hz -> 16000 Hz" or "25.0 fps (unchanged)".
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly

from reports.errors import InputError


@dataclass(frozen=True)
class Resampling:
    """What a resampling step did. ``source``/``target`` are Hz for audio, fps for video."""

    kind: str  # "audio" or "video"
    source: float
    target: float
    method: str
    input_length: int
    output_length: int

    @property
    def changed(self) -> bool:
        return self.source != self.target

    def describe(self) -> str:
        unit = "Hz" if self.kind == "audio" else "fps"
        if not self.changed:
            return f"{self.kind}: {self.source:g} {unit} (unchanged, {self.input_length} samples/frames)"
        return (
            f"{self.kind}: {self.source:g} {unit} -> {self.target:g} {unit} by {self.method} "
            f"({self.input_length} -> {self.output_length})"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "source": self.source,
            "target": self.target,
            "method": self.method,
            "input_length": self.input_length,
            "output_length": self.output_length,
            "changed": self.changed,
        }


def _positive_rate(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise InputError(name, "a finite rate > 0", value)
    return float(value)


def resample_audio(audio: np.ndarray, sample_rate: int, target_rate: int = 16000) -> tuple[np.ndarray, Resampling]:
    """Mono float audio -> float32 at ``target_rate``."""
    sample_rate = _positive_rate("sample_rate", sample_rate)
    if int(sample_rate) != sample_rate:
        raise InputError("sample_rate", "an integer number of samples per second", sample_rate)
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise InputError("audio", "mono samples, shape [N]", audio.shape)
    if int(sample_rate) == target_rate:
        out = audio.astype(np.float32, copy=False)
        return out, Resampling("audio", float(sample_rate), float(target_rate), "none", len(audio), len(out))
    ratio = Fraction(target_rate, int(sample_rate))
    out = resample_poly(audio.astype(np.float64), ratio.numerator, ratio.denominator).astype(np.float32)
    method = f"scipy resample_poly up={ratio.numerator} down={ratio.denominator}"
    return out, Resampling("audio", float(sample_rate), float(target_rate), method, len(audio), len(out))


def _round_half_away(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def frame_selection(n_frames: int, fps: float, target_fps: float) -> np.ndarray:
    """Indices of input frames making up the ``target_fps`` sequence (ffmpeg fps filter, round=near)."""
    fps = _positive_rate("fps", fps)
    target_fps = _positive_rate("target_fps", target_fps)
    if n_frames <= 0:
        return np.zeros(0, dtype=np.int64)
    ratio = Fraction(target_fps).limit_denominator(1_000_000) / Fraction(fps).limit_denominator(1_000_000)
    slots = _round_half_away(np.arange(n_frames) * float(ratio)).astype(np.int64)
    n_out = int(_round_half_away(np.array([n_frames * float(ratio)]))[0])
    # Output n shows the last input frame with slot <= n; before the first input frame's slot, the first frame.
    chosen = np.searchsorted(slots, np.arange(n_out), side="right") - 1
    return np.clip(chosen, 0, n_frames - 1)


def resample_video(frames: np.ndarray, fps: float, target_fps: float = 25.0) -> tuple[np.ndarray, Resampling]:
    """Frames [T, ...] at ``fps`` -> frames at ``target_fps`` by dropping/repeating (a view when unchanged)."""
    fps = _positive_rate("fps", fps)
    if fps == target_fps:
        return frames, Resampling("video", fps, float(target_fps), "none", len(frames), len(frames))
    index = frame_selection(len(frames), fps, target_fps)
    method = "frame selection (ffmpeg -r / fps filter, round=near)"
    return frames[index], Resampling("video", fps, float(target_fps), method, len(frames), len(index))
