"""Policy as code: which checks a video must pass, with thresholds, in TOML.

A policy file has a ``name``, a ``version``, a ``[checks.<check name>]`` table per check, optionally a
``[regression]`` table (limits against a baseline run), a ``[weights]`` table (``allow_unpinned``: may a run use
user-supplied weight files that have no sha256 pin in the registry; default false) and a ``[review]`` table (people
must approve a run that passed every automated check before it is released: ``required_approvals`` 1..10, default 2;
``four_eyes`` default true; ``reason_codes``, the codes a decision may give, default ``DEFAULT_REASON_CODES``), a
``[disclosure]`` table (the visible "AI-generated" label burned into the frames: ``DisclosurePolicy``; absent: no
label) and a ``[compliance]`` table (``require``: the compliance-matrix rows, ids of ``gate.compliance.ROW_IDS``, that
must be met for a release; absent: none). Each check names a ``metric`` and
at least one bound: ``min``, ``max`` or ``abs_max`` (on the absolute value); ``required`` defaults to true.
``min = "backend"`` uses the same-person threshold the identity backend states for itself.

The whole file is validated before a run writes anything: UTF-8 TOML of at most ``MAX_POLICY_BYTES``, at most
``MAX_CHECKS`` checks, at least one required check (a policy that requires nothing would prove nothing), known
metrics, finite numbers. Validation errors (``UsageError``, exit 2) name the key, the rule and the value.

Fail closed: a required check whose metric was not measured fails (outcome ``not_measured``), never passes. The
decision and the exit code come from one function, ``decide``.
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from metrics.measurement import Measurement
from metrics.specs import SPECS
from reports.errors import ExitCode, UsageError

# Every metric name a policy may reference, and whether higher is better (None: neither, e.g. an offset); derived
# from the one table of metric specs (metrics.specs.SPECS), never stated here.
KNOWN_METRICS: dict[str, bool | None] = {name: s.higher_is_better for name, s in SPECS.items()}
BOUNDS = ("min", "max", "abs_max")
BACKEND_THRESHOLD = "backend"
CHECK_KEYS = {"metric", "required", "why", "reference_set", *BOUNDS}
TOP_KEYS = {"name", "version", "description", "checks", "regression", "weights", "review", "disclosure", "compliance"}
WEIGHTS_KEYS = {"allow_unpinned"}
REVIEW_KEYS = {"required_approvals", "four_eyes", "reason_codes"}
DEFAULT_REASON_CODES = (
    "meets-policy",
    "identity-mismatch",
    "lip-sync",
    "visual-artifacts",
    "audio-problem",
    "consent-unclear",
    "label-missing",
    "harmful-content",
    "other",
)
REASON_CODE = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
DISCLOSURE_KEYS = {"visible", "text", "position", "start_seconds", "persistent", "size", "font", "provider"}
LABEL_POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right")
MIN_LABEL_SECONDS = 2.0  # GB 45438-2025: the notice is visible for at least 2 s at the start
MAX_LABEL_SECONDS = 3600.0
MIN_LABEL_SIZE = 0.05  # GB 45438-2025: text height at least 5 % of the shortest side (images; video: our reading)
MAX_LABEL_SIZE = 0.25  # a label a quarter of the picture high hides the content it labels
MAX_LABEL_TEXT = 40  # one short line: it must fit in the frame at >= 5 % height
COMPLIANCE_KEYS = {"require"}
MAX_APPROVALS = 10
MAX_REASON_CODES = 50
MAX_POLICY_BYTES = 256 * 1024  # the shipped policies are ~3 KiB; a bound keeps parsing and reports small
MAX_CHECKS = 200  # every check is a row in every report: the PDF of 200 checks renders in seconds
MAX_TEXT = 200  # name, version, a check's name
MAX_LONG_TEXT = 2000  # description, a check's why


@dataclass(frozen=True)
class Check:
    name: str
    metric: str
    min: float | str | None = None
    max: float | None = None
    abs_max: float | None = None
    required: bool = True
    why: str = ""
    reference_set: str | None = None

    def describe(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f">= {self.min}" if not isinstance(self.min, str) else ">= backend threshold")
        if self.max is not None:
            parts.append(f"<= {self.max}")
        if self.abs_max is not None:
            parts.append(f"|x| <= {self.abs_max}")
        return f"{self.metric} " + " and ".join(parts)


@dataclass(frozen=True)
class Regression:
    baseline: str | None
    max_drop: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ReviewPolicy:
    """``[review]``: a run that passes every automated check waits (pending) for ``required_approvals`` people.

    ``four_eyes``: the submitter never approves their own run and one person counts once (admins included)."""

    required_approvals: int = 2
    four_eyes: bool = True
    reason_codes: tuple[str, ...] = DEFAULT_REASON_CODES


@dataclass(frozen=True)
class DisclosurePolicy:
    """``[disclosure]``: the visible label burned into the frames before watermarking and measuring (``gate.label``).

    ``visible``: burn the label at all. ``text``: the notice (e.g. "AI-generated", "AI生成"; 1..40 characters, one
    line). ``position``: the corner (``LABEL_POSITIONS``; top-right is what the EU Code of Practice suggests).
    ``start_seconds``: the label is on every frame before this time (>= 2, GB 45438). ``persistent``: a small mark
    ("AI") stays in the same corner after ``start_seconds``. ``size``: text height (capital-letter height) as a
    fraction of the frame's short side (>= 0.05, GB 45438). ``font``: a font file (a relative path is relative to the
    policy file's folder; None: the bundled choice, Noto Sans CJK from Debian fonts-noto-cjk, which covers "AI生成").
    ``provider``: the provider name for the disclosure fields when the configuration names none
    (``gate.config.provider_name``)."""

    visible: bool = True
    text: str = "AI-generated"
    position: str = "top-right"
    start_seconds: float = 3.0
    persistent: bool = True
    size: float = 0.06
    font: str | None = None
    provider: str | None = None


@dataclass(frozen=True)
class Policy:
    name: str
    version: str
    checks: tuple[Check, ...]
    regression: Regression | None
    source: str  # the TOML text, recorded verbatim
    path: str
    allow_unpinned_weights: bool = False  # [weights] allow_unpinned: user-supplied weight files without a pin
    review: ReviewPolicy | None = None  # [review]: people approve what passed the automated checks
    disclosure: DisclosurePolicy | None = None  # [disclosure]: the visible label; None: the policy burns none
    compliance_required: tuple[str, ...] = ()  # [compliance] require: matrix rows that must be met to release

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()

    def metrics_needed(self) -> set[str]:
        return {c.metric for c in self.checks}


@dataclass(frozen=True)
class CheckResult:
    """One bound of one check applied to one measurement (a check with min and max gives two results)."""

    name: str
    metric: str
    op: str  # ">=" or "<="
    threshold: float | str  # a number, or "backend" when the backend stated no threshold
    value: float | None  # the compared value (the absolute value for an abs_max bound)
    outcome: str  # "pass" | "fail" | "not_measured"
    required: bool
    message: str


@dataclass(frozen=True)
class Decision:
    released: bool
    exit_code: ExitCode
    reasons: tuple[str, ...]

    @property
    def label(self) -> str:
        return "released" if self.released else "quarantined"


def _number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(float(value)):
        raise UsageError(where, "must be a finite number", repr(value))
    return float(value)


def _parse_check(path: str, name: str, table: Any) -> Check:
    if len(name) > MAX_TEXT:
        raise UsageError(
            f"{path}: checks.{name[:40]}…", f"a check name must be at most {MAX_TEXT} characters", len(name)
        )
    where = f"{path}: checks.{name}"
    _table(where, table, CHECK_KEYS)
    metric = table.get("metric")
    if metric not in KNOWN_METRICS:
        raise UsageError(
            f"{where}.metric", f"must be a known metric ({', '.join(sorted(KNOWN_METRICS))})", repr(metric)
        )
    if not any(b in table for b in BOUNDS):
        raise UsageError(where, "needs at least one bound: min, max or abs_max")
    lo = table.get("min")
    if lo is not None and lo != BACKEND_THRESHOLD:
        lo = _number(f"{where}.min", lo)
    if lo == BACKEND_THRESHOLD and not metric.startswith("identity_"):
        raise UsageError(f"{where}.min", 'may be "backend" only for identity metrics', metric)
    hi = _number(f"{where}.max", table["max"]) if "max" in table else None
    ab = _number(f"{where}.abs_max", table["abs_max"]) if "abs_max" in table else None
    if ab is not None and ab < 0:
        raise UsageError(f"{where}.abs_max", "must be >= 0", ab)
    if isinstance(lo, float) and hi is not None and lo > hi:
        raise UsageError(where, "min must not exceed max", f"min={lo}, max={hi}")
    required = table.get("required", True)
    if not isinstance(required, bool):
        raise UsageError(f"{where}.required", "must be true or false", repr(required))
    ref = table.get("reference_set")
    if ref is not None and not isinstance(ref, str):
        raise UsageError(f"{where}.reference_set", "must be a path string", repr(ref))
    if metric == "fvd" and not ref:
        raise UsageError(f"{where}.reference_set", "an fvd check needs a reference set (FVD statistics .npz)")
    why = _text(f"{where}.why", table.get("why"), MAX_LONG_TEXT, required=False)
    return Check(name, metric, lo, hi, ab, required, why, ref)


def _parse_regression(path: str, reg: Any) -> Regression:
    where = f"{path}: regression"
    if not isinstance(reg, dict) or set(reg) - {"baseline", "max_drop"}:
        shown = sorted(reg) if isinstance(reg, dict) else type(reg).__name__
        raise UsageError(where, "must be a table holding only baseline and max_drop", shown)
    baseline = reg.get("baseline")
    if baseline is not None and not isinstance(baseline, str):
        raise UsageError(f"{where}.baseline", "must be a path string", repr(baseline))
    drops = reg.get("max_drop", {})
    if not isinstance(drops, dict):
        raise UsageError(f"{where}.max_drop", "must be a table of metric = allowed drop", type(drops).__name__)
    for metric, v in drops.items():
        if metric not in KNOWN_METRICS or KNOWN_METRICS[metric] is None:
            raise UsageError(f"{where}.max_drop.{metric}", "must name a metric with a direction", metric)
        _number(f"{where}.max_drop.{metric}", v)
    return Regression(baseline or None, {k: float(v) for k, v in drops.items()})


def _parse_weights(path: str, table: Any) -> bool:
    where = f"{path}: weights"
    _table(where, table, WEIGHTS_KEYS)
    allow = table.get("allow_unpinned", False)
    if not isinstance(allow, bool):
        raise UsageError(f"{where}.allow_unpinned", "must be true or false", repr(allow))
    return allow


def _parse_review(path: str, table: Any) -> ReviewPolicy:
    where = f"{path}: review"
    _table(where, table, REVIEW_KEYS)
    n = table.get("required_approvals", ReviewPolicy.required_approvals)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_APPROVALS:
        raise UsageError(f"{where}.required_approvals", f"must be a whole number from 1 to {MAX_APPROVALS}", repr(n))
    four_eyes = table.get("four_eyes", True)
    if not isinstance(four_eyes, bool):
        raise UsageError(f"{where}.four_eyes", "must be true or false", repr(four_eyes))
    codes = table.get("reason_codes", list(DEFAULT_REASON_CODES))
    rule = f"must be a list of 1 to {MAX_REASON_CODES} unique codes of [a-z0-9-] (at most 40, first a letter or digit)"
    if not isinstance(codes, list) or not 1 <= len(codes) <= MAX_REASON_CODES:
        shown = len(codes) if isinstance(codes, list) else type(codes).__name__
        raise UsageError(f"{where}.reason_codes", rule, shown)
    for code in codes:
        if not isinstance(code, str) or REASON_CODE.fullmatch(code) is None:
            raise UsageError(f"{where}.reason_codes", rule, repr(code)[:60])
    dupes = sorted({c for c in codes if codes.count(c) > 1})
    if dupes:
        raise UsageError(f"{where}.reason_codes", rule, f"duplicate {dupes[0]!r}")
    return ReviewPolicy(n, four_eyes, tuple(codes))


def _table(where: str, table: Any, keys: set[str]) -> None:
    """A policy table holding only ``keys``, else ``UsageError`` naming the table or its first unknown key."""
    if not isinstance(table, dict):
        raise UsageError(where, "must be a table", type(table).__name__)
    unknown = set(table) - keys
    if unknown:
        raise UsageError(f"{where}.{sorted(unknown)[0]}", f"unknown key; allowed: {', '.join(sorted(keys))}")


def _flag(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise UsageError(where, "must be true or false", repr(value))
    return value


def _parse_disclosure(path: str, table: Any) -> DisclosurePolicy:
    where = f"{path}: disclosure"
    _table(where, table, DISCLOSURE_KEYS)
    d = DisclosurePolicy()
    visible = _flag(f"{where}.visible", table.get("visible", d.visible))
    persistent = _flag(f"{where}.persistent", table.get("persistent", d.persistent))
    text = _text(f"{where}.text", table.get("text", d.text), MAX_LABEL_TEXT, required=True)
    if not text.strip() or any(not ch.isprintable() for ch in text):
        raise UsageError(f"{where}.text", "must be one line of printable characters, not only spaces", repr(text))
    position = table.get("position", d.position)
    if position not in LABEL_POSITIONS:
        raise UsageError(f"{where}.position", f"must be one of {', '.join(LABEL_POSITIONS)}", repr(position))
    start = _number(f"{where}.start_seconds", table.get("start_seconds", d.start_seconds))
    if not MIN_LABEL_SECONDS <= start <= MAX_LABEL_SECONDS:
        rule = f"must be from {MIN_LABEL_SECONDS:g} (GB 45438: at least 2 s at the start) to {MAX_LABEL_SECONDS:g}"
        raise UsageError(f"{where}.start_seconds", rule, start)
    size = _number(f"{where}.size", table.get("size", d.size))
    if not MIN_LABEL_SIZE <= size <= MAX_LABEL_SIZE:
        rule = f"must be from {MIN_LABEL_SIZE:g} (GB 45438: text at least 5 % of the short side) to {MAX_LABEL_SIZE:g}"
        raise UsageError(f"{where}.size", rule, size)
    font = table.get("font")
    if font is not None:
        font = _text(f"{where}.font", font, MAX_LONG_TEXT, required=True)
        if not Path(font).is_absolute():
            font = str(Path(path).parent / font)
    provider = table.get("provider")
    if provider is not None:
        provider = _text(f"{where}.provider", provider, MAX_TEXT, required=True).strip()
        if not provider:
            raise UsageError(f"{where}.provider", "must be a non-empty string", repr(table.get("provider")))
    return DisclosurePolicy(visible, text, position, start, persistent, size, font, provider)


def _parse_compliance(path: str, table: Any) -> tuple[str, ...]:
    from gate.compliance import ROW_IDS  # imported here: gate.compliance may grow imports of its own

    where = f"{path}: compliance"
    _table(where, table, COMPLIANCE_KEYS)
    ids = table.get("require", [])
    rule = "must be a list of unique compliance row ids (gate.compliance.ROW_IDS)"
    if not isinstance(ids, list):
        raise UsageError(f"{where}.require", rule, type(ids).__name__)
    for row in ids:
        if not isinstance(row, str) or row not in ROW_IDS:
            raise UsageError(f"{where}.require", f"{rule}: {', '.join(ROW_IDS)}", repr(row)[:60])
    dupes = sorted({r for r in ids if ids.count(r) > 1})
    if dupes:
        raise UsageError(f"{where}.require", rule, f"duplicate {dupes[0]!r}")
    return tuple(ids)


def _text(where: str, value: Any, limit: int, *, required: bool) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise UsageError(where, "must be a non-empty string" if required else "must be a string", repr(value))
    if len(value) > limit:
        raise UsageError(where, f"must be at most {limit} characters", len(value))
    return value


def parse(text: str, path: str = "<policy>") -> Policy:
    size = len(text.encode("utf-8", "replace"))
    if size > MAX_POLICY_BYTES:
        raise UsageError(path, f"policy must be at most {MAX_POLICY_BYTES} bytes", size)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(path, "must be valid TOML", exc) from None
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise UsageError(f"{path}: {sorted(unknown)[0]}", f"unknown key; allowed: {', '.join(sorted(TOP_KEYS))}")
    name = _text(f"{path}: name", data.get("name"), MAX_TEXT, required=True)
    version = _text(f"{path}: version", data.get("version"), MAX_TEXT, required=True)
    _text(f"{path}: description", data.get("description"), MAX_LONG_TEXT, required=False)
    checks_t = data.get("checks", {})
    if not isinstance(checks_t, dict) or not checks_t:
        raise UsageError(f"{path}: checks", "must hold at least one [checks.<name>] table")
    if len(checks_t) > MAX_CHECKS:
        raise UsageError(f"{path}: checks", f"must hold at most {MAX_CHECKS} checks", len(checks_t))
    checks = tuple(_parse_check(path, n, t) for n, t in checks_t.items())
    if not any(c.required for c in checks):
        raise UsageError(
            f"{path}: checks", "must hold at least one required check (a policy that requires nothing proves nothing)"
        )
    regression = _parse_regression(path, data["regression"]) if "regression" in data else None
    allow_unpinned = _parse_weights(path, data["weights"]) if "weights" in data else False
    review = _parse_review(path, data["review"]) if "review" in data else None
    disclosure = _parse_disclosure(path, data["disclosure"]) if "disclosure" in data else None
    required_rows = _parse_compliance(path, data["compliance"]) if "compliance" in data else ()
    return Policy(name, version, checks, regression, text, path, allow_unpinned, review, disclosure, required_rows)


def load(path: str | Path | None = None) -> Policy:
    """The policy at ``path``, or the shipped default policy. Reads at most ``MAX_POLICY_BYTES`` (+1 to tell)."""
    if path is None:
        text = resources.files("gate").joinpath("default_policy.toml").read_text(encoding="utf-8")
        return parse(text, "default_policy.toml")
    p = Path(path)
    try:
        with p.open("rb") as fh:
            raw = fh.read(MAX_POLICY_BYTES + 1)
    except OSError as exc:
        raise UsageError(str(p), "policy file must be readable", exc.strerror or type(exc).__name__) from None
    if len(raw) > MAX_POLICY_BYTES:
        raise UsageError(str(p), f"policy file must be at most {MAX_POLICY_BYTES} bytes", "more")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            str(p), "policy file must be UTF-8 text", f"byte 0x{raw[exc.start]:02x} at offset {exc.start}"
        ) from None
    return parse(text, str(p))


def backend_threshold(m: Measurement) -> float | None:
    """The same-person threshold a backend states for the value's own scale (``details["threshold"]``: a number, or
    ``{"metric": "cosine", "value": ...}``). A rule on another scale (e.g. dlib's Euclidean 0.6) does not apply to a
    cosine value: None, and the check is not measured rather than compared on the wrong scale."""
    t = m.details.get("threshold")
    if isinstance(t, dict) and t.get("metric") == (m.unit or "cosine"):
        t = t.get("value")
    if isinstance(t, int | float) and not isinstance(t, bool) and math.isfinite(t):
        return float(t)
    return None


def _bounds(c: Check) -> list[tuple[str, str, float | str, bool]]:
    """(name, op, threshold, on absolute value) for every bound of a check."""
    out: list[tuple[str, str, float | str, bool]] = []
    if c.min is not None:
        out.append(("min", ">=", c.min, False))
    if c.max is not None:
        out.append(("max", "<=", c.max, False))
    if c.abs_max is not None:
        out.append(("abs_max", "<=", c.abs_max, True))
    return [(c.name if len(out) == 1 else f"{c.name}.{k}", op, t, a) for k, op, t, a in out]


def evaluate(policy: Policy, measurements: dict[str, Measurement]) -> list[CheckResult]:
    results = []
    for c in policy.checks:
        m = measurements.get(c.metric)
        for name, op, spec, absolute in _bounds(c):
            shown = f"|{c.metric}|" if absolute else c.metric
            threshold: float | str = spec
            if spec == BACKEND_THRESHOLD and m is not None:
                threshold = backend_threshold(m) or spec
            if m is None or m.value is None:
                reason = m.reason if m is not None else f"metric {c.metric} was not computed"
                results.append(
                    CheckResult(name, c.metric, op, threshold, None, "not_measured", c.required, str(reason))
                )
                continue
            if isinstance(threshold, str):
                why = f"{c.metric}: the backend states no same-person threshold on this value's scale"
                results.append(CheckResult(name, c.metric, op, threshold, None, "not_measured", c.required, why))
                continue
            v = abs(float(m.value)) if absolute else float(m.value)
            ok = v >= threshold if op == ">=" else v <= threshold
            msg = f"{shown} = {v:.4g} {'satisfies' if ok else 'violates'} {op} {threshold:.4g}"
            results.append(CheckResult(name, c.metric, op, threshold, v, "pass" if ok else "fail", c.required, msg))
    return results


def regression_checks(
    policy: Policy, measurements: dict[str, Measurement], baseline: dict[str, float]
) -> list[CheckResult]:
    """Checks that this output's metrics have not dropped more than allowed against the baseline run's means."""
    if policy.regression is None:
        return []
    out = []
    for metric, drop in policy.regression.max_drop.items():
        name = f"regression.{metric}"
        m = measurements.get(metric)
        base = baseline.get(metric)
        if m is None or m.value is None or base is None:
            why = "baseline has no value" if base is None else (m.reason if m else f"metric {metric} was not computed")
            out.append(CheckResult(name, metric, "<=", drop, None, "not_measured", True, str(why)))
            continue
        higher = KNOWN_METRICS[metric]
        change = (base - m.value) if higher else (m.value - base)
        ok = change <= drop
        msg = f"{metric} = {m.value:.4g} vs baseline {base:.4g}: worse by {change:.4g} (allowed {drop:.4g})"
        out.append(CheckResult(name, metric, "<=", drop, float(change), "pass" if ok else "fail", True, msg))
    return out


def decide(results: list[CheckResult], refused_weights: Sequence[str] = ()) -> Decision:
    """Released only when every required check passed. Exit 3 if a required check could not be measured, or if a
    weight file was refused before use (``refused_weights``: its sha256 differs from its pin, or it is unpinned where
    the policy forbids that) — the gate then ran with less than it was configured to, whatever the checks say.

    ``parse`` guarantees a policy holds a required check, so results without one are a bug (never a release)."""
    required = [r for r in results if r.required]
    if not required:
        raise ValueError("decide() needs at least one required check result; parse() guarantees a required check")
    unmeasured = [r for r in required if r.outcome == "not_measured"]
    failed = [r for r in required if r.outcome == "fail"]
    reasons = tuple(f"{r.name}: {r.message}" for r in unmeasured + failed)
    if refused_weights:
        return Decision(False, ExitCode.NOT_MEASURED, tuple(f"weights: {why}" for why in refused_weights) + reasons)
    if unmeasured:
        return Decision(False, ExitCode.NOT_MEASURED, reasons)
    if failed:
        return Decision(False, ExitCode.GATE_FAILED, reasons)
    return Decision(True, ExitCode.RELEASED, ())
