"""The HTML pages of the review service: login/logout, the queue, a run's page, the audit page.

Handlers only parse the request, call ``gate.review`` / ``gate.users`` / the ledger, and render a template (Jinja2
with autoescape: every user string is escaped). Every POST goes through ``auth.require_post`` (session + CSRF)
before anything happens; what a role may do is decided by ``gate.review`` (the buttons a role may not use are also
left out of the page). Run ids from URLs are checked by ``gate.staging.check_run_id``; files are found through the
gate's layout, never by a path built from request strings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from gate import review
from gate.users import AuthError, BadDecision, NotFound
from review_app import audit, auth, runview
from review_app.app import get_db, get_settings
from review_app.timeline import HEIGHT, WIDTH, timelines

TEMPLATES = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
        autoescape=True,  # every template: each user string is escaped
    )
)
router = APIRouter(include_in_schema=False)


def _num(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _age(seconds: Any) -> str:
    """A duration as people read it in a queue: 45 s, 12 min, 5 h, 3 d."""
    if not isinstance(seconds, int | float) or seconds < 0:
        return "—"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


TEMPLATES.env.filters["num"] = _num
TEMPLATES.env.filters["age"] = _age

AGES = {"": None, "1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
STATES = ("pending", "released", "quarantined")
SORTS = {
    "age": "oldest first",
    "newest": "newest first",
    "model": "model",
    "submitter": "submitter",
    "advisories": "most advisory failures",
}
PER_PAGE = 25
_TITLES = {400: "Bad request", 403: "Forbidden", 404: "Not found", 409: "Conflict", 422: "Not accepted"}


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status_code)


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    context = {"session": auth.current_session(request), "status": status, "message": message}
    return render(request, "error.html", {**context, "title": _TITLES.get(status, "Error")}, status)


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this site only (no scheme, host or protocol-relative URL)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/queue"


# --- login / logout --------------------------------------------------------------------------------------------------


@router.get("/login")
def login_form(request: Request, next: str = "/queue") -> Response:
    if auth.current_session(request) is not None:
        return _see_other(_safe_next(next))
    token = auth.login_csrf(request)
    response = render(request, "login.html", {"session": None, "login_csrf": token, "next": next, "name": ""})
    auth.set_login_csrf(request, response, token)
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    auth.check_login_csrf(request, form)
    name, password = str(form.get("name") or ""), str(form.get("password") or "")
    try:
        sid = auth.log_in(request, name, password)
    except AuthError as exc:
        token = auth.login_csrf(request)
        status = getattr(exc, "http_status", 401)
        context = {"session": None, "login_csrf": token, "next": str(form.get("next") or ""), "name": name}
        response = render(request, "login.html", {**context, "error": exc.rule}, status)
        auth.set_login_csrf(request, response, token)
        return response
    response = _see_other(_safe_next(str(form.get("next") or "")))
    auth.set_session_cookie(request, response, sid)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    await auth.require_post(request)
    response = _see_other("/login")
    auth.log_out(request, response)
    return response


# --- queue -----------------------------------------------------------------------------------------------------------


@router.get("/")
def home() -> Response:
    return _see_other("/queue")


@router.get("/queue")
def queue(
    request: Request,
    state: str = "pending",
    model: str = "",
    submitter: str = "",
    age: str = "",
    sort: str = "age",
    page: int = 1,
) -> Response:
    session = auth.require_session(request)
    filters = {"state": state, "model": model, "submitter": submitter, "age": age, "sort": sort}
    if age not in AGES:
        raise BadDecision("age", f"must be one of {', '.join(k for k in AGES if k)} or empty", age)
    result = review.list_runs(
        get_db(request),
        get_settings(request).runs_dir,
        state=None if state == "all" else state,
        model=model or None,
        submitter=submitter or None,
        max_age_s=AGES[age],
        sort=sort,
        page=page,
        per_page=PER_PAGE,
    )
    context = {
        "session": session,
        "nav": "queue",
        "result": result,
        "filters": filters,
        "states": STATES,
        "ages": AGES,
        "sorts": SORTS,
        "page_url": lambda p: "/queue?" + urlencode({**filters, "page": p}),
    }
    return render(request, "queue.html", context)


@router.post("/runs/{run_id}/claim")
async def claim(request: Request, run_id: str) -> Response:
    session, form = await auth.require_post(request)
    run_id = run_id
    if form.get("action") == "release":
        review.unclaim(get_db(request), run_id, session.user)
    else:
        review.claim(get_db(request), run_id, session.user)
    return _see_other(_back(form, run_id))


def _back(form: Any, run_id: str) -> str:
    return "/queue" if form.get("back") == "queue" else f"/runs/{run_id}"


# --- run page --------------------------------------------------------------------------------------------------------


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: str) -> Response:
    session = auth.require_session(request)
    view = review.get_run(get_db(request), get_settings(request).runs_dir, run_id)
    context = {
        "session": session,
        "nav": "queue",
        "view": view,
        "r": view.record,
        "page": runview.RunPage.of(view, session.user),
        "can_comment": review.can_comment(view, session.user),
        "timelines": timelines(view.record),
        "tl_width": WIDTH,
        "tl_height": HEIGHT,
    }
    return render(request, "run.html", context)


@router.post("/runs/{run_id}/decision")
async def decide(request: Request, run_id: str) -> Response:
    session, form = await auth.require_post(request)
    review.decide(
        get_db(request),
        get_settings(request).runs_dir,
        run_id,
        session.user,
        str(form.get("decision") or ""),
        str(form.get("reason") or ""),
        str(form.get("comment") or ""),
    )
    return _see_other(f"/runs/{run_id}")


@router.post("/runs/{run_id}/comment")
async def comment(request: Request, run_id: str) -> Response:
    """A comment on a pending run; with "pin to current frame" ticked, the frame review.js put in the form."""
    session, form = await auth.require_post(request)
    review.comment(
        get_db(request),
        get_settings(request).runs_dir,
        run_id,
        session.user,
        str(form.get("comment") or ""),
        frame=_form_frame(form) if form.get("pin") else None,
    )
    return _see_other(f"/runs/{run_id}#history")


def _form_frame(form: Any) -> int | str:
    """The form's frame field as a number when it is one; anything else goes to the service as sent (it says 422)."""
    raw = str(form.get("frame") or "").strip()
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 9 else raw


@router.get("/runs/{run_id}/video")
def video(request: Request, run_id: str) -> Response:
    """The run's video as the gate wrote it, with HTTP Range (Starlette's FileResponse); inline, never an attachment."""
    auth.require_session(request)
    view = review.get_run(get_db(request), get_settings(request).runs_dir, run_id)
    path = runview.video_file(view, get_settings(request).runs_dir)
    return FileResponse(path, media_type="video/mp4", content_disposition_type="inline")


@router.get("/runs/{run_id}/portrait")
def portrait(request: Request, run_id: str) -> Response:
    """The reference portrait the run read — only while the file still has the sha256 the record gives it."""
    auth.require_session(request)
    view = review.get_run(get_db(request), get_settings(request).runs_dir, run_id)
    path, media_type = runview.portrait_file(view)
    return FileResponse(path, media_type=media_type, content_disposition_type="inline")


# --- audit -----------------------------------------------------------------------------------------------------------


@router.get("/audit")
def audit_page(request: Request, kind: str = "", run_id: str = "", actor: str = "", decision: str = "") -> Response:
    session = auth.require_session(request)
    filters = audit.Filters.of(kind=kind, run_id=run_id, actor=actor, decision=decision)
    db = get_db(request)
    context = {
        "session": session,
        "nav": "audit",
        "filters": filters,
        "kinds": audit.KINDS,
        "rows": audit.rows(db, filters),
        "check": audit.verify(db),
        "export_query": urlencode(filters.query()),
    }
    return render(request, "audit.html", context)


@router.get("/audit/export.{fmt}")
def audit_export(
    request: Request, fmt: str, kind: str = "", run_id: str = "", actor: str = "", decision: str = ""
) -> Response:
    auth.require_session(request)
    if fmt not in audit.FORMATS:
        raise NotFound("format", f"export formats are {', '.join(audit.FORMATS)}", fmt)
    filters = audit.Filters.of(kind=kind, run_id=run_id, actor=actor, decision=decision)
    body, media_type = audit.export(audit.rows(get_db(request), filters), fmt)
    name = f"hallo3-gate-ledger.{fmt}"
    return Response(body, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{name}"'})
