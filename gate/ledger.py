"""The tamper-evident ledger: an append-only SQLite table whose every row carries the hash of the previous one.

``row_hash = sha256(canonical JSON of the row's fields, including prev_hash)``; the first row's ``prev_hash`` is 64
zeros. ``verify`` recomputes the chain and names the first row that was edited, deleted or reordered (a deletion
breaks the successor's ``prev_hash`` link or leaves a gap in ``seq``; an edit changes a row's hash; a reorder does
both). Truncating the newest rows leaves a valid shorter chain: anchor a head hash elsewhere (``head()``; every
record stores the row hash it got) and pass it as ``expect_head``; verify then fails if that row is gone.

Concurrency: WAL journal and ``BEGIN IMMEDIATE`` transactions, so concurrent gate runs serialise their appends and
never lose or interleave a record. Lookup by watermark payload lets ``verify`` trace a stripped video to its record.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reports.errors import UsageError

GENESIS = "0" * 64
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
HASHED = (
    "seq",
    "run_id",
    "created_at",
    "decision",
    "output_path",
    "output_sha256",
    "payload_hex",
    "record_sha256",
    "prev_hash",
)


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
    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            con = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise UsageError(str(self.path), "ledger must be an SQLite database we can open", exc) from None
        with closing(con):
            con.row_factory = sqlite3.Row
            try:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("PRAGMA synchronous=FULL")
            except sqlite3.DatabaseError as exc:
                raise UsageError(str(self.path), "ledger must be an SQLite database", exc) from None
            yield con

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
        """Append one row atomically; returns it (with its seq and hash)."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                last = con.execute("SELECT seq, row_hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
                fields: dict[str, Any] = {
                    "seq": (last["seq"] + 1) if last else 1,
                    "run_id": run_id,
                    "created_at": created_at,
                    "decision": decision,
                    "output_path": output_path,
                    "output_sha256": output_sha256,
                    "payload_hex": payload_hex,
                    "record_sha256": record_digest(record_json),
                    "record_json": record_json,
                    "prev_hash": last["row_hash"] if last else GENESIS,
                }
                fields["row_hash"] = row_hash(fields)
                cols = ", ".join(fields)
                con.execute(
                    f"INSERT INTO ledger ({cols}) VALUES ({', '.join('?' * len(fields))})", list(fields.values())
                )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return Row(**fields)

    def rows(self) -> list[Row]:
        with self._connect() as con:
            return [Row(**dict(r)) for r in con.execute("SELECT * FROM ledger ORDER BY seq")]

    def find_by_payload(self, payload_hex: str) -> Row | None:
        with self._connect() as con:
            r = con.execute(
                "SELECT * FROM ledger WHERE payload_hex = ? ORDER BY seq DESC LIMIT 1", (payload_hex.lower(),)
            ).fetchone()
        return Row(**dict(r)) if r else None

    def find_by_run(self, run_id: str) -> Row | None:
        with self._connect() as con:
            r = con.execute("SELECT * FROM ledger WHERE run_id = ?", (run_id,)).fetchone()
        return Row(**dict(r)) if r else None

    def head(self) -> str:
        with self._connect() as con:
            r = con.execute("SELECT row_hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        return r["row_hash"] if r else GENESIS

    def verify(self, expect_head: str | None = None) -> VerifyReport:
        problems: list[str] = []
        prev = GENESIS
        expected_seq = 1
        rows = self.rows()
        for row in rows:
            fields = row.__dict__
            if row.seq != expected_seq:
                problems.append(
                    f"row seq {row.seq} (run {row.run_id}): expected seq {expected_seq} — a row was deleted"
                )
            if row.prev_hash != prev:
                problems.append(
                    f"row seq {row.seq} (run {row.run_id}): prev_hash does not match the previous row's hash"
                )
            if record_digest(row.record_json) != row.record_sha256:
                problems.append(f"row seq {row.seq} (run {row.run_id}): record_json was edited (sha256 mismatch)")
            if row_hash(fields) != row.row_hash:
                problems.append(f"row seq {row.seq} (run {row.run_id}): row fields were edited (row_hash mismatch)")
            prev = row.row_hash
            expected_seq = row.seq + 1
        if expect_head is not None and expect_head not in {r.row_hash for r in rows}:
            problems.append(f"anchored head {expect_head} is not in the chain — rows were removed or rewritten")
        return VerifyReport(not problems, len(rows), prev, tuple(problems))
