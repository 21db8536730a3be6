"""Driving-audio features: 25 fps alignment, all layer outputs, ±2 windows, clip windows, input rules."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from _tolerances import TWO_PASSES_TOL
from transformers import Wav2Vec2FeatureExtractor

from generator.audio import (
    AudioConfig,
    AudioEncoder,
    check_waveform,
    clip_audio_windows,
    frame_count,
    frame_windows,
    load_audio_file,
    num_clips,
    official_num_clips,
    resample,
)
from generator.tiny import TINY_AUDIO_HIDDEN, TINY_AUDIO_LAYERS, tiny_audio_encoder
from reports.errors import InputError


def tone(seconds: float, rate: int = 16_000, freq: float = 220.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * np.sin(2 * np.pi * 3.1 * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def encoder() -> AudioEncoder:
    return tiny_audio_encoder(seed=4)


@pytest.mark.parametrize(
    ("samples", "rate", "frames"),
    [
        (640, 16_000, 1),
        (641, 16_000, 2),
        (16_000, 16_000, 25),
        (44_100, 44_100, 25),
        (44_101, 44_100, 26),
        (1, 48_000, 1),
    ],
)
def test_frame_count_is_ceil_of_seconds_times_25(samples: int, rate: int, frames: int) -> None:
    assert frame_count(samples, rate) == frames == math.ceil(samples / rate * 25 - 1e-12)


def test_encode_shape_and_resampling(encoder: AudioEncoder) -> None:
    features = encoder.encode(tone(1.3, 44_100), 44_100)
    assert features.num_frames == 33  # ceil(1.3 · 25) = 33 (32.5 → 33)
    assert features.windows.shape == (33, 5, TINY_AUDIO_LAYERS, TINY_AUDIO_HIDDEN)
    assert features.waveform.shape == (20_800,)  # 1.3 s at 16 kHz
    assert torch.isfinite(features.windows).all()


def test_features_are_all_layers_of_wav2vec2_run_on_25fps_interpolated_cnn_features(encoder: AudioEncoder) -> None:
    """Independent check: HF's own forward with the CNN output replaced by a numpy linear interpolation
    (align_corners=True) to N steps must give the same 12 (here 2) layer outputs, ``hidden_states[1:]``."""
    speech = tone(0.9)
    n = frame_count(speech.size, 16_000)
    values = torch.from_numpy(
        np.asarray(encoder.feature_extractor(speech, sampling_rate=16_000).input_values[0], dtype=np.float32)
    )[None]
    ours = encoder(values, n)[0]  # [N, layers, hidden]

    model = encoder.wav2vec
    with torch.no_grad():
        cnn = model.feature_extractor(values)[0].numpy()  # [channels, steps at 50 Hz]
    positions = np.linspace(0, cnn.shape[1] - 1, n)  # align_corners=True
    interpolated = np.stack([np.interp(positions, np.arange(cnn.shape[1]), row) for row in cnn])
    original = model.feature_extractor
    model.feature_extractor = _Fixed(torch.from_numpy(interpolated[None].astype(np.float32)))
    try:
        with torch.no_grad():
            reference = model(values, output_hidden_states=True).hidden_states
    finally:
        model.feature_extractor = original
    assert len(reference) == TINY_AUDIO_LAYERS + 1
    expected = torch.stack(reference[1:], dim=2)[0]
    # two float32 passes of the same layers whose inputs differ by the interpolation's rounding (float32 weights vs
    # numpy's float64): measured 6.2e-6 on features up to |2.6|
    torch.testing.assert_close(ours, expected, atol=TWO_PASSES_TOL, rtol=0)


class _Fixed(torch.nn.Module):
    """Stands in for the CNN feature encoder: returns fixed features whatever the input."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = value

    def forward(self, _values: torch.Tensor) -> torch.Tensor:
        return self.value


def test_windows_clamp_at_both_ends() -> None:
    features = torch.arange(4, dtype=torch.float32)[:, None]
    windows = frame_windows(features, 2)[..., 0]
    assert windows.tolist() == [[0, 0, 0, 1, 2], [0, 0, 1, 2, 3], [0, 1, 2, 3, 3], [1, 2, 3, 3, 3]]


def test_clip_windows_prefix_span_and_padding() -> None:
    windows = torch.arange(60, dtype=torch.float32).reshape(60, 1, 1, 1).expand(60, 5, 1, 1).clone()
    first = clip_audio_windows(windows, 0)
    second = clip_audio_windows(windows, 1)
    assert first.shape == second.shape == (49, 5, 1, 1)
    assert (first[:2] == 0).all()  # clip 0: all-zero prefix
    assert first[2:, 0, 0, 0].tolist() == list(range(47))
    assert second[:2, 0, 0, 0].tolist() == [45.0, 46.0]  # last two frames of clip 0's span
    assert second[2:15, 0, 0, 0].tolist() == list(range(47, 60))
    assert (second[15:] == 59).all()  # short last span: last real frame repeated
    with pytest.raises(ValueError, match="starts after the audio ends"):
        clip_audio_windows(windows, 2)


@pytest.mark.parametrize(
    ("frames", "ours", "official"), [(47, 1, 2), (49, 2, 2), (60, 2, 3), (94, 2, 3), (250, 6, 7), (282, 6, 7)]
)
def test_no_padding_clip_count(frames: int, ours: int, official: int) -> None:
    assert num_clips(frames) == ours
    assert official_num_clips(frames) == official


@pytest.mark.parametrize(
    ("waveform", "rule"),
    [
        (np.zeros(0, np.float32), "must not be empty"),
        (np.full(100, 0.5, np.float32), "at least one video frame"),
        (np.zeros(16_000, np.float32), "must not be silent"),
        (np.where(np.arange(16_000) == 7, np.nan, 0.2).astype(np.float32), "must be finite"),
        (tone(1.5), "at most 1 s"),
    ],
)
def test_bad_audio_is_an_input_error_naming_the_rule(waveform: np.ndarray, rule: str) -> None:
    with pytest.raises(InputError, match=rule) as caught:
        check_waveform(waveform, 16_000, AudioConfig(max_seconds=1.0), subject="speech.wav")
    assert caught.value.subject == "speech.wav"


def test_encoder_refuses_silent_audio_and_checks_after_separation(encoder: AudioEncoder) -> None:
    with pytest.raises(InputError, match="silent"):
        encoder.encode(np.zeros(8000, np.float32), 16_000)
    muted = AudioEncoder(encoder.wav2vec, None, AudioConfig(), separator=lambda x, _sr: x * 0)
    with pytest.raises(InputError, match=r"after vocal separation.*silent"):
        muted.encode(tone(0.5), 16_000)


def test_separator_hook_feeds_the_encoder(encoder: AudioEncoder) -> None:
    speech = tone(0.6)
    seen: list[int] = []

    def separator(x: np.ndarray, rate: int) -> np.ndarray:
        seen.append(rate)
        return np.flip(x).copy()

    separated = AudioEncoder(encoder.wav2vec, None, AudioConfig(), separator=separator).encode(speech, 16_000)
    plain = encoder.encode(speech, 16_000)
    assert seen == [16_000]
    assert not torch.allclose(separated.windows, plain.windows)
    np.testing.assert_array_equal(separated.waveform, np.flip(speech))


def test_resample_length_and_tone_survives() -> None:
    x = tone(1.0, 44_100, 440.0)
    y = resample(x, 44_100, 16_000)
    assert y.shape == (16_000,) and y.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(int(np.argmax(spectrum)) - 440) <= 1


def test_from_pretrained_folder_round_trip(tmp_path: Path, encoder: AudioEncoder) -> None:
    encoder.wav2vec.save_pretrained(tmp_path)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False).save_pretrained(tmp_path)
    loaded = AudioEncoder.from_pretrained(tmp_path)
    speech = tone(0.5)
    torch.testing.assert_close(loaded.encode(speech, 16_000).windows, encoder.encode(speech, 16_000).windows)


def test_load_audio_file(shared_data: Path, tmp_path: Path) -> None:
    waveform, rate = load_audio_file(shared_data / "speech" / "hallo3_0001.wav")  # 44.1 kHz stereo, 9.8 s
    assert rate == 44_100 and waveform.ndim == 1 and waveform.dtype == np.float32
    assert 9.5 < waveform.size / rate < 10.0
    bogus = tmp_path / "notes.wav"
    bogus.write_text("not audio")
    with pytest.raises(InputError, match="readable audio file"):
        load_audio_file(bogus)
