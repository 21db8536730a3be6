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
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKLCogVideoX
from transformers import T5Config, T5EncoderModel, T5Tokenizer, Wav2Vec2Config

from generator.audio import AudioConfig, AudioEncoder
from generator.face import FaceAnalyser
from generator.pipeline import GenerationConfig, Hallo3Pipeline, make_scheduler
from generator.reference import Hallo3ReferenceNet
from generator.transformer import Hallo3Transformer
from reports.errors import UsageError

TINY_HEIGHT = 32
TINY_WIDTH = 48
TINY_TEXT_DIM = 16
TINY_AUDIO_LAYERS = 2
TINY_AUDIO_HIDDEN = 16

TINY_GENERATION = GenerationConfig(num_inference_steps=3, height=TINY_HEIGHT, width=TINY_WIDTH)

_CORPUS = (
    "A little girl talking around a campfire.",
    "A woman talking on a dimly lit beach with the waves of the sea behind her.",
    "An older man with messy hair is on vacation at the beach, posting selfie videos to show his friends the sea.",
    "A person speaks to the camera in a bright room, looking straight ahead with a calm expression.",
    "A news presenter reads the evening headlines in a studio with soft light and a blue background.",
    "A teacher explains the lesson, smiling, with a whiteboard and books behind him.",
)


def backbone_sizes(width: int = 32, heads: int = 2, layers: int = 2) -> dict[str, Any]:
    """Backbone arguments shared by the tiny denoiser and reference net (latent grid of the tiny VAE)."""
    return {
        "num_attention_heads": heads,
        "attention_head_dim": width // heads,
        "in_channels": 32,
        "out_channels": 16,
        "time_embed_dim": 16,
        "text_embed_dim": TINY_TEXT_DIM,
        "num_layers": layers,
        "sample_width": TINY_WIDTH // 8,
        "sample_height": TINY_HEIGHT // 8,
        "sample_frames": 49,
        "patch_size": 2,
        "max_text_seq_length": 226,
    }


def tiny_transformer(seed: int = 0, **overrides: Any) -> Hallo3Transformer:
    torch.manual_seed(seed)
    sizes = backbone_sizes() | {
        "audio_seq_len": 5,
        "audio_blocks": TINY_AUDIO_LAYERS,
        "audio_channels": TINY_AUDIO_HIDDEN,
        "audio_intermediate_dim": 16,
        "audio_dim": 16,
        "audio_context_tokens": 4,
        "face_dim": 16,
        "face_context_tokens": 4,
    }
    return Hallo3Transformer(**(sizes | overrides)).eval()


def tiny_ref_net(seed: int = 1, **overrides: Any) -> Hallo3ReferenceNet:
    torch.manual_seed(seed)
    return Hallo3ReferenceNet(**(backbone_sizes() | overrides)).eval()


def tiny_vae(seed: int = 2) -> AutoencoderKLCogVideoX:
    """CogVideoX causal 3D VAE with 8-channel levels: ×8 spatial, ×4 temporal (first frame kept), 16 latent channels."""
    torch.manual_seed(seed)
    return AutoencoderKLCogVideoX(
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        norm_num_groups=4,
        latent_channels=16,
        scaling_factor=0.7,
        sample_height=TINY_HEIGHT,
        sample_width=TINY_WIDTH,
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


def tiny_text_encoder(vocab_size: int, seed: int = 3) -> T5EncoderModel:
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=vocab_size,
        d_model=TINY_TEXT_DIM,
        d_kv=8,
        d_ff=32,
        num_layers=2,
        num_heads=2,
        relative_attention_num_buckets=8,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
    )
    return T5EncoderModel(config).eval()


def tiny_audio_encoder(seed: int = 4, config: AudioConfig | None = None) -> AudioEncoder:
    torch.manual_seed(seed)
    wav2vec = Wav2Vec2Config(
        hidden_size=TINY_AUDIO_HIDDEN,
        num_hidden_layers=TINY_AUDIO_LAYERS,
        num_attention_heads=2,
        intermediate_size=32,
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
) -> Hallo3Pipeline:
    """The whole pipeline at tiny width; ``workdir`` receives the trained tokenizer. Components seeded from ``seed``."""
    tokenizer = tiny_tokenizer(Path(workdir) / "tokenizer")
    pipe = Hallo3Pipeline(
        transformer=tiny_transformer(seed),
        ref_net=tiny_ref_net(seed + 1),
        vae=tiny_vae(seed + 2),
        text_encoder=tiny_text_encoder(len(tokenizer), seed + 3),
        tokenizer=tokenizer,
        scheduler=make_scheduler(),
        audio_encoder=tiny_audio_encoder(seed + 4, audio_config),
        face_analyser=face_analyser,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_generation(**changes: Any) -> GenerationConfig:
    return replace(TINY_GENERATION, **changes)
