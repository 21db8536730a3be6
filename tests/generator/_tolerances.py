"""Float tolerances for tests/generator, each derived from a stated bound (one constant per bound, defined once here).

Every comparison in tests/generator is float32 arithmetic against another float32 computation of the same quantity —
the official code's stored tensors (shared/fixtures/hallo3_official_tiny) or the spec's equations in plain tensor ops —
so a tolerance bounds rounding only. The CPU changes that rounding: GEMM blocking, FMA use and reduction order differ
between the AVX-512, AVX2 and scalar kernels, oneDNN and the thread count, so each bound must hold for any accumulation
order, not only for the one measured here. A real defect — a wrong sign, a missing term, a coefficient off by 1e-3 — moves
these tensors (values of order 1–10) by 1e-3 or more, at least 4× every bound below (the largest is 2.6e-4);
test_denoiser_step checks that a guidance scale off by 1e-3 fails.

Figures quoted below were measured on the development machine (AVX-512, one thread) and again with the AVX2 and the
scalar kernel paths forced (``ATEN_CPU_CAPABILITY=avx2|default ONEDNN_MAX_CPU_ISA=AVX2|SSE41``).
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import product

from _official_sampler import dpm_2m_coefficients, log_snr

from generator.sampling import CFG_SCALE

FLOAT32_UNIT_ROUNDOFF = 2.0**-24  # relative rounding error of one float32 operation

# Rounding the official code left in its stored float32 tensors: max |official − float64 rerun of the same weights on the
# same inputs| is 5.9e-6 on the denoiser's v (|v| ≤ 5.0) and 1.3e-6 on the reference banks. It is data, the same on
# every machine.
OFFICIAL_ROUNDING = 6e-6

# Our own float32 rounding in one pass of a tiny network: max |our float32 pass − float64 rerun| on the fixture's v is
# 2.1e-6 (AVX-512), 2.8e-6 (AVX2), 3.5e-6 (scalar kernels, the longest sequential sums). Bound: about 3× the worst.
OUR_ROUNDING = 1e-5

# One pass of ours against the official tensors: both roundings at once. Measured on v: 6.2e-6 (AVX-512), 6.4e-6
# (AVX2), 6.0e-6 (scalar). The x0 halves x0 = a·x − √(1−a²)·v pass the v error on with weight √(1−a²) < 1; the 13 %
# left over at the fixture's a = 0.49 covers the two extra float32 roundings of |x0| ≤ 9 (2·ulp(8) = 1.9e-6).
SINGLE_PASS_TOL = OFFICIAL_ROUNDING + OUR_ROUNDING

# Two passes of our own code that may accumulate in different orders (our module vs the spec's plain-op equations, a
# batch-1 vs a batch-2 call): each within OUR_ROUNDING of the exact value. Measured ≤ 2.0e-6 on the block, projection
# and bank tests on all three kernel paths.
TWO_PASSES_TOL = 2 * OUR_ROUNDING

# Classifier-free guidance u + s·(c − u), s = 3.5: with |error(u)|, |error(c)| ≤ δ the triangle inequality on the
# formula as written gives ≤ δ + s·2δ = (1 + 2s)·δ = 8δ (the tight factor is |1 − s| + s = 6). This is why the fixture's
# x0_cfg differs by 1.48e-5 where each half differs by ≤ 5.5e-6.
CFG_GAIN = 1 + 2 * CFG_SCALE
CFG_TOL = CFG_GAIN * SINGLE_PASS_TOL
# The same guidance over two passes of our own code (a batch-2 pipeline call vs batch-1 calls).
CFG_TWO_PASSES_TOL = CFG_GAIN * TWO_PASSES_TOL

# A float32 number the official code stored (a schedule alpha, the quantised alpha) vs our float64 value of it: the
# stored value's rounding (≤ 3e-8 below 1) plus the official float32 arithmetic that made it (the schedule's rescale:
# 1.2e-7 measured). Data, the same on every machine; neighbouring table entries and the two schedules differ by ≥ 1e-4.
OFFICIAL_VALUE_TOL = 1e-6

# Two float64 computations of the same schedule (torch in generator.sampling, numpy in _official_sampler.py): ~1e-16
# per operation; the 1000-term cumulative product accumulates at most ~1e-13.
FLOAT64_TOL = 1e-12

# cos/sin tables of the same float32 angles (|angle| ≤ 3): the angle's rounding (3·u) plus ≤ 1 ulp from the vectorised
# or scalar math library — about 16·u = 9.5e-7; measured 0.
TABLE_TOL = 1e-6

# The 50-step trajectory: the final sample is the last step's CFG x0 (ᾱ_next = 1 gives m1 = 0, m2 = −1), one CFG_TOL;
# the state it is computed from carries the earlier steps' errors (2.1e-5 before the last step), passed on through
# x0 = a·x − √(1−a²)·v with a ≈ 1: one more CFG_TOL for them. Measured at the end: 2.2e-5 (AVX-512).
TRAJECTORY_TOL = 2 * CFG_TOL

# Absolute error of one log-SNR λ = log √(ᾱ/(1−ᾱ)) computed in float32 from a float32-stored ᾱ: ᾱ's own rounding
# (u·ᾱ/(2ᾱ(1−ᾱ)) ≤ u for ᾱ ≤ ½), 1−ᾱ, the division, the square root and the logarithm's argument: ≤ 4u; doubled.
LOG_SNR_ROUNDING = 8 * FLOAT32_UNIT_ROUNDOFF
# Roundings in the update m1·x − m2·(m3·x0 − m4·old) + m_noise·noise: 4 products, 3 sums, 2 more for m2·m3 and m2·m4.
STEP_OPERATIONS = 9


def _weights(lams: tuple[float, float, float | None]) -> tuple[float, float, float, float]:
    """The step's weights on (x, x0, old_x0, noise): m1, m2·m3, m2·m4, m_noise."""
    m1, m2, m3, m4, mn = dpm_2m_coefficients(*lams)
    return m1, m2 * m3, m2 * m4, mn


def _corners(lams: tuple[float, float, float | None], delta: float) -> Iterator[tuple[float, float, float | None]]:
    lam, lam_next, lam_prev = lams
    for s0, s1, s2 in product((-delta, delta), repeat=3):
        yield lam + s0, lam_next + s1, None if lam_prev is None else lam_prev + s2


def sampler_step_tolerance(
    alpha: float, alpha_next: float, alpha_prev: float | None, sizes: tuple[float, float, float, float]
) -> float:
    """Bound on |float32 step − exact step| for one step of one implementation, from the scheduler coefficients at
    sqrt(alpha_bar) ``alpha`` (→ ``alpha_next``, after ``alpha_prev``; None for a first-order step; 0 and 1 at the ends
    are the exact limits) and the largest magnitudes ``sizes`` of (x, x0, old_x0, noise):

    * coefficients: each λ off by up to LOG_SNR_ROUNDING; the weights are evaluated at the corners of that box. The
      ratio r = (λ − λ_prev)/h divides by h ≈ 0.07 at 50 steps, which is what makes m3, m4 the sensitive ones;
    * the update itself: STEP_OPERATIONS roundings of at most u times the sum of the terms' sizes.
    """
    lams = (log_snr(alpha), log_snr(alpha_next), None if alpha_prev is None else log_snr(alpha_prev))
    centre = _weights(lams)
    corners = [_weights(corner) for corner in _corners(lams, LOG_SNR_ROUNDING)]
    coefficient_error = sum(max(abs(w[k] - centre[k]) for w in corners) * sizes[k] for k in range(4))
    rounding = STEP_OPERATIONS * FLOAT32_UNIT_ROUNDOFF * sum(abs(c) * s for c, s in zip(centre, sizes, strict=True))
    return coefficient_error + rounding
