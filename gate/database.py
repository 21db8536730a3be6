"""The one database behind the ledger and the review state: an SQLite file (the embedded default) or PostgreSQL.

Locator (``resolve``): an explicit argument, else ``$HALLO3_GATE_DB``, else ``$HALLO3_GATE_LEDGER``, else the
default ledger path. ``postgresql://…``/``postgres://…`` selects PostgreSQL (psycopg 3); ``sqlite:///abs/path`` or any
other string is the path of an SQLite file.

``Database.open(locator, create=False)`` checks what is there and never writes to something it did not create:

* SQLite, no file (and not ``create``) → ``UsageError`` (exit 2); with ``create`` a complete empty database appears
  atomically (linked into place whole; an existing file is never replaced);
* SQLite, not a hallo3-gate database — a 0-byte file, not SQLite, a directory or FIFO, another application's tables
  → ``InputError`` (exit 4), left untouched; cannot be read or written → ``OutputError`` (exit 74);
* PostgreSQL, cannot connect → ``OutputError`` (74) naming the URL without its password (``display``); a database
  without the tables and not ``create`` → ``UsageError`` (2); another application's ``ledger`` table → ``InputError``.

Layouts (``meta.schema_version``; ``Database.layout``): 1 — the 11-column ``ledger`` table written before the review
service (no ``meta``); 2 — the review service's tables; 3 — also ``consents``, the consent registry (``gate.consent``).
An older layout is read as it is (a layout-2 database simply has no consent records yet); the first write transaction
migrates it to the current layout inside that same transaction (1 → 3 and 2 → 3; old ledger rows keep their hash
version and hash). Readers never write. A database of a newer schema version than this hallo3-gate's is refused
(``InputError`` naming both versions), never written.

``with db.transaction() as tx`` is a write transaction serialised against every other writer of the database
(SQLite ``BEGIN IMMEDIATE`` on a WAL file with ``synchronous=FULL``; PostgreSQL ``pg_advisory_xact_lock`` first, so
a writer that reads the ledger head after the lock sees the latest committed row). ``with db.reading() as tx`` is a
read-only snapshot (SQLite ``mode=ro`` connection; PostgreSQL a READ ONLY, REPEATABLE READ transaction). SQL is
written once with ``?`` placeholders; rows come back as dicts. Each block uses its own connection, so a Database is
safe to share between threads and processes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import sqlite3
import stat
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from reports.atomic import file_kind, fsync_directory
from reports.errors import InputError, OutputError, UsageError

SCHEMA_VERSION = 3
LEDGER_LAYOUT = 2  # the first layout whose ledger table has today's columns (LEDGER_COLUMNS)
APPLICATION_ID = 0x48334C47  # "H3LG" in the SQLite header of a database created here (older ledgers carry 0)
ADVISORY_LOCK_KEY = 0x48334C47  # the PostgreSQL advisory lock every ledger writer takes first
LOCK_TIMEOUT_S = 60.0

# The ledger as hallo3-gate wrote it before the review service (layout 1): read as is, migrated on the first write.
V1_LEDGER_COLUMNS = (
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
LEDGER_COLUMNS = (
    "seq",
    "kind",
    "run_id",
    "created_at",
    "decision",
    "actor",
    "role",
    "reason",
    "comment",
    "output_path",
    "output_sha256",
    "payload_hex",
    "record_sha256",
    "record_json",
    "hash_version",
    "prev_hash",
    "row_hash",
)

_LEDGER_DDL = """
CREATE TABLE ledger (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    run_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    decision TEXT NOT NULL,
    actor TEXT,
    role TEXT,
    reason TEXT,
    comment TEXT,
    output_path TEXT NOT NULL,
    output_sha256 TEXT NOT NULL,
    payload_hex TEXT,
    record_sha256 TEXT NOT NULL,
    record_json TEXT NOT NULL,
    hash_version INTEGER NOT NULL,
    prev_hash TEXT NOT NULL,
    row_hash TEXT NOT NULL
)"""
_INDEX_DDL = (
    "CREATE INDEX ledger_payload ON ledger(payload_hex)",
    "CREATE INDEX ledger_run ON ledger(run_id)",
)
_OTHER_TABLES_DDL = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)",
    """CREATE TABLE users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
)""",
    """CREATE TABLE tokens (
    token_sha256 TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
)""",
    """CREATE TABLE sessions (
    id_sha256 TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
)""",
    """CREATE TABLE claims (
    run_id TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    claimed_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
)""",
    "CREATE TABLE login_attempts (key TEXT NOT NULL, at TEXT NOT NULL)",
    "CREATE INDEX login_attempts_key ON login_attempts(key, at)",
    """CREATE TABLE detect_feedback (
    id {autoid},
    created_at TEXT NOT NULL,
    verdict TEXT,
    payload_hex TEXT,
    comment TEXT
)""",
)
# Layout 3: the consent registry (gate.consent). name, scope, evidence_name, portrait_sha256, revoke_reason and the
# face embedding (a JSON list of floats) are personal/biometric data, set NULL when a record is deleted (deleted_at).
_CONSENTS_DDL = """CREATE TABLE consents (
    id TEXT PRIMARY KEY,
    name TEXT,
    scope TEXT,
    evidence_sha256 TEXT NOT NULL,
    evidence_name TEXT,
    portrait_sha256 TEXT,
    embedding TEXT,
    backend TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT,
    revoked_by TEXT,
    revoke_reason TEXT,
    deleted_at TEXT
)"""
V2_TABLES = ("meta", "ledger", "users", "tokens", "sessions", "claims", "login_attempts", "detect_feedback")
TABLES = (*V2_TABLES, "consents")
_AUTOID = {"sqlite": "INTEGER PRIMARY KEY", "postgresql": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"}

Kind = Literal["sqlite", "postgresql"]


class IntegrityError(OutputError):
    """A statement broke a constraint (a duplicate primary key, a NULL in a NOT NULL column) on either backend."""


def resolve(arg: str | os.PathLike[str] | None = None) -> str:
    """The database locator: ``arg``, else ``$HALLO3_GATE_DB``, else ``$HALLO3_GATE_LEDGER``, else the default path."""
    if arg is not None and str(arg) != "":
        return os.fspath(arg)
    for var in ("HALLO3_GATE_DB", "HALLO3_GATE_LEDGER"):
        if os.environ.get(var):
            return os.environ[var]
    return str(default_sqlite_path())


def default_sqlite_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "hallo3-gate" / "ledger.sqlite"


def is_postgres(locator: str) -> bool:
    return locator.startswith(("postgresql://", "postgres://"))


def sqlite_path(locator: str) -> Path:
    """The file an SQLite locator names (``sqlite:///abs/path`` or a plain path)."""
    if locator.startswith("sqlite://"):
        parsed = urllib.parse.urlsplit(locator)
        return Path(urllib.parse.unquote(parsed.path))
    return Path(locator)


def display_url(url: str) -> str:
    """A PostgreSQL URL safe to print: the password (in the authority or as a ``password`` parameter) removed."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}@{host}" if user else host
    query = urllib.parse.urlencode(
        [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k.lower() != "password"],
        safe="/",
    )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _secrets_of(url: str) -> list[str]:
    parts = urllib.parse.urlsplit(url)
    found = [parts.password] if parts.password else []
    found += [v for k, v in urllib.parse.parse_qsl(parts.query) if k.lower() == "password" and v]
    return found + [urllib.parse.unquote(s) for s in found]


class Tx:
    """One open transaction: ``execute`` (all rows), ``execute_one`` (the first row or None), ``stream`` (rows one
    at a time, for long scans). SQL uses ``?`` placeholders on both backends."""

    def __init__(self, db: Database, con: Any) -> None:
        self.db = db
        self._con = con

    @property
    def kind(self) -> Kind:
        return self.db.kind

    def execute(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[dict[str, Any]]:
        with self.db._errors():
            if self.db.kind == "sqlite":
                cur = self._con.execute(sql, tuple(params))
                return cur.fetchall() if cur.description else []
            cur = self._con.execute(_pg_sql(sql), tuple(params))
            return cur.fetchall() if cur.description else []

    def execute_one(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> dict[str, Any] | None:
        rows = self.execute(sql, params)
        return rows[0] if rows else None

    def stream(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> Iterator[dict[str, Any]]:
        """Rows one by one (a server-side cursor on PostgreSQL): memory does not grow with the result."""
        with self.db._errors():
            if self.db.kind == "sqlite":
                yield from self._con.execute(sql, tuple(params))
                return
            with self._con.cursor(name=f"h3_{secrets.token_hex(4)}") as cur:
                cur.itersize = 500
                cur.execute(_pg_sql(sql), tuple(params))
                yield from cur


def _pg_sql(sql: str) -> str:
    """``?`` placeholders → ``%s`` (and a literal ``%`` → ``%%``), leaving quoted strings and identifiers alone."""
    out: list[str] = []
    quote: str | None = None
    for ch in sql:
        if quote:
            out.append("%%" if ch == "%" else ch)
            if ch == quote:
                quote = None
        elif ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


def _dict_row(cur: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {d[0]: v for d, v in zip(cur.description, row, strict=True)}


@dataclass
class Database:
    """An opened database (see the module docstring). Build it with ``Database.open``."""

    kind: Kind
    locator: str = field(repr=False)  # may hold a password: print ``display``
    display: str
    path: Path | None
    layout: int  # 3: the current tables; 2: without consents; 1: a ledger from before the review service

    @property
    def ledger_current(self) -> bool:
        """Whether the ``ledger`` table has today's columns (layout 2 and later); a layout-1 ledger is read through
        a view until its first write migrates it."""
        return self.layout >= LEDGER_LAYOUT

    # --- opening ------------------------------------------------------------------------------------------------

    @classmethod
    def open(cls, locator: str | os.PathLike[str] | None = None, *, create: bool = False) -> Database:
        loc = resolve(locator)
        if is_postgres(loc):
            db = cls("postgresql", loc, display_url(loc), None, SCHEMA_VERSION)
            db._open_postgres(create)
        else:
            path = sqlite_path(loc)
            db = cls("sqlite", loc, str(path), path, SCHEMA_VERSION)
            if create and not os.path.lexists(path):
                db._create_sqlite()
            db.layout = db._check_sqlite()
        if create and db.layout < SCHEMA_VERSION:
            with db.transaction():  # migrates first
                pass
        return db

    def _create_sqlite(self) -> None:
        """Build a complete empty database beside ``path`` and link it into place: it appears whole or not at all,
        and a file that appeared meanwhile (another process creating it) is kept, never replaced."""
        assert self.path is not None
        parent = self.path.parent
        tmp = parent / f".{self.path.name}.{secrets.token_hex(4)}.new"
        try:
            parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666))
            with closing(sqlite3.connect(tmp, isolation_level=None)) as con:
                con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                con.execute("BEGIN")
                for stmt in schema_statements("sqlite"):
                    con.execute(stmt)
                con.execute("COMMIT")
                con.execute("PRAGMA journal_mode=WAL")
            _fsync_file(tmp)
            _link_no_replace(tmp, self.path)
            fsync_directory(parent)
        except (OSError, sqlite3.Error) as exc:
            raise OutputError(self.display, "a new ledger must be creatable here", _why(exc)) from None
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(OSError):
                    os.unlink(f"{tmp}{suffix}")

    def _check_sqlite(self) -> int:
        """The layout of the hallo3-gate database at ``path``, else raise; reads only (a ``mode=ro`` connection)."""
        assert self.path is not None
        where = self.display
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
            with closing(self._sqlite_connect(read_only=True)) as con:
                app_id = con.execute("PRAGMA application_id").fetchone()["application_id"]
                tables = {r["name"] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                cols = tuple(r["name"] for r in con.execute("PRAGMA table_info(ledger)"))
                version = None
                if "meta" in tables:
                    got = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                    version = got["value"] if got else None
        except sqlite3.Error as exc:
            raise self._sqlite_failure(exc, "must be a hallo3-gate ledger (an SQLite database)") from None
        if app_id not in (0, APPLICATION_ID):
            raise InputError(where, "must be a hallo3-gate ledger", f"another application's database (id {app_id})")
        return _layout(where, cols, tables, version)

    def _open_postgres(self, create: bool) -> None:
        # one snapshot for both catalog queries (REPEATABLE READ): under READ COMMITTED each query sees its own
        # snapshot, and a creator committing between them showed a ledger table without its sibling tables
        with self._pg_connection(autocommit=False, read_only=True) as con, self._errors():
            tables, cols = _pg_layout_facts(con)
        if not cols and not (tables & set(TABLES)):
            if not create:
                raise UsageError(self.display, "the hallo3-gate tables must exist in this database", "none")
            with self._pg_connection() as con, self._errors(), con.transaction():
                _pg_lock(con)
                tables, cols = _pg_layout_facts(con)
                if not cols and not (tables & set(TABLES)):
                    for stmt in schema_statements("postgresql"):
                        con.execute(stmt)
            with self._pg_connection(autocommit=False, read_only=True) as con, self._errors():
                tables, cols = _pg_layout_facts(con)
        version = None
        if "meta" in tables:
            with self._pg_connection() as con, self._errors():
                got = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                version = got["value"] if got else None
        self.layout = _layout(self.display, cols, tables, version)

    # --- connections --------------------------------------------------------------------------------------------

    def _sqlite_connect(self, *, read_only: bool) -> sqlite3.Connection:
        assert self.path is not None
        if read_only:
            uri = "file:" + urllib.parse.quote(str(self.path.absolute())) + "?mode=ro"
            con = sqlite3.connect(uri, uri=True, timeout=LOCK_TIMEOUT_S, isolation_level=None)
        else:
            con = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_S, isolation_level=None)
        con.row_factory = _dict_row
        if not read_only:
            con.execute("PRAGMA synchronous=FULL")
        return con

    @contextmanager
    def _pg_connection(self, *, autocommit: bool = True, read_only: bool = False) -> Iterator[Any]:
        import psycopg
        from psycopg.rows import dict_row

        try:
            con = psycopg.connect(self.locator, autocommit=autocommit, row_factory=dict_row, connect_timeout=30)
        except psycopg.Error as exc:
            raise OutputError(self.display, "the PostgreSQL database must be reachable", self._pg_why(exc)) from None
        with con:
            if read_only:
                con.read_only = True
                con.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            yield con

    @contextmanager
    def _errors(self, rule: str = "the database must be readable and writable") -> Iterator[None]:
        """Database errors as hallo3-gate errors naming this database (exceptions of the caller pass untouched)."""
        try:
            yield
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(self.display, "a database constraint must hold", _why(exc)) from None
        except sqlite3.Error as exc:
            raise self._sqlite_failure(exc, "ledger must be an intact SQLite database", rule) from None
        except Exception as exc:
            if type(exc).__module__.startswith("psycopg"):
                import psycopg

                if isinstance(exc, psycopg.errors.IntegrityError):
                    raise IntegrityError(self.display, "a database constraint must hold", self._pg_why(exc)) from None
                if isinstance(exc, psycopg.Error):
                    raise OutputError(self.display, rule, self._pg_why(exc)) from None
            raise

    def _pg_why(self, exc: BaseException) -> str:
        text = " ".join(str(exc).split()) or type(exc).__name__
        for secret in _secrets_of(self.locator):
            text = text.replace(secret, "***")
        return text

    def _sqlite_failure(
        self,
        exc: sqlite3.Error,
        rule: str,
        io_rule: str = "ledger must be readable (SQLite also writes its -wal and -shm files beside it)",
    ) -> InputError | OutputError:
        """A file that is not an intact SQLite database is a bad input file (exit 4); anything else (disk full, I/O
        error, read-only, cannot open, locked past the timeout) is an I/O error on the database (exit 74)."""
        name = getattr(exc, "sqlite_errorname", None) or ""
        if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT", "SQLITE_FORMAT")):
            return InputError(self.display, rule, _why(exc))
        return OutputError(self.display, io_rule, _why(exc))

    # --- transactions -------------------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """A write transaction, serialised against every other writer; commits when the block ends normally, rolls
        back on any exception (which then propagates). A layout-1 ledger is migrated first, in this transaction."""
        if self.kind == "postgresql":
            with self._pg_connection(autocommit=False) as con:
                try:
                    with self._errors("the database must be writable (its writers' lock within the timeout)"):
                        _pg_lock(con)
                    tx = Tx(self, con)
                    if self.layout < SCHEMA_VERSION:
                        self._migrate(tx)
                    yield tx
                    with self._errors("the database must be writable"):
                        con.commit()
                except BaseException:
                    with contextlib.suppress(Exception):
                        con.rollback()
                    raise
            return
        with self._errors("ledger must be writable"):
            con = self._sqlite_connect(read_only=False)
        with closing(con):
            with self._errors("ledger must be writable"):
                con.execute("BEGIN IMMEDIATE")
            try:
                tx = Tx(self, con)
                if self.layout < SCHEMA_VERSION:
                    self._migrate(tx)
                yield tx
                with self._errors("ledger must be writable"):
                    con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        con.execute("ROLLBACK")
                raise

    @contextmanager
    def reading(self) -> Iterator[Tx]:
        """A read-only snapshot; never writes (SQLite: a ``mode=ro`` connection)."""
        if self.kind == "postgresql":
            with self._pg_connection(autocommit=False, read_only=True) as con:
                try:
                    tx = Tx(self, con)
                    self._recheck_layout(tx)
                    yield tx
                finally:
                    with contextlib.suppress(Exception):
                        con.rollback()
            return
        with self._errors("ledger must be a readable, intact SQLite database"):
            con = self._sqlite_connect(read_only=True)
        with closing(con):
            with self._errors():
                con.execute("BEGIN")
            try:
                tx = Tx(self, con)
                self._recheck_layout(tx)
                yield tx
            finally:
                with contextlib.suppress(sqlite3.Error):
                    con.execute("ROLLBACK")

    def _migrate(self, tx: Tx) -> None:
        """An older layout → current, inside the caller's write transaction (so all or nothing). Layout 1: the rows
        keep their seq, hash and hash version 1; every other table and ``meta.schema_version`` are created.
        Layout 2: the ``consents`` table is created and ``meta.schema_version`` set. The layout is read again first,
        under the writers' lock: another process may have migrated it since this one looked."""
        tables, cols = self._layout_facts(tx)
        now = _layout(self.display, cols, tables, self._meta_version(tx, tables))
        if now == SCHEMA_VERSION:
            self.layout = SCHEMA_VERSION
            return
        if now == 2:
            tx.execute(_CONSENTS_DDL)
            tx.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
            self.layout = SCHEMA_VERSION
            return
        clash = sorted(tables & set(TABLES) - {"ledger"})
        if clash:
            raise InputError(self.display, "must be a hallo3-gate ledger", f"tables {', '.join(sorted(tables))}")
        tx.execute(_LEDGER_DDL.replace("CREATE TABLE ledger", "CREATE TABLE ledger_v2"))
        tx.execute(
            f"INSERT INTO ledger_v2 ({', '.join(LEDGER_COLUMNS)}) SELECT seq, 'run', run_id, created_at, decision, "
            "NULL, NULL, NULL, NULL, output_path, output_sha256, payload_hex, record_sha256, record_json, 1, "
            "prev_hash, row_hash FROM ledger"
        )
        tx.execute("DROP TABLE ledger")
        tx.execute("ALTER TABLE ledger_v2 RENAME TO ledger")
        for stmt in schema_statements(self.kind)[1:]:
            tx.execute(stmt)
        if self.kind == "sqlite":
            tx.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        self.layout = SCHEMA_VERSION

    def _recheck_layout(self, tx: Tx) -> None:
        """An older layout another process migrated since we opened it is read as what it is now."""
        if self.layout < SCHEMA_VERSION:
            tables, cols = self._layout_facts(tx)
            self.layout = _layout(self.display, cols, tables, self._meta_version(tx, tables))

    def _meta_version(self, tx: Tx, tables: set[str]) -> str | None:
        if "meta" not in tables:
            return None
        row = tx.execute_one("SELECT value FROM meta WHERE key = 'schema_version'")
        return row["value"] if row else None

    def _layout_facts(self, tx: Tx) -> tuple[set[str], tuple[str, ...]]:
        """The table names and the ledger's columns, read in ``tx``."""
        if self.kind == "sqlite":
            with self._errors():
                tables = {r["name"] for r in tx._con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                return tables, _sqlite_columns(tx._con)
        with self._errors():
            return _pg_layout_facts(tx._con)

    def table_exists(self, name: str) -> bool:
        """Whether ``name`` exists now (a layout-1 ledger has only ``ledger``, a layout-2 database no ``consents``,
        until its first write)."""
        if self.layout >= SCHEMA_VERSION:
            return name in TABLES
        if self.layout == 2:
            return name in V2_TABLES
        return name == "ledger"


def schema_statements(kind: Kind) -> list[str]:
    """Every table of the current layout (the one place they are defined), with ``meta.schema_version``."""
    stmts = [_LEDGER_DDL, *_INDEX_DDL, *(s.format(autoid=_AUTOID[kind]) for s in _OTHER_TABLES_DDL), _CONSENTS_DDL]
    stmts.append(f"INSERT INTO meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}')")
    return stmts


def _layout(where: str, cols: tuple[str, ...], tables: set[str], version: str | None) -> int:
    """Which hallo3-gate layout these tables are, else ``InputError`` (another application's database)."""
    if not cols:
        raise InputError(where, "must be a hallo3-gate ledger", "a database without a ledger table")
    if cols == V1_LEDGER_COLUMNS:
        return 1
    if cols != LEDGER_COLUMNS:
        raise InputError(where, "must be a hallo3-gate ledger", f"a ledger table with columns {', '.join(cols)}")
    if version is not None and version.isdigit() and int(version) > SCHEMA_VERSION:
        raise InputError(
            where,
            f"must be a hallo3-gate database of schema version {SCHEMA_VERSION} or older (a newer hallo3-gate wrote "
            f"this one: upgrade hallo3-gate to use it)",
            f"schema version {version}",
        )
    if version not in ("2", str(SCHEMA_VERSION)):
        raise InputError(where, f"must be a hallo3-gate database of schema version 2 or {SCHEMA_VERSION}", version)
    expected = V2_TABLES if version == "2" else TABLES
    missing = [t for t in expected if t not in tables]
    if missing:
        raise InputError(where, "must be a complete hallo3-gate database", f"no table {', '.join(missing)}")
    if version == "2" and "consents" in tables:
        raise InputError(where, "a schema version 2 database must not have a consents table", "one is there")
    return int(version)


def _sqlite_columns(con: sqlite3.Connection) -> tuple[str, ...]:
    return tuple(r["name"] for r in con.execute("PRAGMA table_info(ledger)"))


def _pg_lock(con: Any) -> None:
    """The writers' lock, held until the transaction ends; waiting longer than ``LOCK_TIMEOUT_S`` is an error."""
    con.execute(f"SET LOCAL lock_timeout = '{int(LOCK_TIMEOUT_S)}s'")
    con.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))


def _pg_layout_facts(con: Any) -> tuple[set[str], tuple[str, ...]]:
    tables = {
        r["table_name"]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchall()
    }
    cols = tuple(
        r["column_name"]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = 'ledger' ORDER BY ordinal_position"
        ).fetchall()
    )
    return tables, cols


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


Precondition = Callable[[Tx], None]
