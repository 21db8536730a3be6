"""Hallo3 attention processors for diffusers' ``Attention`` modules.

Two processors, both plain classes that diffusers' ``Attention.set_processor`` accepts:

* ``ReferenceSelfAttnProcessor`` — the denoiser's self-attention over ``[text ; video ; reference]``. The reference
  tokens (the identity bank of the same layer) go through the block's own QKV projections and q/k LayerNorms, get no
  RoPE, and their outputs are dropped (spec §3.3). RoPE covers exactly the video tokens, whatever their count: the
  official code slices ``[text_len : -1350]`` which is only right at 480x720 (spec §13).
* ``FrameCrossAttnProcessor`` — face / audio cross-attention, frame-local: video tokens ``[B, T·N, C]`` are regrouped
  to ``[B·T, N, C]`` and latent frame ``k`` attends only to its own context tokens ``[B, T, K, C_kv]``. The query and key
  go through the *self-attention's* q/k LayerNorms (shared weights, passed in as ``qk_norms``) and the query alone is
  rotated with the frame-0 RoPE rows (spec §4.2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import apply_rotary_emb, get_3d_rotary_pos_embed
from torch import nn

RotaryTable = tuple[torch.Tensor, torch.Tensor]


def video_rotary_table(head_dim: int, frames: int, grid_h: int, grid_w: int, device=None) -> RotaryTable:
    """3D RoPE (cos, sin) of shape ``[frames·grid_h·grid_w, head_dim]`` over the integer token grid, (t, h, w) order.

    Head-dim split t/h/w = 1/4, 3/8, 3/8 (16/24/24 at head dim 64), interleaved pairs, theta 1e4 — the layout of the
    official ``Rotary3DPositionEmbeddingMixin`` and of diffusers' CogVideoX.
    """
    cos, sin = get_3d_rotary_pos_embed(
        embed_dim=head_dim,
        crops_coords=((0, 0), (grid_h, grid_w)),
        grid_size=(grid_h, grid_w),
        temporal_size=frames,
        device=device,
    )
    return cos, sin


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[B, S, H·D]`` → ``[B, H, S, D]``."""
    batch, seq, width = x.shape
    return x.view(batch, seq, heads, width // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``[B, H, S, D]`` → ``[B, S, H·D]``."""
    batch, heads, seq, dim = x.shape
    return x.transpose(1, 2).reshape(batch, seq, heads * dim)


class ReferenceSelfAttnProcessor:
    """Joint text/video self-attention with the layer's reference tokens appended (outputs of those dropped)."""

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: RotaryTable | None = None,
        ref_tokens: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if attention_mask is not None:
            raise ValueError("ReferenceSelfAttnProcessor does not support attention masks")
        text_len = encoder_hidden_states.shape[1]
        video_len = hidden_states.shape[1]
        parts = [encoder_hidden_states, hidden_states]
        if ref_tokens is not None:
            parts.append(ref_tokens.to(hidden_states.dtype).expand(hidden_states.shape[0], -1, -1))
        sequence = torch.cat(parts, dim=1)

        query = _heads(attn.to_q(sequence), attn.heads)
        key = _heads(attn.to_k(sequence), attn.heads)
        value = _heads(attn.to_v(sequence), attn.heads)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        if image_rotary_emb is not None:
            video = slice(text_len, text_len + video_len)
            if image_rotary_emb[0].shape[0] != video_len:
                raise ValueError(f"RoPE table has {image_rotary_emb[0].shape[0]} rows for {video_len} video tokens")
            query = torch.cat(
                [
                    query[:, :, :text_len],
                    apply_rotary_emb(query[:, :, video], image_rotary_emb),
                    query[:, :, video.stop :],
                ],
                dim=2,
            )
            key = torch.cat(
                [key[:, :, :text_len], apply_rotary_emb(key[:, :, video], image_rotary_emb), key[:, :, video.stop :]],
                dim=2,
            )

        out = F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)
        out = _merge_heads(out[:, :, : text_len + video_len])  # reference-token outputs are dropped here
        out = attn.to_out[1](attn.to_out[0](out))
        return out[:, text_len:], out[:, :text_len]


class FrameCrossAttnProcessor:
    """Frame-local cross-attention from video tokens to per-frame context tokens (face or audio)."""

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        frame_rotary_emb: RotaryTable | None = None,
        qk_norms: tuple[nn.Module | None, nn.Module | None] | None = None,
    ) -> torch.Tensor:
        if attention_mask is not None:
            raise ValueError("FrameCrossAttnProcessor does not support attention masks")
        batch, tokens, width = hidden_states.shape
        frames = encoder_hidden_states.shape[1]
        if tokens % frames:
            raise ValueError(f"{tokens} video tokens do not split into {frames} frames")
        per_frame = tokens // frames
        frame_tokens = hidden_states.reshape(batch * frames, per_frame, width)
        context = encoder_hidden_states.reshape(batch * frames, encoder_hidden_states.shape[2], -1)

        query = _heads(attn.to_q(frame_tokens), attn.heads)
        key = _heads(attn.to_k(context), attn.heads)
        value = _heads(attn.to_v(context), attn.heads)
        norm_q, norm_k = qk_norms if qk_norms is not None else (attn.norm_q, attn.norm_k)
        if norm_q is not None:
            query = norm_q(query)
        if norm_k is not None:
            key = norm_k(key)
        if frame_rotary_emb is not None:
            query = apply_rotary_emb(query, frame_rotary_emb)

        out = F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)
        out = attn.to_out[1](attn.to_out[0](_merge_heads(out)))
        return out.reshape(batch, tokens, -1)
