"""Small shared statistics: bootstrap confidence intervals, percentiles, additive mean/covariance states, and the
Fréchet distance between Gaussians fitted to feature sets.

* :func:`bootstrap_ci` — mean (or another statistic) of a 1-D sample with a seeded percentile-bootstrap interval.
* :func:`percentiles` — named percentiles of a 1-D sample.
* :class:`MeanCovAccumulator` — count, float64 sum and float64 sum of outer products: states from different batches
  or machines merge by plain addition (torchmetrics-style sufficient statistics); covariance is the biased one
  (divided by N), as in StyleGAN-V's ``FeatureStats``.
* :func:`frechet_distance` — ``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})``.  The trace of the matrix square
  root is computed as the nuclear norm of ``S_a^{1/2} S_b^{1/2}`` (symmetric eigendecompositions, eigenvalues below
  ``1e-12 * max`` treated as 0).  For positive semi-definite inputs this is the same number as
  ``Tr(real(scipy.linalg.sqrtm(S_a @ S_b)))`` (StyleGAN-V), but it stays exact when the covariances are rank-deficient
  (fewer samples than dimensions: scipy's sqrtm is then off by ~1e-3 on 400-d features) and is several times faster.
  ``method="scipy_sqrtm"`` gives the literal StyleGAN-V computation.
* :func:`frechet_distance_from_samples` — the same distance straight from two sample matrices; when a set has fewer
  samples than dimensions it uses ``Tr((S_a S_b)^{1/2}) = ||A B^T||_* / sqrt(N_a N_b)`` (A, B centred samples), which is
  exact and cheap — what the FVD bootstrap runs thousands of times.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

_EIG_FLOOR = 1e-12


@dataclass(frozen=True)
class BootstrapCI:
    """A point estimate with its percentile-bootstrap confidence interval."""

    estimate: float
    low: float
    high: float
    level: float
    n: int
    n_boot: int
    seed: int
    method: str = "percentile bootstrap"
    bias: float = 0.0  # mean of the resampled statistics minus the estimate (reported; 0 when not estimated)

    def to_dict(self) -> dict[str, float | int | str]:
        return {
            "bias": self.bias,
            "estimate": self.estimate,
            "low": self.low,
            "high": self.high,
            "level": self.level,
            "n": self.n,
            "n_boot": self.n_boot,
            "seed": self.seed,
            "method": self.method,
        }


def _sample_1d(values: Iterable[float] | np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{what} needs a 1-D sample, got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{what} needs at least one value")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} needs finite values, got {int(np.sum(~np.isfinite(x)))} non-finite")
    return x


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


def bootstrap_ci(
    values: Iterable[float] | np.ndarray,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    statistic: Callable[[np.ndarray], float] | None = None,
) -> BootstrapCI:
    """Point estimate of ``statistic`` (default: the mean) and its percentile-bootstrap interval.

    Resamples the values with replacement ``n_boot`` times with ``numpy.random.default_rng(seed)``, so the interval is
    reproducible. A single value gives a zero-width interval (nothing to resample).
    """
    x = _sample_1d(values, "bootstrap_ci")
    _check_level(level)
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    if statistic is None:
        estimate = float(x.mean())
        boots = x[idx].mean(axis=1)
    else:
        estimate = float(statistic(x))
        boots = np.array([float(statistic(x[row])) for row in idx])
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(boots, [alpha, 1.0 - alpha])
    return BootstrapCI(estimate, float(low), float(high), level, int(x.size), n_boot, seed)


def percentiles(values: Iterable[float] | np.ndarray, qs: Sequence[float] = (5, 25, 50, 75, 95)) -> dict[float, float]:
    """``{q: q-th percentile}`` (linear interpolation) of a 1-D sample."""
    x = _sample_1d(values, "percentiles")
    if any(not 0 <= q <= 100 for q in qs):
        raise ValueError(f"percentiles must lie in [0, 100], got {list(qs)}")
    return {float(q): float(v) for q, v in zip(qs, np.percentile(x, list(qs)), strict=True)}


class MeanCovAccumulator:
    """Additive sufficient statistics of d-dimensional samples: count, float64 sum, float64 sum of outer products."""

    def __init__(self, dim: int) -> None:
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim = dim
        self.count = 0
        self.sum = np.zeros(dim, dtype=np.float64)
        self.sum_outer = np.zeros((dim, dim), dtype=np.float64)

    @classmethod
    def from_arrays(cls, count: int, total: np.ndarray, total_outer: np.ndarray) -> MeanCovAccumulator:
        total = np.asarray(total, dtype=np.float64)
        total_outer = np.asarray(total_outer, dtype=np.float64)
        if total.ndim != 1 or total_outer.shape != (total.size, total.size) or int(count) < 0:
            raise ValueError(f"inconsistent accumulator arrays: count {count}, {total.shape}, {total_outer.shape}")
        acc = cls(total.size)
        acc.count, acc.sum, acc.sum_outer = int(count), total.copy(), total_outer.copy()
        return acc

    def update(self, samples: np.ndarray) -> MeanCovAccumulator:
        x = np.asarray(samples, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"samples must be [N, {self.dim}], got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("samples must be finite")
        self.count += x.shape[0]
        self.sum += x.sum(axis=0)
        self.sum_outer += x.T @ x
        return self

    def merge(self, other: MeanCovAccumulator) -> MeanCovAccumulator:
        """A new accumulator holding both sets (the operands are left unchanged)."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge accumulators of dim {self.dim} and {other.dim}")
        return MeanCovAccumulator.from_arrays(
            self.count + other.count, self.sum + other.sum, self.sum_outer + other.sum_outer
        )

    __add__ = merge

    def mean(self) -> np.ndarray:
        if self.count < 1:
            raise ValueError("mean of an empty accumulator")
        return self.sum / self.count

    def cov(self) -> np.ndarray:
        """Biased covariance ``E[x x^T] - mu mu^T`` (divided by N), symmetrised."""
        mu = self.mean()
        c = self.sum_outer / self.count - np.outer(mu, mu)
        return (c + c.T) / 2.0


def _psd_sqrt(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((c + c.T) / 2.0)
    floor = _EIG_FLOOR * max(float(w.max(initial=0.0)), 0.0)
    w = np.where(w > floor, w, 0.0)
    return (v * np.sqrt(w)) @ v.T


def trace_sqrt_product(cov_a: np.ndarray, cov_b: np.ndarray) -> float:
    """``Tr((S_a S_b)^{1/2})`` for PSD matrices, as the nuclear norm of ``S_a^{1/2} S_b^{1/2}``."""
    return float(np.linalg.svd(_psd_sqrt(cov_a) @ _psd_sqrt(cov_b), compute_uv=False).sum())


def frechet_distance(
    mu_a: np.ndarray,
    cov_a: np.ndarray,
    mu_b: np.ndarray,
    cov_b: np.ndarray,
    *,
    method: Literal["eigh", "scipy_sqrtm"] = "eigh",
) -> float:
    """Fréchet distance between N(mu_a, cov_a) and N(mu_b, cov_b) (see the module docstring for ``method``)."""
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    cov_a, cov_b = np.asarray(cov_a, np.float64), np.asarray(cov_b, np.float64)
    d = mu_a.size
    if mu_b.shape != (d,) or cov_a.shape != (d, d) or cov_b.shape != (d, d):
        raise ValueError(f"shape mismatch: {mu_a.shape} {cov_a.shape} vs {mu_b.shape} {cov_b.shape}")
    if method == "eigh":
        tr_sqrt = trace_sqrt_product(cov_a, cov_b)
    elif method == "scipy_sqrtm":
        import scipy.linalg

        tr_sqrt = float(np.trace(np.real(scipy.linalg.sqrtm(cov_a @ cov_b))))
    else:
        raise ValueError(f"unknown method {method!r}")
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * tr_sqrt)


def frechet_distance_from_samples(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted (biased covariance) to sample matrices ``a [Na,D]``, ``b [Nb,D]``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) < 1 or len(b) < 1:
        raise ValueError(f"need two non-empty [N, D] sample matrices, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    ca, cb = a - mu_a, b - mu_b
    if min(len(a), len(b)) >= a.shape[1]:
        return frechet_distance(mu_a, ca.T @ ca / len(a), mu_b, cb.T @ cb / len(b))
    tr_sqrt = float(np.linalg.svd(ca @ cb.T, compute_uv=False).sum()) / np.sqrt(len(a) * len(b))
    diff = mu_a - mu_b
    return float(diff @ diff + np.sum(ca * ca) / len(a) + np.sum(cb * cb) / len(b) - 2.0 * tr_sqrt)
