"""The ledger v2 on both backends (SQLite file, throw-away PostgreSQL): chain, tamper detection, preconditions,
migration of a ledger written before the review service (layout 1), read-only readers, concurrent writers.

The layout-1 table and its hash rule are written out here as they were (not taken from the code under test), so a
migration that changed an old row or its hash, or a v2 hash rule that drifted from the documented one, fails."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import multiprocessing as mp
import sqlite3
from pathlib import Path

import pytest

from gate.database import SCHEMA_VERSION, Database, IntegrityError, is_postgres
from gate.ledger import GENESIS, Ledger
from reports.errors import ExitCode, InputError
from tests import databases

db_url, pg_db_url, postgres_url = databases.db_url, databases.pg_db_url, databases.postgres_url  # the fixtures

# --- raw access to the database, past the code under test ----------------------------------------------------------


def _raw(url: str, *statements: str, params: tuple = ()) -> list[tuple]:
    """Run SQL directly (psycopg or sqlite3); the last statement's rows."""
    rows: list[tuple] = []
    if is_postgres(url):
        import psycopg

        with psycopg.connect(url, autocommit=True) as con:
            for s in statements:
                cur = con.execute(s.replace("?", "%s"), params if s is statements[-1] else ())
                rows = cur.fetchall() if cur.description else []
        return rows
    with contextlib.closing(sqlite3.connect(url)) as con:
        for s in statements:
            cur = con.execute(s, params if s is statements[-1] else ())
            rows = cur.fetchall()
        con.commit()
    return rows


def _columns(url: str) -> list[str]:
    if is_postgres(url):
        got = _raw(
            url,
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'ledger' ORDER BY ordinal_position",
        )
        return [r[0] for r in got]
    return [r[1] for r in _raw(url, "PRAGMA table_info(ledger)")]


def _tables(url: str) -> set[str]:
    if is_postgres(url):
        return {r[0] for r in _raw(url, "SELECT table_name FROM information_schema.tables WHERE table_schema='public'")}
    return {r[0] for r in _raw(url, "SELECT name FROM sqlite_master WHERE type='table'")}


# The documented v2 rule: sha256 of the canonical JSON of every column but record_json and row_hash.
V2_HASHED = [
    *("seq", "kind", "run_id", "created_at", "decision", "actor", "role", "reason", "comment", "output_path"),
    *("output_sha256", "payload_hex", "record_sha256", "hash_version", "prev_hash"),
]
# The layout-1 rule (hallo3-gate before the review service): 9 fields.
V1_HASHED = ["seq", "run_id", "created_at", "decision", "output_path", "output_sha256", "payload_hex"]
V1_HASHED += ["record_sha256", "prev_hash"]
V1_DDL = """
CREATE TABLE ledger (
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
)"""


def _canon_hash(fields: dict, names: list[str]) -> str:
    canon = json.dumps({k: fields[k] for k in names}, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canon.encode()).hexdigest()


def _make_v1_ledger(url: str, n: int = 3) -> list[dict]:
    """A layout-1 ledger with ``n`` rows, built with the old DDL and the old hash rule; returns its rows."""
    rows, prev = [], GENESIS
    for i in range(n):
        record_json = json.dumps({"i": i})
        row = {
            "seq": i + 1,
            "run_id": f"old{i}",
            "created_at": f"2026-10-0{i + 1}T00:00:00Z",
            "decision": "released" if i % 2 else "quarantined",
            "output_path": f"/o/old{i}.mp4",
            "output_sha256": f"{i:064x}",
            "payload_hex": f"{i + 0xA0:016x}",
            "record_sha256": hashlib.sha256(record_json.encode()).hexdigest(),
            "record_json": record_json,
            "prev_hash": prev,
        }
        row["row_hash"] = prev = _canon_hash(row, V1_HASHED)
        rows.append(row)
    cols = list(rows[0])
    inserts = [
        "INSERT INTO ledger ({}) VALUES ({})".format(", ".join(cols), ", ".join(_sql_literal(r[c]) for c in cols))
        for r in rows
    ]
    if is_postgres(url):
        _raw(url, V1_DDL, "CREATE INDEX IF NOT EXISTS ledger_payload ON ledger(payload_hex)", *inserts)
    else:
        with contextlib.closing(sqlite3.connect(url, isolation_level=None)) as con:
            con.execute("PRAGMA application_id = 1211321415")  # 0x48334C47, as the old code set it
            con.execute(V1_DDL)
            con.execute("CREATE INDEX IF NOT EXISTS ledger_payload ON ledger(payload_hex)")
            for s in inserts:
                con.execute(s)
            con.execute("PRAGMA journal_mode=WAL")
    return rows


def _sql_literal(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, int):
        return str(v)
    return "'" + str(v).replace("'", "''") + "'"


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- appending and reading ---------------------------------------------------------------------------------------


def _row(run_id: str, **kw) -> dict:
    base = dict(
        run_id=run_id,
        created_at="2026-12-01T10:00:00Z",
        decision="pending",
        output_path=f"/o/{run_id}.mp4",
        output_sha256="ab" * 32,
        payload_hex=f"{abs(hash(run_id)) % (1 << 60):016x}",
        record_json=json.dumps({"run": run_id}),
        actor="sam",
        role="submitter",
    )
    return {**base, **kw}


def _review_history(lg: Ledger) -> None:
    """Two runs, a user change, two approvals and a release, a rejection: 7 rows of every kind."""
    no_output = dict(output_path="", output_sha256="", payload_hex=None, record_json="{}")
    lg.append(**_row("r1"))
    lg.append(**_row("r2"))
    user = json.dumps({"user": "ann", "role": "approver"})
    lg.append(**_row("", kind="user", decision="add", role=None, **{**no_output, "record_json": user}))
    for who in ("ann", "bob"):
        lg.append(**_row("r1", kind="approve", actor=who, role="approver", reason="meets-policy", **no_output))
    lg.append(**_row("r1", kind="release", decision="released", actor="bob", role="approver", record_json="{}"))
    reject = dict(kind="reject", decision="quarantined", actor="ann", role="reviewer", reason="lip-sync")
    lg.append(**_row("r2", **reject, comment="mouth out of sync at 2 s", record_json="{}"))


def test_rows_of_every_kind_chain_and_hash_by_the_documented_rule(db_url):
    lg = Ledger(db_url, create=True)
    _review_history(lg)
    rows = lg.rows()
    assert [r.seq for r in rows] == list(range(1, 8)) and rows[0].prev_hash == GENESIS
    assert [r.kind for r in rows] == ["run", "run", "user", "approve", "approve", "release", "reject"]
    assert all(b.prev_hash == a.row_hash for a, b in itertools.pairwise(rows))
    raw = _raw(db_url, "SELECT * FROM ledger ORDER BY seq")
    names = _columns(db_url)
    for values in raw:
        fields = dict(zip(names, values, strict=True))
        assert fields["hash_version"] == 2
        assert fields["record_sha256"] == hashlib.sha256(fields["record_json"].encode()).hexdigest()
        assert fields["row_hash"] == _canon_hash(fields, V2_HASHED), fields["seq"]
    rep = lg.verify()
    assert rep.ok and rep.rows == 7 and rep.head == rows[-1].row_hash == lg.head() and lg.last_seq() == 7
    assert [r.kind for r in lg.events("r1")] == ["run", "approve", "approve", "release"]
    assert lg.find_by_run("r1").seq == 1 and lg.find_by_run("r1").kind == "run" and lg.find_by_run("zz") is None
    assert lg.find_by_payload(rows[1].payload_hex).run_id == "r2"
    assert [r.actor for r in lg.rows(kind="approve")] == ["ann", "bob"]
    rej = lg.rows(kind="reject")[0]
    assert (rej.role, rej.reason, rej.comment, rej.decision) == (
        "reviewer",
        "lip-sync",
        "mouth out of sync at 2 s",
        "quarantined",
    )
    assert lg.rows(kind="user")[0].record == {"user": "ann", "role": "approver"}


def test_an_unknown_kind_is_refused_before_anything_is_written(db_url):
    lg = Ledger(db_url, create=True)
    with pytest.raises(ValueError, match="kind"):
        lg.append(**_row("r1", kind="bless"))
    assert lg.rows() == []


# --- tampering ------------------------------------------------------------------------------------------------------


def _swap(a: int, b: int) -> tuple[str, ...]:
    return (
        f"UPDATE ledger SET seq=1000 WHERE seq={a}",
        f"UPDATE ledger SET seq={a} WHERE seq={b}",
        f"UPDATE ledger SET seq={b} WHERE seq=1000",
    )


@pytest.mark.parametrize(
    ("statements", "needle"),
    [
        (("UPDATE ledger SET actor='mallory' WHERE seq=4",), "row seq 4 (run r1): row fields were edited"),
        (("UPDATE ledger SET reason='other' WHERE seq=7",), "row seq 7 (run r2): row fields were edited"),
        (('UPDATE ledger SET record_json=\'{"user": "eve"}\' WHERE seq=3',), "row seq 3 (user): record_json"),
        (("DELETE FROM ledger WHERE seq=5",), "row seq 6 (run r1): expected seq 5"),
        (_swap(2, 4), "row seq 2 (run r1)"),
        (
            ("UPDATE ledger SET hash_version=1 WHERE seq=5",),
            "row seq 5 (run r1): hash_version 1 after a row of version 2",
        ),
        (("UPDATE ledger SET hash_version=3 WHERE seq=2",), "row seq 2 (run r2): unknown hash_version 3"),
    ],
    ids=["edit-actor", "edit-reason", "edit-record", "delete", "reorder", "downgrade", "unknown-version"],
)
def test_tampering_is_named(db_url, statements, needle):
    lg = Ledger(db_url, create=True)
    _review_history(lg)
    assert lg.verify().ok
    _raw(db_url, *statements)
    rep = lg.verify()
    assert not rep.ok and any(needle in p for p in rep.problems), rep.problems


def test_a_v2_row_rewritten_as_a_consistent_v1_row_after_v2_rows_is_refused(db_url):
    """The newest row turned into a self-consistent version-1 row (its v1 hash recomputed, nothing links to it):
    only the rule "no version 1 after version 2" can see it."""
    lg = Ledger(db_url, create=True)
    _review_history(lg)
    last = lg.rows()[-1]
    forged = {**last.__dict__, "hash_version": 1, "kind": "run", "actor": None, "role": None, "reason": None}
    forged["comment"] = None
    forged_hash = _canon_hash(forged, V1_HASHED)
    _raw(
        db_url,
        "UPDATE ledger SET hash_version=1, kind='run', actor=NULL, role=NULL, reason=NULL, comment=NULL, "
        f"row_hash='{forged_hash}' WHERE seq={last.seq}",
    )
    rep = lg.verify()
    assert not rep.ok
    assert rep.problems == ("row seq 7 (run r2): hash_version 1 after a row of version 2",), rep.problems


# --- preconditions --------------------------------------------------------------------------------------------------


class _Refused(Exception):
    pass


def test_a_precondition_that_raises_leaves_no_row(db_url):
    lg = Ledger(db_url, create=True)
    lg.append(**_row("r1"))
    head = lg.head()
    seen = []

    def still_pending(tx):
        seen.append(tx.execute_one("SELECT COUNT(*) AS n FROM ledger WHERE run_id = ?", ("r1",))["n"])
        raise _Refused("run r1 is no longer pending")

    with pytest.raises(_Refused):
        lg.append(**_row("r1", kind="approve", actor="ann", role="approver"), precondition=still_pending)
    assert seen == [1]  # it ran, inside the transaction, and saw the committed row
    assert [r.seq for r in lg.rows()] == [1] and lg.head() == head and lg.verify().ok


def test_append_in_writes_several_rows_in_one_transaction_or_none(db_url):
    lg = Ledger(db_url, create=True)
    lg.append(**_row("r1"))
    with lg.db.transaction() as tx:
        a = lg.append_in(tx, **_row("r1", kind="approve", actor="ann", role="approver"))
        b = lg.append_in(tx, **_row("r1", kind="release", decision="released", actor="ann", role="approver"))
    assert (a.seq, b.seq, b.prev_hash) == (2, 3, a.row_hash) and lg.verify().ok
    with pytest.raises(_Refused), lg.db.transaction() as tx:
        lg.append_in(tx, **_row("r2"))
        raise _Refused
    assert lg.last_seq() == 3 and lg.find_by_run("r2") is None


# --- migration of a layout-1 ledger ---------------------------------------------------------------------------------


def test_a_reader_of_a_v1_ledger_reads_it_and_writes_nothing(db_url):
    old = _make_v1_ledger(db_url)
    before_cols, before_tables = _columns(db_url), _tables(db_url)
    if not is_postgres(db_url):
        folder = Path(db_url).parent
        before_bytes, before_files = _sha(db_url), sorted(p.name for p in folder.iterdir())
    lg = Ledger(db_url)
    rows = lg.rows()
    assert [(r.run_id, r.row_hash, r.kind, r.hash_version, r.actor) for r in rows] == [
        (o["run_id"], o["row_hash"], "run", 1, None) for o in old
    ]
    assert lg.find_by_payload(old[1]["payload_hex"]).run_id == "old1" and lg.find_by_run("old2").seq == 3
    assert [r.seq for r in lg.events("old0")] == [1]
    rep = lg.verify()
    assert rep.ok and rep.rows == 3 and rep.head == old[-1]["row_hash"]
    assert _columns(db_url) == before_cols and _tables(db_url) == before_tables == {"ledger"}
    if not is_postgres(db_url):
        assert _sha(db_url) == before_bytes
        new = sorted(p.name for p in folder.iterdir())
        assert set(new) - set(before_files) <= {"gate.sqlite-wal", "gate.sqlite-shm"}
        wal = folder / "gate.sqlite-wal"
        assert not wal.exists() or wal.stat().st_size == 0  # no page written


@pytest.mark.parametrize("how", ["create", "append"])
def test_a_v1_ledger_is_migrated_on_the_first_write_keeping_every_old_hash(db_url, how):
    old = _make_v1_ledger(db_url)
    lg = Ledger(db_url, create=True) if how == "create" else Ledger(db_url)
    assert len(_columns(db_url)) == (17 if how == "create" else 11)  # create=True migrates at once; a reader later
    new = lg.append(**_row("r-new"))
    cols = _columns(db_url)
    assert cols == [*V2_HASHED[:-2], "record_json", "hash_version", "prev_hash", "row_hash"]
    assert {"meta", "users", "tokens", "sessions", "claims", "login_attempts", "detect_feedback"} <= _tables(db_url)
    # the layout the migration reaches is the current one (2: review service; 3: consents), whichever that is now
    assert SCHEMA_VERSION >= 2
    assert _raw(db_url, "SELECT value FROM meta WHERE key='schema_version'") == [(str(SCHEMA_VERSION),)]
    raw = [dict(zip(cols, r, strict=True)) for r in _raw(db_url, "SELECT * FROM ledger ORDER BY seq")]
    for o, r in zip(old, raw[:3], strict=True):
        assert {k: r[k] for k in o} == o  # every old field and hash as it was
        assert (r["kind"], r["hash_version"], r["actor"], r["role"], r["reason"], r["comment"]) == (
            "run",
            1,
            None,
            None,
            None,
            None,
        )
        assert r["row_hash"] == _canon_hash(r, V1_HASHED)
    assert new.seq == 4 and new.prev_hash == old[-1]["row_hash"] and raw[3]["hash_version"] == 2
    rep = Ledger(db_url).verify()
    assert rep.ok and rep.rows == 4 and rep.head == new.row_hash
    # run_id is no longer unique: a decision row of an old run goes in
    lg.append(**_row("old1", kind="approve", actor="ann", role="approver"))
    assert [r.kind for r in lg.events("old1")] == ["run", "approve"] and lg.verify().ok


def test_a_migrated_v1_row_given_an_actor_is_named(db_url):
    _make_v1_ledger(db_url)
    lg = Ledger(db_url, create=True)
    assert lg.verify().ok
    _raw(db_url, "UPDATE ledger SET actor='mallory' WHERE seq=2")  # not in the v1 hash: only the shape rule sees it
    rep = lg.verify()
    assert rep.problems == (
        "row seq 2 (run old1): a version-1 row must be a run row without actor, role, reason or comment",
    ), rep.problems


def test_a_migration_that_cannot_finish_changes_nothing(db_url):
    """A layout-1 ledger beside another application's ``users`` table: refused (4), nothing migrated."""
    _make_v1_ledger(db_url)
    _raw(db_url, "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
    before = (_columns(db_url), _tables(db_url), _raw(db_url, "SELECT * FROM ledger ORDER BY seq"))
    with pytest.raises(InputError) as exc:
        Ledger(db_url, create=True)
    assert exc.value.exit_code == ExitCode.INPUT and "users" in str(exc.value)
    assert (_columns(db_url), _tables(db_url), _raw(db_url, "SELECT * FROM ledger ORDER BY seq")) == before


# --- concurrency ----------------------------------------------------------------------------------------------------

WORKERS, EACH = 8, 25


def _append_many(url: str, worker: int, start: mp.synchronize.Event) -> None:
    lg = Ledger(url, create=True)  # every worker may be the one that creates it
    start.wait(60)
    for k in range(EACH):
        lg.append(**_row(f"w{worker}-{k}", payload_hex=f"{worker:04x}{k:012x}"))


def _approve_once(url: str, worker: int, start: mp.synchronize.Event, results: mp.Queue) -> None:
    """Approve run r1 unless an approval is already there (the check inside the locked transaction)."""
    lg = Ledger(url)

    def no_approval_yet(tx):
        if tx.execute_one("SELECT seq FROM ledger WHERE run_id = ? AND kind = 'approve'", ("r1",)) is not None:
            raise _Refused

    start.wait(60)
    try:
        lg.append(**_row("r1", kind="approve", actor=f"u{worker}", role="approver"), precondition=no_approval_yet)
        results.put("appended")
    except _Refused:
        results.put("refused")


def _run_workers(target, args_for) -> None:
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=target, args=args_for(i, start)) for i in range(WORKERS)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0] * WORKERS


def test_concurrent_writers_never_lose_or_interleave_a_row(db_url):
    _run_workers(_append_many, lambda i, start: (db_url, i, start))
    lg = Ledger(db_url)
    rows = lg.rows()
    assert [r.seq for r in rows] == list(range(1, WORKERS * EACH + 1))
    assert {r.run_id for r in rows} == {f"w{i}-{k}" for i in range(WORKERS) for k in range(EACH)}
    for i in range(WORKERS):  # each worker's rows in its own order
        assert [r.run_id for r in rows if r.run_id.startswith(f"w{i}-")] == [f"w{i}-{k}" for k in range(EACH)]
    rep = lg.verify()
    assert rep.ok and rep.rows == WORKERS * EACH, rep.problems[:3]


def test_a_precondition_is_checked_under_the_writers_lock(db_url):
    """Eight processes each approve once "if nobody has": exactly one approval lands."""
    Ledger(db_url, create=True).append(**_row("r1"))
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    _run_workers(_approve_once, lambda i, start: (db_url, i, start, results))
    outcomes = sorted(results.get(timeout=10) for _ in range(WORKERS))
    assert outcomes == ["appended"] + ["refused"] * (WORKERS - 1)
    lg = Ledger(db_url)
    assert [r.kind for r in lg.events("r1")] == ["run", "approve"] and lg.verify().ok


def test_integrity_errors_are_one_type_on_both_backends(db_url):
    db = Database.open(db_url, create=True)
    add = "INSERT INTO users (name, role, password_hash, created_at) VALUES (?, ?, ?, ?)"
    with db.transaction() as tx:
        tx.execute(add, ("ann", "approver", "x", "t"))
    with pytest.raises(IntegrityError) as exc, db.transaction() as tx:
        tx.execute(add, ("ann", "viewer", "y", "t"))
    assert exc.value.exit_code == ExitCode.IO
    with db.reading() as tx:
        assert tx.execute("SELECT name, role FROM users") == [{"name": "ann", "role": "approver"}]


# --- retention: a removed prefix is accepted only as a retention row records it -------------------------------------


def _retention_record(through: int, last_hash: str) -> str:
    return json.dumps({"removed_through_seq": through, "removed_last_hash": last_hash}, sort_keys=True)


def _prune(lg: Ledger, *, record_through: int, remove_through: int) -> None:
    """Append a retention row that records removing rows 1..record_through, then delete rows 1..remove_through (the
    two differ to fake a removal the record does not account for)."""
    recorded = next(r for r in lg.rows() if r.seq == record_through)
    removed = next(r for r in lg.rows() if r.seq == remove_through)
    retention = _row("", decision="removed", output_path="", output_sha256="", payload_hex=None, actor="dpo", role=None)
    retention["record_json"] = _retention_record(record_through, recorded.row_hash)
    with lg.db.transaction() as tx:
        lg.append_in(tx, kind="retention", **retention)
        count = lg.remove_prefix_in(tx, first_seq=1, through_seq=remove_through, last_hash=removed.row_hash)
    assert count == remove_through


def test_a_prefix_removed_with_a_retention_row_verifies_from_the_first_row_left(db_url):
    lg = Ledger(db_url, create=True)
    for i in range(4):
        lg.append(**_row(f"r{i}"))
    head_before = lg.head()
    _prune(lg, record_through=2, remove_through=2)
    assert [r.seq for r in lg.rows()] == [3, 4, 5] and lg.first_seq() == 3
    rep = lg.verify(expect_head=head_before)  # the old head (row 4) is still in the chain
    assert rep.ok and rep.rows == 3, rep.problems
    for since in (1, 3, 4, 5):
        assert lg.verify(since_seq=since).ok, since
    assert [r.seq for r in lg.scan()] == [3, 4, 5]


@pytest.mark.parametrize(("record_through", "remove_through"), [(1, 2), (2, 1)], ids=["removed-more", "removed-less"])
def test_a_removal_the_retention_row_does_not_record_is_a_deletion(db_url, record_through, remove_through):
    lg = Ledger(db_url, create=True)
    for i in range(4):
        lg.append(**_row(f"r{i}"))
    _prune(lg, record_through=record_through, remove_through=remove_through)
    rep = lg.verify()
    assert not rep.ok and any("a row was deleted" in p or "prev_hash" in p for p in rep.problems), rep.problems


def test_remove_prefix_refuses_rows_that_are_not_the_planned_ones(db_url):
    lg = Ledger(db_url, create=True)
    for i in range(3):
        lg.append(**_row(f"r{i}"))
    rows = lg.rows()
    for kw in (
        dict(first_seq=1, through_seq=2, last_hash=rows[0].row_hash),  # not row 2's hash
        dict(first_seq=2, through_seq=2, last_hash=rows[1].row_hash),  # row 1 is still the oldest
        dict(first_seq=1, through_seq=9, last_hash=rows[1].row_hash),  # no such row
    ):
        with pytest.raises(ValueError), lg.db.transaction() as tx:
            lg.remove_prefix_in(tx, **kw)
    assert lg.rows() == rows
