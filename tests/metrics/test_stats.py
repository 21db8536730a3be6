"""Shared statistics: bootstrap intervals, percentiles, additive mean/covariance states, Fréchet distance."""

from __future__ import annotations

import numpy as np
import pytest

from metrics.stats import (
    MeanCovAccumulator,
    bootstrap_ci,
    frechet_distance,
    frechet_distance_from_samples,
    percentiles,
)


def test_bootstrap_ci_is_seeded_and_matches_normal_theory():
    x = np.random.default_rng(1).normal(3.0, 2.0, 400)
    ci = bootstrap_ci(x, n_boot=4000, seed=7)
    assert ci == bootstrap_ci(x, n_boot=4000, seed=7)
    assert ci != bootstrap_ci(x, n_boot=4000, seed=8)
    assert ci.estimate == pytest.approx(x.mean())
    half = 1.96 * x.std(ddof=1) / np.sqrt(x.size)
    assert ci.low == pytest.approx(x.mean() - half, abs=0.15 * half)
    assert ci.high == pytest.approx(x.mean() + half, abs=0.15 * half)
    wider = bootstrap_ci(x, n_boot=4000, seed=7, level=0.99)
    assert wider.low < ci.low < ci.high < wider.high
    narrower = bootstrap_ci(np.tile(x, 16), n_boot=4000, seed=7)
    assert narrower.high - narrower.low < 0.4 * (ci.high - ci.low)


def test_bootstrap_ci_custom_statistic_and_degenerate_samples():
    x = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    med = bootstrap_ci(x, statistic=np.median, n_boot=500, seed=0)
    assert med.estimate == 3.0
    assert med.low >= 1.0 and med.high <= 100.0
    const = bootstrap_ci([5.0] * 10, n_boot=100, seed=0)
    assert (const.low, const.estimate, const.high) == (5.0, 5.0, 5.0)
    for bad in ([], [1.0, float("nan")], np.ones((2, 2))):
        with pytest.raises(ValueError):
            bootstrap_ci(bad)
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci([1.0, 2.0], level=1.5)


def test_percentiles():
    p = percentiles(np.arange(1, 101), qs=(0, 50, 95, 100))
    assert p == {0.0: 1.0, 50.0: 50.5, 95.0: pytest.approx(95.05), 100.0: 100.0}
    with pytest.raises(ValueError):
        percentiles([1.0], qs=(101,))


def test_accumulator_is_additive_and_gives_biased_covariance():
    x = np.random.default_rng(2).normal(size=(301, 7)) @ np.random.default_rng(3).normal(size=(7, 7))
    one = MeanCovAccumulator(7).update(x)
    parts = [MeanCovAccumulator(7).update(c) for c in np.array_split(x, [50, 51, 200])]
    merged = parts[0] + parts[1] + parts[2] + parts[3]
    assert merged.count == one.count == 301
    np.testing.assert_allclose(merged.sum, one.sum, rtol=1e-12)
    np.testing.assert_allclose(merged.sum_outer, one.sum_outer, rtol=1e-12)
    np.testing.assert_allclose(one.mean(), x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(one.cov(), np.cov(x.T, bias=True), rtol=1e-9, atol=1e-12)
    assert parts[0].count == 50  # merging does not modify the operands
    with pytest.raises(ValueError):
        one.merge(MeanCovAccumulator(3))
    with pytest.raises(ValueError):
        MeanCovAccumulator(7).mean()


def test_frechet_distance_closed_form_and_scipy_equivalence():
    # 1-D Gaussians: (m1 - m2)^2 + (s1 - s2)^2.
    d = frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[9.0]]))
    assert d == pytest.approx(4.0 + 1.0)
    rng = np.random.default_rng(4)
    a = rng.normal(size=(200, 24)) @ rng.normal(size=(24, 24))
    b = rng.normal(0.3, 1.0, size=(150, 24)) @ rng.normal(size=(24, 24))
    mu_a, ca, mu_b, cb = a.mean(0), np.cov(a.T, bias=True), b.mean(0), np.cov(b.T, bias=True)
    ours = frechet_distance(mu_a, ca, mu_b, cb)
    scipy_value = frechet_distance(mu_a, ca, mu_b, cb, method="scipy_sqrtm")
    assert ours == pytest.approx(scipy_value, rel=1e-8)
    assert frechet_distance_from_samples(a, b) == pytest.approx(ours, rel=1e-9)


def test_frechet_distance_rank_deficient_sets():
    rng = np.random.default_rng(5)
    a = rng.normal(0, 3, size=(8, 200)) + rng.normal(0, 5, 200)  # fewer samples than dimensions
    b = rng.normal(0, 3, size=(12, 200))
    acc_a = MeanCovAccumulator(200).update(a)
    acc_b = MeanCovAccumulator(200).update(b)
    assert abs(frechet_distance(acc_a.mean(), acc_a.cov(), acc_a.mean(), acc_a.cov())) < 1e-6
    assert abs(frechet_distance_from_samples(a, a)) < 1e-9
    via_moments = frechet_distance(acc_a.mean(), acc_a.cov(), acc_b.mean(), acc_b.cov())
    assert frechet_distance_from_samples(a, b) == pytest.approx(via_moments, rel=1e-9)
    assert via_moments > 0
