"""gate.database on both backends: the locator, the tables, ``?`` SQL, transactions and read-only snapshots, and the
errors (a PostgreSQL password never printed)."""

from __future__ import annotations

import sqlite3
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from gate.database import TABLES, Database, IntegrityError, display_url, is_postgres, resolve, sqlite_path
from reports.errors import ExitCode, InputError, OutputError, UsageError
from tests import databases

db_url, pg_db_url, postgres_url = databases.db_url, databases.pg_db_url, databases.postgres_url  # the fixtures


def test_resolve_prefers_the_argument_then_hallo3_gate_db_then_the_ledger_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("HALLO3_GATE_DB", raising=False)
    monkeypatch.delenv("HALLO3_GATE_LEDGER", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert resolve(None) == str(tmp_path / "xdg" / "hallo3-gate" / "ledger.sqlite")
    monkeypatch.setenv("HALLO3_GATE_LEDGER", "/l.sqlite")
    assert resolve(None) == "/l.sqlite"
    monkeypatch.setenv("HALLO3_GATE_DB", "postgresql://u@/db?host=/s")
    assert resolve(None) == "postgresql://u@/db?host=/s"
    assert (
        resolve(tmp_path / "x.sqlite") == str(tmp_path / "x.sqlite") and resolve("postgres://h/d") == "postgres://h/d"
    )
    assert is_postgres("postgres://h/d") and is_postgres("postgresql://h/d") and not is_postgres("/p/postgresql://x")
    assert sqlite_path("sqlite:///abs/dir%20x/l.sqlite") == Path("/abs/dir x/l.sqlite")
    assert sqlite_path("rel/l.sqlite") == Path("rel/l.sqlite")


def test_display_never_shows_a_password():
    assert display_url("postgresql://ann:s3cr%40t@db.example:5432/gate?sslmode=require") == (
        "postgresql://ann@db.example:5432/gate?sslmode=require"
    )
    shown = display_url("postgresql://ann@/gate?host=/run/pg&password=hunter2&user=ann")
    assert "hunter2" not in shown and "host=/run/pg" in shown and "user=ann" in shown


def test_an_unreachable_postgresql_is_an_output_error_without_the_password(tmp_path):
    url = f"postgresql://ann:Sup3rS3cret@/gate?host={tmp_path}/no-such-socket-dir"
    with pytest.raises(OutputError) as exc:
        Database.open(url, create=True)
    msg = str(exc.value)
    assert exc.value.exit_code == ExitCode.IO and "Sup3rS3cret" not in msg
    assert "postgresql://ann@/gate" in msg and "reachable" in msg
    db = Database("postgresql", url, display_url(url), None, 2)
    assert "Sup3rS3cret" not in repr(db) and "Sup3rS3cret" not in db.display


def test_sqlite_locator_form_opens_the_file(tmp_path):
    db = Database.open(f"sqlite://{tmp_path}/a.sqlite", create=True)
    assert (db.kind, db.path, db.display) == ("sqlite", tmp_path / "a.sqlite", str(tmp_path / "a.sqlite"))
    assert (tmp_path / "a.sqlite").is_file()


def test_create_makes_every_table_with_the_schema_version(db_url):
    db = Database.open(db_url, create=True)
    assert db.kind == ("postgresql" if is_postgres(db_url) else "sqlite") and db.layout == 3
    assert (db.path is None) == is_postgres(db_url)
    with db.reading() as tx:
        assert tx.execute("SELECT key, value FROM meta") == [{"key": "schema_version", "value": "3"}]
        for table in TABLES:  # each exists (an absent table is an error) and is empty but for meta
            n = tx.execute_one(f"SELECT COUNT(*) AS n FROM {table}")["n"]
            assert n == (1 if table == "meta" else 0), table
    again = Database.open(db_url, create=True)  # opening again changes nothing
    with again.reading() as tx:
        assert tx.execute_one("SELECT COUNT(*) AS n FROM meta")["n"] == 1


def test_question_mark_sql_and_dict_rows_on_both_backends(db_url):
    db = Database.open(db_url, create=True)
    with db.transaction() as tx:
        assert (
            tx.execute(
                "INSERT INTO detect_feedback (created_at, verdict, comment) VALUES (?, ?, ?)", ("t1", "ok", "50% sure?")
            )
            == []
        )
        tx.execute("INSERT INTO detect_feedback (created_at, verdict, comment) VALUES (?, ?, ?)", ("t2", "wrong", None))
    with db.reading() as tx:
        rows = tx.execute(
            "SELECT id, verdict, comment FROM detect_feedback WHERE comment LIKE '%sure?' OR ? ORDER BY id", (False,)
        )
        assert rows == [{"id": 1, "verdict": "ok", "comment": "50% sure?"}]
        got = tx.execute_one("SELECT ? AS v, '?' AS q, 'a%b' AS p", ("x",))
        assert got == {"v": "x", "q": "?", "p": "a%b"}
        assert tx.execute_one("SELECT verdict FROM detect_feedback WHERE verdict = ?", ("none",)) is None
        assert [r["id"] for r in tx.stream("SELECT id FROM detect_feedback ORDER BY id")] == [1, 2]


class _Boom(Exception):
    pass


def test_a_transaction_is_all_or_nothing(db_url):
    db = Database.open(db_url, create=True)
    add = "INSERT INTO users (name, role, password_hash, created_at) VALUES (?, ?, ?, ?)"
    with pytest.raises(_Boom), db.transaction() as tx:
        tx.execute(add, ("ann", "admin", "h", "t"))
        assert tx.execute_one("SELECT name FROM users") == {"name": "ann"}  # visible inside
        raise _Boom
    with db.reading() as tx:
        assert tx.execute("SELECT name FROM users") == []


def test_reading_cannot_write(db_url):
    db = Database.open(db_url, create=True)
    with pytest.raises(OutputError) as exc, db.reading() as tx:
        tx.execute("INSERT INTO claims (run_id, user_name, claimed_at, expires_at) VALUES ('r', 'u', 't', 't')")
    assert db.display in str(exc.value)
    with db.reading() as tx:
        assert tx.execute("SELECT * FROM claims") == []


def test_a_postgresql_database_without_the_tables_is_not_opened_without_create(pg_db_url):
    with pytest.raises(UsageError) as exc:
        Database.open(pg_db_url)
    assert exc.value.exit_code == ExitCode.USAGE and "tables must exist" in str(exc.value)
    Database.open(pg_db_url, create=True)
    assert Database.open(pg_db_url).layout == 3


def test_another_applications_ledger_table_in_postgresql_is_refused_untouched(pg_db_url):
    import psycopg

    with psycopg.connect(pg_db_url, autocommit=True) as con:
        con.execute("CREATE TABLE ledger (id INTEGER PRIMARY KEY, amount REAL, memo TEXT)")
        con.execute("INSERT INTO ledger VALUES (1, 12.5, 'coffee')")
    with pytest.raises(InputError) as exc:
        Database.open(pg_db_url, create=True)
    assert "a ledger table with columns id, amount, memo" in str(exc.value)
    with psycopg.connect(pg_db_url, autocommit=True) as con:
        tables = con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema='public'").fetchall()
        assert tables == [("ledger",)] and con.execute("SELECT * FROM ledger").fetchall() == [(1, 12.5, "coffee")]


def test_an_sqlite_file_of_a_newer_or_broken_schema_is_refused_untouched(tmp_path):
    path = tmp_path / "g.sqlite"
    Database.open(path, create=True)
    with closing(sqlite3.connect(path)) as con:
        con.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
        con.commit()
    before = path.read_bytes()
    with pytest.raises(InputError) as exc:
        Database.open(path, create=True)
    assert "schema version 3 or older" in str(exc.value) and "schema version 4" in str(exc.value)
    assert exc.value.exit_code == ExitCode.INPUT and path.read_bytes() == before
    with closing(sqlite3.connect(path)) as con:
        con.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
        con.execute("DROP TABLE sessions")
        con.commit()
    before = path.read_bytes()
    with pytest.raises(InputError, match="no table sessions"):
        Database.open(path, create=True)
    assert path.read_bytes() == before


def test_a_writer_that_cannot_get_the_lock_in_time_is_an_output_error_and_writes_nothing(db_url, monkeypatch):
    import gate.database

    db = Database.open(db_url, create=True)
    monkeypatch.setattr(gate.database, "LOCK_TIMEOUT_S", 1.0)
    with _other_writer_holding_the_lock(db_url), pytest.raises(OutputError) as exc, db.transaction() as tx:
        tx.execute("INSERT INTO meta (key, value) VALUES ('x', 'y')")
    assert exc.value.exit_code == ExitCode.IO and db.display in str(exc.value)
    with db.transaction() as tx:  # free again
        assert tx.execute("SELECT key FROM meta") == [{"key": "schema_version"}]


@contextmanager
def _other_writer_holding_the_lock(url: str):
    """Another client inside a write transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: the advisory lock)."""
    if is_postgres(url):
        import psycopg

        from gate.database import ADVISORY_LOCK_KEY

        with psycopg.connect(url) as con:
            con.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
            yield
            con.rollback()
        return
    with closing(sqlite3.connect(url, isolation_level=None)) as con:
        con.execute("BEGIN IMMEDIATE")
        yield
        con.execute("ROLLBACK")


# --- schema version 3 (the consent registry) and the migrations to it -----------------------------------------------

# The tables of schema version 2 (before the consent registry), written out here, not taken from the code under test.
V2_TABLE_NAMES = {"meta", "ledger", "users", "tokens", "sessions", "claims", "login_attempts", "detect_feedback"}
CONSENT_COLUMNS = [
    *("id", "name", "scope", "evidence_sha256", "evidence_name", "portrait_sha256", "embedding", "backend"),
    *("created_at", "created_by", "expires_at", "revoked_at", "revoked_by", "revoke_reason", "deleted_at"),
]


def _sql(url: str, *statements: str) -> list[tuple]:
    """Run statements with the backend's own client (not gate.database); the last one's rows."""
    rows: list[tuple] = []
    if is_postgres(url):
        import psycopg

        with psycopg.connect(url, autocommit=True) as con:
            for s in statements:
                cur = con.execute(s)
                rows = cur.fetchall() if cur.description else []
        return rows
    with closing(sqlite3.connect(url, isolation_level=None)) as con:
        for s in statements:
            rows = con.execute(s).fetchall()
    return rows


def _tables(url: str) -> set[str]:
    if is_postgres(url):
        return {r[0] for r in _sql(url, "SELECT table_name FROM information_schema.tables WHERE table_schema='public'")}
    return {r[0] for r in _sql(url, "SELECT name FROM sqlite_master WHERE type='table'")}


def _consent_columns(url: str) -> list[str]:
    if is_postgres(url):
        q = "SELECT column_name FROM information_schema.columns WHERE table_name='consents' ORDER BY ordinal_position"
        return [r[0] for r in _sql(url, q)]
    return [r[1] for r in _sql(url, "PRAGMA table_info(consents)")]


def _schema_2_database_with_data(url: str) -> None:
    """A schema-2 database holding a user and two ledger rows: made by today's code, then taken back to what version 2
    was (its eight tables, ``schema_version`` 2) with the backend's own client."""
    from gate.ledger import Ledger

    db = Database.open(url, create=True)
    with db.transaction() as tx:
        tx.execute(
            "INSERT INTO users (name, role, password_hash, created_at) VALUES (?, ?, ?, ?)", ("ann", "admin", "h", "t")
        )
    row = {"created_at": "2026-11-01T00:00:00Z", "output_path": "/o/a.mp4", "output_sha256": "0" * 64}
    Ledger(db).append(run_id="r1", decision="released", payload_hex="00ff", record_json='{"a": 1}', **row)
    Ledger(db).append(run_id="r2", decision="quarantined", payload_hex=None, record_json='{"b": 2}', **row)
    _sql(url, "DROP TABLE consents", "UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    assert _tables(url) == V2_TABLE_NAMES


def test_create_makes_the_consents_table_with_its_columns(db_url):
    Database.open(db_url, create=True)
    assert _tables(db_url) == V2_TABLE_NAMES | {"consents"}
    assert _consent_columns(db_url) == CONSENT_COLUMNS
    # evidence_sha256, backend, created_at, created_by are required
    with pytest.raises(IntegrityError), Database.open(db_url).transaction() as tx:
        tx.execute("INSERT INTO consents (id, backend, created_at, created_by) VALUES ('cns-1', 'f', 't', 'u')")


def test_a_schema_2_database_is_read_as_it_is_and_migrated_to_3_on_the_first_write_with_its_data(db_url):
    _schema_2_database_with_data(db_url)
    ledger_before = _sql(db_url, "SELECT seq, kind, run_id, record_json, prev_hash, row_hash FROM ledger ORDER BY seq")
    db = Database.open(db_url)
    assert db.layout == 2 and db.ledger_current
    assert not db.table_exists("consents") and db.table_exists("users")
    with db.reading() as tx:  # a reader sees the old tables and writes nothing
        assert tx.execute("SELECT name FROM users") == [{"name": "ann"}]
    assert _tables(db_url) == V2_TABLE_NAMES and _sql(db_url, "SELECT value FROM meta") == [("2",)]

    with db.transaction() as tx:  # the first write migrates, in its own transaction
        assert tx.execute("SELECT COUNT(*) AS n FROM consents") == [{"n": 0}]
    assert db.layout == 3 and db.table_exists("consents")
    assert _tables(db_url) == V2_TABLE_NAMES | {"consents"} and _consent_columns(db_url) == CONSENT_COLUMNS
    assert _sql(db_url, "SELECT key, value FROM meta") == [("schema_version", "3")]
    assert _sql(db_url, "SELECT name, role FROM users") == [("ann", "admin")]
    after = _sql(db_url, "SELECT seq, kind, run_id, record_json, prev_hash, row_hash FROM ledger ORDER BY seq")
    assert after == ledger_before and len(after) == 2

    from gate.ledger import Ledger

    assert Ledger(db_url).verify().ok


def test_a_failed_first_write_leaves_a_schema_2_database_as_it_was(db_url):
    _schema_2_database_with_data(db_url)
    db = Database.open(db_url)
    with pytest.raises(_Boom), db.transaction() as tx:
        assert tx.execute("SELECT COUNT(*) AS n FROM consents") == [{"n": 0}]  # migrated inside ...
        raise _Boom
    assert _tables(db_url) == V2_TABLE_NAMES and _sql(db_url, "SELECT value FROM meta") == [("2",)]  # ... rolled back
    assert Database.open(db_url).layout == 2


def test_two_handles_on_a_schema_2_database_migrate_it_once(db_url):
    _schema_2_database_with_data(db_url)
    first, second = Database.open(db_url), Database.open(db_url)
    with first.transaction():
        pass
    with second.transaction() as tx:  # migrated meanwhile: sees it under the lock and does not create it again
        tx.execute("INSERT INTO meta (key, value) VALUES ('x', 'y')")
    assert second.layout == 3 and _sql(db_url, "SELECT COUNT(*) FROM meta") == [(2,)]
    reader = Database.open(db_url)
    assert reader.layout == 3


def test_a_reader_opened_on_schema_2_sees_a_migration_by_another_process(db_url):
    _schema_2_database_with_data(db_url)
    reader = Database.open(db_url)
    with Database.open(db_url, create=True).reading():  # create=True migrated it at once
        pass
    with reader.reading() as tx:
        assert tx.execute("SELECT COUNT(*) AS n FROM consents") == [{"n": 0}]
    assert reader.layout == 3 and reader.table_exists("consents")


def test_a_layout_1_ledger_is_migrated_straight_to_schema_3(db_url):
    v1 = (
        "CREATE TABLE ledger (seq INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, "
        "decision TEXT NOT NULL, output_path TEXT NOT NULL, output_sha256 TEXT NOT NULL, payload_hex TEXT, "
        "record_sha256 TEXT NOT NULL, record_json TEXT NOT NULL, prev_hash TEXT NOT NULL, row_hash TEXT NOT NULL)"
    )
    old = ("1", "old0", "2026-10-01T00:00:00Z", "released", "/o/x.mp4", "ab" * 32, "00aa", "cd" * 32, "{}", "0" * 64)
    _sql(db_url, v1, "INSERT INTO ledger VALUES ({}, 'h')".format(", ".join(f"'{v}'" for v in old)))
    db = Database.open(db_url)
    assert db.layout == 1 and not db.ledger_current and not db.table_exists("consents")
    with db.transaction():
        pass
    assert db.layout == 3 and _tables(db_url) == V2_TABLE_NAMES | {"consents"}
    assert _sql(db_url, "SELECT value FROM meta WHERE key = 'schema_version'") == [("3",)]
    assert _sql(db_url, "SELECT run_id, kind, hash_version, row_hash FROM ledger") == [("old0", "run", 1, "h")]


def test_a_schema_2_database_with_a_consents_table_is_refused_untouched(db_url):
    _schema_2_database_with_data(db_url)
    _sql(db_url, "CREATE TABLE consents (x TEXT)")
    with pytest.raises(InputError, match="schema version 2 database must not have a consents table"):
        Database.open(db_url, create=True)
    assert _consent_columns(db_url) == ["x"] and _sql(db_url, "SELECT value FROM meta") == [("2",)]


def test_an_unknown_schema_version_is_refused_naming_it(db_url):
    Database.open(db_url, create=True)
    _sql(db_url, "UPDATE meta SET value = 'banana' WHERE key = 'schema_version'")
    with pytest.raises(InputError) as exc:
        Database.open(db_url)
    assert "schema version 2 or 3" in str(exc.value) and "banana" in str(exc.value)
