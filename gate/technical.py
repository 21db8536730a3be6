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
    out = [
        Measurement("fps", float(fps), PROTOCOL, None, "frames/s"),
        Measurement("width", float(w), PROTOCOL, None, "px"),
        Measurement("height", float(h), PROTOCOL, None, "px"),
        Measurement("frame_count", float(n), PROTOCOL, None, "frames"),
        Measurement("duration_s", float(duration), PROTOCOL, None, "s"),
        Measurement("audio_present", 1.0 if has_audio else 0.0, PROTOCOL, True, "bool"),
    ]
    if has_audio:
        assert audio is not None and sample_rate is not None  # narrowed by has_audio
        drift = abs(audio.size / sample_rate - duration)
        out.append(
            Measurement(
                "audio_video_drift_s", float(drift), PROTOCOL + "; |audio duration - video duration|", False, "s"
            )
        )
    else:
        out.append(Measurement.not_measured("audio_video_drift_s", "the candidate has no audio track", PROTOCOL))
    return out
