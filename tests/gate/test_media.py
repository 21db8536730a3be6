"""gate.media: real round-trips on the speaker clip, and one-line InputErrors (no partial files) on bad media."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gate import media
from reports.errors import InputError, UsageError


def _clip(n: int = 10, h: int = 64, w: int = 96, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)[:h, :w]
    return np.stack([np.roll(base, 2 * t, axis=1) for t in range(n)])


def _tone(seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_probe_and_read_speaker_clip(speaker_clip: Path) -> None:
    info = media.probe(speaker_clip)
    assert (info.width, info.height, info.fps) == (976, 528, 25.0)
    assert info.n_frames == 133 and info.has_audio and info.audio_channels == 1
    assert info.video_codec == "mpeg4" and info.audio_codec.startswith("mp3")
    clip = media.read_video(speaker_clip, require_audio=True, max_frames=20)
    assert clip.frames.shape == (20, 528, 976, 3) and clip.frames.dtype == np.uint8
    assert clip.audio is not None and clip.audio.dtype == np.float32 and clip.sample_rate == 44100
    assert abs(len(clip.audio) / clip.sample_rate - info.duration) < 0.1
    assert 10 < clip.frames.mean() < 245  # a real picture, not a black frame


def test_speaker_round_trip_h264_aac(speaker_clip: Path, tmp_path: Path) -> None:
    src = media.read_video(speaker_clip, max_frames=25)
    out = media.write_mp4(tmp_path / "rt.mp4", iter(src.frames), src.fps, src.audio, src.sample_rate, crf=18)
    info = media.probe(out)
    assert (info.video_codec, info.audio_codec, info.width, info.height) == ("h264", "aac", 976, 528)
    back = media.read_video(out, require_audio=True)
    assert back.frames.shape == src.frames.shape and back.fps == pytest.approx(25.0)
    mse = np.mean((back.frames.astype(np.float64) - src.frames) ** 2)
    assert 10 * np.log10(255**2 / mse) > 35  # CRF 18 is visually lossless
    # the audio track is the source audio (first second correlates strongly, no offset)
    a, b = src.audio[: src.sample_rate], back.audio[: src.sample_rate]
    assert np.corrcoef(a, b)[0, 1] > 0.9
    assert [p.name for p in tmp_path.iterdir()] == ["rt.mp4"]


def test_read_audio_any_container_and_resample(speaker_clip: Path, speaker_wav: Path) -> None:
    wav, sr = media.read_audio(speaker_wav)
    assert sr == 16000 and wav.ndim == 1 and wav.dtype == np.float32 and np.abs(wav).max() <= 1.0
    from_avi, sr2 = media.read_audio(speaker_clip, sample_rate=16000)
    assert sr2 == 16000 and abs(len(from_avi) - len(wav)) < 0.1 * 16000  # MP3 encoder delay


def test_odd_sizes_are_padded_and_iterator_streams(tmp_path: Path) -> None:
    frames = _clip(n=6, h=63, w=95)
    out = media.write_mp4(tmp_path / "odd.mp4", (f for f in frames), 12.5, _tone(0.5), 16000)
    info = media.probe(out)
    assert (info.width, info.height, info.fps) == (96, 64, 12.5)
    back = np.stack(list(media.iter_frames(out)))
    assert back.shape == (6, 64, 96, 3)
    assert np.abs(back[:, :63, :95].astype(int) - frames).mean() < 6  # content kept; padding is the extra row/col


def test_remux_copies_streams(tmp_path: Path) -> None:
    src = media.write_mp4(tmp_path / "a.mp4", _clip(), 25, _tone(0.4), 16000)
    dst = media.remux(src, tmp_path / "b.mp4")
    a, b = media.probe(src), media.probe(dst)
    assert (b.video_codec, b.audio_codec, b.n_frames) == (a.video_codec, a.audio_codec, a.n_frames)
    assert np.array_equal(np.stack(list(media.iter_frames(src))), np.stack(list(media.iter_frames(dst))))


def test_read_image(portraits: list[Path], tmp_path: Path) -> None:
    img = media.read_image(portraits[0])
    assert img.shape == (480, 480, 3) and img.dtype == np.uint8
    bad = tmp_path / "not.jpg"
    bad.write_bytes(b"\xff\xd8 definitely not a jpeg")
    with pytest.raises(InputError, match=r"not\.jpg: must be a readable image"):
        media.read_image(bad)


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    rng = np.random.default_rng(1)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    good = media.write_mp4(tmp_path / "good.mp4", _clip(n=12), 25)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    tiny = tmp_path / "tiny.mp4"
    _write_raw(tiny, [np.zeros((2, 2, 3), np.uint8)] * 3)
    tiny_src = tmp_path / "tiny_src.mp4"
    tiny_src.write_bytes(tiny.read_bytes())
    wav = tmp_path / "audio_only.mp4"
    _write_audio_only(wav)
    return {
        "junk": (junk, "not a media file or corrupt"),
        "truncated": (truncated, "truncated|corrupt"),
        "empty": (empty, "must not be empty"),
        "tiny": (tiny, "at least 16x16"),
        "audio only": (wav, "must contain a video stream"),
    }


def _write_raw(path: Path, frames: list[np.ndarray]) -> None:
    """Bypass write_mp4's own checks to make a (valid) 2x2 MP4."""
    import av

    with av.open(str(path), "w", format="mp4") as out:
        s = out.add_stream("libx264", rate=25)
        s.width = s.height = 2
        s.pix_fmt = "yuv420p"
        for f in frames:
            out.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(s.encode(None))


def _write_audio_only(path: Path) -> None:
    import av

    with av.open(str(path), "w", format="mp4") as out:
        s = out.add_stream("aac", rate=16000, layout="mono")
        tone = _tone(0.3)
        for i in range(0, len(tone) - 1024, 1024):
            fr = av.AudioFrame.from_ndarray(tone[i : i + 1024].reshape(1, -1), format="fltp", layout="mono")
            fr.sample_rate, fr.pts = 16000, i
            out.mux(s.encode(fr))
        out.mux(s.encode(None))


def test_bad_videos_raise_one_line_input_errors(tmp_path: Path) -> None:
    for name, (path, rule) in _bad_files(tmp_path).items():
        with pytest.raises(InputError, match=rule) as err:
            media.read_video(path)
        msg = str(err.value)
        assert "\n" not in msg and path.name in msg, name


def test_zero_frame_and_audio_rules(tmp_path: Path) -> None:
    silent = media.write_mp4(tmp_path / "silent.mp4", _clip(n=4), 25)
    with pytest.raises(InputError, match="must carry an audio track"):
        media.read_video(silent, require_audio=True)
    with pytest.raises(InputError, match="must contain an audio stream"):
        media.read_audio(silent)
    with pytest.raises(UsageError, match="at least one frame"):
        media.write_mp4(tmp_path / "none.mp4", iter([]), 25)
    assert not (tmp_path / "none.mp4").exists()


def test_failed_write_leaves_no_partial_file(tmp_path: Path) -> None:
    def frames():
        yield from _clip(n=5)
        raise RuntimeError("generator died mid-clip")

    with pytest.raises(RuntimeError):
        media.write_mp4(tmp_path / "out.mp4", frames(), 25)
    bad = [*_clip(n=3), np.zeros((10, 10, 3), np.uint8)]
    with pytest.raises(UsageError, match=r"frames\[3\]"):
        media.write_mp4(tmp_path / "out.mp4", bad, 25)
    assert list(tmp_path.iterdir()) == []
