"""The visible disclosure label: burned into the frames before watermarking and measuring, and checked on the final file.

What the rules ask (``../shared/specs/compliance.md`` §1-§2): EU AI Act Art. 50(4) and the Code of Practice Section 2
(a visible "AI" notice at the start of a video, top-right suggested, accessible per WCAG 2.1); GB 45438-2025 (an
"AI生成" notice visible for at least 2 s at the start, text at least 5 % of the short side; a label "around the
picture during playback" per the Labelling Measures Art. 4).

What this module draws, from a policy's ``[disclosure]`` table (``gate.policy.DisclosurePolicy``):

* the **label**: the policy's text, white on a solid near-black rounded box, in the chosen corner, on every frame
  with ``t = index / fps < start_seconds``. Text height = capital-letter height (the ink height of "H" in the font;
  CJK ideographs of Noto Sans CJK are taller) = ``ceil(size * short side)`` pixels, so >= 5 % when ``size >= 0.05``.
  The box pads the text by ``PAD`` text heights and sits ``MARGIN`` text heights from both edges of the corner.
* the **mark** (``persistent``): ``MARK_TEXT`` ("AI", the minimal form of the EU icon) in the same style, at the same
  text height, in the same corner, on every later frame. Same height rather than smaller, so the persistent mark
  meets the 5 % rule too; two letters instead of the whole text keep the covered area small (about 1/4 of the label's
  for "AI-generated").

Contrast: text ``TEXT_RGB`` (255, 255, 255) on box ``BOX_RGB`` (16, 16, 16): WCAG 2.1 contrast ratio 19.0:1 (>= 4.5:1,
level AA for text, and >= 7:1, level AAA). The box is opaque, so the ratio does not depend on the picture behind it.

The check (``check``) runs on the FINAL decoded frames without the unlabelled originals: it renders the same label
(same font file, same size rules, same frame size) and compares each frame's label region with it. A frame carries
the label when, in the box's interior, (a) the Pearson correlation of the frame's luma with the template's luma is
>= ``MIN_CORRELATION`` and (b) the mean luma of the text strokes exceeds the mean luma of the box background by >=
``MIN_STROKE_CONTRAST`` levels (of 255). Both are computed for small shifts (``SEARCH_PX``) and the best is kept, so a
one-pixel difference in rendering does not fail a labelled frame; an even frame side is also tried one pixel smaller,
because ``gate.media.write_mp4`` pads an odd side. H.264 at CRF 18-35 keeps both far above the bounds (figures at
the bounds below); an unlabelled picture, a label in another corner, other text or a label that ends early fails them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from gate.policy import LABEL_POSITIONS, MIN_LABEL_SECONDS, MIN_LABEL_SIZE, DisclosurePolicy
from reports.errors import InputError, MeasurementError, UsageError

DEFAULT_FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc")  # Debian fonts-noto-cjk (make install)
DEFAULT_FONT_FACE = "Noto Sans CJK SC Bold"  # the face of the collection for Simplified Chinese ("AI生成")
TEXT_RGB = (255, 255, 255)
BOX_RGB = (16, 16, 16)
MARK_TEXT = "AI"
PAD = 0.45  # box padding around the text, in text heights
MARGIN = 0.5  # distance of the box from the frame's edges, in text heights
CAP_REFERENCE = "H"  # the glyph whose ink height defines "text height"
MIN_TEXT_PX = 8  # below this the letters are not legible, and the strokes too thin to find after compression
# Bounds of the check. Measured on the speaker clip (976x528) and an animated portrait (512x512), "AI-generated" and
# "AI生成", H.264 CRF 18-35: worst correlation 0.995, worst stroke contrast 229; unlabelled real frames: correlation
# <= 0.20 and contrast <= 12; another text ("AI生成" where "AI-generated" is expected): 0.24 and 52.
MIN_CORRELATION = 0.8  # luma correlation with the template inside the box
MIN_STROKE_CONTRAST = 120.0  # mean luma on the strokes minus on the box background (levels of 255)
SEARCH_PX = 2  # the template is also tried shifted by up to this many pixels in x and y
SETTLED_CORRELATION = 0.95  # a place (or frame size) scoring this needs no further search
SUPERSAMPLE = 4  # the box's rounded corners are drawn at 4x and reduced, for smooth edges


@dataclass(frozen=True)
class LabelSpec:
    """What to draw, resolved: the font file is found and hashed, so a record names exactly what was drawn.

    ``size``: capital-letter height as a fraction of the short side. ``font``: the font file's absolute path;
    ``font_index``: the face within a collection (.ttc); ``font_sha256``: the file's sha256."""

    text: str
    position: str
    start_seconds: float
    persistent: bool
    size: float
    font: str
    font_index: int
    font_sha256: str
    text_rgb: tuple[int, int, int] = TEXT_RGB
    box_rgb: tuple[int, int, int] = BOX_RGB
    mark_text: str = MARK_TEXT

    @classmethod
    def from_policy(cls, policy: DisclosurePolicy) -> LabelSpec:
        """The spec for a policy's ``[disclosure]`` table. A missing or unreadable font, or a text character the font
        has no glyph for, is a ``UsageError`` naming ``disclosure.font`` / ``disclosure.text``."""
        if policy.font is None:
            path, index = _default_font()
        else:
            path, index = _readable_font(Path(policy.font), "disclosure.font"), 0
        _check_coverage(path, index, policy.text + MARK_TEXT, "disclosure.text")
        return cls(
            text=policy.text,
            position=policy.position,
            start_seconds=float(policy.start_seconds),
            persistent=policy.persistent,
            size=float(policy.size),
            font=str(path),
            font_index=index,
            font_sha256=_sha256(path),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any], subject: str = "label") -> LabelSpec:
        """The spec in a ``to_dict()`` (a manifest's ``visible_label``) or a ``LabelCheck.to_dict()`` (a record's
        ``label``), checked again. Without ``font_index`` (a record's label) the face is the one ``from_policy`` picks
        for that file (the default face for the default font, else 0); without colours or mark, the defaults (the only
        ones ``from_policy`` draws). A malformed field: ``InputError`` naming ``<subject>.<key>``. The font file must
        exist here with the same sha256, else the label cannot be re-rendered: ``MeasurementError``."""
        text = _field(data, "text", str, subject)
        position = _field(data, "position", str, subject)
        start = float(_field(data, "start_seconds", (int, float), subject))
        persistent = _field(data, "persistent", bool, subject)
        size = float(_field(data, "size", (int, float), subject))
        font = Path(_field(data, "font", str, subject))
        mark = _field({"mark_text": data.get("mark_text", MARK_TEXT)}, "mark_text", str, subject)
        if not mark.strip():
            raise InputError(f"{subject}.mark_text", "must be a non-empty string", repr(mark))
        if not text.strip():
            raise InputError(f"{subject}.text", "must be a non-empty string", repr(text))
        if position not in LABEL_POSITIONS:
            raise InputError(f"{subject}.position", f"must be one of {', '.join(LABEL_POSITIONS)}", repr(position))
        if not (math.isfinite(start) and start >= MIN_LABEL_SECONDS):
            raise InputError(f"{subject}.start_seconds", f"must be >= {MIN_LABEL_SECONDS:g}", start)
        if not (math.isfinite(size) and MIN_LABEL_SIZE <= size <= 1):
            raise InputError(f"{subject}.size", f"must be from {MIN_LABEL_SIZE} to 1", size)
        if not font.is_file():
            raise MeasurementError(f"{subject}.font", "the font file must exist here to re-render the label", str(font))
        default_index = _default_font()[1] if font == DEFAULT_FONT and DEFAULT_FONT.is_file() else 0
        index = data.get("font_index", default_index)
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise InputError(f"{subject}.font_index", "must be a whole number >= 0", repr(index))
        digest = _sha256(font)
        if digest != data.get("font_sha256"):
            raise MeasurementError(
                f"{subject}.font_sha256", "the font file here must be the one the label was drawn with", digest
            )
        try:
            _check_coverage(font, index, text + mark, f"{subject}.text")
        except UsageError as exc:
            raise InputError(exc.subject, exc.rule, exc.value) from None
        return cls(
            text,
            position,
            start,
            persistent,
            size,
            str(font),
            index,
            digest,
            _colour(data.get("text_rgb", TEXT_RGB), f"{subject}.text_rgb"),
            _colour(data.get("box_rgb", BOX_RGB), f"{subject}.box_rgb"),
            mark,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["text_rgb"], d["box_rgb"] = list(self.text_rgb), list(self.box_rgb)
        return d


def _field(data: dict[str, Any], key: str, kind: type | tuple[type, ...], subject: str) -> Any:
    if key not in data:
        raise InputError(f"{subject}.{key}", "must be present in a label spec", "missing")
    value = data[key]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise InputError(f"{subject}.{key}", "has the wrong type", repr(value)[:60])
    return value


def _colour(value: Any, subject: str) -> tuple[int, int, int]:
    ok = isinstance(value, list | tuple) and len(value) == 3
    if not ok or any(isinstance(c, bool) or not isinstance(c, int) or not 0 <= c <= 255 for c in value):
        raise InputError(subject, "must be three whole numbers 0..255 (sRGB)", repr(value)[:60])
    return (int(value[0]), int(value[1]), int(value[2]))


# --- fonts ---------------------------------------------------------------------------------------------------------


def _readable_font(path: Path, subject: str) -> Path:
    if not path.is_file():
        raise UsageError(subject, "must be a readable font file (TrueType/OpenType)", str(path))
    try:
        ImageFont.truetype(str(path), 12)
    except OSError as exc:
        raise UsageError(subject, "must be a readable font file (TrueType/OpenType)", f"{path}: {exc}") from None
    return path.resolve()


@lru_cache(maxsize=4)
def _default_font() -> tuple[Path, int]:
    if not DEFAULT_FONT.is_file():
        raise UsageError(
            "disclosure.font",
            "the default label font is Noto Sans CJK from the Debian package fonts-noto-cjk (make install); "
            "install it or name a font file",
            str(DEFAULT_FONT),
        )
    from fontTools.ttLib import TTCollection

    names = [f["name"].getDebugName(4) for f in TTCollection(str(DEFAULT_FONT), lazy=True).fonts]
    if DEFAULT_FONT_FACE not in names:
        raise UsageError("disclosure.font", f"the default font collection must hold {DEFAULT_FONT_FACE}", names)
    return DEFAULT_FONT, names.index(DEFAULT_FONT_FACE)


@lru_cache(maxsize=8)
def _cmap(path: Path, index: int) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    with TTFont(str(path), fontNumber=index, lazy=True) as font:
        return frozenset(font.getBestCmap())


def _check_coverage(path: Path, index: int, text: str, subject: str) -> None:
    """Every character of ``text`` (the label and the mark) has a glyph in the font: no empty boxes ("tofu")."""
    try:
        cmap = _cmap(path, index)
    except Exception as exc:  # fontTools raises many kinds: any of them means the font cannot be trusted
        raise UsageError("disclosure.font", "must be a readable TrueType/OpenType font", f"{path}: {exc}") from None
    missing = [ch for ch in text if not ch.isspace() and ord(ch) not in cmap]
    if missing:
        raise UsageError(
            subject, f"every character must have a glyph in the font {path.name}", f"U+{ord(missing[0]):04X}"
        )


def _sha256(path: Path) -> str:
    st = path.stat()
    return _sha256_of(path, st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=8)
def _sha256_of(path: Path, mtime_ns: int, size: int) -> str:  # keyed by mtime and size: a changed file is re-read
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- rendering -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """One rendered label (or mark) for one frame size: where it goes and what it looks like."""

    x: int
    y: int
    rgb: np.ndarray  # h x w x 3 float32, the label's colours
    alpha: np.ndarray  # h x w x 1 float32, 1 inside the box
    interior: np.ndarray  # h x w bool: fully inside the box (alpha 1), where the check compares
    strokes: np.ndarray  # h x w bool: text ink coverage >= 0.75
    background: np.ndarray  # h x w bool: box interior at least 2 px away from any ink
    text_px: int  # the capital-letter height in pixels
    reference: np.ndarray  # the template's luma on ``interior``, minus its mean (for the correlation)
    reference_norm: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.rgb.shape[0], self.rgb.shape[1]


def text_height(spec: LabelSpec, width: int, height: int) -> int:
    """The capital-letter height in pixels for a frame of this size: ceil(size * short side)."""
    return max(1, math.ceil(spec.size * min(width, height) - 1e-9))


def _font_for(spec: LabelSpec, cap_px: int) -> ImageFont.FreeTypeFont:
    """The smallest font size whose "H" is at least ``cap_px`` pixels of ink high."""
    size = max(4, round(cap_px / 0.73))  # Noto's cap height is 0.733 em; corrected below for any font
    for _ in range(200):
        font = ImageFont.truetype(spec.font, size, index=spec.font_index)
        top, bottom = font.getbbox(CAP_REFERENCE)[1::2]
        if bottom - top >= cap_px:
            while size > 4:
                smaller = ImageFont.truetype(spec.font, size - 1, index=spec.font_index)
                t, b = smaller.getbbox(CAP_REFERENCE)[1::2]
                if b - t < cap_px:
                    break
                font, size = smaller, size - 1
            return font
        size += 1
    raise UsageError("disclosure.font", "must draw a capital H of the required height", cap_px)


@lru_cache(maxsize=16)
def template(spec: LabelSpec, width: int, height: int, mark: bool = False) -> Template:
    """The label (or, ``mark=True``, the persistent mark) for a ``width`` x ``height`` frame. UsageError naming
    ``disclosure.text`` if it does not fit in the frame at the required size."""
    cap = text_height(spec, width, height)
    if cap < MIN_TEXT_PX:
        raise UsageError(
            "disclosure.size",
            f"the label text must be at least {MIN_TEXT_PX} px high to be legible; the {width}x{height} frame is too "
            "small for this size",
            f"{cap} px",
        )
    font = _font_for(spec, cap)
    text = spec.mark_text if mark else spec.text
    left, top, right, bottom = font.getbbox(text)
    c_top, c_bottom = font.getbbox(CAP_REFERENCE)[1::2]
    top, bottom = min(top, c_top), max(bottom, c_bottom)
    pad = max(2, round(PAD * cap))
    margin = max(2, round(MARGIN * cap))
    box_w, box_h = (right - left) + 2 * pad, (bottom - top) + 2 * pad
    if box_w + 2 * margin > width or box_h + 2 * margin > height:
        raise UsageError(
            "disclosure.text",
            f"the label must fit in the {width}x{height} frame at text height {cap} px",
            f"{text!r} needs {box_w + 2 * margin}x{box_h + 2 * margin} px",
        )
    ink = Image.new("L", (box_w, box_h), 0)
    ImageDraw.Draw(ink).text((pad - left, pad - top), text, fill=255, font=font)
    ink_a = np.asarray(ink, dtype=np.float32)[..., None] / 255.0
    big = Image.new("L", (box_w * SUPERSAMPLE, box_h * SUPERSAMPLE), 0)
    ImageDraw.Draw(big).rounded_rectangle(
        (0, 0, box_w * SUPERSAMPLE - 1, box_h * SUPERSAMPLE - 1), radius=round(0.35 * cap * SUPERSAMPLE), fill=255
    )
    alpha = np.asarray(big.resize((box_w, box_h), Image.Resampling.BOX), dtype=np.float32)[..., None] / 255.0
    rgb = np.asarray(spec.box_rgb, np.float32) * (1 - ink_a) + np.asarray(spec.text_rgb, np.float32) * ink_a
    interior = alpha[..., 0] >= 1.0
    strokes = (ink_a[..., 0] >= 0.75) & interior
    near_ink = _dilate(ink_a[..., 0] > 0.02, 2)
    background = interior & ~near_ink
    x = margin if spec.position.endswith("left") else width - margin - box_w
    y = margin if spec.position.startswith("top") else height - margin - box_h
    reference = _luma(rgb)[interior]
    reference = reference - reference.mean()
    return Template(x, y, rgb, alpha, interior, strokes, background, cap, reference, float(np.linalg.norm(reference)))


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    padded = np.pad(mask, r)
    h, w = mask.shape
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out |= padded[r + dy : r + dy + h, r + dx : r + dx + w]
    return out


def _frame(frame: np.ndarray, index: int) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        shown = getattr(frame, "shape", type(frame).__name__), getattr(frame, "dtype", "")
        raise UsageError(f"frames[{index}]", "must be a uint8 RGB array of shape HxWx3", shown)
    return frame


def _fps(fps: float) -> float:
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not math.isfinite(fps) or fps <= 0:
        raise UsageError("fps", "must be a positive finite number", fps)
    return float(fps)


def _phase(spec: LabelSpec, index: int, fps: float) -> str | None:
    """'label' while t < start_seconds, then 'mark' if persistent, else None (nothing drawn or required)."""
    if index / fps < spec.start_seconds:
        return "label"
    return "mark" if spec.persistent else None


def burn(frames: Iterable[np.ndarray], fps: float, spec: LabelSpec) -> Iterator[np.ndarray]:
    """The frames with the label (first ``start_seconds``) and the mark (after, if persistent) composited in; lazy,
    one frame at a time; the input frames are not modified. uint8 RGB HxWx3 in and out."""
    rate = _fps(fps)
    for i, frame in enumerate(frames):
        frame = _frame(frame, i)
        phase = _phase(spec, i, rate)
        if phase is None:
            yield frame
            continue
        t = template(spec, frame.shape[1], frame.shape[0], phase == "mark")
        h, w = t.shape
        out = frame.copy()
        region = out[t.y : t.y + h, t.x : t.x + w].astype(np.float32)
        out[t.y : t.y + h, t.x : t.x + w] = np.rint(t.rgb * t.alpha + region * (1 - t.alpha)).astype(np.uint8)
        yield out


# --- the check -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelCheck:
    """The label found (or not) on the final frames.

    ``frames_checked``: frames whose label region was tested (all frames before ``start_seconds`` and, if the spec is
    persistent, all later ones). ``frames_labelled``: of those, the ones carrying the label (or mark).
    ``first_unlabelled_frame``: the first tested frame without it. ``seconds_required``: start_seconds, or the whole
    video if shorter. ``seconds_labelled``: how long the label is on from frame 0 without a gap. ``persistent_frames``
    / ``persistent_labelled``: frames after start_seconds tested for the mark / carrying it. ``worst_correlation`` /
    ``worst_contrast``: the lowest per-frame scores over the tested frames (the margins to ``MIN_CORRELATION`` and
    ``MIN_STROKE_CONTRAST``). ``ok`` iff at least one frame was read and every tested frame carries the label."""

    spec: LabelSpec
    frames_checked: int
    frames_labelled: int
    first_unlabelled_frame: int | None
    seconds_required: float
    seconds_labelled: float
    persistent_frames: int
    persistent_labelled: int
    ok: bool
    reason: str | None
    worst_correlation: float | None = None
    worst_contrast: float | None = None

    def to_dict(self) -> dict[str, Any]:
        s = self.spec
        return {
            "text": s.text,
            "position": s.position,
            "start_seconds": s.start_seconds,
            "persistent": s.persistent,
            "size": s.size,
            "font": s.font,
            "font_sha256": s.font_sha256,
            "frames_checked": self.frames_checked,
            "frames_labelled": self.frames_labelled,
            "first_unlabelled_frame": self.first_unlabelled_frame,
            "seconds_required": self.seconds_required,
            "seconds_labelled": self.seconds_labelled,
            "persistent_frames": self.persistent_frames,
            "persistent_labelled": self.persistent_labelled,
            "worst_correlation": self.worst_correlation,
            "worst_contrast": self.worst_contrast,
            "ok": self.ok,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class FrameScore:
    correlation: float  # Pearson correlation of the frame's luma with the template's, in the box interior
    contrast: float  # mean luma on the strokes minus mean luma on the box background (0..255)

    @property
    def labelled(self) -> bool:
        return self.correlation >= MIN_CORRELATION and self.contrast >= MIN_STROKE_CONTRAST


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


# (dy, dx) within SEARCH_PX, nearest first: a frame labelled in place is settled by the first
SHIFTS = sorted(
    ((dy, dx) for dy in range(-SEARCH_PX, SEARCH_PX + 1) for dx in range(-SEARCH_PX, SEARCH_PX + 1)),
    key=lambda d: (abs(d[0]) + abs(d[1]), d),
)


def score(frame: np.ndarray, t: Template) -> FrameScore:
    """The best score of the template against the frame at its place, shifted by up to ``SEARCH_PX`` pixels. The
    search stops at a score of at least ``SETTLED_CORRELATION`` and ``MIN_STROKE_CONTRAST`` (no better place
    matters)."""
    h, w = t.shape
    top, left = max(0, t.y - SEARCH_PX), max(0, t.x - SEARCH_PX)
    window = _luma(frame[top : t.y + h + SEARCH_PX, left : t.x + w + SEARCH_PX].astype(np.float32))
    ref, ref_norm = t.reference, t.reference_norm
    best = FrameScore(-1.0, -255.0)
    for dy, dx in SHIFTS:
        y0, x0 = t.y + dy - top, t.x + dx - left
        if y0 < 0 or x0 < 0 or y0 + h > window.shape[0] or x0 + w > window.shape[1]:
            continue
        region = window[y0 : y0 + h, x0 : x0 + w]
        v = region[t.interior]
        v = v - v.mean()
        denom = float(np.linalg.norm(v)) * ref_norm
        corr = float(v @ ref / denom) if denom > 0 else 0.0
        contrast = float(region[t.strokes].mean() - region[t.background].mean())
        if (corr, contrast) > (best.correlation, best.contrast):
            best = FrameScore(corr, contrast)
        if best.correlation >= SETTLED_CORRELATION and best.contrast >= MIN_STROKE_CONTRAST:
            break
    return best


def _sizes(width: int, height: int) -> list[tuple[int, int]]:
    """The frame sizes the label may have been drawn for: this one, and, for an even side, one pixel less
    (``gate.media.write_mp4`` pads an odd side by one replicated row or column)."""
    ws = [width] + ([width - 1] if width % 2 == 0 and width > 1 else [])
    hs = [height] + ([height - 1] if height % 2 == 0 and height > 1 else [])
    return [(w, h) for w in ws for h in hs]


def _best(frame: np.ndarray, spec: LabelSpec, mark: bool) -> FrameScore:
    """The best score over the sizes the label may have been drawn for (``_sizes``). If the label fits none of them,
    the ``UsageError`` of the frame's own size (``disclosure.text``: the label does not fit)."""
    scores: list[FrameScore] = []
    error: UsageError | None = None
    for w, h in _sizes(frame.shape[1], frame.shape[0]):
        try:
            scores.append(score(frame, template(spec, w, h, mark)))
        except UsageError as exc:  # the label does not fit a frame of that size
            error = error or exc
            continue
        if scores[-1].labelled and scores[-1].correlation >= SETTLED_CORRELATION:
            break
    if not scores and error is not None:
        raise error
    return max(scores, key=lambda x: (x.labelled, x.correlation))


def check(frames: np.ndarray | Iterable[np.ndarray], fps: float, spec: LabelSpec) -> LabelCheck:
    """Whether every frame before ``start_seconds`` carries the label and, if persistent, every later frame the mark
    (or the full label), judged on the frames alone (see the module docstring). Streams the frames."""
    rate = _fps(fps)
    n = checked = labelled = persistent_frames = persistent_labelled = 0
    first_missing: int | None = None
    first_score: FrameScore | None = None
    leading = 0
    leading_open = True
    worst_corr = worst_contrast = math.inf
    for i, frame in enumerate(frames):
        frame = _frame(frame, i)
        n += 1
        phase = _phase(spec, i, rate)
        if phase is None:
            leading_open = False
            continue
        s = _best(frame, spec, False)
        if phase == "mark" and not s.labelled:
            s = max(s, _best(frame, spec, True), key=lambda x: (x.labelled, x.correlation))
        checked += 1
        worst_corr, worst_contrast = min(worst_corr, s.correlation), min(worst_contrast, s.contrast)
        if phase == "mark":
            persistent_frames += 1
            persistent_labelled += s.labelled
        if s.labelled:
            labelled += 1
        elif first_missing is None:
            first_missing, first_score = i, s
        if phase == "label" and leading_open and s.labelled:
            leading += 1
        else:
            leading_open = False
    required = min(spec.start_seconds, n / rate)
    ok = n > 0 and first_missing is None
    reason = None
    if n == 0:
        reason = "no frames to check"
    elif first_missing is not None and first_score is not None:
        what = "label" if _phase(spec, first_missing, rate) == "label" else "persistent mark"
        reason = (
            f"frame {first_missing} ({first_missing / rate:.2f} s) carries no {what} {spec.text!r} in the "
            f"{spec.position} corner (luma correlation {first_score.correlation:.2f}, needs >= {MIN_CORRELATION}; "
            f"stroke contrast {first_score.contrast:.0f}, needs >= {MIN_STROKE_CONTRAST:.0f})"
        )
    return LabelCheck(
        spec=spec,
        frames_checked=checked,
        frames_labelled=labelled,
        first_unlabelled_frame=first_missing,
        seconds_required=round(required, 6),
        seconds_labelled=round(leading / rate, 6),
        persistent_frames=persistent_frames,
        persistent_labelled=persistent_labelled,
        ok=ok,
        reason=reason,
        worst_correlation=None if checked == 0 else round(worst_corr, 4),
        worst_contrast=None if checked == 0 else round(worst_contrast, 2),
    )
