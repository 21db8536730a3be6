"""FVD: preprocessing, clip selection, additive states, bootstrap, not-measured paths, and direction on real media.

The direction tests use the real TF-Hub I3D weights and the shared speaker clip. The "set" is three non-overlapping
16-frame windows of the clip (starting at frames 0, 48, 96), each treated as one video under the StyleGAN-V protocol (first
16 frames per video); the degraded sets are the same windows blurred or with frames shuffled, so any distance comes
from the degradation alone (the undegraded set is at distance exactly 0).
"""

from __future__ import annotations

import av
import cv2
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
    frechet_distance,
    measure_video_fvd,
    preprocess_clip,
    select_clips,
    tf1_bilinear_matrix,
)
from reports.errors import InputError

WINDOW_STARTS = (0, 48, 96)


def _pooled_projection(clips: torch.Tensor) -> np.ndarray:
    """A cheap deterministic stand-in for I3D in plumbing tests: pooled pixels through a fixed random projection."""
    pooled = torch.nn.functional.adaptive_avg_pool3d(clips, (4, 4, 4)).flatten(1).double().numpy()
    proj = np.random.default_rng(0).normal(size=(pooled.shape[1], 400))
    return (pooled @ proj).astype(np.float32)


def _video(seed: int, frames: int = 20, h: int = 48, w: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(frames, h, w, 3), dtype=np.uint8)


def _features(seed: int, n: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(shift, 2.0, size=(n, 400)) + np.linspace(-3, 3, 400)).astype(np.float32)


# --- preprocessing --------------------------------------------------------------------------------------------------


def test_tf1_bilinear_semantics():
    down = tf1_bilinear_matrix(448, 224)  # legacy TF1: output o samples input 2*o exactly (no half-pixel shift)
    np.testing.assert_array_equal(down, np.eye(448)[::2])
    up = tf1_bilinear_matrix(2, 4)  # samples at 0, 0.5, 1, 1.5 -> last clamps to the edge
    np.testing.assert_allclose(up, [[1, 0], [0.5, 0.5], [0, 1], [0, 1]])
    np.testing.assert_allclose(tf1_bilinear_matrix(528, 224).sum(axis=1), 1.0)


def test_preprocess_clip_range_shape_and_grey_frames():
    video = _video(0, frames=16, h=90, w=120)
    x = preprocess_clip(video)
    assert x.shape == (3, 16, 224, 224) and x.dtype == torch.float32
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    grey = video[..., 0]
    np.testing.assert_array_equal(preprocess_clip(grey).numpy(), preprocess_clip(np.stack([grey] * 3, -1)).numpy())
    np.testing.assert_allclose(preprocess_clip(np.full((16, 8, 8), 255, np.uint8)).numpy(), 1.0, atol=1e-6)
    with pytest.raises(InputError, match="uint8"):
        preprocess_clip(video.astype(np.float32))
    with pytest.raises(InputError, match=r"\[T,H,W,3\]"):
        preprocess_clip(np.zeros((16, 8, 8, 4), np.uint8))


def test_clip_selection_per_protocol():
    video = np.arange(40, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    first = select_clips(video, PROTOCOL_STYLEGANV)
    assert len(first) == 1 and first[0][:, 0, 0, 0].tolist() == list(range(16))
    windows = select_clips(video, PROTOCOL_CLIPS)
    assert [w[0, 0, 0, 0] for w in windows] == [0, 16]
    assert select_clips(video[:15], PROTOCOL_STYLEGANV) == [] == select_clips(video[:15], PROTOCOL_CLIPS)


# --- states ---------------------------------------------------------------------------------------------------------


def test_fvd_of_a_set_against_itself_is_zero():
    state = FVDState().add_features(_features(0, 30))
    assert abs(frechet_distance(state, state)) < 1e-6
    copy = FVDState().add_features(_features(0, 30))
    assert abs(compute_fvd(copy, state).value) < 1e-6
    assert compute_fvd(FVDState().add_features(_features(1, 30, shift=0.5)), state).value > 1.0


def test_merging_half_states_equals_one_pass(tmp_path):
    feats_a, feats_b = _features(2, 41), _features(3, 37, shift=0.2)
    whole = FVDState().add_features(feats_a)
    halves = FVDState().add_features(feats_a[:20]) + FVDState().add_features(feats_a[20:])
    assert halves.count == whole.count == 41 and halves.n_videos == 41
    np.testing.assert_allclose(halves.acc.sum, whole.acc.sum, rtol=1e-12)
    np.testing.assert_allclose(halves.acc.sum_outer, whole.acc.sum_outer, rtol=1e-12)
    np.testing.assert_array_equal(halves.features, whole.features)
    np.testing.assert_array_equal(halves.video_ids, whole.video_ids)
    other = FVDState().add_features(feats_b)
    assert frechet_distance(halves, other) == pytest.approx(frechet_distance(whole, other), abs=1e-9)
    # Round trip through disk (another machine's state) changes nothing.
    back = FVDState.load(halves.save(tmp_path / "half.npz"))
    assert back.protocol == halves.protocol and back.count == 41
    np.testing.assert_array_equal(back.acc.sum_outer, halves.acc.sum_outer)
    assert frechet_distance(back, other) == frechet_distance(halves, other)


def test_update_with_videos_counts_skips_and_merges(tmp_path):
    videos = [_video(i) for i in range(3)] + [_video(9, frames=10)]
    one = FVDState().update(videos, _pooled_projection)
    assert (one.count, one.n_videos, one.n_skipped) == (3, 3, 1)
    assert one.summary()["n_skipped_short"] == 1 and one.summary()["protocol"].startswith("fvd/styleganv-16f:")
    two = FVDState().update(videos[:1], _pooled_projection) + FVDState().update(videos[1:], _pooled_projection)
    np.testing.assert_allclose(two.acc.sum_outer, one.acc.sum_outer, rtol=1e-12)
    chunked = FVDState(PROTOCOL_CLIPS).update(
        [_video(i, frames=33) for i in range(5)], _pooled_projection, chunk_clips=3
    )
    assert chunked.video_ids.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4] and chunked.n_videos == 5
    clips = FVDState(PROTOCOL_CLIPS).update([_video(0, frames=40), _video(1, frames=33)], _pooled_projection)
    assert (clips.count, clips.n_videos) == (4, 2)
    assert clips.video_ids.tolist() == [0, 0, 1, 1]
    with pytest.raises(InputError, match="protocol"):
        clips.merge(one)
    with pytest.raises(InputError, match="uint8"):
        FVDState().update([np.zeros((16, 8, 8, 3))], _pooled_projection)


def test_state_files_are_validated(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, version=np.array(1), protocol=np.array("styleganv-16f"), count=np.array(3), sum=np.zeros(400))
    with pytest.raises(InputError, match="must hold"):
        FVDState.load(bad)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, version=np.array(1), protocol=np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError, match="readable"):
        FVDState.load(pickled)
    (tmp_path / "garbage.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError):
        FVDState.load(tmp_path / "garbage.npz")


def test_not_measured_when_a_set_is_too_small():
    reference = FVDState().add_features(_features(4, 10))
    result = compute_fvd(FVDState().update([_video(0, frames=12)], _pooled_projection), reference)
    (m,) = result.measurements()
    assert m.name == "fvd" and not m.measured and m.value is None
    assert "0 samples" in m.reason and "1 videos shorter than 16 frames" in m.reason
    assert m.protocol.startswith("fvd/styleganv-16f") and m.higher_is_better is False
    other = FVDState(PROTOCOL_CLIPS).add_features(_features(5, 10))
    assert "protocols differ" in compute_fvd(other, reference).reason
    short = measure_video_fvd(
        _video(1, frames=15), FVDState(PROTOCOL_CLIPS).add_features(_features(6, 8)), _pooled_projection
    )
    assert short.value is None and "needs at least 2" in short.reason


def test_bootstrap_interval():
    reference = FVDState().add_features(_features(7, 40))
    generated = FVDState().add_features(_features(8, 40, shift=0.3))
    result = compute_fvd(generated, reference, n_boot=100, seed=3)
    again = compute_fvd(generated, reference, n_boot=100, seed=3)
    assert result.ci == again.ci and result.ci.n_boot == 100 and result.ci.level == 0.95
    assert result.ci.low < result.value < result.ci.high and result.ci.estimate == result.value
    assert result.ci.bias > 0  # resampling with replacement inflates the distance; the interval is shifted back
    (m,) = result.measurements()
    assert m.details["ci"]["low"] == result.ci.low and m.details["n_samples_generated"] == 40
    lean = FVDState(keep_features=False).add_features(_features(8, 40, shift=0.3))
    assert compute_fvd(lean, reference, n_boot=10).ci_reason.startswith("per-sample features")
    per_video = measure_video_fvd(
        _video(2, frames=80),
        FVDState(PROTOCOL_CLIPS).update([_video(3, frames=80)], _pooled_projection),
        _pooled_projection,
        n_boot=20,
    )
    assert per_video.value > 0 and per_video.ci.method == "bias-corrected percentile bootstrap over samples"
    assert per_video.n_samples == (5, 5)


# --- real media, real I3D -------------------------------------------------------------------------------------------


def _blur(video: np.ndarray, sigma: float) -> np.ndarray:
    return np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in video])


def _shuffle(video: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Permute a random ``fraction`` of the frame positions among themselves (the rest stay in place)."""
    order = np.arange(len(video))
    picked = np.sort(rng.choice(len(video), round(fraction * len(video)), replace=False))
    order[picked] = rng.permutation(picked)
    return video[order]


@pytest.fixture(scope="module")
def speaker_windows(speaker_clip) -> list[np.ndarray]:
    with av.open(str(speaker_clip)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    return [frames[s : s + CLIP_FRAMES] for s in WINDOW_STARTS]


@pytest.fixture(scope="module")
def extractor() -> I3DFeatures:
    return I3DFeatures.from_safetensors(i3d_fixtures.i3d_safetensors())


@pytest.fixture(scope="module")
def reference_state(speaker_windows, extractor) -> FVDState:
    return FVDState().update(speaker_windows, extractor)


@pytest.fixture(scope="module")
def blur_fvds(speaker_windows, extractor, reference_state) -> list[float]:
    """FVD of the blurred set against the sharp one, for Gaussian sigma 1, 2 and 4 px (at 976x528)."""
    return [
        compute_fvd(FVDState().update([_blur(w, s) for w in speaker_windows], extractor), reference_state).value
        for s in (1.0, 2.0, 4.0)
    ]


def test_fvd_grows_with_blur(blur_fvds):
    assert 0 < blur_fvds[0] < blur_fvds[1] < blur_fvds[2], blur_fvds


def test_fvd_grows_with_frame_shuffling(speaker_windows, extractor, reference_state):
    values = []
    for fraction in (0.25, 0.5, 1.0):
        rng = np.random.default_rng(1)
        shuffled = [_shuffle(w, fraction, rng) for w in speaker_windows]
        values.append(compute_fvd(FVDState().update(shuffled, extractor), reference_state).value)
    assert 0 < values[0] < values[1] < values[2], values


def test_grey_frames_give_a_finite_large_distance(extractor, reference_state, blur_fvds):
    grey = [np.full((CLIP_FRAMES, 64, 64), level, np.uint8) for level in (64, 160)]  # single-channel frames
    state = FVDState().update(grey, extractor)
    assert np.all(np.isfinite(state.features))
    result = compute_fvd(state, reference_state)
    assert np.isfinite(result.value) and result.value > blur_fvds[-1], (result.value, blur_fvds)
