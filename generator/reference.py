"""The identity reference network: a second CogVideoX transformer run once at t = 0 on the face-masked reference
latent; each block's modulated input-LayerNorm output (video part) is that layer's *bank* (spec §3).

The official code recomputes the banks for every clip although they only depend on the portrait; ``ReferenceBanks``
caches them per portrait under an explicit key (a hash of the reference latent and the network identity).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch
from diffusers.configuration_utils import FrozenDict, register_to_config
from diffusers.models.transformers.cogvideox_transformer_3d import CogVideoXTransformer3DModel

from generator.attention import video_rotary_table
from generator.transformer import embed_tokens, unpatchify


class Hallo3ReferenceNet(CogVideoXTransformer3DModel):
    """Plain CogVideoX-5B-I2V transformer (no face/audio modules) with the official final-layer LayerNorm eps."""

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
    ) -> None:
        own_config = dict(self._internal_dict)  # registered by our decorator; the parent's would overwrite it
        super().__init__(
            num_attention_heads=num_attention_heads,
            attention_head_dim=attention_head_dim,
            in_channels=in_channels,
            out_channels=out_channels,
            time_embed_dim=time_embed_dim,
            text_embed_dim=text_embed_dim,
            num_layers=num_layers,
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
        self.norm_out.norm.eps = final_norm_eps
        self.patch_embed.pos_embedding = self.patch_embed.pos_embedding.float()  # diffusers builds it in float64


@dataclass
class ReferencePass:
    banks: list[torch.Tensor]  # one [B, N_ref, C] per layer
    output: torch.Tensor | None  # the network's own final output [B, 1, C_out, h, w] (discarded by Hallo3)


def run_reference(
    ref_net: CogVideoXTransformer3DModel,
    ref_latent: torch.Tensor,
    text_len: int | None = None,
    full_output: bool = False,
) -> ReferencePass:
    """One reference pass: input ``[ref ; ref]`` (32 ch, 1 latent frame), t = 0, all-zero text, learned positions
    sliced to ``text_len + tokens_per_frame``, frame-0 RoPE. Banks are captured by forward hooks on every block's
    ``norm1``. Without ``full_output`` the last block stops after its ``norm1`` (the rest cannot affect any bank)."""
    cfg = ref_net.config
    if ref_latent.ndim != 5 or ref_latent.shape[1] != 1:
        raise ValueError(f"ref_latent must be [B, 1, C, h, w], got {tuple(ref_latent.shape)}")
    text_len = cfg.max_text_seq_length if text_len is None else text_len
    batch, frames, _, height, width = ref_latent.shape
    param = ref_net.patch_embed.proj.weight
    latents = torch.cat([ref_latent, ref_latent], dim=2).to(param.dtype)
    text = torch.zeros(batch, text_len, cfg.text_embed_dim, dtype=param.dtype, device=param.device)
    timestep = torch.zeros(batch, device=param.device)
    temb = ref_net.time_embedding(ref_net.time_proj(timestep).to(param.dtype))
    tokens = embed_tokens(ref_net.patch_embed, text, latents)
    text_h, video_h = tokens[:, :text_len], tokens[:, text_len:]
    p = cfg.patch_size
    rope = video_rotary_table(cfg.attention_head_dim, frames, height // p, width // p, device=param.device)

    banks: list[torch.Tensor] = []
    handles = [
        block.norm1.register_forward_hook(lambda _m, _i, out: banks.append(out[0].detach()))
        for block in ref_net.transformer_blocks
    ]
    try:
        blocks = list(ref_net.transformer_blocks)
        for i, block in enumerate(blocks):
            if i == len(blocks) - 1 and not full_output:
                block.norm1(video_h, text_h, temb)
                break
            video_h, text_h = block(
                hidden_states=video_h, encoder_hidden_states=text_h, temb=temb, image_rotary_emb=rope
            )
    finally:
        for handle in handles:
            handle.remove()

    output = None
    if full_output:
        video_h = ref_net.norm_out(ref_net.norm_final(video_h), temb=temb)
        output = unpatchify(ref_net.proj_out(video_h), frames, height, width, p)
    return ReferencePass(banks=banks, output=output)


@torch.no_grad()
def compute_banks(
    ref_net: CogVideoXTransformer3DModel, ref_latent: torch.Tensor, text_len: int | None = None
) -> list[torch.Tensor]:
    """The per-layer reference banks ``[B, tokens_per_frame, C]`` for a face-masked reference latent ``[B,1,16,h,w]``."""
    return run_reference(ref_net, ref_latent, text_len).banks


def bank_cache_key(ref_latent: torch.Tensor, text_len: int | None = None) -> str:
    """sha256 over the reference latent's bytes, shape and dtype, and the text length (the cache is per network)."""
    digest = hashlib.sha256()
    data = ref_latent.detach().to("cpu").contiguous()
    digest.update(str((tuple(data.shape), str(data.dtype), text_len)).encode())
    digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


@dataclass
class ReferenceBanks:
    """Bank cache across clips: compute once per portrait, reuse for every clip (the official code recomputes)."""

    ref_net: CogVideoXTransformer3DModel
    max_entries: int = 4
    _store: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0

    def get(self, ref_latent: torch.Tensor, text_len: int | None = None) -> list[torch.Tensor]:
        key = bank_cache_key(ref_latent, text_len)
        if key in self._store:
            self.hits += 1
            return self._store[key]
        self.misses += 1
        banks = compute_banks(self.ref_net, ref_latent, text_len)
        if len(self._store) >= self.max_entries:
            self._store.pop(next(iter(self._store)))
        self._store[key] = banks
        return banks

    def clear(self) -> None:
        self._store.clear()
