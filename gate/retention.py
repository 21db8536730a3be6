"""Retention: remove ledger rows and run directories older than the retention period, keeping the chain verifiable.

China's Labelling Measures (Art. 9) ask for logs kept at least six months; data protection asks for nothing kept
longer than needed. The period is ``gate.config`` ``retention_days`` (``[retention] days``,
``$HALLO3_GATE_RETENTION_DAYS``; at least ``MIN_RETENTION_DAYS`` = 183) or ``--days``; ``cutoff = now - days``.

``plan(db, runs_dir, days, now)`` reads and decides, writing nothing (``--dry-run`` stops there):

* **ledger rows**: the longest PREFIX of the chain (from its oldest row) whose rows are all older than the cutoff. A
  hash chain can only lose a prefix and stay verifiable, so the prefix ends at the first row that is not older (or
  whose time cannot be read: kept, fail closed) and at the first row of a run still pending review (its rows are the
  review's state). Nothing is removed from a ledger that does not verify (``RetentionRefused``, exit 1): removing rows
  of a broken chain would destroy the evidence of the break.
* **run directories** under ``runs_dir/released`` and ``runs_dir/quarantine`` whose newest trace is older than the
  cutoff: the ``record.json`` ``created_at``, or a later ledger row of the run (a run released after a long review
  is kept ``days`` from its release). Only directories the gate made are touched (the rules of ``gate.staging``): a
  real directory (``lstat``: a symlink is never followed nor removed), named by a run id, holding a regular
  ``record.json`` (opened with ``O_NOFOLLOW``) that names that run id, a UTC ``created_at`` and a row of THIS ledger
  (held here with the hash the record names: ``inspect_directory``). Everything else is listed as kept with the
  reason. ``pending/`` runs are never removed ("kept: pending"); ``staging/`` belongs to live runs and their
  recovery and is not looked at. A directory whose run row an earlier apply removed (an orphan: its removal failed
  after that commit, or the run's later rows kept it) is recognised by its record naming this ledger's file or URL
  and a retention row listing its run id.

``apply(plan, actor)`` does it: in ONE transaction it appends a ``retention`` ledger row (``record()``: what is
removed, the cutoff, the days, and ``removed_through_seq`` / ``removed_last_hash``, the link ``Ledger.verify`` uses
to accept the shorter chain) and then deletes the prefix — both or neither. The directories are removed after the
commit: each is first renamed to ``.retention-<run_id>`` in its area (so a half-removed directory never looks like
a run), then removed; one that fails stays there and the next apply finds and removes it. A plan with nothing to
remove writes nothing, so a second apply right after the first is a no-op.

No personal data is involved: rows and directories are named by seq and run id; the retention row holds run ids,
directory names, seq numbers, hashes and times.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from gate.config import GateConfig, check_retention_days
from gate.database import Database
from gate.ledger import Ledger, Row
from gate.staging import PENDING, QUARANTINE, RECORD_NAME, RELEASED, RUN_ID, run_state, same_ledger
from reports.atomic import file_kind
from reports.errors import ExitCode, Hallo3Error, OutputError, UsageError

__all__ = [
    "DECISION",
    "KIND",
    "TRASH_PREFIX",
    "LedgerView",
    "RetentionPlan",
    "RetentionRefused",
    "RetentionResult",
    "RunDirectory",
    "apply",
    "check_actor",
    "inspect_directory",
    "plan",
    "relative",
    "retention_status",
]

KIND = "retention"  # the ledger row kind (gate.ledger.KINDS)
DECISION = "removed"  # the decision column of a retention row
TRASH_PREFIX = ".retention-"  # a run directory being removed, renamed out of the way first
AREAS = (RELEASED, QUARANTINE, PENDING)
MAX_RECORD_BYTES = 64 * 1024 * 1024
MAX_ACTOR = 200

Action = Literal["remove", "keep"]


class RetentionRefused(Hallo3Error):
    """Nothing was removed: the ledger does not verify, or it changed between the plan and the apply."""

    exit_code = ExitCode.GATE_FAILED


@dataclass(frozen=True)
class RunDirectory:
    """One entry of ``released/``, ``quarantine/`` or ``pending/`` the plan looked at, and what it does with it."""

    path: Path
    area: str  # released | quarantine | pending
    run_id: str | None  # None: not a run the gate made
    created_at: str | None  # the record's, as written
    ledger_seq: int | None  # the record's ledger row
    action: Action
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "area": self.area,
            "run_id": self.run_id,
            "created_at": self.created_at,
            "ledger_seq": self.ledger_seq,
            "action": self.action,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class RetentionPlan:
    """What an apply would remove (see the module docstring); ``to_dict()`` is what ``--dry-run --json`` prints."""

    database: str  # the database, safe to print
    runs_dir: Path | None
    days: int
    now: datetime
    cutoff: datetime
    ledger_verified: bool
    ledger_problems: tuple[str, ...]
    ledger_rows: int
    first_seq: int | None  # the oldest row now
    removed_first_seq: int | None
    removed_through_seq: int | None
    removed_last_hash: str | None
    removed_count: int
    removed_runs: tuple[str, ...]  # run ids with a ``run`` row in the removed prefix
    prefix_end: str  # why the removable prefix ends where it does
    directories: tuple[RunDirectory, ...]  # every entry looked at but the recent runs of this ledger
    kept_recent: int  # runs of this ledger not older than the cutoff (kept, not listed)
    db: Database = field(repr=False, compare=False)

    @property
    def to_remove(self) -> tuple[RunDirectory, ...]:
        return tuple(d for d in self.directories if d.action == "remove")

    @property
    def empty(self) -> bool:
        """Nothing to remove: an apply writes nothing."""
        return self.removed_count == 0 and not self.to_remove

    def record(self, directories: Sequence[RunDirectory] | None = None) -> dict[str, Any]:
        """The ``record_json`` of the retention row an apply appends (no personal data); ``directories``: those it
        removes (default: every one the plan lists for removal)."""
        directories = self.to_remove if directories is None else directories
        return {
            "action": "apply",
            "removed_first_seq": self.removed_first_seq,
            "removed_through_seq": self.removed_through_seq,
            "removed_last_hash": self.removed_last_hash,
            "removed_count": self.removed_count,
            "cutoff": _stamp(self.cutoff),
            "days": self.days,
            "runs": list(self.removed_runs),
            "runs_dir": str(self.runs_dir) if self.runs_dir is not None else None,
            "directories": [relative(d.path, self.runs_dir) for d in directories],
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "runs_dir": str(self.runs_dir) if self.runs_dir is not None else None,
            "days": self.days,
            "now": _stamp(self.now),
            "cutoff": _stamp(self.cutoff),
            "ledger": {
                "verified": self.ledger_verified,
                "problems": list(self.ledger_problems),
                "rows": self.ledger_rows,
                "first_seq": self.first_seq,
                "remove": {
                    "first_seq": self.removed_first_seq,
                    "through_seq": self.removed_through_seq,
                    "last_hash": self.removed_last_hash,
                    "count": self.removed_count,
                    "runs": list(self.removed_runs),
                },
                "prefix_end": self.prefix_end,
            },
            "directories": [d.to_dict() for d in self.directories],
            "kept_recent": self.kept_recent,
            "empty": self.empty,
        }


@dataclass(frozen=True)
class RetentionResult:
    """What an apply did: the retention row (None when the plan was empty), the rows and directories removed, and the
    directories that could not be removed (left for the next apply, which removes them)."""

    plan: RetentionPlan
    row_seq: int | None
    row_hash: str | None
    removed_rows: int
    removed_directories: tuple[str, ...]
    failed_directories: tuple[tuple[str, str], ...]  # (path, why)
    skipped_directories: tuple[tuple[str, str], ...]  # changed since the plan: (path, why), left alone

    @property
    def ok(self) -> bool:
        return not self.failed_directories

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "row": None if self.row_seq is None else {"seq": self.row_seq, "row_hash": self.row_hash},
            "removed_rows": self.removed_rows,
            "removed_directories": list(self.removed_directories),
            "failed_directories": [{"path": p, "why": w} for p, w in self.failed_directories],
            "skipped_directories": [{"path": p, "why": w} for p, w in self.skipped_directories],
        }


# --- planning ----------------------------------------------------------------------------------------------------------


def plan(
    db: Database, runs_dir: str | os.PathLike[str] | None, days: int, now: datetime | None = None
) -> RetentionPlan:
    """What an apply would remove with ``days`` of retention at ``now`` (default: the current UTC time). Reads only.

    ``days`` must be ``MIN_RETENTION_DAYS``..``MAX_RETENTION_DAYS`` (``UsageError`` naming ``--days``);
    ``runs_dir`` (None: only the ledger) must be a directory (it may be a symlink to one, the user's choice), its
    ``released``/``quarantine``/``pending`` real directories where they exist (``UsageError`` otherwise)."""
    days = check_retention_days("--days", days)
    now = datetime.now(UTC) if now is None else now
    if now.tzinfo is None or now.utcoffset() is None:
        raise UsageError("now", "must be a timezone-aware time", now.isoformat())
    cutoff = now - timedelta(days=days)
    ledger = Ledger(db)
    check = ledger.verify()
    first_seq = ledger.first_seq()
    prefix = _prefix(ledger, cutoff, _pending_runs(ledger))
    runs = Path(runs_dir) if runs_dir is not None else None
    entries, kept_recent = _directories(runs, LedgerView.of(ledger), cutoff) if runs is not None else ((), 0)
    return RetentionPlan(
        database=db.display,
        runs_dir=runs,
        days=days,
        now=now,
        cutoff=cutoff,
        ledger_verified=check.ok,
        ledger_problems=check.problems,
        ledger_rows=check.rows,
        first_seq=first_seq,
        removed_first_seq=prefix.first_seq,
        removed_through_seq=prefix.through_seq,
        removed_last_hash=prefix.last_hash,
        removed_count=prefix.count,
        removed_runs=prefix.runs,
        prefix_end=prefix.end,
        directories=entries,
        kept_recent=kept_recent,
        db=db,
    )


@dataclass(frozen=True)
class _Prefix:
    first_seq: int | None
    through_seq: int | None
    last_hash: str | None
    count: int
    runs: tuple[str, ...]
    end: str


def _pending_runs(ledger: Ledger) -> frozenset[str]:
    """Runs still waiting for people: their ``run`` row says pending and no release or rejection followed."""
    with contextlib.closing(ledger.scan(("seq", "kind", "run_id", "decision"))) as rows:
        candidates = {r.run_id for r in rows if r.kind == "run" and r.decision == "pending"}
    return frozenset(rid for rid in candidates if run_state(ledger.events(rid)) == "pending")


def _prefix(ledger: Ledger, cutoff: datetime, pending: frozenset[str]) -> _Prefix:
    """The longest prefix of the chain whose rows are all older than ``cutoff`` and belong to no pending run."""
    first: int | None = None
    last: Row | None = None
    count = 0
    runs: list[str] = []
    end = "every row is older than the cutoff"
    with contextlib.closing(ledger.scan()) as rows:
        for row in rows:
            at = _parse_time(row.created_at)
            if at is None:
                end = f"row seq {row.seq} has no readable UTC time ({row.created_at!r}): kept, and every row after it"
                break
            if at >= cutoff:
                end = f"row seq {row.seq} is from {row.created_at}, not older than the cutoff"
                break
            if row.run_id in pending:
                end = f"row seq {row.seq} belongs to run {row.run_id}, pending review: kept, and every row after it"
                break
            first = row.seq if first is None else first
            last = row
            count += 1
            if row.kind == "run" and row.run_id and row.run_id not in runs:
                runs.append(row.run_id)
        else:
            if last is None:
                end = "the ledger is empty"
    if last is None:
        return _Prefix(None, None, None, 0, (), end)
    return _Prefix(first, last.seq, last.row_hash, count, tuple(runs), end)


def _directories(runs_dir: Path, view: LedgerView, cutoff: datetime) -> tuple[tuple[RunDirectory, ...], int]:
    try:
        st = os.stat(runs_dir)
    except OSError as exc:
        raise UsageError(str(runs_dir), "--runs must be an existing directory (a gate's --out)", exc.strerror) from None
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(str(runs_dir), "--runs must be a directory (a gate's --out)", "not a directory")
    listed: list[RunDirectory] = []
    recent = 0
    for area in AREAS:
        for entry in _entries(runs_dir / area):
            found = inspect_directory(Path(entry.path), area, view, cutoff)
            if found is None:
                recent += 1
            else:
                listed.append(found)
    return tuple(listed), recent


def _entries(area_dir: Path) -> list[os.DirEntry[str]]:
    try:
        mode = os.lstat(area_dir).st_mode
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise OutputError(str(area_dir), "a run area must be readable", exc.strerror) from None
    if not stat.S_ISDIR(mode):
        raise UsageError(str(area_dir), "must be a directory the gate made (never a symlink or a file)", _kind(mode))
    try:
        return sorted(os.scandir(area_dir), key=lambda e: e.name)
    except OSError as exc:
        raise OutputError(str(area_dir), "a run area must be readable", exc.strerror) from None


@dataclass(frozen=True)
class LedgerView:
    """What ``inspect_directory`` needs to know about the ledger: the ledger, its oldest row, and the run ids whose
    rows earlier applies removed (the ``runs`` of every retention row)."""

    ledger: Ledger
    first_seq: int | None
    removed_runs: frozenset[str]

    @classmethod
    def of(cls, ledger: Ledger) -> LedgerView:
        removed: set[str] = set()
        for row in ledger.rows(KIND):
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                removed |= {r for r in json.loads(row.record_json).get("runs", []) if isinstance(r, str)}
        return cls(ledger, ledger.first_seq(), frozenset(removed))


def inspect_directory(path: Path, area: str, view: LedgerView, cutoff: datetime) -> RunDirectory | None:
    """What retention does with the entry ``path`` of ``area``; None for a run of this ledger not older than the
    cutoff (kept, not listed). Never follows a symlink; reads only ``record.json``.

    A run is this ledger's when its record names a ledger row (``ledger.seq``, ``ledger.row_hash``) that this ledger
    holds for that run id with that hash; or, once an earlier apply removed the row, when the record names this
    ledger's file or URL (``gate.staging.same_ledger``), its seq lies before the oldest row and a retention row lists
    its run id (an orphan of that apply). Its age is that of its newest trace: the record's ``created_at`` or a later
    ledger row of the run (a run released after a long review is kept ``days`` from its release)."""
    name = path.name

    def keep(reason: str, run_id: str | None = None, created: str | None = None, seq: int | None = None):
        return RunDirectory(path, area, run_id, created, seq, "keep", reason)

    try:
        mode = os.lstat(path).st_mode
    except OSError as exc:
        return keep(f"not the gate's: cannot be looked at ({exc.strerror})")
    if not stat.S_ISDIR(mode):
        return keep(f"not the gate's: {_kind(mode)}")
    if name.startswith(TRASH_PREFIX) and area != PENDING and RUN_ID.fullmatch(name[len(TRASH_PREFIX) :]):
        run_id = name[len(TRASH_PREFIX) :]
        return RunDirectory(path, area, run_id, None, None, "remove", "left over from an interrupted removal")
    if RUN_ID.fullmatch(name) is None:
        return keep("not the gate's: the name is not a run id")
    record, why = _read_record(path)
    if record is None:
        return keep(f"not the gate's: {why}")
    if record.get("run_id") != name:
        return keep("not the gate's: its record.json names another run id")
    created = record.get("created_at")
    at = _parse_time(created)
    if at is None:
        return keep("not the gate's: its record.json has no UTC created_at", name)
    created = str(created)
    entry = record.get("ledger") if isinstance(record.get("ledger"), dict) else {}
    seq, row_hash, named = entry.get("seq"), entry.get("row_hash"), entry.get("path")
    if type(seq) is not int or not isinstance(row_hash, str):
        return keep("kept: its record names no ledger row", name, created)
    if area == PENDING:
        return keep("kept: pending", name, created, seq)
    events = view.ledger.events(name)
    row = next((r for r in events if r.kind == "run"), None)
    latest = max([at, *(t for t in (_parse_time(r.created_at) for r in events) if t is not None)])
    since = "" if latest == at else f" (its last ledger row is from {_stamp(latest)})"
    if row is not None:
        if row.seq != seq or row.row_hash != row_hash:
            return keep(f"kept: its record names another ledger ({named}), not row {row.seq} here", name, created, seq)
        if latest < cutoff:
            return RunDirectory(path, area, name, created, seq, "remove", "older than the cutoff" + since)
        return None
    removed = view.first_seq is not None and seq < view.first_seq and name in view.removed_runs
    if removed and isinstance(named, str) and same_ledger(named, view.ledger.db.locator):
        if latest >= cutoff:
            return None
        reason = f"its ledger row (seq {seq}) was removed by an earlier retention apply" + since
        return RunDirectory(path, area, name, created, seq, "remove", reason)
    return keep(f"kept: this ledger holds no row of this run (its record names {named})", name, created, seq)


def _read_record(d: Path) -> tuple[dict[str, Any] | None, str]:
    """The JSON object in ``d/record.json`` — ``d`` and the file opened without following symlinks — or (None, why)."""
    try:
        dir_fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        return None, f"cannot be opened as a directory ({exc.strerror})"
    try:
        fd = os.open(RECORD_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError as exc:
        return None, f"no readable {RECORD_NAME} ({exc.strerror})"
    finally:
        os.close(dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, f"{RECORD_NAME} is {_kind(st.st_mode)}"
        if st.st_size > MAX_RECORD_BYTES:
            return None, f"{RECORD_NAME} is larger than {MAX_RECORD_BYTES} bytes"
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = json.loads(fh.read(MAX_RECORD_BYTES + 1).decode("utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"{RECORD_NAME} is not a readable JSON record ({type(exc).__name__})"
    finally:
        os.close(fd)
    if not isinstance(data, dict):
        return None, f"{RECORD_NAME} is not a JSON object"
    return data, ""


# --- applying ----------------------------------------------------------------------------------------------------------


def check_actor(actor: str) -> str:
    """Who applies retention (recorded in the ledger row): 1-200 printable characters."""
    if not isinstance(actor, str) or not actor.strip() or len(actor) > MAX_ACTOR or not actor.isprintable():
        raise UsageError("--actor", f"must be 1-{MAX_ACTOR} printable characters", repr(actor)[:80])
    return actor.strip()


def apply(plan: RetentionPlan, actor: str) -> RetentionResult:
    """Remove what ``plan`` lists (see the module docstring); returns what was done.

    Raises ``RetentionRefused`` (exit 1, nothing removed) when the plan's ledger did not verify or the ledger no longer
    holds the planned prefix; ``OutputError`` (74) when the database cannot be written."""
    actor = check_actor(actor)
    if not plan.ledger_verified:
        first = plan.ledger_problems[0] if plan.ledger_problems else "unknown"
        raise RetentionRefused(
            plan.database,
            "the ledger must verify before anything is removed (see: hallo3-gate ledger verify); nothing was removed",
            first,
        )
    if plan.empty:
        return RetentionResult(plan, None, None, 0, (), (), ())
    todo: list[RunDirectory] = []
    skipped: list[tuple[str, str]] = []
    view = LedgerView.of(Ledger(plan.db))
    for d in plan.to_remove:  # still what the plan saw? (another apply, or a person, may have acted since)
        now = inspect_directory(d.path, d.area, view, plan.cutoff)
        if now is not None and now.action == "remove" and now.run_id == d.run_id:
            todo.append(d)
        else:
            skipped.append((str(d.path), "changed since the plan: " + (now.reason if now else "no longer expired")))
    if not todo and not plan.removed_count:
        return RetentionResult(plan, None, None, 0, (), (), tuple(skipped))
    ledger = Ledger(plan.db)
    record = json.dumps(plan.record(todo), sort_keys=True, ensure_ascii=True)
    with plan.db.transaction() as tx:
        row = ledger.append_in(
            tx,
            kind=KIND,
            run_id="",
            created_at=datetime.now(UTC).isoformat(),
            decision=DECISION,
            actor=actor,
            output_path="",
            output_sha256="",
            payload_hex=None,
            record_json=record,
        )
        removed_rows = 0
        if plan.removed_count:
            assert plan.removed_first_seq is not None and plan.removed_through_seq is not None
            assert plan.removed_last_hash is not None
            try:
                removed_rows = ledger.remove_prefix_in(
                    tx,
                    first_seq=plan.removed_first_seq,
                    through_seq=plan.removed_through_seq,
                    last_hash=plan.removed_last_hash,
                )
            except ValueError as exc:
                raise RetentionRefused(
                    plan.database, "the ledger must still hold the planned rows; nothing was removed (plan again)", exc
                ) from None
            if removed_rows != plan.removed_count:
                raise RetentionRefused(
                    plan.database,
                    "the ledger must still hold exactly the planned rows; nothing was removed (plan again)",
                    f"{removed_rows} rows instead of {plan.removed_count}",
                )
    removed, failed = _remove_directories(todo)
    return RetentionResult(plan, row.seq, row.row_hash, removed_rows, removed, failed, tuple(skipped))


def _remove_directories(todo: list[RunDirectory]) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    removed: list[str] = []
    failed: list[tuple[str, str]] = []
    for d in todo:
        trash = d.path if d.path.name.startswith(TRASH_PREFIX) else d.path.with_name(TRASH_PREFIX + d.path.name)
        try:
            if trash != d.path:
                if os.path.lexists(trash):
                    raise FileExistsError(0, "a directory being removed has its name", str(trash))
                os.rename(d.path, trash)  # renames the entry itself: a symlink swapped in is moved, never followed
            if os.path.islink(trash) or not os.path.isdir(trash):
                raise NotADirectoryError(0, "no longer a directory (left in place)", str(trash))
            shutil.rmtree(trash)  # never follows symlinks inside it
            removed.append(str(d.path))
        except OSError as exc:
            failed.append((str(d.path), exc.strerror or type(exc).__name__))
    return tuple(removed), tuple(failed)


# --- status for the compliance matrix ----------------------------------------------------------------------------------


def retention_status(db: Database | Ledger, config: GateConfig) -> dict[str, Any]:
    """The retention in force and the ledger's state, for the compliance matrix: ``days`` and ``source`` (from
    ``config``), ``ledger_verified`` (the whole chain, with a removed prefix accepted only as recorded),
    ``oldest_row`` ({seq, created_at} or None) and ``last_apply`` (the newest retention row: seq, created_at, actor,
    removed_through_seq, removed_count, cutoff, days; or None)."""
    ledger = db if isinstance(db, Ledger) else Ledger(db)
    check = ledger.verify()
    oldest: dict[str, Any] | None = None
    with contextlib.closing(ledger.scan(("seq", "created_at"))) as rows:
        for row in rows:
            oldest = {"seq": row.seq, "created_at": row.created_at}
            break
    applies = ledger.rows(KIND)
    last: dict[str, Any] | None = None
    if applies:
        row = applies[-1]
        try:
            rec = json.loads(row.record_json)
        except ValueError:
            rec = {}
        rec = rec if isinstance(rec, dict) else {}
        last = {"seq": row.seq, "created_at": row.created_at, "actor": row.actor}
        last |= {k: rec.get(k) for k in ("removed_through_seq", "removed_count", "cutoff", "days")}
    return {
        "days": config.retention_days,
        "source": config.retention_source,
        "ledger_verified": check.ok,
        "oldest_row": oldest,
        "last_apply": last,
    }


# --- small helpers -----------------------------------------------------------------------------------------------------


def _parse_time(text: object) -> datetime | None:
    """A timezone-aware time from ISO 8601 text (``Z`` or an offset); None for anything else (naive: unknown zone)."""
    if not isinstance(text, str):
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    if at.tzinfo is None or at.utcoffset() is None:
        return None
    return at


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def relative(path: Path, base: Path | None) -> str:
    if base is not None:
        with contextlib.suppress(ValueError):
            return str(path.relative_to(base))
    return str(path)


def _kind(mode: int) -> str:
    return file_kind(mode)
