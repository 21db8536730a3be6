"""measure_lipsync on bad or unscorable input: a clear error or explicit not-measured rows, never a number."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from lipsync_fixtures import detecting_s3fd, random_s3fd, write_s3fd_fixture, write_syncnet_fixture

from metrics.lipsync import LipsyncConfig, measure_lipsync
from reports.errors import InputError, MeasurementError


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("weights")
    return {
        "syncnet": write_syncnet_fixture(d / "syncnet_v2.model", seed=0),
        "detecting": write_s3fd_fixture(d / "sfd_face.pth", detecting_s3fd(seed=0)),
        "blind": write_s3fd_fixture(d / "sfd_blind.pth", random_s3fd(seed=0)),  # random scores stay near 0.5 < 0.9
    }


def _clip(n: int = 60, size: int = 128, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (n, size, size, 3), dtype=np.uint8)


def _speech(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)


def _measure(frames, audio, weights, s3fd="detecting", fps=25.0, sample_rate=16000, **cfg):
    return measure_lipsync(
        frames,
        fps,
        audio,
        sample_rate,
        syncnet_weights=weights["syncnet"],
        s3fd_weights=weights[s3fd],
        config=LipsyncConfig(**cfg) if cfg else None,
    )


def _assert_not_measured(result, *words: str) -> None:
    rows = result.measurements()
    assert [m.name for m in rows] == ["sync_c", "sync_d", "sync_offset"]
    for m in rows:
        assert m.value is None and not m.measured
        for word in words:
            assert word in m.reason
    assert result.sync_c is None and result.sync_d is None and result.offset is None


@pytest.mark.parametrize("which", ["syncnet", "s3fd"])
def test_missing_weights_name_the_fetch_command(tmp_path, weights, which):
    missing = tmp_path / ("syncnet_v2.model" if which == "syncnet" else "sfd_face.pth")
    paths = {"syncnet_weights": weights["syncnet"], "s3fd_weights": weights["detecting"]}
    paths[f"{which}_weights"] = missing
    with pytest.raises(MeasurementError) as err:
        measure_lipsync(_clip(), 25.0, _speech(2.4), 16000, **paths)
    assert str(err.value) == f"not measured: {missing} missing — run `hallo3-gate weights fetch {which}`"


def test_corrupt_weights_are_an_input_error(tmp_path, weights):
    bad = tmp_path / "syncnet_v2.model"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(InputError, match=r"syncnet_v2\.model"):
        measure_lipsync(_clip(), 25.0, _speech(2.4), 16000, syncnet_weights=bad, s3fd_weights=weights["detecting"])


def test_weights_of_the_wrong_network_are_an_input_error(weights):
    with pytest.raises(InputError, match="state dict keys"):
        measure_lipsync(
            _clip(), 25.0, _speech(2.4), 16000, syncnet_weights=weights["detecting"], s3fd_weights=weights["detecting"]
        )


@pytest.mark.parametrize(
    ("frames", "rule"),
    [
        (np.zeros((60, 128, 128, 3), np.float32), "uint8"),
        (np.zeros((60, 128, 128, 4), np.uint8), "shape"),
        (np.zeros((128, 128), np.uint8), "shape"),
        ([[0]], "uint8"),
    ],
)
def test_malformed_frames(weights, frames, rule):
    with pytest.raises(InputError, match=rule) as err:
        _measure(frames, _speech(2.4), weights)
    assert str(err.value).startswith("frames:")


def test_nan_audio_is_an_input_error(weights):
    audio = _speech(2.4)
    audio[100:110] = np.nan
    with pytest.raises(InputError, match="10 non-finite samples"):
        _measure(_clip(), audio, weights)


def test_stereo_or_integer_audio_is_an_input_error(weights):
    with pytest.raises(InputError, match="mono float"):
        _measure(_clip(), np.zeros((38400, 2), np.float32), weights)
    with pytest.raises(InputError, match="mono float"):
        _measure(_clip(), np.zeros(38400, np.int16), weights)


@pytest.mark.parametrize(
    ("fps", "sample_rate", "subject"), [(0.0, 16000, "fps"), (float("nan"), 16000, "fps"), (25.0, 0, "sample_rate")]
)
def test_bad_rates(weights, fps, sample_rate, subject):
    with pytest.raises(InputError) as err:
        _measure(_clip(), _speech(2.4), weights, fps=fps, sample_rate=sample_rate)
    assert str(err.value).startswith(subject)


def test_silent_audio_is_not_measured(weights):
    _assert_not_measured(_measure(_clip(), np.zeros(38400, np.float32), weights), "silent")
    _assert_not_measured(_measure(_clip(), np.full(38400, 1e-5, np.float32), weights), "silent")


def test_audio_shorter_than_video_is_not_measured(weights):
    _assert_not_measured(_measure(_clip(60), _speech(1.5), weights), "shorter than the video")


def test_clip_shorter_than_a_track_is_not_measured(weights):
    result = _measure(_clip(50), _speech(2.0), weights)  # 50 frames: a track needs more than 50
    _assert_not_measured(result, "clip too short", "more than 50 frames")
    # the same clip at 50 fps is 25 frames at the protocol's 25 fps
    _assert_not_measured(_measure(_clip(100), _speech(2.0), weights, fps=50.0), "clip too short")


def test_tiny_frames_are_not_measured(weights):
    _assert_not_measured(_measure(_clip(60, size=64), _speech(2.4), weights), "too small")


def test_no_face_is_not_measured(weights):
    result = _measure(_clip(60), _speech(2.4), weights, s3fd="blind")
    _assert_not_measured(result, "no face detected")
    assert result.frames_with_face == 0


def test_faces_without_a_long_enough_track_are_not_measured(weights):
    result = _measure(_clip(60), _speech(2.4), weights, min_face_size=1000.0)
    _assert_not_measured(result, "no face track", "60/60 frames")


def test_grey_frames_are_replicated_and_said_so(weights):
    grey = _clip(60)[..., 0]
    for frames in (grey, grey[..., None]):
        result = _measure(frames, _speech(2.4), weights, s3fd="blind")
        assert "grey frames" in " ".join(result.notes)
        _assert_not_measured(result, "no face detected")
        assert "grey frames" in " ".join(result.measurements()[0].details["notes"])


def test_other_rates_are_resampled_and_recorded(weights):
    result = _measure(_clip(60), _speech(2.4)[::2].copy(), weights, s3fd="blind", sample_rate=8000, fps=30.0)
    video, audio = result.resampling
    assert (video.source, video.target, video.output_length) == (30.0, 25.0, 50)
    assert (audio.source, audio.target, audio.input_length, audio.output_length) == (8000.0, 16000.0, 19200, 38400)
    assert "30 fps -> 25 fps" in video.describe()
    _assert_not_measured(result, "clip too short")  # 60 frames at 30 fps = 50 frames at 25 fps


def test_numpy_scalar_rates_are_accepted(weights):
    result = _measure(_clip(), np.zeros(38400, np.float32), weights, fps=np.float32(25.0), sample_rate=np.int64(16000))
    _assert_not_measured(result, "silent")
    with pytest.raises(InputError):
        _measure(_clip(), _speech(2.4), weights, sample_rate=True)


class _NotATensor:
    pass


def test_weights_with_arbitrary_pickled_objects_are_refused(tmp_path, weights):
    import torch

    bad = tmp_path / "sfd_face.pth"
    torch.save({"vgg.0.weight": _NotATensor()}, bad, _use_new_zipfile_serialization=False)
    with pytest.raises(InputError, match="weights_only=True") as caught:
        measure_lipsync(_clip(), 25.0, _speech(2.4), 16000, syncnet_weights=weights["syncnet"], s3fd_weights=bad)
    # the message names what was refused and never repeats torch's advice to load it unsafely
    message = caught.value.one_line()
    assert "_NotATensor" in message and "weights_only=False" not in message and "\x1b" not in message
