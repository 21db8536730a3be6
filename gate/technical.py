"""Technical measurements of an encoded candidate: frame rate, size, duration, audio present, A/V length drift.

They are measured on the decoded file (what is released is what is measured), as ``Measurement`` rows the policy can
check like any metric.
"""

from __future__ import annotations

import numpy as np

from metrics.measurement import Measurement

PROTOCOL = "decoded from the encoded candidate with PyAV"


def measure_technical(
    frames: np.ndarray, fps: float, audio: np.ndarray | None, sample_rate: int | None
) -> list[Measurement]:
    n, h, w = int(frames.shape[0]), int(frames.shape[1]), int(frames.shape[2])
    duration = n / fps if fps > 0 else 0.0
    has_audio = audio is not None and sample_rate is not None and audio.size > 0
    values = {
        "fps": float(fps),
        "width": float(w),
        "height": float(h),
        "frame_count": float(n),
        "duration_s": float(duration),
        "audio_present": 1.0 if has_audio else 0.0,
    }
    out = [Measurement(name, value, PROTOCOL) for name, value in values.items()]  # unit, direction: metrics.specs
    if has_audio:
        assert audio is not None and sample_rate is not None  # narrowed by has_audio
        drift = abs(audio.size / sample_rate - duration)
        out.append(Measurement("audio_video_drift_s", float(drift), PROTOCOL + "; |audio duration - video duration|"))
    else:
        out.append(Measurement.not_measured("audio_video_drift_s", "the candidate has no audio track", PROTOCOL))
    return out
