"""The tamper-evident ledger: an append-only SQLite table whose every row carries the hash of the previous one.

``row_hash = sha256(canonical JSON of the row's fields, including prev_hash)``; the first row's ``prev_hash`` is 64
zeros. ``verify`` recomputes the chain and names the first row that was edited, deleted or reordered (a deletion
breaks the successor's ``prev_hash`` link or leaves a gap in ``seq``; an edit changes a row's hash; a reorder does
both). Truncating the newest rows leaves a valid shorter chain: anchor a head hash elsewhere (``head()``; every
record stores the row hash it got) and pass it as ``expect_head``; verify then fails if that row is gone.

Opening: ``Ledger(path)`` opens an existing ledger and never writes to a file it did not create; ``Ledger(path,
create=True)`` also creates one where nothing exists (atomically: a complete empty ledger appears at ``path`` or
nothing does; an existing file is never replaced). Errors, each one line naming the file:

* no file at ``path`` (and not ``create``) → ``UsageError`` (exit 2: the argument names nothing);
* something that is not a hallo3-gate ledger — a 0-byte file, not SQLite, a directory or FIFO, another application's
  ``ledger`` table with other columns → ``InputError`` (exit 4: a bad input file); it is left untouched;
* the file or its directory cannot be written (disk full, read-only, permission) → ``OutputError`` (exit 74).

Concurrency: WAL journal and ``BEGIN IMMEDIATE`` transactions, so concurrent gate runs serialise their appends and
never lose or interleave a record. Lookup by watermark payload lets ``verify`` trace a stripped video to its record.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import sqlite3
import stat
import urllib.parse
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reports.atomic import file_kind, fsync_directory
from reports.errors import InputError, OutputError, UsageError

GENESIS = "0" * 64
APPLICATION_ID = 0x48334C47  # "H3LG" in the SQLite header of a ledger created here (older ledgers carry 0)
COLUMNS = (
    "seq",
    "run_id",
    "created_at",
    "decision",
    "output_path",
    "output_sha256",
    "payload_hex",
    "record_sha256",
    "record_json",
    "prev_hash",
    "row_hash",
)
SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    decision TEXT NOT NULL,
    output_path TEXT NOT NULL,
    output_sha256 TEXT NOT NULL,
    payload_hex TEXT,
    record_sha256 TEXT NOT NULL,
    record_json TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    row_hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_payload ON ledger(payload_hex);
"""
# every column but the record itself (its sha256 is hashed instead) and the row's own hash
HASHED = tuple(c for c in COLUMNS if c not in ("record_json", "row_hash"))


def default_path() -> Path:
    env = os.environ.get("HALLO3_GATE_LEDGER")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "hallo3-gate" / "ledger.sqlite"


def row_hash(fields: dict[str, Any]) -> str:
    canon = json.dumps({k: fields[k] for k in HASHED}, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canon.encode()).hexdigest()


def record_digest(record_json: str) -> str:
    return hashlib.sha256(record_json.encode()).hexdigest()


@dataclass(frozen=True)
class Row:
    seq: int
    run_id: str
    created_at: str
    decision: str
    output_path: str
    output_sha256: str
    payload_hex: str | None
    record_sha256: str
    record_json: str
    prev_hash: str
    row_hash: str

    @property
    def record(self) -> dict[str, Any]:
        return json.loads(self.record_json)


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    rows: int
    head: str
    problems: tuple[str, ...]


class Ledger:
    """An existing ledger file (``create=True``: created first where nothing exists). See the module docstring."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, create: bool = False) -> None:
        self.path = Path(path) if path is not None else default_path()
        if create and not os.path.lexists(self.path):
            self._create()
        self._check()

    # --- opening ------------------------------------------------------------------------------------------------

    def _create(self) -> None:
        """Build a complete empty ledger beside ``path`` and link it into place: it appears whole or not at all, and
        a file that appeared meanwhile (another run creating it) is kept, never replaced."""
        parent = self.path.parent
        tmp = parent / f".{self.path.name}.{secrets.token_hex(4)}.new"
        try:
            parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666))
            with closing(sqlite3.connect(tmp, isolation_level=None)) as con:
                con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                con.executescript(SCHEMA)
                con.execute("PRAGMA journal_mode=WAL")
            _fsync_file(tmp)
            _link_no_replace(tmp, self.path)
            fsync_directory(parent)
        except (OSError, sqlite3.Error) as exc:
            raise OutputError(str(self.path), "a new ledger must be creatable here", _why(exc)) from None
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(OSError):
                    os.unlink(f"{tmp}{suffix}")

    def _check(self) -> None:
        """Raise unless ``path`` is a hallo3-gate ledger; reads only (a read-only SQLite connection)."""
        where = str(self.path)
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise UsageError(where, "ledger file must exist", "not found") from None
        except OSError as exc:
            raise InputError(where, "ledger file must be readable", _why(exc)) from None
        if not stat.S_ISREG(st.st_mode):
            raise InputError(where, "ledger must be a regular file", file_kind(st.st_mode))
        if st.st_size == 0:
            raise InputError(where, "must be a hallo3-gate ledger", "an empty file (0 bytes)")
        try:
            with self._connect(read_only=True) as con:
                app_id = con.execute("PRAGMA application_id").fetchone()[0]
                cols = tuple(r[1] for r in con.execute("PRAGMA table_info(ledger)"))
        except sqlite3.Error as exc:
            raise _sqlite_failure(self.path, exc, "must be a hallo3-gate ledger (an SQLite database)") from None
        if app_id not in (0, APPLICATION_ID):
            raise InputError(where, "must be a hallo3-gate ledger", f"another application's database (id {app_id})")
        if not cols:
            raise InputError(where, "must be a hallo3-gate ledger", "an SQLite database without a ledger table")
        if cols != COLUMNS:
            raise InputError(where, "must be a hallo3-gate ledger", f"a ledger table with columns {', '.join(cols)}")

    @contextmanager
    def _connect(self, *, read_only: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection; ``read_only`` ones can never change the file (SQLite ``mode=ro``)."""
        try:
            if read_only:
                con = sqlite3.connect(_read_only_uri(self.path), uri=True, timeout=60.0, isolation_level=None)
            else:
                con = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise _sqlite_failure(self.path, exc, "ledger must be an SQLite database we can open") from None
        with closing(con):
            con.row_factory = sqlite3.Row
            if not read_only:
                con.execute("PRAGMA synchronous=FULL")
            yield con

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        try:
            with self._connect(read_only=True) as con:
                yield con
        except sqlite3.Error as exc:
            raise _sqlite_failure(self.path, exc, "ledger must be a readable, intact SQLite database") from None

    # --- writing ------------------------------------------------------------------------------------------------

    def append(
        self,
        *,
        run_id: str,
        created_at: str,
        decision: str,
        output_path: str,
        output_sha256: str,
        payload_hex: str | None,
        record_json: str,
    ) -> Row:
        """Append one row atomically (one transaction); returns it (with its seq and hash).

        A ledger that cannot be written (disk full, read-only, locked past the timeout) raises ``OutputError`` and
        holds no part of the row."""
        try:
            with self._connect() as con:
                con.execute("BEGIN IMMEDIATE")
                try:
                    fields = self._next_row(
                        con,
                        run_id=run_id,
                        created_at=created_at,
                        decision=decision,
                        output_path=output_path,
                        output_sha256=output_sha256,
                        payload_hex=payload_hex,
                        record_json=record_json,
                    )
                    cols = ", ".join(fields)
                    con.execute(
                        f"INSERT INTO ledger ({cols}) VALUES ({', '.join('?' * len(fields))})", list(fields.values())
                    )
                    con.execute("COMMIT")
                except BaseException:
                    if con.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            con.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            rule, io_rule = "ledger must be an intact SQLite database", "ledger must be writable"
            raise _sqlite_failure(self.path, exc, rule, io_rule) from None
        return Row(**fields)

    @staticmethod
    def _next_row(con: sqlite3.Connection, **values: Any) -> dict[str, Any]:
        last = con.execute("SELECT seq, row_hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        fields: dict[str, Any] = {
            "seq": (last["seq"] + 1) if last else 1,
            **{k: values[k] for k in ("run_id", "created_at", "decision", "output_path", "output_sha256")},
            "payload_hex": values["payload_hex"],
            "record_sha256": record_digest(values["record_json"]),
            "record_json": values["record_json"],
            "prev_hash": last["row_hash"] if last else GENESIS,
        }
        fields["row_hash"] = row_hash(fields)
        return fields

    # --- reading ------------------------------------------------------------------------------------------------

    def rows(self) -> list[Row]:
        with self._reading() as con:
            return [Row(**dict(r)) for r in con.execute("SELECT * FROM ledger ORDER BY seq")]

    def last_seq(self) -> int:
        with self._reading() as con:
            r = con.execute("SELECT MAX(seq) AS seq FROM ledger").fetchone()
        return int(r["seq"] or 0)

    def find_by_payload(self, payload_hex: str) -> Row | None:
        with self._reading() as con:
            r = con.execute(
                "SELECT * FROM ledger WHERE payload_hex = ? ORDER BY seq DESC LIMIT 1", (payload_hex.lower(),)
            ).fetchone()
        return Row(**dict(r)) if r else None

    def find_by_run(self, run_id: str) -> Row | None:
        with self._reading() as con:
            r = con.execute("SELECT * FROM ledger WHERE run_id = ?", (run_id,)).fetchone()
        return Row(**dict(r)) if r else None

    def head(self) -> str:
        with self._reading() as con:
            r = con.execute("SELECT row_hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        return r["row_hash"] if r else GENESIS

    def verify(self, expect_head: str | None = None, *, since_seq: int | None = None) -> VerifyReport:
        """Recompute the chain (streaming: memory does not grow with the ledger).

        ``since_seq``: check only the rows from that one to the head, linked to the row before it (whose own fields
        are then taken on trust) — what a lookup of one row needs when the whole chain is long."""
        problems: list[str] = []
        checked = 0
        head_seen = expect_head is None
        with self._reading() as con:
            prev, expected_seq = GENESIS, 1
            start = since_seq if since_seq is not None and since_seq > 1 else 1
            if start > 1:
                anchor = con.execute(
                    "SELECT seq, row_hash FROM ledger WHERE seq < ? ORDER BY seq DESC LIMIT 1", (start,)
                ).fetchone()
                if anchor is not None:
                    prev, expected_seq = anchor["row_hash"], anchor["seq"] + 1
            for r in con.execute("SELECT * FROM ledger WHERE seq >= ? ORDER BY seq", (start,)):
                row = Row(**dict(r))
                problems += _row_problems(row, prev, expected_seq)
                head_seen = head_seen or row.row_hash == expect_head
                prev, expected_seq = row.row_hash, row.seq + 1
                checked += 1
            if not head_seen:
                head_seen = (
                    con.execute("SELECT 1 FROM ledger WHERE row_hash = ?", (expect_head,)).fetchone() is not None
                )
        if not head_seen:
            problems.append(f"anchored head {expect_head} is not in the chain — rows were removed or rewritten")
        return VerifyReport(not problems, checked, prev, tuple(problems))


def _row_problems(row: Row, prev: str, expected_seq: int) -> list[str]:
    where = f"row seq {row.seq} (run {row.run_id})"
    problems = []
    if row.seq != expected_seq:
        problems.append(f"{where}: expected seq {expected_seq} — a row was deleted")
    if row.prev_hash != prev:
        problems.append(f"{where}: prev_hash does not match the previous row's hash")
    if record_digest(row.record_json) != row.record_sha256:
        problems.append(f"{where}: record_json was edited (sha256 mismatch)")
    if row_hash(row.__dict__) != row.row_hash:
        problems.append(f"{where}: row fields were edited (row_hash mismatch)")
    return problems


_NOT_A_LEDGER = ("SQLITE_NOTADB", "SQLITE_CORRUPT", "SQLITE_FORMAT")  # the file's content (extended codes too)


def _sqlite_failure(
    path: Path,
    exc: sqlite3.Error,
    rule: str,
    io_rule: str = "ledger must be readable (SQLite also writes its -wal and -shm files beside it)",
) -> InputError | OutputError:
    """What an SQLite error means for the user: a file that is not an intact SQLite database is a bad input file
    (exit 4); anything else (disk full, I/O error, read-only, cannot open, locked past the timeout) is an I/O error on
    the ledger (exit 74)."""
    name = getattr(exc, "sqlite_errorname", None) or ""
    if name.startswith(_NOT_A_LEDGER):
        return InputError(str(path), rule, _why(exc))
    return OutputError(str(path), io_rule, _why(exc))


def _read_only_uri(path: Path) -> str:
    return "file:" + urllib.parse.quote(str(path.absolute())) + "?mode=ro"


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc) or type(exc).__name__


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _link_no_replace(src: Path, dst: Path) -> None:
    """Give ``src``'s content the name ``dst`` unless something is there (kept: another creator won the race)."""
    try:
        os.link(src, dst)
    except FileExistsError:
        return
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV):
            raise
        try:  # a file system without hard links: claim the name exclusively, then copy the bytes into it
            fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
        except FileExistsError:
            return
        with os.fdopen(fd, "wb") as out, open(src, "rb") as fh:
            out.write(fh.read())
            out.flush()
            os.fsync(out.fileno())
