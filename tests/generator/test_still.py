"""The ``still`` baseline: the reference repeated for the audio's length at 25 fps, Hallo3's output contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from generator.output import GenerationOutput
from generator.still import StillBackend
from reports.errors import InputError


def speech(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.2 * np.sin(2 * np.pi * 180 * t)).astype(np.float32)


def test_square_portrait_gives_480x480_frames_for_the_audio_length() -> None:
    portrait = np.random.default_rng(1).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    audio = speech(2.01, 44_100)
    out = StillBackend().generate(portrait, audio, 44_100, prompt="hello", seed=7)
    assert isinstance(out, GenerationOutput) and out.backend == "still"
    assert out.frames.shape == (51, 480, 480, 3) and out.frames.dtype == np.uint8  # ceil(2.01 · 25) = 51
    assert out.fps == 25.0 and out.seed == 7
    assert (out.frames == out.frames[0]).all()  # every frame is the reference
    np.testing.assert_array_equal(out.audio, audio)
    assert out.sample_rate == 44_100
    json.dumps(out.record())


def test_wide_portrait_keeps_480x720_and_matches_the_resized_reference() -> None:
    portrait = np.zeros((400, 600, 3), dtype=np.uint8)
    portrait[:, :, 2] = 255
    out = StillBackend().generate(portrait, speech(0.4, 16_000), 16_000)
    assert out.frames.shape == (10, 480, 720, 3)
    assert (out.frames[..., 2] == 255).all() and (out.frames[..., :2] == 0).all()


def test_stereo_audio_is_mixed_to_mono() -> None:
    stereo = np.stack([speech(0.2, 16_000), -0.5 * speech(0.2, 16_000)], axis=1)
    out = StillBackend().generate(np.zeros((100, 150, 3), np.uint8), stereo, 16_000)
    np.testing.assert_allclose(out.audio, 0.25 * speech(0.2, 16_000), atol=1e-7)


def test_bad_inputs_are_input_errors(tmp_path: Path) -> None:
    backend = StillBackend()
    with pytest.raises(InputError, match="silent"):
        backend.generate(np.zeros((100, 100, 3), np.uint8), np.zeros(16_000, np.float32), 16_000)
    text = tmp_path / "face.png"
    text.write_text("no pixels here")
    with pytest.raises(InputError, match="readable image"):
        backend.generate(text, speech(1.0, 16_000), 16_000)


def test_real_portrait_and_speech(portraits: list[Path], shared_data: Path) -> None:
    from generator.audio import load_audio_file

    audio, rate = load_audio_file(shared_data / "speech" / "hallo3_0008.wav")  # 48 kHz, 10.5 s
    out = StillBackend().generate(portraits[2], audio, rate)
    assert out.num_frames == -(-audio.size * 25 // rate)
    assert abs(out.duration_s - audio.size / rate) < 0.04
