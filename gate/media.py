"""Media I/O with PyAV: probe, decode (whole or streaming), read audio/images, write H.264+AAC MP4, remux.

Frames are ``uint8 [T,H,W,3]`` RGB; audio is ``float32`` mono in [-1, 1] with its sample rate. Every failure on
an input file raises :class:`reports.errors.InputError` naming the file, the rule and the value. Output files are
written through :func:`reports.atomic.atomic_path`, so a failed write never leaves a partial file behind.

Odd frame sizes: H.264 in yuv420p needs even width and height, so :func:`write_mp4` **pads** an odd dimension by
replicating the last row/column (no picture content is lost; the output is at most one pixel wider/taller).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from reports.atomic import atomic_path
from reports.errors import InputError, UsageError

MIN_SIDE = 16  # smallest width/height accepted for a video (a 1x1 "video" is not a video)
AAC_FRAME = 1024  # samples per AAC frame


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int
    height: int
    fps: float
    n_frames: int | None
    duration: float
    has_video: bool
    has_audio: bool
    audio_sample_rate: int | None
    audio_channels: int | None
    video_codec: str | None
    audio_codec: str | None


@dataclass
class Media:
    frames: np.ndarray  # uint8 [T,H,W,3] RGB
    fps: float
    audio: np.ndarray | None  # float32 mono in [-1, 1]
    sample_rate: int | None


# ---------------------------------------------------------------------------------------------------------- reading


def _open(path: str | Path) -> av.container.InputContainer:
    p = Path(path)
    if not p.is_file():
        raise InputError(str(p), "media file must exist", "no such file")
    if p.stat().st_size == 0:
        raise InputError(str(p), "media file must not be empty", "0 bytes")
    try:
        return av.open(str(p), mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(str(p), "must be a readable media container (not a media file or corrupt)", _why(exc)) from exc


def _why(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise InputError(str(path), "must contain a video stream", "no video stream")
    stream = container.streams.video[0]
    w, h = stream.codec_context.width, stream.codec_context.height
    if w < MIN_SIDE or h < MIN_SIDE:
        raise InputError(str(path), f"video must be at least {MIN_SIDE}x{MIN_SIDE} pixels", f"{w}x{h}")
    return stream


def _fps(stream: av.video.stream.VideoStream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def probe(path: str | Path) -> VideoInfo:
    """Container/stream facts without decoding the picture."""
    p = Path(path)
    with _open(p) as c:
        v = c.streams.video[0] if c.streams.video else None
        a = c.streams.audio[0] if c.streams.audio else None
        if v is None and a is None:
            raise InputError(str(p), "must contain a video or audio stream", "no media streams")
        duration = c.duration / av.time_base if c.duration else 0.0
        if v is not None and v.duration and v.time_base:
            duration = float(v.duration * v.time_base)
        return VideoInfo(
            path=p,
            width=v.codec_context.width if v else 0,
            height=v.codec_context.height if v else 0,
            fps=_fps(v) if v else 0.0,
            n_frames=(v.frames or None) if v else None,
            duration=duration,
            has_video=v is not None,
            has_audio=a is not None,
            audio_sample_rate=a.codec_context.sample_rate if a else None,
            audio_channels=a.codec_context.channels if a else None,
            video_codec=v.codec_context.name if v else None,
            audio_codec=a.codec_context.name if a else None,
        )


def _is_mp4_family(c: av.container.InputContainer) -> bool:
    return "mp4" in c.format.name or "mov" in c.format.name


def iter_frames(path: str | Path, *, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Decode frames one at a time (RGB uint8 [H,W,3]); memory stays at one frame whatever the clip length."""
    p = Path(path)
    with _open(p) as c:
        stream = _video_stream(c, p)
        stream.thread_type = "AUTO"
        declared = stream.frames or 0
        n = 0
        try:
            for frame in c.decode(stream):
                yield frame.to_ndarray(format="rgb24")
                n += 1
                if max_frames is not None and n >= max_frames:
                    return
        except av.error.FFmpegError as exc:
            raise InputError(
                str(p), "video stream must decode without errors (corrupt or truncated)", _why(exc)
            ) from exc
        if n == 0:
            raise InputError(str(p), "video must contain at least one decodable frame", "0 frames")
        if _is_mp4_family(c) and declared and n < declared:
            raise InputError(
                str(p), "MP4 must hold every frame its index declares (truncated file)", f"{n} of {declared}"
            )


def _decode_audio(c: av.container.InputContainer, p: Path, sample_rate: int | None) -> tuple[np.ndarray, int]:
    if not c.streams.audio:
        raise InputError(str(p), "must contain an audio stream", "no audio stream")
    stream = c.streams.audio[0]
    rate = int(sample_rate or stream.codec_context.sample_rate or 0)
    if rate <= 0:
        raise InputError(str(p), "audio stream must declare a sample rate", rate)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    chunks: list[np.ndarray] = []
    try:
        for frame in c.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    except av.error.FFmpegError as exc:
        raise InputError(str(p), "audio stream must decode without errors (corrupt or truncated)", _why(exc)) from exc
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if audio.size == 0:
        raise InputError(str(p), "audio stream must contain samples", "0 samples")
    return np.clip(audio, -1.0, 1.0), rate


def read_audio(path: str | Path, *, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Mono float32 audio from any container (.wav, .mp3, .mp4, .avi ...), resampled to ``sample_rate`` if given."""
    if sample_rate is not None and sample_rate <= 0:
        raise UsageError("sample_rate", "must be a positive number of Hz", sample_rate)
    p = Path(path)
    with _open(p) as c:
        return _decode_audio(c, p, sample_rate)


def read_video(path: str | Path, *, require_audio: bool = False, max_frames: int | None = None) -> Media:
    """Whole clip in memory: frames, fps and (if present, or required) the audio track."""
    p = Path(path)
    with _open(p) as c:
        if require_audio and not c.streams.audio:
            raise InputError(str(p), "video must carry an audio track", "no audio stream")
        if c.streams.video:
            fps = _fps(c.streams.video[0])
    frames = list(iter_frames(p, max_frames=max_frames))
    if not (fps > 0 and math.isfinite(fps)):
        raise InputError(str(p), "video must declare a positive frame rate", fps)
    audio: np.ndarray | None = None
    rate: int | None = None
    with _open(p) as c:
        if c.streams.audio:
            audio, rate = _decode_audio(c, p, None)
    return Media(frames=np.stack(frames), fps=fps, audio=audio, sample_rate=rate)


def read_image(path: str | Path) -> np.ndarray:
    """RGB uint8 [H,W,3] (EXIF orientation applied)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(str(p), "image file must exist", "no such file")
    try:
        with Image.open(p) as im:
            im = ImageOps.exif_transpose(im)
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(str(p), "must be a readable image (JPEG, PNG, ...)", _why(exc)) from exc
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InputError(str(p), "image must have pixels", f"{arr.shape[1]}x{arr.shape[0]}")
    return arr


# ---------------------------------------------------------------------------------------------------------- writing


def _check_frame(frame: np.ndarray, index: int, shape: tuple[int, ...] | None) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        got = f"{getattr(frame, 'dtype', type(frame).__name__)} {getattr(frame, 'shape', '')}"
        raise UsageError(f"frames[{index}]", "must be uint8 [H,W,3] RGB", got)
    if shape is not None and frame.shape != shape:
        raise UsageError(f"frames[{index}]", f"every frame must have the first frame's shape {shape}", frame.shape)
    if frame.shape[0] < MIN_SIDE or frame.shape[1] < MIN_SIDE:
        raise UsageError(f"frames[{index}]", f"frames must be at least {MIN_SIDE}x{MIN_SIDE}", frame.shape[:2])
    return frame


def _pad_even(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _check_audio(audio: np.ndarray | None, sample_rate: int | None) -> np.ndarray | None:
    if audio is None:
        return None
    if sample_rate is None or int(sample_rate) <= 0:
        raise UsageError("sample_rate", "must be a positive number of Hz when audio is given", sample_rate)
    a = np.asarray(audio)
    if a.ndim == 2:  # [n, channels] or [channels, n] -> mono
        a = a.mean(axis=1 if a.shape[0] > a.shape[1] else 0)
    if a.ndim != 1 or a.size == 0 or not np.issubdtype(a.dtype, np.floating):
        raise UsageError("audio", "must be non-empty float mono samples in [-1, 1]", f"{a.dtype} {a.shape}")
    return np.clip(np.nan_to_num(a.astype(np.float32)), -1.0, 1.0)


class _AudioFeed:
    """Encodes AAC in 1024-sample frames, interleaved with the video as it is written."""

    def __init__(self, container: av.container.OutputContainer, audio: np.ndarray, rate: int) -> None:
        self.container, self.audio, self.rate, self.pos = container, audio, rate, 0
        self.stream = container.add_stream("aac", rate=rate, layout="mono")
        self.stream.bit_rate = 128_000

    def until(self, seconds: float) -> None:
        end = min(len(self.audio), math.ceil(seconds * self.rate))
        while self.pos + AAC_FRAME <= end or (end == len(self.audio) and self.pos < end):
            chunk = self.audio[self.pos : self.pos + AAC_FRAME]
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = self.rate, self.pos, Fraction(1, self.rate)
            self.container.mux(self.stream.encode(frame))
            self.pos += len(chunk)

    def finish(self) -> None:
        self.until(len(self.audio) / self.rate)
        self.container.mux(self.stream.encode(None))


def write_mp4(
    path: str | Path,
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int | None = None,
    *,
    crf: int = 18,
    preset: str = "medium",
) -> Path:
    """Encode H.264 (yuv420p, libx264) + AAC mono into ``path`` atomically; ``frames`` may be a lazy iterator.

    Odd widths/heights are padded by one replicated row/column to the next even size.
    """
    if not (isinstance(fps, int | float) and math.isfinite(fps) and fps > 0):
        raise UsageError("fps", "must be a positive finite number", fps)
    if not 0 <= int(crf) <= 51:
        raise UsageError("crf", "must be in 0..51", crf)
    audio = _check_audio(audio, sample_rate)
    target = Path(path)
    rate = Fraction(fps).limit_denominator(1001)
    with atomic_path(target) as tmp:
        with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
            n = _encode_all(out, frames, rate, audio, sample_rate, crf, preset)
        if n == 0:
            raise UsageError("frames", "must contain at least one frame", "0 frames")
    return target


def _encode_all(
    out: av.container.OutputContainer,
    frames: np.ndarray | Iterable[np.ndarray],
    rate: Fraction,
    audio: np.ndarray | None,
    sample_rate: int | None,
    crf: int,
    preset: str,
) -> int:
    video = None
    feed: _AudioFeed | None = None
    shape: tuple[int, ...] | None = None
    n = 0
    for n, frame in enumerate(frames, start=1):
        frame = _check_frame(frame, n - 1, shape)
        if video is None:
            shape = frame.shape
            padded = _pad_even(frame)
            video = out.add_stream("libx264", rate=rate, options={"crf": str(int(crf)), "preset": preset})
            video.width, video.height, video.pix_fmt = padded.shape[1], padded.shape[0], "yuv420p"
            if audio is not None and sample_rate is not None:
                feed = _AudioFeed(out, audio, int(sample_rate))
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(_pad_even(frame)), format="rgb24")
        vf.pts = n - 1
        vf.time_base = 1 / rate
        out.mux(video.encode(vf))
        if feed is not None:
            feed.until(n / rate)
    if video is not None:
        out.mux(video.encode(None))
    if feed is not None:
        feed.finish()
    return n


def remux(src: str | Path, dst: str | Path) -> Path:
    """Copy the first video and audio streams, packet for packet, into a new MP4 (no re-encode; drops C2PA)."""
    p = Path(src)
    target = Path(dst)
    with _open(p) as c:
        streams = [s for s in (c.streams.video[:1] + c.streams.audio[:1])]
        if not streams:
            raise InputError(str(p), "must contain a video or audio stream", "no media streams")
        with atomic_path(target) as tmp, av.open(str(tmp), mode="w", format="mp4") as out:
            mapping = {s.index: out.add_stream_from_template(s) for s in streams}
            try:
                for packet in c.demux(streams):
                    if packet.dts is None:
                        continue
                    packet.stream = mapping[packet.stream.index]
                    out.mux(packet)
            except av.error.FFmpegError as exc:
                raise InputError(str(p), "must demux without errors (corrupt or truncated)", _why(exc)) from exc
    return target
