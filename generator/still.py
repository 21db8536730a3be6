"""The ``still`` baseline backend: the reference portrait, unmoving, for the length of the audio.

It shares Hallo3's output contract (25 fps, the same 480×720 resize rules, square portraits cropped back to 480×480,
N = ceil(audio seconds · 25) frames, the driving audio attached), so metrics can be calibrated against a video that
has a perfect identity and no lip motion at all, and comparison reports have a floor to compare against.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from generator.audio import AudioConfig, check_waveform, frame_count, to_mono_float32
from generator.face import TARGET_HEIGHT, TARGET_WIDTH, load_image, resize_to_target
from generator.output import GenerationOutput


@dataclass(frozen=True)
class StillConfig:
    height: int = TARGET_HEIGHT
    width: int = TARGET_WIDTH
    fps: int = 25
    crop_square_output: bool = True


class StillBackend:
    """Reference image repeated for the audio's duration (audio checked by the same rules as for Hallo3)."""

    name = "still"

    def __init__(self, config: StillConfig | None = None, audio_config: AudioConfig | None = None) -> None:
        self.config = config or StillConfig()
        self.audio_config = audio_config or AudioConfig(fps=self.config.fps)

    def generate(
        self,
        image: str | Path | Image.Image | np.ndarray,
        audio: np.ndarray,
        sample_rate: int,
        prompt: str = "",
        seed: int = 0,
        **_: Any,
    ) -> GenerationOutput:
        config = self.config
        rgb = load_image(image)
        mono = to_mono_float32(audio)
        check_waveform(mono, sample_rate, self.audio_config)
        frame = resize_to_target(rgb, config.height, config.width)
        pixels = ((frame.clamp(-1.0, 1.0) + 1.0) * 127.5).round().byte().permute(1, 2, 0).numpy()
        square = rgb.shape[0] == rgb.shape[1]
        if square and config.crop_square_output:
            left = (config.width - config.height) // 2
            pixels = pixels[:, left : left + config.height]
        count = frame_count(mono.size, int(sample_rate), config.fps)
        frames = np.ascontiguousarray(np.broadcast_to(pixels, (count, *pixels.shape)))
        record = {
            "backend": self.name,
            "seed": int(seed),
            "generation": asdict(config),
            "audio": self.audio_config.to_dict() | {"num_frames": count},
            "reference": {"square": square, "source_size": [int(rgb.shape[0]), int(rgb.shape[1])]},
            "prompt": prompt,
        }
        return GenerationOutput(
            frames=frames,
            fps=float(config.fps),
            audio=mono,
            sample_rate=int(sample_rate),
            config=record,
            seed=int(seed),
            backend=self.name,
        )
