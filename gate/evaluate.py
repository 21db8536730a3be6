"""``hallo3-gate evaluate SUITE.toml --out OUT``: every (model, case) of a suite (``gate.suite``) through the full
gate, results in one table, a summary per model, and release gating against a baseline.

Output layout (everything under ``OUT`` is the evaluation's own; ``OUT`` must be new, empty, or an earlier
evaluation's, marked by ``OUT/.hallo3-gate-evaluate``):

* ``runs/<model>/`` — a gate output directory per model (``released/``, ``quarantine/``, ``pending/``, ``staging/``:
  ``gate.staging``); every case is one gate run with run id ``<case id>.<timestamp>-<hex>`` (``case_run_id``).
* ``gate.sqlite`` — the ledger (and consent registry) of every run, unless ``--db`` names another.
* ``fvd/<model>/<run id>.npy`` — I3D features of a case's video (float32 ``[clips, 400]``), when the suite names an
  FVD reference: the per-model FVD merges them (``metrics.fvd_metric.FrechetVideoDistance``).
* ``progress.jsonl`` — one line per finished (model, case) (``{"model", "case", "run_id", "row"}``), appended and
  fsynced after the case's ledger row and publication; a restart skips those cases. A case whose line was lost (a
  kill between the ledger row and the line) is recognised from its published run directory (checked against the
  ledger) and not redone; a case interrupted before its ledger row is redone (the gate's own staging recovery rolls
  the unfinished run back).
* ``results.parquet`` — one row per (model, case): ``RESULT_COLUMNS`` (plus ``m_<metric>`` and ``mnm_<metric>``
  for every metric of ``metrics.specs.SPECS``); written atomically at the end of every evaluation.
* ``summary.json`` — ``{suite, created_at, models: {name: {description, backend, cases, released, release_rate,
  release_ci, metrics, fvd, seconds_per_video_second}}, regression}``.
* With a baseline: ``regression.json``, ``regression-junit.xml``, ``regression.md`` (``gate.evaluate.regression``).

The work of one case is split so that it can run elsewhere (R1's Ray Data path, ``gate.evaluate_ray``):

* ``produce_case(suite, model, case, out_dir, **options) -> ProducedCase`` — worker side: checks the run's inputs
  (``gate.run.prepare`` without the signing key: reads the suite's files, and the ledger read-only for the consent
  registry — so on a cluster without a shared filesystem the ledger must be a PostgreSQL URL), generates (or
  takes the reviewed video), labels, watermarks, encodes and measures in a private temporary directory, extracts the
  FVD features, and returns plain picklable data with the encoded MP4's bytes inside (no shared filesystem needed
  for the result). It writes nothing under ``out_dir`` and nothing to the ledger.
* ``finish_case(suite, model, case, produced, out_dir, **options) -> CaseResult`` — driver side, one writer: the
  run's staging directory, decision, signature, record, reports, ledger row, publication (``gate.run.execute``), the
  FVD features file and the ``progress.jsonl`` line. It drops the decoded frames before returning: a ``CaseResult``
  holds one table row and the case's FVD features (``[clips, 400]`` float32, ~1.6 KB per clip), never frames.

``options`` are the same keywords for both (``db``: the ledger locator; ``fixed_payload``: test-only deterministic
watermark payload); ``evaluate`` binds them with ``functools.partial`` before handing the two functions to
``run_on_ray(suite, out_dir, settings, produce_case, finish_case, progress, pairs=[(model name, case id), ...])``.
Its contract: ``produce_case(suite, model_name, case_id, out_dir)`` runs in the actors (a ``ProducedCase``, plain
picklable data, comes back); ``finish_case(suite, model_name, case_id, produced, out_dir)`` runs on the driver for
every pair given and only those (the finished ones were filtered out already), one at a time; ``progress(result)``
is called with each ``CaseResult`` as soon as it is finished; the ``CaseResult``s are returned. An exception raised
by ``produce_case`` in a worker is a failure of the evaluation (re-raise it on the driver, as the sequential loop
does): the finished cases are kept, a rerun continues.

Memory: the sequential driver holds one case's frames at a time (``ProducedCase`` is dropped once finished).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import os
import shutil
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from gate.run import RECORD_NAME, Produced, RunRequest, execute, new_run_id, prepare, produce
from gate.staging import check_layout, existing_ledger, ledger_locator, recover
from gate.suite import Case, ModelSpec, Suite
from metrics.specs import SPECS
from reports import schema as S
from reports.atomic import fsync_directory, write_bytes_atomic, write_text_atomic
from reports.errors import InputError, OutputError, UsageError
from reports.markdown import md_text

if TYPE_CHECKING:
    from gate.evaluate_ray import RaySettings

MARKER_NAME = ".hallo3-gate-evaluate"
RESULTS_NAME = "results.parquet"
SUMMARY_NAME = "summary.json"
PROGRESS_NAME = "progress.jsonl"
DB_NAME = "gate.sqlite"
RUNS_DIR = "runs"
FVD_DIR = "fvd"
REGRESSION_JSON, REGRESSION_JUNIT, REGRESSION_MD = "regression.json", "regression-junit.xml", "regression.md"
FINAL_DIRS = ("released", "quarantine", "pending")
# the stages a gate run times (gate.run: generate for a backend, read for a reviewed video), one column each
STAGES = ("prepare", "generate", "read", "watermark_encode", "measure", "decide", "sign_verify", "compliance")
RESULT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("suite", "string"),
    ("model", "string"),
    ("case", "string"),
    ("run_id", "string"),
    ("decision", "string"),  # released | quarantined | pending | refused (consent refused before generating)
    ("exit_code", "int64"),
    ("reasons", "string"),  # JSON list of strings
    ("record_path", "string"),
    ("video_path", "string"),
    ("report_path", "string"),
    ("backend", "string"),
    # wall seconds of the case: the worker's half (prepare, generate, encode, measure, FVD features) plus the driver's
    # (prepare, sign, verify, record, reports, ledger, publish); for a run recognised after its progress line was
    # lost: the sum of its record's stage timings
    ("seconds_total", "float64"),
    *((f"seconds_{s}", "float64") for s in STAGES),
    ("video_seconds", "float64"),
    ("compute_per_video_second", "float64"),
    ("provenance_ok", "bool"),
    ("consent_ok", "bool"),
    ("not_measured", "int64"),
)
CI_LEVEL, N_BOOT, BOOT_SEED = 0.95, 2000, 0
FVD_BOOT = 200  # FVD resamples (each one a 400x400 matrix square root)


def metric_columns() -> list[tuple[str, str]]:
    return [(f"m_{n}", "float64") for n in SPECS] + [(f"mnm_{n}", "string") for n in SPECS]


def columns() -> list[tuple[str, str]]:
    """Every column of ``results.parquet`` with its Arrow type name, in order."""
    return [*RESULT_COLUMNS, *metric_columns()]


# --- the objects handed between the halves --------------------------------------------------------------------------


@dataclass(frozen=True)
class ProducedCase:
    """What ``produce_case`` returns: the run's ``Produced`` (with the MP4's bytes), or the refusal of the case (the
    depicted person has no consent record: nothing was generated), plus the FVD features of the video."""

    model: str
    case: str
    produced: Produced | None
    refusal: tuple[int, str] | None = None  # (exit code, one line) when the gate refused before generating
    fvd_features: np.ndarray | None = None  # [clips, 400] float32 (None: no reference, or not measured)
    fvd_reason: str | None = None
    seconds: float = 0.0  # wall time of the worker's half


@dataclass(frozen=True)
class CaseResult:
    model: str
    case: str
    row: dict[str, Any]  # the results.parquet row
    fvd_features: np.ndarray | None = field(default=None, repr=False)
    skipped: bool = False
    fvd_reason: str | None = (
        None  # why the case has no FVD features (None when it has them)  # found finished by an earlier evaluation (not run now)
    )


@dataclass(frozen=True)
class ProgressEvent:
    kind: Literal["start", "skip", "case", "note"]
    done: int
    total: int
    model: str | None = None
    case: str | None = None
    result: CaseResult | None = None
    message: str = ""


Progress = Callable[[ProgressEvent], None]


@dataclass(frozen=True)
class EvaluationResult:
    out_dir: Path
    results_path: Path
    summary_path: Path
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    regression: dict[str, Any] | None
    ran: int
    skipped: int

    @property
    def regressed(self) -> bool:
        return bool(self.regression and self.regression["regressed"])


# --- one case -------------------------------------------------------------------------------------------------------


def case_run_id(case_id: str, now: dt.datetime | None = None) -> str:
    """``<case id>.<timestamp>-<8 hex>``: a new gate run id that names its case (``case_of_run``)."""
    return f"{case_id}.{new_run_id(now)}"


_RUN_SUFFIX = len(new_run_id()) + 1


def case_of_run(run_id: str) -> str | None:
    """The case id inside a run id made by ``case_run_id`` (None for any other run id)."""
    if len(run_id) <= _RUN_SUFFIX or run_id[-_RUN_SUFFIX] != ".":
        return None
    return run_id[:-_RUN_SUFFIX]


def model_dir(out_dir: Path, model: str) -> Path:
    return Path(out_dir) / RUNS_DIR / model


def ledger_of(out_dir: Path, db: str | None) -> str:
    return ledger_locator(db if db is not None else Path(out_dir) / DB_NAME)


def fixed_payload_of(suite: Suite, model: str, case: str) -> bytes:
    """A watermark payload derived from (suite, model, case): ONLY for tests that compare two evaluations of the same
    suite (the payload changes the watermarked pixels' last digits). Never in normal use."""
    from provenance.watermark import PAYLOAD_BYTES

    return hashlib.sha256(f"{suite.name}\0{model}\0{case}".encode()).digest()[:PAYLOAD_BYTES]


def case_request(
    suite: Suite,
    model: ModelSpec,
    case: Case,
    out_dir: Path,
    *,
    run_id: str,
    db: str | None = None,
    fixed_payload: bool = False,
) -> RunRequest:
    """The gate run of one (model, case)."""
    args = model.args
    return RunRequest(
        mode=model.mode,
        out_dir=model_dir(out_dir, model.name),
        portrait=case.portrait,
        audio=case.audio,
        video=model.videos.get(case.id) if model.mode == "review" else None,
        prompt=case.prompt or None,
        backend=model.backend or "still",
        model_dir=args.get("model_dir"),
        seed=case.seed,
        steps=args.get("steps"),
        sampler=args.get("sampler"),
        policy_path=suite.policy_path,
        ledger_path=ledger_of(out_dir, db),
        fvd_reference=suite.fvd_reference,
        run_id=run_id,
        watermark_payload=fixed_payload_of(suite, model.name, case.id) if fixed_payload else None,
    )


def _pair(suite: Suite, model: ModelSpec | str, case: Case | str) -> tuple[ModelSpec, Case]:
    m = suite.models[model] if isinstance(model, str) else model
    c = suite.case(case) if isinstance(case, str) else case
    return m, c


def produce_case(
    suite: Suite,
    model: ModelSpec | str,
    case: Case | str,
    out_dir: Path,
    *,
    db: str | None = None,
    fixed_payload: bool = False,
) -> ProducedCase:
    """Worker side of one case (see the module docstring): nothing is written under ``out_dir``."""
    from gate.consent import ConsentRefused

    model, case = _pair(suite, model, case)
    start = time.perf_counter()
    req = case_request(suite, model, case, out_dir, run_id=case_run_id(case.id), db=db, fixed_payload=fixed_payload)
    try:
        inputs = prepare(req, signing=False)  # the worker never loads the signing key: the driver signs
    except ConsentRefused as exc:
        return ProducedCase(model.name, case.id, None, refusal=(int(exc.exit_code), exc.one_line()))
    work = Path(tempfile.mkdtemp(prefix="hallo3-gate-produce-"))
    try:
        produced = produce(inputs, work).detached()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    features, reason = fvd_features(suite, produced.clip.frames)
    return ProducedCase(model.name, case.id, produced, None, features, reason, time.perf_counter() - start)


def fvd_features(suite: Suite, frames: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """The I3D features of the case's video under the reference's protocol (None with the reason when not
    measured: no reference named, no verified I3D weights, a video too short)."""
    if suite.fvd_reference is None:
        return None, "not measured: the suite names no fvd_reference"
    from gate.measure import MeasureOutcome, _guard, i3d_extractor
    from metrics.fvd import FVDState

    got: list[np.ndarray] = []
    probe = MeasureOutcome()

    def extract() -> None:
        reference = FVDState.load(suite.fvd_reference)
        state = FVDState(reference.protocol, keep_features=True).update([frames], i3d_extractor(probe))
        if state.features is not None and len(state.features):
            got.append(state.features)

    _guard(probe, ("fvd",), "FVD (I3D)", extract)
    if got:
        return got[0], None
    m = probe.measurements.get("fvd")
    return None, (m.reason if m is not None else "not measured: the video is shorter than one FVD clip")


def finish_case(
    suite: Suite,
    model: ModelSpec | str,
    case: Case | str,
    produced: ProducedCase,
    out_dir: Path,
    *,
    db: str | None = None,
    fixed_payload: bool = False,
) -> CaseResult:
    """Driver side of one case (see the module docstring): the only writer of the run directories and the ledger."""
    model, case = _pair(suite, model, case)
    if (produced.model, produced.case) != (model.name, case.id):
        raise UsageError("produced", f"belongs to {produced.model}/{produced.case}", f"{model.name}/{case.id}")
    out_dir = Path(out_dir)
    if produced.produced is None:
        code, why = produced.refusal or (1, "refused")
        row = refused_row(suite, model, case, code, why)
        return CaseResult(model.name, case.id, row)  # not a run: nothing recorded; a rerun tries again
    start = time.perf_counter()
    run_id = produced.produced.run_id
    req = case_request(suite, model, case, out_dir, run_id=run_id, db=db, fixed_payload=fixed_payload)
    outcome = execute(prepare(req), produced=produced.produced, step_summary=False)
    seconds = produced.seconds + (time.perf_counter() - start)
    features, fvd_reason = produced.fvd_features, produced.fvd_reason
    del produced  # the frames: not kept past the record
    if features is not None:
        write_features(out_dir, model.name, run_id, features)
    row = record_row(suite, model, case, outcome.record, outcome.directory, seconds)
    append_progress(out_dir, model.name, case.id, run_id, row, fvd_reason=fvd_reason)
    return CaseResult(model.name, case.id, row, features, fvd_reason=fvd_reason)


def write_features(out_dir: Path, model: str, run_id: str, features: np.ndarray) -> Path:
    import io

    buf = io.BytesIO()
    np.save(buf, np.asarray(features, dtype=np.float32), allow_pickle=False)
    return write_bytes_atomic(Path(out_dir) / FVD_DIR / model / f"{run_id}.npy", buf.getvalue())


def read_features(out_dir: Path, model: str, run_id: str) -> np.ndarray | None:
    path = Path(out_dir) / FVD_DIR / model / f"{run_id}.npy"
    if not path.exists():
        return None
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(str(path), "FVD features must be a readable .npy file", type(exc).__name__) from None


# --- rows -----------------------------------------------------------------------------------------------------------


def _empty_row(suite: Suite, model: ModelSpec, case: Case) -> dict[str, Any]:
    row: dict[str, Any] = {name: None for name, _ in columns()}
    row.update(suite=suite.name, model=model.name, case=case.id, backend=model.backend or "external")
    return row


def refused_row(suite: Suite, model: ModelSpec, case: Case, exit_code: int, reason: str) -> dict[str, Any]:
    row = _empty_row(suite, model, case)
    row.update(decision="refused", exit_code=exit_code, reasons=json.dumps([reason]), provenance_ok=False)
    row.update(consent_ok=False, not_measured=0)
    return row


def record_row(
    suite: Suite, model: ModelSpec, case: Case, record: S.GateRecord, directory: Path, seconds: float | None
) -> dict[str, Any]:
    """The results row of one finished run, from its published record: ``reports.evaluation.result_row`` (the one
    definition ``compare`` uses too: ``not_measured`` counts the policy's checks that could not be measured,
    ``consent_ok`` is the consent record's status ``matched``), with ``seconds_total`` the case's wall time when
    known (see ``RESULT_COLUMNS``)."""
    from reports.evaluation import result_row

    row = _empty_row(suite, model, case)
    found = result_row(record, suite=suite.name, model=model.name, case=case.id, record_path=directory / RECORD_NAME)
    row.update({k: v for k, v in found.items() if k in row})
    total = round(float(seconds) if seconds is not None else float(sum(record.timings.values())), 4)
    video_s = row["video_seconds"]
    row.update(
        seconds_total=total,
        compute_per_video_second=(total / video_s) if video_s else None,
        video_path=str(directory / "video.mp4"),
        report_path=str(directory / "report.html"),
    )
    return row


# --- progress.jsonl and recognising finished cases ------------------------------------------------------------------


def append_progress(
    out_dir: Path, model: str, case: str, run_id: str, row: dict[str, Any], *, fvd_reason: str | None = None
) -> None:
    """One line per finished case, appended and fsynced (a torn last line is ignored when read back)."""
    path = Path(out_dir) / PROGRESS_NAME
    entry = {"model": model, "case": case, "run_id": run_id, "row": row, "fvd_reason": fvd_reason}
    line = json.dumps(entry, sort_keys=True) + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise OutputError(
            str(path), f"progress must be writable (run {run_id} is recorded and published)", exc.strerror
        ) from None


def read_progress(out_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """The finished cases recorded in ``progress.jsonl``: ``{(model, case): entry}`` (a later line wins). A last
    line without its newline (a kill mid-append) is ignored; any other bad line is refused (exit 4)."""
    path = Path(out_dir) / PROGRESS_NAME
    if not path.exists():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(str(path), "progress file must be readable UTF-8", type(exc).__name__) from None
    lines = text.split("\n")
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for i, line in enumerate(lines[:-1], start=1):  # the last element: "" or a torn line
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            key = (str(entry["model"]), str(entry["case"]))
            if not isinstance(entry["row"], dict) or not isinstance(entry["run_id"], str):
                raise ValueError("bad entry")
        except (ValueError, KeyError, TypeError):
            raise InputError(
                str(path), f"progress line {i} must be a JSON entry of a finished case", line[:80]
            ) from None
        out[key] = entry
    return out


def recognise_runs(suite: Suite, out_dir: Path, ledger: str) -> dict[tuple[str, str], tuple[str, Path]]:
    """Finished runs of the suite's cases found in the run directories (after the gate's recovery has published any
    recorded run left in staging), each checked against its ledger row: ``{(model, case): (run_id, directory)}``;
    the newest run of a case wins."""
    found: dict[tuple[str, str], tuple[str, Path]] = {}
    led = existing_ledger(ledger)
    if led is None:
        return found
    case_ids = {c.id for c in suite.cases}
    for name in suite.models:
        base = model_dir(out_dir, name)
        for final in FINAL_DIRS:
            d = base / final
            if not d.is_dir() or d.is_symlink():
                continue
            for run_dir in sorted(d.iterdir()):
                case = case_of_run(run_dir.name)
                if case not in case_ids or not (run_dir / RECORD_NAME).is_file():
                    continue
                if led.find_by_run(run_dir.name) is None:
                    continue
                prev = found.get((name, case))
                if prev is None or prev[0] < run_dir.name:
                    found[(name, case)] = (run_dir.name, run_dir)
    return found


def _recovered_result(suite: Suite, out_dir: Path, model: ModelSpec, case: Case, run_dir: Path) -> CaseResult:
    """A finished run whose progress line was lost: its row from its record; its FVD features from their file, or
    extracted again from the published video."""
    try:
        record = S.GateRecord.from_json((run_dir / RECORD_NAME).read_bytes())
    except (OSError, ValueError) as exc:
        raise InputError(str(run_dir / RECORD_NAME), "a run's record must be readable", type(exc).__name__) from None
    row = record_row(suite, model, case, record, run_dir, None)
    features = read_features(out_dir, model.name, record.run_id)
    reason = None
    if features is None and suite.fvd_reference is not None:
        from gate import media

        clip = media.read_video(run_dir / "video.mp4")
        features, reason = fvd_features(suite, clip.frames)
        del clip
        if features is not None:
            write_features(out_dir, model.name, record.run_id, features)
    append_progress(out_dir, model.name, case.id, record.run_id, row, fvd_reason=reason)
    return CaseResult(model.name, case.id, row, features, skipped=True, fvd_reason=reason)


# --- the engine -----------------------------------------------------------------------------------------------------


def check_out_dir(out_dir: Path, suite: Suite) -> None:
    """``OUT`` is new, empty, or an earlier evaluation of the same suite (its marker); anything else is refused. A
    new ``OUT`` may already hold its ledger ``gate.sqlite`` (prepared with the consent records the policy needs)."""
    out_dir = Path(out_dir)
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise UsageError("--out", "must be a directory (not a file or a symlink)", str(out_dir))
    marker = out_dir / MARKER_NAME
    ledger_files = {DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal"}
    foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in ledger_files) if out_dir.is_dir() else []
    if foreign and not marker.is_file():
        raise UsageError(
            "--out",
            f"must be new, empty (but for a prepared {DB_NAME}) or an earlier evaluation's (no evaluate marker; "
            f"it holds {foreign[0]})",
            str(out_dir),
        )
    if marker.is_file():
        try:
            named = json.loads(marker.read_text(encoding="utf-8")).get("suite")
        except (OSError, ValueError, AttributeError):
            raise InputError(str(marker), "the evaluate marker must be readable JSON", "unreadable") from None
        if named != suite.name:
            raise UsageError("--out", f"holds the evaluation of suite {named!r}; use a new directory", suite.name)


def _start_out_dir(out_dir: Path, suite: Suite) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        marker = out_dir / MARKER_NAME
        if not marker.exists():
            write_text_atomic(marker, json.dumps({"suite": suite.name}) + "\n")
            fsync_directory(out_dir)
    except OSError as exc:
        raise OutputError(
            str(exc.filename or out_dir), "the evaluation's output must be writable", exc.strerror
        ) from None


def evaluate(
    suite: Suite,
    out_dir: Path,
    *,
    ray: RaySettings | None = None,
    progress: Progress | None = None,
    db: str | None = None,
    baseline: Path | None = None,
    fixed_payload: bool = False,
) -> EvaluationResult:
    """Run every unfinished (model, case) of ``suite`` into ``out_dir`` (sequentially, or on Ray with ``ray``), then
    write ``results.parquet``, ``summary.json`` and, with ``baseline``, the regression outputs."""
    out_dir = Path(out_dir)
    say = progress or (lambda _e: None)
    ledger = ledger_of(out_dir, db)
    check_out_dir(out_dir, suite)
    for name in suite.models:
        check_layout(model_dir(out_dir, name))
    base_summary = load_baseline(baseline) if baseline is not None else None
    if base_summary is not None and not suite.regression:
        raise UsageError("--baseline", f"needs a [regression] table in the suite {suite.path}", "none")
    _start_out_dir(out_dir, suite)

    for name in suite.models:  # the gate's own recovery: publish recorded runs, roll back unrecorded ones
        layout = check_layout(model_dir(out_dir, name))
        if layout.staging.is_dir():
            for note in recover(layout, ledger):
                say(ProgressEvent("note", 0, 0, name, None, message=note))
    done: dict[tuple[str, str], CaseResult] = {}
    for (m, c), entry in read_progress(out_dir).items():
        if m in suite.models and c in {x.id for x in suite.cases} and Path(entry["row"]["record_path"]).is_file():
            features = read_features(out_dir, m, entry["run_id"])
            reason = entry.get("fvd_reason") if features is None else None
            done[(m, c)] = CaseResult(m, c, entry["row"], features, skipped=True, fvd_reason=reason)
    for key, (_, run_dir) in recognise_runs(suite, out_dir, ledger).items():
        if key not in done:
            model, case = _pair(suite, *key)
            done[key] = _recovered_result(suite, out_dir, model, case, run_dir)

    pairs = suite.pairs()
    total = len(pairs)
    todo = [(m, c) for m, c in pairs if (m.name, c.id) not in done]
    precheck(suite, out_dir, todo, db)
    say(ProgressEvent("start", len(pairs) - len(todo), total, message=f"{len(todo)} of {total} cases to run"))
    for m, c in pairs:
        if (m.name, c.id) in done:
            say(ProgressEvent("skip", 0, total, m.name, c.id, done[(m.name, c.id)]))
    options = {"db": db, "fixed_payload": fixed_payload}
    results: dict[tuple[str, str], CaseResult] = dict(done)
    counter = [len(done)]

    def finished(r: CaseResult) -> None:
        results[(r.model, r.case)] = r
        counter[0] += 1
        say(ProgressEvent("case", counter[0], total, r.model, r.case, r))

    if ray is not None:
        from gate.evaluate_ray import run_on_ray

        for r in run_on_ray(
            suite,
            out_dir,
            ray,
            functools.partial(produce_case, **options),
            functools.partial(finish_case, **options),
            finished,
            pairs=[(m.name, c.id) for m, c in todo],
        ):
            results[(r.model, r.case)] = r
    else:
        for m, c in todo:
            produced = produce_case(suite, m, c, out_dir, **options)
            result = finish_case(suite, m, c, produced, out_dir, **options)
            del produced
            finished(result)

    ordered = [results[(m.name, c.id)] for m, c in pairs if (m.name, c.id) in results]
    rows = [r.row for r in ordered]
    results_path = write_results(out_dir / RESULTS_NAME, rows)
    summary = summarise(suite, ordered)
    reg = None
    if base_summary is not None:
        reg = compare_to_baseline(suite, summary, base_summary, str(baseline))
        write_regression(out_dir, reg)
    summary["regression"] = reg
    summary_path = write_text_atomic(out_dir / SUMMARY_NAME, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    ran = sum(1 for r in ordered if not r.skipped)
    return EvaluationResult(out_dir, results_path, summary_path, rows, summary, reg, ran, len(ordered) - ran)


def precheck(suite: Suite, out_dir: Path, todo: list[tuple[ModelSpec, Case]], db: str | None) -> None:
    """Before any case runs: every case to run is prepared once without running (``gate.run.prepare`` writes
    nothing): a usage or input error (no provider configured, unreadable signing keys, a bad portrait) stops the
    evaluation now, not after hours of other cases. A consent refusal is a case's result, not an error."""
    from gate.consent import ConsentRefused

    seen: set[tuple[str, Path, Path]] = set()
    for m, c in todo:
        key = (m.name, c.portrait, c.audio)
        if key in seen:
            continue
        seen.add(key)
        with contextlib.suppress(ConsentRefused):
            prepare(case_request(suite, m, c, out_dir, run_id=case_run_id(c.id), db=db))


def write_results(path: Path, rows: list[dict[str, Any]]) -> Path:
    """``results.parquet``, atomically, with the fixed schema (an all-empty column keeps its type)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}
    schema = pa.schema([(name, types[t]) for name, t in columns()])
    table = pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)
    from reports.atomic import atomic_path

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


# --- the summary ----------------------------------------------------------------------------------------------------


def set_fvd(
    reference_path: Path, parts: Iterable[np.ndarray | None], reasons: Iterable[str | None] = ()
) -> dict[str, Any]:
    """FVD of one model's videos against the reference: the per-case I3D features merged in one
    ``metrics.fvd_metric.FrechetVideoDistance`` (its float64 sum states add up; one video per case); ``{value, n,
    ci}`` with n the number of videos and ci a bootstrap 95 % interval over videos (``FVD_BOOT`` resamples, seed 0;
    null with fewer than 2 videos on a side), or ``{value: None, n, reason}`` (the reason names why cases had no
    features, e.g. the I3D weights are missing, before the sample count)."""
    import torch

    from metrics.fvd import FVDState
    from metrics.fvd_metric import FrechetVideoDistance

    reference = FVDState.load(reference_path)
    parts = [p for p in parts if p is not None and len(p)]
    metric = FrechetVideoDistance(reference=reference, keep_features=True)
    for p in parts:
        metric.update(torch.from_numpy(np.asarray(p, dtype=np.float32)), torch.zeros(len(p), dtype=torch.int64))
    result = metric.result()
    if result.value is None:
        why = sorted({r for r in reasons if r})
        return {"value": None, "n": len(parts), "ci": None, "reason": "; ".join([*why, str(result.reason)])}
    ci = None
    if len(parts) >= 2 and reference.n_videos >= 2 and reference.features is not None:
        boot = metric.result(n_boot=FVD_BOOT, seed=BOOT_SEED, level=CI_LEVEL, unit="video").ci
        ci = [boot.low, boot.high] if boot is not None else None
    return {"value": float(result.value), "n": len(parts), "ci": ci}


def summarise(suite: Suite, results: list[CaseResult]) -> dict[str, Any]:
    """Per model of the suite: ``reports.evaluation.summarise`` over its rows (release rate with its Wilson interval,
    each video metric's mean with a percentile-bootstrap interval, compute per video second: one definition with
    ``compare``), with the suite's description and backend, and the FVD merged from the cases' features."""
    import pandas as pd

    from reports.evaluation import summarise as summarise_rows

    table = pd.DataFrame([r.row for r in results], columns=[name for name, _ in columns()])
    summary = summarise_rows(table, suite=suite.name, n_boot=N_BOOT, seed=BOOT_SEED)
    models: dict[str, Any] = {}
    for name, model in suite.models.items():
        mine = [r for r in results if r.model == name]
        found = summary["models"].get(name) or {
            "cases": 0,
            "released": 0,
            "release_rate": None,
            "release_ci": None,
            "metrics": {},
            "seconds_per_video_second": None,
        }
        fvd = None
        if suite.fvd_reference is not None:
            fvd = set_fvd(suite.fvd_reference, [r.fvd_features for r in mine], [r.fvd_reason for r in mine])
        models[name] = {"description": model.description, "backend": model.backend or "external", **found, "fvd": fvd}
    return {**summary, "models": models}


# --- baseline gating ------------------------------------------------------------------------------------------------


def load_baseline(source: Path) -> dict[str, Any]:
    """A previous evaluation's ``summary.json`` (the file, or its ``OUT`` directory)."""
    p = Path(source)
    path = p / SUMMARY_NAME if p.is_dir() else p
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(
            str(path), "--baseline must be an evaluate output directory or its summary.json", "not found"
        ) from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(str(path), "--baseline summary must be readable JSON", type(exc).__name__) from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict) or not data["models"]:
        raise InputError(str(path), "--baseline summary must hold a models table", "none")
    return data


def _overlap(a: list[float] | None, b: list[float] | None) -> bool:
    if a is None or b is None:
        return True  # no interval: cannot say they separate
    return a[0] <= b[1] and b[0] <= a[1]


def _value(model: dict[str, Any], metric: str) -> tuple[float | None, list[float] | None]:
    if metric == "fvd" and SPECS[metric].scope == "set":
        fvd = model.get("fvd") or {}
        return fvd.get("value"), None
    m = (model.get("metrics") or {}).get(metric) or {}
    return m.get("mean"), m.get("ci")


def compare_to_baseline(suite: Suite, summary: dict[str, Any], base: dict[str, Any], source: str) -> dict[str, Any]:
    """Every model × ``[regression]`` metric against the baseline's model of the same name (or the baseline's only
    model). Regressed: the mean is worse than the baseline's by more than the allowance AND the two 95 % intervals
    do not overlap (a set metric such as FVD has no interval: the allowance alone). A metric that cannot be compared
    (not measured on either side) fails: the gate cannot prove the model is not worse."""
    base_models = base["models"]
    out_models: dict[str, Any] = {}
    for name, cand in summary["models"].items():
        if name in base_models:
            base_name = name
        elif len(base_models) == 1:
            base_name = next(iter(base_models))
        else:
            raise UsageError(
                "--baseline", f"must hold model {name!r} or exactly one model", ", ".join(sorted(base_models))
            )
        checks: dict[str, Any] = {}
        for metric, allowed in suite.regression.items():
            better_high = SPECS[metric].higher_is_better
            c_mean, c_ci = _value(cand, metric)
            b_mean, b_ci = _value(base_models[base_name], metric)
            entry: dict[str, Any] = {
                "candidate": c_mean,
                "candidate_ci": c_ci,
                "baseline": b_mean,
                "baseline_ci": b_ci,
                "allowed": allowed,
                "higher_is_better": better_high,
            }
            if c_mean is None or b_mean is None:
                side = "candidate" if c_mean is None else "baseline"
                entry.update(outcome="not_compared", worse_by=None, message=f"{metric}: not measured on the {side}")
            else:
                worse_by = (b_mean - c_mean) if better_high else (c_mean - b_mean)
                regressed = worse_by > allowed and not _overlap(c_ci, b_ci)
                entry.update(
                    outcome="regressed" if regressed else "passed",
                    worse_by=worse_by,
                    message=(
                        f"{metric} {c_mean:.4g} vs baseline {b_mean:.4g}: worse by {worse_by:.4g} "
                        f"(allowed {allowed:g}){'' if regressed else ' — within the allowance or the intervals'}"
                    ),
                )
            checks[metric] = entry
        out_models[name] = {"baseline_model": base_name, "metrics": checks}
    regressed = any(e["outcome"] != "passed" for m in out_models.values() for e in m["metrics"].values())
    return {"baseline": source, "baseline_suite": base.get("suite"), "models": out_models, "regressed": regressed}


def write_regression(out_dir: Path, reg: dict[str, Any]) -> dict[str, Path]:
    paths = {
        "json": write_text_atomic(out_dir / REGRESSION_JSON, json.dumps(reg, indent=2, sort_keys=True) + "\n"),
        "junit": write_text_atomic(out_dir / REGRESSION_JUNIT, regression_junit(reg)),
        "md": write_text_atomic(out_dir / REGRESSION_MD, regression_markdown(reg)),
    }
    return paths


def regression_junit(reg: dict[str, Any]) -> str:
    """One testcase per model × regression metric; a regression or a metric that could not be compared fails."""
    cases = [(m, k, e) for m, v in reg["models"].items() for k, e in v["metrics"].items()]
    failures = sum(1 for *_, e in cases if e["outcome"] != "passed")
    suite = ET.Element("testsuite", name="hallo3-gate regression", tests=str(len(cases)), failures=str(failures))
    for model, metric, e in cases:
        tc = ET.SubElement(suite, "testcase", classname=f"regression.{model}", name=metric)
        if e["outcome"] != "passed":
            ET.SubElement(tc, "failure", message=e["message"], type=e["outcome"]).text = json.dumps(e, sort_keys=True)
    root = ET.Element("testsuites")
    root.append(suite)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _num(x: Any) -> str:
    return "—" if x is None else f"{x:.4g}"


def _ci(ci: list[float] | None) -> str:
    return "—" if not ci else f"[{ci[0]:.4g}, {ci[1]:.4g}]"


def regression_markdown(reg: dict[str, Any]) -> str:
    verdict = "REGRESSION" if reg["regressed"] else "no regression"
    lines = [
        f"## Model regression check: {verdict}",
        "",
        f"Baseline: {md_text(reg['baseline'])}",
        "",
        "| model | baseline model | metric | candidate | 95 % CI | baseline | 95 % CI | allowed | outcome |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model, v in reg["models"].items():
        for metric, e in v["metrics"].items():
            cells = [
                md_text(model),
                md_text(v["baseline_model"]),
                md_text(metric),
                _num(e["candidate"]),
                _ci(e["candidate_ci"]),
                _num(e["baseline"]),
                _ci(e["baseline_ci"]),
                f"{e['allowed']:g}",
                md_text(e["outcome"]),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


__all__ = [
    "CaseResult",
    "EvaluationResult",
    "ProducedCase",
    "ProgressEvent",
    "case_of_run",
    "case_run_id",
    "columns",
    "compare_to_baseline",
    "evaluate",
    "finish_case",
    "produce_case",
]
