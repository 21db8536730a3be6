"""The official sampler (SAT ``VPSDEDPMPP2MSampler`` over ``ZeroSNRDDPMDiscretization``), written for the tests in
float64 from the spec (§6) and the fixture README (item 6), independently of ``generator.sampling``."""

from __future__ import annotations

import math

import numpy as np


def official_timesteps(num_steps: int) -> list[int]:
    """``generate_roughly_equally_spaced_steps``: int(linspace(999, 0, n, endpoint=False)), descending."""
    return np.linspace(999, 0, num_steps, endpoint=False).astype(int).tolist()


def official_alphas(num_steps: int) -> list[float]:
    """sqrt(alpha_bar) of step 0 … n−1 (step 0 at t = 999, exactly 0), then 1.0 for after the last step: the scaled-linear
    betas' alpha_bar at the selected timesteps, rescaled to zero terminal SNR over those timesteps only."""
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    alpha_bar = np.cumprod(1.0 - betas)
    selected = np.sqrt(alpha_bar[official_timesteps(num_steps)])  # descending in t: ascending alpha
    first, last = selected[-1], selected[0]  # t smallest (largest alpha), t = 999 (smallest alpha)
    rescaled = (selected - last) * first / (first - last)
    return [*rescaled.tolist(), 1.0]


def log_snr(alpha_cumprod_sqrt: float) -> float:
    """λ = log(a / √(1 − a²)) for a = sqrt(alpha_bar); −inf at a = 0, +inf at a = 1."""
    if alpha_cumprod_sqrt <= 0.0:
        return -math.inf
    if alpha_cumprod_sqrt >= 1.0:
        return math.inf
    return math.log(alpha_cumprod_sqrt / math.sqrt(1.0 - alpha_cumprod_sqrt**2))


def _alpha(lam: float) -> float:
    """The inverse of ``log_snr``: a = √sigmoid(2λ)."""
    if lam == math.inf:
        return 1.0
    if lam == -math.inf:
        return 0.0
    return math.sqrt(1.0 / (1.0 + math.exp(-2.0 * lam)))


def dpm_2m_coefficients(
    lam: float, lam_next: float, lam_prev: float | None
) -> tuple[float, float, float, float, float]:
    """(m1, m2, m3, m4, m_noise) of one SDE-DPM-Solver++(2M) step: x_next = m1·x − m2·(m3·x0 − m4·old_x0) +
    m_noise·noise; ``lam_prev`` None for a first-order step (m3 = 1, m4 = 0). IEEE limits as the official code relies
    on them: λ = −inf (step 0) gives m1 = 0, m2 = −a_next; λ_prev = −inf (step 1) gives r = inf, m3 = 1, m4 = 0;
    λ_next = +inf (the last step) gives m1 = 0, m2 = −1, m_noise = 0: the step returns x0."""
    a, a_next = _alpha(lam), _alpha(lam_next)
    h = lam_next - lam
    decay = math.exp(-h)  # 0 when h = inf
    m1 = math.sqrt((1.0 - a_next**2) / (1.0 - a**2)) * decay
    m2 = (decay * decay - 1.0) * a_next if math.isinf(h) else math.expm1(-2.0 * h) * a_next
    m3, m4 = 1.0, 0.0
    if lam_prev is not None and not math.isinf(lam_next):
        r = (lam - lam_prev) / h
        m3, m4 = 1.0 + 1.0 / (2.0 * r), 1.0 / (2.0 * r)
    m_noise = math.sqrt(1.0 - a_next**2) * math.sqrt(1.0 - decay * decay)
    return m1, m2, m3, m4, m_noise


def coefficients_at(
    alpha: float, alpha_next: float, alpha_prev: float | None
) -> tuple[float, float, float, float, float]:
    """``dpm_2m_coefficients`` from sqrt(alpha_bar) values (``alpha_prev`` None: first order)."""
    lam_prev = None if alpha_prev is None else log_snr(alpha_prev)
    return dpm_2m_coefficients(log_snr(alpha), log_snr(alpha_next), lam_prev)


def step_coefficients(alphas: list[float], index: int) -> tuple[float, float, float, float, float]:
    """The coefficients of step ``index`` of a schedule from ``official_alphas`` (second order after step 0)."""
    return coefficients_at(alphas[index], alphas[index + 1], alphas[index - 1] if index > 0 else None)
