"""The output contract every generator backend honours (Hallo3 pipeline, ``still`` baseline).

``gate`` consumes only this: RGB frames, the audio they are driven by, and the record of how they were made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class GenerationOutput:
    """Frames ``uint8 [N, H, W, 3]`` (RGB) at ``fps``, with the mono ``float32`` audio that drives them.

    ``config`` holds every setting that shaped the output (JSON-serialisable, for the audit record); ``seed`` the
    random seed; ``backend`` the backend's name (``hallo3``, ``still``).
    """

    frames: np.ndarray
    fps: float
    audio: np.ndarray
    sample_rate: int
    config: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    backend: str = ""

    def __post_init__(self) -> None:
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 [N, H, W, 3], got {self.frames.dtype} {self.frames.shape}")
        if self.audio.ndim != 1 or self.audio.dtype != np.float32:
            raise ValueError(f"audio must be mono float32, got {self.audio.dtype} {self.audio.shape}")
        if self.fps <= 0 or self.sample_rate <= 0:
            raise ValueError(f"fps and sample_rate must be positive, got {self.fps} and {self.sample_rate}")

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps

    def record(self) -> dict[str, Any]:
        """What the audit record stores about this output (everything but the media itself)."""
        return {
            "backend": self.backend,
            "seed": self.seed,
            "fps": self.fps,
            "num_frames": self.num_frames,
            "height": int(self.frames.shape[1]),
            "width": int(self.frames.shape[2]),
            "sample_rate": self.sample_rate,
            "audio_samples": int(self.audio.size),
            "config": self.config,
        }


class Backend(Protocol):
    """A generator backend: a reference portrait plus driving audio in, a ``GenerationOutput`` out."""

    name: str

    def generate(
        self,
        image: Any,
        audio: np.ndarray,
        sample_rate: int,
        prompt: str = "",
        seed: int = 0,
    ) -> GenerationOutput: ...
