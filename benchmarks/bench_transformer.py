"""Hallo3 denoiser cost on CPU, the reference-bank cache win, and the diffusers-vs-official schedule difference.

    .venv/bin/python -m benchmarks.bench_transformer [--threads 2] [--repeat 3] [--skip-mid] [--skip-schedule]

Every ratio is against a reference measured in the same run:
* one denoising step (CFG batch 2) of ``Hallo3Transformer`` vs the stock diffusers ``CogVideoXTransformer3DModel`` of
  the same backbone size (what the reference tokens, face/audio cross-attention and projections cost), at the fixture's
  tiny size and at a mid size (hidden 768, 4 layers, 13 x 16 x 24 latent);
* banks from ``ReferenceBanks`` (cached, the per-clip cost after the first clip) vs ``compute_banks`` every clip (the
  official behaviour), and what that saves per clip relative to the 50-step x 2-pass denoising of that clip;
* with the golden fixture present: the 50-step trajectory with the official schedule (``sat_scheduler``) vs stock
  diffusers ``CogVideoXDPMScheduler`` (v-prediction, one 1000-step table), same noise — the size of the difference.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import CogVideoXTransformer3DModel

from generator.reference import Hallo3ReferenceNet, ReferenceBanks, compute_banks
from generator.transformer import Hallo3Transformer

FIXTURE = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "hallo3_official_tiny"

SIZES = {
    "tiny": dict(
        backbone=dict(
            num_attention_heads=4,
            attention_head_dim=16,
            time_embed_dim=32,
            text_embed_dim=48,
            num_layers=2,
            sample_height=6,
            sample_width=8,
            max_text_seq_length=8,
        ),
        extra=dict(
            audio_blocks=3,
            audio_channels=16,
            audio_intermediate_dim=32,
            audio_dim=24,
            audio_context_tokens=4,
            face_dim=40,
        ),
    ),
    "mid": dict(
        backbone=dict(
            num_attention_heads=12,
            attention_head_dim=64,
            time_embed_dim=256,
            text_embed_dim=512,
            num_layers=4,
            sample_height=16,
            sample_width=24,
            max_text_seq_length=226,
        ),
        extra=dict(
            audio_blocks=12,
            audio_channels=768,
            audio_intermediate_dim=512,
            audio_dim=256,
            audio_context_tokens=8,
            face_dim=512,
        ),
    ),
}


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def step_inputs(cfg: dict, extra: dict) -> dict:
    g = torch.Generator().manual_seed(0)
    h, w = cfg["sample_height"], cfg["sample_width"]
    hidden = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    return dict(
        hidden_states=torch.randn(2, 13, 32, h, w, generator=g),
        encoder_hidden_states=torch.randn(2, cfg["max_text_seq_length"], cfg["text_embed_dim"], generator=g),
        timestep=torch.tensor([499.0, 499.0]),
        audio_embeds=torch.randn(2, 49, 5, extra["audio_blocks"], extra["audio_channels"], generator=g),
        face_embeds=torch.randn(2, 512, generator=g),
        ref_banks=[torch.randn(1, (h // 2) * (w // 2), hidden, generator=g) for _ in range(cfg["num_layers"])],
    )


@torch.no_grad()
def bench_size(name: str, repeat: int) -> None:
    cfg, extra = SIZES[name]["backbone"], SIZES[name]["extra"]
    hallo3 = Hallo3Transformer(**cfg, **extra).eval()
    stock = CogVideoXTransformer3DModel(
        **cfg, in_channels=32, use_rotary_positional_embeddings=True, use_learned_positional_embeddings=True
    ).eval()
    ref_net = Hallo3ReferenceNet(**cfg).eval()
    inputs = step_inputs(cfg, extra)
    h, w = cfg["sample_height"], cfg["sample_width"]
    rope = hallo3.rotary_tables(13, h, w)[0]
    t_hallo3 = median_seconds(lambda: hallo3(**inputs, return_dict=False), repeat)
    t_stock = median_seconds(
        lambda: stock(
            inputs["hidden_states"],
            inputs["encoder_hidden_states"],
            inputs["timestep"],
            image_rotary_emb=rope,
            return_dict=False,
        ),
        repeat,
    )
    ref_latent = torch.randn(1, 1, 16, h, w, generator=torch.Generator().manual_seed(1))
    cache = ReferenceBanks(ref_net)
    cache.get(ref_latent)  # first clip computes
    t_recompute = median_seconds(lambda: compute_banks(ref_net, ref_latent), repeat)
    t_cached = median_seconds(lambda: cache.get(ref_latent), repeat)
    clip = 100 * t_hallo3 / 2  # 50 steps x 1 CFG-batched pass of batch 2 ≈ 100 single passes
    params = sum(p.numel() for p in hallo3.parameters()) / 1e6
    tokens = cfg["max_text_seq_length"] + 13 * (h // 2) * (w // 2)
    print(f"[{name}] {params:.1f} M params, sequence {tokens} (+{(h // 2) * (w // 2)} ref) tokens, batch 2")
    print(
        f"  denoising step  Hallo3 {t_hallo3 * 1e3:9.1f} ms | stock CogVideoX {t_stock * 1e3:9.1f} ms | "
        f"ratio {t_hallo3 / t_stock:.2f}x"
    )
    print(
        f"  reference banks recompute {t_recompute * 1e3:9.2f} ms | cached {t_cached * 1e3:9.3f} ms | "
        f"speed-up {t_recompute / max(t_cached, 1e-9):.0f}x | saves {100 * (t_recompute - t_cached) / (clip + t_recompute):.2f} % "
        f"of a 50-step clip"
    )


def bench_schedule() -> None:
    import diffusers.schedulers.scheduling_dpm_cogvideox as dpm_module
    from safetensors.torch import load_file

    from generator import sampling
    from generator.convert import CheckpointGeometry, convert_official_checkpoint
    from generator.reference import run_reference

    if not FIXTURE.is_dir():
        print(f"[schedule] skipped: {FIXTURE} absent")
        return
    io = load_file(FIXTURE / "io.safetensors")
    geometry = CheckpointGeometry(text_len=8, latent_frames=13, latent_height=6, latent_width=8, audio_blocks=3)
    nets = convert_official_checkpoint(FIXTURE / "checkpoint.pt", geometry)
    banks = [b.repeat(2, 1, 1) for b in run_reference(nets.reference_net, io["in.ref_latent"], 8).banks]
    cond = dict(
        encoder_hidden_states=torch.cat([io["in.text_emb_uncond"], io["in.text_emb"]]),
        audio_embeds=torch.cat([torch.zeros_like(io["in.audio_window"]), io["in.audio_window"]]),
        face_embeds=io["in.face_emb"].repeat(2, 1),
        ref_banks=banks,
    )
    used = list(io["traj.sde_noise_used"])

    def run(official: bool) -> torch.Tensor:
        scheduler = sampling.sat_scheduler(50) if official else sampling.diffusers_scheduler()
        if not official:
            scheduler.set_timesteps(50)
        alphas = sampling.sat_alphas_cumprod_sqrt(50)
        timesteps = scheduler.timesteps.tolist()
        x, old = io["traj.init_noise"].clone(), None
        draws: list[torch.Tensor] = []
        original = dpm_module.randn_tensor
        dpm_module.randn_tensor = lambda *a, **k: draws.pop(0)
        try:
            for i, t in enumerate(timesteps):
                hidden = torch.cat([x, io["in.concat_latent"]], dim=2).repeat(2, 1, 1, 1, 1)
                with torch.no_grad():
                    v = nets.transformer(hidden, timestep=torch.tensor([float(t)] * 2), return_dict=False, **cond)[0]
                if official:
                    a, _ = sampling.denoiser_alpha(alphas[i].item())
                    out = sampling.guided(sampling.x0_from_v(x, v[:1], a), sampling.x0_from_v(x, v[1:], a))
                else:
                    out = sampling.guided(v[:1], v[1:])
                draws[:] = (
                    [used[0]] if i == 0 else ([torch.zeros_like(x), used[i]] if i < 49 else [torch.zeros_like(x)])
                )
                x, old = scheduler.step(out, old, t, timesteps[i - 1] if i else None, x, return_dict=False)
        finally:
            dpm_module.randn_tensor = original
        return x

    official, stock = run(True), run(False)
    target = io["traj.sample"]
    print("[schedule] 50-step fixture trajectory, same noise:")
    print(
        f"  official schedule (sat_scheduler) vs official traj.sample: max |diff| {(official - target).abs().max():.2e}"
    )
    print(
        f"  stock diffusers scheduler       vs official traj.sample: max |diff| {(stock - target).abs().max():.2e} "
        f"(sample std {target.std():.3f}; relative {((stock - target).abs().max() / target.abs().max()):.2e})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-mid", action="store_true")
    parser.add_argument("--skip-schedule", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, CPU float32, median of {args.repeat}")
    bench_size("tiny", args.repeat)
    if not args.skip_mid:
        bench_size("mid", args.repeat)
    if not args.skip_schedule:
        bench_schedule()


if __name__ == "__main__":
    main()
