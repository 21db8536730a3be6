"""Sessions and CSRF for the HTML pages (the JSON API uses bearer tokens instead: ``review_app.api``).

* The session cookie holds only a random id (``gate.users.new_session``); the server keeps its sha256, the user,
  the CSRF token, the expiry and a revoked flag, so logging out (or disabling a user) ends the session at once.
  The cookie is ``HttpOnly``, ``SameSite=Lax``, ``Path=/`` and ``Secure`` when ``settings.secure_cookies``.
* CSRF: every state-changing request of the pages carries the session's token, as the hidden form field ``csrf``
  or the ``x-csrftoken`` header (HTMX sends it from ``hx-headers`` on ``<body>``); it is compared in constant time.
  The login form, which has no session yet, uses a double-submit token: a random value in a short-lived
  ``HttpOnly`` cookie that the form must echo.
* Login attempts are rate-limited by ``gate.users.authenticate_password`` (per name and per client address).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from gate import users
from gate.users import AuthError, Forbidden
from review_app.app import get_db, get_settings

SESSION_COOKIE = "hallo3_session"
LOGIN_CSRF_COOKIE = "hallo3_login_csrf"
LOGIN_CSRF_TTL_S = 3600
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrftoken"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Session:
    """The logged-in user of a request and the CSRF token their pages carry."""

    user: users.User
    csrf: str


def current_session(request: Request) -> Session | None:
    """The request's valid session, or None (no cookie, unknown, expired, revoked, or the user disabled)."""
    sid = request.cookies.get(SESSION_COOKIE)
    if not sid:
        return None
    try:
        user, csrf = users.session_user(get_db(request), sid)
    except AuthError:
        return None
    return Session(user, csrf)


def require_session(request: Request) -> Session:
    """The request's session; without one a page answers with the login page (AuthError → redirect)."""
    session = current_session(request)
    if session is None:
        raise AuthError("session", "log in to use the review pages")
    return session


def tokens_match(sent: str | None, expected: str | None) -> bool:
    """Constant-time comparison; an absent or empty token never matches."""
    if not sent or not expected:
        return False
    return hmac.compare_digest(sent.encode("utf-8"), expected.encode("utf-8"))


async def require_post(request: Request) -> tuple[Session, FormData]:
    """A state-changing request of a logged-in user: the session, and the form once its CSRF token checked out.

    Raises ``AuthError`` (401 → login page) without a session and ``Forbidden`` (403) when the token is missing or
    wrong, before anything is done."""
    session = require_session(request)
    form = await request.form()
    sent = request.headers.get(CSRF_HEADER) or _field(form, CSRF_FIELD)
    if request.method not in UNSAFE_METHODS:
        raise Forbidden("method", "only a state-changing request goes through the CSRF check", request.method)
    users.check_csrf(session.csrf, sent or None)
    return session, form


def _field(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


# --- login / logout --------------------------------------------------------------------------------------------------


def login_csrf(request: Request) -> str:
    """The login form's token: the one in the request's cookie, or a new one (set by ``set_login_csrf``)."""
    token = request.cookies.get(LOGIN_CSRF_COOKIE)
    return token if token and len(token) == 43 else secrets.token_urlsafe(32)


def set_login_csrf(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=LOGIN_CSRF_TTL_S,
        path="/login",
        httponly=True,
        samesite="lax",
        secure=get_settings(request).secure_cookies,
    )


def check_login_csrf(request: Request, form: FormData) -> None:
    if not tokens_match(_field(form, CSRF_FIELD), request.cookies.get(LOGIN_CSRF_COOKIE)):
        raise Forbidden("csrf", "the login form must carry the token of its page (reload the login page)")


def client_key(request: Request) -> str:
    """What login attempts are counted per besides the name: the client's address as the server sees it."""
    return request.client.host if request.client else "unknown"


def log_in(request: Request, name: str, password: str) -> str:
    """Check the password (rate-limited; ``AuthError`` on failure) and open a session: returns its random id."""
    db = get_db(request)
    user = users.authenticate_password(db, name, password, client=client_key(request))
    sid, _csrf = users.new_session(db, user, ttl_s=get_settings(request).session_ttl_s)
    return sid


def set_session_cookie(request: Request, response: Response, sid: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        sid,
        max_age=get_settings(request).session_ttl_s,
        path="/",
        httponly=True,
        samesite="lax",
        secure=get_settings(request).secure_cookies,
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")


def log_out(request: Request, response: Response) -> None:
    """Revoke the request's session server-side and clear the cookie."""
    sid = request.cookies.get(SESSION_COOKIE)
    if sid:
        users.revoke_session(get_db(request), sid)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
