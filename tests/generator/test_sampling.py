"""The official sampler at any step count (against the float64 reference in _official_sampler.py), the diffusers
variant by name, and the step-count rules of each."""

from __future__ import annotations

import diffusers.schedulers.scheduling_dpm_cogvideox as dpm_module
import pytest
import torch
from _official_sampler import official_alphas, official_timesteps, step_coefficients
from _tolerances import FLOAT64_TOL, sampler_step_tolerance
from diffusers import CogVideoXDPMScheduler

from generator import sampling


def test_official_timesteps_follow_the_official_float_arithmetic() -> None:
    assert sampling.selected_timesteps(50).tolist() == list(range(999, 0, -20))
    assert sampling.selected_timesteps(3).tolist() == [999, 666, 333]
    # 999·(99 − 88)/99 = 111 exactly in rationals, but the official float64 linspace lands just below it and truncates
    ninety_nine = sampling.selected_timesteps(99).tolist()
    assert ninety_nine[-2:] == [20, 10] and 110 in ninety_nine and 111 not in ninety_nine
    assert ninety_nine == official_timesteps(99)


@pytest.mark.parametrize("steps", [2, 3, 7, 50, 99])
def test_official_scheduler_steps_like_the_official_sampler(steps: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every step of an n-step schedule, each from fresh random inputs, against the float64 official update: the
    timesteps the network sees, the sampler's alphas and the step (first order at step 0, x0 itself at the last)."""
    scheduler = sampling.make_scheduler()
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps.tolist()
    assert timesteps == official_timesteps(steps)
    alphas = official_alphas(steps)
    g = torch.Generator().manual_seed(steps)
    draws: list[torch.Tensor] = []
    monkeypatch.setattr(dpm_module, "randn_tensor", lambda *a, **k: draws.pop(0))
    for i, t in enumerate(timesteps):
        assert abs(scheduler.sampler_alpha(t) - alphas[i]) <= FLOAT64_TOL
        x, x0, old, first, second = (torch.randn(2, 3, 4, 5, generator=g) for _ in range(5))
        draws[:] = [first, second]
        back = timesteps[i - 1] if i else None
        x_next, returned_x0 = scheduler.step(x0, old if i else None, t, back, x, return_dict=False)
        assert torch.equal(returned_x0, x0)
        second_order = 0 < i < steps - 1
        assert len(draws) == (0 if second_order else 1)  # diffusers draws twice for a second-order step, as officially
        m1, m2, m3, m4, m_noise = step_coefficients(alphas, i)
        noise = second if second_order else first
        expected = m1 * x.double() - m2 * (m3 * x0.double() - m4 * old.double()) + m_noise * noise.double()
        sizes = (x.abs().max().item(), x0.abs().max().item(), old.abs().max().item(), noise.abs().max().item())
        tol = sampler_step_tolerance(alphas[i], alphas[i + 1], alphas[i - 1] if i else None, sizes)
        assert (x_next.double() - expected).abs().max().item() <= tol, (steps, i, t)
    with pytest.raises(ValueError, match="not one of the"):
        scheduler.step(x0, None, 998, None, x)


def test_samplers_by_name() -> None:
    assert sampling.DEFAULT_SAMPLER == sampling.OFFICIAL
    official = sampling.make_scheduler()
    assert isinstance(official, sampling.OfficialDPMScheduler) and official.config.prediction_type == "sample"
    assert sampling.sampler_name(official) == "official"
    stock = sampling.make_scheduler("diffusers-dpm")
    assert type(stock) is CogVideoXDPMScheduler and stock.config.prediction_type == "v_prediction"
    assert sampling.sampler_name(stock) == "diffusers-dpm"
    with pytest.raises(ValueError, match="sampler must be one of official, diffusers-dpm"):
        sampling.make_scheduler("ddim")


@pytest.mark.parametrize(
    ("sampler", "steps", "allowed"),
    [
        ("official", 1, False),  # one step: the zero-SNR rescale over one timestep is 0/0
        ("official", 2, True),
        ("official", 3, True),
        ("official", 1000, True),
        ("official", 1001, False),
        ("diffusers-dpm", 1, True),
        ("diffusers-dpm", 3, False),  # steps back by 1000 // 3 = 333: its last step ends at t = 0, not at alpha = 1
        ("diffusers-dpm", 50, True),
        ("diffusers-dpm", 0, False),
    ],
)
def test_step_count_rules(sampler: str, steps: int, allowed: bool) -> None:
    assert (sampling.step_count_rule(sampler, steps) is None) == allowed
    if sampler == "official" and not allowed:
        with pytest.raises(ValueError, match="2 to 1000"):
            sampling.make_scheduler().set_timesteps(steps)
