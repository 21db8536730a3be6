"""The JSON API on a real pending gate run (tests/gate/review_fixtures.py), on SQLite and PostgreSQL: every status
code of the issue, four eyes through the API, token revocation, path traversal, and detection of the same video
before and after the decisions (basis, payload, state; no personal data)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from gate import users
from provenance.keys import DEV_ROOT_CERT
from review_app.app import create_app
from review_app.settings import Settings
from tests.databases import db_url, pg_db_url, postgres_url  # noqa: F401
from tests.gate.review_fixtures import USERS, pending_run, pending_source  # noqa: F401

REASON = "meets-policy"


@pytest.fixture()
def api(pending_run, tmp_path):  # noqa: F811
    uploads = tmp_path / "uploads"
    uploads.mkdir(mode=0o700)
    anchors = (pending_run.source.inputs.root / "keys" / DEV_ROOT_CERT).read_bytes()
    settings = Settings(
        runs_dir=pending_run.runs_dir, db=pending_run.db.locator, upload_dir=uploads, trust_anchors_pem=anchors
    )
    tokens = {name: users.new_token(pending_run.db, name, actor="test") for name in USERS}
    with TestClient(create_app(settings)) as client:
        client.tokens = tokens
        client.run = pending_run
        client.uploads = uploads
        yield client


def _auth(api, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.tokens[name]}"}


def _decide(api, name: str, decision: str = "approve", reason: str = REASON, comment: str = "looks right", run=None):
    return api.post(
        f"/api/v1/runs/{run or api.run.run_id}/decisions",
        json={"decision": decision, "reason": reason, "comment": comment},
        headers=_auth(api, name),
    )


def _assert_401(r) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == "Bearer"


def _detect(api, path):
    r = api.post("/api/v1/detect", files={"file": ("upload.mp4", path.read_bytes(), "video/mp4")})
    assert r.status_code == 200, r.text
    assert list(api.uploads.iterdir()) == []
    return r


def _assert_no_personal_data(api, text: str) -> None:
    inputs = api.run.source.inputs
    for name in USERS:
        assert not re.search(rf"\b{re.escape(name)}\b", text), f"user name {name!r} in the answer: {text}"
    for path in (inputs.root, inputs.portrait, inputs.audio, inputs.talking, api.run.runs_dir):
        assert str(path) not in text
    for word in ("portrait.png", "speech.wav", "talking.mp4", "video.mp4", "looks right", REASON):
        assert word not in text


# --- authentication ------------------------------------------------------------------------------------------------


def test_healthz(api, tmp_path):
    assert api.get("/healthz").json() == {"status": "ok"}
    down = Settings(runs_dir=tmp_path, db="postgresql://nobody@/nothing?host=/nonexistent-socket-dir&connect_timeout=2")
    r = TestClient(create_app(down)).get("/healthz")  # no lifespan: the database is opened on first use, and fails
    assert r.status_code == 503 and r.json()["status"] == "unavailable"


def test_no_bad_revoked_or_disabled_token_is_401_with_www_authenticate(api):
    url = "/api/v1/runs"
    _assert_401(api.get(url))
    _assert_401(api.get(url, headers={"Authorization": f"Basic {api.tokens['ana']}"}))
    _assert_401(api.get(url, headers={"Authorization": "Bearer h3g_not-a-real-token"}))
    _assert_401(api.get(url, headers={"Authorization": "Bearer "}))
    assert api.get(url, headers=_auth(api, "ana")).status_code == 200
    users.revoke_token(api.run.db, api.tokens["ana"], actor="ada")
    _assert_401(api.get(url, headers=_auth(api, "ana")))
    _assert_401(_decide(api, "ana"))
    users.set_disabled(api.run.db, "ben", True, actor="ada")
    _assert_401(api.get(url, headers=_auth(api, "ben")))
    _assert_401(_decide(api, "ben"))
    assert api.cookies.get("hallo3_session") is None  # the API never hands out a session


# --- reading runs ----------------------------------------------------------------------------------------------------


def test_list_and_get_a_run(api):
    run_id = api.run.run_id
    pending = api.get("/api/v1/runs?state=pending", headers=_auth(api, "vic"))
    assert pending.status_code == 200 and [i["run_id"] for i in pending.json()["items"]] == [run_id]
    assert api.get("/api/v1/runs?state=released", headers=_auth(api, "vic")).json()["items"] == []
    assert api.get("/api/v1/runs?submitter=nobody", headers=_auth(api, "vic")).json()["items"] == []
    assert api.get("/api/v1/runs?state=lost", headers=_auth(api, "vic")).status_code == 422
    assert api.get("/api/v1/runs?page=0", headers=_auth(api, "vic")).status_code == 422
    one = api.get(f"/api/v1/runs/{run_id}", headers=_auth(api, "vic"))
    assert one.status_code == 200
    body = one.json()
    assert body["run_id"] == run_id and body["state"] == "pending" and body["record"]["run_id"] == run_id
    assert [e["kind"] for e in body["events"]] == ["run"] and body["review"]["required_approvals"] == 2


@pytest.mark.parametrize(
    "run_id", ["20991231T000000Z-nosuchrun", "..", "..%2F..%2Fsecret.txt", "%2e%2e", ".hidden", "a%00b", "x" * 129]
)
def test_unknown_or_hostile_run_ids_are_404_and_never_read_outside_the_runs_dir(api, run_id):
    secret = api.run.runs_dir.parent / "secret.txt"
    secret.write_text("TOP-SECRET-CANARY")
    body = {"decision": "approve", "reason": REASON, "comment": "x"}
    read = api.get(f"/api/v1/runs/{run_id}", headers=_auth(api, "vic"))
    decided = api.post(f"/api/v1/runs/{run_id}/decisions", json=body, headers=_auth(api, "ana"))
    for r in (read, decided):
        assert r.status_code in (404, 422), (run_id, r.status_code, r.text)
        assert "TOP-SECRET-CANARY" not in r.text


# --- deciding: roles, four eyes, states -------------------------------------------------------------------------------


def test_four_eyes_through_the_api_then_release_then_409(api):
    run_id = api.run.run_id
    assert _decide(api, "vic").status_code == 403  # a viewer decides nothing
    assert _decide(api, "rita").status_code == 403  # a reviewer may not approve
    assert _decide(api, "sam").status_code == 403  # the submitter never approves their own run
    first = _decide(api, "ana")
    assert first.status_code == 200 and first.json() == {"run_id": run_id, "state": "pending"}
    assert _decide(api, "ana").status_code == 403  # one person counts once
    second = _decide(api, "ada")  # an admin is not exempt, but is another person
    assert second.status_code == 200 and second.json() == {"run_id": run_id, "state": "released"}
    assert (api.run.runs_dir / "released" / run_id / "review.json").is_file()
    assert _decide(api, "ben").status_code == 409
    assert _decide(api, "rita", "reject", "other").status_code == 409
    history = api.get(f"/api/v1/runs/{run_id}", headers=_auth(api, "vic")).json()
    assert [(e["kind"], e["actor"]) for e in history["events"]] == [
        ("run", "sam"), ("approve", "ana"), ("approve", "ada"), ("release", "ada")
    ]  # fmt: skip


def test_the_submitter_is_refused_even_as_admin_reasons_and_bodies_are_checked(api):
    assert _decide(api, "ana", reason="no-such-code").status_code == 422
    assert _decide(api, "ana", comment="").status_code == 422
    assert _decide(api, "ana", comment="x" * 2001).status_code == 422
    bad_bodies = [{"decision": "maybe", "reason": REASON, "comment": "c"}, {"decision": "approve"},
                  {"decision": "approve", "reason": REASON, "comment": "c", "extra": 1}]  # fmt: skip
    for body in bad_bodies:
        r = api.post(f"/api/v1/runs/{api.run.run_id}/decisions", json=body, headers=_auth(api, "ana"))
        assert r.status_code == 422, body
    r = api.post(f"/api/v1/runs/{api.run.run_id}/decisions", content=b"{no json", headers=_auth(api, "ana"))
    assert r.status_code == 422
    assert _decide(api, "ana", run="20991231T000000Z-nosuchrun").status_code == 404
    only_events = api.get(f"/api/v1/runs/{api.run.run_id}", headers=_auth(api, "vic")).json()["events"]
    assert [e["kind"] for e in only_events] == ["run"]  # nothing refused was written


# --- detection of the same video before and after the decisions -------------------------------------------------------


def test_detection_follows_the_run_from_pending_to_released(api):
    run_id = api.run.run_id
    before = _detect(api, api.run.pending_dir / "video.mp4").json()
    assert before["basis"] == ["c2pa_manifest", "watermark", "ledger"] and before["manifest"]["signer_trusted"]
    assert before["run"]["run_id"] == run_id and before["run"]["state"] == "pending"
    assert before["run"]["decided_at"] is None and before["agreement"] is True
    assert _decide(api, "ana").status_code == 200 and _decide(api, "ben").status_code == 200
    r = _detect(api, api.run.runs_dir / "released" / run_id / "video.mp4")
    after = r.json()
    assert after["run"]["state"] == "released" and after["run"]["decided_at"] is not None
    assert after["watermark"]["payload_hex"] == before["watermark"]["payload_hex"]
    assert after["run"]["model"]["backend"] and after["run"]["system_version"]
    _assert_no_personal_data(api, r.text)


def test_detection_of_a_rejected_run_says_quarantined(api):
    r = _decide(api, "rita", "reject", "identity-mismatch", "not the person in the portrait")
    assert r.status_code == 200 and r.json()["state"] == "quarantined"
    answer = _detect(api, api.run.runs_dir / "quarantine" / api.run.run_id / "video.mp4")
    assert answer.json()["run"]["state"] == "quarantined" and answer.json()["generated_by_this_system"] is True
    _assert_no_personal_data(api, answer.text)
