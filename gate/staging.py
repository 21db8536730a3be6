"""The gate's directories under ``--out``, and the rule that it only ever touches what it made there.

Layout::

    staging/<run_id>/          work in progress (marked and locked while its run lives)
    pending/<run_id>/          what passed every automated check and waits for people (the policy's [review])
    released/<run_id>/         what passed: video.mp4, record.json and the reports (+ review.json after review)
    quarantine/<run_id>/       what did not (it carries watermark and manifest too)

Ownership: a run creates its staging directory under the hidden name ``.new-<run_id>``, creates the marker file
``.hallo3-gate-run`` in it (JSON naming the run id and the ledger the run records into: ``marker_ledger``, an SQLite
file's absolute path or a PostgreSQL URL without its password — never a secret on disk), takes an exclusive
``flock`` on the marker, and only then renames the directory to ``staging/<run_id>``. The lock lives as long as the
run's process (the kernel drops it when the process dies).

Recovery (``recover``, run at the start of every gate run in the same ``--out``) considers an entry of ``staging/``
only when all of these hold, and leaves everything else exactly as it is:

* it is a directory itself (``lstat``; a symlink is never followed, whatever it points to);
* its name is a run id, or ``.new-`` and a run id;
* its marker is a regular file (opened with ``O_NOFOLLOW`` relative to the directory) naming that run id and the
  ledger this run uses (``same_ledger``: the same SQLite file, or the same PostgreSQL URL once passwords are
  removed);
* its lock can be taken (no live run holds it).

Such a directory is finished or rolled back deterministically: no ledger row for its run → it is removed (the video
never left); a row → its ``record.json`` is completed with the ledger entry (one small write) and the directory
becomes ``released/<run_id>`` or ``quarantine/<run_id>`` by one rename. Recovery never re-renders a report that
exists (a row is appended only after every report is in staging), so it costs a few small file operations per
directory; a directory it cannot finish (disk still full, a target that already exists) is left for a later run and
named in its notes.

Human review (``settle``): a pending run leaves ``pending/<run_id>`` once its ledger state is final (a ``release`` row
→ released, a ``reject`` row → quarantined: ``run_state``). ``settle`` writes ``review.json`` and the record with the
review and the final decision, re-renders every report from it, and moves the directory by one rename; the video is
never touched (its sha256 is checked against the record first). It locks the directory (``flock`` on the directory
itself) while it works, so the review service and a gate run's recovery never settle one run twice at once, and it
is idempotent: a settle that died half way is finished by calling it again — as ``recover`` does for every pending
directory whose ledger state is final (its record must name this ledger). ``pending/`` is made when the first run
goes there, never through a symlink.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gate.database import display_url, is_postgres, resolve, sqlite_path
from gate.ledger import Ledger, Row
from reports import schema as S
from reports.atomic import file_kind, fsync_directory, write_text_atomic
from reports.errors import Hallo3Error, InputError, OutputError, ProvenanceError, UsageError
from reports.hashing import sha256_file
from reports.write import REPORT_FILES, write_reports

MARKER = ".hallo3-gate-run"
NEW_PREFIX = ".new-"
VIDEO_NAME = "video.mp4"
RECORD_NAME = REPORT_FILES["json"]
REVIEW_NAME = "review.json"
STAGING, PENDING, RELEASED, QUARANTINE = "staging", "pending", "released", "quarantine"
REVIEW_KINDS = ("run", "approve", "reject", "release", "comment")  # the ledger row kinds of a run's review
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_MARKER_MAX_BYTES = 4096


def check_run_id(run_id: str) -> str:
    """A run id names directories: letters, digits, ``.``, ``_``, ``-`` (first a letter or digit), 128 at most."""
    if not isinstance(run_id, str) or RUN_ID.fullmatch(run_id) is None:
        raise UsageError(
            "run_id", "must be 1-128 letters, digits, '.', '_' or '-' starting with a letter or digit", run_id
        )
    return run_id


@dataclass(frozen=True)
class Layout:
    """The directories of one ``--out`` (``pending`` is made only when a run goes there)."""

    out_dir: Path

    @property
    def staging(self) -> Path:
        return self.out_dir / STAGING

    @property
    def pending(self) -> Path:
        return self.out_dir / PENDING

    @property
    def released(self) -> Path:
        return self.out_dir / RELEASED

    @property
    def quarantine(self) -> Path:
        return self.out_dir / QUARANTINE

    @property
    def directories(self) -> tuple[Path, Path, Path]:
        return self.staging, self.released, self.quarantine

    def final_dir(self, decision: str, run_id: str) -> Path:
        """Where a run with this decision lives: released/, pending/, else quarantine/ (fail closed)."""
        if decision == "released":
            return self.released / run_id
        if decision == "pending":
            return self.pending / run_id
        return self.quarantine / run_id


# --- the ledger a run records into: a locator (an SQLite file, or a PostgreSQL URL) ----------------------------------


def ledger_locator(ledger: str | os.PathLike[str] | None) -> str:
    """The locator of the ledger (``gate.database.resolve``): the argument, else ``$HALLO3_GATE_DB``, else
    ``$HALLO3_GATE_LEDGER``, else the default SQLite file."""
    return resolve(ledger)


def marker_ledger(ledger: str | os.PathLike[str]) -> str:
    """How a staging marker and a record name the ledger: an SQLite file's absolute path; a PostgreSQL URL without
    its password (``gate.database.display_url``) — so nothing written to disk holds a secret."""
    locator = os.fspath(ledger)
    if is_postgres(locator):
        return display_url(locator)
    return str(sqlite_path(locator).absolute())


def same_ledger(named: str | os.PathLike[str], ledger: str | os.PathLike[str]) -> bool:
    """Whether ``named`` (from a marker or a record) is the ledger ``ledger``: the same SQLite file (or the same
    absolute path when one does not exist), or PostgreSQL URLs equal once their passwords are removed."""
    a, b = os.fspath(named), os.fspath(ledger)
    if is_postgres(a) or is_postgres(b):
        return is_postgres(a) and is_postgres(b) and display_url(a) == display_url(b)
    return _same_file(sqlite_path(a), sqlite_path(b))


def existing_ledger(ledger: str | os.PathLike[str]) -> Ledger | None:
    """The ledger, opened read-only, or None where it holds nothing yet: no SQLite file, or a PostgreSQL database
    without the hallo3-gate tables (both are created by the first append). Writes nothing. Raises what
    ``Database.open`` raises otherwise: not a hallo3-gate database → ``InputError`` (4); unreachable or unreadable →
    ``OutputError`` (74, naming a PostgreSQL URL without its password)."""
    locator = os.fspath(ledger)
    if not is_postgres(locator):
        return Ledger(locator) if os.path.lexists(sqlite_path(locator)) else None
    try:
        return Ledger(locator)
    except UsageError:  # connected, but no hallo3-gate tables yet (the only UsageError of opening PostgreSQL)
        return None


# --- before anything is written -------------------------------------------------------------------------------------


def check_layout(out_dir: Path) -> Layout:
    """Read-only checks of ``--out`` (nothing is created): it is a directory or can be made one, the gate's own
    subdirectories are real directories (not symlinks, files ...) where they exist, and the place is writable.

    ``--out`` itself may be a symlink to a directory (the user's choice of where outputs go); the subdirectories the
    gate manages may not. Raises ``UsageError`` (exit 2) for a wrong kind of file, ``OutputError`` (exit 74) for a
    place that cannot be written."""
    layout = Layout(Path(out_dir))
    if os.path.lexists(layout.out_dir):
        try:
            st = os.stat(layout.out_dir)
        except OSError as exc:  # a dangling symlink, a loop, no permission to look
            raise OutputError(str(layout.out_dir), "--out must be a usable directory", exc.strerror) from None
        if not stat.S_ISDIR(st.st_mode):
            raise UsageError(str(layout.out_dir), "--out must be a directory", file_kind(st.st_mode))
    for sub in (*layout.directories, layout.pending):
        if os.path.lexists(sub):
            mode = os.lstat(sub).st_mode
            if not stat.S_ISDIR(mode):
                raise UsageError(
                    str(sub), "must be a directory the gate made (never a symlink or a file)", file_kind(mode)
                )
    for place in (layout.out_dir, *layout.directories):
        existing = nearest_existing(place)
        if not os.access(existing, os.W_OK | os.X_OK):
            raise OutputError(str(layout.out_dir), "output directory must be writable", f"{existing} is not writable")
    return layout


def nearest_existing(path: str | os.PathLike[str]) -> Path:
    """``path`` or its nearest ancestor that exists (where a new file or directory would be made)."""
    path = Path(os.path.abspath(path))
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def make_layout(layout: Layout) -> list[Path]:
    """Create the directories that do not exist yet (and ``--out``'s missing parents); return those created, for
    ``remove_if_empty`` should a later setup step fail."""
    created: list[Path] = []
    try:
        for place in (layout.out_dir, *layout.directories):
            todo: list[Path] = []
            p = Path(os.path.abspath(place))
            while not os.path.lexists(p):
                todo.append(p)
                p = p.parent
            for q in reversed(todo):
                try:
                    os.mkdir(q)
                    created.append(q)
                except FileExistsError:  # a concurrent run made it first
                    pass
        for sub in layout.directories:  # made concurrently by someone else as something else?
            mode = os.lstat(sub).st_mode
            if not stat.S_ISDIR(mode):
                raise UsageError(
                    str(sub), "must be a directory the gate made (never a symlink or a file)", file_kind(mode)
                )
    except OSError as exc:
        remove_if_empty(created)
        where = exc.filename or layout.out_dir
        raise OutputError(str(where), "output directory must be creatable", exc.strerror) from None
    except BaseException:
        remove_if_empty(created)
        raise
    return created


def remove_if_empty(created: list[Path]) -> None:
    """Undo ``make_layout`` after a later setup step failed: remove what it created, if still empty."""
    for p in reversed(created):
        with contextlib.suppress(OSError):
            os.rmdir(p)


# --- a run's own staging directory ----------------------------------------------------------------------------------


def _marker_text(run_id: str, ledger: str | os.PathLike[str]) -> str:
    return json.dumps({"run_id": run_id, "ledger": marker_ledger(ledger)}, sort_keys=True) + "\n"


@contextlib.contextmanager
def new_staging(layout: Layout, run_id: str, ledger: str | os.PathLike[str]) -> Iterator[Path]:
    """Create ``staging/<run_id>`` marked as this run's and locked; hold the lock while the run works in it.

    The directory is made under a hidden name, marked and locked, then renamed into place, so recovery never sees
    it unlocked (a lock follows the renamed directory). A failure before the rename removes the hidden directory."""
    hidden = layout.staging / f"{NEW_PREFIX}{run_id}"
    staging = layout.staging / run_id
    if os.path.lexists(staging):
        raise OutputError(str(staging), "a run id is used once: its staging directory must not exist", "exists")
    try:
        os.mkdir(hidden)
    except OSError as exc:
        raise OutputError(str(hidden), "a staging directory must be creatable", exc.strerror) from None
    fd = -1
    try:
        fd = os.open(hidden / MARKER, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, _marker_text(run_id, ledger).encode())
        os.fsync(fd)
        os.rename(hidden, staging)
    except BaseException as exc:
        if fd >= 0:
            os.close(fd)
        shutil.rmtree(hidden, ignore_errors=True)
        if isinstance(exc, OSError):
            raise OutputError(str(hidden), "a staging directory must be creatable", exc.strerror) from None
        raise
    try:
        yield staging
    finally:
        os.close(fd)


def discard(staging: Path) -> None:
    """Remove a staging directory this process holds the lock of (rmtree never follows symlinks inside it)."""
    shutil.rmtree(staging)


def publish(staging: Path, final: Path) -> None:
    """One atomic rename: the video, its record and its reports arrive together (or not at all)."""
    if os.path.lexists(final):
        raise OutputError(str(final), "must not exist: a run is published once", "already exists")
    with contextlib.suppress(FileExistsError):
        os.mkdir(final.parent)  # released/ or quarantine/, if a failed run removed it while empty
    mode = os.lstat(final.parent).st_mode
    if not stat.S_ISDIR(mode):
        raise UsageError(
            str(final.parent), "must be a directory the gate made (never a symlink or a file)", file_kind(mode)
        )
    os.rename(staging, final)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(final / MARKER)
    fsync_directory(final.parent)
    fsync_directory(staging.parent)


def complete_record(staging: Path, row: Row, ledger_name: str | os.PathLike[str]) -> S.GateRecord:
    """The run's record with its ledger entry, as ``record.json`` in ``staging`` (written only if it differs).
    ``ledger_name`` is the ledger as the record names it: ``Ledger.display`` (an SQLite path; a PostgreSQL URL
    without its password).

    The record comes from the ledger row itself, so a run and a later recovery write the same bytes. A pending run's
    review gets the row as its submission event (the record was written before the row existed)."""
    record = S.GateRecord.from_json(row.record_json)
    if record.review is not None:
        submission = record.review.events[0].model_copy(update={"seq": row.seq, "row_hash": row.row_hash})
        review = record.review.model_copy(update={"events": [submission, *record.review.events[1:]]})
        record = S.GateRecord.model_validate({**record.model_dump(), "review": review.model_dump()})
    record = record.with_ledger(
        S.LedgerRecord(seq=row.seq, row_hash=row.row_hash, prev_hash=row.prev_hash, path=os.fspath(ledger_name))
    )
    text = record.to_json()
    target = staging / RECORD_NAME
    try:
        current = target.read_text(encoding="utf-8") if not target.is_symlink() else None
    except (OSError, UnicodeDecodeError):
        current = None
    if current != text:
        write_text_atomic(target, text)
    return record


# --- human review: the run's state in the ledger, and settling a pending run ----------------------------------------

FinalState = Literal["released", "quarantined"]


def run_state(rows: Sequence[Row]) -> S.ReviewState | None:
    """The run's current state from its ledger rows (``Ledger.events``): its ``run`` row's decision, and for a pending
    run the fold of its review rows (``reports.schema.review_state``). None when the ledger has no ``run`` row."""
    run = next((r for r in rows if r.kind == "run"), None)
    if run is None:
        return None
    if run.decision != "pending":
        return "released" if run.decision == "released" else "quarantined"
    return S.review_state(r.kind for r in rows if r.seq >= run.seq)


def comment_frame(record_json: str | None) -> int | None:
    """The frame a ``comment`` row's ``record_json`` pins it to (None: not pinned)."""
    if not record_json:
        return None
    frame = json.loads(record_json).get("frame")
    return frame if isinstance(frame, int) and not isinstance(frame, bool) else None


def review_event(row: Row | Mapping[str, Any]) -> S.ReviewEvent:
    """A ledger row of a run's review as the record states it (a ``Row``, or a dict of its columns where a comment's
    pinned frame is already under ``frame`` or still in ``record_json``)."""
    f = dict(row) if isinstance(row, Mapping) else row.__dict__
    frame = None
    if f["kind"] == "comment":
        frame = f["frame"] if "frame" in f else comment_frame(f.get("record_json"))
    return S.ReviewEvent(
        seq=f["seq"],
        kind=f["kind"],
        actor=f["actor"],
        role=f["role"],
        reason=f["reason"],
        comment=f["comment"],
        at=f["created_at"],
        row_hash=f["row_hash"],
        frame=frame,
    )


def review_from_rows(submitted: S.ReviewRecord, rows: Sequence[Row]) -> S.ReviewRecord:
    """The review of a run from its ledger rows; the rules (approvals, four eyes, reason codes) and the submitter are
    the ones its pending record was submitted with (``submitted``)."""
    events = [review_event(r) for r in rows if r.kind in REVIEW_KINDS]
    state = S.review_state(e.kind for e in events)
    return submitted.model_copy(update={"events": events, "state": state})


def settle(layout: Layout, run_id: str, review: S.ReviewRecord, state: FinalState) -> Path:
    """Move the pending run ``run_id`` to ``released/`` or ``quarantine/`` after people decided (its ledger rows are
    committed first); returns the final directory.

    Writes ``review.json`` (``review``) and ``record.json`` with the review and the final decision (released: exit
    code 0; quarantined: 1 with the reason "rejected by <name>: <code>"), re-renders report.html, report.pdf,
    junit.xml and summary.md from it, then renames the directory once. The video is not touched; its sha256 must
    still be the recorded one (else ``ProvenanceError``, exit 5, and the run stays pending). Idempotent: called
    again after a crash it finishes the work; called for a run already settled to ``state`` it returns at once."""
    check_run_id(run_id)
    if state not in ("released", "quarantined"):
        raise UsageError("state", "a settled run is released or quarantined", state)
    if review.state != state:
        raise UsageError("review.state", f"must be the state the run is settled to ({state})", review.state)
    src, final = layout.pending / run_id, layout.final_dir(state, run_id)
    try:
        fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return _already_settled(src, final, state)
    except OSError as exc:
        raise OutputError(str(src), "a pending run must be a directory the gate made", exc.strerror) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a concurrent settle of the same run finishes first
        if not _is_same_dir(fd, src):  # it did: the directory was renamed away while this one waited
            return _already_settled(src, final, state)
        write_settled(src, final, review, state)
        publish(src, final)
    finally:
        os.close(fd)
    return final


def _is_same_dir(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.lstat(path).st_ino
    except FileNotFoundError:
        return False


def _already_settled(src: Path, final: Path, state: str) -> Path:
    try:
        done = S.GateRecord.from_json((final / RECORD_NAME).read_bytes()).decision == state
    except (OSError, ValueError):
        done = False
    if done and os.path.isfile(final / REVIEW_NAME):
        return final
    raise OutputError(str(src), f"a pending run's directory must exist to be {state}", "not found")


def settled_record(record: S.GateRecord, final: Path, review: S.ReviewRecord, state: FinalState) -> S.GateRecord:
    """The record of a pending run once people decided: the review, the final decision and the final video path."""
    if record.review is None or record.decision not in ("pending", state):
        raise InputError(
            str(final / RECORD_NAME),
            "a run to settle must have been submitted for review",
            f"decision {record.decision}",
        )
    if state == "released":
        exit_code, reasons = 0, []
    else:
        by = review.decided_by
        who = f"{by.actor or 'unknown'}: {by.reason or 'no reason code'}" if by is not None else "unknown"
        exit_code, reasons = 1, [f"rejected by {who}"]
    output = {**record.output.model_dump(), "path": str(final / VIDEO_NAME)}
    update = {"decision": state, "exit_code": exit_code, "reasons": reasons, "output": output}
    return S.GateRecord.model_validate({**record.model_dump(), **update, "review": review.model_dump()})


def write_settled(d: Path, final: Path, review: S.ReviewRecord, state: FinalState) -> S.GateRecord:
    """review.json, record.json and the reports of a settled run, in its pending directory ``d`` (before the rename)."""
    try:
        record = S.GateRecord.from_json((d / RECORD_NAME).read_bytes())
    except OSError as exc:
        raise OutputError(str(d / RECORD_NAME), "a pending run's record must be readable", exc.strerror) from None
    except ValueError as exc:
        raise InputError(
            str(d / RECORD_NAME), "a pending run's record must be a gate record", type(exc).__name__
        ) from None
    video = d / VIDEO_NAME
    if not os.path.isfile(video) or os.path.islink(video) or sha256_file(video) != record.output.sha256:
        raise ProvenanceError(
            str(video), "a pending run's video must be the one signed and recorded", "missing or changed; not settled"
        )
    settled = settled_record(record, final, review, state)
    text = json.dumps(review.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
    for leftover in d.glob(".*.part"):  # a temporary file of a settle that died half way
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
    write_text_atomic(d / REVIEW_NAME, text)
    write_reports(settled, d, step_summary=False)
    return settled


# --- recovery --------------------------------------------------------------------------------------------------------


def _claim(dir_fd: int) -> tuple[int, dict[str, str]] | None:
    """Lock the marker in the directory ``dir_fd``; (its fd, holding the lock, and content) when it is a regular file
    holding a JSON object with string ``run_id`` and ``ledger`` and no live run holds it; None otherwise."""
    try:
        fd = os.open(MARKER, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if a live run holds it
            data = json.loads(os.read(fd, _MARKER_MAX_BYTES).decode("utf-8"))
            if isinstance(data, dict) and all(isinstance(data.get(k), str) for k in ("run_id", "ledger")):
                return fd, data
    except (OSError, ValueError):
        pass
    os.close(fd)
    return None


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def recover(layout: Layout, ledger_path: str | os.PathLike[str]) -> list[str]:
    """Finish or roll back the staging directories of runs that died; returns a line per directory handled.

    ``ledger_path`` is the locator of the ledger this run records into (an SQLite file or a PostgreSQL URL); a ledger
    that does not exist yet (``existing_ledger``) holds no row, so a marked directory of a run that named it is
    rolled back."""
    notes: list[str] = []
    ledger = existing_ledger(ledger_path)
    try:
        entries = sorted(os.scandir(layout.staging), key=lambda e: e.name)
    except FileNotFoundError:
        return notes
    except OSError as exc:
        raise OutputError(str(layout.staging), "staging directory must be readable", exc.strerror) from None
    for entry in entries:
        note = _recover_entry(layout, ledger_path, ledger, entry)
        if note:
            notes.append(note)
    return notes + _recover_pending(layout, ledger_path, ledger)


def _recover_pending(layout: Layout, ledger_path: str | os.PathLike[str], ledger: Ledger | None) -> list[str]:
    """Settle the pending directories whose run the ledger says is released or quarantined (a settle that died, or
    people decided while no settle could run); the others stay pending."""
    if ledger is None:
        return []
    try:
        entries = sorted(os.scandir(layout.pending), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise OutputError(str(layout.pending), "pending directory must be readable", exc.strerror) from None
    notes = []
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False) or RUN_ID.fullmatch(entry.name) is None:
            continue  # not the gate's
        try:
            note = _settle_if_decided(layout, ledger_path, ledger, entry.name)
        except (OSError, Hallo3Error) as exc:
            why = exc.one_line() if isinstance(exc, Hallo3Error) else (exc.strerror or type(exc).__name__)
            note = f"{entry.name}: could not settle a reviewed run, left pending for a later run ({why})"
        if note:
            notes.append(note)
    return notes


def _settle_if_decided(layout: Layout, ledger_path: str | os.PathLike[str], ledger: Ledger, run_id: str) -> str | None:
    rows = ledger.events(run_id)
    state = run_state(rows)
    if state not in ("released", "quarantined"):
        return None  # still pending, or a run this ledger does not know
    record = S.GateRecord.from_json((layout.pending / run_id / RECORD_NAME).read_bytes())
    if record.ledger is None or record.review is None or not same_ledger(str(record.ledger.path), ledger_path):
        return f"{run_id}: left pending (its record names another ledger, or no review)"
    final = settle(layout, run_id, review_from_rows(record.review, rows), state)
    return f"{run_id}: finished a reviewed run ({state}: {final / VIDEO_NAME})"


def _recover_entry(
    layout: Layout, ledger_path: str | os.PathLike[str], ledger: Ledger | None, entry: os.DirEntry[str]
) -> str | None:
    name = entry.name
    run_id = name.removeprefix(NEW_PREFIX)
    try:
        if not entry.is_dir(follow_symlinks=False) or RUN_ID.fullmatch(run_id) is None:
            return None  # not the gate's: a file, a symlink, a foreign name
        dir_fd = os.open(entry.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        claim = _claim(dir_fd)
        if claim is None:
            return None  # unmarked, not a marker we wrote, or held by a live run
        lock_fd, marker = claim
        try:
            if marker["run_id"] != run_id or os.fstat(dir_fd).st_ino != os.lstat(entry.path).st_ino:
                return None  # marked for another name, or renamed away (published) since it was listed
            if not same_ledger(marker["ledger"], ledger_path):
                return f"{name}: left in place (its run records into another ledger: {marker['ledger']})"
            return _finish_or_roll_back(layout, ledger, Path(entry.path), run_id, hidden=name != run_id)
        except (OSError, Hallo3Error) as exc:
            why = exc.one_line() if isinstance(exc, Hallo3Error) else (exc.strerror or type(exc).__name__)
            return f"{name}: could not finish an interrupted run, left for a later run ({why})"
        finally:
            os.close(lock_fd)
    finally:
        os.close(dir_fd)


def _finish_or_roll_back(layout: Layout, ledger: Ledger | None, d: Path, run_id: str, *, hidden: bool) -> str:
    row = ledger.find_by_run(run_id) if ledger is not None else None
    if ledger is None or row is None:
        discard(d)
        if hidden:
            return f"{d.name}: removed a run that died while starting"
        return f"{run_id}: removed an incomplete run (no ledger row; nothing was released)"
    final = layout.final_dir(row.decision, run_id)
    if hidden or os.path.lexists(final):
        return f"{d.name}: left in place ({final} already exists or the directory was never named)"
    if not (d / VIDEO_NAME).is_file():
        return f"{run_id}: left in place (its ledger row says {row.decision} but {VIDEO_NAME} is missing)"
    for leftover in d.glob(".*.part"):  # a temporary file of an atomic write the killed run never finished
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
    record = complete_record(d, row, ledger.display)
    if any(not (d / n).is_file() for n in REPORT_FILES.values()):
        write_reports(record, d, step_summary=False)  # only if one was removed by hand: bounded by the policy cap
    publish(d, final)
    return f"{run_id}: finished an interrupted run ({row.decision}: {final / VIDEO_NAME})"
