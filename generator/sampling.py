"""Sampler pieces: the official ``VPSDEDPMPP2MSampler`` expressed with diffusers' ``CogVideoXDPMScheduler`` (spec §6).

The official sampler is SDE-DPM-Solver++(2M) in alpha space — the same update as ``CogVideoXDPMScheduler.step``. Two
details differ from a stock diffusers setup, both tiny (≈0.06 % in alpha):

* the sampler's alphas are rescaled to zero terminal SNR over the **n selected** timesteps (anchored at the smallest,
  t = 19 for 50 steps), diffusers rescales over all 1000 (anchored at t = 0) — ``sat_alphas_cumprod_sqrt``;
* the x0 prediction uses the denoiser's own 1000-step table entry nearest to the sampler's alpha (``denoiser_alpha``).

Two samplers, by name (``SAMPLERS``, ``make_scheduler``):

* ``"official"`` (the default) — ``OfficialDPMScheduler``: a ``CogVideoXDPMScheduler`` that *is* the official sampler
  for any step count from 2 to 1000: the official timesteps ``int(linspace(999, 0, n, endpoint=False))``, the sampler's
  alphas, and the CFG **x0** as ``model_output`` (``prediction_type="sample"``);
* ``"diffusers-dpm"`` — the stock configuration (v-prediction, one 1000-step table for both); it steps back by
  ``1000 // n`` timesteps, so it takes only step counts that divide 1000.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from diffusers import CogVideoXDPMScheduler

CFG_SCALE = 3.5
NUM_TRAIN_TIMESTEPS = 1000
OFFICIAL = "official"
DIFFUSERS_DPM = "diffusers-dpm"
SAMPLERS = (OFFICIAL, DIFFUSERS_DPM)
DEFAULT_SAMPLER = OFFICIAL


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


def selected_timesteps(num_steps: int = 50, num_train: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """The official ``int(linspace(999, 0, n, endpoint=False))``, descending: 999, 979, …, 19 for 50 steps (= diffusers
    'trailing' when n divides 1000). Float64 numpy as the official code, so e.g. 99 steps end …, 221, 110 (not 222)."""
    steps = np.linspace(num_train - 1, 0, num_steps, endpoint=False).astype(np.int64)
    return torch.from_numpy(steps)


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


def step_count_rule(sampler: str, num_steps: int) -> str | None:
    """Why ``sampler`` cannot take ``num_steps`` steps, or None when it can."""
    if sampler == OFFICIAL and not 2 <= num_steps <= NUM_TRAIN_TIMESTEPS:
        # one step has no zero-SNR rescale (first and last selected alpha coincide: 0/0)
        return f"the official sampler takes 2 to {NUM_TRAIN_TIMESTEPS} steps"
    if sampler == DIFFUSERS_DPM and not (
        1 <= num_steps <= NUM_TRAIN_TIMESTEPS and NUM_TRAIN_TIMESTEPS % num_steps == 0
    ):
        return (
            f"the diffusers-dpm sampler steps back by {NUM_TRAIN_TIMESTEPS} // steps, so the step count must divide "
            f"{NUM_TRAIN_TIMESTEPS} (the official sampler takes any count from 2 to {NUM_TRAIN_TIMESTEPS})"
        )
    return None


class OfficialDPMScheduler(CogVideoXDPMScheduler):
    """``CogVideoXDPMScheduler`` that *is* the official sampler: official timesteps and sampler alphas for any step
    count 2…1000, the guided x0 as ``model_output``; ``step`` is diffusers' own update, unchanged.

    Diffusers' ``step`` finds the next alpha at ``timestep - 1000 // n``. ``set_timesteps`` therefore stores the
    sampler's alpha of step i in the table at the *slot* ``(n - i) · (1000 // n) - 1`` (equal to the official timestep
    when n divides 1000), and ``step`` hands diffusers the slots of the official timesteps it is given; the last step's
    next slot is negative, where diffusers takes ``final_alpha_cumprod`` = 1 as the official sampler does.
    ``sampler_alpha(t)`` is the sampler's sqrt(alpha_bar) at official timestep t.
    """

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self._stock_alphas_cumprod = self.alphas_cumprod.clone()
        self._slots: dict[int, int] = {}
        self._sampler_alphas: dict[int, float] = {}

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        rule = step_count_rule(OFFICIAL, num_inference_steps)
        if rule is not None:
            raise ValueError(f"{rule}, got {num_inference_steps}")
        super().set_timesteps(num_inference_steps, device)
        timesteps = selected_timesteps(num_inference_steps)
        stride = NUM_TRAIN_TIMESTEPS // num_inference_steps
        slots = stride * torch.arange(num_inference_steps, 0, -1) - 1
        alphas = sat_alphas_cumprod_sqrt(num_inference_steps)[:-1]  # float64, step i ↔ timesteps[i]
        table = self._stock_alphas_cumprod.clone()
        table[slots] = (alphas**2).to(table.dtype)
        self.alphas_cumprod = table
        self._slots = dict(zip(timesteps.tolist(), slots.tolist(), strict=True))
        self._sampler_alphas = dict(zip(timesteps.tolist(), alphas.tolist(), strict=True))
        self.timesteps = timesteps.to(device)

    def slot(self, timestep: int | torch.Tensor) -> int:
        t = int(timestep)
        if t not in self._slots:
            raise ValueError(f"timestep {t} is not one of the {len(self._slots)} scheduled official timesteps")
        return self._slots[t]

    def sampler_alpha(self, timestep: int | torch.Tensor) -> float:
        """The official sampler's sqrt(alpha_bar) (float64) at scheduled timestep ``timestep``."""
        self.slot(timestep)  # refuses an unscheduled timestep
        return self._sampler_alphas[int(timestep)]

    def step(  # type: ignore[override]
        self,
        model_output: torch.Tensor,
        old_pred_original_sample: torch.Tensor | None,
        timestep: int | torch.Tensor,
        timestep_back: int | torch.Tensor | None,
        sample: torch.Tensor,
        **kwargs: Any,
    ) -> Any:
        back = None if timestep_back is None else self.slot(timestep_back)
        return super().step(model_output, old_pred_original_sample, self.slot(timestep), back, sample, **kwargs)


def sat_scheduler(num_steps: int = 50) -> OfficialDPMScheduler:
    """The official sampler for ``num_steps`` steps (a diffusers scheduler: sampler alphas, x0 as model output)."""
    scheduler = OfficialDPMScheduler(**scheduler_config("sample"))
    scheduler.set_timesteps(num_steps)
    return scheduler


def make_scheduler(sampler: str = DEFAULT_SAMPLER) -> CogVideoXDPMScheduler:
    """The scheduler for a sampler name (``SAMPLERS``); its timesteps are set by the pipeline per generation."""
    if sampler == OFFICIAL:
        return OfficialDPMScheduler(**scheduler_config("sample"))
    if sampler == DIFFUSERS_DPM:
        return diffusers_scheduler()
    raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")


def sampler_name(scheduler: CogVideoXDPMScheduler) -> str:
    """The name a scheduler goes by in the record: ``official``, ``diffusers-dpm`` or its class name."""
    if isinstance(scheduler, OfficialDPMScheduler):
        return OFFICIAL
    if type(scheduler) is CogVideoXDPMScheduler and scheduler.config.prediction_type == "v_prediction":
        return DIFFUSERS_DPM
    return type(scheduler).__name__


def x0_from_v(sample: torch.Tensor, v: torch.Tensor, alpha_cumprod_sqrt: float) -> torch.Tensor:
    """v-prediction → x0: ``c_skip·x + c_out·v`` with c_skip = alpha, c_out = -sqrt(1 - alpha²)."""
    a = float(alpha_cumprod_sqrt)
    return a * sample - (1.0 - a * a) ** 0.5 * v


def guided(uncond: torch.Tensor, cond: torch.Tensor, scale: float = CFG_SCALE) -> torch.Tensor:
    """Classifier-free guidance ``u + s·(c − u)`` (constant 3.5 in the official code)."""
    return uncond + scale * (cond - uncond)
