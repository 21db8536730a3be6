"""FrechetVideoDistance (torchmetrics): same numbers as metrics.fvd, mergeable states, reference kept across reset.

The expected values come from the existing ``metrics.fvd`` code path (``FVDState`` + ``compute_fvd``), which the
Metric must reproduce; the real-media test runs both on the shared speaker clip through the real I3D.
Two feature regimes are covered because ``metrics.fvd`` takes two routes: fewer samples than the 400 dimensions with
retained features (the exact n x n sample route) and more samples than dimensions (sums and covariances).
"""

from __future__ import annotations

import pickle
import warnings

import av
import i3d_fixtures
import numpy as np
import pytest
import torch

from metrics.fvd import (
    CLIP_FRAMES,
    PROTOCOL_CLIPS,
    PROTOCOL_STYLEGANV,
    FVDState,
    I3DFeatures,
    compute_fvd,
)
from metrics.fvd_metric import FrechetVideoDistance
from reports.errors import InputError, MeasurementError

# Merged halves differ from one pass only by the order of float64 additions of the sums; 1e-9 relative is the issue's
# bound (measured: 0 to 2.3e-15 on these features).
MERGE_RTOL = 1e-9


def _features(seed: int, n: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(shift, 2.0, size=(n, 400)) + np.linspace(-3, 3, 400)).astype(np.float32)


def _pooled_projection(clips: torch.Tensor) -> np.ndarray:
    """A cheap deterministic stand-in for I3D in plumbing tests (as in test_fvd.py)."""
    pooled = torch.nn.functional.adaptive_avg_pool3d(clips, (4, 4, 4)).flatten(1).double().numpy()
    proj = np.random.default_rng(0).normal(size=(pooled.shape[1], 400))
    return (pooled @ proj).astype(np.float32)


def _video(seed: int, frames: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(frames, 24, 32, 3), dtype=np.uint8)


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


REGIMES = {  # name: (generated features, reference features, keep_features)
    "few-samples": (lambda: _features(8, 41, 0.3), lambda: _features(7, 40), True),
    "many-samples": (lambda: _features(1, 600, 0.1), lambda: _features(2, 500), False),
}


@pytest.mark.parametrize("regime", sorted(REGIMES))
def test_compute_equals_metrics_fvd_exactly(regime):
    gen_fn, ref_fn, keep = REGIMES[regime]
    gen, ref = gen_fn(), FVDState(keep_features=keep).add_features(ref_fn())
    expected = compute_fvd(FVDState(keep_features=keep).add_features(gen), ref).value
    metric = FrechetVideoDistance(ref, keep_features=keep)
    metric.update(torch.from_numpy(gen))
    value = metric.compute()
    assert value.dtype == torch.float64 and value.ndim == 0
    assert float(value) == expected
    assert metric.result().value == expected  # the rich result carries the same number


@pytest.mark.parametrize("regime", sorted(REGIMES))
def test_merged_halves_equal_one_pass(regime):
    gen_fn, ref_fn, keep = REGIMES[regime]
    gen, ref = gen_fn(), FVDState(keep_features=keep).add_features(ref_fn())
    whole = FrechetVideoDistance(ref, keep_features=keep)
    whole.update(torch.from_numpy(gen))
    cut = len(gen) // 2 + 3
    for how in ("instance", "cpu_state", "metric_state", "pickled"):
        first, second = FrechetVideoDistance(ref, keep_features=keep), FrechetVideoDistance(ref, keep_features=keep)
        first.update(torch.from_numpy(gen[:cut]))
        second.update(gen[cut:])  # numpy works too
        incoming = {
            "instance": second,
            "cpu_state": second.cpu_state(),
            "metric_state": second.metric_state,
            "pickled": pickle.loads(pickle.dumps(second.cpu_state())),
        }[how]
        first.merge_state(incoming)
        assert _rel(float(first.compute()), float(whole.compute())) <= MERGE_RTOL, how
        merged, one = first.generated_state(), whole.generated_state()
        assert (merged.count, merged.n_videos) == (one.count, one.n_videos) == (len(gen), len(gen))
        scale = float(np.abs(one.acc.sum_outer).max())  # float64 rounding of sums in another order, per entry
        np.testing.assert_allclose(merged.acc.sum_outer, one.acc.sum_outer, rtol=0, atol=1e-12 * scale)
        if keep:  # per-sample features in one-pass order: this instance's first, then the incoming ones
            np.testing.assert_array_equal(merged.features, one.features)
            np.testing.assert_array_equal(merged.video_ids, one.video_ids)


def test_merge_into_a_fresh_instance_counts_as_update_and_drops_the_cached_value():
    ref = FVDState().add_features(_features(7, 40))
    a, b = FrechetVideoDistance(ref), FrechetVideoDistance(ref)
    a.update(_features(3, 20))
    b.update(_features(4, 20))
    fresh = FrechetVideoDistance(ref)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "compute called before update" warning after a merge
        fresh.merge_state(a)
        only_a = float(fresh.compute())
        fresh.merge_state(b)
        both = float(fresh.compute())
    assert only_a == float(a.compute()) and both != only_a
    both_states = FVDState(keep_features=False).add_features(np.concatenate([_features(3, 20), _features(4, 20)]))
    assert _rel(both, compute_fvd(both_states, ref).value) <= MERGE_RTOL


def test_reset_keeps_the_reference_and_clears_the_generated_side():
    ref = FVDState().add_features(_features(7, 40))
    metric = FrechetVideoDistance(keep_features=True)
    metric.set_reference(ref)
    gen = _features(8, 30, 0.3)
    metric.update(gen)
    before = float(metric.compute())
    metric.reset()
    assert metric.reference is ref
    assert float(metric.fake_n) == 0 and float(metric.fake_sum.abs().sum()) == 0 and metric.fake_features == []
    with (
        pytest.warns(UserWarning, match="before the ``update``"),  # torchmetrics' own warning after reset
        pytest.raises(MeasurementError, match="generated set has 0 samples"),
    ):
        metric.compute()
    metric.update(gen)
    assert float(metric.compute()) == before
    # The reference is not a Metric state: not summed across processes, not in the shipped state.
    assert set(metric.cpu_state()) == {
        "fake_sum",
        "fake_outer",
        "fake_n",
        "fake_videos",
        "fake_skipped",
        "fake_features",
        "fake_video_sizes",
    }


def test_states_and_class_attributes():
    metric = FrechetVideoDistance(FVDState())
    assert FrechetVideoDistance.higher_is_better is False
    assert FrechetVideoDistance.is_differentiable is False and FrechetVideoDistance.full_state_update is False
    assert all(v.dtype == torch.float64 for v in metric.metric_state.values())
    assert metric.fake_outer.shape == (400, 400) and metric.fake_sum.shape == (400,)
    assert "fake_features" not in metric.metric_state  # only with keep_features=True
    assert FrechetVideoDistance().protocol == PROTOCOL_STYLEGANV
    assert FrechetVideoDistance(FVDState(PROTOCOL_CLIPS)).protocol == PROTOCOL_CLIPS


def test_update_videos_equals_fvdstate_update_and_keeps_video_grouping():
    videos = [_video(i, 40) for i in range(3)] + [_video(9, 33), _video(10, 10)]
    ref_state = FVDState(PROTOCOL_CLIPS).update([_video(20 + i, 33) for i in range(4)], _pooled_projection)
    gen_state = FVDState(PROTOCOL_CLIPS).update(videos, _pooled_projection)
    metric = FrechetVideoDistance(ref_state, keep_features=True)
    metric.update_videos(videos[:2], _pooled_projection)
    metric.update_videos(videos[2:], _pooled_projection)
    got = metric.generated_state()
    assert (got.count, got.n_videos, got.n_skipped) == (gen_state.count, gen_state.n_videos, gen_state.n_skipped)
    assert got.video_ids.tolist() == gen_state.video_ids.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    np.testing.assert_array_equal(got.features, gen_state.features)
    expected = compute_fvd(gen_state, ref_state, n_boot=40, seed=5)
    assert _rel(float(metric.compute()), expected.value) <= MERGE_RTOL
    ci = metric.interval(n_boot=40, seed=5)  # whole videos resampled, as metrics.fvd.bootstrap_fvd
    assert ci.method == "bias-corrected percentile bootstrap over videos" and ci.n == 4
    assert ci.low == pytest.approx(expected.ci.low, rel=1e-9) and ci.high == pytest.approx(expected.ci.high, rel=1e-9)


def test_interval_equals_metrics_fvd_bootstrap():
    ref = FVDState().add_features(_features(7, 40))
    gen = _features(8, 40, 0.3)
    expected = compute_fvd(FVDState().add_features(gen), ref, n_boot=60, seed=3).ci
    metric = FrechetVideoDistance(ref, keep_features=True)
    metric.update(gen[:25])
    metric.update(gen[25:])
    assert metric.interval(n_boot=60, seed=3) == expected
    lean = FrechetVideoDistance(ref)
    lean.update(gen)
    with pytest.raises(MeasurementError, match="not retained"):
        lean.interval(n_boot=10)


def test_refusals_name_the_problem():
    ref = FVDState().add_features(_features(7, 40))
    with pytest.raises(MeasurementError, match="needs a reference"):
        metric = FrechetVideoDistance()
        metric.update(_features(1, 5))
        metric.compute()
    with pytest.raises(InputError, match="protocol"):
        FrechetVideoDistance(protocol=PROTOCOL_CLIPS).set_reference(ref)
    with pytest.raises(ValueError, match="unknown FVD protocol"):
        FrechetVideoDistance(protocol="fvd-2048")
    one = FrechetVideoDistance(ref)
    one.update(_features(1, 1))
    with pytest.raises(MeasurementError, match="generated set has 1 samples"):
        one.compute()
    with pytest.raises(InputError, match="protocol"):
        one.merge_state(FrechetVideoDistance(FVDState(PROTOCOL_CLIPS)))
    with pytest.raises(ValueError, match="keep_features"):
        one.merge_state(FrechetVideoDistance(ref, keep_features=True))
    with pytest.raises(ValueError, match="lacks 'fake_outer'"):
        one.merge_state({"fake_sum": torch.zeros(400, dtype=torch.float64)})
    with pytest.raises(ValueError, match=r"shape \(400,\)"):
        one.merge_state({**one.cpu_state(), "fake_sum": torch.zeros(3, dtype=torch.float64)})
    kept = FrechetVideoDistance(ref, keep_features=True)
    with pytest.raises(ValueError, match="non-decreasing"):
        kept.update(_features(1, 3), video_ids=np.array([1, 0, 1]))
    with pytest.raises(ValueError, match=r"features must be \[N,400\]"):
        kept.update(np.zeros((3, 7), np.float32))
    with pytest.raises(ValueError, match="finite"):
        kept.update(np.full((2, 400), np.nan, np.float32))
    assert float(kept.fake_n) == 0  # nothing half-added by a refused update


@pytest.fixture(scope="module")
def speaker_windows(speaker_clip) -> list[np.ndarray]:
    with av.open(str(speaker_clip)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    return [frames[s : s + CLIP_FRAMES] for s in (0, 48, 96)]


def test_real_i3d_on_the_speaker_clip_equals_metrics_fvd(speaker_windows):
    extractor = I3DFeatures.from_safetensors(i3d_fixtures.i3d_safetensors())
    reference = FVDState().update(speaker_windows, extractor)
    flipped = [w[:, :, ::-1].copy() for w in speaker_windows]  # a mirrored set: a real, non-zero distance
    expected = compute_fvd(FVDState().update(flipped, extractor), reference).value
    metric = FrechetVideoDistance(reference, keep_features=True)
    metric.update_videos(flipped, extractor)
    assert expected > 0 and float(metric.compute()) == expected
    metric.reset()
    metric.update_videos(speaker_windows, extractor)  # the reference set itself
    assert abs(float(metric.compute())) < 1e-6
