"""People who review: users with a role, their passwords, API tokens and login sessions, in the gate's database.

Roles (``ROLES``, each includes the one before): ``viewer`` reads; ``reviewer`` also comments, claims and rejects;
``approver`` also approves; ``admin`` also manages users (and may approve, never exempt from four eyes).

Secrets are never stored or recorded as given:

* passwords: Argon2 through pwdlib (``PasswordHash.recommended()``); a hash in an older format is upgraded on the
  next successful login (``verify_and_update``);
* API tokens: 32 random bytes, shown once; the database keeps their sha256; revocable one by one or per user;
* sessions: a random id (the cookie) stored as its sha256, a per-session CSRF token, an expiry; revocable one by one,
  and all of a user's sessions end when the user is disabled.

Login is rate limited in the database (table ``login_attempts``, so every process of a team shares it): at most
``MAX_FAILURES`` failed logins per user name and per client within ``WINDOW_S``; each attempt is counted before the
password is checked (so concurrent guesses cannot slip past the limit), and a success clears the counts of its name
and client. A disabled user can neither log in nor use a token or a session.

Every change to users (add, disable, enable, role, token issued, tokens revoked) appends a ledger row of kind
``user`` in the same database transaction as the change itself: both happen or neither. The row names the action,
who did it and the details — never a password or a token.

Errors carry the HTTP status a web front end answers with (``http_status``); on the command line they are usage
errors (exit 2). ``gate.review`` re-exports them.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from pwdlib import PasswordHash

from reports.errors import UsageError

ROLES = ("viewer", "reviewer", "approver", "admin")
USER_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MIN_PASSWORD, MAX_PASSWORD = 12, 1024
MAX_FAILURES = 5  # failed logins per name and per client ...
WINDOW_S = 15 * 60  # ... within this many seconds
SESSION_TTL_S = 8 * 3600
TOKEN_PREFIX = "h3g_"
MAX_CLIENT = 200  # characters of a client key kept (an address, or a test's name)


# --- service errors (re-exported by gate.review) ---------------------------------------------------------------------


class ServiceError(UsageError):
    """A refused request: exit 2 on the command line, ``http_status`` on the web."""

    http_status = 400


class AuthError(ServiceError):
    """Not authenticated: wrong name or password, unknown/revoked token, expired/revoked session, disabled user."""

    http_status = 401


class RateLimited(AuthError):
    """Too many failed logins for this name or client: try again later."""

    http_status = 429


class Forbidden(ServiceError):
    """Authenticated, but this user may not do this (role, or the four-eyes rule)."""

    http_status = 403


class NotFound(ServiceError):
    http_status = 404


class Conflict(ServiceError):
    """The thing is not in a state that allows this (a decided run, an existing user, a claim held by someone)."""

    http_status = 409


class BadDecision(ServiceError):
    """A request's content breaks a rule: an unknown reason code, an empty or overlong comment, a bad value."""

    http_status = 422


# --- users -----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    name: str
    role: str
    disabled: bool = False

    def at_least(self, role: str) -> bool:
        """Whether this user's role includes ``role`` (roles are ordered as in ``ROLES``)."""
        return ROLES.index(self.role) >= ROLES.index(role)


def require_role(user: User, role: str, action: str) -> None:
    """Raise ``Forbidden`` unless ``user`` is enabled and at least ``role``."""
    if user.disabled:
        raise Forbidden(user.name, f"a disabled user may not {action}")
    if not user.at_least(role):
        raise Forbidden(user.name, f"only a {role} or above may {action}", f"role {user.role}")


def check_name(name: str) -> str:
    if not isinstance(name, str) or USER_NAME.fullmatch(name) is None:
        shown = name if isinstance(name, str) and len(name) <= 80 else f"{str(name)[:80]}…"
        raise BadDecision("user name", "must be 1-64 of a-z 0-9 . _ - starting with a letter or digit", shown)
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise BadDecision("role", f"must be one of {', '.join(ROLES)}", role)
    return role


def check_password(password: str) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        n = len(password) if isinstance(password, str) else 0
        raise BadDecision("password", f"must be {MIN_PASSWORD} to {MAX_PASSWORD} characters", f"{n} characters")
    return password


@cache
def hasher() -> PasswordHash:
    return PasswordHash.recommended()


@cache
def _dummy_hash() -> str:
    """A hash to verify against when the name is unknown, so that costs the same time as a wrong password."""
    return hasher().hash(secrets.token_urlsafe(16))


def now() -> datetime:
    return datetime.now(UTC)


def stamp(when: datetime) -> str:
    """A sortable UTC time stamp (text comparison = time order): ``2026-12-02T10:00:00.000000Z``."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _ledger(db):
    from gate.ledger import Ledger

    return Ledger(db)


def _record_change(tx, db, action: str, actor: str, details: dict[str, Any]) -> None:
    """The ledger row of one change to users, in the caller's transaction (no secret ever goes in ``details``)."""
    _ledger(db).append_change(tx, kind="user", action=action, actor=actor, details={"action": action, **details})


def _user(row: dict[str, Any]) -> User:
    return User(name=row["name"], role=row["role"], disabled=bool(row["disabled"]))


def _existing(tx, name: str) -> dict[str, Any]:
    row = tx.execute_one("SELECT name, role, disabled, password_hash FROM users WHERE name = ?", (name,))
    if row is None:
        raise NotFound(name, "no such user")
    return row


def add_user(db, name: str, role: str, password: str, *, actor: str) -> User:
    """Create a user; ``Conflict`` if the name is taken. The password is stored only as its Argon2 hash."""
    check_name(name)
    check_role(role)
    password_hash = hasher().hash(check_password(password))
    with db.transaction() as tx:
        if tx.execute_one("SELECT 1 AS x FROM users WHERE name = ?", (name,)) is not None:
            raise Conflict(name, "a user of this name exists already")
        tx.execute(
            "INSERT INTO users (name, role, password_hash, disabled, created_at) VALUES (?, ?, ?, 0, ?)",
            (name, role, password_hash, stamp(now())),
        )
        _record_change(tx, db, "add", actor, {"user": name, "role": role})
    return User(name, role, False)


def list_users(db) -> list[User]:
    with db.reading() as tx:
        return [_user(r) for r in tx.execute("SELECT name, role, disabled FROM users ORDER BY name")]


def get_user(db, name: str) -> User:
    with db.reading() as tx:
        return _user(_existing(tx, name))


def set_disabled(db, name: str, disabled: bool, *, actor: str) -> User:
    """Disable (every session of the user ends; tokens and logins are refused while disabled) or enable a user."""
    with db.transaction() as tx:
        row = _existing(tx, name)
        if bool(row["disabled"]) == disabled:
            raise Conflict(name, f"the user is {'disabled' if disabled else 'enabled'} already")
        tx.execute("UPDATE users SET disabled = ? WHERE name = ?", (1 if disabled else 0, name))
        if disabled:
            tx.execute("UPDATE sessions SET revoked = 1 WHERE user_name = ?", (name,))
        _record_change(tx, db, "disable" if disabled else "enable", actor, {"user": name})
    return User(name, row["role"], disabled)


def set_role(db, name: str, role: str, *, actor: str) -> User:
    check_role(role)
    with db.transaction() as tx:
        row = _existing(tx, name)
        if row["role"] == role:
            raise Conflict(name, f"the user's role is {role} already")
        tx.execute("UPDATE users SET role = ? WHERE name = ?", (role, name))
        _record_change(tx, db, "role", actor, {"user": name, "role": role, "previous_role": row["role"]})
    return User(name, role, bool(row["disabled"]))


# --- API tokens ------------------------------------------------------------------------------------------------------


def token_id(token: str) -> str:
    """What the ledger names a token by: the first 16 hex digits of its sha256 (never the token)."""
    return sha256_hex(token)[:16]


def new_token(db, name: str, *, actor: str) -> str:
    """A new API token for ``name``: returned once, stored as its sha256."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with db.transaction() as tx:
        _existing(tx, name)
        tx.execute(
            "INSERT INTO tokens (token_sha256, user_name, created_at, revoked) VALUES (?, ?, ?, 0)",
            (sha256_hex(token), name, stamp(now())),
        )
        _record_change(tx, db, "token", actor, {"user": name, "token_id": token_id(token)})
    return token


def revoke_token(db, token: str, *, actor: str) -> None:
    """Revoke one token (given as the token itself); ``NotFound`` if it is unknown or revoked already."""
    digest = sha256_hex(token) if isinstance(token, str) else ""
    with db.transaction() as tx:
        row = tx.execute_one("SELECT user_name FROM tokens WHERE token_sha256 = ? AND revoked = 0", (digest,))
        if row is None:
            raise NotFound("token", "no such active token")
        tx.execute("UPDATE tokens SET revoked = 1 WHERE token_sha256 = ?", (digest,))
        _record_change(tx, db, "revoke-token", actor, {"user": row["user_name"], "token_id": digest[:16]})


def revoke_tokens(db, name: str, *, actor: str) -> int:
    """Revoke every active token of ``name``; returns how many."""
    with db.transaction() as tx:
        _existing(tx, name)
        active = tx.execute("SELECT token_sha256 FROM tokens WHERE user_name = ? AND revoked = 0", (name,))
        tx.execute("UPDATE tokens SET revoked = 1 WHERE user_name = ?", (name,))
        ids = sorted(r["token_sha256"][:16] for r in active)
        _record_change(tx, db, "revoke-token", actor, {"user": name, "token_ids": ids})
    return len(ids)


def authenticate_token(db, token: str) -> User:
    """The enabled user an active token belongs to; ``AuthError`` otherwise (one message for every case)."""
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        raise AuthError("token", "must be a valid API token")
    with db.reading() as tx:
        row = tx.execute_one(
            "SELECT u.name, u.role, u.disabled FROM tokens t JOIN users u ON u.name = t.user_name "
            "WHERE t.token_sha256 = ? AND t.revoked = 0",
            (sha256_hex(token),),
        )
    if row is None or row["disabled"]:
        raise AuthError("token", "must be a valid API token of an enabled user")
    return _user(row)


# --- passwords and login ---------------------------------------------------------------------------------------------


def _attempt_keys(name: str, client: str) -> tuple[str, str]:
    return f"name:{name[:80]}", f"client:{str(client)[:MAX_CLIENT]}"


def authenticate_password(db, name: str, password: str, *, client: str) -> User:
    """The user, if ``password`` is theirs and they are enabled; else ``AuthError`` (``RateLimited`` after
    ``MAX_FAILURES`` failures for the name or the client within ``WINDOW_S``).

    The attempt is counted first, in a write transaction, so parallel guesses are all counted; a success removes
    the counts of its name and client."""
    keys = _attempt_keys(name if isinstance(name, str) else "", client)
    t = now()
    with db.transaction() as tx:
        tx.execute("DELETE FROM login_attempts WHERE at < ?", (stamp(t - timedelta(seconds=WINDOW_S)),))
        for key in keys:
            n = tx.execute_one("SELECT COUNT(*) AS n FROM login_attempts WHERE key = ?", (key,))["n"]
            if n >= MAX_FAILURES:
                what = "user name" if key.startswith("name:") else "client"
                raise RateLimited(
                    "login", f"too many failed logins for this {what}: try again in {WINDOW_S // 60} minutes"
                )
        for key in keys:
            tx.execute("INSERT INTO login_attempts (key, at) VALUES (?, ?)", (key, stamp(t)))
    with db.reading() as tx:
        row = tx.execute_one("SELECT name, role, disabled, password_hash FROM users WHERE name = ?", (name,))
    ok, new_hash = False, None
    if isinstance(password, str) and len(password) <= MAX_PASSWORD:
        ok, new_hash = hasher().verify_and_update(password, row["password_hash"] if row else _dummy_hash())
    if row is None or not ok or row["disabled"]:
        raise AuthError("login", "wrong user name or password, or the user is disabled")
    with db.transaction() as tx:
        tx.execute("DELETE FROM login_attempts WHERE key = ? OR key = ?", keys)
        if new_hash is not None:  # an older hash format: stored again in the current one (not a change of the user)
            tx.execute("UPDATE users SET password_hash = ? WHERE name = ?", (new_hash, name))
    return _user(row)


# --- sessions --------------------------------------------------------------------------------------------------------


def new_session(db, user: User, *, ttl_s: int = SESSION_TTL_S) -> tuple[str, str]:
    """A new session for ``user``: (session id for the cookie, CSRF token). The id is stored as its sha256."""
    sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    t = now()
    with db.transaction() as tx:
        row = _existing(tx, user.name)
        if row["disabled"]:
            raise AuthError(user.name, "a disabled user cannot log in")
        tx.execute(
            "INSERT INTO sessions (id_sha256, user_name, csrf, created_at, expires_at, revoked) "
            "VALUES (?, ?, ?, ?, ?, 0)",
            (sha256_hex(sid), user.name, csrf, stamp(t), stamp(t + timedelta(seconds=ttl_s))),
        )
    return sid, csrf


def session_user(db, sid: str) -> tuple[User, str]:
    """(user, CSRF token) of a live session; ``AuthError`` if it is unknown, expired, revoked or its user disabled."""
    if not isinstance(sid, str) or not 0 < len(sid) <= 200:
        raise AuthError("session", "must be a live session")
    with db.reading() as tx:
        row = tx.execute_one(
            "SELECT u.name, u.role, u.disabled, s.csrf FROM sessions s JOIN users u ON u.name = s.user_name "
            "WHERE s.id_sha256 = ? AND s.revoked = 0 AND s.expires_at > ?",
            (sha256_hex(sid), stamp(now())),
        )
    if row is None or row["disabled"]:
        raise AuthError("session", "must be a live session of an enabled user (log in again)")
    return _user(row), row["csrf"]


def check_csrf(expected: str, given: str | None) -> None:
    """Raise ``Forbidden`` unless ``given`` is the session's CSRF token (constant-time comparison)."""
    if not isinstance(given, str) or not secrets.compare_digest(expected.encode(), given.encode()):
        raise Forbidden("csrf", "a state-changing request must carry this session's CSRF token")


def revoke_session(db, sid: str) -> None:
    with db.transaction() as tx:
        tx.execute("UPDATE sessions SET revoked = 1 WHERE id_sha256 = ?", (sha256_hex(str(sid)),))


def revoke_sessions(db, name: str) -> int:
    """End every live session of ``name``; returns how many."""
    with db.transaction() as tx:
        n = tx.execute_one("SELECT COUNT(*) AS n FROM sessions WHERE user_name = ? AND revoked = 0", (name,))["n"]
        tx.execute("UPDATE sessions SET revoked = 1 WHERE user_name = ?", (name,))
    return int(n)
