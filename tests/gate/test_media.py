"""gate.media: real round-trips on the speaker clip, and one-line InputErrors (no partial files) on bad media."""

from __future__ import annotations

import re
import subprocess
from fractions import Fraction
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
    bad.write_bytes(b"\xff\xd8\xff definitely not a jpeg")
    with pytest.raises(InputError, match=r"not\.jpg: must be a readable JPEG image"):
        media.read_image(bad)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\xff\xd8 not even the JPEG signature")
    with pytest.raises(InputError, match=r"junk\.jpg: portrait must be a JPEG, PNG, GIF, WebP or TIFF image"):
        media.read_image(junk)


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


# --- complete input, whatever the container ---------------------------------------------------------------------

CUT_FRACTIONS = (0.5, 0.85, 0.95)
CLIP_FRAMES, CLIP_FPS = 75, 25  # 3 s: a 5 % cut removes about 0.15 s, several frames and audio packets
# name: (PyAV format, video codec, audio codec, muxer options)
CONTAINERS = {
    "mp4": ("mp4", "libx264", "aac", {}),  # index (moov) at the end, as cameras write it
    "faststart.mp4": ("mp4", "libx264", "aac", {"movflags": "+faststart"}),  # index first: the gate's own outputs
    "mov": ("mov", "libx264", "aac", {}),
    "avi": ("avi", "mpeg4", "libmp3lame", {}),
    "mkv": ("matroska", "libx264", "aac", {}),
    "webm": ("webm", "libvpx-vp9", "libopus", {}),
}


def _encode(path: Path, fmt: str, vcodec: str, acodec: str, options: dict[str, str]) -> Path:
    """A 3 s 128x96 clip with a tone, encoded by PyAV into ``fmt`` (the muxer interleaves the two streams)."""
    import av

    frames = _clip(n=CLIP_FRAMES, h=96, w=128, seed=3)
    with av.open(str(path), "w", format=fmt, options=options) as out:
        vs = out.add_stream(vcodec, rate=CLIP_FPS)
        vs.width, vs.height, vs.pix_fmt = 128, 96, "yuv420p"
        if vcodec == "libvpx-vp9":
            vs.bit_rate = 400_000
        rate = 48000 if acodec == "libopus" else 16000
        aus = out.add_stream(acodec, rate=rate, layout="mono")
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            out.mux(vs.encode(vf))
        out.mux(vs.encode(None))
        tone = _tone(CLIP_FRAMES / CLIP_FPS, rate).reshape(1, -1)
        resampler = av.AudioResampler(format=aus.codec_context.format.name, layout="mono", rate=rate)
        af = av.AudioFrame.from_ndarray(tone, format="flt", layout="mono")
        af.sample_rate = rate
        for rf in [*resampler.resample(af), *resampler.resample(None)]:
            out.mux(aus.encode(rf))
        out.mux(aus.encode(None))
    return path


@pytest.fixture(scope="module")
def containers(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("containers")
    return {name: _encode(root / f"clip.{name}", *spec) for name, spec in CONTAINERS.items()}


def _cut(src: Path, fraction: float, dst_dir: Path) -> Path:
    data = src.read_bytes()
    dst = dst_dir / f"cut{int(fraction * 100)}-{src.name}"
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


@pytest.mark.parametrize("name", sorted(CONTAINERS))
def test_intact_file_of_every_container_is_read_whole(containers, name) -> None:
    """No false reject: every intact container passes every rule and gives all 75 frames and 3 s of audio."""
    info = media.validate_video(containers[name], require_audio=True)
    assert info.n_frames == CLIP_FRAMES and (info.width, info.height) == (128, 96)
    clip = media.read_video(containers[name], require_audio=True)
    assert clip.frames.shape == (CLIP_FRAMES, 96, 128, 3) and clip.fps == pytest.approx(CLIP_FPS)
    assert clip.audio is not None and abs(len(clip.audio) / clip.sample_rate - CLIP_FRAMES / CLIP_FPS) < 0.1


@pytest.mark.parametrize("fraction", CUT_FRACTIONS)
@pytest.mark.parametrize("name", sorted(CONTAINERS))
def test_every_truncation_of_every_container_is_rejected(containers, name, fraction, tmp_path) -> None:
    cut = _cut(containers[name], fraction, tmp_path)
    for read in (media.validate_video, media.read_video, lambda p: list(media.iter_frames(p))):
        with pytest.raises(InputError, match=r"truncated|corrupt") as err:
            read(cut)
        line = str(err.value)
        assert cut.name in line and "\n" not in line and "(got " in line  # the file, the rule and the numbers


@pytest.mark.parametrize("name", ["avi", "faststart.mp4", "mkv", "webm"])
def test_packet_and_length_rules_alone_reject_cuts(containers, name, tmp_path, monkeypatch) -> None:
    """Defence in depth: with the byte-size rule switched off, corrupt-packet, decoder and declared-length rules
    still reject a cut at 50 % and 85 % (MP4/MOV with the index at the end cannot even be opened when cut)."""
    monkeypatch.setattr(media.containers, "check_complete", lambda path: None)
    assert media.validate_video(containers[name]).n_frames == CLIP_FRAMES
    for fraction in (0.5, 0.85):
        cut = _cut(containers[name], fraction, tmp_path)
        with pytest.raises(InputError, match=r"truncated|corrupt|cut off") as err:
            media.validate_video(cut)
        assert "bytes" not in str(err.value)  # not the byte rule: it is off


def test_the_red_team_case_an_avi_cut_to_85_percent(speaker_clip, tmp_path) -> None:
    """Finding 3 of issue 8 on the real clip: speaker.avi cut to 85 % of its bytes was released; now it is bad input
    (exit 4) naming the file, the rule and the numbers. The intact clip reads whole (133 frames declared)."""
    assert media.validate_video(speaker_clip, require_audio=True).n_frames >= 132  # AVI counts one skipped frame
    cut = _cut(speaker_clip, 0.85, tmp_path)
    with pytest.raises(InputError, match=r"cut\d+-speaker\.avi: RIFF file must be complete .* needs \d+ B, file has"):
        media.read_video(cut)
    with pytest.raises(InputError) as err:
        media.read_video(cut)
    assert err.value.exit_code == 4


def test_files_written_to_a_pipe_are_complete(speaker_wav, containers, tmp_path) -> None:
    """No false reject of streamed files: a writer that cannot seek back leaves the sizes unknown (RIFF 0xFFFFFFFF,
    EBML all-ones) and its last PCM block short; what is there is the whole recording."""
    import subprocess

    def piped(src: Path, dst: Path, *args: str) -> Path:
        cmd = ["ffmpeg", "-loglevel", "error", "-i", str(src), *args, "pipe:1"]
        dst.write_bytes(subprocess.run(cmd, check=True, capture_output=True).stdout)
        return dst

    wav = piped(speaker_wav, tmp_path / "piped.wav", "-f", "wav")
    assert wav.read_bytes()[4:8] == b"\xff\xff\xff\xff"  # the premise: no size declared
    assert np.array_equal(media.read_audio(wav, ingredient=True)[0], media.read_audio(speaker_wav)[0])
    mkv = piped(containers["mkv"], tmp_path / "piped.mkv", "-c", "copy", "-f", "matroska")
    segment = mkv.read_bytes().index(b"\x18\x53\x80\x67") + 4  # the Segment element's size follows its id
    assert mkv.read_bytes()[segment : segment + 8] == b"\x01" + b"\xff" * 7  # the premise: unknown size
    assert media.validate_video(mkv, require_audio=True).n_frames == CLIP_FRAMES


def _patch_mkv_duration(src: Path, dst: Path, factor: float) -> Path:
    """Rewrite the Segment Info Duration (EBML id 0x4489, an 8-byte float) - the bytes and packets stay intact."""
    import struct

    data = bytearray(src.read_bytes())
    at = data.find(b"\x44\x89\x88")
    assert at > 0, "the muxer wrote no 8-byte Duration element"
    (value,) = struct.unpack(">d", data[at + 3 : at + 11])
    data[at + 3 : at + 11] = struct.pack(">d", value * factor)
    dst.write_bytes(bytes(data))
    return dst


def test_declared_length_rule_on_its_own(containers, tmp_path) -> None:
    """A Matroska file that says it lasts 1.5x longer than its packets do: the bytes and packets are intact, only the
    declared-length rule can see it. Declaring less than is there is harmless (a file holding more than it says)."""
    longer = _patch_mkv_duration(containers["mkv"], tmp_path / "longer.mkv", 1.5)
    with pytest.raises(InputError, match=r"longer\.mkv: media must last as long as its container declares") as err:
        media.validate_video(longer)
    assert re.search(r"ends at 3\.\d+ s of 4\.\d+ s", str(err.value))  # 1.5 x the 3.1 s the file declared
    shorter = _patch_mkv_duration(containers["mkv"], tmp_path / "shorter.mkv", 0.9)
    assert media.validate_video(shorter).n_frames == CLIP_FRAMES


def _wav_bytes(samples: np.ndarray, rate: int, *, fmt_code: int = 1, width: int = 2, channels: int = 1) -> bytes:
    """A canonical WAV (written by hand, so any header value can be written, including absurd ones)."""
    data = samples.astype("<f4" if fmt_code == 3 else "<i2").tobytes()
    fmt = (fmt_code).to_bytes(2, "little") + channels.to_bytes(2, "little") + rate.to_bytes(4, "little")
    fmt += (rate * width * channels).to_bytes(4, "little") + (width * channels).to_bytes(2, "little")
    fmt += (8 * width).to_bytes(2, "little")
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt + b"data" + len(data).to_bytes(4, "little") + data
    return b"RIFF" + len(body).to_bytes(4, "little") + body


def test_audio_rules(tmp_path) -> None:
    speech = (_tone(1.0) * 32767).astype(np.int16)
    cases = {
        "one_hz.wav": (_wav_bytes(speech, 1), r"sample rate must be between 8000 and 192000 Hz \(got 1 Hz\)"),
        "too_fast.wav": (_wav_bytes(speech, 400_000), r"between 8000 and 192000 Hz \(got 400000 Hz\)"),
        "blip.wav": (_wav_bytes(speech[:800], 16000), r"must last at least 0.1 s \(got 0.050 s\)"),
    }
    nan = _tone(1.0).copy()
    nan[8000] = np.nan
    cases["nan.wav"] = (_wav_bytes(nan, 16000, fmt_code=3, width=4), r"samples must be finite numbers .*0.500 s")
    whole = _wav_bytes(speech, 16000)
    cases["cut.wav"] = (whole[: len(whole) * 85 // 100], r"RIFF file must be complete")
    for name, (data, rule) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(InputError, match=rule) as err:
            media.read_audio(path, ingredient=True)
        assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value), name
    ok = tmp_path / "ok.wav"
    ok.write_bytes(whole)
    audio, rate = media.read_audio(ok, ingredient=True)
    assert rate == 16000 and len(audio) == 16000 and np.abs(audio - speech / 32768).max() < 1e-4
    with pytest.raises(UsageError, match="sample_rate"):
        media.read_audio(ok, sample_rate=1)


def _transcode_audio(src: Path, dst: Path, *args: str) -> Path:
    import subprocess

    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", str(src), *args, str(dst)], check=True)
    return dst


def test_speech_formats_are_exactly_the_audio_ingredients(speaker_wav, tmp_path) -> None:
    """WAV, MP3, FLAC, M4A and Ogg (Vorbis/Opus) are read; AIFF, raw AAC and a video container are refused as speech
    naming what they are, before any decoding (the same file is fine as an audio source when it is not signed)."""
    ref, rate = media.read_audio(speaker_wav)
    accepted = {
        "s.mp3": [],
        "s.flac": [],
        "s.m4a": ["-c:a", "aac"],
        "s.ogg": ["-c:a", "libopus"],
    }
    for name, args in accepted.items():
        got, got_rate = media.read_audio(_transcode_audio(speaker_wav, tmp_path / name, *args), ingredient=True)
        assert got_rate in (rate, 48000) and abs(len(got) / got_rate - len(ref) / rate) < 0.1, name
    refused = {"s.aiff": ("AIFF", []), "s.aac": ("ADTS", ["-c:a", "aac"]), "s.mkv": ("Matroska", ["-c:a", "aac"])}
    for name, (what, args) in refused.items():
        path = _transcode_audio(speaker_wav, tmp_path / name, *args)
        with pytest.raises(InputError, match=rf"speech audio must be a WAV, MP3, FLAC, M4A or Ogg file .*{what}"):
            media.read_audio(path, ingredient=True)
        assert media.read_audio(path)[0].size > 0  # a readable audio source all the same


# --- video rules ---------------------------------------------------------------------------------------------------


def _raw_mp4(
    path: Path, frames: list[np.ndarray], rate: Fraction | int, rotation: float | None = None, **flips
) -> Path:
    import av

    with av.open(str(path), "w", format="mp4") as out:
        s = out.add_stream("libx264", rate=rate, options={"crf": "10"})
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "yuv444p"
        if rotation is not None:
            s.set_display_rotation(rotation, **flips)
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            out.mux(s.encode(vf))
        out.mux(s.encode(None))
    return path


def test_video_rules(tmp_path) -> None:
    frames = list(_clip(n=6))
    cases = {
        "one.mp4": (frames[:1], 25, r"at least 2 decodable frames \(got 1 frames\)"),
        "slow.mp4": (frames, Fraction(1, 2), r"frame rate must be between 1 and 120 fps \(got 0.5 fps\)"),
        "fast.mp4": (frames, 240, r"frame rate must be between 1 and 120 fps \(got 240 fps\)"),
    }
    for name, (clip, rate, rule) in cases.items():
        path = _raw_mp4(tmp_path / name, clip, rate)
        with pytest.raises(InputError, match=rule):
            media.validate_video(path)
        with pytest.raises(InputError, match=rule):
            media.read_video(path)
    assert media.validate_video(_raw_mp4(tmp_path / "two.mp4", frames[:2], 120)).n_frames == 2


# --- rotation ------------------------------------------------------------------------------------------------------


def _quadrants(h: int = 64, w: int = 96) -> np.ndarray:
    """Four flat colours, one per quadrant: any rotation or mirror of it is a different picture."""
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2, : w // 2] = (220, 30, 30)
    img[: h // 2, w // 2 :] = (30, 220, 30)
    img[h // 2 :, : w // 2] = (30, 30, 220)
    img[h // 2 :, w // 2 :] = (230, 230, 40)
    return img


def _ffmpeg_rotated(src: Path, dst: Path, degrees: int) -> Path:
    """Tag ``src`` with a rotation the way phones do (display matrix), without re-encoding."""
    return _transcode_audio(src, dst, "-c", "copy", "-metadata:s:v:0", f"rotate={degrees}")


def _ffmpeg_autorotated_first_frame(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """What ffmpeg itself displays: its CLI applies the display matrix to the decoded picture (autorotate)."""
    import subprocess

    raw = subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-i", str(path), "-frames:v", "1", "-pix_fmt", "rgb24", "-f", "rawvideo", "-"],
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(shape)


@pytest.mark.parametrize("tag", [90, 180, 270])
def test_phone_rotation_is_applied_on_decode(tag, tmp_path) -> None:
    src = _raw_mp4(tmp_path / "plain.mp4", [_quadrants()] * 4, 25)
    rotated = _ffmpeg_rotated(src, tmp_path / f"rot{tag}.mp4", tag)
    info = media.probe(rotated)
    assert info.rotation in (90, 180, 270) and not info.mirrored
    upright = media.read_video(rotated).frames
    ccw = {90: 1, 180: 2, 270: 3}[info.rotation]
    expected = np.rot90(_quadrants(), ccw)
    assert upright.shape[1:3] == expected.shape[:2] == (info.height, info.width)
    assert np.abs(upright[0].astype(int) - expected).mean() < 3  # CRF 10 4:4:4 on flat colours: near lossless
    # pixel for pixel what ffmpeg's own autorotation shows
    assert np.array_equal(upright[0], _ffmpeg_autorotated_first_frame(rotated, upright.shape[1:]))


def test_rotated_input_gives_an_upright_output(tmp_path) -> None:
    rotated = _ffmpeg_rotated(_raw_mp4(tmp_path / "p.mp4", [_quadrants()] * 4, 25), tmp_path / "r.mp4", 90)
    clip = media.read_video(rotated)
    out = media.write_mp4(tmp_path / "out.mp4", clip.frames, clip.fps, crf=10)
    info = media.probe(out)
    assert (info.rotation, info.mirrored, info.width, info.height) == (0, False, 64, 96)  # portrait, no matrix
    assert np.abs(media.read_video(out).frames[0].astype(int) - clip.frames[0]).mean() < 3


@pytest.mark.parametrize(
    "rotation, flips, expected",
    [
        (90, {}, lambda im: np.rot90(im, 1)),
        (0, {"hflip": True}, lambda im: im[:, ::-1]),
        (90, {"hflip": True}, lambda im: np.rot90(im, 1)[:, ::-1]),
        (0, {"vflip": True}, lambda im: im[::-1]),
    ],
)
def test_display_matrix_with_mirror(rotation, flips, expected, tmp_path) -> None:
    """PyAV writes the matrix of 'rotate counter-clockwise, then mirror' (its documented meaning); decode undoes it."""
    path = _raw_mp4(tmp_path / "m.mp4", [_quadrants()] * 3, 25, rotation, **flips)
    frame = next(media.iter_frames(path))
    assert np.abs(frame.astype(int) - expected(_quadrants())).mean() < 3
    assert media.probe(path).mirrored == bool(flips)


def test_display_rotation_off_the_right_angle_is_refused(tmp_path) -> None:
    path = _raw_mp4(tmp_path / "tilted.mp4", [_quadrants()] * 3, 25, 45)
    with pytest.raises(InputError, match=r"tilted\.mp4: video display rotation must be a multiple of 90 degrees"):
        media.read_video(path)


# --- portraits -----------------------------------------------------------------------------------------------------


def _face_like(h: int = 96, w: int = 80) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([(yy * 255 // (h - 1)), (xx * 255 // (w - 1)), ((yy + xx) % 256)], axis=2).astype(np.uint8)


def test_portrait_pixel_formats_become_8_bit_rgb(tmp_path) -> None:
    from PIL import Image

    rgb = _face_like()
    grey = rgb[:, :, 0]
    cases: dict[str, tuple[Image.Image, str, np.ndarray, float]] = {
        # name: (image, format, expected RGB, mean abs tolerance in grey levels)
        "rgb.png": (Image.fromarray(rgb), "PNG", rgb, 0),
        "grey.png": (Image.fromarray(grey), "PNG", np.repeat(grey[:, :, None], 3, 2), 0),
        # 16-bit grey: v16 = v8 * 257 exactly, so scaling must give v8 back (clipping gave white)
        "grey16.png": (Image.fromarray(grey.astype(np.uint16) * 257), "PNG", np.repeat(grey[:, :, None], 3, 2), 0),
        "palette.png": (Image.fromarray(rgb).quantize(256), "PNG", rgb, 12),  # 256 colours for a smooth image
        "rgb.tif": (Image.fromarray(rgb), "TIFF", rgb, 0),
        "rgb.webp": (Image.fromarray(rgb), "WEBP", rgb, 0),
        "rgb.gif": (Image.fromarray(rgb).quantize(256), "GIF", rgb, 12),
        "cmyk.jpg": (Image.fromarray(rgb).convert("CMYK"), "JPEG", rgb, 6),  # JPEG at quality 95; not inverted
    }
    for name, (image, fmt, expected, tol) in cases.items():
        path = tmp_path / name
        image.save(path, fmt, **({"lossless": True} if fmt == "WEBP" else {"quality": 95} if fmt == "JPEG" else {}))
        got = media.read_image(path)
        assert got.dtype == np.uint8 and got.shape == expected.shape, name
        assert np.abs(got.astype(int) - expected).mean() <= tol, (name, np.abs(got.astype(int) - expected).mean())


def test_portrait_16_bit_gradient_scales_not_clips(tmp_path) -> None:
    from PIL import Image

    ramp = np.tile(np.linspace(0, 65535, 80).round().astype(np.uint16), (64, 1))
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    got = media.read_image(tmp_path / "ramp16.png")[:, :, 0].astype(int)
    assert got[0, 0] == 0 and got[0, -1] == 255 and np.abs(got - ramp / 257).max() <= 0.5  # rounded, not clipped
    assert (got == 255).mean() < 0.05  # before: everything above 255 of 65535 was white


def _png16(path: Path, rgb16: np.ndarray) -> Path:
    """A 16-bit-per-channel RGB PNG written by hand (IHDR depth 16, colour type 2, unfiltered rows)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    h, w = rgb16.shape[:2]
    rows = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )
    return path


def test_portrait_48_bit_png(tmp_path) -> None:
    """A 16-bit-per-channel RGB PNG holding v * 257 (the exact 16-bit value of the 8-bit v) reads as v."""
    deep = _png16(tmp_path / "rgb48.png", _face_like().astype(np.uint16) * 257)
    assert np.array_equal(media.read_image(deep), _face_like())


def test_portrait_transparency_is_composited_over_white(tmp_path) -> None:
    from PIL import Image

    rgba = np.dstack([_face_like(), np.full((96, 80), 255, np.uint8)])
    rgba[:48, :, 3] = 0  # top half fully transparent
    for name, image in {
        "rgba.png": Image.fromarray(rgba),
        "grey_alpha.png": Image.fromarray(rgba).convert("LA"),
        "palette_alpha.png": Image.fromarray(rgba).quantize(255),  # keeps a transparent palette entry
    }.items():
        image.save(tmp_path / name)
        got = media.read_image(tmp_path / name)
        assert (got[:48] == 255).all(), name  # transparent -> white
        assert got[48:].mean() < 200, name  # the opaque half is the picture


def test_portrait_refusals_name_the_format(tmp_path) -> None:
    from PIL import Image

    Image.fromarray(_face_like()).save(tmp_path / "face.bmp", "BMP")
    Image.fromarray(_face_like()[:, :, 0].astype(np.float32)).save(tmp_path / "float.tif", "TIFF")
    Image.fromarray(_face_like()[:32, :32]).save(tmp_path / "small.png")
    (tmp_path / "speech.wav").write_bytes(_wav_bytes((_tone(0.5) * 3000).astype(np.int16), 16000))
    cases = {
        "face.bmp": r"portrait must be a JPEG, PNG, GIF, WebP or TIFF image \(got a BMP image\)",
        "float.tif": r"image samples must be 8 or 16 bits \(got 32-bit floating-point pixels",
        "small.png": r"at least 64 px on each side \(got 32x32\)",
        "speech.wav": r"portrait must be a .* image \(got a WAV audio file\)",
    }
    for name, rule in cases.items():
        with pytest.raises(InputError, match=rule):
            media.read_image(tmp_path / name)
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(InputError, match="must be a regular file"):
        media.read_image(tmp_path / "dir.png")


# --- one list of accepted formats: what validation accepts, signing accepts ------------------------------------------


def test_every_accepted_portrait_and_speech_format_is_signed_as_an_ingredient(speaker_wav, tmp_path) -> None:
    """For each format in provenance.c2pa.INGREDIENT_FORMATS: gate.media accepts a real file of it, and the C2PA SDK
    signs it into a manifest that reads back Valid with the format named - so no input that passed validation can be
    refused at signing, after the measurement. A format outside the table is refused by both."""
    from PIL import Image

    from provenance.c2pa import INGREDIENT_FORMATS, ingredient_mime, read_manifest, sign_mp4
    from provenance.keys import SignerConfig, init_dev_keys, load_signer

    images = {f.mime for f in INGREDIENT_FORMATS if f.kind == "image"}
    assert set(media.PIL_FORMATS) == images
    samples: dict[str, Path] = {}
    for mime, pil in media.PIL_FORMATS.items():
        samples[mime] = tmp_path / f"portrait.{pil.lower()}"
        Image.fromarray(_face_like()).save(samples[mime], pil)
    for mime, args in {
        "audio/wav": [],
        "audio/mpeg": [],
        "audio/flac": [],
        "audio/mp4": ["-c:a", "aac"],
        "audio/ogg": ["-c:a", "libopus"],
    }.items():
        ext = {"audio/mpeg": "mp3", "audio/mp4": "m4a"}.get(mime, mime.split("/")[1])
        samples[mime] = _transcode_audio(speaker_wav, tmp_path / f"speech.{ext}", *args)
    assert set(samples) == {f.mime for f in INGREDIENT_FORMATS}
    signer = load_signer(SignerConfig.development_keys(init_dev_keys(tmp_path / "keys").directory))
    video = media.write_mp4(tmp_path / "v.mp4", _clip(n=4), 25)
    portrait, speech = samples["image/png"], samples["audio/wav"]
    for fmt in INGREDIENT_FORMATS:
        path = samples[fmt.mime]
        if fmt.kind == "image":
            assert media.read_image(path).shape == (96, 80, 3)
            portrait = path
        else:
            assert media.read_audio(path, ingredient=True)[0].size > 0
            speech = path
        assert ingredient_mime(path) == fmt.mime
        out = sign_mp4(
            video, tmp_path / "signed.mp4", signer=signer, portrait=portrait, audio=speech,
            watermark_payload=b"\x01\x02", gate_results=None, title="t",
        )  # fmt: skip
        assert out.ingredients == (portrait.name, speech.name)
        report = read_manifest(tmp_path / "signed.mp4")
        assert report.state in ("Valid", "Trusted"), (fmt.name, report)
        assert fmt.mime in [i.get("format") for i in report.ingredients], fmt.name
    Image.fromarray(_face_like()).save(tmp_path / "face.bmp")
    with pytest.raises(InputError, match="got a BMP image"):
        media.read_image(tmp_path / "face.bmp")
    with pytest.raises(InputError, match="got a BMP image"):
        ingredient_mime(tmp_path / "face.bmp")


def test_container_metadata_round_trip_and_ffprobe(tmp_path: Path) -> None:
    aigc = '{"Label":"1","ContentProducer":"供应商 Ltd"}'  # any string; provenance.disclosure validates the JSON
    out = media.write_mp4(tmp_path / "tagged.mp4", _clip(4), 25.0, metadata={"AIGC": aigc, "comment": "x"})
    tags = media.read_container_metadata(out)
    assert tags["AIGC"] == aigc and tags["comment"] == "x"
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", str(out)], capture_output=True, text=True, check=True
    ).stdout
    assert f"TAG:AIGC={aigc}" in probe.splitlines()
    untagged = media.write_mp4(tmp_path / "untagged.mp4", _clip(4), 25.0)
    assert "AIGC" not in media.read_container_metadata(untagged)


@pytest.mark.parametrize(
    ("metadata", "subject"),
    [
        ({"": "x"}, "metadata"),
        ({"A IGC": "x"}, "metadata"),
        ({"AIGC": "a\x00b"}, "metadata.AIGC"),
        ({"k": 3}, "metadata.k"),
    ],
)
def test_bad_container_metadata_is_refused_before_writing(tmp_path: Path, metadata, subject) -> None:
    with pytest.raises(UsageError, match=rf"^{re.escape(subject)}: "):
        media.write_mp4(tmp_path / "bad.mp4", _clip(2), 25.0, metadata=metadata)
    assert list(tmp_path.iterdir()) == []
