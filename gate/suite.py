"""An evaluation suite (``hallo3-gate evaluate SUITE.toml``): models × cases, a policy, an FVD reference and the
allowed regressions, read from one TOML file and checked completely before anything runs.

```toml
name = "demo"                      # required
policy = "offline"                 # a shipped policy (default, offline, offline-review) or a path
fvd_reference = "refs.npz"         # optional: FVD reference statistics (metrics.fvd.FVDState)
cases_csv = "cases.csv"            # optional: columns id,portrait,audio[,prompt][,seed]
[models.puppet]                    # the model's name: the short label used everywhere
backend = "puppet"                 # hallo3 | hallo3-tiny | puppet | still (gate.backends.NAMES)
description = "positive control"   # optional: goes into the legend
[models.hallo3]
backend = "hallo3"
model_dir = "/models/hallo3"; steps = 50; sampler = "official"
[models.elsewhere]
videos = "outputs/*.mp4"           # outputs made elsewhere, matched to cases by file stem == case id (review mode)
[[cases]]
id = "c1"; portrait = "faces/a.png"; audio = "speech/a.wav"; prompt = ""; seed = 0
[regression]                       # optional: metric = allowed change in the worse direction (absolute)
identity_mean = 0.02
```

Relative paths (policy, fvd_reference, cases_csv, model_dir, videos, portrait, audio) are relative to the suite
file's directory (those of a CSV's rows: to the CSV's directory). Every error is a ``UsageError`` (exit 2) naming
``<file>: <key>``, the rule and the value; a case file that does not exist is an ``InputError`` (exit 4).
"""

from __future__ import annotations

import csv
import glob
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reports.atomic import regular_file
from reports.errors import InputError, UsageError

SHIPPED_POLICIES = ("default", "offline", "offline-review")
CASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # names run ids and files: first a letter or digit
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")
MAX_SUITE_BYTES = 1024 * 1024
TOP_KEYS = frozenset({"name", "policy", "fvd_reference", "cases_csv", "models", "cases", "regression"})
MODEL_KEYS = frozenset({"backend", "description", "videos", "model_dir", "steps", "sampler"})
CASE_KEYS = frozenset({"id", "portrait", "audio", "prompt", "seed"})
CSV_REQUIRED = ("id", "portrait", "audio")


@dataclass(frozen=True)
class Case:
    id: str
    portrait: Path
    audio: Path
    prompt: str = ""
    seed: int = 0


@dataclass(frozen=True)
class ModelSpec:
    """A model of the suite: a gate backend with its arguments (``args``: model_dir, steps, sampler), or videos made
    elsewhere (``videos_glob``, reviewed; ``videos`` maps case id → file)."""

    name: str
    backend: str | None
    videos_glob: str | None
    args: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    videos: dict[str, Path] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        return "generate" if self.backend is not None else "review"


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    policy_path: Path | None  # None: the shipped default policy
    fvd_reference: Path | None
    models: dict[str, ModelSpec]
    cases: list[Case]
    regression: dict[str, float]

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Suite:
        return load(path)

    def case(self, case_id: str) -> Case:
        for c in self.cases:
            if c.id == case_id:
                return c
        raise KeyError(case_id)

    def pairs(self) -> list[tuple[ModelSpec, Case]]:
        """Every (model, case) of the suite, models in file order, cases in file order."""
        return [(m, c) for m in self.models.values() for c in self.cases]


def _err(where: str, key: str, rule: str, value: Any = None) -> UsageError:
    return UsageError(f"{where}: {key}", rule, value)


def _str(where: str, key: str, value: Any, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value.strip()):
        raise _err(where, key, "must be a non-empty string" if not empty else "must be a string", repr(value))
    if not value.isprintable():
        raise _err(where, key, "must be printable text", repr(value)[:60])
    return value


def _int(where: str, key: str, value: Any, lo: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise _err(where, key, f"must be an integer >= {lo}", repr(value))
    return value


def _resolve(base: Path, value: str) -> Path:
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else base / p


def _existing_file(where: str, key: str, path: Path) -> Path:
    return regular_file(path, f"{where}: {key}")


def load(path: str | os.PathLike[str]) -> Suite:
    """Read and check a suite file completely (see the module docstring)."""
    p = Path(path)
    where = str(p)
    try:
        with p.open("rb") as fh:
            raw = fh.read(MAX_SUITE_BYTES + 1)
    except OSError as exc:
        raise UsageError(where, "suite file must be readable", exc.strerror or type(exc).__name__) from None
    if len(raw) > MAX_SUITE_BYTES:
        raise UsageError(where, f"suite file must be at most {MAX_SUITE_BYTES} bytes", "more")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(where, "suite file must be UTF-8 text", "not UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(where, "suite file must be valid TOML", str(exc)) from None
    base = p.resolve().parent
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise _err(where, unknown[0], f"is not a suite key (known: {', '.join(sorted(TOP_KEYS))})")
    if "name" not in data:
        raise _err(where, "name", "is required")
    name = _str(where, "name", data["name"])
    policy_path = _policy(where, base, data.get("policy"))
    fvd_reference = None
    if "fvd_reference" in data:
        fvd_reference = _existing_file(
            where, "fvd_reference", _resolve(base, _str(where, "fvd_reference", data["fvd_reference"]))
        )
    cases = _cases(where, base, data)
    models = _models(where, base, data.get("models"), cases)
    regression = _regression(where, data.get("regression", {}))
    return Suite(name, p, policy_path, fvd_reference, models, cases, regression)


def _policy(where: str, base: Path, value: Any) -> Path | None:
    if value is None:
        return None
    value = _str(where, "policy", value)
    if value == "default":
        return None
    if value in SHIPPED_POLICIES:
        return Path(__file__).resolve().parent / "policies" / f"{value}.toml"
    return _existing_file(where, "policy", _resolve(base, value))


def _models(where: str, base: Path, table: Any, cases: list[Case]) -> dict[str, ModelSpec]:
    from gate import backends

    if not isinstance(table, dict) or not table:
        raise _err(where, "models", "must be a table of at least one [models.NAME]")
    out: dict[str, ModelSpec] = {}
    for name, t in table.items():
        key = f"models.{name}"
        if MODEL_NAME.fullmatch(name) is None:
            raise _err(where, key, "model name must be 1-40 letters, digits, '.', '_' or '-'", repr(name))
        if not isinstance(t, dict):
            raise _err(where, key, "must be a table")
        unknown = sorted(set(t) - MODEL_KEYS)
        if unknown:
            raise _err(where, f"{key}.{unknown[0]}", f"is not a model key (known: {', '.join(sorted(MODEL_KEYS))})")
        description = _str(where, f"{key}.description", t.get("description", ""), empty=True)
        if ("backend" in t) == ("videos" in t):
            raise _err(where, key, "must have exactly one of backend (generate) or videos (outputs made elsewhere)")
        if "videos" in t:
            extra = sorted(set(t) & {"model_dir", "steps", "sampler"})
            if extra:
                raise _err(where, f"{key}.{extra[0]}", "applies only to a model with a backend")
            pattern = _str(where, f"{key}.videos", t["videos"])
            videos = _match_videos(where, key, str(_resolve(base, pattern)), cases)
            out[name] = ModelSpec(name, None, pattern, {}, description, videos)
            continue
        backend = _str(where, f"{key}.backend", t["backend"])
        if backend not in backends.NAMES:
            raise _err(where, f"{key}.backend", f"must be one of {', '.join(backends.NAMES)}", repr(backend))
        args: dict[str, Any] = {}
        if "steps" in t and backend not in ("hallo3", "hallo3-tiny"):
            raise _err(where, f"{key}.steps", "applies only to the hallo3 and hallo3-tiny backends", backend)
        if "steps" in t:
            args["steps"] = _int(where, f"{key}.steps", t["steps"], lo=1)
        if "sampler" in t:
            args["sampler"] = _str(where, f"{key}.sampler", t["sampler"])
        try:
            backends.check_options(backend, args.get("steps"), args.get("sampler"))
        except UsageError as exc:
            raise _err(where, f"{key}.{exc.subject.lstrip('-')}", exc.rule, exc.value) from None
        if "model_dir" in t:
            if backend != "hallo3":
                raise _err(where, f"{key}.model_dir", "applies only to the hallo3 backend", backend)
            model_dir = _resolve(base, _str(where, f"{key}.model_dir", t["model_dir"]))
            if not model_dir.is_dir():
                raise _err(where, f"{key}.model_dir", "must be a directory", str(model_dir))
            args["model_dir"] = model_dir
        elif backend == "hallo3":
            raise _err(where, f"{key}.model_dir", "is required for the hallo3 backend (the weights directory)")
        out[name] = ModelSpec(name, backend, None, args, description)
    return out


def _match_videos(where: str, key: str, pattern: str, cases: list[Case]) -> dict[str, Path]:
    """Files of the glob matched to cases by stem == case id: every case needs exactly one."""
    by_stem: dict[str, list[Path]] = {}
    for f in sorted(glob.glob(pattern, recursive=True)):
        path = Path(f)
        if path.is_file():
            by_stem.setdefault(path.stem, []).append(path)
    out: dict[str, Path] = {}
    for c in cases:
        found = by_stem.get(c.id, [])
        if not found:
            raise InputError(pattern, f"{where}: {key}.videos must match a file named after case {c.id!r}", "none")
        if len(found) > 1:
            raise InputError(
                pattern, f"{where}: {key}.videos must match one file per case {c.id!r}", ", ".join(map(str, found))
            )
        out[c.id] = found[0]
    return out


def _case(where: str, key: str, base: Path, t: dict[str, Any]) -> Case:
    unknown = sorted(set(t) - CASE_KEYS)
    if unknown:
        raise _err(where, f"{key}.{unknown[0]}", f"is not a case key (known: {', '.join(sorted(CASE_KEYS))})")
    for k in CSV_REQUIRED:
        if k not in t or t[k] in ("", None):
            raise _err(where, f"{key}.{k}", "is required")
    case_id = _str(where, f"{key}.id", t["id"])
    if CASE_ID.fullmatch(case_id) is None:
        raise _err(
            where, f"{key}.id", "must be 1-64 letters, digits, '.', '_' or '-', first a letter or digit", repr(case_id)
        )
    seed = t.get("seed", 0)
    if isinstance(seed, str):  # a CSV cell
        try:
            seed = int(seed) if seed.strip() else 0
        except ValueError:
            raise _err(where, f"{key}.seed", "must be an integer >= 0", repr(seed)) from None
    return Case(
        id=case_id,
        portrait=_existing_file(
            where, f"{key}.portrait", _resolve(base, _str(where, f"{key}.portrait", t["portrait"]))
        ),
        audio=_existing_file(where, f"{key}.audio", _resolve(base, _str(where, f"{key}.audio", t["audio"]))),
        prompt=_str(where, f"{key}.prompt", t.get("prompt", "") or "", empty=True),
        seed=_int(where, f"{key}.seed", seed),
    )


def _cases(where: str, base: Path, data: dict[str, Any]) -> list[Case]:
    cases: list[Case] = []
    listed = data.get("cases", [])
    if not isinstance(listed, list) or not all(isinstance(t, dict) for t in listed):
        raise _err(where, "cases", "must be an array of tables ([[cases]])")
    for i, t in enumerate(listed):
        cases.append(_case(where, f"cases[{i}]", base, t))
    if "cases_csv" in data:
        csv_path = _existing_file(where, "cases_csv", _resolve(base, _str(where, "cases_csv", data["cases_csv"])))
        cases.extend(_csv_cases(csv_path))
    if not cases:
        raise _err(where, "cases", "must list at least one case ([[cases]] or cases_csv)")
    seen: set[str] = set()
    for c in cases:
        if c.id in seen:
            raise _err(where, "cases", "case ids must be unique", c.id)
        seen.add(c.id)
    return cases


def _csv_cases(path: Path) -> list[Case]:
    where = str(path)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in reader.fieldnames or []]
            missing = [k for k in CSV_REQUIRED if k not in header]
            if missing:
                raise _err(where, "header", f"must name the columns {', '.join(CSV_REQUIRED)}", ",".join(header))
            rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(where, "cases CSV must be readable UTF-8 CSV", type(exc).__name__) from None
    return [_case(where, f"row {i + 2}", path.resolve().parent, row) for i, row in enumerate(rows)]


def _regression(where: str, table: Any) -> dict[str, float]:
    from metrics.specs import SPECS

    if not isinstance(table, dict):
        raise _err(where, "regression", "must be a table of metric = allowed change")
    out: dict[str, float] = {}
    for metric, allowed in table.items():
        key = f"regression.{metric}"
        if metric not in SPECS:
            raise _err(where, key, "must name a known metric", metric)
        if SPECS[metric].higher_is_better is None:
            raise _err(where, key, "must name a metric with a better direction", metric)
        if isinstance(allowed, bool) or not isinstance(allowed, int | float) or not 0 <= allowed < float("inf"):
            raise _err(where, key, "must be a finite number >= 0 (the allowed change in the worse direction)", allowed)
        out[metric] = float(allowed)
    return out
