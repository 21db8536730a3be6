"""A complete Hallo3 pipeline at tiny width with random seeded weights, built from configs (no downloads).

Every component is the real class the full-size pipeline uses — ``Hallo3Transformer``, ``Hallo3ReferenceNet``,
``AutoencoderKLCogVideoX``, ``T5EncoderModel`` with a real SentencePiece tokenizer trained here on a few sentences,
``Wav2Vec2Model`` — only the widths are small, so the whole generation path runs on a CPU in seconds. The output is
noise-like video (the weights are random); it exercises shapes, clip logic, conditioning and determinism, not quality.

``TinyFaceAnalyser`` detects faces for real (dlib's HOG detector) but its "identity embedding" is a fixed random
projection of the face crop, not a recognition model: use it only with the tiny pipeline.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKLCogVideoX
from transformers import T5Config, T5EncoderModel, T5Tokenizer, Wav2Vec2Config

from generator.audio import AudioConfig, AudioEncoder
from generator.face import FaceAnalyser
from generator.pipeline import GenerationConfig, Hallo3Pipeline
from generator.reference import Hallo3ReferenceNet
from generator.sampling import make_scheduler
from generator.transformer import Hallo3Transformer
from reports.errors import UsageError


@dataclass(frozen=True)
class Sizes:
    """Every width of a scaled-down pipeline (pixel sizes must be multiples of 16: VAE ×8, patch 2)."""

    height: int = 32
    width: int = 48
    heads: int = 2
    head_dim: int = 16
    layers: int = 2
    time_embed_dim: int = 16
    text_dim: int = 16
    text_layers: int = 2
    audio_layers: int = 2
    audio_hidden: int = 16
    audio_intermediate: int = 16
    audio_tokens: int = 4
    audio_dim: int = 16
    face_dim: int = 16
    vae_channels: int = 8


TINY = Sizes()
MID = Sizes(
    height=96,
    width=144,
    heads=4,
    head_dim=64,
    layers=4,
    time_embed_dim=64,
    text_dim=64,
    audio_layers=4,
    audio_hidden=64,
    audio_intermediate=128,
    audio_tokens=8,
    audio_dim=64,
    face_dim=64,
    vae_channels=16,
)
DEMO = replace(TINY, height=256, width=384, vae_channels=4)
"""The default of ``build_tiny_pipeline``/``tiny_generation``: big enough for the watermark and the metrics."""
TINY_AUDIO_LAYERS = TINY.audio_layers
TINY_AUDIO_HIDDEN = TINY.audio_hidden

_CORPUS = (
    "A little girl talking around a campfire.",
    "A woman talking on a dimly lit beach with the waves of the sea behind her.",
    "An older man with messy hair is on vacation at the beach, posting selfie videos to show his friends the sea.",
    "A person speaks to the camera in a bright room, looking straight ahead with a calm expression.",
    "A news presenter reads the evening headlines in a studio with soft light and a blue background.",
    "A teacher explains the lesson, smiling, with a whiteboard and books behind him.",
)


def backbone_sizes(sizes: Sizes = TINY) -> dict[str, Any]:
    """Backbone arguments shared by the denoiser and the reference net (latent grid of the VAE)."""
    return {
        "num_attention_heads": sizes.heads,
        "attention_head_dim": sizes.head_dim,
        "in_channels": 32,
        "out_channels": 16,
        "time_embed_dim": sizes.time_embed_dim,
        "text_embed_dim": sizes.text_dim,
        "num_layers": sizes.layers,
        "sample_width": sizes.width // 8,
        "sample_height": sizes.height // 8,
        "sample_frames": 49,
        "patch_size": 2,
        "max_text_seq_length": 226,
    }


def tiny_transformer(seed: int = 0, sizes: Sizes = TINY, **overrides: Any) -> Hallo3Transformer:
    torch.manual_seed(seed)
    arguments = backbone_sizes(sizes) | {
        "audio_seq_len": 5,
        "audio_blocks": sizes.audio_layers,
        "audio_channels": sizes.audio_hidden,
        "audio_intermediate_dim": sizes.audio_intermediate,
        "audio_dim": sizes.audio_dim,
        "audio_context_tokens": sizes.audio_tokens,
        "face_dim": sizes.face_dim,
        "face_context_tokens": 4,
    }
    return Hallo3Transformer(**(arguments | overrides)).eval()


def tiny_ref_net(seed: int = 1, sizes: Sizes = TINY, **overrides: Any) -> Hallo3ReferenceNet:
    torch.manual_seed(seed)
    return Hallo3ReferenceNet(**(backbone_sizes(sizes) | overrides)).eval()


def tiny_vae(seed: int = 2, sizes: Sizes = TINY) -> AutoencoderKLCogVideoX:
    """CogVideoX causal 3D VAE with narrow levels: ×8 spatial, ×4 temporal (first frame kept), 16 latent channels."""
    torch.manual_seed(seed)
    return AutoencoderKLCogVideoX(
        block_out_channels=(sizes.vae_channels,) * 4,
        layers_per_block=1,
        norm_num_groups=4,
        latent_channels=16,
        scaling_factor=0.7,
        sample_height=sizes.height,
        sample_width=sizes.width,
    ).eval()


def tiny_tokenizer(folder: Path) -> T5Tokenizer:
    """Train a small SentencePiece unigram model into ``folder/spiece.model`` and load it as T5 does."""
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "spiece.model"
    if not model.is_file():
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(_CORPUS * 8),
            model_prefix=str(folder / "spiece"),
            vocab_size=96,
            model_type="unigram",
            pad_id=0,
            eos_id=1,
            unk_id=2,
            bos_id=-1,
            hard_vocab_limit=False,
            num_threads=1,
            minloglevel=2,
        )
        vocab = folder / "spiece.vocab"
        if vocab.exists():
            os.remove(vocab)
    return T5Tokenizer.from_pretrained(str(folder), extra_ids=0)


def tiny_text_encoder(vocab_size: int, seed: int = 3, sizes: Sizes = TINY) -> T5EncoderModel:
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=vocab_size,
        d_model=sizes.text_dim,
        d_kv=8,
        d_ff=2 * sizes.text_dim,
        num_layers=sizes.text_layers,
        num_heads=2,
        relative_attention_num_buckets=8,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
    )
    return T5EncoderModel(config).eval()


def tiny_audio_encoder(seed: int = 4, config: AudioConfig | None = None, sizes: Sizes = TINY) -> AudioEncoder:
    torch.manual_seed(seed)
    wav2vec = Wav2Vec2Config(
        hidden_size=sizes.audio_hidden,
        num_hidden_layers=sizes.audio_layers,
        num_attention_heads=2,
        intermediate_size=2 * sizes.audio_hidden,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    return AudioEncoder.from_config(wav2vec, config)


class TinyFaceAnalyser:
    """Real face detection (dlib HOG) with a fixed random-projection "embedding" of the face crop. Tiny demos only."""

    def __init__(self, seed: int = 5) -> None:
        try:
            import dlib
        except ImportError as error:
            raise UsageError("TinyFaceAnalyser", "needs the dlib package (dlib-bin)", "not installed") from error
        self._detector = dlib.get_frontal_face_detector()
        self._projection = np.random.default_rng(seed).standard_normal((512, 16 * 16 * 3)).astype(np.float32)

    def get(self, img: np.ndarray) -> list[Any]:
        from insightface.app.common import Face
        from PIL import Image

        rgb = np.ascontiguousarray(img[:, :, ::-1])
        faces = []
        for rect in self._detector(rgb, 1):
            x1, y1 = max(0, rect.left()), max(0, rect.top())
            x2, y2 = min(rgb.shape[1], rect.right()), min(rgb.shape[0], rect.bottom())
            crop = np.asarray(Image.fromarray(rgb[y1:y2, x1:x2]).resize((16, 16)), dtype=np.float32) / 255.0
            embedding = self._projection @ (crop.reshape(-1) - 0.5)
            faces.append(Face(bbox=np.array([x1, y1, x2, y2], dtype=np.float32), embedding=embedding, det_score=1.0))
        return faces


def build_tiny_pipeline(
    workdir: str | Path,
    seed: int = 0,
    face_analyser: FaceAnalyser | None = None,
    audio_config: AudioConfig | None = None,
    sizes: Sizes = DEMO,
) -> Hallo3Pipeline:
    """The whole pipeline at ``sizes`` (``DEMO``, 256×384, by default; tests use ``TINY``, 32×48); ``workdir``
    receives the trained tokenizer.

    Components are seeded from ``seed``; generate with ``tiny_generation()`` (height/width must equal ``sizes``).
    """
    tokenizer = tiny_tokenizer(Path(workdir) / "tokenizer")
    pipe = Hallo3Pipeline(
        transformer=tiny_transformer(seed, sizes),
        ref_net=tiny_ref_net(seed + 1, sizes),
        vae=tiny_vae(seed + 2, sizes),
        text_encoder=tiny_text_encoder(len(tokenizer), seed + 3, sizes),
        tokenizer=tokenizer,
        scheduler=make_scheduler(),
        audio_encoder=tiny_audio_encoder(seed + 4, audio_config, sizes),
        face_analyser=face_analyser,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_generation(sizes: Sizes = DEMO, **changes: Any) -> GenerationConfig:
    """3 denoising steps at ``sizes`` (the size the pipeline was built for); ``changes`` override any field."""
    return replace(GenerationConfig(num_inference_steps=3, height=sizes.height, width=sizes.width), **changes)
