"""The JSON API (scripts, CI) and the public detection endpoint and page.

* ``GET /healthz`` - 200 ``{"status": "ok"}`` when the database answers a read, else 503.
* ``/api/v1/runs...`` - bearer-token auth only (``Authorization: Bearer h3g_…``, ``gate.users.authenticate_token``):
  no cookie is read, so no CSRF token is needed. A missing, unknown or revoked token, or a disabled user → 401 with
  ``WWW-Authenticate: Bearer``. Handlers call ``gate.review`` (the CLI and the pages call the same functions); its
  errors carry their HTTP status (403 role / four eyes, 404 unknown run, 409 no longer pending, 422 bad reason or
  comment), turned into ``{"detail": …}`` by ``review_app.app``. A malformed JSON body is 422 (pydantic).
  ``POST /api/v1/runs/{run_id}/comments`` - JSON ``{"comment": TEXT, "frame": optional int}`` → 201
  ``{"run_id", "seq", "frame"}`` (``gate.review.comment``; 403 viewer, 409 no longer pending, 422 bad text or frame).
* ``POST /api/v1/detect`` - no login. The multipart body is parsed as it streams in; the part named ``file`` goes to
  a private temporary file (``mkstemp``: mode 0600) in ``settings.upload_dir`` (else a fresh private temporary
  directory), and the request is refused with 413 as soon as the file (or the body) passes
  ``settings.max_upload_bytes`` - a Content-Length over the cap is refused before reading, but a body without one,
  or one that lies, is counted byte by byte. The file is deleted in a ``finally`` before the answer is sent; nothing
  of it is kept. The answer is ``gate.detect.DetectResult`` (no personal data). A file that is not a readable,
  complete video is 422 naming the rule (the server's temporary path never appears).
* ``POST /api/v1/detect/feedback`` - JSON ``{"verdict", "payload_hex", "comment"}`` (``gate.detect.Feedback``: caps
  and patterns), stored in ``detect_feedback``; 201. The body itself is capped (``FEEDBACK_BODY_MAX``) while read.
* ``GET /detect``, ``POST /detect``, ``POST /detect/feedback`` - the page. CSRF choice: these forms are public and
  use no session (nothing of a logged-in user is read or changed), so there is nothing for a forged cross-site
  request to act with: ``/detect`` only reads (an upload is examined and deleted), and feedback is anonymous - a
  forged post could only say what anyone may say directly. So they are plain HTML form posts without a CSRF token,
  and they work without JavaScript.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from python_multipart.multipart import MultipartParser, parse_options_header

from gate import detect as detection
from gate.review import checked_run_id
from gate.users import AuthError, User, authenticate_token
from reports.errors import Hallo3Error, InputError
from review_app.app import get_db, get_settings
from review_app.settings import Settings

router = APIRouter()

MULTIPART_SLACK = 64 * 1024  # boundaries and part headers a body may carry beyond the file itself
FEEDBACK_BODY_MAX = 16 * 1024  # a feedback body: 2000 characters of comment (up to 4 bytes each) and a little JSON
UPLOAD_FIELD = "file"
MAX_PER_PAGE = 100


# --- authentication -------------------------------------------------------------------------------------------------


def bearer_user(request: Request) -> User:
    """The enabled user of the request's bearer token; ``AuthError`` (401 + ``WWW-Authenticate: Bearer``) else."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization", "must be 'Bearer <API token>' (hallo3-gate users token NAME)")
    return authenticate_token(get_db(request), token.strip())


Authenticated = Annotated[User, Depends(bearer_user)]
RunId = Annotated[str, Depends(checked_run_id)]  # one the gate could never have made names no run: 404


# --- health ---------------------------------------------------------------------------------------------------------


@router.get("/healthz")
def healthz(request: Request) -> JSONResponse:
    try:
        with get_db(request).reading() as tx:
            tx.execute_one("SELECT 1 AS one")
    except (Hallo3Error, OSError):
        return JSONResponse({"status": "unavailable", "detail": "the database does not answer"}, status_code=503)
    return JSONResponse({"status": "ok"})


# --- runs and decisions ---------------------------------------------------------------------------------------------


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject"]
    reason: str = Field(min_length=1, max_length=40)
    comment: str = Field(default="", max_length=2000)


class CommentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field(max_length=2000)
    frame: int | None = Field(default=None, strict=True)


@router.get("/api/v1/runs")
def list_runs(
    request: Request,
    user: Authenticated,
    state: Literal["pending", "released", "quarantined"] | None = None,
    model: str | None = Query(default=None, max_length=200),
    submitter: str | None = Query(default=None, max_length=64),
    page: int = Query(default=1, ge=1, le=100_000),
    per_page: int = Query(default=25, ge=1, le=MAX_PER_PAGE),
) -> Any:
    from gate import review

    settings = get_settings(request)
    found = review.list_runs(
        get_db(request), settings.runs_dir, state=state, model=model, submitter=submitter, page=page, per_page=per_page
    )
    return jsonable_encoder(found)


@router.get("/api/v1/runs/{run_id}")
def get_run(request: Request, user: Authenticated, run_id: RunId) -> Any:
    from gate import review

    return jsonable_encoder(review.get_run(get_db(request), get_settings(request).runs_dir, run_id))


@router.post("/api/v1/runs/{run_id}/decisions")
def decide(request: Request, user: Authenticated, run_id: RunId, body: DecisionBody) -> dict[str, str]:
    from gate import review

    state = review.decide(
        get_db(request), get_settings(request).runs_dir, run_id, user, body.decision, body.reason, body.comment
    )
    return {"run_id": run_id, "state": str(state)}


@router.post("/api/v1/runs/{run_id}/comments", status_code=201)
def comment(request: Request, user: Authenticated, run_id: RunId, body: CommentBody) -> dict[str, Any]:
    from gate import review

    event = review.comment(
        get_db(request), get_settings(request).runs_dir, run_id, user, body.comment, frame=body.frame
    )
    return {"run_id": run_id, "seq": event.seq, "frame": event.frame}


# --- detection ------------------------------------------------------------------------------------------------------


class Refused(Exception):
    """An upload refused before it was examined: the HTTP status and one line naming the rule."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass
class _Part:
    headers: dict[str, str]
    field: str | None = None


@contextlib.contextmanager
def _private_upload(settings: Settings) -> Any:
    """A private temporary file (0600) for one upload, in ``settings.upload_dir`` or a fresh private directory;
    removed (with that directory) when the block ends, whatever happened."""
    fresh = None
    if settings.upload_dir is None:
        fresh = Path(tempfile.mkdtemp(prefix="hallo3-detect-"))  # 0700
    directory = settings.upload_dir if fresh is None else fresh
    fd, name = tempfile.mkstemp(prefix=".upload-", suffix=".part", dir=directory)
    try:
        yield fd, Path(name)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        if fresh is not None:
            shutil.rmtree(fresh, ignore_errors=True)


async def _receive_file(request: Request, fd: int, cap: int) -> int:
    """Stream the multipart body into ``fd``, writing only the ``file`` part; returns its size in bytes.
    Raises ``Refused`` (413 past ``cap``, 415 not multipart, 422 no ``file`` part or a malformed body)."""
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise Refused(415, f"the request must be multipart/form-data with the video in a field named '{UPLOAD_FIELD}'")
    body_cap = cap + MULTIPART_SLACK
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > body_cap:
        raise Refused(413, _too_large(cap))
    parts: list[_Part] = []
    header: list[bytes] = [b"", b""]
    written = 0
    files = 0

    def on_part_begin() -> None:
        parts.append(_Part({}))

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header[0] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header[1] += data[start:end]

    def on_header_end() -> None:
        parts[-1].headers[header[0].decode("latin-1").lower()] = header[1].decode("latin-1")
        header[0], header[1] = b"", b""

    def on_headers_finished() -> None:
        nonlocal files
        _, disp = parse_options_header(parts[-1].headers.get("content-disposition", ""))
        parts[-1].field = disp.get(b"name", b"").decode("utf-8", "replace")
        if parts[-1].field == UPLOAD_FIELD:
            files += 1
            if files > 1:
                raise Refused(422, f"send one file in the field '{UPLOAD_FIELD}' (got more than one)")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        nonlocal written
        if parts[-1].field != UPLOAD_FIELD:
            return
        written += end - start
        if written > cap:
            raise Refused(413, _too_large(cap))
        view = memoryview(data)[start:end]
        while view:
            view = view[os.write(fd, view) :]

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
        },
    )
    received = 0
    try:
        async for chunk in _chunks(request):
            received += len(chunk)
            if received > body_cap:
                raise Refused(413, _too_large(cap))
            parser.write(chunk)
        parser.finalize()
    except Refused:
        raise
    except Exception as exc:  # python-multipart's parse errors have no common base class worth naming
        raise Refused(422, f"the multipart body could not be parsed ({type(exc).__name__})") from None
    if files == 0:
        raise Refused(422, f"the form must carry the video in a field named '{UPLOAD_FIELD}'")
    return written


async def _chunks(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


def _too_large(cap: int) -> str:
    return f"file: an upload must be at most {cap} bytes ({cap / 1048576:.0f} MiB)"


def _upload_error(exc: Hallo3Error, path: Path) -> str:
    """The service's one line about the uploaded file, naming the upload instead of the server's temporary path."""
    where = str(path)
    value = None if exc.value is None else str(exc.value).replace(where, "the upload")
    return InputError("file", exc.rule.replace(where, "the upload"), value).one_line()


async def _detect_upload(request: Request) -> detection.DetectResult:
    """Receive, examine and delete one upload; ``Refused`` for what could not be examined."""
    settings = get_settings(request)
    db = get_db(request)
    with _private_upload(settings) as (fd, path):
        size = await _receive_file(request, fd, settings.max_upload_bytes)
        os.close(fd)
        if size == 0:
            raise Refused(422, "file: an upload must be a video (got an empty file)")
        try:
            return await run_in_threadpool(detection.detect, path, db, trust_anchors_pem=settings.trust_anchors_pem)
        except InputError as exc:
            raise Refused(422, _upload_error(exc, path)) from None


@router.post("/api/v1/detect")
async def detect_api(request: Request) -> JSONResponse:
    try:
        result = await _detect_upload(request)
    except Refused as exc:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)
    return JSONResponse(result.to_dict())


async def _capped_body(request: Request, limit: int) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Refused(413, f"the request body must be at most {limit} bytes")
    return bytes(body)


@router.post("/api/v1/detect/feedback", status_code=201)
async def feedback_api(request: Request) -> JSONResponse:
    try:
        raw = await _capped_body(request, FEEDBACK_BODY_MAX)
        feedback = detection.Feedback.model_validate_json(raw or b"null")
    except Refused as exc:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)
    except ValidationError as exc:
        return JSONResponse({"detail": _validation_errors(exc)}, status_code=422)
    feedback_id = await run_in_threadpool(detection.record_feedback, get_db(request), feedback)
    return JSONResponse({"id": feedback_id, "stored": True}, status_code=201)


def _validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors(include_input=False)]


# --- the detection page ---------------------------------------------------------------------------------------------


def _page(request: Request, status: int = 200, **context: Any) -> Response:
    from review_app.auth import current_session
    from review_app.pages import render

    settings = get_settings(request)
    base = {
        "session": current_session(request),
        "nav": "detect",
        "max_upload_mib": settings.max_upload_bytes / 1048576,
        "result": None,
        "error": None,
        "thanks": False,
        "feedback_errors": None,
    }
    return render(request, "detect.html", {**base, **context}, status)


@router.get("/detect", include_in_schema=False)
def detect_page(request: Request) -> Response:
    return _page(request)


@router.post("/detect", include_in_schema=False)
async def detect_form(request: Request) -> Response:
    try:
        result = await _detect_upload(request)
    except Refused as exc:
        return _page(request, exc.status, error=exc.detail)
    return _page(request, result=result)


@router.post("/detect/feedback", include_in_schema=False)
async def feedback_form(request: Request) -> Response:
    try:
        raw = await _capped_body(request, FEEDBACK_BODY_MAX)
        fields = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        fields = {k: v for k, v in fields.items() if k in ("verdict", "payload_hex", "comment")}
        if not fields.get("payload_hex"):
            fields.pop("payload_hex", None)
        feedback = detection.Feedback.model_validate(fields)
    except Refused as exc:
        return _page(request, exc.status, error=exc.detail)
    except ValidationError as exc:
        msgs = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_input=False)]
        return _page(request, 422, feedback_errors=msgs)
    await run_in_threadpool(detection.record_feedback, get_db(request), feedback)
    return _page(request, thanks=True)
