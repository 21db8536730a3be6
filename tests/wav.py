"""Speech files for tests: 16-bit mono PCM WAV written with the standard library."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np


def write_wav(path: Path, audio: np.ndarray, rate: int, *, claimed_rate: int | None = None) -> Path:
    """``audio`` (float, -1..1) as 16-bit mono PCM; ``claimed_rate`` writes a different rate into the header than the
    samples were made at."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(claimed_rate or rate)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return path
