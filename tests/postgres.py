"""A throw-away PostgreSQL server for tests: ``postgres_url`` (session) and ``pg_db_url`` (a fresh database per test).

The server is the Debian ``postgresql`` package's own binaries (``/usr/lib/postgresql/<major>/bin``): ``initdb`` a
cluster in a new temporary directory, ``pg_ctl start`` it listening only on a Unix socket in that directory (no TCP
port), trust authentication for the ``postgres`` role. ``initdb`` and ``postgres`` refuse to run as root; as root
they run as the ``postgres`` system user (``runuser -u postgres --``) on a directory that user owns. One server per
pytest process (so one per xdist worker), stopped (``pg_ctl stop -m fast``) and removed when the session ends.
Where the binaries are absent the fixtures skip, saying so; any other failure to start is an error, not a skip.

Use: ``from tests.postgres import pg_db_url, postgres_url  # noqa: F401`` in a test module (both names: pytest
finds fixtures in the module's namespace), then take ``pg_db_url`` as an argument.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_USER = "postgres"


def pg_bindir() -> Path | None:
    """The newest installed PostgreSQL server's bin directory, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    return Path(found[-1]).parent if found else None


def _as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", PG_USER, "--", *cmd] if os.geteuid() == 0 else cmd


def _run(cmd: list[str], what: str) -> None:
    res = subprocess.run(_as_server_user(cmd), capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"{what} failed ({res.returncode}): {res.stdout[-2000:]}{res.stderr[-2000:]}")


def url_for(sockdir: Path, dbname: str) -> str:
    return f"postgresql://{PG_USER}@/{dbname}?host={urllib.parse.quote(str(sockdir), safe='/')}"


@contextlib.contextmanager
def running_server() -> Iterator[str]:
    """Start a throw-away server; yields the URL of its ``postgres`` database; stops and removes it after."""
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries absent (/usr/lib/postgresql/*/bin/initdb): install Debian `postgresql`")
    root = Path(tempfile.mkdtemp(prefix="h3pg-", dir="/tmp"))  # short: a Unix socket path has ~107 bytes
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        pw = pwd.getpwnam(PG_USER)
        for p in (root, sock):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    os.chmod(root, 0o700)
    started = False
    try:
        _run(
            [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", PG_USER, "-E", "UTF8", "--no-sync"], "initdb"
        )
        opts = f"-k {sock} -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        log = root / "log"
        try:
            _run([str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(log), "-w", "start"], "pg_ctl start")
        except RuntimeError as exc:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
            raise RuntimeError(f"{exc}\nserver log:\n{tail}") from None
        started = True
        yield url_for(sock, "postgres")
    finally:
        if started:
            with contextlib.suppress(Exception):
                _run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], "pg_ctl stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The URL of a throw-away server's ``postgres`` database (one server per test process)."""
    with running_server() as url:
        yield url


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new empty database on the server; dropped after (connections to it closed first)."""
    import psycopg

    name = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(server_url, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    host = urllib.parse.parse_qs(urllib.parse.urlsplit(server_url).query)["host"][0]
    try:
        yield url_for(Path(host), name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture()
def pg_db_url(postgres_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (its URL)."""
    with fresh_database(postgres_url) as url:
        yield url
