"""metrics.resample: frame selection equals ffmpeg's fps filter (``-vf fps=25``); audio keeps pitch and level."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from metrics.resample import frame_selection, resample_audio, resample_video
from reports.errors import InputError

FFMPEG = shutil.which("ffmpeg")


def _ffmpeg_selection(n: int, fps: str, tmp_path) -> np.ndarray:
    """Encode frames whose grey level is their index at ``fps``, re-time them with ffmpeg's fps filter into a lossless
    FFV1 AVI, decode, and read back which input frame each output frame is."""
    frames = (np.arange(n, dtype=np.uint8)[:, None, None] * np.ones((1, 16, 16), np.uint8)).tobytes()
    avi = tmp_path / "r25.avi"
    encode = [FFMPEG, "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "gray", "-s", "16x16", "-r", fps, "-i", "-"]
    subprocess.run([*encode, "-vf", "fps=25", "-c:v", "ffv1", str(avi)], input=frames, check=True)
    decode = [
        FFMPEG,
        "-v",
        "error",
        "-i",
        str(avi),
        "-fps_mode",
        "passthrough",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "gray",
        "-",
    ]
    raw = subprocess.run(decode, capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, 16 * 16)[:, 0].astype(np.int64)


@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed")
@pytest.mark.parametrize(
    ("n", "fps"), [(90, "30"), (72, "24"), (100, "50"), (120, "30000/1001"), (37, "12.5"), (50, "25"), (33, "7")]
)
def test_frame_selection_matches_ffmpeg(tmp_path, n, fps):
    num, _, den = fps.partition("/")
    rate = float(num) / float(den or 1)
    np.testing.assert_array_equal(frame_selection(n, rate, 25.0), _ffmpeg_selection(n, fps, tmp_path))


def test_unchanged_video_is_a_view_and_says_so():
    frames = np.zeros((10, 4, 4, 3), np.uint8)
    out, record = resample_video(frames, 25.0)
    assert out is frames and not record.changed and "unchanged" in record.describe()


def test_audio_resampling_keeps_pitch_and_level():
    t = np.arange(44100) / 44100
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    out, record = resample_audio(tone, 44100, 16000)
    assert out.dtype == np.float32 and len(out) == 16000 and record.changed
    assert "up=160 down=441" in record.method
    spectrum = np.abs(np.fft.rfft(out[1000:15000] * np.hanning(14000)))
    assert abs(np.argmax(spectrum) * 16000 / 14000 - 440) < 2
    assert np.sqrt(np.mean(out[1000:15000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


@pytest.mark.parametrize(("audio", "rate"), [(np.zeros((100, 2)), 16000), (np.zeros(100), 0), (np.zeros(100), 22050.5)])
def test_bad_audio_or_rate(audio, rate):
    with pytest.raises(InputError):
        resample_audio(audio, rate)
