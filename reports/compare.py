"""The executive model-comparison report: several run directories (one model or backend each) side by side.

``load_runs`` reads every audit record under each directory into one long table (one row per video and metric),
``build_comparison`` computes, per metric and model, the mean with a seeded percentile-bootstrap 95 % CI
(``metrics.stats.bootstrap_ci``) and sample counts, names the better model from ``higher_is_better`` and says when the
CIs overlap (no winner is then declared); set-level metrics (FVD) are shown as they were measured, without a CI.
``write_comparison`` renders the detailed comparison (comparison.html/.pdf: every metric's table, one per-video
distribution per ranked metric that varies), writes the per-video rows as CSV and Parquet, and renders the executive
report of ``evaluate`` over the same runs (``reports.evaluation``: report.html/.pdf, summary.md, results.parquet,
summary.json), so ``compare`` is the report half of ``evaluate`` for run directories made elsewhere.

Honesty rules: a video whose metric was not measured is excluded from that metric's statistics and counted in the
"not measured" column; when models were measured under different protocols no winner is declared; a metric with
no direction (``higher_is_better`` unknown) is described but never "won".
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from metrics.specs import SPECS
from metrics.stats import bootstrap_ci
from reports.atomic import atomic_path, write_text_atomic
from reports.errors import InputError, UsageError, printable
from reports.html import clean_html
from reports.json_report import read_json
from reports.plots import Plot, distribution_figure, figure_to_data_uri
from reports.schema import GateRecord
from reports.templating import fmt_num, render

RECORD_GLOBS = ("record.json", "*.record.json")
STAGING_DIR = "staging"
LONG_COLUMNS = [
    "model", "run_dir", "record_path", "run_id", "created_at", "mode", "decision", "exit_code", "backend",
    "model_name", "metric", "value", "measured", "reason", "higher_is_better", "unit", "protocol", "scope",
]  # fmt: skip
RECORD_COLUMNS = ["model", "run_id", "record_path", "created_at", "decision", "exit_code"]


# --- loading -----------------------------------------------------------------------------------------------------


def find_records(run_dir: Path) -> list[Path]:
    """Every ``record.json`` / ``*.record.json`` below ``run_dir``, sorted.

    Records under a ``staging`` folder are skipped: they belong to runs in progress (or interrupted runs the gate
    will finish), not to outputs that left the system.
    """
    found = {
        p
        for pattern in RECORD_GLOBS
        for p in run_dir.rglob(pattern)
        if p.is_file() and STAGING_DIR not in p.relative_to(run_dir).parts[:-1]
    }
    return sorted(found)


def _model_of(run_dir: Path, records: list[GateRecord]) -> tuple[str, str]:
    makers = sorted({(r.generator.backend, r.generator.model_name) for r in records})
    if len(makers) != 1:
        found = ", ".join(f"{b}:{m}" for b, m in makers)
        raise InputError(run_dir, "must hold the records of one model/backend", found)
    return makers[0]


def _labels(run_dirs: list[Path], makers: list[tuple[str, str]], labels: Sequence[str] | None) -> list[str]:
    if labels is not None:
        check_labels(labels, len(run_dirs))
        return list(labels)
    names = [model_name for _, model_name in makers]
    if len(set(names)) == len(names):
        return names
    names = [d.name for d in run_dirs]
    return names if len(set(names)) == len(names) else [str(d) for d in run_dirs]


def check_labels(labels: Sequence[str], n_dirs: int, subject: str = "labels") -> None:
    """Labels are arguments: one distinct, non-blank label per run directory, else a ``UsageError``."""
    if len(labels) != n_dirs:
        raise UsageError(subject, f"must be given once per run directory ({n_dirs})", f"{len(labels)}: {list(labels)}")
    if len(set(labels)) != len(labels) or not all(str(label).strip() for label in labels):
        raise UsageError(subject, "must be distinct and not blank", list(labels))


def _rows(model: str, run_dir: Path, path: Path, record: GateRecord) -> list[dict]:
    base = {
        "model": model,
        "run_dir": str(run_dir),
        "record_path": str(path),
        "run_id": record.run_id,
        "created_at": record.created_at,
        "mode": record.mode,
        "decision": record.decision,
        "exit_code": record.exit_code,
        "backend": record.generator.backend,
        "model_name": record.generator.model_name,
    }
    empty = dict.fromkeys(LONG_COLUMNS[10:])
    if not record.measurements:  # keep the video: its decision still counts
        return [{**base, **empty, "measured": False}]
    return [
        {
            **base,
            "metric": m.name,
            "value": m.value,
            "measured": m.value is not None,
            "reason": m.reason,
            "higher_is_better": m.higher_is_better,
            "unit": m.unit,
            "protocol": m.protocol,
            "scope": m.scope,
        }
        for m in record.measurements
    ]


def load_runs(run_dirs: Sequence[str | Path], labels: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (video, metric) over every record in every run directory, labelled by model.

    Each directory holds the records of one model/backend (any depth). A model's label is its generator
    ``model_name``, or the directory name when two directories share one, unless ``labels`` are given. An invalid
    record, an empty directory or a run id seen twice is an ``InputError``: nothing is silently dropped.
    """
    if not run_dirs:
        raise InputError("run_dirs", "needs at least one run directory", "none")
    dirs = [Path(d) for d in run_dirs]
    loaded: list[list[tuple[Path, GateRecord]]] = []
    for d in dirs:
        if not d.is_dir():
            raise InputError(d, "must be a directory of gate runs", "not a directory")
        paths = find_records(d)
        if not paths:
            raise InputError(d, f"must contain audit records ({' or '.join(RECORD_GLOBS)})", "none found")
        loaded.append([(p, read_json(p)) for p in paths])
    makers = [_model_of(d, [r for _, r in pairs]) for d, pairs in zip(dirs, loaded, strict=True)]
    names = _labels(dirs, makers, labels)
    seen: dict[str, Path] = {}
    rows: list[dict] = []
    for d, name, pairs in zip(dirs, names, loaded, strict=True):
        for path, record in pairs:
            if record.run_id in seen:
                raise InputError(
                    path, "must hold a run not already loaded", f"run_id {record.run_id} also in {seen[record.run_id]}"
                )
            seen[record.run_id] = path
            rows.extend(_rows(name, d, path, record))
    df = pd.DataFrame(rows, columns=LONG_COLUMNS)
    df["value"] = df["value"].astype("float64")
    df["model"] = pd.Categorical(df["model"], categories=names, ordered=True)
    return df


# --- statistics --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricComparison:
    """One per-video metric across models."""

    metric: str
    higher_is_better: bool | None
    unit: str
    protocols: list[str]
    table: pd.DataFrame  # index model; columns n, not_measured, mean, ci_low, ci_high, std
    winner: str | None
    runner_up: str | None
    cis_overlap: bool | None
    note: str

    @property
    def comparable(self) -> bool:
        return len(self.protocols) <= 1


@dataclass(frozen=True)
class SetMetric:
    """A set-level metric (FVD) as measured per model: one value per evaluated set, no CI."""

    metric: str
    higher_is_better: bool | None
    unit: str
    table: pd.DataFrame  # index model; columns value, n_values, protocol
    winner: str | None
    note: str


@dataclass
class Comparison:
    models: list[str]
    rows: pd.DataFrame  # the long table from load_runs
    decisions: pd.DataFrame  # index model; videos, released, quarantined, release_rate
    metrics: list[MetricComparison]
    set_metrics: list[SetMetric]
    summary: str
    level: float
    n_boot: int
    seed: int
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def metric(self, name: str) -> MetricComparison:
        return next(m for m in self.metrics if m.metric == name)

    def per_video(self) -> pd.DataFrame:
        """One row per video: identity and decision columns, then one column per metric (NaN = not measured)."""
        records = self.rows.drop_duplicates("record_path")[RECORD_COLUMNS].set_index("record_path")
        measured = self.rows.dropna(subset=["metric"])
        wide = measured.pivot_table(
            index="record_path", columns="metric", values="value", aggfunc="first", dropna=False
        )
        wide = wide.reindex(columns=sorted(measured["metric"].unique()))
        out = records.join(wide, how="left").reset_index()
        out["model"] = out["model"].astype(str)
        out = out[[*RECORD_COLUMNS, *[c for c in out.columns if c not in RECORD_COLUMNS]]]
        return out.sort_values(["model", "created_at", "run_id"], kind="stable").reset_index(drop=True)


def _direction(values: pd.Series, metric: str) -> bool | None:
    """The better direction of ``metric``: the table's (``metrics.specs``) for a metric it names, else the records'.

    Records that disagree with each other, or with the table, are an ``InputError`` (a record written by another
    version with a different direction is not silently re-ranked)."""
    directions = {bool(v) for v in values.dropna().unique()}
    known = SPECS.get(metric)
    if known is not None:
        recorded = directions - {known.higher_is_better}
        if recorded:
            raise InputError(
                metric,
                f"must have higher_is_better {known.higher_is_better} (metrics.specs) in every record",
                sorted(recorded),
            )
        return known.higher_is_better
    if len(directions) > 1:
        raise InputError(metric, "must have the same higher_is_better in every record", sorted(directions))
    return directions.pop() if directions else None


def _unit(values: pd.Series, metric: str) -> str:
    """The unit of ``metric``: the table's (``metrics.specs``) for a metric it names, else the first recorded one."""
    known = SPECS.get(metric)
    return known.unit if known is not None else next((u for u in values.dropna() if u), "")


def _rank(table: pd.DataFrame, higher_is_better: bool) -> list[str]:
    valid = table.dropna(subset=["mean"])
    return list(valid.sort_values("mean", ascending=not higher_is_better, kind="stable").index.astype(str))


def _metric_comparison(
    metric: str, group: pd.DataFrame, models: list[str], *, n_boot: int, seed: int, level: float
) -> MetricComparison:
    hib = _direction(group["higher_is_better"], metric)
    protocols = sorted(group.loc[group["measured"], "protocol"].dropna().unique())
    rows = []
    for model in models:
        sub = group[group["model"] == model]
        values = sub.loc[sub["measured"], "value"].to_numpy(dtype=np.float64)
        row = {"model": model, "n": int(values.size), "not_measured": int((~sub["measured"]).sum())}
        if values.size >= 2:
            ci = bootstrap_ci(values, n_boot=n_boot, seed=seed, level=level)
            row |= {"mean": ci.estimate, "ci_low": ci.low, "ci_high": ci.high, "std": float(values.std(ddof=1))}
        elif values.size == 1:
            row |= {"mean": float(values[0]), "ci_low": math.nan, "ci_high": math.nan, "std": math.nan}
        else:
            row |= {"mean": math.nan, "ci_low": math.nan, "ci_high": math.nan, "std": math.nan}
        rows.append(row)
    table = pd.DataFrame(rows).set_index("model")
    winner = runner_up = None
    overlap: bool | None = None
    if hib is None:
        note = "no direction (neither higher nor lower is better): described, not ranked"
    elif len(protocols) > 1:
        note = "measured under different protocols across models: not comparable, no winner"
    else:
        ranked = _rank(table, hib)
        if len(ranked) < 2:
            note = "fewer than two models have values: no comparison"
        else:
            first, second = table.loc[ranked[0]], table.loc[ranked[1]]
            if first["n"] < 2 or second["n"] < 2:
                note = "fewer than two videos for a leading model: no CI, no winner"
            elif first["mean"] == second["mean"]:
                note = "equal means: no winner"
            else:
                winner, runner_up = ranked[0], ranked[1]
                overlap = not (first["ci_low"] > second["ci_high"] or first["ci_high"] < second["ci_low"])
                note = (
                    f"{level:.0%} CIs overlap: the difference is within the sampling uncertainty"
                    if overlap
                    else f"{level:.0%} CIs do not overlap"
                )
    unit = _unit(group["unit"], metric)
    return MetricComparison(metric, hib, unit, protocols, table, winner, runner_up, overlap, note)


def _set_metric(metric: str, group: pd.DataFrame, models: list[str]) -> SetMetric:
    hib = _direction(group["higher_is_better"], metric)
    rows = []
    for model in models:
        sub = group[(group["model"] == model) & group["measured"]]
        distinct = sub.drop_duplicates(["value", "protocol"])
        rows.append(
            {
                "model": model,
                "value": float(distinct["value"].mean()) if len(distinct) else math.nan,
                "n_values": len(distinct),
                "videos": len(group[group["model"] == model]),
                "protocol": "; ".join(sorted(distinct["protocol"].unique())),
            }
        )
    table = pd.DataFrame(rows).set_index("model")
    protocols = {p for p in group.loc[group["measured"], "protocol"].dropna()}
    winner = None
    if hib is None:
        note = "no direction: described, not ranked"
    elif len(protocols) > 1:
        note = "measured under different protocols or reference sets: not comparable, no winner"
    else:
        ranked = _rank(table.rename(columns={"value": "mean"}), hib)
        winner = ranked[0] if len(ranked) >= 2 else None
        note = "set-level value (one per evaluated set); no confidence interval"
        if (table["n_values"] > 1).any():
            note += "; models with several sets show the mean of their set values"
    unit = _unit(group["unit"], metric)
    return SetMetric(metric, hib, unit, table, winner, note)


def _decisions(df: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    videos = df.drop_duplicates("record_path")
    rows = []
    for model in models:
        sub = videos[videos["model"] == model]
        released = int((sub["decision"] == "released").sum())
        rows.append(
            {
                "model": model,
                "videos": len(sub),
                "released": released,
                "quarantined": len(sub) - released,
                "release_rate": released / len(sub) if len(sub) else math.nan,
            }
        )
    return pd.DataFrame(rows).set_index("model")


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _summary(
    metrics: list[MetricComparison], set_metrics: list[SetMetric], decisions: pd.DataFrame, level: float
) -> str:
    models = list(decisions.index.astype(str))
    parts = [
        "Compared "
        + ", ".join(
            f"{m} ({_plural(int(decisions.loc[m, 'videos']), 'video')}, {decisions.loc[m, 'released']} released)"
            for m in models
        )
        + "."
    ]
    clear = [m for m in metrics if m.winner and m.cis_overlap is False]
    close = [m for m in metrics if m.winner and m.cis_overlap]
    for winner in models:
        won = [m for m in clear if m.winner == winner]
        if won:
            items = ", ".join(
                f"{m.metric} ({fmt_num(m.table.loc[m.winner, 'mean'])} vs {fmt_num(m.table.loc[m.runner_up, 'mean'])}"
                + (f" for {m.runner_up}" if len(models) > 2 else "")
                + ", "
                f"{'higher' if m.higher_is_better else 'lower'} is better)"
                for m in won
            )
            parts.append(f"{winner} is better on {items}; the {level:.0%} confidence intervals do not overlap.")
    if close:
        items = ", ".join(f"{m.metric} ({m.winner} ahead of {m.runner_up})" for m in close)
        parts.append(
            f"On {items} the {level:.0%} confidence intervals overlap, so the difference is not established at this "
            "sample size; treat it as a tie until more videos are measured."
        )
    for s in set_metrics:
        if s.winner:
            parts.append(
                f"On the set-level {s.metric} {s.winner} scores {fmt_num(s.table.loc[s.winner, 'value'])} "
                f"({'higher' if s.higher_is_better else 'lower'} is better; one value per set, no confidence interval)."
            )
    undecided = [m.metric for m in metrics if m.winner is None and m.higher_is_better is not None]
    if undecided:
        parts.append(f"No winner on {', '.join(undecided)} (see the notes in each table).")
    missing = [
        f"{m.metric}: {int(m.table.loc[model, 'not_measured'])} of {model}"
        for m in metrics
        for model in models
        if m.table.loc[model, "not_measured"]
    ]
    if missing:
        parts.append(f"Videos excluded because a metric was not measured: {'; '.join(missing)}.")
    return " ".join(parts)


def build_comparison(df: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> Comparison:
    """Per-metric tables (mean, bootstrap CI, counts), the winner per metric, set-level metrics and a summary."""
    if df.empty:
        raise InputError("runs", "must hold at least one audit record", "empty table")
    models = [str(m) for m in (df["model"].cat.categories if hasattr(df["model"], "cat") else df["model"].unique())]
    measured_rows = df.dropna(subset=["metric"])
    video_rows = measured_rows[measured_rows["scope"] == "video"]
    directed = {n for n, g in video_rows.groupby("metric")["higher_is_better"] if _direction(g, str(n)) is not None}
    # metrics with a direction first (what can be won), then the descriptive ones, each alphabetically
    video_metrics = sorted(video_rows["metric"].unique(), key=lambda name: (name not in directed, name))
    set_names = sorted(measured_rows.loc[measured_rows["scope"] == "set", "metric"].unique())
    metrics = [
        _metric_comparison(
            name, measured_rows[measured_rows["metric"] == name], models, n_boot=n_boot, seed=seed, level=level
        )
        for name in video_metrics
    ]
    set_metrics = [_set_metric(name, measured_rows[measured_rows["metric"] == name], models) for name in set_names]
    decisions = _decisions(df, models)
    summary = _summary(metrics, set_metrics, decisions, level)
    return Comparison(models, df, decisions, metrics, set_metrics, summary, level, n_boot, seed)


# --- rendering ---------------------------------------------------------------------------------------------------


def _plot_text(value: str, limit: int = 40) -> str:
    """A name drawn in a plot: control characters shown as escapes, cut to ``limit`` characters, and ``$`` kept
    literal (matplotlib would read text between two ``$`` as math)."""
    text = printable(value, newlines=False)
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def _plots(cmp: Comparison) -> list[Plot]:
    """One per-video distribution per ranked metric that varies (no plot of a constant or unmeasured metric: an
    empty axis or a row of equal bars says nothing); the means with their CIs are in the tables."""
    plots = []
    names = [_plot_text(model) for model in cmp.models]
    for m in cmp.metrics:
        if m.higher_is_better is None:
            continue
        samples = [
            cmp.rows.loc[
                (cmp.rows["metric"] == m.metric) & (cmp.rows["model"] == model) & cmp.rows["measured"], "value"
            ].to_numpy(dtype=np.float64)
            for model in cmp.models
        ]
        values = np.concatenate(samples)
        if values.size == 0 or np.ptp(values) == 0:
            continue
        fig = distribution_figure(
            f"{_plot_text(m.metric)} per video", names, samples, higher_is_better=m.higher_is_better,
            unit=_plot_text(m.unit),
        )  # fmt: skip
        plots.append(Plot(m.metric, f"{m.metric}: per-video distribution", figure_to_data_uri(fig), m.note))
    return plots


def check_out_dir(out: Path) -> None:
    """The comparison goes into a directory: an existing non-directory there (a file, a FIFO, a dangling symlink) is
    a ``UsageError`` (a bad argument, like ``--out`` of a gate run) before anything is computed or written."""
    if (out.exists() or out.is_symlink()) and not out.is_dir():
        raise UsageError(out, "must be a directory (or not exist yet) to write the comparison into", "not a directory")


def render_comparison_html(cmp: Comparison) -> str:
    return clean_html(render("comparison.html.j2", c=cmp, plots=_plots(cmp)))


def write_comparison(cmp: Comparison, out_dir: str | Path, *, pdf: bool = True) -> dict[str, Path]:
    """comparison.html/.pdf, metrics.csv (the per-metric tables), per_video.csv/.parquet and measurements.csv/.parquet."""
    from reports.pdf import html_to_pdf

    out = Path(out_dir)
    check_out_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    per_video = cmp.per_video()
    long = cmp.rows.assign(model=cmp.rows["model"].astype(str))
    for name, frame in (("per_video", per_video), ("measurements", long)):
        with atomic_path(out / f"{name}.csv") as tmp:
            frame.to_csv(tmp, index=False)
        paths[f"{name}_csv"] = out / f"{name}.csv"
        with atomic_path(out / f"{name}.parquet") as tmp:
            frame.to_parquet(tmp, index=False, engine="pyarrow")
        paths[f"{name}_parquet"] = out / f"{name}.parquet"
    tables = []
    for m in cmp.metrics:
        t = m.table.reset_index()
        t.insert(1, "metric", m.metric)
        t["higher_is_better"] = m.higher_is_better
        t["winner"] = t["model"] == m.winner
        t["note"] = m.note
        tables.append(t)
    with atomic_path(out / "metrics.csv") as tmp:
        (pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()).to_csv(tmp, index=False)
    paths["metrics_csv"] = out / "metrics.csv"
    html = render_comparison_html(cmp)
    paths["html"] = write_text_atomic(out / "comparison.html", html)
    if pdf:
        paths["pdf"] = html_to_pdf(html, out / "comparison.pdf")
    paths |= write_evaluation_report(cmp, out, pdf=pdf)
    return paths


def write_evaluation_report(cmp: Comparison, out: Path, *, pdf: bool = True) -> dict[str, Path]:
    """The executive report of ``evaluate`` (report.html/.pdf, summary.md) over the compared runs, with their
    results table (results.parquet: one row per video, the case being the run id) and summary.json."""
    from reports.evaluation import render_evaluation, results_from_records, summarise

    videos = cmp.rows.drop_duplicates("record_path")
    results = results_from_records(list(zip(videos["model"].astype(str), videos["record_path"], strict=True)))
    summary = summarise(results, suite="comparison", n_boot=cmp.n_boot, seed=cmp.seed)
    sources = {str(m): g["run_dir"].unique() for m, g in videos.groupby("model", observed=True)}
    descriptions = {m: "runs from " + ", ".join(dirs) for m, dirs in sources.items()}
    with atomic_path(out / "results.parquet") as tmp:
        results.to_parquet(tmp, index=False, engine="pyarrow")
    paths = {"results_parquet": out / "results.parquet"}
    paths["summary_json"] = write_text_atomic(
        out / "summary.json", json.dumps(summary, indent=2, sort_keys=True) + "\n"
    )
    report = render_evaluation(results, summary, out_dir=out, descriptions=descriptions, pdf=pdf)
    return paths | {f"report_{kind}": path for kind, path in report.items()}
