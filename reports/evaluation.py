"""The executive evaluation report: one page that says which model to ship, then the evidence.

Input: the results of an evaluation (``OUT/results.parquet``: one row per (model, case), columns ``RESULT_COLUMNS``
plus ``m_<metric>`` / ``mnm_<metric>`` for every metric and ``seconds_<stage>`` per timing) and its summary
(``OUT/summary.json``: per model the release rate with a Wilson interval, per metric mean with its percentile-bootstrap
interval, FVD, throughput). ``render_evaluation`` writes ``report.html``, ``report.pdf`` and ``summary.md``.

Page one is the scorecard (``build_scorecard``): one row per model with the release rate and its 95 % interval, the
headline metrics (``metrics.specs.HEADLINE``, only those measured) as mean and interval with an arrow for the better
direction, seconds of compute per second of video, and risk flags (provenance failures, not-measured checks, consent
failures); and a verdict (``verdict``) that names a winner only when its intervals separate from every other model's on
at least one criterion and no other model's separate from it the other way. Otherwise it says the suite cannot tell
the models apart and about how many cases per model it would need: a 95 % interval's half-width shrinks as 1/√n, so
with ``n`` cases, the wider half-width ``h`` of the two intervals and the observed difference of means ``d``, the
intervals separate once ``h·√(n/n') < d/2``, i.e. at ``n' = ⌈n·(2h/d)²⌉`` cases per model — a planning figure that
assumes the spread stays as observed. For the release rate (Wilson intervals, far from 1/√n near 0 or 1) it is the
smallest ``n'`` at which the Wilson intervals of the observed rates separate. A percentile-bootstrap interval needs
``MIN_CASES`` (3) cases; below ``PROVISIONAL_BELOW`` (10) cases per model a named winner is called provisional.

Then one plot per headline per-video metric (every case as a point, box per model; no plot for a constant or
unmeasured metric, and the report says why), the per-model detail (every measured metric, what was not measured and
why, time per stage) and the worst cases of each model with keyframes from their ``record.json`` and relative links to
their run reports.

``results_from_records`` and ``summarise`` turn gate records into the same two inputs, so ``compare`` renders the
same report. Every user string is escaped (HTML by Jinja autoescape, Markdown by ``md_text``, plots by ``plot_text``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from metrics.specs import HEADLINE, SPECS, MetricSpec
from metrics.stats import bootstrap_ci
from reports.atomic import check_output_target, write_text_atomic
from reports.errors import InputError, printable
from reports.html import clean_html
from reports.json_report import read_json
from reports.markdown import md_text
from reports.plots import Plot, distribution_figure, figure_to_data_uri
from reports.schema import GateRecord, Keyframe
from reports.templating import fmt_num, render

METRIC_PREFIX = "m_"
NOT_MEASURED_PREFIX = "mnm_"
SECONDS_PREFIX = "seconds_"
RESULT_COLUMNS = (
    "suite", "model", "case", "run_id", "decision", "exit_code", "reasons", "record_path", "video_path",
    "report_path", "backend", "seconds_total", "video_seconds", "compute_per_video_second", "provenance_ok",
    "consent_ok", "not_measured",
)  # fmt: skip
LEVEL = 0.95
# a percentile bootstrap of the mean of 2 values is about their range, whatever the spread: no interval below 3 cases
MIN_CASES = 3
PROVISIONAL_BELOW = 10  # a winner over fewer cases per model is called provisional (bootstrap intervals run narrow)
WORST_PER_MODEL = 3
LABEL_LIMIT = 24  # characters of a model name drawn in a plot


# --- small statistics ---------------------------------------------------------------------------------------------


def wilson_interval(successes: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``successes / n`` (``(nan, nan)`` when ``n == 0``)."""
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"wilson_interval needs 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return math.nan, math.nan
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact at the ends (no rounding residue)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class Estimate:
    """A mean (or rate) over ``n`` cases with its interval; ``low``/``high`` are NaN when there is none."""

    mean: float
    low: float
    high: float
    n: int
    not_measured: int = 0
    min_n: int = MIN_CASES  # fewer cases: the interval is not shown nor used (1 for a Wilson interval)

    @property
    def measured(self) -> bool:
        return self.n > 0 and math.isfinite(self.mean)

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high) and self.n >= self.min_n

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2 if self.has_interval else math.nan


def _separated_better(a: Estimate, b: Estimate, higher_is_better: bool) -> bool:
    """``a`` is better than ``b`` and their intervals do not overlap."""
    if not (a.has_interval and b.has_interval):
        return False
    return a.low > b.high if higher_is_better else a.high < b.low


def cases_needed(a: Estimate, b: Estimate) -> int | None:
    """Cases per model for the two intervals to separate if the means and spreads stay as observed:
    ``⌈n·(2h/d)²⌉`` with ``h`` the wider half-width, ``d`` the difference of means, ``n`` the smaller sample.
    ``None`` when it cannot be estimated (no interval, or no difference at all)."""
    if not (a.has_interval and b.has_interval):
        return None
    d = abs(a.mean - b.mean)
    h = max(a.half_width, b.half_width)
    if d == 0 or not math.isfinite(h):
        return None
    n = min(a.n, b.n)
    return max(n + 1, math.ceil(n * (2 * h / d) ** 2 - 1e-9)) if h > 0 else n  # 1e-9: float noise in d


def rate_cases_needed(a: Estimate, b: Estimate, level: float = LEVEL, limit: int = 100_000) -> int | None:
    """Cases per model for the Wilson intervals of the two observed rates to separate: the smallest ``n`` at which
    ``wilson(round(p·n), n)`` of both no longer overlap (the 1/√n rule is far off for rates near 0 or 1). ``None``
    when the rates are equal or it would take more than ``limit`` cases."""
    if not (a.measured and b.measured) or a.mean == b.mean:
        return None
    for n in range(max(a.n, b.n, 1) + 1, limit + 1):
        (la, ha), (lb, hb) = (wilson_interval(round(p * n), n, level) for p in (a.mean, b.mean))
        if ha < lb or hb < la:
            return n
    return None


# --- the scorecard ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Criterion:
    """Something a model can win on: the release rate or a headline metric."""

    key: str
    label: str
    higher_is_better: bool
    unit: str = ""


RELEASE = Criterion("release_rate", "release rate", True, "")


@dataclass(frozen=True)
class ModelCard:
    """One scorecard row."""

    name: str
    description: str
    backend: str
    cases: int
    released: int
    release: Estimate
    metrics: dict[str, Estimate]  # headline metrics (per-video and FVD), by metric name
    seconds_per_video_second: float | None
    provenance_failures: int
    consent_failures: int
    not_measured: int
    ahead: frozenset[str] = frozenset()  # criteria on which this model separates from every other one
    notes: dict[str, str] = field(default_factory=dict)  # why a headline metric has no value, by metric name

    def flags(self) -> list[tuple[str, str]]:
        """(severity, text) of every risk: ``fail`` for provenance/consent failures, ``warn`` for unmeasured checks."""
        flags = []
        if self.provenance_failures:
            flags.append(("fail", _plural(self.provenance_failures, "provenance failure")))
        if self.consent_failures:
            flags.append(("fail", _plural(self.consent_failures, "consent failure")))
        if self.not_measured:
            flags.append(("warn", f"{self.not_measured} not measured"))
        return flags


@dataclass(frozen=True)
class Verdict:
    text: str
    winner: str | None
    cases_needed: int | None = None  # per model, when the suite cannot tell the models apart


@dataclass(frozen=True)
class Scorecard:
    suite: str
    created_at: str
    level: float
    models: list[ModelCard]
    headline: list[MetricSpec]  # the headline metrics measured for at least one model, in HEADLINE order
    verdict: Verdict
    regression: RegressionView | None = None
    unmeasured: list[MetricSpec] = field(default_factory=list)  # headline metrics no model has a value of

    def card(self, name: str) -> ModelCard:
        return next(m for m in self.models if m.name == name)

    def criteria(self) -> list[Criterion]:
        return [RELEASE, *(Criterion(s.name, s.label, bool(s.higher_is_better), s.unit) for s in self.headline)]


def _when(value: Any) -> str:
    """An ISO 8601 time as ``YYYY-MM-DD HH:MM UTC`` (other text as it is; nothing as "")."""
    from datetime import UTC, datetime

    if not value:
        return ""
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%d %H:%M UTC") if when.tzinfo else when.strftime("%Y-%m-%d %H:%M")


def _plural(n: int, noun: str) -> str:
    """``1 case``, ``2 cases``; ``1 more case``, ``2 more cases`` (the last word takes the s)."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _num(value: Any, where: str, *, optional: bool = False) -> float:
    if value is None and optional:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(float(value)):
        raise InputError("summary.json", f"{where} must be a finite number", repr(value))
    return float(value)


def _interval(value: Any, where: str) -> tuple[float, float]:
    if value is None:
        return math.nan, math.nan
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise InputError("summary.json", f"{where} must be [low, high] or null", repr(value))
    low, high = (_num(v, where, optional=True) for v in value)
    if low > high:
        raise InputError("summary.json", f"{where} must have low <= high", repr(value))
    return low, high


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InputError("summary.json", f"{where} must be an object", type(value).__name__)
    return value


def _metric_estimate(entry: Any, where: str) -> Estimate:
    entry = _mapping(entry, where)
    n = int(_num(entry.get("n", 0), f"{where}.n"))
    mean = _num(entry.get("mean"), f"{where}.mean", optional=True) if n else math.nan
    low, high = _interval(entry.get("ci"), f"{where}.ci")
    return Estimate(mean, low, high, n, int(_num(entry.get("not_measured", 0), f"{where}.not_measured")))


def _fvd_estimate(entry: Any, where: str) -> Estimate | None:
    if entry is None:
        return None
    entry = _mapping(entry, where)
    value = _num(entry.get("value"), f"{where}.value", optional=True)
    if not math.isfinite(value):
        return None
    low, high = _interval(entry.get("ci"), f"{where}.ci")
    return Estimate(value, low, high, int(_num(entry.get("n", 0), f"{where}.n")))


def _column(results: pd.DataFrame, name: str) -> pd.Series:
    if name not in results.columns:
        raise InputError("results.parquet", f"must have the column {name!r}", f"columns: {', '.join(results.columns)}")
    return results[name]


def _count_false(series: pd.Series) -> int:
    return int(sum(1 for v in series if v is not None and not pd.isna(v) and not bool(v)))


def model_names(results: pd.DataFrame, summary: Mapping[str, Any]) -> list[str]:
    """The models in summary order; results and summary must name the same models."""
    names = list(_mapping(summary.get("models"), "models"))
    in_results = sorted(set(_column(results, "model").astype(str)))
    if sorted(names) != in_results:
        raise InputError("summary.json", "must name the models of results.parquet", f"{names} vs {in_results}")
    return names


def _card(name: str, rows: pd.DataFrame, entry: Mapping[str, Any], descriptions: Mapping[str, str]) -> ModelCard:
    where = f"models.{name}"
    cases = int(_num(entry.get("cases", len(rows)), f"{where}.cases"))
    released = int(_num(entry.get("released", 0), f"{where}.released"))
    rate = _num(entry.get("release_rate"), f"{where}.release_rate", optional=True)
    low, high = _interval(entry.get("release_ci"), f"{where}.release_ci")
    metrics_entry = _mapping(entry.get("metrics", {}), f"{where}.metrics")
    metrics: dict[str, Estimate] = {}
    notes: dict[str, str] = {}
    for metric in HEADLINE:
        if SPECS[metric].scope == "set":
            estimate = _fvd_estimate(entry.get(metric), f"{where}.{metric}")
            raw = entry.get(metric)
            if estimate is None and isinstance(raw, Mapping):
                notes[metric] = str(raw.get("reason") or "not computed")
        elif metric in metrics_entry:
            estimate = _metric_estimate(metrics_entry[metric], f"{where}.metrics.{metric}")
        else:
            estimate = None
        if estimate is not None:
            metrics[metric] = estimate
    throughput = entry.get("seconds_per_video_second")
    backend = rows["backend"].dropna().astype(str).unique() if "backend" in rows else []
    return ModelCard(
        name=name,
        description=str(descriptions.get(name) or entry.get("description") or ""),
        backend=", ".join(sorted(backend)),
        cases=cases,
        released=released,
        release=Estimate(rate, low, high, cases, min_n=1),
        metrics=metrics,
        seconds_per_video_second=_num(throughput, f"{where}.seconds_per_video_second") if throughput else None,
        provenance_failures=_count_false(_column(rows, "provenance_ok")),
        consent_failures=_count_false(_column(rows, "consent_ok")),
        not_measured=int(pd.to_numeric(_column(rows, "not_measured"), errors="coerce").fillna(0).sum()),
        notes=notes,
    )


def _estimate(card: ModelCard, key: str) -> Estimate | None:
    return card.release if key == "release_rate" else card.metrics.get(key)


def _ahead(cards: list[ModelCard], criteria: list[Criterion]) -> dict[str, frozenset[str]]:
    """Per model, the criteria on which it separates from every other model (the green cells)."""
    ahead: dict[str, set[str]] = {c.name: set() for c in cards}
    for c in criteria:
        for card in cards:
            mine = _estimate(card, c.key)
            others = [_estimate(o, c.key) for o in cards if o is not card]
            if mine and others and all(o and _separated_better(mine, o, c.higher_is_better) for o in others):
                ahead[card.name].add(c.key)
    return {k: frozenset(v) for k, v in ahead.items()}


def _wins(a: ModelCard, b: ModelCard, criteria: list[Criterion]) -> list[Criterion]:
    wins = []
    for c in criteria:
        ea, eb = _estimate(a, c.key), _estimate(b, c.key)
        if ea and eb and _separated_better(ea, eb, c.higher_is_better):
            wins.append(c)
    return wins


def _and(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def verdict(cards: list[ModelCard], criteria: list[Criterion], level: float = LEVEL) -> Verdict:
    """One sentence: the winner where intervals separate, else that the suite cannot tell the models apart and about
    how many cases per model it would need (``cases_needed``)."""
    pct = f"{level:.0%}".replace("%", " %")
    if len(cards) < 2:
        only = cards[0].name if cards else "no model"
        return Verdict(f"Only {only} was evaluated: there is nothing to compare it with.", None)
    wins = {(a.name, b.name): _wins(a, b, criteria) for a in cards for b in cards if a is not b}
    for w in cards:
        others = [o for o in cards if o is not w]
        if all(wins[(w.name, o.name)] and not wins[(o.name, w.name)] for o in others):
            if len(others) == 1:
                on = _and([c.label for c in wins[(w.name, others[0].name)]])
                text = f"{w.name} is the better model: ahead of {others[0].name} on {on}"
            else:
                on = "; ".join(f"{_and([c.label for c in wins[(w.name, o.name)]])} vs {o.name}" for o in others)
                text = f"{w.name} is the better model: ahead of every other model ({on})"
            few = min(c.cases for c in cards)
            caution = "; few cases, so provisional" if few < PROVISIONAL_BELOW else ""
            return Verdict(
                f"{text}, with non-overlapping {pct} intervals, and behind on nothing"
                f" ({_plural(few, 'case')} per model{caution}).",
                w.name,
            )
    leaders = [(c, [k.name for k in cards if c.key in _ahead(cards, [c])[k.name]]) for c in criteria]
    clear = [(c, names[0]) for c, names in leaders if names]
    if clear:
        by_model: dict[str, list[str]] = {}
        for c, name in clear:
            by_model.setdefault(name, []).append(c.label)
        lead = " and ".join(f"{name} on {_and(labels)}" for name, labels in by_model.items())
        rest = [c.label for c, names in leaders if not names]
        tail = f"; on {_and(rest)} no model is clear of the others" if rest else ""
        return Verdict(
            f"No single winner: the leader is {lead}, each with its {pct} interval clear of every other model's{tail}.",
            None,
        )
    separated = [(a, b, cs) for (a, b), cs in wins.items() if cs]
    if separated:
        parts = "; ".join(f"{a} is ahead of {b} on {_and([c.label for c in cs])}" for a, b, cs in separated)
        return Verdict(
            f"No single winner, and no model is ahead of every other on any measure: {parts} ({pct} intervals "
            "separate); every other difference is within the intervals.",
            None,
        )
    # nothing separates: how many cases would the easiest separation need?
    best: tuple[int, Criterion, ModelCard, ModelCard] | None = None
    for c in criteria:
        for i, a in enumerate(cards):
            for b in cards[i + 1 :]:
                ea, eb = _estimate(a, c.key), _estimate(b, c.key)
                need = (rate_cases_needed if c.key == RELEASE.key else cases_needed)(ea, eb) if ea and eb else None
                if need is not None and (best is None or need < best[0]):
                    best = (need, c, a, b)
    names = _and([c.name for c in cards])
    if best is None:
        few = min(c.cases for c in cards)
        why = (
            f"with fewer than {MIN_CASES} cases per model there is no interval"
            if few < MIN_CASES
            else "no headline measurement differs between them"
        )
        return Verdict(f"The suite cannot tell {names} apart: {why}; run more cases per model.", None)
    need, c, a, b = best
    now = min(a.cases, b.cases)
    return Verdict(
        f"The suite cannot tell {names} apart: no two models' {pct} intervals separate; about {_plural(need - now, 'more case')} "
        f"per model ({need} each) would separate {a.name} and {b.name} on {c.label}, the closest call, if the "
        "results stay as observed.",
        None,
        need,
    )


@dataclass(frozen=True)
class RegressionRow:
    model: str
    baseline_model: str
    metric: str
    label: str
    candidate: Estimate | None
    baseline: Estimate | None
    allowed: float
    outcome: str  # passed | regressed | not_compared
    message: str


@dataclass(frozen=True)
class RegressionView:
    """The baseline comparison ``evaluate --baseline`` put into ``summary.json`` (``regression``)."""

    baseline: str
    regressed: bool
    rows: list[RegressionRow]


def _side(mean: Any, ci: Any, where: str) -> Estimate | None:
    if mean is None:
        return None
    low, high = _interval(ci, f"{where}_ci")
    # a baseline/candidate interval is a mean's over its cases (n unknown here): shown, never re-tested
    return Estimate(_num(mean, where), low, high, 1, min_n=1)


def regression_view(summary: Mapping[str, Any]) -> RegressionView | None:
    """The ``regression`` part of a summary, or ``None`` when the evaluation had no baseline."""
    reg = summary.get("regression")
    if reg is None:
        return None
    reg = _mapping(reg, "regression")
    rows = []
    for model, entry in _mapping(reg.get("models", {}), "regression.models").items():
        entry = _mapping(entry, f"regression.models.{model}")
        for metric, e in _mapping(entry.get("metrics", {}), f"regression.models.{model}.metrics").items():
            where = f"regression.models.{model}.metrics.{metric}"
            e = _mapping(e, where)
            rows.append(
                RegressionRow(
                    model=str(model),
                    baseline_model=str(entry.get("baseline_model", "")),
                    metric=str(metric),
                    label=SPECS[metric].label if metric in SPECS else str(metric),
                    candidate=_side(e.get("candidate"), e.get("candidate_ci"), f"{where}.candidate"),
                    baseline=_side(e.get("baseline"), e.get("baseline_ci"), f"{where}.baseline"),
                    allowed=_num(e.get("allowed"), f"{where}.allowed"),
                    outcome=str(e.get("outcome", "")),
                    message=str(e.get("message", "")),
                )
            )
    regressed = reg.get("regressed")
    if not isinstance(regressed, bool):
        raise InputError("summary.json", "regression.regressed must be true or false", repr(regressed))
    return RegressionView(str(reg.get("baseline", "")), regressed, rows)


def build_scorecard(
    results: pd.DataFrame,
    summary: Mapping[str, Any],
    *,
    descriptions: Mapping[str, str] | None = None,
    level: float = LEVEL,
) -> Scorecard:
    """The scorecard of an evaluation: one ``ModelCard`` per model (numbers from ``summary``, risk flags counted in
    ``results``), the headline metrics that were measured, and the verdict."""
    names = model_names(results, summary)
    models_entry = _mapping(summary["models"], "models")
    model_col = results["model"].astype(str)
    cards = [
        _card(n, results[model_col == n], _mapping(models_entry[n], f"models.{n}"), descriptions or {}) for n in names
    ]
    headline = [SPECS[m] for m in HEADLINE if any(m in c.metrics and c.metrics[m].measured for c in cards)]
    criteria = [RELEASE, *(Criterion(s.name, s.label, bool(s.higher_is_better), s.unit) for s in headline)]
    ahead = _ahead(cards, criteria)
    cards = [ModelCard(**{**c.__dict__, "ahead": ahead[c.name]}) for c in cards]
    return Scorecard(
        suite=str(summary.get("suite") or ""),
        created_at=_when(summary.get("created_at")),
        level=level,
        models=cards,
        headline=headline,
        verdict=verdict(cards, criteria, level),
        regression=regression_view(summary),
        unmeasured=[SPECS[m] for m in HEADLINE if SPECS[m] not in headline],
    )


# --- the evidence: distributions, per-model detail, worst cases ---------------------------------------------------


def plot_text(value: object, limit: int = LABEL_LIMIT) -> str:
    """A name drawn in a plot: control characters as escapes, cut to ``limit`` characters, ``$`` kept literal."""
    text = printable(value, newlines=False)
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def metric_values(results: pd.DataFrame, metric: str, model: str) -> np.ndarray:
    """The measured per-case values of ``metric`` for ``model`` (not-measured cases left out)."""
    column = METRIC_PREFIX + metric
    if column not in results.columns:
        return np.empty(0)
    values = pd.to_numeric(results.loc[results["model"].astype(str) == model, column], errors="coerce")
    return values.dropna().to_numpy(dtype=np.float64)


@dataclass(frozen=True)
class Skipped:
    metric: str
    label: str
    reason: str


def distribution_plots(results: pd.DataFrame, scorecard: Scorecard) -> tuple[list[Plot], list[Skipped]]:
    """One plot per headline per-video metric; the skipped ones (set-level, unmeasured, constant) with the reason."""
    plots, skipped = [], []
    names = [c.name for c in scorecard.models]
    for metric in HEADLINE:
        s = SPECS[metric]
        if s.scope == "set":
            reason = (
                "one value per model (a distance between sets): see the scorecard"
                if any(h.name == metric for h in scorecard.headline)
                else "not measured for any model"
            )
            skipped.append(Skipped(metric, s.label, reason))
            continue
        samples = [metric_values(results, metric, n) for n in names]
        every = np.concatenate(samples) if samples else np.empty(0)
        if every.size == 0:
            skipped.append(Skipped(metric, s.label, "not measured for any case"))
            continue
        if np.ptp(every) == 0:
            skipped.append(Skipped(metric, s.label, f"the same value ({fmt_num(float(every[0]))}) in every case"))
            continue
        fig = distribution_figure(
            f"{plot_text(s.label, 40)} per case",
            [plot_text(n) for n in names],
            samples,
            higher_is_better=s.higher_is_better,
            unit=plot_text(s.unit, 40),
        )
        counts = ", ".join(f"{n}: {len(v)}" for n, v in zip(names, samples, strict=True))
        plots.append(Plot(metric, f"{s.label} {s.arrow}", figure_to_data_uri(fig), f"cases measured — {counts}"))
    return plots, skipped


@dataclass(frozen=True)
class MetricRow:
    metric: str
    label: str
    arrow: str
    unit: str
    mean: float
    low: float
    high: float
    n: int
    not_measured: int
    reasons: list[str]


@dataclass(frozen=True)
class ModelDetail:
    name: str
    decisions: dict[str, int]
    metrics: list[MetricRow]
    stages: list[tuple[str, float]]  # mean seconds per stage
    fvd: Estimate | None


def _reasons(rows: pd.DataFrame, metric: str) -> list[str]:
    column = NOT_MEASURED_PREFIX + metric
    if column not in rows.columns:
        return []
    counts = rows[column].dropna().astype(str).value_counts()
    return [f"{reason} ({count}×)" for reason, count in counts.items()]


def video_metrics_of(results: pd.DataFrame, name: str) -> Iterator[tuple[str, np.ndarray, int]]:
    """Every video-scope metric of ``SPECS`` that model ``name`` measured or tried to: (metric, its measured values,
    how many cases could not measure it)."""
    rows = results[results["model"].astype(str) == name]
    for metric, s in SPECS.items():
        if s.scope == "set":
            continue
        values = metric_values(results, metric, name)
        column = NOT_MEASURED_PREFIX + metric
        missing = int(rows[column].notna().sum()) if column in rows.columns else 0
        if values.size or missing:
            yield metric, values, missing


def model_detail(results: pd.DataFrame, name: str, *, n_boot: int = 2000, seed: int = 0) -> ModelDetail:
    """Every metric measured or attempted for ``name`` (mean with the bootstrap interval of its cases), the decisions
    and the mean time per stage."""
    rows = results[results["model"].astype(str) == name]
    metrics = []
    for metric, values, missing in video_metrics_of(results, name):
        s = SPECS[metric]
        mean = low = high = math.nan
        if values.size:
            ci = bootstrap_ci(values, n_boot=n_boot, seed=seed) if values.size >= MIN_CASES else None
            mean = float(values.mean())
            low, high = (ci.low, ci.high) if ci else (math.nan, math.nan)
        metrics.append(MetricRow(metric, s.label, s.arrow, s.unit, mean, low, high, values.size, missing,
                                 _reasons(rows, metric)))  # fmt: skip
    stages = [
        (c[len(SECONDS_PREFIX) :], float(pd.to_numeric(rows[c], errors="coerce").mean()))
        for c in results.columns
        if c.startswith(SECONDS_PREFIX)
        and c != "seconds_total"
        and pd.to_numeric(rows[c], errors="coerce").notna().any()
    ]
    decisions = {str(k): int(v) for k, v in rows["decision"].astype(str).value_counts().items()}
    return ModelDetail(name, decisions, metrics, stages, None)


@dataclass(frozen=True)
class WorstCase:
    model: str
    case: str
    run_id: str
    decision: str
    reasons: list[str]
    values: list[tuple[str, str]]  # (label, formatted value) of the headline per-video metrics
    keyframes: list[Keyframe]
    report_href: str | None
    note: str | None  # why there are no keyframes, when there are none


def _reason_list(value: Any) -> list[str]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    try:
        parsed = json.loads(str(value))
    except json.JSONDecodeError:
        return [str(value)]
    return [str(v) for v in parsed] if isinstance(parsed, list) else [str(parsed)]


def _path(value: Any, out_dir: Path) -> Path | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value) == "":
        return None
    path = Path(str(value))
    return path if path.is_absolute() else out_dir / path


def _badness(results: pd.DataFrame) -> pd.Series:
    """Per row: not released first (1 else 0), then the mean rank of the headline per-video metrics, worst = high."""
    ranks = []
    for metric in HEADLINE:
        column = METRIC_PREFIX + metric
        hib = SPECS[metric].higher_is_better
        if SPECS[metric].scope == "set" or column not in results.columns:
            continue
        values = pd.to_numeric(results[column], errors="coerce")
        if values.notna().any():
            ranks.append(values.rank(pct=True, ascending=bool(hib)))  # the worst value gets the highest rank
    rank = pd.concat(ranks, axis=1).mean(axis=1).fillna(0.0) if ranks else pd.Series(0.0, index=results.index)
    return (results["decision"].astype(str) != "released").astype(float) + rank


def worst_cases(results: pd.DataFrame, name: str, out_dir: Path, *, limit: int = WORST_PER_MODEL) -> list[WorstCase]:
    """The ``limit`` worst cases of model ``name``: not released first, then by the mean rank (across all models'
    cases) of the headline per-video metrics, worst first; with keyframes from their record."""
    badness = _badness(results)
    rows = results[results["model"].astype(str) == name].assign(_bad=badness).sort_values("_bad", ascending=False)
    worst = []
    for _, row in rows.head(limit).iterrows():
        values = []
        for metric in HEADLINE:
            column = METRIC_PREFIX + metric
            if SPECS[metric].scope == "video" and column in row.index:
                value = row[column]
                values.append((SPECS[metric].label, "—" if pd.isna(value) else fmt_num(float(value), 3)))
        keyframes: list[Keyframe] = []
        note = None
        record_path = _path(row.get("record_path"), out_dir)
        if record_path is None:
            note = "no record path in the results"
        elif not record_path.is_file():
            note = f"record not found: {record_path}"
        else:
            try:
                keyframes = read_json(record_path).keyframes[:6]
            except InputError as exc:
                note = printable(exc, newlines=False)[:300]
            if not keyframes and note is None:
                note = "the record holds no keyframes"
        report = _path(row.get("report_path"), out_dir)
        worst.append(
            WorstCase(
                model=name,
                case=str(row.get("case", "")),
                run_id=str(row.get("run_id", "")),
                decision=str(row["decision"]),
                reasons=_reason_list(row.get("reasons")),
                values=values,
                keyframes=keyframes,
                report_href=Path(os.path.relpath(report, out_dir)).as_posix() if report else None,
                note=note,
            )
        )
    return worst


# --- rendering ----------------------------------------------------------------------------------------------------


def fmt_estimate(e: Estimate | None, digits: int = 3) -> str:
    if e is None or not e.measured:
        return "—"
    return fmt_num(e.mean, digits)


def fmt_interval(e: Estimate | None, digits: int = 3, *, percent: bool = False) -> str:
    if e is None or not e.has_interval:
        return ""
    if percent:
        return f"[{e.low * 100:.0f}–{e.high * 100:.0f}\u00a0%]"
    return f"[{fmt_num(e.low, digits)}, {fmt_num(e.high, digits)}]"


def fmt_rate(card: ModelCard) -> str:
    """``83 %`` (no break before the sign), or a dash without cases."""
    return f"{card.release.mean * 100:.0f}\u00a0%" if card.cases else "—"


@dataclass
class EvaluationReport:
    scorecard: Scorecard
    plots: list[Plot]
    skipped: list[Skipped]
    details: list[ModelDetail]
    worst: dict[str, list[WorstCase]]
    links: dict[str, str] = field(default_factory=dict)


def build_report(
    results: pd.DataFrame,
    summary: Mapping[str, Any],
    out_dir: Path,
    *,
    descriptions: Mapping[str, str] | None = None,
) -> EvaluationReport:
    scorecard = build_scorecard(results, summary, descriptions=descriptions)
    plots, skipped = distribution_plots(results, scorecard)
    names = [c.name for c in scorecard.models]
    details = [model_detail(results, n) for n in names]
    for i, d in enumerate(details):
        details[i] = ModelDetail(d.name, d.decisions, d.metrics, d.stages, scorecard.models[i].metrics.get("fvd"))
    worst = {n: worst_cases(results, n, out_dir) for n in names}
    return EvaluationReport(scorecard, plots, skipped, details, worst)


def render_evaluation_html(report: EvaluationReport) -> str:
    return clean_html(
        render(
            "evaluation.html.j2",
            r=report,
            s=report.scorecard,
            estimate=fmt_estimate,
            interval=fmt_interval,
            rate=fmt_rate,
        )
    )


def render_evaluation_markdown(report: EvaluationReport, html_name: str = "report.html") -> str:
    """The Markdown step summary: the verdict and the scorecard as a table (every user string escaped)."""
    s = report.scorecard
    head = ["model", "released", *(f"{h.label} {h.arrow}" for h in s.headline), "s compute / s video", "risks"]
    lines = [
        f"## hallo3-gate evaluation: {md_text(s.suite) or 'suite'}",
        "",
        f"**{md_text(s.verdict.text)}**",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 2) + ["---"]) + "|",
    ]
    for c in s.models:
        cells = [md_text(c.name), f"{c.released}/{c.cases} · {fmt_rate(c)} {fmt_interval(c.release, percent=True)}"]
        for h in s.headline:
            e = c.metrics.get(h.name)
            cell = f"{fmt_estimate(e)} {fmt_interval(e)}".strip()
            cells.append(f"**{cell}**" if h.name in c.ahead else cell)
        cells.append(fmt_num(c.seconds_per_video_second, 3))
        cells.append(md_text("; ".join(t for _, t in c.flags()) or "none"))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Mean over cases with its {s.level:.0%} interval (percentile bootstrap; release rate: Wilson). "
        "Bold: ahead of every other model with separated intervals. "
        f"Full report: {md_text(html_name)}.",
    ]
    legend = [f"- {md_text(c.name)}: {md_text(c.description)}" for c in s.models if c.description]
    if legend:
        lines += ["", *legend]
    return "\n".join(lines) + "\n"


def render_evaluation(
    results: pd.DataFrame,
    summary: Mapping[str, Any],
    *,
    out_dir: str | Path,
    descriptions: Mapping[str, str] | None = None,
    pdf: bool = True,
) -> dict[str, Path]:
    """Write ``report.html``, ``report.pdf`` (unless ``pdf=False``) and ``summary.md`` into ``out_dir``; return their
    paths by kind (``html``, ``pdf``, ``markdown``). Every target is checked (a regular file or nothing: see
    ``reports.atomic``) and everything computed before the first file is written; each file is written atomically."""
    from reports.pdf import html_to_pdf

    out = Path(out_dir)
    targets = {"html": out / "report.html", "markdown": out / "summary.md"} | (
        {"pdf": out / "report.pdf"} if pdf else {}
    )
    for target in targets.values():
        check_output_target(target)  # a directory, link or FIFO at any of them: refused before anything is written
    report = build_report(results, summary, out, descriptions=descriptions)
    html = render_evaluation_html(report)
    markdown = render_evaluation_markdown(report)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    if pdf:  # first: the step most likely to fail (WeasyPrint missing) leaves no half of the report behind
        paths["pdf"] = html_to_pdf(html, targets["pdf"])
    paths["html"] = write_text_atomic(targets["html"], html)
    paths["markdown"] = write_text_atomic(targets["markdown"], markdown)
    return paths


RESULTS_NAME = "results.parquet"
SUMMARY_NAME = "summary.json"


def read_evaluation(out_dir: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``OUT/results.parquet`` and ``OUT/summary.json`` of an evaluation; a missing or unreadable one is an
    ``InputError`` naming the file."""
    out = Path(out_dir)
    results_path, summary_path = out / RESULTS_NAME, out / SUMMARY_NAME
    try:
        results = pd.read_parquet(results_path)
    except (OSError, ValueError) as exc:
        raise InputError(
            results_path, "must be the results table of an evaluation (Parquet)", type(exc).__name__
        ) from None
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(summary_path, "must be the summary of an evaluation (JSON)", type(exc).__name__) from None
    return results, dict(_mapping(summary, "the top level"))


def render_evaluation_dir(out_dir: str | Path, *, pdf: bool = True) -> dict[str, Path]:
    """Render the report of the evaluation in ``out_dir`` (its results.parquet and summary.json) into the same
    directory: what ``evaluate`` calls once its results and summary are written."""
    results, summary = read_evaluation(out_dir)
    return render_evaluation(results, summary, out_dir=out_dir, pdf=pdf)


def append_step_summary(markdown: str | Path, environ: Mapping[str, str] | None = None) -> Path | None:
    """Append the evaluation's Markdown (text, or the ``summary.md`` written) to ``$GITHUB_STEP_SUMMARY`` when that
    variable is set; return the file appended to, else None."""
    target = (os.environ if environ is None else environ).get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    text = markdown.read_text(encoding="utf-8") if isinstance(markdown, Path) else markdown
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(text + "\n")
    return Path(target)


# --- from gate run directories (compare) --------------------------------------------------------------------------


def result_row(record: GateRecord, *, suite: str, model: str, case: str, record_path: Path) -> dict[str, Any]:
    """One results row (the columns of ``results.parquet``) from a gate record."""
    seconds_total = float(sum(record.timings.values()))
    duration = record.measurement("duration_s")
    video_seconds = record.output.duration_s or (duration.value if duration is not None else None)
    report = record_path.parent / "report.html"
    row: dict[str, Any] = {
        "suite": suite,
        "model": model,
        "case": case,
        "run_id": record.run_id,
        "decision": record.decision,
        "exit_code": record.exit_code,
        "reasons": json.dumps(record.reasons),
        "record_path": str(record_path),
        "video_path": record.output.path,
        "report_path": str(report) if report.is_file() else None,
        "backend": record.generator.backend,
        "seconds_total": seconds_total,
        "video_seconds": video_seconds,
        "compute_per_video_second": seconds_total / video_seconds if video_seconds else None,
        "provenance_ok": record.provenance.verified,
        "consent_ok": None if record.consent is None else record.consent.status == "matched",
        "not_measured": record.check_counts()["not_measured"],
    }
    for stage, seconds in record.timings.items():
        row[SECONDS_PREFIX + stage] = seconds
    for metric in SPECS:
        m = record.measurement(metric)
        row[METRIC_PREFIX + metric] = None if m is None else m.value
        row[NOT_MEASURED_PREFIX + metric] = None if m is None or m.value is not None else (m.reason or "not measured")
    return row


def results_from_records(records: Sequence[tuple[str, str | Path]], *, suite: str = "compare") -> pd.DataFrame:
    """The results table of (model, record path) pairs, one row per record, in the given order; the case is the run
    id. An unreadable or invalid record is an ``InputError`` naming it."""
    rows = []
    for model, path in records:
        record = read_json(path)
        rows.append(result_row(record, suite=suite, model=model, case=record.run_id, record_path=Path(path)))
    return pd.DataFrame(rows)


def summarise(results: pd.DataFrame, *, suite: str = "", n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """A ``summary.json``-shaped summary of a results table (models in order of first appearance)."""
    from datetime import UTC, datetime

    models: dict[str, Any] = {}
    for name in dict.fromkeys(results["model"].astype(str)):
        rows = results[results["model"].astype(str) == name]
        released = int((rows["decision"].astype(str) == "released").sum())
        cases = len(rows)
        metrics = {}
        for metric, values, missing in video_metrics_of(results, name):
            ci = bootstrap_ci(values, n_boot=n_boot, seed=seed) if values.size >= 2 else None
            metrics[metric] = {
                "mean": float(values.mean()) if values.size else None,
                "ci": [ci.low, ci.high] if ci else None,
                "n": int(values.size),
                "not_measured": missing,
            }
        fvd = metric_values(results, "fvd", name)
        total = pd.to_numeric(rows["seconds_total"], errors="coerce").sum()
        video = pd.to_numeric(rows["video_seconds"], errors="coerce").sum()
        models[name] = {
            "cases": cases,
            "released": released,
            "release_rate": released / cases if cases else None,
            "release_ci": list(wilson_interval(released, cases)) if cases else None,
            "metrics": metrics,
            # records carry the FVD of the set they were measured in: the mean of the distinct set values
            "fvd": {"value": float(np.unique(fvd).mean()), "n": int(fvd.size)} if fvd.size else None,
            "seconds_per_video_second": float(total / video) if video > 0 else None,
        }
    return {"suite": suite, "created_at": datetime.now(UTC).isoformat(), "models": models, "regression": None}
