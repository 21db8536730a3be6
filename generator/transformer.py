"""The Hallo3 denoiser: diffusers' CogVideoX-5B-I2V transformer plus identity reference tokens, face and audio
cross-attention in every block, and the audio / face projections (spec §2–§4).

Per block (spec §4.3): adaLN → self-attention over ``[text ; video ; reference bank]`` (bank outputs dropped) → gated
residuals → face cross-attention (frame-local, ungated) → audio cross-attention (same) → adaLN MLP. The defaults are
the official 5B-I2V sizes; every size is a constructor argument so tests run at tiny scale.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from diffusers.configuration_utils import FrozenDict, register_to_config
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import CogVideoXPatchEmbed
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.transformers.cogvideox_transformer_3d import CogVideoXBlock, CogVideoXTransformer3DModel
from torch import nn

from generator.attention import (
    FrameCrossAttnProcessor,
    ReferenceSelfAttnProcessor,
    RotaryTable,
    video_rotary_table,
)
from generator.projections import AudioProjModel, FaceProjModel


def embed_tokens(patch_embed: CogVideoXPatchEmbed, text: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    """``[text ; video]`` tokens plus the *learned* position embedding sliced to the sequence length.

    diffusers' ``CogVideoXPatchEmbed.forward`` silently swaps in a sin-cos table whenever the frame count differs from
    ``sample_frames`` (e.g. the 1-frame reference pass); the official model slices its learned table instead (spec §8.2).
    """
    batch, frames, channels, height, width = latents.shape
    text_tokens = patch_embed.text_proj(text)
    video = patch_embed.proj(latents.reshape(-1, channels, height, width))
    video = video.view(batch, frames, *video.shape[1:]).flatten(3).transpose(2, 3).flatten(1, 2)
    tokens = torch.cat([text_tokens, video], dim=1)
    table = patch_embed.pos_embedding
    if tokens.shape[1] > table.shape[1]:
        raise ValueError(f"{tokens.shape[1]} tokens exceed the learned position table ({table.shape[1]} rows)")
    if text.shape[1] != patch_embed.max_text_seq_length:
        raise ValueError(f"text length {text.shape[1]} != max_text_seq_length {patch_embed.max_text_seq_length}")
    return tokens + table[:, : tokens.shape[1]].to(tokens.dtype)


def unpatchify(tokens: torch.Tensor, frames: int, height: int, width: int, patch: int) -> torch.Tensor:
    """``[B, T·(H/p)·(W/p), C·p·p]`` (channel slowest) → ``[B, T, C, H, W]``."""
    batch = tokens.shape[0]
    out = tokens.reshape(batch, frames, height // patch, width // patch, -1, patch, patch)
    return out.permute(0, 1, 4, 2, 5, 3, 6).flatten(5, 6).flatten(3, 4)


class Hallo3Block(CogVideoXBlock):
    """A CogVideoX block with reference tokens in self-attention and frame-local face / audio cross-attention."""

    def __init__(
        self,
        dim: int,
        num_attention_heads: int,
        attention_head_dim: int,
        time_embed_dim: int,
        face_dim: int,
        audio_dim: int | None,
        norm_eps: float = 1e-5,
        **kwargs: Any,
    ) -> None:
        super().__init__(dim, num_attention_heads, attention_head_dim, time_embed_dim, norm_eps=norm_eps, **kwargs)
        self.attn1.set_processor(ReferenceSelfAttnProcessor())
        self.face_norm = nn.LayerNorm(dim, eps=norm_eps)
        self.face_attn = self._cross_attention(dim, face_dim, num_attention_heads, attention_head_dim)
        self.audio_norm: nn.LayerNorm | None = None
        self.audio_attn: Attention | None = None
        if audio_dim is not None:
            self.audio_norm = nn.LayerNorm(dim, eps=norm_eps)
            self.audio_attn = self._cross_attention(dim, audio_dim, num_attention_heads, attention_head_dim)

    @staticmethod
    def _cross_attention(dim: int, kv_dim: int, heads: int, head_dim: int) -> Attention:
        return Attention(
            query_dim=dim,
            cross_attention_dim=kv_dim,
            heads=heads,
            dim_head=head_dim,
            bias=True,
            out_bias=True,
            processor=FrameCrossAttnProcessor(),
        )

    def forward(  # type: ignore[override]
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        image_rotary_emb: RotaryTable | None = None,
        ref_tokens: torch.Tensor | None = None,
        face_tokens: torch.Tensor | None = None,
        audio_tokens: torch.Tensor | None = None,
        frame_rotary_emb: RotaryTable | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        text_len = encoder_hidden_states.shape[1]
        # 1-3. adaLN, self-attention over [text ; video ; ref], gated residuals
        norm_video, norm_text, gate_msa, text_gate_msa = self.norm1(hidden_states, encoder_hidden_states, temb)
        attn_video, attn_text = self.attn1(
            hidden_states=norm_video,
            encoder_hidden_states=norm_text,
            image_rotary_emb=image_rotary_emb,
            ref_tokens=ref_tokens,
        )
        hidden_states = hidden_states + gate_msa * attn_video
        encoder_hidden_states = encoder_hidden_states + text_gate_msa * attn_text

        # 4-5. frame-local face and audio cross-attention, ungated residuals, shared q/k norms
        qk_norms = (self.attn1.norm_q, self.attn1.norm_k)
        if face_tokens is not None:
            hidden_states = hidden_states + self.face_attn(
                self.face_norm(hidden_states), face_tokens, frame_rotary_emb=frame_rotary_emb, qk_norms=qk_norms
            )
        if audio_tokens is not None:
            if self.audio_attn is None or self.audio_norm is None:
                raise ValueError("audio tokens given to a block built without the audio module")
            hidden_states = hidden_states + self.audio_attn(
                self.audio_norm(hidden_states), audio_tokens, frame_rotary_emb=frame_rotary_emb, qk_norms=qk_norms
            )

        # 6. adaLN MLP on [text ; video]
        norm_video, norm_text, gate_ff, text_gate_ff = self.norm2(hidden_states, encoder_hidden_states, temb)
        ff_output = self.ff(torch.cat([norm_text, norm_video], dim=1))
        hidden_states = hidden_states + gate_ff * ff_output[:, text_len:]
        encoder_hidden_states = encoder_hidden_states + text_gate_ff * ff_output[:, :text_len]
        return hidden_states, encoder_hidden_states


class Hallo3Transformer(CogVideoXTransformer3DModel):
    """The Hallo3 denoiser on diffusers' CogVideoX transformer (``save_pretrained``/``from_pretrained`` work).

    ``forward(hidden_states [B,T,C_in,H,W], encoder_hidden_states [B,L,D_text], timestep [B],
    audio_embeds [B,F,window,blocks,channels], face_embeds [B,512], ref_banks list[[B or 1, N_ref, C]] per layer)``
    → v-prediction ``[B, T, out_channels, H, W]``. ``hidden_states`` is ``[noisy ; concat]`` on channels.
    """

    _no_split_modules: ClassVar[list[str]] = ["Hallo3Block", "CogVideoXPatchEmbed"]

    @register_to_config
    def __init__(
        self,
        num_attention_heads: int = 48,
        attention_head_dim: int = 64,
        in_channels: int = 32,
        out_channels: int = 16,
        time_embed_dim: int = 512,
        text_embed_dim: int = 4096,
        num_layers: int = 42,
        sample_width: int = 90,
        sample_height: int = 60,
        sample_frames: int = 49,
        patch_size: int = 2,
        max_text_seq_length: int = 226,
        norm_eps: float = 1e-5,
        final_norm_eps: float = 1e-6,
        audio_seq_len: int = 5,
        audio_blocks: int = 12,
        audio_channels: int = 768,
        audio_intermediate_dim: int = 512,
        audio_dim: int = 768,
        audio_context_tokens: int = 32,
        add_audio_module: bool = True,
        face_embed_dim: int = 512,
        face_dim: int = 1024,
        face_context_tokens: int = 4,
    ) -> None:
        own_config = dict(self._internal_dict)  # registered by our decorator; the parent's would overwrite it
        super().__init__(
            num_attention_heads=num_attention_heads,
            attention_head_dim=attention_head_dim,
            in_channels=in_channels,
            out_channels=out_channels,
            time_embed_dim=time_embed_dim,
            text_embed_dim=text_embed_dim,
            num_layers=0,  # blocks are built below, as Hallo3 blocks
            sample_width=sample_width,
            sample_height=sample_height,
            sample_frames=sample_frames,
            patch_size=patch_size,
            max_text_seq_length=max_text_seq_length,
            norm_eps=norm_eps,
            use_rotary_positional_embeddings=True,
            use_learned_positional_embeddings=True,
        )
        self._internal_dict = FrozenDict(own_config)
        inner_dim = num_attention_heads * attention_head_dim
        self.transformer_blocks = nn.ModuleList(
            [
                Hallo3Block(
                    dim=inner_dim,
                    num_attention_heads=num_attention_heads,
                    attention_head_dim=attention_head_dim,
                    time_embed_dim=time_embed_dim,
                    face_dim=face_dim,
                    audio_dim=audio_dim if add_audio_module else None,
                    norm_eps=norm_eps,
                    attention_bias=True,
                )
                for _ in range(num_layers)
            ]
        )
        self.norm_out.norm.eps = final_norm_eps  # official final-layer LayerNorm eps (diffusers uses norm_eps)
        self.patch_embed.pos_embedding = self.patch_embed.pos_embedding.float()  # diffusers builds it in float64
        self.audio_proj: AudioProjModel | None = None
        if add_audio_module:
            self.audio_proj = AudioProjModel(
                seq_len=audio_seq_len,
                blocks=audio_blocks,
                channels=audio_channels,
                intermediate_dim=audio_intermediate_dim,
                output_dim=audio_dim,
                context_tokens=audio_context_tokens,
            )
        self.face_proj = FaceProjModel(
            embed_dim=face_embed_dim, hidden_size=face_dim, context_tokens=face_context_tokens
        )

    def fuse_qkv_projections(self) -> None:
        """Not supported: diffusers' fused processor would replace the reference-token and frame-local processors."""
        raise NotImplementedError("Hallo3Transformer keeps separate QKV projections (custom attention processors)")

    # ---- conditions ----
    def project_audio(self, audio_embeds: torch.Tensor) -> torch.Tensor:
        """Windowed wav2vec2 features ``[B, F, window, blocks, channels]`` → audio tokens ``[B, T, K, audio_dim]``."""
        if self.audio_proj is None:
            raise ValueError("this transformer was built without the audio module")
        return self.audio_proj(audio_embeds.to(self.audio_proj.proj1.weight.dtype))

    def project_face(self, face_embeds: torch.Tensor) -> torch.Tensor:
        """Face identity embedding ``[B, 512]`` → face tokens ``[B, K, face_dim]``."""
        return self.face_proj(face_embeds.to(self.face_proj.proj.weight.dtype))

    def rotary_tables(self, frames: int, height: int, width: int, device=None) -> tuple[RotaryTable, RotaryTable]:
        """(video RoPE for all ``frames``, frame-0 rows used by the cross-attention queries)."""
        p = self.config.patch_size
        cos, sin = video_rotary_table(self.config.attention_head_dim, frames, height // p, width // p, device=device)
        per_frame = (height // p) * (width // p)
        return (cos, sin), (cos[:per_frame], sin[:per_frame])

    # ---- forward ----
    def forward(  # type: ignore[override]
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep: torch.Tensor | float | int,
        audio_embeds: torch.Tensor | None = None,
        face_embeds: torch.Tensor | None = None,
        ref_banks: list[torch.Tensor] | None = None,
        return_dict: bool = True,
    ) -> tuple[torch.Tensor] | Transformer2DModelOutput:
        batch, frames, _, height, width = hidden_states.shape
        dtype = hidden_states.dtype
        if ref_banks is not None and len(ref_banks) != len(self.transformer_blocks):
            raise ValueError(f"{len(ref_banks)} reference banks for {len(self.transformer_blocks)} layers")
        if self.audio_proj is not None and audio_embeds is None:
            raise ValueError("audio_embeds is required (pass zeros for the unconditional branch)")
        if face_embeds is None:
            raise ValueError("face_embeds is required (a zero vector when no face was found)")

        # 1. time embedding (sinusoid [cos, sin] → MLP)
        timestep = torch.as_tensor(timestep, device=hidden_states.device)
        timestep = timestep.reshape(-1).expand(batch) if timestep.numel() == 1 else timestep
        temb = self.time_embedding(self.time_proj(timestep).to(dtype))

        # 2. tokens, positions, conditions
        tokens = embed_tokens(self.patch_embed, encoder_hidden_states.to(dtype), hidden_states)
        text_len = encoder_hidden_states.shape[1]
        text, video = tokens[:, :text_len], tokens[:, text_len:]
        rope, frame_rope = self.rotary_tables(frames, height, width, device=hidden_states.device)
        face_tokens = self.project_face(face_embeds).to(dtype)
        face_tokens = face_tokens[:, None].expand(-1, frames, -1, -1)
        audio_tokens = None
        if self.audio_proj is not None and audio_embeds is not None:
            audio_tokens = self.project_audio(audio_embeds).to(dtype)
            if audio_tokens.shape[1] != frames:
                raise ValueError(f"audio gives {audio_tokens.shape[1]} latent frames for {frames} video latent frames")

        # 3. blocks
        for i, block in enumerate(self.transformer_blocks):
            video, text = block(
                hidden_states=video,
                encoder_hidden_states=text,
                temb=temb,
                image_rotary_emb=rope,
                ref_tokens=None if ref_banks is None else ref_banks[i],
                face_tokens=face_tokens,
                audio_tokens=audio_tokens,
                frame_rotary_emb=frame_rope,
            )

        # 4. final norms and projection (per-token, so the text part can be skipped)
        video = self.norm_final(video)
        video = self.norm_out(video, temb=temb)
        video = self.proj_out(video)
        output = unpatchify(video, frames, height, width, self.config.patch_size)
        if not return_dict:
            return (output,)
        return Transformer2DModelOutput(sample=output)
