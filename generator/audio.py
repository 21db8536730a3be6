"""Driving-audio features for Hallo3: wav2vec2 run at 25 steps per second, all encoder layers, ±2-frame windows.

What the model was trained on (spec §1.4): the waveform at 16 kHz, normalised by ``Wav2Vec2FeatureExtractor``
(zero mean, unit variance); the wav2vec2 CNN features (50 Hz) are linearly interpolated in time
(``align_corners=True``) to exactly ``N = ceil(samples / 16000 · 25)`` steps *before* the feature projection and the
transformer encoder; the outputs of all 12 encoder layers are stacked (``hidden_states[1:]``); every frame gets the
window of frames i−2 … i+2 with clamped indices → ``[N, 5, 12, 768]``.

Deviations from the official preprocessing, on purpose:

* Vocal separation. The official code first isolates the vocals with ``audio-separator`` (MDX-Net
  ``Kim_Vocal_2.onnx``). Here separation is an optional hook (``separator``: a callable taking and returning a mono
  float32 waveform at the given rate); none is applied by default, so music or noise in the driving audio reaches the
  model unfiltered. Pass a separator to reproduce the official step.
* The waveform is not zero-padded to a multiple of 49 frames before wav2vec2 (the official code pads, which also costs
  an extra clip, spec §5); features are computed for the true length N. The last few frames therefore see slightly
  different encoder context than officially.
* Resampling to 16 kHz uses a polyphase filter (``scipy.signal.resample_poly``) instead of ffmpeg's resampler.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.signal import resample_poly
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

from reports.errors import InputError, UsageError

Separator = Callable[[np.ndarray, int], np.ndarray]
"""A vocal separator: (mono float32 waveform, sample rate) → vocals at the same rate and length."""


@dataclass(frozen=True)
class AudioConfig:
    """How driving audio is checked and turned into per-frame features."""

    sample_rate: int = 16_000  # wav2vec2's rate
    fps: int = 25  # video frame rate the features are aligned to
    context: int = 2  # frames either side in each window (window length 2·context + 1 = 5)
    max_seconds: float = 300.0  # longer audio is refused (memory and time grow with it)
    silence_peak: float = 1e-4  # audio whose peak |sample| stays below this (≈ −80 dBFS) counts as silent

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class AudioFeatures:
    """Windowed features for one driving waveform."""

    windows: torch.Tensor  # [N, 2·context+1, layers, hidden] float32
    num_frames: int  # N = ceil(samples / sample_rate · fps)
    waveform: np.ndarray  # the (separated) 16 kHz mono waveform the features were computed from, float32


def frame_count(num_samples: int, sample_rate: int, fps: int = 25) -> int:
    """``ceil(num_samples / sample_rate · fps)`` in exact integer arithmetic."""
    return -(-num_samples * fps // sample_rate)


def to_mono_float32(waveform: np.ndarray, subject: str = "audio") -> np.ndarray:
    """Mix ``[samples]`` or ``[samples, channels]`` to mono float32."""
    array = np.asarray(waveform)
    if array.ndim == 2:
        array = array.mean(axis=1)
    if array.ndim != 1:
        raise InputError(subject, "audio must be a 1-D mono or 2-D [samples, channels] array", f"shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number):
        raise InputError(subject, "audio samples must be numbers", f"dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.integer):
        scale = float(np.iinfo(array.dtype).max) + 1.0
        return (array.astype(np.float64) / scale).astype(np.float32)
    return array.astype(np.float32)


def check_waveform(waveform: np.ndarray, sample_rate: int, config: AudioConfig, subject: str = "audio") -> None:
    """Refuse audio the model cannot be driven by: empty, too short, non-finite, silent or too long."""
    if sample_rate <= 0:
        raise InputError(subject, "sample rate must be a positive number of Hz", sample_rate)
    if waveform.size == 0:
        raise InputError(subject, "audio must not be empty (zero-length audio has no frame to animate)", "0 samples")
    seconds = waveform.size / sample_rate
    if seconds < 1.0 / config.fps:
        raise InputError(subject, f"audio must last at least one video frame (1/{config.fps} s)", f"{seconds:.4f} s")
    if not np.all(np.isfinite(waveform)):
        bad = int(np.count_nonzero(~np.isfinite(waveform)))
        raise InputError(subject, "audio samples must be finite (no NaN or infinity)", f"{bad} non-finite samples")
    peak = float(np.max(np.abs(waveform)))
    if peak < config.silence_peak:
        raise InputError(
            subject, f"audio must not be silent (peak |sample| >= {config.silence_peak:g})", f"peak {peak:.3g}"
        )
    if seconds > config.max_seconds:
        raise InputError(subject, f"audio must last at most {config.max_seconds:g} s", f"{seconds:.2f} s")


def resample(waveform: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling by the exact rational factor ``rate_out / rate_in``."""
    if rate_in == rate_out:
        return waveform.astype(np.float32, copy=False)
    ratio = Fraction(rate_out, rate_in)
    return resample_poly(waveform, ratio.numerator, ratio.denominator).astype(np.float32)


def frame_windows(features: torch.Tensor, context: int) -> torch.Tensor:
    """``[N, ...]`` → ``[N, 2·context+1, ...]``: frame i gets frames i−context … i+context, indices clamped."""
    n = features.shape[0]
    offsets = torch.arange(-context, context + 1, device=features.device)
    index = (torch.arange(n, device=features.device)[:, None] + offsets[None, :]).clamp(0, n - 1)
    return features[index]


class AudioEncoder(torch.nn.Module):
    """wav2vec2 features at the video frame rate, windowed per frame (the Hallo3 audio conditioning input)."""

    def __init__(
        self,
        wav2vec: Wav2Vec2Model,
        feature_extractor: Wav2Vec2FeatureExtractor | None = None,
        config: AudioConfig | None = None,
        separator: Separator | None = None,
    ) -> None:
        super().__init__()
        self.wav2vec = wav2vec.eval()
        self.feature_extractor = feature_extractor or Wav2Vec2FeatureExtractor(
            feature_size=1, sampling_rate=16_000, padding_value=0.0, do_normalize=True, return_attention_mask=False
        )
        self.audio_config = config or AudioConfig()
        self.separator = separator

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, config: AudioConfig | None = None, separator: Separator | None = None
    ) -> AudioEncoder:
        """Load a Hugging Face wav2vec2 folder (``config.json`` + ``model.safetensors``), e.g. wav2vec2-base-960h."""
        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise UsageError(str(folder), "wav2vec2 weights must be a Hugging Face folder with config.json", "missing")
        model = Wav2Vec2Model.from_pretrained(folder, use_safetensors=(folder / "model.safetensors").is_file())
        extractor = None
        if (folder / "preprocessor_config.json").is_file():
            extractor = Wav2Vec2FeatureExtractor.from_pretrained(folder)
        return cls(model, extractor, config, separator)

    @classmethod
    def from_config(cls, wav2vec_config: Wav2Vec2Config, config: AudioConfig | None = None) -> AudioEncoder:
        """Randomly initialised encoder (tests, tiny pipelines)."""
        return cls(Wav2Vec2Model(wav2vec_config), None, config)

    @property
    def device(self) -> torch.device:
        return next(self.wav2vec.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.wav2vec.parameters()).dtype

    @property
    def num_layers(self) -> int:
        return int(self.wav2vec.config.num_hidden_layers)

    @property
    def hidden_size(self) -> int:
        return int(self.wav2vec.config.hidden_size)

    def forward(self, input_values: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Normalised 16 kHz waveform ``[B, samples]`` → per-frame layer outputs ``[B, num_frames, layers, hidden]``."""
        model = self.wav2vec
        cnn = model.feature_extractor(input_values).transpose(1, 2)  # [B, ~50 Hz steps, conv_dim]
        cnn = F.interpolate(cnn.transpose(1, 2), size=num_frames, mode="linear", align_corners=True).transpose(1, 2)
        hidden, _ = model.feature_projection(cnn)
        layer_outputs: list[torch.Tensor] = []
        hooks = [
            layer.register_forward_hook(
                lambda _m, _i, out: layer_outputs.append(out[0] if isinstance(out, tuple) else out)
            )
            for layer in model.encoder.layers
        ]
        try:
            model.encoder(hidden)
        finally:
            for hook in hooks:
                hook.remove()
        if model.config.do_stable_layer_norm:  # the final LayerNorm belongs to the last reported hidden state
            layer_outputs[-1] = model.encoder.layer_norm(layer_outputs[-1])
        return torch.stack(layer_outputs, dim=2)

    @torch.no_grad()
    def encode(self, waveform: np.ndarray, sample_rate: int, subject: str = "audio") -> AudioFeatures:
        """Check, (optionally) separate, resample, normalise and encode one waveform → ``AudioFeatures``."""
        config = self.audio_config
        mono = to_mono_float32(waveform, subject)
        check_waveform(mono, sample_rate, config, subject)
        if self.separator is not None:
            mono = to_mono_float32(self.separator(mono, sample_rate), f"{subject} (after vocal separation)")
            check_waveform(mono, sample_rate, config, f"{subject} (after vocal separation)")
        speech = resample(mono, sample_rate, config.sample_rate)
        num_frames = frame_count(speech.size, config.sample_rate, config.fps)
        normalised = np.asarray(
            self.feature_extractor(speech, sampling_rate=config.sample_rate).input_values[0], dtype=np.float32
        )
        values = torch.from_numpy(normalised)[None].to(device=self.device, dtype=self.dtype)
        per_frame = self(values, num_frames)[0].float()
        windows = frame_windows(per_frame, config.context)
        return AudioFeatures(windows=windows.cpu(), num_frames=num_frames, waveform=speech)


def clip_audio_windows(
    windows: torch.Tensor, clip_index: int, new_frames: int = 47, prefix_frames: int = 2
) -> torch.Tensor:
    """The audio input of one clip: ``[prefix ; windows[k·new : (k+1)·new]]`` padded to ``prefix + new`` frames.

    Clip 0's prefix is all-zero features; later clips repeat the last ``prefix_frames`` windows of the previous clip's
    span. A short last span is padded by repeating its last real frame (spec §5).
    """
    start = clip_index * new_frames
    span = windows[start : start + new_frames]
    if span.shape[0] == 0:
        raise ValueError(f"clip {clip_index} starts after the audio ends ({windows.shape[0]} frames)")
    if span.shape[0] < new_frames:
        span = torch.cat([span, span[-1:].expand(new_frames - span.shape[0], *span.shape[1:])], dim=0)
    if clip_index == 0:
        prefix = torch.zeros(prefix_frames, *windows.shape[1:], dtype=windows.dtype, device=windows.device)
    else:
        prefix = windows[start - prefix_frames : start]
    return torch.cat([prefix, span], dim=0)


def num_clips(num_frames: int, new_frames: int = 47) -> int:
    """Clips needed for ``num_frames`` frames when each clip adds ``new_frames`` (no 49-padding, spec §5)."""
    return max(1, math.ceil(num_frames / new_frames))


def official_num_clips(num_frames: int, clip_length: int = 49, new_frames: int = 47) -> int:
    """What the official code runs: the frame count padded up to a multiple of 49 first, then ceil(N_pad / 47)."""
    padded = math.ceil(num_frames / clip_length) * clip_length
    return math.ceil(padded / new_frames)


def load_audio_file(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode an audio file (any container PyAV/ffmpeg reads) to mono float32 at its own rate."""
    import av

    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "audio file must exist", "not found")
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise InputError(str(path), "file must contain an audio stream", "no audio stream")
            stream = container.streams.audio[0]
            rate = int(stream.rate or stream.codec_context.sample_rate)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            chunks = [
                out.to_ndarray().reshape(-1) for frame in container.decode(stream) for out in resampler.resample(frame)
            ]
            chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    except av.error.FFmpegError as error:
        raise InputError(str(path), "file must be a readable audio file", type(error).__name__) from error
    waveform = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    return waveform, rate
