# ruff: noqa: F811  (pytest fixtures imported from tests/gate/review_fixtures.py are taken as arguments)
"""Review comments over HTTP on a real pending gate run (tests/gate/review_fixtures.py), SQLite only: the run page's
comment form (reviewer yes, viewer no), the form post with and without its CSRF token, the "frame N" seek link in the
ledger history, and ``POST /api/v1/runs/{run_id}/comments`` with its status codes."""

from __future__ import annotations

import re

import pytest
from markupsafe import escape
from starlette.testclient import TestClient

from gate import review, users
from gate.ledger import Ledger
from review_app.app import create_app
from review_app.settings import Settings
from tests.gate.review_fixtures import PASSWORD, USERS, pending_run, pending_source  # noqa: F401
from tests.review_app.conftest import csrf_of, log_in

HOSTILE = '<script>alert("x")</script>'


@pytest.fixture()
def db_url(tmp_path) -> str:
    """SQLite only (the service test runs both backends): overrides tests.databases' parametrised fixture."""
    return str(tmp_path / "gate.sqlite")


@pytest.fixture()
def client(pending_run):
    settings = Settings(runs_dir=pending_run.runs_dir, db=pending_run.db.locator)
    with TestClient(create_app(settings)) as c:
        c.run = pending_run
        yield c


def _page(client, name: str) -> str:
    assert log_in(client, name, PASSWORD).status_code == 200
    r = client.get(f"/runs/{client.run.run_id}")
    assert r.status_code == 200
    return r.text


def _comment_rows(client) -> list:
    return [r for r in Ledger(client.run.db).rows() if r.run_id == client.run.run_id and r.kind == "comment"]


def test_a_reviewer_gets_the_form_and_posts_a_pinned_comment(client):
    page = _page(client, "rita")
    assert 'id="comment-form"' in page and 'name="frame"' in page and 'name="pin"' in page
    token = csrf_of(page)
    form = {"csrf": token, "comment": HOSTILE, "pin": "1", "frame": "3"}
    r = client.post(f"/runs/{client.run.run_id}/comment", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    rows = _comment_rows(client)
    assert [(r.actor, r.role, r.comment) for r in rows] == [("rita", "reviewer", HOSTILE)]
    view = review.get_run(client.run.db, client.run.runs_dir, client.run.run_id)
    assert [e["frame"] for e in view.events if e["kind"] == "comment"] == [3]
    # unpinned: the frame field is ignored
    client.post(f"/runs/{client.run.run_id}/comment", data={**form, "pin": "", "frame": "999999", "comment": "b"})
    view = review.get_run(client.run.db, client.run.runs_dir, client.run.run_id)
    assert [e["frame"] for e in view.events if e["kind"] == "comment"] == [3, None]
    page = client.get(f"/runs/{client.run.run_id}").text
    history = page[page.index('id="history"') :]
    assert '<a href="#video" class="seek" data-frame="3">frame 3</a>' in history
    assert HOSTILE not in page and str(escape(HOSTILE)) in page
    assert view.state == "pending" and view.approvers == []
    # pinned to a frame outside the video: 422, nothing written
    bad = client.post(f"/runs/{client.run.run_id}/comment", data={**form, "frame": "100000"})
    assert bad.status_code == 422 and len(_comment_rows(client)) == 2


def test_a_viewer_sees_no_form_and_is_refused(client):
    page = _page(client, "vic")
    assert 'id="comment-form"' not in page and 'id="no-comment"' in page
    form = {"csrf": csrf_of(page), "comment": "let me in"}
    r = client.post(f"/runs/{client.run.run_id}/comment", data=form, follow_redirects=False)
    assert r.status_code == 403
    assert _comment_rows(client) == []


def test_a_comment_without_the_csrf_token_is_refused(client):
    page = _page(client, "rita")
    url = f"/runs/{client.run.run_id}/comment"
    assert client.post(url, data={"comment": "no token"}, follow_redirects=False).status_code == 403
    assert client.post(url, data={"comment": "forged", "csrf": "x" * 43}, follow_redirects=False).status_code == 403
    assert _comment_rows(client) == []
    assert client.post(url, data={"comment": "ok", "csrf": csrf_of(page)}, follow_redirects=False).status_code == 303
    assert len(_comment_rows(client)) == 1


def test_the_comments_api(client):
    run = client.run
    tokens = {name: users.new_token(run.db, name, actor="test") for name in USERS}
    url = f"/api/v1/runs/{run.run_id}/comments"

    def post(name, body, target=url):
        headers = {"Authorization": f"Bearer {tokens[name]}"} if name else {}
        return client.post(target, json=body, headers=headers)

    r = post("rita", {"comment": "teeth blur", "frame": 4})
    assert r.status_code == 201, r.text
    assert r.json() == {"run_id": run.run_id, "seq": _comment_rows(client)[0].seq, "frame": 4}
    r = post("ana", {"comment": "unpinned"})
    assert r.status_code == 201 and r.json()["frame"] is None
    assert post(None, {"comment": "x"}).status_code == 401
    assert post("vic", {"comment": "x"}).status_code == 403
    assert post("rita", {"comment": "x"}, "/api/v1/runs/no-such-run/comments").status_code == 404
    for body in ({"comment": ""}, {"comment": "x", "frame": -1}, {"comment": "x", "frame": 10**6},
                 {"comment": "x", "frame": "2"}, {"comment": "x", "frame": True}, {"frame": 1}):  # fmt: skip
        assert post("rita", body).status_code == 422, body
    assert len(_comment_rows(client)) == 2
    got = client.get(f"/api/v1/runs/{run.run_id}", headers={"Authorization": f"Bearer {tokens['vic']}"}).json()
    assert [(e["kind"], e["frame"]) for e in got["events"] if e["kind"] == "comment"] == [
        ("comment", 4),
        ("comment", None),
    ]
    for name in ("ana", "ben"):
        d = client.post(
            f"/api/v1/runs/{run.run_id}/decisions",
            json={"decision": "approve", "reason": "meets-policy", "comment": "ok"},
            headers={"Authorization": f"Bearer {tokens[name]}"},
        )
        assert d.status_code == 200, d.text
    assert d.json()["state"] == "released"  # two comments + two approvals: the comments did not count
    assert post("rita", {"comment": "late"}).status_code == 409
    page = _page(client, "rita")
    assert 'id="comment-form"' not in page and "ended with the decision" in page
    assert re.search(r'data-frame="4">frame 4</a>', page)
