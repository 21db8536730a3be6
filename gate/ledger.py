"""The tamper-evident ledger: an append-only table whose every row carries the hash of the previous one.

It lives in the gate's database (``gate.database``: an SQLite file by default, or PostgreSQL). Every gate run,
review decision, release and user change is one row; ``kind`` says which:

* ``run`` — a gate run (decision released|quarantined|pending; actor = the submitter, role "submitter");
* ``approve`` / ``reject`` — a reviewer's decision (decision = the run's state after the row);
* ``release`` — the run released (decision "released"; in the same transaction as the approval that completed it);
* ``user`` — a change to the users (run_id "", decision = the action; record_json = its details, never a secret);
* ``consent`` — a change to the consent registry (``gate.consent``: run_id "", decision = the action; record_json
  names the consent id and the evidence hash, never the person's name or face embedding);
* ``retention`` — a retention apply (``gate.retention``: run_id "", decision "removed"; record_json = what was
  removed, the cutoff and days, and the link to the removed prefix, below).

Hashing: ``row_hash = sha256(canonical JSON of the hashed fields)``; the first row's ``prev_hash`` is 64 zeros.
``hash_version`` 2 (every row written now) hashes every column except ``record_json`` (hashed through
``record_sha256``) and ``row_hash``. Rows from a ledger written before the review service keep ``hash_version`` 1
and their old hash over the 9 fields of that time (``HASHED_V1``); they must all come before the first version-2 row
and have kind ``run`` with no actor, role, reason or comment.

``verify`` recomputes the chain and names the first row that was edited, deleted or reordered (a deletion breaks the
successor's ``prev_hash`` link or leaves a gap in ``seq``; an edit changes a row's hash; a reorder does both).
Truncating the newest rows leaves a valid shorter chain: anchor a head hash elsewhere (``head()``; every record
stores the row hash it got) and pass it as ``expect_head``; verify then fails if that row is gone.

Retention (``gate.retention``) is the one way rows leave the ledger: the oldest rows, always a PREFIX of the chain
(``remove_prefix_in``), in the same transaction as a ``retention`` row appended at the head whose ``record_json``
names the last removed row (``removed_through_seq``, ``removed_last_hash``). A chain whose first row has seq N > 1
verifies iff that row's ``prev_hash`` equals the ``removed_last_hash`` of a retention row in the chain with
``removed_through_seq`` N - 1 (``pruned_anchor``); the retention row itself is checked like every other row, so
editing it, or deleting one row more than it records, breaks the chain. Any other gap is still a deletion.

Opening (``Ledger(locator)``; ``create=True`` also creates an absent SQLite file or the tables of an empty
PostgreSQL database) follows ``gate.database.Database.open``: it never writes to a file it did not create, refuses
what is not a hallo3-gate ledger untouched (exit 4), names a missing file (exit 2) or an unwritable one (exit 74).

Concurrency: every append runs in ``Database.transaction()`` — serialised against every other writer (SQLite
``BEGIN IMMEDIATE``; PostgreSQL an advisory lock) — and reads the head inside it, so concurrent gate runs and
reviewers never lose or interleave a row. ``precondition(tx)`` runs inside that transaction before the insert: it can
check state (four eyes, "still pending") and raise to abort with nothing written.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gate.database import (
    APPLICATION_ID,
    LEDGER_COLUMNS,
    SCHEMA_VERSION,
    V1_LEDGER_COLUMNS,
    Database,
    Tx,
    default_sqlite_path,
)

__all__ = [
    "APPLICATION_ID",
    "COLUMNS",
    "GENESIS",
    "HASH_VERSION",
    "KINDS",
    "Ledger",
    "Row",
    "VerifyReport",
    "default_path",
    "pruned_anchor",
    "record_digest",
    "row_hash",
]

GENESIS = "0" * 64
HASH_VERSION = 2
KINDS = ("run", "approve", "reject", "release", "comment", "user", "consent", "retention")
COLUMNS = LEDGER_COLUMNS
# version 2: every column but the record itself (its sha256 is hashed instead) and the row's own hash
HASHED_V2 = tuple(c for c in COLUMNS if c not in ("record_json", "row_hash"))
# version 1 (ledgers written before the review service): the 9 columns of that time but record_json and row_hash
HASHED_V1 = tuple(c for c in V1_LEDGER_COLUMNS if c not in ("record_json", "row_hash"))
HASHED = {1: HASHED_V1, 2: HASHED_V2}
_V1_NEW_COLUMNS = ("actor", "role", "reason", "comment")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")

# A layout-1 ledger (not yet migrated) read as the current layout, without writing to it.
_V1_AS_CURRENT = (
    "(SELECT seq, 'run' AS kind, run_id, created_at, decision, NULL AS actor, NULL AS role, NULL AS reason, "
    "NULL AS comment, output_path, output_sha256, payload_hex, record_sha256, record_json, 1 AS hash_version, "
    "prev_hash, row_hash FROM ledger) AS ledger"
)


def default_path() -> Path:
    """The SQLite ledger used when nothing is named: ``$HALLO3_GATE_LEDGER``, else the user's data directory."""
    env = os.environ.get("HALLO3_GATE_LEDGER")
    return Path(env) if env else default_sqlite_path()


def row_hash(fields: dict[str, Any], version: int | None = None) -> str:
    """The hash of a row's fields under ``version`` (default: the row's own ``hash_version``, else 1)."""
    v = version if version is not None else int(fields.get("hash_version") or 1)
    canon = json.dumps({k: fields[k] for k in HASHED[v]}, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
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
    kind: str = "run"
    actor: str | None = None
    role: str | None = None
    reason: str | None = None
    comment: str | None = None
    hash_version: int = 1

    @property
    def record(self) -> dict[str, Any]:
        return json.loads(self.record_json)

    @classmethod
    def from_db(cls, r: dict[str, Any]) -> Row:
        return cls(**{k: r[k] for k in COLUMNS})


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    rows: int
    head: str
    problems: tuple[str, ...]


class Ledger:
    """The ledger in a database (a locator or an opened ``Database``). See the module docstring."""

    def __init__(self, locator: str | os.PathLike[str] | Database | None = None, *, create: bool = False) -> None:
        if isinstance(locator, Database):
            self.db = locator
            if create and self.db.layout < SCHEMA_VERSION:
                with self.db.transaction():  # migrates
                    pass
        else:
            self.db = Database.open(locator, create=create)

    @property
    def path(self) -> Path | None:
        """The SQLite file (None on PostgreSQL)."""
        return self.db.path

    @property
    def display(self) -> str:
        """The ledger's locator, safe to print (no password)."""
        return self.db.display

    def _table(self) -> str:
        return "ledger" if self.db.ledger_current else _V1_AS_CURRENT

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
        kind: str = "run",
        actor: str | None = None,
        role: str | None = None,
        reason: str | None = None,
        comment: str | None = None,
        precondition: Callable[[Tx], None] | None = None,
    ) -> Row:
        """Append one row atomically (one transaction, serialised with every other writer); returns it.

        ``precondition(tx)`` runs first inside the transaction; an exception from it aborts with nothing written.
        A ledger that cannot be written (disk full, read-only, locked past the timeout) raises ``OutputError`` and
        holds no part of the row."""
        with self.db.transaction() as tx:
            if precondition is not None:
                precondition(tx)
            return self.append_in(
                tx,
                run_id=run_id,
                created_at=created_at,
                decision=decision,
                output_path=output_path,
                output_sha256=output_sha256,
                payload_hex=payload_hex,
                record_json=record_json,
                kind=kind,
                actor=actor,
                role=role,
                reason=reason,
                comment=comment,
            )

    def append_in(
        self,
        tx: Tx,
        *,
        run_id: str,
        created_at: str,
        decision: str,
        output_path: str,
        output_sha256: str,
        payload_hex: str | None,
        record_json: str,
        kind: str = "run",
        actor: str | None = None,
        role: str | None = None,
        reason: str | None = None,
        comment: str | None = None,
    ) -> Row:
        """Append one row inside the caller's ``db.transaction()`` (which must be this ledger's database)."""
        if kind not in KINDS:
            raise ValueError(f"ledger row kind must be one of {', '.join(KINDS)}, not {kind!r}")
        last = tx.execute_one("SELECT seq, row_hash FROM ledger ORDER BY seq DESC LIMIT 1")
        fields: dict[str, Any] = {
            "seq": (int(last["seq"]) + 1) if last else 1,
            "kind": kind,
            "run_id": run_id,
            "created_at": created_at,
            "decision": decision,
            "actor": actor,
            "role": role,
            "reason": reason,
            "comment": comment,
            "output_path": output_path,
            "output_sha256": output_sha256,
            "payload_hex": payload_hex,
            "record_sha256": record_digest(record_json),
            "record_json": record_json,
            "hash_version": HASH_VERSION,
            "prev_hash": last["row_hash"] if last else GENESIS,
        }
        fields["row_hash"] = row_hash(fields, HASH_VERSION)
        tx.execute(
            f"INSERT INTO ledger ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
            [fields[c] for c in COLUMNS],
        )
        return Row(**fields)

    def append_change(
        self, tx: Tx, *, kind: str, action: str, actor: str, details: dict[str, Any], role: str | None = None
    ) -> Row:
        """A row recording a change to the gate's own state (a user, a consent record, a retention removal) inside the
        caller's transaction: ``decision`` is the action, ``actor`` who did it (with their role, from ``users``
        unless given), ``record_json`` the details (sorted, ASCII JSON). The caller keeps secrets and personal data
        out of ``details``: a ledger row is never erased."""
        if role is None:
            found = tx.execute_one("SELECT role FROM users WHERE name = ?", (actor,))
            role = found["role"] if found else None
        return self.append_in(
            tx,
            kind=kind,
            run_id="",
            created_at=datetime.now(UTC).isoformat(),
            decision=action,
            actor=actor,
            role=role,
            output_path="",
            output_sha256="",
            payload_hex=None,
            record_json=json.dumps(details, sort_keys=True, ensure_ascii=True),
        )

    # --- reading ------------------------------------------------------------------------------------------------

    def _select(self, where: str = "", params: tuple[Any, ...] = (), tail: str = "ORDER BY seq") -> list[Row]:
        with self.db.reading() as tx:
            rows = tx.execute(f"SELECT * FROM {self._table()} {where} {tail}", params)
        return [Row.from_db(r) for r in rows]

    def rows(self, kind: str | None = None) -> list[Row]:
        if kind is None:
            return self._select()
        return self._select("WHERE kind = ?", (kind,))

    def events(self, run_id: str) -> list[Row]:
        """Every row of one run (its ``run`` row, approvals, rejections, release), by seq."""
        return self._select("WHERE run_id = ?", (run_id,))

    def last_seq(self) -> int:
        with self.db.reading() as tx:
            r = tx.execute_one(f"SELECT MAX(seq) AS seq FROM {self._table()}")
        return int(r["seq"] or 0) if r else 0

    def find_by_payload(self, payload_hex: str) -> Row | None:
        """The newest ``run`` row whose watermark payload is ``payload_hex``."""
        found = self._select(
            "WHERE payload_hex = ? AND kind = 'run'", (payload_hex.lower(),), "ORDER BY seq DESC LIMIT 1"
        )
        return found[0] if found else None

    def find_by_run(self, run_id: str) -> Row | None:
        """The run's ``run`` row (the gate's own record of it)."""
        found = self._select("WHERE run_id = ? AND kind = 'run'", (run_id,), "ORDER BY seq LIMIT 1")
        return found[0] if found else None

    def first_seq(self) -> int | None:
        """The seq of the oldest row (1 unless retention removed a prefix); None for an empty ledger."""
        with self.db.reading() as tx:
            r = tx.execute_one(f"SELECT MIN(seq) AS seq FROM {self._table()}")
        return int(r["seq"]) if r and r["seq"] is not None else None

    def scan(self, columns: tuple[str, ...] = ("seq", "kind", "run_id", "created_at", "row_hash")) -> Iterator[Row]:
        """The rows in seq order, one at a time in one read snapshot (memory does not grow with the ledger); only
        ``columns`` are read, the others are left at their defaults (``record_json`` ``"{}"`` and ``""`` for text).
        Close the iterator (``contextlib.closing``) when stopping early."""
        unknown = sorted(set(columns) - set(COLUMNS))
        if unknown:
            raise ValueError(f"unknown ledger column(s) {', '.join(unknown)}")
        blank: dict[str, Any] = {c: "" for c in COLUMNS} | {"seq": 0, "payload_hex": None, "record_json": "{}"}
        blank |= {"kind": "run", "actor": None, "role": None, "reason": None, "comment": None, "hash_version": 1}
        with self.db.reading() as tx:
            for r in tx.stream(f"SELECT {', '.join(columns)} FROM {self._table()} ORDER BY seq"):
                yield Row(**(blank | {c: r[c] for c in columns}))

    def remove_prefix_in(self, tx: Tx, *, first_seq: int, through_seq: int, last_hash: str) -> int:
        """Delete the rows ``first_seq`` .. ``through_seq`` — the oldest rows, a prefix of the chain — inside the
        caller's transaction; returns how many.

        Only ``gate.retention`` calls this, in the transaction that also appends the ``retention`` row recording the
        removal (appended first, so it links to the head). The ledger must still be as planned: its oldest row
        ``first_seq`` and row ``through_seq`` with hash ``last_hash``; otherwise nothing is deleted (``ValueError``:
        another removal ran meanwhile, or the rows changed)."""
        if not self.db.ledger_current:
            raise ValueError("a ledger of layout 1 is migrated by its first write before rows can be removed")
        if through_seq < first_seq:
            raise ValueError(f"no rows to remove: through seq {through_seq} is before the first seq {first_seq}")
        first = tx.execute_one("SELECT MIN(seq) AS seq FROM ledger")
        if first is None or first["seq"] != first_seq:
            raise ValueError(f"the oldest ledger row is no longer seq {first_seq}")
        got = tx.execute_one("SELECT row_hash FROM ledger WHERE seq = ?", (through_seq,))
        if got is None or got["row_hash"] != last_hash:
            raise ValueError(f"ledger row {through_seq} is not the row planned for removal")
        count = tx.execute_one("SELECT COUNT(*) AS n FROM ledger WHERE seq <= ?", (through_seq,))
        tx.execute("DELETE FROM ledger WHERE seq <= ?", (through_seq,))
        return int(count["n"]) if count else 0

    def head(self) -> str:
        with self.db.reading() as tx:
            r = tx.execute_one(f"SELECT row_hash FROM {self._table()} ORDER BY seq DESC LIMIT 1")
        return r["row_hash"] if r else GENESIS

    def verify(self, expect_head: str | None = None, *, since_seq: int | None = None) -> VerifyReport:
        """Recompute the chain (streaming: memory does not grow with the ledger).

        ``since_seq``: check only the rows from that one to the head, linked to the row before it (whose own fields
        are then taken on trust) — what a lookup of one row needs when the whole chain is long."""
        problems: list[str] = []
        checked = 0
        head_seen = expect_head is None
        table = self._table()
        with self.db.reading() as tx:
            start, state = _start(tx, table, since_seq)
            for r in _stream(tx, f"SELECT * FROM {table} WHERE seq >= ? ORDER BY seq", (start,)):
                row = Row.from_db(r)
                problems += state.check(row)
                head_seen = head_seen or row.row_hash == expect_head
                checked += 1
            if not head_seen:
                head_seen = tx.execute_one(f"SELECT 1 AS x FROM {table} WHERE row_hash = ?", (expect_head,)) is not None
        if not head_seen:
            problems.append(f"anchored head {expect_head} is not in the chain — rows were removed or rewritten")
        return VerifyReport(not problems, checked, state.prev, tuple(problems))


def _start(tx: Tx, table: str, since_seq: int | None) -> tuple[int, _ChainState]:
    """Where ``verify`` starts walking and what that first row must link to: the row before ``since_seq`` (taken on
    trust), else the oldest row — linked to the genesis hash, or, when retention removed the rows before it, to the
    last removed row's hash that a retention row records (``pruned_anchor``). With neither, the walk expects seq 1
    and genesis, so a removed prefix that no retention row accounts for is reported as a deletion."""
    first = tx.execute_one(f"SELECT MIN(seq) AS seq FROM {table}")
    first_seq = int(first["seq"]) if first and first["seq"] is not None else None
    if first_seq is None:
        return 1, _ChainState()
    if since_seq is not None and since_seq > first_seq:
        anchor = tx.execute_one(
            f"SELECT seq, row_hash, hash_version FROM {table} WHERE seq < ? ORDER BY seq DESC LIMIT 1", (since_seq,)
        )
        assert anchor is not None  # a row below since_seq exists: first_seq
        return since_seq, _ChainState(anchor["row_hash"], int(anchor["seq"]) + 1, int(anchor["hash_version"]))
    if first_seq > 1:
        anchor_hash = pruned_anchor(tx, table, first_seq)
        if anchor_hash is not None:
            return first_seq, _ChainState(anchor_hash, first_seq, 0)
    return first_seq, _ChainState()


def pruned_anchor(tx: Tx, table: str, first_seq: int) -> str | None:
    """The hash the oldest row (seq ``first_seq`` > 1) must link to: ``removed_last_hash`` of the newest retention row
    in ``table`` whose ``removed_through_seq`` is ``first_seq - 1``; None when no retention row records that removal
    (malformed retention records count as none)."""
    for r in tx.execute(f"SELECT record_json FROM {table} WHERE kind = 'retention' ORDER BY seq DESC"):
        try:
            rec = json.loads(r["record_json"])
        except ValueError:
            continue
        if not isinstance(rec, dict):
            continue
        through, last = rec.get("removed_through_seq"), rec.get("removed_last_hash")
        if type(through) is int and through == first_seq - 1 and isinstance(last, str) and _SHA256_HEX.fullmatch(last):
            return last
    return None


def _stream(tx: Tx, sql: str, params: tuple[Any, ...]) -> Iterator[dict[str, Any]]:
    return tx.stream(sql, params)


@dataclass
class _ChainState:
    """What the next row must link to while walking the chain."""

    prev: str = GENESIS
    expected_seq: int = 1
    max_version: int = 0  # the highest hash_version seen so far

    def check(self, row: Row) -> list[str]:
        problems = _row_problems(row, self.prev, self.expected_seq, self.max_version)
        self.prev, self.expected_seq = row.row_hash, row.seq + 1
        self.max_version = max(self.max_version, row.hash_version if row.hash_version in HASHED else 0)
        return problems


def _row_problems(row: Row, prev: str, expected_seq: int, max_version: int) -> list[str]:
    where = f"row seq {row.seq} (run {row.run_id})" if row.run_id else f"row seq {row.seq} ({row.kind})"
    problems = []
    if row.seq != expected_seq:
        problems.append(f"{where}: expected seq {expected_seq} — a row was deleted")
    if row.prev_hash != prev:
        problems.append(f"{where}: prev_hash does not match the previous row's hash")
    if record_digest(row.record_json) != row.record_sha256:
        problems.append(f"{where}: record_json was edited (sha256 mismatch)")
    if row.hash_version not in HASHED:
        problems.append(f"{where}: unknown hash_version {row.hash_version!r}")
        return problems
    if row.hash_version < max_version:
        problems.append(f"{where}: hash_version {row.hash_version} after a row of version {max_version}")
    if row.hash_version == 1 and (row.kind != "run" or any(getattr(row, c) is not None for c in _V1_NEW_COLUMNS)):
        problems.append(f"{where}: a version-1 row must be a run row without actor, role, reason or comment")
    if row_hash(asdict(row), row.hash_version) != row.row_hash:
        problems.append(f"{where}: row fields were edited (row_hash mismatch)")
    return problems
