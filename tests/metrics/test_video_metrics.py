"""Per-video metrics as torchmetrics Metrics: mean, bootstrap interval, not-measured counting, mergeable states."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch

from metrics.measurement import Measurement
from metrics.specs import SPECS
from metrics.stats import bootstrap_ci
from metrics.video_metrics import (
    VIDEO_METRICS,
    AVSyncCorrelation,
    IdentitySimilarity,
    SyncConfidence,
    SyncDistance,
    VideoMeanMetric,
)
from reports.errors import MeasurementError

# Merged halves differ from one pass only by the order of float64 additions; 1e-9 relative is the bound.
MERGE_RTOL = 1e-9
CLASSES = (SyncConfidence, SyncDistance, IdentitySimilarity, AVSyncCorrelation)


def _values(seed: int, n: int = 37) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.6, 0.2, size=n)


def test_names_and_directions_come_from_the_spec_table():
    assert {cls.name for cls in CLASSES} == {"sync_c", "sync_d", "identity_mean", "avsync_corr"} == set(VIDEO_METRICS)
    for cls in CLASSES:
        assert cls.higher_is_better is SPECS[cls.name].higher_is_better
        assert cls.full_state_update is False and cls.is_differentiable is False
    assert SyncDistance.higher_is_better is False and SyncConfidence.higher_is_better is True
    with pytest.raises(TypeError, match="names no metric"):
        VideoMeanMetric()
    with pytest.raises(ValueError, match=r"not in metrics\.specs"):
        type("Bogus", (VideoMeanMetric,), {"name": "bogus"})


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.name)
def test_mean_interval_and_merged_halves(cls):
    values = _values(sum(map(ord, cls.name)))  # a fixed seed per metric
    whole = cls()
    whole.update(torch.from_numpy(values))
    assert whole.compute().dtype == torch.float64
    assert float(whole.compute()) == pytest.approx(float(np.mean(values)), rel=1e-12)
    assert whole.interval(n_boot=500, seed=4) == bootstrap_ci(values, n_boot=500, seed=4)
    for how in ("instance", "cpu_state", "pickled"):
        first, second = cls(), cls()
        first.update(values[:15].tolist())
        for v in values[15:]:
            second.update(float(v))
        incoming = {"instance": second, "cpu_state": second.cpu_state(), "pickled": pickle.loads(pickle.dumps(second))}
        first.merge_state(incoming[how])
        got, one = float(first.compute()), float(whole.compute())
        assert abs(got - one) <= MERGE_RTOL * abs(one), how
        np.testing.assert_array_equal(first.per_video(), values)  # one-pass order: own values, then incoming
        assert first.interval(n_boot=500, seed=4) == whole.interval(n_boot=500, seed=4)


def test_update_from_gate_measurements_counts_not_measured():
    metric = IdentitySimilarity()
    metric.update_from(
        {"identity_mean": Measurement("identity_mean", 0.8, "p"), "sync_c": Measurement("sync_c", 7, "p")}
    )
    metric.update_from({"identity_mean": Measurement.not_measured("identity_mean", "no face", "p")})
    metric.update_from({"sync_c": Measurement("sync_c", 3.0, "p")})  # identity never attempted on this video
    metric.update_from({"identity_mean": Measurement("identity_mean", 0.6, "p")})
    assert float(metric.compute()) == pytest.approx(0.7, rel=1e-12)
    assert float(metric.count) == 2 and float(metric.not_measured) == 2
    assert metric.per_video().tolist() == [0.8, 0.6]
    with pytest.raises(ValueError, match="measurement of 'sync_c'"):
        metric.update_from({"identity_mean": Measurement("sync_c", 1.0, "p")})
    with pytest.raises(ValueError, match="Measurement"):
        metric.update_from({"identity_mean": 0.5})  # type: ignore[dict-item]


def test_refusals():
    metric = SyncConfidence()
    with pytest.raises(MeasurementError, match=r"sync_c values: per-video values must be finite .*1 non-finite of 3"):
        metric.update(torch.tensor([1.0, float("nan"), 2.0]))
    with pytest.raises(MeasurementError, match="non-finite"):
        metric.update([float("inf")])
    with pytest.raises(ValueError, match="scalar or 1-D"):
        metric.update(torch.zeros(2, 2))
    assert float(metric.count) == 0 and metric.values == []  # nothing half-added
    metric.update_from({})
    with pytest.raises(MeasurementError, match=r"at least one measured video .*1 not measured"):
        metric.compute()
    with pytest.raises(MeasurementError, match="at least one measured video"):
        metric.interval()
    with pytest.raises(ValueError, match="expected a SyncConfidence"):
        metric.merge_state(SyncDistance())


def test_merge_counts_as_update_drops_cache_and_reset_clears():
    a, b = SyncDistance(), SyncDistance()
    a.update([1.0, 2.0])
    b.update([6.0])
    fresh = SyncDistance()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "compute called before update" warning after a merge
        fresh.merge_state(a)
        assert float(fresh.compute()) == 1.5
        fresh.merge_state(b)  # the cached 1.5 must not survive
        assert float(fresh.compute()) == 3.0
    fresh.reset()
    assert float(fresh.count) == 0 and float(fresh.total) == 0 and fresh.values == []
