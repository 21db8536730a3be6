"""The same test on both database backends: ``db_url`` is an SQLite file path, then a PostgreSQL URL.

Use, in a test module (import all three names: pytest looks fixtures up in the module's namespace, and ``db_url``
asks for ``pg_db_url``, which asks for ``postgres_url``)::

    from tests.databases import db_url, pg_db_url, postgres_url  # noqa: F401

    def test_something(db_url):
        db = Database.open(db_url, create=True)

The SQLite case is a path in the test's tmp dir where nothing exists yet; the PostgreSQL case is a fresh, empty
database on the session's throw-away server (see tests/postgres.py), skipped with a reason where PostgreSQL is not
installed. ``request.node.callspec.params["db_url"]`` (or the test id) says which backend runs.
"""

from __future__ import annotations

import pytest

from tests.postgres import pg_db_url, postgres_url

__all__ = ["BACKENDS", "db_url", "pg_db_url", "postgres_url"]

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A database locator with nothing in it yet: an SQLite file path, or a fresh PostgreSQL database's URL."""
    if request.param == "sqlite":
        return str(tmp_path / "gate.sqlite")
    return request.getfixturevalue("pg_db_url")
