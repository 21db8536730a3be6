"""Golden-fixture parity: the official Hallo3 code's tensors (shared/fixtures/hallo3_official_tiny) reproduced by our
converter + transformer + reference runner + the official sampler (a diffusers scheduler), from the official checkpoint
file. Tolerances: tests/generator/_tolerances.py (each derived from a stated bound)."""

from __future__ import annotations

from pathlib import Path

import diffusers.schedulers.scheduling_dpm_cogvideox as dpm_module
import pytest
import torch
from _tolerances import CFG_TOL, OFFICIAL_VALUE_TOL, SINGLE_PASS_TOL, TRAJECTORY_TOL, sampler_step_tolerance
from safetensors.torch import load_file

from generator import sampling
from generator.convert import CheckpointGeometry, ConvertedHallo3, convert_official_checkpoint
from generator.reference import run_reference

# what the shapes cannot tell: the fixture's latent grid 13x6x8, 8 text tokens, wav2vec window 5 x 3 blocks
FIXTURE_GEOMETRY = CheckpointGeometry(text_len=8, latent_frames=13, latent_height=6, latent_width=8, audio_blocks=3)


def _maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


@pytest.fixture(scope="module")
def io(official_tiny: Path) -> dict[str, torch.Tensor]:
    return load_file(official_tiny / "io.safetensors")


@pytest.fixture(scope="module")
def nets(official_tiny: Path) -> ConvertedHallo3:
    return convert_official_checkpoint(official_tiny / "checkpoint.pt", FIXTURE_GEOMETRY)


@pytest.fixture(scope="module")
def ref_pass(nets, io):
    with torch.no_grad():
        return run_reference(nets.reference_net, io["in.ref_latent"], text_len=8, full_output=True)


def _cfg_inputs(io: dict[str, torch.Tensor], banks: list[torch.Tensor]) -> dict:
    """Batch [uncond ; cond]: zero text and zero audio *before* the projection in the unconditional half."""
    return dict(
        encoder_hidden_states=torch.cat([io["in.text_emb_uncond"], io["in.text_emb"]]),
        audio_embeds=torch.cat([torch.zeros_like(io["in.audio_window"]), io["in.audio_window"]]),
        face_embeds=io["in.face_emb"].repeat(2, 1),
        ref_banks=[b.repeat(2, 1, 1) for b in banks],
    )


def _velocity(nets, io, banks, x_t: torch.Tensor, timestep: float) -> torch.Tensor:
    hidden = torch.cat([x_t, io["in.concat_latent"]], dim=2).repeat(2, 1, 1, 1, 1)
    with torch.no_grad():
        return nets.transformer(
            hidden, timestep=torch.tensor([timestep, timestep]), return_dict=False, **_cfg_inputs(io, banks)
        )[0]


def test_reference_banks_and_output(ref_pass, io):
    assert len(ref_pass.banks) == 2
    for i, bank in enumerate(ref_pass.banks):
        assert _maxdiff(bank, io[f"ref.bank.{i}"]) <= SINGLE_PASS_TOL
    assert _maxdiff(ref_pass.output, io["ref.out"]) <= SINGLE_PASS_TOL


def test_projections(nets, io):
    with torch.no_grad():
        assert _maxdiff(nets.transformer.project_audio(io["in.audio_window"]), io["audio_proj.cond"]) <= SINGLE_PASS_TOL
        zeros = torch.zeros_like(io["in.audio_window"])
        assert _maxdiff(nets.transformer.project_audio(zeros), io["audio_proj.uncond"]) <= SINGLE_PASS_TOL
        assert _maxdiff(nets.transformer.project_face(io["in.face_emb"]), io["face_proj.out"]) <= SINGLE_PASS_TOL


def test_denoiser_step(nets, io, ref_pass, monkeypatch):
    """v (both CFG halves), x0 with the denoiser's quantised alpha, CFG 3.5, and one official sampler step through
    diffusers' ``CogVideoXDPMScheduler.step`` fed the fixture's two noise draws."""
    x_t = io["in.noisy_latent"]
    v = _velocity(nets, io, ref_pass.banks, x_t, io["den.idx"][0].item())
    assert _maxdiff(v[:1], io["den.v_uncond"]) <= SINGLE_PASS_TOL
    assert _maxdiff(v[1:], io["den.v_cond"]) <= SINGLE_PASS_TOL

    alpha_q, index = sampling.denoiser_alpha(io["in.alpha_cumprod_sqrt"].item())
    assert index == 499
    assert abs(alpha_q - io["den.alpha_quantized"].item()) <= OFFICIAL_VALUE_TOL
    x0_u = sampling.x0_from_v(x_t, v[:1], alpha_q)
    x0_c = sampling.x0_from_v(x_t, v[1:], alpha_q)
    assert _maxdiff(x0_u, io["den.x0_uncond"]) <= SINGLE_PASS_TOL
    assert _maxdiff(x0_c, io["den.x0_cond"]) <= SINGLE_PASS_TOL
    x0 = sampling.guided(x0_u, x0_c)
    assert _maxdiff(x0, io["den.x0_cfg"]) <= CFG_TOL
    assert _maxdiff(sampling.guided(x0_u, x0_c, 3.5 * (1 + 1e-3)), io["den.x0_cfg"]) > CFG_TOL  # still tight enough

    scheduler = sampling.sat_scheduler(50)
    draws = [io["step.noise_draw0"], io["step.noise_draw1"]]
    monkeypatch.setattr(dpm_module, "randn_tensor", lambda *a, **k: draws.pop(0))
    x_next, _ = scheduler.step(io["den.x0_cfg"], io["in.old_denoised"], 499, 519, x_t, return_dict=False)
    assert not draws, "diffusers' step must draw twice, like the official sampler"
    # both sides evaluate the step in float32 from the same inputs: twice one implementation's bound
    sizes = tuple(io[k].abs().max().item() for k in ("in.noisy_latent", "den.x0_cfg", "in.old_denoised"))
    alphas = (io[f"in.alpha_cumprod_sqrt{k}"].item() for k in ("", "_next", "_prev"))
    step_tol = 2 * sampler_step_tolerance(*alphas, (*sizes, io["step.noise_draw1"].abs().max().item()))
    assert _maxdiff(x_next, io["step.x_next"]) <= step_tol


def test_sampler_schedule(io):
    """The official sampler schedule (zero-SNR over the 50 selected steps) is reproduced; diffusers' own 1000-step
    table differs from it by at most 0.07 % in sqrt(alpha_bar) (spec §6)."""
    sat = sampling.sat_alphas_cumprod_sqrt(50)
    assert _maxdiff(sat, io["sched.alpha_cumprod_sqrt"].double()) <= OFFICIAL_VALUE_TOL
    steps = sampling.selected_timesteps(50)
    assert steps.tolist() == io["sched.timesteps"][1:].flip(0).long().tolist()
    stock = sampling.diffusers_scheduler().alphas_cumprod[steps].sqrt()
    relative = ((stock - sat[:-1]).abs()[1:] / sat[1:-1]).max().item()
    assert 1e-5 < relative < 7e-4


@pytest.mark.slow
def test_full_trajectory(nets, io, ref_pass, monkeypatch):
    """All 50 steps (100 denoiser passes) with the fixture's initial and SDE noise → ``traj.sample`` (TRAJECTORY_TOL)."""
    scheduler = sampling.sat_scheduler(50)
    alphas = sampling.sat_alphas_cumprod_sqrt(50)
    used = list(io["traj.sde_noise_used"])
    draws: list[torch.Tensor] = []
    monkeypatch.setattr(dpm_module, "randn_tensor", lambda *a, **k: draws.pop(0))
    x, old_x0 = io["traj.init_noise"].clone(), None
    timesteps = scheduler.timesteps.tolist()
    for i, t in enumerate(timesteps):
        alpha_q, _ = sampling.denoiser_alpha(alphas[i].item())
        v = _velocity(nets, io, ref_pass.banks, x, float(t))
        x0 = sampling.guided(sampling.x0_from_v(x, v[:1], alpha_q), sampling.x0_from_v(x, v[1:], alpha_q))
        # official draws: one at step 0, a discarded first-order draw then the used one at steps 1..48, none at 49
        if i == 0:
            draws[:] = [used[0]]
        elif i < len(timesteps) - 1:
            draws[:] = [torch.zeros_like(x), used[i]]
        else:
            draws[:] = [torch.zeros_like(x)]
        x, old_x0 = scheduler.step(x0, old_x0, t, timesteps[i - 1] if i else None, x, return_dict=False)
        assert not draws
    assert _maxdiff(x, io["traj.sample"]) <= TRAJECTORY_TOL
