"""The review pages over HTTP (Starlette's TestClient): login, sessions, CSRF, security headers, escaping, video
Range requests, run ids that try to leave the runs directory, and what each role sees and may do."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from gate import review, users
from gate.ledger import Ledger
from review_app.app import CSP
from tests.review_app.conftest import HOSTILE, PASSWORD, csrf_of, log_in, make_pending_run

STATIC = Path(__file__).resolve().parents[2] / "review_app" / "static"


@pytest.fixture()
def run_id(site) -> str:
    return make_pending_run(site, seed=3)


@pytest.fixture()
def client(app):
    with TestClient(app) as c:
        yield c


def test_login_opens_the_queue_and_logout_revokes_the_session(client, run_id):
    r = log_in(client, "ann")
    assert r.status_code == 200 and r.url.path == "/queue" and run_id in r.text
    cookie = client.cookies.get("hallo3_session")
    set_cookie = next(h for h in r.history[0].headers.get_list("set-cookie") if h.startswith("hallo3_session="))
    assert "httponly" in set_cookie.lower() and "samesite=lax" in set_cookie.lower()
    assert "secure" not in set_cookie.lower()  # plain HTTP here; --secure-cookies behind HTTPS
    out = client.post("/logout", data={"csrf": csrf_of(r.text)}, follow_redirects=False)
    assert out.status_code == 303
    client.cookies.set("hallo3_session", cookie)  # the old id replayed: revoked server-side
    again = client.get("/queue", follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"] == "/login"


def test_a_wrong_password_is_refused_and_logins_are_rate_limited(client):
    bad = log_in(client, "ann", "not the password at all")
    assert bad.status_code == 401 and "wrong user name or password" in bad.text
    assert "hallo3_session" not in client.cookies
    for _ in range(users.MAX_FAILURES - 1):
        assert log_in(client, "ann", "still not the password").status_code == 401
    limited = log_in(client, "ann", PASSWORD)  # the right password no longer helps
    assert limited.status_code == 429 and "too many failed logins" in limited.text
    assert "hallo3_session" not in client.cookies


def test_the_login_form_needs_its_own_token(client):
    r = client.post("/login", data={"name": "ann", "password": PASSWORD, "csrf": "x" * 43})
    assert r.status_code == 403 and "hallo3_session" not in client.cookies


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(client, site, run_id):
    log_in(client, "ann")
    before = Ledger(site.db).last_seq()
    form = {"decision": "reject", "reason": "lip-sync", "comment": "no token"}
    assert client.post(f"/runs/{run_id}/decision", data=form).status_code == 403
    assert client.post(f"/runs/{run_id}/decision", data={**form, "csrf": "forged"}).status_code == 403
    assert client.post(f"/runs/{run_id}/claim", data={}).status_code == 403
    assert client.post("/logout", data={}).status_code == 403
    assert Ledger(site.db).last_seq() == before
    assert review.get_run(site.db, site.runs, run_id).state == "pending"
    assert review.get_run(site.db, site.runs, run_id).claim is None


def test_the_csrf_header_is_accepted_as_htmx_sends_it(client, site, run_id):
    page = log_in(client, "rex")
    token = csrf_of(page.text)
    body = re.search(r"<body hx-headers='([^']+)'", page.text)
    assert body and token in body.group(1)
    r = client.post(f"/runs/{run_id}/claim", headers={"x-csrftoken": token}, follow_redirects=False)
    assert r.status_code == 303
    assert review.get_run(site.db, site.runs, run_id).claim.user_name == "rex"


def test_every_page_carries_the_security_headers(client, run_id):
    pages = ["/login"]
    log_in(client, "ann")
    pages += ["/queue", f"/runs/{run_id}", "/audit", "/audit/export.csv", "/runs/nope/video"]
    for path in pages:
        r = client.get(path)
        h = r.headers
        assert h["content-security-policy"] == CSP, path
        assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP and "frame-ancestors 'none'" in CSP
        assert h["x-content-type-options"] == "nosniff" and h["referrer-policy"] == "no-referrer", path
        assert h["cache-control"] == "no-store", path
    assert "<script>" not in client.get(f"/runs/{run_id}").text  # no inline script under that CSP
    assert not re.search(r"\son[a-z]+=", client.get(f"/runs/{run_id}").text)  # nor inline handlers


def test_user_strings_are_escaped(client, site, run_id):
    users.add_user(site.db, "eve", "reviewer", PASSWORD, actor="setup")
    log_in(client, "eve")
    page = client.get(f"/runs/{run_id}")
    token = csrf_of(page.text)
    r = client.post(
        f"/runs/{run_id}/decision",
        data={"csrf": token, "decision": "reject", "reason": "other", "comment": HOSTILE},
    )
    assert r.status_code == 200
    audit = client.get("/audit")
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in r.text  # the run page's ledger history
    for html in (r.text, audit.text, client.get(f"/queue?model={HOSTILE}").text):
        assert HOSTILE not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in audit.text, re.findall(r".{80}alert.{40}", audit.text)


def test_the_video_is_served_inline_with_range_requests(client, site, run_id):
    log_in(client, "val")
    video = site.runs / "pending" / run_id / "video.mp4"
    r = client.get(f"/runs/{run_id}/video", headers={"Range": "bytes=100-1123"})
    assert r.status_code == 206
    assert r.headers["content-range"] == f"bytes 100-1123/{video.stat().st_size}"
    assert r.content == video.read_bytes()[100:1124]
    assert "attachment" not in r.headers.get("content-disposition", "")
    full = client.get(f"/runs/{run_id}/video")
    assert (
        full.status_code == 200
        and hashlib.sha256(full.content).hexdigest() == hashlib.sha256(video.read_bytes()).hexdigest()
    )
    assert client.get(f"/runs/{run_id}/portrait").headers["content-type"] == "image/jpeg"


@pytest.mark.parametrize(
    "path",
    [
        "/runs/..%2F..%2Fetc%2Fpasswd",
        "/runs/..%2Fpending/video",
        "/runs/../video",
        "/runs/%2e%2e/video",
        "/runs/.hidden/video",
        "/runs/20261123T231900Z-nope/video",
    ],
)
def test_run_ids_cannot_leave_the_runs_directory(client, path, run_id):
    log_in(client, "ann")
    r = client.get(path)
    assert r.status_code == 404, (path, r.status_code)
    assert b"root:" not in r.content


def test_the_portrait_is_not_served_once_the_file_changed(client, site, run_id):
    log_in(client, "ann")
    record = review.get_run(site.db, site.runs, run_id).record
    Path(record["inputs"]["portrait"]["path"]).write_bytes(b"\xff\xd8\xff not the portrait any more")
    assert client.get(f"/runs/{run_id}/portrait").status_code == 404


def test_a_viewer_sees_no_decision_buttons_and_is_refused_server_side(client, site, run_id):
    page = log_in(client, "val")
    run = client.get(f"/runs/{run_id}")
    assert run.status_code == 200 and 'id="decision-form"' not in run.text and 'value="approve"' not in run.text
    assert "can read this run but not decide" in run.text
    r = client.post(
        f"/runs/{run_id}/decision",
        data={"csrf": csrf_of(page.text), "decision": "approve", "reason": "meets-policy", "comment": "ok"},
    )
    assert r.status_code == 403
    assert review.get_run(site.db, site.runs, run_id).state == "pending"


def test_a_reviewer_may_reject_but_is_offered_no_approve(client, run_id):
    log_in(client, "rex")
    run = client.get(f"/runs/{run_id}").text
    assert 'id="reject"' in run and 'id="approve"' not in run


def test_two_approvals_release_and_the_submitter_is_never_offered_approve(app, site, run_id):
    with TestClient(app) as sam:
        log_in(sam, "sam")  # the submitter (a reviewer here) is offered no approve
        assert 'id="approve"' not in sam.get(f"/runs/{run_id}").text
    for name, expected in (("ann", "PENDING"), ("bob", "RELEASED")):
        with TestClient(app) as c:
            log_in(c, name)
            page = c.get(f"/runs/{run_id}")
            assert 'id="approve"' in page.text
            data = {
                "csrf": csrf_of(page.text),
                "decision": "approve",
                "reason": "meets-policy",
                "comment": "looks right",
            }
            r = c.post(f"/runs/{run_id}/decision", data=data)
            assert r.status_code == 200 and expected in r.text
    assert review.get_run(site.db, site.runs, run_id).state == "released"
    assert (site.runs / "released" / run_id / "video.mp4").is_file()


def test_the_queue_filters_and_the_audit_page_verifies_and_exports(client, site, run_id):
    other = make_pending_run(site, seed=4, submitter="rex", model="puppet")
    log_in(client, "ann")
    assert run_id in client.get("/queue?submitter=sam").text and other not in client.get("/queue?submitter=sam").text
    assert other in client.get("/queue?model=puppet").text and run_id not in client.get("/queue?model=puppet").text
    assert "No runs match" in client.get("/queue?state=released").text
    assert client.get("/queue?age=forever").status_code == 422
    audit = client.get(f"/audit?run_id={other}")
    assert "Chain verifies" in audit.text and other in audit.text and run_id not in audit.text
    csv = client.get("/audit/export.csv?kind=run")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0].startswith("seq,kind,run_id") and len(csv.text.splitlines()) == 3
    rows = client.get("/audit/export.json?kind=user").json()
    assert {r["kind"] for r in rows} == {"user"} and all("password" not in str(r) for r in rows)
    assert all("user_change" not in r and "record_json" not in r for r in rows)  # the hashed columns only
    users_page = client.get("/audit?kind=user").text
    assert "user ann as approver" in users_page and "user val as viewer" in users_page  # whom each row changed


def test_static_htmx_is_the_vendored_release():
    readme = (STATIC / "README.md").read_text()
    digest = hashlib.sha256((STATIC / "htmx.min.js").read_bytes()).hexdigest()
    assert f"`{digest}`" in readme and "2.0.11" in readme
    assert "Zero-Clause BSD" in (STATIC / "htmx.LICENSE").read_text()
