"""The review service's ASGI application: ``create_app(settings)`` wires settings, the database, security headers,
static files, the HTML pages (``review_app.pages``) and the JSON API (``review_app.api``).

Request handlers hold no logic: they call ``gate.review`` / ``gate.users`` (the CLI calls the same functions). Every
``Hallo3Error`` a service raises becomes one HTTP answer here: its class's ``http_status`` (401, 403, 404, 409, 422
...), a ``UsageError`` without one 400, anything else of the family 500 — JSON ``{"detail": ...}`` under ``/api``,
an HTML page elsewhere (a page request without a valid session is sent to the login page).
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reports.errors import Hallo3Error, UsageError
from review_app.settings import Settings

if TYPE_CHECKING:
    from gate.database import Database

log = logging.getLogger("hallo3_gate.review")
STATIC_DIR = Path(__file__).resolve().parent / "static"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


class SecurityHeaders:
    """Pure ASGI middleware: every response gets ``SECURITY_HEADERS``; every response outside ``/static`` also
    ``Cache-Control: no-store`` (pages carry personal data and CSRF tokens) unless the handler set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cacheable = str(scope.get("path", "")).startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _OURS]
                headers.extend(SECURITY_HEADERS)
                if not cacheable and not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


_OURS = frozenset(k for k, _ in SECURITY_HEADERS)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_db(request: Request) -> Database:
    """The app's one ``gate.database.Database`` (opened at startup, or on first use when no lifespan ran)."""
    state = request.app.state
    with state.db_lock:
        if state.db is None:
            state.db = _open_db(state.settings)
        return state.db


def _open_db(settings: Settings) -> Database:
    from gate.database import Database

    return Database.open(settings.db, create=True)


def _close_db(db: Any) -> None:
    close = getattr(db, "close", None)
    if callable(close):
        close()


def http_status(exc: Hallo3Error) -> int:
    """The HTTP status of a service error (its class's ``http_status``; a UsageError 400; otherwise 500)."""
    status = getattr(exc, "http_status", None)
    if isinstance(status, int):
        return status
    return 400 if isinstance(exc, UsageError) else 500


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Hallo3Error)
    status = http_status(exc)
    if request.url.path.startswith("/api/"):
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse({"detail": exc.one_line()}, status_code=status, headers=headers)
    if status == 401:
        return RedirectResponse("/login", status_code=303)
    from review_app.pages import error_page

    return error_page(request, status, exc.one_line())


def finish_interrupted(settings: Settings) -> list[str]:
    """At startup, finish what a decision or a gate run left half done in the runs directory — the same recovery a
    gate run does (``gate.staging.recover``): a pending run whose ledger state is final is moved into place, a
    staging directory of a dead run is published or rolled back; only directories the gate marked as its own, for
    this database. A runs directory that cannot be written is logged, never fatal (the service can still read)."""
    from gate.staging import Layout, recover

    try:
        notes = recover(Layout(settings.runs_dir), settings.db)
    except Hallo3Error as exc:
        log.warning("hallo3-gate review: could not finish interrupted runs: %s", exc.one_line())
        return []
    for note in notes:
        log.info("hallo3-gate review: %s", note)
    return notes


def create_app(settings: Settings) -> FastAPI:
    """The application for ``settings``: the database is opened at startup (a bad locator fails there, with the
    gate's one-line error) and closed at shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with app.state.db_lock:
            if app.state.db is None:
                app.state.db = _open_db(settings)
        finish_interrupted(settings)
        try:
            yield
        finally:
            with app.state.db_lock:
                db, app.state.db = app.state.db, None
            if db is not None:
                _close_db(db)

    app = FastAPI(
        title="hallo3-gate review",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
    )
    app.state.settings = settings
    app.state.db = None
    app.state.db_lock = threading.Lock()
    app.add_middleware(SecurityHeaders)
    app.add_exception_handler(Hallo3Error, _service_error)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    api = _optional_router("review_app.api")
    if api is not None:
        app.include_router(api)
    from review_app.pages import router as pages_router

    app.include_router(pages_router)
    return app


def _optional_router(module: str) -> Any:
    """The ``router`` of ``module``, or None while that module does not exist yet (any other import error raises)."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        return None
    return mod.router
