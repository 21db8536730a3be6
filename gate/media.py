"""Media I/O with PyAV: validate, probe, decode (whole or streaming), read audio/images, write H.264+AAC MP4, remux.

Frames are ``uint8 [T,H,W,3]`` RGB, **upright** (the container's display matrix — a phone's 90/180/270° rotation,
or a mirror — is applied on decode); audio is ``float32`` mono in [-1, 1] with its sample rate. Every failure on an
input file raises :class:`reports.errors.InputError` naming the file, the rule and the value. Output files are written
through :func:`reports.atomic.atomic_path`, so a failed write never leaves a partial file behind.

**Complete input, whatever the container.** A file is read only if it is complete, by three independent rules:

1. bytes: every size the container declares fits in the file (``gate.containers``: MP4/MOV, AVI/WAV, MKV/WebM);
2. packets: no packet is flagged corrupt (a demuxer flags the packet it could only read part of), no decoder error,
   no frame the decoder marks corrupt (concealed damage);
3. time: in containers that declare how long their streams are (MP4/MOV/M4A, AVI, Matroska/WebM, FLV, WAV, FLAC),
   every video/audio stream's packets reach the declared end (the stream's own duration or frame count; for
   Matroska/FLV the container's duration, reached by the longest stream) within one packet's duration.

MP3, Ogg, MPEG-TS and raw streams declare no length (a duration there is estimated from the bit rate or read off the
last packet), so only rules 1-2 apply: a cut exactly between two of their packets reads as a shorter recording.

**Inputs validated before any work**: :func:`validate_video`, :func:`read_image` and :func:`read_audio` (with
``ingredient=True`` for the speech that is signed into the manifest) enforce every rule; the portrait and
speech formats are exactly the C2PA ingredient formats (``provenance.c2pa.INGREDIENT_FORMATS``), so signing never
meets a format it cannot name.

Odd frame sizes: H.264 in yuv420p needs even width and height, so :func:`write_mp4` **pads** an odd dimension by
replicating the last row/column (no picture content is lost; the output is at most one pixel wider/taller).
"""

from __future__ import annotations

import dataclasses
import math
import re
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from gate import containers
from provenance.c2pa import ingredient_format
from reports.atomic import atomic_path, file_kind
from reports.errors import InputError, UsageError
from reports.images import rgb8

MIN_SIDE = 16  # smallest width/height accepted for a video (a 1x1 "video" is not a video)
MIN_FRAMES = 2  # one frame is a still image, not a video
FPS_RANGE = (1.0, 120.0)  # frame rates a talking-portrait video can plausibly have
SAMPLE_RATE_RANGE = (8_000, 192_000)  # telephone speech .. studio audio, in Hz
MIN_AUDIO_SECONDS = 0.1  # shorter "speech" holds no syllable
MIN_PORTRAIT_SIDE = 64  # a face must be visible (the generator's reference preprocessing needs 64 px too)
AAC_FRAME = 1024  # samples per AAC frame
# containers whose headers state how long each stream is (rule 3 of the module docstring)
_DECLARES_LENGTH = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "avi", "matroska,webm", "flv", "wav", "flac"})
_TALLIED = ("video", "audio", "subtitle")
_END_SLACK_S = 0.002  # timestamps are rounded to their time base: 2 ms absorbs that, nothing a frame could hide in
# Pillow's name for each image ingredient format (a test checks it covers every image in INGREDIENT_FORMATS)
PIL_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF", "image/webp": "WEBP", "image/tiff": "TIFF"}


@dataclass(frozen=True)
class Orientation:
    """How decoded pixels become upright: a transpose, then a flip of the rows and/or the columns.

    From the display matrix (ISO BMFF ``tkhd`` matrix, Matroska projection, FFmpeg ``DISPLAYMATRIX`` side data):
    a display point is ``x' = a·x + c·y``, ``y' = b·x + d·y``. Only multiples of 90° (with or without a mirror) are
    supported; anything else is an ``InputError``."""

    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False

    @property
    def mirrored(self) -> bool:
        return (self.transpose + self.flip_rows + self.flip_cols) % 2 == 1

    @property
    def rotation(self) -> int:
        """Counter-clockwise degrees (0, 90, 180, 270) of the rotation; for a mirrored picture, of the rotation that
        precedes the left-right mirror."""
        pure = Orientation(self.transpose, self.flip_rows, self.flip_cols ^ self.mirrored)
        return _ROTATIONS[pure]

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        if self == UPRIGHT:
            return rgb
        out = rgb.transpose(1, 0, 2) if self.transpose else rgb
        if self.flip_rows:
            out = out[::-1]
        if self.flip_cols:
            out = out[:, ::-1]
        return np.ascontiguousarray(out)


UPRIGHT = Orientation()
_ROTATIONS = {
    UPRIGHT: 0,
    Orientation(True, True, False): 90,
    Orientation(False, True, True): 180,
    Orientation(True, False, True): 270,
}


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int  # as displayed (after the rotation)
    height: int
    fps: float
    n_frames: int | None  # declared by the container (None when it declares none); frames decoded by validate_video
    duration: float
    has_video: bool
    has_audio: bool
    audio_sample_rate: int | None
    audio_channels: int | None
    video_codec: str | None
    audio_codec: str | None
    container: str = ""
    rotation: int = 0  # counter-clockwise degrees applied on decode
    mirrored: bool = False


@dataclass
class Media:
    frames: np.ndarray  # uint8 [T,H,W,3] RGB, upright
    fps: float
    audio: np.ndarray | None  # float32 mono in [-1, 1]
    sample_rate: int | None


# ---------------------------------------------------------------------------------------------------------- reading


def _why(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def _regular_file(p: Path, what: str) -> None:
    """An input must be an existing, non-empty regular file (a FIFO would block, a directory is no media)."""
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError(str(p), f"{what} file must exist", "no such file") from None
    except OSError as exc:
        raise InputError(str(p), f"{what} file must be readable", exc.strerror or type(exc).__name__) from None
    if not p.is_file():
        raise InputError(str(p), f"{what} must be a regular file", file_kind(st.st_mode))
    if st.st_size == 0:
        raise InputError(str(p), f"{what} file must not be empty", "0 bytes")


def _open(path: str | Path) -> av.container.InputContainer:
    p = Path(path)
    _regular_file(p, "media")
    try:
        containers.check_complete(p)
    except OSError as exc:
        raise InputError(str(p), "media file must be readable", exc.strerror or type(exc).__name__) from None
    try:
        return av.open(str(p), mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(str(p), "must be a readable media container (not a media file or corrupt)", _why(exc)) from exc


def _fps(stream: av.video.stream.VideoStream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise InputError(str(path), "must contain a video stream", "no video stream")
    stream = container.streams.video[0]
    w, h = stream.codec_context.width, stream.codec_context.height
    if w < MIN_SIDE or h < MIN_SIDE:
        raise InputError(str(path), f"video must be at least {MIN_SIDE}x{MIN_SIDE} pixels", f"{w}x{h}")
    fps, (lo, hi) = _fps(stream), FPS_RANGE
    if not (math.isfinite(fps) and lo <= fps <= hi):
        raise InputError(str(path), f"video frame rate must be between {lo:g} and {hi:g} fps", f"{fps:g} fps")
    return stream


def _audio_stream(container: av.container.InputContainer, path: Path) -> av.audio.stream.AudioStream:
    if not container.streams.audio:
        raise InputError(str(path), "must contain an audio stream", "no audio stream")
    stream = container.streams.audio[0]
    rate, (lo, hi) = stream.codec_context.sample_rate or 0, SAMPLE_RATE_RANGE
    if not lo <= rate <= hi:
        raise InputError(str(path), f"audio sample rate must be between {lo} and {hi} Hz", f"{rate} Hz")
    channels = stream.codec_context.channels or 0
    if channels < 1:
        raise InputError(str(path), "audio must have at least one channel", f"{channels} channels")
    return stream


# --- completeness: packets and declared lengths (the bytes are checked by gate.containers on open) ----------------


class _Track:
    """What the demuxer delivered for one stream: its packets, where the last one ends, the longest one."""

    def __init__(self, stream: av.stream.Stream) -> None:
        self.stream = stream
        self.packets = 0
        self.end: float | None = None  # seconds
        self.longest = 0.0  # seconds
        # PCM written where the writer could not seek back (a pipe) declares no size: the demuxer reads fixed blocks
        # and flags the last, shorter one. That is the end of the stream, unless another packet follows it.
        self._pcm = stream.type == "audio" and stream.codec_context.name.startswith("pcm_")
        self._short_read: InputError | None = None

    def add(self, packet: av.packet.Packet, path: Path) -> None:
        if packet.size == 0:
            return  # the empty packet that ends a stream
        if self._short_read is not None:
            raise self._short_read
        t = packet.pts if packet.pts is not None else packet.dts
        start = float(t * packet.time_base) if t is not None and packet.time_base else None
        if packet.is_corrupt:
            at = f" at {start:.3f} s" if start is not None else ""
            error = InputError(
                str(path),
                f"{self.stream.type} packets must be complete (a packet is cut off or damaged: truncated?)",
                f"packet {self.packets}{at}",
            )
            if not self._pcm:
                raise error
            self._short_read = error
        self.packets += 1
        if start is None:
            return
        duration = float((packet.duration or 0) * packet.time_base)
        self.longest = max(self.longest, duration)
        end = start + duration
        self.end = end if self.end is None else max(self.end, end)

    def declared_end(self) -> float | None:
        """Where the container says this stream ends (seconds), from its duration or its frame count."""
        s = self.stream
        if not s.time_base:
            return None
        start = float(s.start_time * s.time_base) if s.start_time is not None else 0.0
        ends = []
        if s.duration:
            ends.append(start + float(s.duration * s.time_base))
        if s.type == "video" and s.frames and s.average_rate:
            ends.append(start + s.frames / float(s.average_rate))
        return max(ends) if ends else None

    def slack(self) -> float:
        """One packet: the last one's duration is not always stored, so a stream may end that much early."""
        nominal = 0.0
        cc = self.stream.codec_context
        if self.stream.type == "video" and self.stream.average_rate:
            nominal = 1 / float(self.stream.average_rate)
        elif self.stream.type == "audio" and getattr(cc, "frame_size", 0) and cc.sample_rate:
            nominal = cc.frame_size / cc.sample_rate
        return max(self.longest, nominal) + _END_SLACK_S

    def shortfall(self, path: Path, declared: float, rule: str) -> InputError:
        s = self.stream
        end = f"{self.end:.3f}" if self.end is not None else "0"
        count = (
            f"{self.packets} of {s.frames} frames, " if s.type == "video" and s.frames else f"{self.packets} packets, "
        )
        return InputError(str(path), rule, f"{count}ends at {end} s of {declared:.3f} s")


def _check_lengths(container: av.container.InputContainer, path: Path, tracks: dict[int, _Track]) -> None:
    """Rule 3: every stream reaches the end its container declares (only where the container declares one)."""
    if container.format.name not in _DECLARES_LENGTH or not tracks:
        return
    declared_any = False
    for track in tracks.values():
        declared = track.declared_end()
        if declared is None:
            continue
        declared_any = True
        if track.end is None or track.end < declared - track.slack():
            rule = f"{track.stream.type} stream must last as long as its container declares (truncated file)"
            raise track.shortfall(path, declared, rule)
    if declared_any or not container.duration:
        return
    # Matroska/WebM: only the whole file's duration is declared; the longest stream must reach it
    declared = ((container.start_time or 0) + container.duration) / av.time_base
    longest = max(tracks.values(), key=lambda t: t.end if t.end is not None else -math.inf)
    if longest.end is None or longest.end < declared - max(t.slack() for t in tracks.values()):
        raise longest.shortfall(path, declared, "media must last as long as its container declares (truncated file)")


def _decoded(container: av.container.InputContainer, path: Path, stream: av.stream.Stream) -> Iterator[av.frame.Frame]:
    """The frames of ``stream``, with every packet of every video/audio/subtitle stream accounted for: ``InputError``
    on a corrupt packet, a decoder error, a frame the decoder had to conceal damage in, or (once the file is read to
    its end) a stream that stops before its container says it ends."""
    tracks = {s.index: _Track(s) for s in container.streams if s.type in _TALLIED}
    n = 0
    try:
        for packet in container.demux(*[t.stream for t in tracks.values()]):
            tracks[packet.stream.index].add(packet, path)
            if packet.stream.index != stream.index:
                continue
            for frame in packet.decode():
                if frame.is_corrupt:
                    raise InputError(
                        str(path),
                        f"{stream.type} must decode without damage (corrupt or truncated)",
                        f"{stream.type} frame {n} is marked corrupt by the decoder",
                    )
                n += 1
                yield frame
    except av.error.FFmpegError as exc:
        raise InputError(
            str(path), f"{stream.type} stream must decode without errors (corrupt or truncated)", _why(exc)
        ) from exc
    _check_lengths(container, path, tracks)


# --- rotation ---------------------------------------------------------------------------------------------------


_MATRIX_ZERO = 64  # |entry| below 64/65536 (0.001) in the 16.16 display matrix counts as 0


def orientation_of(matrix: tuple[int, ...], path: Path) -> Orientation:
    """The orientation a 3x3 display matrix (nine int32, a b u / c d v / x y w; a-d in 16.16 fixed point) asks for."""
    a, b, c, d = (0 if abs(v) < _MATRIX_ZERO else v for v in (matrix[0], matrix[1], matrix[3], matrix[4]))
    if b == c == 0 and a and d:
        return Orientation(transpose=False, flip_rows=d < 0, flip_cols=a < 0)
    if a == d == 0 and b and c:
        return Orientation(transpose=True, flip_rows=b < 0, flip_cols=c < 0)
    angle = math.degrees(math.atan2(matrix[1], matrix[0]))
    raise InputError(str(path), "video display rotation must be a multiple of 90 degrees", f"{angle:.1f} degrees")


def _orientation(frame: av.video.frame.VideoFrame, path: Path) -> Orientation:
    sd = frame.side_data.get(av.sidedata.sidedata.Type.DISPLAYMATRIX)
    if sd is None:
        return UPRIGHT
    raw = bytes(sd)
    if len(raw) < 36:
        raise InputError(str(path), "video display matrix must hold 9 numbers", f"{len(raw)} bytes")
    return orientation_of(struct.unpack("=9i", raw[:36]), path)


# --- video ------------------------------------------------------------------------------------------------------


def probe(path: str | Path) -> VideoInfo:
    """Container/stream facts; decodes only the first video frame (for its display matrix)."""
    p = Path(path)
    with _open(p) as c:
        v = c.streams.video[0] if c.streams.video else None
        a = c.streams.audio[0] if c.streams.audio else None
        if v is None and a is None:
            raise InputError(str(p), "must contain a video or audio stream", "no media streams")
        duration = c.duration / av.time_base if c.duration else 0.0
        if v is not None and v.duration and v.time_base:
            duration = float(v.duration * v.time_base)
        orientation = _first_orientation(c, v, p) if v is not None else UPRIGHT
        w, h = (v.codec_context.width, v.codec_context.height) if v is not None else (0, 0)
        return VideoInfo(
            path=p,
            width=h if orientation.transpose else w,
            height=w if orientation.transpose else h,
            fps=_fps(v) if v else 0.0,
            n_frames=(v.frames or None) if v else None,
            duration=duration,
            has_video=v is not None,
            has_audio=a is not None,
            audio_sample_rate=a.codec_context.sample_rate if a else None,
            audio_channels=a.codec_context.channels if a else None,
            video_codec=v.codec_context.name if v else None,
            audio_codec=a.codec_context.name if a else None,
            container=c.format.name,
            rotation=orientation.rotation,
            mirrored=orientation.mirrored,
        )


def _first_orientation(c: av.container.InputContainer, v: av.video.stream.VideoStream, p: Path) -> Orientation:
    try:
        for frame in c.decode(v):
            return _orientation(frame, p)
    except av.error.FFmpegError as exc:
        raise InputError(str(p), "video stream must decode without errors (corrupt or truncated)", _why(exc)) from exc
    return UPRIGHT


def _video_frames(path: Path) -> Iterator[tuple[av.video.frame.VideoFrame, Orientation]]:
    with _open(path) as c:
        stream = _video_stream(c, path)
        stream.thread_type = "AUTO"
        orientation: Orientation | None = None
        frames = _decoded(c, path, stream)
        try:
            n = 0
            for frame in frames:
                orientation = orientation or _orientation(frame, path)
                n += 1
                yield frame, orientation
        finally:
            frames.close()
        if n < MIN_FRAMES:
            raise InputError(str(path), f"video must contain at least {MIN_FRAMES} decodable frames", f"{n} frames")


def iter_frames(path: str | Path, *, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Decode frames one at a time (upright RGB uint8 [H,W,3]); memory stays at one frame whatever the clip length.

    Read to its end, the whole file is checked for completeness (module docstring); stopped at ``max_frames``, only
    what was read is."""
    frames = _video_frames(Path(path))
    try:
        for n, (frame, orientation) in enumerate(frames, start=1):
            yield orientation.apply(frame.to_ndarray(format="rgb24"))
            if max_frames is not None and n >= max_frames:
                return
    finally:
        frames.close()


def validate_video(path: str | Path, *, require_audio: bool = False) -> VideoInfo:
    """Every rule a video must meet, before any work: a readable, complete container (bytes, packets, declared
    lengths), a video stream of at least 16x16 px at 1-120 fps with at least 2 frames that all decode without damage,
    a display rotation in steps of 90°, and an audio track (if ``require_audio`` or present) that meets the audio
    rules. Decodes the whole file once (one frame in memory at a time); returns the facts, ``n_frames`` = frames
    decoded."""
    p = Path(path)
    info = probe(p)
    if require_audio and not info.has_audio:
        raise InputError(str(p), "video must carry an audio track", "no audio stream")
    n = sum(1 for _ in _video_frames(p))
    if info.has_audio:
        with _open(p) as c:
            _decode_audio(c, p, None)
    return dataclasses.replace(info, n_frames=n)


def read_video(path: str | Path, *, require_audio: bool = False, max_frames: int | None = None) -> Media:
    """Whole clip in memory: upright frames, fps and (if present, or required) the audio track; every rule of
    :func:`validate_video` holds for what is returned."""
    p = Path(path)
    with _open(p) as c:
        if require_audio and not c.streams.audio:
            raise InputError(str(p), "video must carry an audio track", "no audio stream")
        fps = _fps(_video_stream(c, p))
        has_audio = bool(c.streams.audio)
    frames = list(iter_frames(p, max_frames=max_frames))
    audio: np.ndarray | None = None
    rate: int | None = None
    if has_audio:
        with _open(p) as c:
            audio, rate = _decode_audio(c, p, None)
    return Media(frames=np.stack(frames), fps=fps, audio=audio, sample_rate=rate)


# --- audio ------------------------------------------------------------------------------------------------------


def _decode_audio(c: av.container.InputContainer, p: Path, sample_rate: int | None) -> tuple[np.ndarray, int]:
    stream = _audio_stream(c, p)
    rate = int(sample_rate or stream.codec_context.sample_rate)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    chunks: list[np.ndarray] = []
    try:
        for frame in _decoded(c, p, stream):
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
        chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    except av.error.FFmpegError as exc:
        raise InputError(str(p), "audio stream must decode without errors (corrupt or truncated)", _why(exc)) from exc
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    bad = np.flatnonzero(~np.isfinite(audio))
    if bad.size:
        raise InputError(str(p), "audio samples must be finite numbers", f"NaN or infinity at {bad[0] / rate:.3f} s")
    seconds = audio.size / rate
    if seconds < MIN_AUDIO_SECONDS:
        raise InputError(str(p), f"audio must last at least {MIN_AUDIO_SECONDS:g} s", f"{seconds:.3f} s")
    return np.clip(audio, -1.0, 1.0), rate


def read_audio(path: str | Path, *, sample_rate: int | None = None, ingredient: bool = False) -> tuple[np.ndarray, int]:
    """Mono float32 audio from any container (.wav, .mp3, .mp4, .avi ...), resampled to ``sample_rate`` if given.

    Rules: a sample rate of 8-192 kHz, at least one channel, finite samples, at least 0.1 s, a complete file. With
    ``ingredient=True`` (the speech that goes into the C2PA manifest) the file must also be an audio ingredient
    format (``provenance.c2pa.INGREDIENT_FORMATS``: WAV, MP3, FLAC, M4A, Ogg)."""
    lo, hi = SAMPLE_RATE_RANGE
    if sample_rate is not None and not (isinstance(sample_rate, int | np.integer) and lo <= sample_rate <= hi):
        raise UsageError("sample_rate", f"must be a whole number of Hz between {lo} and {hi}", sample_rate)
    p = Path(path)
    _regular_file(p, "audio")
    if ingredient:
        ingredient_format(p, kind="audio")
    with _open(p) as c:
        return _decode_audio(c, p, sample_rate)


# --- images -----------------------------------------------------------------------------------------------------


def read_image(path: str | Path) -> np.ndarray:
    """The portrait as upright RGB uint8 [H,W,3]: an image ingredient format (JPEG, PNG, GIF, WebP, TIFF), at least
    64 px each side. EXIF orientation is applied; 16-bit samples are scaled (65535 -> 255, not clipped); grey,
    palette and CMYK become RGB; transparency is composited over white; an animated image gives its first frame."""
    p = Path(path)
    _regular_file(p, "image")
    fmt = ingredient_format(p, kind="image")
    try:
        with Image.open(p, formats=[PIL_FORMATS[fmt.mime]]) as im:
            arr = rgb8(ImageOps.exif_transpose(im), str(p))
    except Image.DecompressionBombError as exc:
        raise InputError(str(p), "image must have at most Pillow's pixel limit", _why(exc)) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError) as exc:
        raise InputError(str(p), f"must be a readable {fmt.name} image", _why(exc)) from exc
    h, w = arr.shape[:2]
    if min(h, w) < MIN_PORTRAIT_SIDE:
        raise InputError(str(p), f"image must be at least {MIN_PORTRAIT_SIDE} px on each side", f"{w}x{h}")
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
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Encode H.264 (yuv420p, libx264) + AAC mono into ``path`` atomically; ``frames`` may be a lazy iterator.

    Odd widths/heights are padded by one replicated row/column to the next even size. ``metadata`` becomes container
    tags in ``moov/udta/meta`` (movflags ``use_metadata_tags``, so any key is kept, e.g. GB 45438's ``AIGC``);
    ``ffprobe -show_format`` lists them as ``TAG:<key>`` and ``read_container_metadata`` reads them back.
    """
    if not (isinstance(fps, int | float) and math.isfinite(fps) and fps > 0):
        raise UsageError("fps", "must be a positive finite number", fps)
    if not 0 <= int(crf) <= 51:
        raise UsageError("crf", "must be in 0..51", crf)
    tags = _check_metadata(metadata)
    audio = _check_audio(audio, sample_rate)
    target = Path(path)
    rate = Fraction(fps).limit_denominator(1001)
    movflags = "+faststart+use_metadata_tags" if tags else "+faststart"
    with atomic_path(target) as tmp:
        with av.open(str(tmp), mode="w", format="mp4", options={"movflags": movflags}) as out:
            out.metadata.update(tags)
            n = _encode_all(out, frames, rate, audio, sample_rate, crf, preset)
        if n == 0:
            raise UsageError("frames", "must contain at least one frame", "0 frames")
    return target


_TAG_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Container tags: ASCII keys (letters, digits, ``_.-``; at most 64), string values without NUL (a NUL would cut
    the value short in the container)."""
    if metadata is None:
        return {}
    tags: dict[str, str] = {}
    for key, value in metadata.items():
        if not (isinstance(key, str) and _TAG_KEY.match(key)):
            raise UsageError("metadata", "keys must be 1-64 ASCII letters, digits, '_', '.' or '-'", repr(key))
        if not isinstance(value, str) or "\x00" in value:
            raise UsageError(f"metadata.{key}", "must be a string without NUL characters", repr(value)[:80])
        tags[key] = value
    return tags


def read_container_metadata(path: str | Path) -> dict[str, str]:
    """The container-level metadata tags of a media file (e.g. ``AIGC``), as PyAV/FFmpeg read them."""
    p = Path(path)
    with _open(p) as c:
        return {str(k): str(v) for k, v in c.metadata.items()}


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
