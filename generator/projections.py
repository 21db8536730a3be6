"""Hallo3 condition projections: windowed wav2vec2 features → audio tokens, face embedding → face tokens (spec §3.4, §4.1)."""

from __future__ import annotations

import torch
from torch import nn


class AudioProjModel(nn.Module):
    """Per pixel frame: flatten the ±2-frame window of all wav2vec2 layers, three linear layers (ReLU between) to
    ``context_tokens × output_dim``; then causal temporal compression to latent frames with **one** Conv1d (kernel 2,
    stride 2) applied twice (odd length keeps frame 0 untouched: 49 → 25 → 13); final LayerNorm per token.

    Input ``[B, F, seq_len, blocks, channels]`` → output ``[B, T, context_tokens, output_dim]``.
    """

    def __init__(
        self,
        seq_len: int = 5,
        blocks: int = 12,
        channels: int = 768,
        intermediate_dim: int = 512,
        output_dim: int = 768,
        context_tokens: int = 32,
        compressions: int = 2,
    ) -> None:
        super().__init__()
        self.seq_len = seq_len
        self.blocks = blocks
        self.channels = channels
        self.output_dim = output_dim
        self.context_tokens = context_tokens
        self.compressions = compressions
        width = context_tokens * output_dim
        self.proj1 = nn.Linear(seq_len * blocks * channels, intermediate_dim)
        self.proj2 = nn.Linear(intermediate_dim, intermediate_dim)
        self.proj3 = nn.Linear(intermediate_dim, width)
        self.conv1 = nn.Conv1d(width, width, kernel_size=2, stride=2)
        self.norm = nn.LayerNorm(output_dim)

    def latent_frames(self, pixel_frames: int) -> int:
        """Number of latent frames the compression produces from ``pixel_frames`` (49 → 13)."""
        length = pixel_frames
        for _ in range(self.compressions):
            length = 1 + (length - 1) // 2 if length % 2 else length // 2
        return length

    def _compress(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, W, L]`` → ``[B, W, L']``: odd L keeps frame 0 and convolves the rest in pairs; even L convolves all."""
        if x.shape[-1] % 2:
            return torch.cat([x[..., :1], self.conv1(x[..., 1:])], dim=-1)
        return self.conv1(x)

    def forward(self, audio_embeds: torch.Tensor) -> torch.Tensor:
        expected = (self.seq_len, self.blocks, self.channels)
        if audio_embeds.ndim != 5 or tuple(audio_embeds.shape[2:]) != expected:
            raise ValueError(
                f"audio_embeds must be [B, F, {expected[0]}, {expected[1]}, {expected[2]}], got {tuple(audio_embeds.shape)}"
            )
        batch, frames = audio_embeds.shape[:2]
        x = audio_embeds.reshape(batch, frames, -1)
        x = torch.relu(self.proj1(x))
        x = torch.relu(self.proj2(x))
        x = self.proj3(x)  # [B, F, K·D]
        x = x.transpose(1, 2)  # [B, K·D, F]
        for _ in range(self.compressions):
            x = self._compress(x)
        x = x.transpose(1, 2)  # [B, T, K·D]
        x = x.reshape(batch, x.shape[1], self.context_tokens, self.output_dim)
        return self.norm(x)


class FaceProjModel(nn.Module):
    """Face identity embedding ``[B, 512]`` (or ``[B, 1, 512]``) → ``[B, tokens, hidden]``: Linear, reshape, LayerNorm."""

    def __init__(self, embed_dim: int = 512, hidden_size: int = 1024, context_tokens: int = 4) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.hidden_size = hidden_size
        self.context_tokens = context_tokens
        self.proj = nn.Linear(embed_dim, context_tokens * hidden_size)
        self.norm = nn.LayerNorm(hidden_size)

    def forward(self, face_embeds: torch.Tensor) -> torch.Tensor:
        if face_embeds.ndim == 3 and face_embeds.shape[1] == 1:
            face_embeds = face_embeds[:, 0]
        if face_embeds.ndim != 2 or face_embeds.shape[1] != self.embed_dim:
            raise ValueError(f"face_embeds must be [B, {self.embed_dim}], got {tuple(face_embeds.shape)}")
        x = self.proj(face_embeds).reshape(face_embeds.shape[0], self.context_tokens, self.hidden_size)
        return self.norm(x)
