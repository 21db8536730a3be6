"""Matplotlib figures shared by the audit report and the model-comparison report.

Figures are built with the object-oriented API on the Agg canvas (``matplotlib.figure.Figure``): no pyplot, no
global backend state, no display. Each figure is returned as a ``data:`` URI (PNG) so reports stay self-contained.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import Bbox

from reports.schema import GateRecord, MeasurementRecord, Series

DPI = 144
PASS_COLOUR = "#1a7f37"
FAIL_COLOUR = "#cf222e"
LINE_COLOUR = "#0969da"
PALETTE = ("#0969da", "#bc4c00", "#8250df", "#1a7f37", "#bf3989", "#57606a")


@dataclass(frozen=True)
class Plot:
    key: str
    title: str
    data_uri: str
    caption: str


def figure_to_data_uri(fig: Figure) -> str:
    """Render a figure to PNG and return it as a base64 ``data:`` URI."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _x_axis(series: Series) -> tuple[np.ndarray, str]:
    frames = np.asarray(series.frame_indices(), dtype=np.float64)
    if series.fps:
        return frames / series.fps, "time (s)"
    return frames, "frame"


def series_figure(series: Series, *, title: str, ylabel: str, thresholds: Sequence[tuple[str, float]] = ()) -> Figure:
    """A per-frame line plot; frames without a value are gaps, marked with grey ticks on the x axis."""
    x, xlabel = _x_axis(series)
    y = np.array([np.nan if v is None else v for v in series.values], dtype=np.float64)
    fig = Figure(figsize=(7.5, 2.3), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(x, y, color=LINE_COLOUR, linewidth=1.2, marker="." if len(y) <= 60 else None)
    missing = np.isnan(y)
    if missing.any():
        ax.plot(
            x[missing],
            np.full(int(missing.sum()), 0.03),
            "|",
            color="#8c959f",
            markersize=8,
            transform=ax.get_xaxis_transform(),
            label=f"not measured ({int(missing.sum())} values)",
        )
    for op, threshold in thresholds:
        if math.isfinite(threshold):
            ax.axhline(threshold, color=FAIL_COLOUR, linestyle="--", linewidth=1, label=f"policy: {op} {threshold:g}")
    if (~missing).any():
        mean = float(np.nanmean(y))
        ax.axhline(mean, color="#57606a", linestyle=":", linewidth=1, label=f"mean {mean:.3g}")
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="lower right", framealpha=0.8)
    return fig


def policy_bounds(record: GateRecord, measurement: MeasurementRecord) -> list[tuple[str, float]]:
    """(op, threshold) of every numeric check that compared this measurement's own value.

    A check on a derived value (a regression check compares a change against a baseline, an ``abs_max`` bound the
    absolute value) has a different ``value`` and is not drawn on the metric's axis.
    """
    bounds = []
    for check in record.checks:
        threshold, value = check.threshold, check.value
        if (
            check.metric == measurement.name
            and isinstance(threshold, int | float)
            and not isinstance(threshold, bool)
            and isinstance(value, int | float)
            and measurement.value is not None
            and math.isclose(float(value), measurement.value, rel_tol=1e-9, abs_tol=1e-12)
        ):
            bounds.append((check.op, float(threshold)))
    return bounds


def _plot_keys(record: GateRecord) -> list[tuple[str, str, Series, str, list[tuple[str, float]]]]:
    """(key, title, series, y label, policy bounds) for every per-frame series in the record."""
    items = []
    for m in record.measurements:
        if m.series is not None and m.series.values:
            items.append((m.name, f"{m.name}: {m.series.label}", m.series, m.unit or m.name, policy_bounds(record, m)))
    wm = record.watermark.bit_accuracy_per_frame
    if wm is not None and wm.values:
        items.append(("watermark", f"watermark: {wm.label} ({record.watermark.method})", wm, "bit accuracy", []))
    return items


def record_plots(record: GateRecord) -> list[Plot]:
    """The per-frame plots of one run: identity, sync confidence, watermark bit accuracy (whatever the record has)."""
    plots = []
    for key, title, series, ylabel, bounds in _plot_keys(record):
        fig = series_figure(series, title=title, ylabel=ylabel, thresholds=bounds)
        measured = series.measured_values()
        caption = f"{len(measured)} of {len(series.values)} values measured" + (
            f"; min {min(measured):.3g}, max {max(measured):.3g}" if measured else ""
        )
        plots.append(Plot(key=key, title=title, data_uri=figure_to_data_uri(fig), caption=caption))
    return plots


# --- comparison figures ------------------------------------------------------------------------------------------


def distribution_figure(
    title: str,
    labels: Sequence[str],
    samples: Sequence[Sequence[float]],
    *,
    higher_is_better: bool | None,
    unit: str = "",
    width: float = 7.0,
) -> Figure:
    """Per-model distributions of a per-case metric side by side, one row per model (labels on the y axis never
    collide however long they are): a box (quartiles, whiskers at 1.5 IQR), every case as a point, the mean as a
    diamond. The better direction is written on the x axis. Models without values get an empty row saying so."""
    n = len(labels)
    fig = Figure(figsize=(width, 0.9 + 0.42 * max(n, 2)), layout="constrained")
    ax = fig.add_subplot()
    data = [np.asarray(s, dtype=np.float64) for s in samples]
    positions = np.arange(n, 0, -1)  # the first model on top
    filled = [(pos, d) for pos, d in zip(positions, data, strict=True) if d.size]
    if filled:
        ax.boxplot(
            [d for _, d in filled],
            positions=[p for p, _ in filled],
            orientation="horizontal",
            widths=0.5,
            showfliers=False,
            medianprops={"color": "#1f2328"},
            boxprops={"color": "#8c959f"},
            whiskerprops={"color": "#8c959f"},
            capprops={"color": "#8c959f"},
        )
    rng = np.random.default_rng(0)
    for i, (pos, values) in enumerate(zip(positions, data, strict=True)):
        colour = PALETTE[i % len(PALETTE)]
        if values.size:
            ax.plot(values, pos + rng.uniform(-0.13, 0.13, values.size), "o", color=colour, alpha=0.7, markersize=4)
            ax.plot([values.mean()], [pos], "D", color=colour, markeredgecolor="#1f2328", markersize=6)
        else:
            ax.text(0.5, pos, "not measured", transform=ax.get_yaxis_transform(), ha="center", va="center",
                    fontsize=8, color="#57606a")  # fmt: skip
    ax.set_yticks(positions, list(labels), fontsize=8)
    ax.set_ylim(0.4, n + 0.6)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
    direction = "" if higher_is_better is None else ("higher is better →" if higher_is_better else "← lower is better")
    ax.set_xlabel(" · ".join(p for p in (unit, direction) if p), fontsize=8)
    ax.set_title(title, fontsize=10, loc="left")
    ax.tick_params(labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    return fig


def tick_label_boxes(fig: Figure) -> list[tuple[str, Bbox]]:
    """(text, display-space bounding box) of every visible, non-empty tick label of every axes in ``fig``."""
    canvas = FigureCanvasAgg(fig)
    fig.draw_without_rendering()
    renderer = canvas.get_renderer()
    boxes = []
    for ax in fig.axes:
        for label in [*ax.get_xticklabels(), *ax.get_yticklabels()]:
            if label.get_visible() and label.get_text():
                boxes.append((label.get_text(), label.get_window_extent(renderer)))
    return boxes


def overlapping_tick_labels(fig: Figure) -> list[tuple[str, str]]:
    """Pairs of tick labels whose bounding boxes overlap (a figure a person could not read)."""
    boxes = tick_label_boxes(fig)
    return [(a, b) for i, (a, box_a) in enumerate(boxes) for b, box_b in boxes[i + 1 :] if box_a.overlaps(box_b)]
