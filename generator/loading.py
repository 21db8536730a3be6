"""Assemble the full-size Hallo3 pipeline from explicit weight paths (dependency injection: ``gate.weights`` decides
where the files are; this module only loads them).

Two directory layouts (``load_directory`` tells them apart; ``Hallo3Pipeline.from_directory`` calls it):

* converted (``save_directory`` writes it): ``transformer/``, ``reference_net/`` (diffusers folders, safetensors),
  ``vae/`` (diffusers folder), ``text_encoder/`` (T5 encoder + tokenizer files), ``audio_encoder/`` (wav2vec2 +
  ``preprocessor_config.json``), optionally ``face_analysis/`` (an insightface pack);
* the official ``pretrained_models/`` release (``hallo3/``, …), converted while loading (``load_official_pipeline``).

Explicit paths instead of a directory: ``Hallo3Weights``, with converted diffusers folders: ``converted_dir`` as written by ``generator.convert.save_converted``
  (``transformer/`` + ``reference_net/``), a VAE (diffusers folder with ``config.json``, or the official ``3d-vae.pt``),
  the T5 v1.1 XXL folder (encoder weights + tokenizer files), the wav2vec2-base-960h folder, an insightface pack;
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKLCogVideoX
from transformers import T5EncoderModel, T5Tokenizer

from generator.audio import AudioConfig, AudioEncoder, Separator
from generator.convert import StateDict, from_official, load_converted, load_vae_state
from generator.face import FaceAnalyser, load_insightface
from generator.pipeline import Hallo3Pipeline
from generator.sampling import make_scheduler
from reports.errors import UsageError

VAE_SCALING_FACTOR = 0.7  # CogVideoX-5B latent scale (spec §2)


@dataclass(frozen=True)
class Hallo3Weights:
    """Where every weight file is. ``face_pack`` may be None when a face analyser is injected instead."""

    converted_dir: Path
    vae: Path
    t5_dir: Path
    wav2vec_dir: Path
    face_pack: Path | None = None


def _need(path: Path, what: str, marker: str | None = None) -> Path:
    target = path / marker if marker else path
    if not target.exists():
        raise UsageError(str(path), f"{what} must exist" + (f" (with {marker})" if marker else ""), "missing")
    return path


def vae_from_state(state: StateDict, dtype: torch.dtype) -> AutoencoderKLCogVideoX:
    """The CogVideoX VAE (default 5B geometry, scaling factor 0.7) with converted ``3d-vae.pt`` weights, strict."""
    vae = AutoencoderKLCogVideoX(scaling_factor=VAE_SCALING_FACTOR)
    vae.load_state_dict(state, strict=True)
    return vae.to(dtype).eval()


def load_vae(path: Path, dtype: torch.dtype) -> AutoencoderKLCogVideoX:
    """A diffusers VAE folder or the official ``3d-vae.pt``; the latent scale must be 0.7."""
    if path.is_dir():
        _need(path, "VAE folder", "config.json")
        vae = AutoencoderKLCogVideoX.from_pretrained(path, torch_dtype=dtype).eval()
    else:
        vae = vae_from_state(load_vae_state(_need(path, "VAE checkpoint")), dtype)
    if abs(float(vae.config.scaling_factor) - VAE_SCALING_FACTOR) > 1e-9:
        raise UsageError(
            str(path), f"VAE scaling_factor must be {VAE_SCALING_FACTOR} (CogVideoX-5B)", vae.config.scaling_factor
        )
    return vae


def load_text_encoder(folder: Path, dtype: torch.dtype) -> tuple[T5EncoderModel, T5Tokenizer]:
    _need(folder, "T5 folder", "config.json")
    encoder = T5EncoderModel.from_pretrained(folder, torch_dtype=dtype).eval()
    return encoder, T5Tokenizer.from_pretrained(folder)


def assemble(
    transformer: torch.nn.Module,
    ref_net: torch.nn.Module,
    vae: AutoencoderKLCogVideoX,
    text_encoder: T5EncoderModel,
    tokenizer: T5Tokenizer,
    wav2vec_dir: Path,
    face_analyser: FaceAnalyser | None,
    dtype: torch.dtype,
    audio_config: AudioConfig | None,
    separator: Separator | None,
) -> Hallo3Pipeline:
    audio = AudioEncoder.from_pretrained(_need(wav2vec_dir, "wav2vec2 folder", "config.json"), audio_config, separator)
    pipe = Hallo3Pipeline(
        transformer=transformer.to(dtype).eval(),
        ref_net=ref_net.to(dtype).eval(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=make_scheduler(),
        audio_encoder=audio.to(dtype),
        face_analyser=face_analyser,
    )
    return pipe


def load_pipeline(
    weights: Hallo3Weights,
    dtype: torch.dtype = torch.bfloat16,
    face_analyser: FaceAnalyser | None = None,
    audio_config: AudioConfig | None = None,
    separator: Separator | None = None,
) -> Hallo3Pipeline:
    """The full pipeline from converted folders (see module doc). Memory modes: ``pipe.apply_memory_config``."""
    transformer, ref_net = load_converted(_need(weights.converted_dir, "converted Hallo3 folder"), dtype)
    text_encoder, tokenizer = load_text_encoder(weights.t5_dir, dtype)
    analyser = face_analyser
    if analyser is None and weights.face_pack is not None:
        analyser = load_insightface(weights.face_pack)
    return assemble(
        transformer,
        ref_net,
        load_vae(weights.vae, dtype),
        text_encoder,
        tokenizer,
        weights.wav2vec_dir,
        analyser,
        dtype,
        audio_config,
        separator,
    )


def load_official_pipeline(
    pretrained_dir: str | Path,
    dtype: torch.dtype = torch.bfloat16,
    face_analyser: FaceAnalyser | None = None,
    audio_config: AudioConfig | None = None,
    separator: Separator | None = None,
) -> Hallo3Pipeline:
    """The official ``pretrained_models/`` layout (``hallo3/``, ``cogvideox-5b-i2v-sat/vae/3d-vae.pt``,
    ``t5-v1_1-xxl/``, ``wav2vec/wav2vec2-base-960h/``, ``face_analysis/models/``), converted while loading."""
    root = Path(pretrained_dir)
    release = from_official(root, dtype=dtype)
    if release.vae_state is None or release.t5_dir is None or release.wav2vec_dir is None:
        missing = [
            name
            for name, present in (
                ("cogvideox-5b-i2v-sat/vae/3d-vae.pt", release.vae_state is not None),
                ("t5-v1_1-xxl/", release.t5_dir is not None),
                ("wav2vec/wav2vec2-base-960h/", release.wav2vec_dir is not None),
            )
            if not present
        ]
        raise UsageError(
            str(root), "the official release must contain every component", f"missing {', '.join(missing)}"
        )
    text_encoder, tokenizer = load_text_encoder(release.t5_dir, dtype)
    analyser = face_analyser
    pack = root / "face_analysis" / "models"
    if analyser is None and pack.is_dir():
        analyser = load_insightface(pack)
    return assemble(
        release.transformer,
        release.reference_net,
        vae_from_state(release.vae_state, dtype),
        text_encoder,
        tokenizer,
        release.wav2vec_dir,
        analyser,
        dtype,
        audio_config,
        separator,
    )


def default_dtype() -> torch.dtype:
    """bf16 on a GPU (as the official inference), float32 on a CPU (bf16 convolutions are slow there)."""
    return torch.bfloat16 if torch.cuda.is_available() else torch.float32


def save_directory(pipe: Hallo3Pipeline, root: str | Path) -> Path:
    """Write the converted layout ``load_directory`` reads (safetensors everywhere; no face pack)."""
    root = Path(root)
    pipe.transformer.save_pretrained(root / "transformer", safe_serialization=True)
    pipe.ref_net.save_pretrained(root / "reference_net", safe_serialization=True)
    pipe.vae.save_pretrained(root / "vae", safe_serialization=True)
    if pipe.text_encoder is None:
        raise UsageError("text_encoder", "cannot save a pipeline whose text encoder was released", "released")
    pipe.text_encoder.save_pretrained(root / "text_encoder", safe_serialization=True)
    pipe.tokenizer.save_pretrained(root / "text_encoder")
    pipe.audio_encoder.wav2vec.save_pretrained(root / "audio_encoder", safe_serialization=True)
    pipe.audio_encoder.feature_extractor.save_pretrained(root / "audio_encoder")
    return root


def load_directory(
    root: str | Path,
    dtype: torch.dtype | None = None,
    face_analyser: FaceAnalyser | None = None,
    audio_config: AudioConfig | None = None,
    separator: Separator | None = None,
) -> Hallo3Pipeline:
    """A converted directory (``save_directory``) or the official release folder, told apart by their contents."""
    root = Path(root)
    dtype = dtype or default_dtype()
    if (root / "hallo3").is_dir():
        return load_official_pipeline(root, dtype, face_analyser, audio_config, separator)
    if not (root / "transformer").is_dir():
        raise UsageError(
            str(root),
            "weights directory must be the official release (hallo3/, …) or a converted one (transformer/, …)",
            "neither layout",
        )
    face_pack = root / "face_analysis"
    weights = Hallo3Weights(
        converted_dir=root,
        vae=root / "vae",
        t5_dir=root / "text_encoder",
        wav2vec_dir=root / "audio_encoder",
        face_pack=face_pack if face_pack.is_dir() else None,
    )
    return load_pipeline(weights, dtype, face_analyser, audio_config, separator)
