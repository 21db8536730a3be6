"""Hallo3 written directly from the spec's equations (spec §2–§4) with plain tensor ops — no diffusers, no nn modules.

Used by the tests as an independent reference for one denoiser block, the audio projection and the reference-bank
capture. Parameters are plain tensors looked up by name in a state dict.
"""

from __future__ import annotations

import math

import torch

Params = dict[str, torch.Tensor]


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def linear(x: torch.Tensor, p: Params, name: str) -> torch.Tensor:
    return x @ p[name + ".weight"].T + p[name + ".bias"]


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def silu(x: torch.Tensor) -> torch.Tensor:
    return x / (1.0 + torch.exp(-x))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


def timestep_sinusoid(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """``[cos, sin]`` order, frequencies exp(-ln(max_period)·k/half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def rope_tables(head_dim: int, frames: int, grid_h: int, grid_w: int, theta: float = 10000.0):
    """3D RoPE: head dim split t/h/w = d/4, 3d/8, 3d/8; f_k = 1/theta^(2k/d_axis); angle = integer index · f_k;
    each frequency repeated for two adjacent channels (interleaved pairs). Rows in (t, h, w) row-major order."""
    dims = (head_dim // 4, head_dim // 8 * 3, head_dim // 8 * 3)
    cos_rows, sin_rows = [], []
    for t in range(frames):
        for h in range(grid_h):
            for w in range(grid_w):
                angles = []
                for pos, d in zip((t, h, w), dims, strict=True):
                    f = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d)
                    angles.append((pos * f).repeat_interleave(2))
                a = torch.cat(angles)
                cos_rows.append(torch.cos(a))
                sin_rows.append(torch.sin(a))
    return torch.stack(cos_rows), torch.stack(sin_rows)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs: (x0, x1) → (x0·cos − x1·sin, x1·cos + x0·sin)."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    rotated = torch.stack([-x1, x0], dim=-1).flatten(-2)
    return x * cos + rotated * sin


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``[B, H, S, D]`` softmax attention, scale 1/sqrt(D), no mask."""
    w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    return w @ v


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, s, c = x.shape
    return x.reshape(b, s, heads, c // heads).permute(0, 2, 1, 3)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, h, s, d = x.shape
    return x.permute(0, 2, 1, 3).reshape(b, s, h * d)


def cross_attention(
    p: Params, prefix: str, qk: str, video: torch.Tensor, context: torch.Tensor, heads: int, frame_cos, frame_sin
) -> torch.Tensor:
    """Frame-local cross-attention: video ``[B, T·N, C]``, context ``[B, T, K, Ckv]``; q/k LayerNorms of the block's
    self-attention (``qk`` prefix); RoPE (frame-0 rows) on the query only."""
    tokens = video.shape[1]
    frames = context.shape[1]
    n = tokens // frames
    out = torch.empty_like(video)
    for f in range(frames):
        x = video[:, f * n : (f + 1) * n]
        ctx = context[:, f]
        q = split_heads(linear(x, p, prefix + ".to_q"), heads)
        k = split_heads(linear(ctx, p, prefix + ".to_k"), heads)
        v = split_heads(linear(ctx, p, prefix + ".to_v"), heads)
        q = layer_norm(q, p[qk + ".norm_q.weight"], p[qk + ".norm_q.bias"], 1e-6)
        k = layer_norm(k, p[qk + ".norm_k.weight"], p[qk + ".norm_k.bias"], 1e-6)
        q = rotate(q, frame_cos, frame_sin)
        out[:, f * n : (f + 1) * n] = linear(merge_heads(attend(q, k, v)), p, prefix + ".to_out.0")
    return out


def block(
    p: Params,
    text: torch.Tensor,
    video: torch.Tensor,
    temb: torch.Tensor,
    heads: int,
    rope: tuple[torch.Tensor, torch.Tensor],
    ref: torch.Tensor | None = None,
    face: torch.Tensor | None = None,
    audio: torch.Tensor | None = None,
    eps: float = 1e-5,
    bank: list[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Hallo3 block in the order of spec §4.3 (a plain CogVideoX block when ref/face/audio are None).
    ``bank`` receives modulate(LN1(video)) — what the reference network stores."""
    cos, sin = rope
    text_len, video_len = text.shape[1], video.shape[1]
    e1 = linear(silu(temb), p, "norm1.linear").chunk(6, dim=1)  # shift, scale, gate, text shift, scale, gate
    e2 = linear(silu(temb), p, "norm2.linear").chunk(6, dim=1)
    # 2. modulated LN1, self-attention over [text ; video ; ref]
    v_hat = modulate(layer_norm(video, p["norm1.norm.weight"], p["norm1.norm.bias"], eps), e1[0], e1[1])
    t_hat = modulate(layer_norm(text, p["norm1.norm.weight"], p["norm1.norm.bias"], eps), e1[3], e1[4])
    if bank is not None:
        bank.append(v_hat)
    seq = [t_hat, v_hat] + ([ref.expand(video.shape[0], -1, -1)] if ref is not None else [])
    seq = torch.cat(seq, dim=1)
    q = layer_norm(
        split_heads(linear(seq, p, "attn1.to_q"), heads), p["attn1.norm_q.weight"], p["attn1.norm_q.bias"], 1e-6
    )
    k = layer_norm(
        split_heads(linear(seq, p, "attn1.to_k"), heads), p["attn1.norm_k.weight"], p["attn1.norm_k.bias"], 1e-6
    )
    v = split_heads(linear(seq, p, "attn1.to_v"), heads)
    vid = slice(text_len, text_len + video_len)
    q = torch.cat([q[:, :, :text_len], rotate(q[:, :, vid], cos, sin), q[:, :, vid.stop :]], dim=2)
    k = torch.cat([k[:, :, :text_len], rotate(k[:, :, vid], cos, sin), k[:, :, vid.stop :]], dim=2)
    attn = linear(merge_heads(attend(q, k, v)), p, "attn1.to_out.0")[:, : text_len + video_len]  # drop ref outputs
    # 3. gated residuals
    video = video + e1[2][:, None] * attn[:, text_len:]
    text = text + e1[5][:, None] * attn[:, :text_len]
    # 4-5. face then audio cross-attention, ungated
    frames = face.shape[1] if face is not None else (audio.shape[1] if audio is not None else 1)
    per_frame = video_len // frames
    fcos, fsin = cos[:per_frame], sin[:per_frame]
    if face is not None:
        normed = layer_norm(video, p["face_norm.weight"], p["face_norm.bias"], eps)
        video = video + cross_attention(p, "face_attn", "attn1", normed, face, heads, fcos, fsin)
    if audio is not None:
        normed = layer_norm(video, p["audio_norm.weight"], p["audio_norm.bias"], eps)
        video = video + cross_attention(p, "audio_attn", "attn1", normed, audio, heads, fcos, fsin)
    # 6. MLP on [text ; video]
    v_hat = modulate(layer_norm(video, p["norm2.norm.weight"], p["norm2.norm.bias"], eps), e2[0], e2[1])
    t_hat = modulate(layer_norm(text, p["norm2.norm.weight"], p["norm2.norm.bias"], eps), e2[3], e2[4])
    h = linear(gelu_tanh(linear(torch.cat([t_hat, v_hat], dim=1), p, "ff.net.0.proj")), p, "ff.net.2")
    video = video + e2[2][:, None] * h[:, text_len:]
    text = text + e2[5][:, None] * h[:, :text_len]
    return text, video


def audio_projection(p: Params, window: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Spec §4.1: per pixel frame flatten → ReLU(proj1) → ReLU(proj2) → proj3; causal pairwise Conv1d compression
    applied twice (odd length keeps frame 0); reshape to tokens; LayerNorm."""
    b, frames = window.shape[:2]
    x = window.reshape(b, frames, -1)
    x = torch.relu(linear(x, p, "proj1"))
    x = torch.relu(linear(x, p, "proj2"))
    x = linear(x, p, "proj3")  # [B, F, K·D]
    w, bias = p["conv1.weight"], p["conv1.bias"]  # [out, in, 2]
    for _ in range(2):
        frames_in = [x[:, i] for i in range(x.shape[1])]
        head, rest = (frames_in[:1], frames_in[1:]) if len(frames_in) % 2 else ([], frames_in)
        pairs = [rest[j] @ w[:, :, 0].T + rest[j + 1] @ w[:, :, 1].T + bias for j in range(0, len(rest), 2)]
        x = torch.stack(head + pairs, dim=1)
    d = p["norm.weight"].shape[0]
    x = x.reshape(b, x.shape[1], -1, d)
    return layer_norm(x, p["norm.weight"], p["norm.bias"], eps)


def patch_tokens(latents: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Conv2d(k = s = p) per frame as a matmul over non-overlapping patches; tokens ordered (frame, row, col)."""
    b, t, c, h, w = latents.shape
    p = weight.shape[-1]
    x = latents.reshape(b, t, c, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4, 6)  # b t gh gw c p p
    x = x.reshape(b, t * (h // p) * (w // p), c * p * p)
    return x @ weight.reshape(weight.shape[0], -1).T + bias


def reference_banks(p: Params, ref_latent: torch.Tensor, text_len: int, heads: int, text_dim: int, eps: float = 1e-5):
    """Spec §3.2: input [ref ; ref] (1 frame), t = 0, zero text, learned positions [: text_len + N], frame-0 RoPE;
    bank i = modulate(LN1(video)) at the input of block i."""
    b, _, _, h, w = ref_latent.shape
    latents = torch.cat([ref_latent, ref_latent], dim=2)
    video = patch_tokens(latents, p["patch_embed.proj.weight"], p["patch_embed.proj.bias"])
    text = linear(torch.zeros(b, text_len, text_dim), p, "patch_embed.text_proj")
    tokens = torch.cat([text, video], dim=1) + p["patch_embed.pos_embedding"][:, : text_len + video.shape[1]]
    text, video = tokens[:, :text_len], tokens[:, text_len:]
    hidden = video.shape[-1]
    temb = timestep_sinusoid(torch.zeros(b), hidden)
    temb = linear(silu(linear(temb, p, "time_embedding.linear_1")), p, "time_embedding.linear_2")
    patch = p["patch_embed.proj.weight"].shape[-1]
    rope = rope_tables(hidden // heads, 1, h // patch, w // patch)
    banks: list[torch.Tensor] = []
    i = 0
    while f"transformer_blocks.{i}.norm1.linear.weight" in p:
        prefix = f"transformer_blocks.{i}."
        bp = {k[len(prefix) :]: v for k, v in p.items() if k.startswith(prefix)}
        text, video = block(bp, text, video, temb, heads, rope, eps=eps, bank=banks)
        i += 1
    return banks


# ---- test support (not spec) ----
TINY = dict(
    num_attention_heads=4,
    attention_head_dim=16,
    time_embed_dim=32,
    text_embed_dim=48,
    num_layers=2,
    sample_width=6,
    sample_height=4,
    max_text_seq_length=8,
)
TINY_AV = dict(
    audio_blocks=3, audio_channels=16, audio_intermediate_dim=32, audio_dim=24, audio_context_tokens=4, face_dim=40
)


def randomize_(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter redrawn (matrices N(0,1)/sqrt(fan_in), norm gains 1+0.1N, biases 0.1N, tables 0.3N) so that
    no weight sits at a degenerate default (unit LayerNorm gains, zero biases)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=gen)
            if param.ndim >= 2 and "pos_embedding" not in name:
                param.copy_(noise / math.sqrt(param[0].numel()))
            elif name.endswith("weight"):
                param.copy_(1 + 0.1 * noise)
            elif name.endswith("bias"):
                param.copy_(0.1 * noise)
            else:
                param.copy_(0.3 * noise)
        for name, buf in module.named_buffers():
            if name.endswith("pos_embedding"):
                buf.copy_(0.3 * torch.randn(buf.shape, generator=gen))
    return module.eval()
