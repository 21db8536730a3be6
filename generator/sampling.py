"""Sampler pieces: the official ``VPSDEDPMPP2MSampler`` expressed with diffusers' ``CogVideoXDPMScheduler`` (spec §6).

The official sampler is SDE-DPM-Solver++(2M) in alpha space — the same update as ``CogVideoXDPMScheduler.step``. Two
details differ from a stock diffusers setup, both tiny (≈0.06 % in alpha):

* the sampler's alphas are rescaled to zero terminal SNR over the **50 selected** timesteps (anchored at t = 19),
  diffusers rescales over all 1000 (anchored at t = 0) — ``sat_alphas_cumprod_sqrt``;
* the x0 prediction uses the denoiser's own 1000-step table entry nearest to the sampler's alpha (``denoiser_alpha``).

``sat_scheduler`` is a diffusers scheduler that reproduces the official numbers: its table holds the sampler alphas at
the selected timesteps and it takes the CFG **x0** as ``model_output`` (``prediction_type="sample"``). ``diffusers_scheduler``
is the stock configuration (v-prediction, one table for both).
"""

from __future__ import annotations

import torch
from diffusers import CogVideoXDPMScheduler

CFG_SCALE = 3.5


def scheduler_config(prediction_type: str = "v_prediction") -> dict:
    return dict(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type=prediction_type,
        rescale_betas_zero_snr=True,
        snr_shift_scale=1.0,
        timestep_spacing="trailing",
        set_alpha_to_one=True,
        clip_sample=False,
    )


def diffusers_scheduler() -> CogVideoXDPMScheduler:
    """Stock diffusers scheduler with the spec §6 configuration (v-prediction, 1000-step zero-SNR table)."""
    return CogVideoXDPMScheduler(**scheduler_config())


def selected_timesteps(num_steps: int = 50, num_train: int = 1000) -> torch.Tensor:
    """``floor(linspace(999, 0, n, endpoint=False))`` descending: 999, 979, …, 19 (= diffusers 'trailing')."""
    return torch.tensor([(num_train - 1) * (num_steps - i) // num_steps for i in range(num_steps)], dtype=torch.long)


def _base_alphas_cumprod(num_train: int = 1000) -> torch.Tensor:
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, num_train, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def sat_alphas_cumprod_sqrt(num_steps: int = 50, num_train: int = 1000) -> torch.Tensor:
    """The official sampler's sqrt(alpha_bar) per step, ascending from 0.0 (step 0, t = 999), with 1.0 appended
    (``num_steps + 1`` values, float64): zero-terminal-SNR rescale over the selected timesteps only."""
    timesteps = selected_timesteps(num_steps, num_train).flip(0)  # ascending 19 … 999
    a = _base_alphas_cumprod(num_train)[timesteps].sqrt()
    first, last = a[0].clone(), a[-1].clone()
    a = (a - last) * first / (first - last)
    return torch.cat([a.flip(0), torch.ones(1, dtype=torch.float64)])


def denoiser_alpha(alpha_cumprod_sqrt: float, scheduler: CogVideoXDPMScheduler | None = None) -> tuple[float, int]:
    """(alpha, index) of the denoiser's 1000-step table entry nearest to a sampler alpha (official ``DiscreteDenoiser``)."""
    table = (scheduler or diffusers_scheduler()).alphas_cumprod.sqrt()
    index = int((table - float(alpha_cumprod_sqrt)).abs().argmin())
    return float(table[index]), index


def sat_scheduler(num_steps: int = 50) -> CogVideoXDPMScheduler:
    """A diffusers scheduler that *is* the official sampler: sampler alphas in its table, x0 as model output."""
    if 1000 % num_steps:
        raise ValueError(f"num_steps must divide 1000 (diffusers steps back by 1000 // num_steps), got {num_steps}")
    scheduler = CogVideoXDPMScheduler(**scheduler_config("sample"))
    scheduler.set_timesteps(num_steps)
    scheduler.timesteps = selected_timesteps(num_steps)
    alphas = sat_alphas_cumprod_sqrt(num_steps)[:-1]  # step i ↔ timestep selected[i]
    table = scheduler.alphas_cumprod.clone()
    table[scheduler.timesteps] = (alphas**2).to(table.dtype)
    scheduler.alphas_cumprod = table
    return scheduler


def x0_from_v(sample: torch.Tensor, v: torch.Tensor, alpha_cumprod_sqrt: float) -> torch.Tensor:
    """v-prediction → x0: ``c_skip·x + c_out·v`` with c_skip = alpha, c_out = -sqrt(1 - alpha²)."""
    a = float(alpha_cumprod_sqrt)
    return a * sample - (1.0 - a * a) ** 0.5 * v


def guided(uncond: torch.Tensor, cond: torch.Tensor, scale: float = CFG_SCALE) -> torch.Tensor:
    """Classifier-free guidance ``u + s·(c − u)`` (constant 3.5 in the official code)."""
    return uncond + scale * (cond - uncond)
