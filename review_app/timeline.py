"""Per-frame metric timelines of a run page, drawn as server-side SVG from the record's series.

One ``Timeline`` per series the record holds: every measurement's ``series`` (identity per frame, Sync-C per window,
AV-sync ...) and the watermark's ``bit_accuracy_per_frame``; identity first, then the watermark, then lip sync and
the rest by name. x is the video frame (so every timeline shares the video's time axis and the cursor), y the value;
a frame where the quantity could not be computed (``None``) breaks the line and is marked on the baseline. The
policy's thresholds on that metric are drawn as dashed lines. The template only writes numbers computed here.

A series whose positions in the video the record does not state — the watermark decoder reads a subset of the frames
(``frames_decoded`` of ``frames_embedded``) but records its values as consecutive samples — is not drawn as if it
were frames 0..n-1 (that would pack it into the start of the clip): its samples are spread evenly over the clip's
width and the caption says that their frame positions are approximate (``exact`` False).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

WIDTH = 1000.0  # SVG user units across the whole video
HEIGHT = 90.0
PAD_Y = 8.0
_ORDER = ("identity", "watermark", "sync", "avsync")


@dataclass(frozen=True)
class Rule:
    """A policy threshold on the plotted metric, at height ``y``."""

    label: str
    y: float


@dataclass(frozen=True)
class Timeline:
    key: str
    title: str
    label: str
    paths: tuple[str, ...]  # SVG path data, one per unbroken run of measured frames
    gaps: tuple[float, ...]  # x of each frame that could not be measured
    rules: tuple[Rule, ...]
    y_min: float
    y_max: float
    measured: int
    total: int
    frames: int  # frames of the video the x axis spans
    exact: bool = True  # False: x positions are spread evenly, the record does not say which frames were sampled

    @property
    def caption(self) -> str:
        """How much of the clip the series covers, in words."""
        if not self.exact:
            missing = f"{self.measured} of {self.total} samples measured · " if self.measured < self.total else ""
            return (
                f"{missing}{self.total} of {self.frames} frames decoded, drawn evenly spread"
                " (the record does not say which frames)"
            )
        unit = "frames" if self.total == self.frames else "samples"
        return f"{self.measured} of {self.total} {unit} measured"


def timelines(record: dict[str, Any]) -> list[Timeline]:
    """Every per-frame series of ``record`` (a record dict as ``GateRecord.model_dump(mode="json")`` gives it)."""
    output = record.get("output") or {}
    frames = _positive_int(output.get("frames"))
    checks = record.get("checks") or []
    found: list[Timeline] = []
    for m in record.get("measurements") or []:
        series = m.get("series")
        if series and series.get("values"):
            rules = [
                (f"{c['name']} {c['op']} {c['threshold']}", float(c["threshold"]))
                for c in checks
                if c.get("metric") == m.get("name") and _is_number(c.get("threshold"))
            ]
            found.append(_timeline(m["name"], m["name"], series, frames, rules))
    wm = record.get("watermark") or {}
    bits = wm.get("bit_accuracy_per_frame")
    if bits and bits.get("values"):
        spread = _sampled_subset(bits, frames)
        found.append(
            _timeline("watermark", "watermark bit accuracy", bits, frames, [], fixed=(0.0, 1.0), spread=spread)
        )
    return sorted(found, key=_rank)


def _sampled_subset(series: dict[str, Any], frames: int | None) -> bool:
    """True when ``series`` holds fewer values than the video has frames, one per sample, at no stated stride."""
    n = len(series["values"])
    stride = int(series.get("stride") or 1)
    return frames is not None and stride == 1 and not series.get("start_frame") and n < frames


def _rank(t: Timeline) -> tuple[int, str]:
    for i, prefix in enumerate(_ORDER):
        if t.key.startswith(prefix):
            return i, t.key
    return len(_ORDER), t.key


def _timeline(
    key: str,
    title: str,
    series: dict[str, Any],
    frames: int | None,
    rules: list[tuple[str, float]],
    fixed: tuple[float, float] | None = None,
    spread: bool = False,
) -> Timeline:
    values: list[float | None] = [None if v is None else float(v) for v in series["values"]]
    start = int(series.get("start_frame") or 0)
    stride = max(1, int(series.get("stride") or 1))
    indices = [start + i * stride for i in range(len(values))]
    total = frames or (indices[-1] + 1)
    if spread:  # sample i at the start of its equal share of the clip (the caption says the positions are approximate)
        indices = [i * total // len(values) for i in range(len(values))]
    measured = [v for v in values if v is not None and math.isfinite(v)]
    lo, hi = fixed or _range(measured + [y for _, y in rules])

    def x(frame: int) -> float:
        return round((frame + 0.5) / total * WIDTH, 2)

    def y(value: float) -> float:
        frac = 0.5 if hi == lo else (value - lo) / (hi - lo)
        return round(HEIGHT - PAD_Y - frac * (HEIGHT - 2 * PAD_Y), 2)

    paths: list[str] = []
    gaps: list[float] = []
    current: list[str] = []
    for frame, v in zip(indices, values, strict=True):
        if v is None or not math.isfinite(v):
            gaps.append(x(frame))
            if current:
                paths.append(" ".join(current))
                current = []
            continue
        current.append(f"{'M' if not current else 'L'}{x(frame)},{y(v)}")
    if current:
        paths.append(" ".join(current))
    shown_rules = tuple(Rule(label, y(v)) for label, v in rules if lo <= v <= hi)
    return Timeline(
        key=key,
        title=title,
        label=str(series.get("label") or title),
        paths=tuple(paths),
        gaps=tuple(gaps),
        rules=shown_rules,
        y_min=lo,
        y_max=hi,
        measured=len(measured),
        total=len(values),
        frames=total,
        exact=not spread,
    )


def _range(values: list[float]) -> tuple[float, float]:
    if not values:
        return 0.0, 1.0
    lo, hi = min(values), max(values)
    if hi == lo:
        return lo - 0.5, hi + 0.5
    margin = (hi - lo) * 0.05
    return lo - margin, hi + margin


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
