"""Users on both database backends: Argon2 hashes, the login rate limit, tokens and sessions stored hashed and
revocable, disabled users refused everywhere, and every change to users a ledger row (never a secret in it)."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from pwdlib.hashers.argon2 import Argon2Hasher

from gate import users as U
from gate.database import Database
from gate.ledger import Ledger
from tests.databases import db_url, pg_db_url, postgres_url  # noqa: F401

PASSWORD = "correct horse battery"
OTHER_PASSWORD = "another long password"


@pytest.fixture
def db(db_url):  # noqa: F811
    return Database.open(db_url, create=True)


def _all_text(db) -> str:
    """Every value stored in the tables that could leak a secret (ledger, users, tokens, sessions), as one string."""
    with db.reading() as tx:
        rows = [
            *tx.execute("SELECT * FROM ledger"),
            *tx.execute("SELECT * FROM users"),
            *tx.execute("SELECT * FROM tokens"),
            *tx.execute("SELECT * FROM sessions"),
        ]
    return json.dumps(rows, default=str)


def _user_rows(db) -> list[tuple[str, str, str | None, dict]]:
    return [(r.kind, r.decision, r.actor, r.record) for r in Ledger(db).rows() if r.kind == "user"]


def test_password_is_stored_as_argon2id_and_verifies(db):
    user = U.add_user(db, "alice", "approver", PASSWORD, actor="root")
    assert user == U.User("alice", "approver", False)
    with db.reading() as tx:
        stored = tx.execute_one("SELECT password_hash FROM users WHERE name = 'alice'")["password_hash"]
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")  # pwdlib's recommended Argon2id parameters
    assert PASSWORD not in _all_text(db)
    assert U.hasher().verify(PASSWORD, stored) and not U.hasher().verify(OTHER_PASSWORD, stored)
    assert U.authenticate_password(db, "alice", PASSWORD, client="t") == user
    with pytest.raises(U.AuthError) as err:
        U.authenticate_password(db, "alice", OTHER_PASSWORD, client="t")
    assert err.value.http_status == 401 and not isinstance(err.value, U.RateLimited)
    with pytest.raises(U.AuthError):
        U.authenticate_password(db, "nobody", PASSWORD, client="t")


def test_an_older_hash_is_upgraded_on_login(db):
    U.add_user(db, "alice", "approver", PASSWORD, actor="root")
    weak = Argon2Hasher(time_cost=1, memory_cost=8192).hash(PASSWORD)
    with db.transaction() as tx:
        tx.execute("UPDATE users SET password_hash = ? WHERE name = 'alice'", (weak,))
    U.authenticate_password(db, "alice", PASSWORD, client="t")
    with db.reading() as tx:
        stored = tx.execute_one("SELECT password_hash FROM users WHERE name = 'alice'")["password_hash"]
    assert stored != weak and stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert U.authenticate_password(db, "alice", PASSWORD, client="t").name == "alice"


@pytest.mark.parametrize(
    ("name", "role", "password", "subject"),
    [
        ("Alice", "approver", PASSWORD, "user name"),  # upper case
        ("-alice", "approver", PASSWORD, "user name"),
        ("a" * 65, "approver", PASSWORD, "user name"),
        ("al/ice", "approver", PASSWORD, "user name"),
        ("alice", "root", PASSWORD, "role"),
        ("alice", "approver", "short", "password"),  # < 12 characters
        ("alice", "approver", "x" * 1025, "password"),
    ],
)
def test_bad_names_roles_and_passwords_are_refused_with_nothing_written(db, name, role, password, subject):
    with pytest.raises(U.BadDecision) as err:
        U.add_user(db, name, role, password, actor="root")
    assert err.value.subject == subject and err.value.http_status == 422
    assert U.list_users(db) == [] and Ledger(db).rows() == []


def test_a_taken_name_is_a_conflict(db):
    U.add_user(db, "alice", "approver", PASSWORD, actor="root")
    with pytest.raises(U.Conflict):
        U.add_user(db, "alice", "viewer", OTHER_PASSWORD, actor="root")
    assert U.list_users(db) == [U.User("alice", "approver", False)]
    assert len(_user_rows(db)) == 1


def test_login_rate_limit_per_name_and_per_client(db):
    U.add_user(db, "alice", "approver", PASSWORD, actor="root")
    U.add_user(db, "bob", "approver", PASSWORD, actor="root")
    for _ in range(U.MAX_FAILURES):
        with pytest.raises(U.AuthError) as err:
            U.authenticate_password(db, "alice", "wrong password!!", client="10.0.0.1")
        assert not isinstance(err.value, U.RateLimited)
    # the right password no longer helps, from this client or any other: the name is locked for the window
    for client in ("10.0.0.1", "10.0.0.2"):
        with pytest.raises(U.RateLimited) as err:
            U.authenticate_password(db, "alice", PASSWORD, client=client)
        assert err.value.http_status == 429 and "15 minutes" in err.value.rule
    # the client that guessed is locked for every name
    with pytest.raises(U.RateLimited):
        U.authenticate_password(db, "bob", PASSWORD, client="10.0.0.1")
    assert U.authenticate_password(db, "bob", PASSWORD, client="10.0.0.3").name == "bob"


def test_a_success_clears_and_old_failures_expire(db):
    U.add_user(db, "alice", "approver", PASSWORD, actor="root")
    for _ in range(U.MAX_FAILURES - 1):
        with pytest.raises(U.AuthError):
            U.authenticate_password(db, "alice", "wrong password!!", client="c")
    U.authenticate_password(db, "alice", PASSWORD, client="c")  # clears the four failures
    for _ in range(U.MAX_FAILURES - 1):
        with pytest.raises(U.AuthError):
            U.authenticate_password(db, "alice", "wrong password!!", client="c")
    assert U.authenticate_password(db, "alice", PASSWORD, client="c").name == "alice"
    with db.reading() as tx:
        assert tx.execute("SELECT * FROM login_attempts") == []
    # failures older than the window do not count (and are removed)
    old = U.stamp(U.now() - timedelta(seconds=U.WINDOW_S + 1))
    with db.transaction() as tx:
        for _ in range(U.MAX_FAILURES):
            tx.execute("INSERT INTO login_attempts (key, at) VALUES (?, ?)", ("name:alice", old))
    assert U.authenticate_password(db, "alice", PASSWORD, client="c").name == "alice"


def test_tokens_are_shown_once_stored_hashed_and_revocable(db):
    U.add_user(db, "alice", "approver", PASSWORD, actor="root")
    token = U.new_token(db, "alice", actor="root")
    second = U.new_token(db, "alice", actor="root")
    assert token.startswith(U.TOKEN_PREFIX) and len(token) > 40 and token != second
    text = _all_text(db)
    assert token not in text and token[len(U.TOKEN_PREFIX) :] not in text
    with db.reading() as tx:
        stored = {r["token_sha256"] for r in tx.execute("SELECT token_sha256 FROM tokens")}
    assert hashlib.sha256(token.encode()).hexdigest() in stored
    assert U.authenticate_token(db, token) == U.User("alice", "approver", False)
    U.revoke_token(db, token, actor="root")
    with pytest.raises(U.AuthError):
        U.authenticate_token(db, token)
    with pytest.raises(U.NotFound):
        U.revoke_token(db, token, actor="root")  # already revoked
    assert U.authenticate_token(db, second).name == "alice"
    assert U.revoke_tokens(db, "alice", actor="root") == 1
    with pytest.raises(U.AuthError):
        U.authenticate_token(db, second)
    for bad in ("", "h3g_not-a-token", "Bearer x", U.TOKEN_PREFIX + "x" * 500):
        with pytest.raises(U.AuthError):
            U.authenticate_token(db, bad)


def test_sessions_are_hashed_expire_and_are_revocable(db):
    alice = U.add_user(db, "alice", "reviewer", PASSWORD, actor="root")
    sid, csrf = U.new_session(db, alice)
    assert sid not in _all_text(db)
    assert U.session_user(db, sid) == (alice, csrf)
    U.check_csrf(csrf, csrf)
    for wrong in (None, "", csrf[:-1], csrf + "x"):
        with pytest.raises(U.Forbidden):
            U.check_csrf(csrf, wrong)
    other, _ = U.new_session(db, alice)
    U.revoke_session(db, sid)
    with pytest.raises(U.AuthError):
        U.session_user(db, sid)
    assert U.session_user(db, other)[0] == alice  # only that session ended
    expired, _ = U.new_session(db, alice, ttl_s=-1)
    with pytest.raises(U.AuthError):
        U.session_user(db, expired)
    assert U.revoke_sessions(db, "alice") == 2  # `other` and the expired one (never revoked before)
    with pytest.raises(U.AuthError):
        U.session_user(db, other)


def test_a_disabled_user_is_refused_everywhere_until_enabled(db):
    alice = U.add_user(db, "alice", "approver", PASSWORD, actor="root")
    token = U.new_token(db, "alice", actor="root")
    sid, _ = U.new_session(db, alice)
    assert U.set_disabled(db, "alice", True, actor="root").disabled
    with pytest.raises(U.AuthError):
        U.authenticate_password(db, "alice", PASSWORD, client="c")
    with pytest.raises(U.AuthError):
        U.authenticate_token(db, token)
    with pytest.raises(U.AuthError):
        U.session_user(db, sid)
    with pytest.raises(U.AuthError):
        U.new_session(db, U.User("alice", "approver", False))  # a stale User object does not help
    with pytest.raises(U.Conflict):
        U.set_disabled(db, "alice", True, actor="root")
    U.set_disabled(db, "alice", False, actor="root")
    assert U.authenticate_token(db, token).name == "alice"
    assert U.authenticate_password(db, "alice", PASSWORD, client="c2").name == "alice"
    with pytest.raises(U.AuthError):
        U.session_user(db, sid)  # disabling ended the session for good


def test_every_change_is_a_ledger_row_without_secrets_and_the_chain_verifies(db):
    U.add_user(db, "root", "admin", PASSWORD, actor="ops")
    U.add_user(db, "alice", "reviewer", OTHER_PASSWORD, actor="root")
    U.set_role(db, "alice", "approver", actor="root")
    token = U.new_token(db, "alice", actor="root")
    U.revoke_token(db, token, actor="root")
    U.set_disabled(db, "alice", True, actor="root")
    U.set_disabled(db, "alice", False, actor="root")
    U.revoke_tokens(db, "alice", actor="root")
    tid = U.token_id(token)
    assert _user_rows(db) == [
        ("user", "add", "ops", {"action": "add", "user": "root", "role": "admin"}),
        ("user", "add", "root", {"action": "add", "user": "alice", "role": "reviewer"}),
        ("user", "role", "root", {"action": "role", "user": "alice", "role": "approver", "previous_role": "reviewer"}),
        ("user", "token", "root", {"action": "token", "user": "alice", "token_id": tid}),
        ("user", "revoke-token", "root", {"action": "revoke-token", "user": "alice", "token_id": tid}),
        ("user", "disable", "root", {"action": "disable", "user": "alice"}),
        ("user", "enable", "root", {"action": "enable", "user": "alice"}),
        ("user", "revoke-token", "root", {"action": "revoke-token", "user": "alice", "token_ids": []}),
    ]
    rows = Ledger(db).rows()
    assert [r.role for r in rows] == [None] + ["admin"] * 7  # the actor's role when they are a user
    assert all(r.run_id == "" and r.output_path == "" and r.hash_version == 2 for r in rows)
    text = _all_text(db)
    assert PASSWORD not in text and OTHER_PASSWORD not in text and token not in text
    rep = Ledger(db).verify()
    assert rep.ok and rep.rows == 8, rep.problems


def test_a_change_and_its_ledger_row_are_one_transaction(db, monkeypatch):
    """If the ledger row cannot be appended, the user is not added either."""
    U.add_user(db, "root", "admin", PASSWORD, actor="ops")

    def broken(self, tx, **fields):
        raise RuntimeError("ledger append failed")

    monkeypatch.setattr(Ledger, "append_in", broken)
    with pytest.raises(RuntimeError):
        U.add_user(db, "alice", "approver", PASSWORD, actor="root")
    with pytest.raises(RuntimeError):
        U.set_disabled(db, "root", True, actor="root")
    monkeypatch.undo()
    assert U.list_users(db) == [U.User("root", "admin", False)]
    assert len(Ledger(db).rows()) == 1


def test_roles_are_ordered():
    viewer, reviewer, approver, admin = (U.User(n, n) for n in U.ROLES)
    assert admin.at_least("approver") and approver.at_least("reviewer") and not reviewer.at_least("approver")
    assert not viewer.at_least("reviewer")
    with pytest.raises(U.Forbidden):
        U.require_role(reviewer, "admin", "manage users")
    with pytest.raises(U.Forbidden):
        U.require_role(U.User("x", "admin", disabled=True), "viewer", "read")
    U.require_role(admin, "admin", "manage users")
