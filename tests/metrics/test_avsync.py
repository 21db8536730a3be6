"""metrics.avsync: exact offsets on synthetic lips/speech, direction on the real speaker clip, and a clear result
or error for every kind of bad input."""

from __future__ import annotations

import numpy as np
import pytest
from face_fixtures import read_wav, speaker_frames, speaker_track
from scipy.signal import resample_poly

from metrics.avsync import PROTOCOL, AVSyncConfig, measure_avsync
from metrics.faces import Face, FaceDetectorConfig, FaceTrack
from reports.errors import InputError

FPS = 25.0
SR = 16000
HOP = SR // 25


def _signal(n: int, seed: int = 0) -> np.ndarray:
    """A random syllable-like mouth-opening sequence in [0, 1] (2-4 frame open/close runs)."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        out += [float(rng.uniform(0.3, 1.0))] * int(rng.integers(2, 5)) + [0.0] * int(rng.integers(1, 4))
    return np.array(out[:n])


def _face(opening: float) -> Face:
    lm = np.zeros((68, 2), np.float32)
    lm[36], lm[45] = (100, 100), (200, 100)
    for top, bottom, x in ((61, 67, 140), (62, 66, 150), (63, 65, 160)):
        lm[top] = (x, 200)
        lm[bottom] = (x, 200 + 2 + 25 * opening)
    return Face((80.0, 60.0, 220.0, 260.0), 1.0, lm, supported=False)


def _track(opening: np.ndarray, missing: set[int] = frozenset()) -> FaceTrack:
    faces = [None if i in missing else _face(o) for i, o in enumerate(opening)]
    return FaceTrack(faces=faces, frame_size=(32, 32), config=FaceDetectorConfig())


def _speech(opening: np.ndarray, delay: int, seed: int = 1) -> np.ndarray:
    """Noise whose per-frame loudness follows the mouth opening ``delay`` frames later (audio lags by ``delay``)."""
    rng = np.random.default_rng(seed)
    n = len(opening)
    env = np.array([opening[i - delay] if 0 <= i - delay < n else 0.0 for i in range(n)])
    gain = np.repeat(0.02 + 0.5 * env, HOP)
    return (rng.standard_normal(n * HOP) * gain).astype(np.float32)


FRAMES = np.zeros((125, 32, 32, 3), np.uint8)


@pytest.mark.parametrize("delay", [0, 4, -3, 12])
def test_synthetic_offset_is_exact(delay):
    opening = _signal(len(FRAMES))
    res = measure_avsync(FRAMES, FPS, _speech(opening, delay), SR, track=_track(opening))
    assert res.reason is None and res.offset == delay
    assert res.corr > 0.8
    rows = {m.name: m for m in res.measurements()}
    assert rows["avsync_offset"].value == delay and rows["avsync_offset"].unit == "frames"
    assert rows["avsync_offset"].details["offset_ms"] == pytest.approx(delay * 40.0)
    assert "Sync-C" not in rows["avsync_corr"].protocol and "not SyncNet" in PROTOCOL


def test_44k_audio_is_resampled_first():
    opening = _signal(len(FRAMES))
    audio44 = resample_poly(_speech(opening, 3).astype(np.float64), 441, 160).astype(np.float32)
    res = measure_avsync(FRAMES, FPS, audio44, 44100, track=_track(opening))
    assert res.offset == 3 and any("16000" in n for n in res.notes)


def test_unrelated_audio_has_low_correlation():
    opening = _signal(len(FRAMES))
    res = measure_avsync(FRAMES, FPS, _speech(_signal(len(FRAMES), seed=7), 0), SR, track=_track(opening))
    assert res.reason is None and res.corr < 0.5


def test_real_clip_shift_moves_offset_and_lowers_peak(speaker_clip, speaker_wav):
    frames = speaker_frames(str(speaker_clip))
    track = speaker_track(str(speaker_clip))
    audio, rate = read_wav(speaker_wav)
    assert rate == SR
    base = measure_avsync(frames, FPS, audio, rate, track=track)
    shift = 5 * HOP
    late = np.concatenate([np.zeros(shift, np.float32), audio])[: len(audio)]
    shifted = measure_avsync(frames, FPS, late, rate, track=track)
    assert base.reason is None and shifted.reason is None
    assert abs((shifted.offset - base.offset) - 5) <= 1, (base.offset, shifted.offset)
    assert shifted.corr < base.corr
    assert len(base.missing_frames) < 0.1 * len(frames)


# --- bad input ------------------------------------------------------------------------------------------------------


def _reason(frames, audio, track, rate=SR, **cfg) -> str:
    res = measure_avsync(frames, FPS, audio, rate, track=track, config=AVSyncConfig(**cfg) if cfg else None)
    rows = res.measurements()
    assert [m.value for m in rows] == [None, None] and rows[0].reason == rows[1].reason == res.reason
    return res.reason


def test_clip_too_short():
    opening = _signal(30)
    assert "clip too short: 30 frames" in _reason(FRAMES[:30], _speech(opening, 0), _track(opening))


def test_silent_audio():
    opening = _signal(len(FRAMES))
    assert "silent" in _reason(FRAMES, np.zeros(len(FRAMES) * HOP, np.float32), _track(opening))


def test_audio_shorter_than_video():
    opening = _signal(len(FRAMES))
    audio = _speech(opening, 0)[: 100 * HOP]
    assert "shorter than video" in _reason(FRAMES, audio, _track(opening))


def test_nan_audio_is_an_input_error():
    opening = _signal(len(FRAMES))
    audio = _speech(opening, 0)
    audio[100] = np.nan
    with pytest.raises(InputError, match="1 NaN/inf samples"):
        measure_avsync(FRAMES, FPS, audio, SR, track=_track(opening))


def test_no_face_and_too_few_faces():
    opening = _signal(len(FRAMES))
    audio = _speech(opening, 0)
    n = len(FRAMES)
    assert _reason(FRAMES, audio, _track(opening, set(range(n)))) == "no face found in any frame"
    assert "face found in 40% of frames" in _reason(FRAMES, audio, _track(opening, set(range(75))))
    partial = measure_avsync(FRAMES, FPS, audio, SR, track=_track(opening, set(range(0, n, 3))))
    assert partial.reason is None and partial.offset == 0 and partial.missing_frames == list(range(0, n, 3))


def test_grey_frames_and_bad_arguments():
    opening = _signal(len(FRAMES))
    audio = _speech(opening, 2)
    res = measure_avsync(FRAMES[..., 0], FPS, audio, SR, track=_track(opening))  # [T,H,W] 8-bit grey
    assert res.offset == 2
    with pytest.raises(InputError, match="one entry per frame"):
        measure_avsync(FRAMES, FPS, audio, SR, track=_track(opening[:100]))
    with pytest.raises(InputError, match="fps"):
        measure_avsync(FRAMES, float("nan"), audio, SR, track=_track(opening))
    with pytest.raises(InputError, match="landmarks_68"):
        measure_avsync(FRAMES, FPS, audio, SR)
