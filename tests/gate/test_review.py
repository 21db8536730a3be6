# ruff: noqa: F811  (pytest fixtures imported from tests/gate/review_fixtures.py are taken as arguments)
"""The review service on SQLite and PostgreSQL, on a real pending gate run (tests/gate/review_fixtures.py): every
four-eyes case, the N-th approval releases (directory, review.json, video bytes unchanged), a rejection quarantines,
a ledger row per step with the chain intact, claims, the queue, and concurrent approvals from several processes."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from pathlib import Path

import pytest

from gate import review
from gate.ledger import Ledger
from gate.users import User, set_role
from reports.errors import OutputError
from reports.schema import GateRecord
from tests.databases import db_url, pg_db_url, postgres_url  # noqa: F401
from tests.gate.review_fixtures import SUBMITTER, PendingRun, pending_run, pending_source  # noqa: F401

OK = "meets-policy"


def _review_rows(run: PendingRun) -> list[tuple[str, str, str | None, str | None, str | None, str | None]]:
    return [
        (r.kind, r.decision, r.actor, r.role, r.reason, r.comment)
        for r in Ledger(run.db).rows()
        if r.run_id == run.run_id
    ]


def _decide(run: PendingRun, name: str, decision: str = "approve", reason: str = OK, comment: str = "looks right"):
    return review.decide(run.db, run.runs_dir, run.run_id, run.user(name), decision, reason, comment)


def _refused(run: PendingRun, exc: type[Exception], *args, **kwargs) -> Exception:
    """Assert the decision is refused with ``exc`` and writes nothing (no ledger row, the directory stays)."""
    before = Ledger(run.db).last_seq()
    with pytest.raises(exc) as err:
        _decide(run, *args, **kwargs)
    assert Ledger(run.db).last_seq() == before
    return err.value


# --- four eyes and roles ---------------------------------------------------------------------------------------------


def test_the_submitter_never_approves_their_own_run(pending_run):
    err = _refused(pending_run, review.Forbidden, SUBMITTER)
    assert err.http_status == 403 and "four eyes" in err.rule
    assert review.get_run(pending_run.db, pending_run.runs_dir, pending_run.run_id).state == "pending"


def test_an_admin_submitter_is_not_exempt(pending_run):
    set_role(pending_run.db, SUBMITTER, "admin", actor="ada")
    with pytest.raises(review.Forbidden, match="four eyes"):
        review.decide(
            pending_run.db, pending_run.runs_dir, pending_run.run_id, User(SUBMITTER, "admin"), "approve", OK, "mine"
        )


def test_one_person_counts_once(pending_run):
    assert _decide(pending_run, "ana") == "pending"
    err = _refused(pending_run, review.Forbidden, "ana")
    assert "counts once" in err.rule
    assert (pending_run.pending_dir / "video.mp4").is_file()  # still pending, not moved


def test_a_reviewer_may_reject_but_not_approve_and_a_viewer_decides_nothing(pending_run):
    assert "approver" in _refused(pending_run, review.Forbidden, "rita").rule
    for decision in ("approve", "reject"):
        assert _refused(pending_run, review.Forbidden, "vic", decision, "other", "no").http_status == 403
    disabled = User("ana", "approver", disabled=True)
    with pytest.raises(review.Forbidden):
        review.decide(pending_run.db, pending_run.runs_dir, pending_run.run_id, disabled, "approve", OK, "x")
    view = review.get_run(pending_run.db, pending_run.runs_dir, pending_run.run_id)
    assert review.allowed_decisions(view, pending_run.user("vic")) == ()
    assert review.allowed_decisions(view, pending_run.user("rita")) == ("reject",)
    assert review.allowed_decisions(view, pending_run.user(SUBMITTER)) == ("reject",)
    assert review.allowed_decisions(view, pending_run.user("ana")) == ("approve", "reject")
    assert review.allowed_decisions(view, pending_run.user("ada")) == ("approve", "reject")


@pytest.mark.parametrize(
    ("decision", "reason", "comment", "subject"),
    [
        ("approve", "not-a-code", "fine", "reason"),
        ("approve", "", "fine", "reason"),
        ("approve", OK, "", "comment"),
        ("approve", OK, "   \n ", "comment"),
        ("reject", "lip-sync", "x" * (review.MAX_COMMENT + 1), "comment"),
        ("approve", OK, "nul\x00byte", "comment"),
        ("release", OK, "fine", "decision"),
    ],
)
def test_bad_decisions_are_422_and_write_nothing(pending_run, decision, reason, comment, subject):
    err = _refused(pending_run, review.BadDecision, "ana", decision, reason, comment)
    assert err.http_status == 422 and err.subject == subject


@pytest.mark.parametrize("run_id", ["no-such-run", "../pending", "a/b", "", "x" * 300, "..", "/etc/passwd"])
def test_unknown_or_malformed_run_ids_are_not_found(pending_run, run_id):
    before = Ledger(pending_run.db).last_seq()
    with pytest.raises(review.NotFound) as err:
        review.decide(pending_run.db, pending_run.runs_dir, run_id, pending_run.user("ana"), "approve", OK, "x")
    assert err.value.http_status == 404
    with pytest.raises(review.NotFound):
        review.get_run(pending_run.db, pending_run.runs_dir, run_id)
    assert Ledger(pending_run.db).last_seq() == before


def test_a_run_of_another_runs_directory_is_not_found(pending_run, tmp_path):
    with pytest.raises(review.NotFound, match="not under this runs directory"):
        review.get_run(pending_run.db, tmp_path / "elsewhere", pending_run.run_id)
    assert review.list_runs(pending_run.db, tmp_path / "elsewhere").total == 0


# --- release and quarantine ------------------------------------------------------------------------------------------


def test_the_second_approval_releases_with_the_review_history(pending_run):
    run = pending_run
    assert _decide(run, "ana", comment="identity and lip sync fine") == "pending"
    assert run.pending_dir.is_dir() and not (run.runs_dir / "released" / run.run_id).exists()
    assert _decide(run, "ada", comment="agreed") == "released"
    final = run.runs_dir / "released" / run.run_id
    assert not run.pending_dir.exists() and final.is_dir()
    assert hashlib.sha256((final / "video.mp4").read_bytes()).hexdigest() == run.video_sha256
    saved = json.loads((final / "review.json").read_text())
    assert saved["state"] == "released" and saved["submitted_by"] == SUBMITTER
    assert [(e["kind"], e["actor"], e["reason"], e["comment"]) for e in saved["events"]] == [
        ("run", SUBMITTER, None, None),
        ("approve", "ana", OK, "identity and lip sync fine"),
        ("approve", "ada", OK, "agreed"),
        ("release", "ada", None, None),
    ]
    record = GateRecord.from_json((final / "record.json").read_text())
    assert record.decision == "released" and record.exit_code == 0 and record.review.state == "released"
    assert _review_rows(run) == [
        ("run", "pending", SUBMITTER, "submitter", None, None),
        ("approve", "pending", "ana", "approver", OK, "identity and lip sync fine"),
        ("approve", "pending", "ada", "admin", OK, "agreed"),
        ("release", "released", "ada", "admin", None, None),
    ]
    seqs = [r.seq for r in Ledger(run.db).rows() if r.run_id == run.run_id]
    assert seqs[-1] == seqs[-2] + 1  # the release row directly follows the approval: one transaction
    rep = Ledger(run.db).verify()
    assert rep.ok, rep.problems
    view = review.get_run(run.db, run.runs_dir, run.run_id)
    assert view.state == "released" and view.directory == final and view.approvers == ["ana", "ada"]
    # a decided run is decided: 409 for everyone, nothing written
    assert _refused(run, review.Conflict, "ben").http_status == 409
    assert _refused(run, review.Conflict, "rita", "reject", "lip-sync", "late").http_status == 409


def test_a_rejection_quarantines(pending_run):
    run = pending_run
    assert _decide(run, "ana") == "pending"
    assert _decide(run, "rita", "reject", "lip-sync", "mouth drifts at 1.2 s") == "quarantined"
    final = run.runs_dir / "quarantine" / run.run_id
    assert final.is_dir() and not run.pending_dir.exists()
    assert hashlib.sha256((final / "video.mp4").read_bytes()).hexdigest() == run.video_sha256
    record = GateRecord.from_json((final / "record.json").read_text())
    assert record.decision == "quarantined" and record.exit_code == 1
    assert record.reasons == ["rejected by rita: lip-sync"]
    assert json.loads((final / "review.json").read_text())["state"] == "quarantined"
    assert _review_rows(run)[-1] == ("reject", "quarantined", "rita", "reviewer", "lip-sync", "mouth drifts at 1.2 s")
    assert _refused(run, review.Conflict, "ben").http_status == 409
    assert Ledger(run.db).verify().ok


def test_review_record_is_the_fold_of_the_ledger_rows(pending_run):
    run = pending_run
    _decide(run, "ana")
    rows = Ledger(run.db).events(run.run_id)
    rules = review.get_run(run.db, run.runs_dir, run.run_id).review
    rec = review.review_record(rows, rules)
    assert rec.state == "pending" and [e.kind for e in rec.events] == ["run", "approve"]
    assert [e.seq for e in rec.events] == [r.seq for r in rows] and rec.events[1].row_hash == rows[1].row_hash
    assert rec.required_approvals == 2 and rec.four_eyes and OK in rec.reason_codes


# --- claims ----------------------------------------------------------------------------------------------------------


def test_claims_lock_out_others_until_released_or_expired(pending_run):
    run = pending_run
    db, rid = run.db, run.run_id
    c = review.claim(db, rid, run.user("ana"))
    assert c.user_name == "ana" and c.expires_at > c.claimed_at
    with pytest.raises(review.Conflict, match="claimed by ana"):
        review.claim(db, rid, run.user("ben"))
    assert review.claim(db, rid, run.user("ana")).expires_at >= c.expires_at  # renewing one's own claim
    with pytest.raises(review.Forbidden):
        review.claim(db, rid, run.user("vic"))
    with pytest.raises(review.Forbidden):
        review.unclaim(db, rid, run.user("ben"))
    assert review.get_run(db, run.runs_dir, rid).claim.user_name == "ana"
    assert review.list_runs(db, run.runs_dir).items[0].claim.user_name == "ana"
    assert review.unclaim(db, rid, run.user("ada")) is True  # an admin may release anyone's claim
    assert review.unclaim(db, rid, run.user("ada")) is False
    review.claim(db, rid, run.user("ben"), ttl_s=-1)  # already expired
    assert review.claim(db, rid, run.user("ana")).user_name == "ana"
    with pytest.raises(review.NotFound):
        review.claim(db, "no-such-run", run.user("ana"))
    _decide(run, "ana")
    _decide(run, "ben")  # released: the claim goes with the decision
    assert review.get_run(db, run.runs_dir, rid).claim is None
    with pytest.raises(review.Conflict):
        review.claim(db, rid, run.user("ana"))


# --- the queue -------------------------------------------------------------------------------------------------------


def test_the_queue_filters_and_pages(pending_run):
    run = pending_run
    db, d = run.db, run.runs_dir
    page = review.list_runs(db, d, state="pending")
    assert page.total == 1 and page.pages == 1
    item = page.items[0]
    assert (item.run_id, item.state, item.submitter, item.approvals, item.required_approvals) == (
        run.run_id,
        "pending",
        SUBMITTER,
        0,
        2,
    )
    assert item.backend == "external" and item.age_s >= 0
    assert review.list_runs(db, d, state="released").total == 0
    assert review.list_runs(db, d, submitter=SUBMITTER).total == 1
    assert review.list_runs(db, d, submitter="ana").total == 0
    assert review.list_runs(db, d, model="external").total == 1
    assert review.list_runs(db, d, model="hallo3").total == 0
    assert review.list_runs(db, d, max_age_s=0).total == 0
    assert review.list_runs(db, d, max_age_s=86400).total == 1
    empty = review.list_runs(db, d, page=2, per_page=1)
    assert empty.items == [] and empty.total == 1
    _decide(run, "ana")
    assert review.list_runs(db, d).items[0].approvals == 1
    for kwargs in ({"state": "waiting"}, {"sort": "name"}, {"page": 0}, {"per_page": 0}, {"per_page": 10_000}):
        with pytest.raises(review.BadDecision):
            review.list_runs(db, d, **kwargs)


def test_the_queue_sorts_by_age_and_model(pending_run):
    """Sorting and paging over several runs: the real pending run and two more ``run`` rows (appended through the
    ledger like a gate run's, each with a directory under pending/), older and newer, of other models."""
    run = pending_run
    base = review.get_run(run.db, run.runs_dir, run.run_id).record
    ledger = Ledger(run.db)
    for run_id, created, model in (("old-run", "2026-01-01T00:00:00+00:00", "aaa"), ("new-run", None, "zzz")):
        rec = {**base, "run_id": run_id, "generator": {**base["generator"], "model_name": model}}
        created_at = created or "2999-01-01T00:00:00+00:00"
        ledger.append(
            run_id=run_id,
            created_at=created_at,
            decision="pending",
            output_path="",
            output_sha256="0" * 64,
            payload_hex=None,
            record_json=json.dumps({**rec, "created_at": created_at}),
            kind="run",
            actor="ana",
            role="submitter",
        )
        (run.runs_dir / "pending" / run_id).mkdir()
    ids = lambda page: [i.run_id for i in page.items]  # noqa: E731
    assert ids(review.list_runs(run.db, run.runs_dir)) == ["old-run", run.run_id, "new-run"]
    assert ids(review.list_runs(run.db, run.runs_dir, sort="newest")) == ["new-run", run.run_id, "old-run"]
    assert ids(review.list_runs(run.db, run.runs_dir, sort="model"))[0] == "old-run"
    assert ids(review.list_runs(run.db, run.runs_dir, sort="submitter")) == ["old-run", "new-run", run.run_id]
    page2 = review.list_runs(run.db, run.runs_dir, page=2, per_page=2)
    assert ids(page2) == ["new-run"] and page2.total == 3 and page2.pages == 2
    assert ids(review.list_runs(run.db, run.runs_dir, submitter="ana", model="zzz")) == ["new-run"]


# --- concurrency -----------------------------------------------------------------------------------------------------


def _approve_in_process(locator: str, runs_dir: str, run_id: str, name: str, start, results) -> None:
    from gate import review as rv
    from gate.database import Database

    db = Database.open(locator)
    start.wait()
    try:
        state = rv.decide(db, runs_dir, run_id, User(name, "approver"), "approve", OK, f"{name} approves")
        results.put((name, state))
    except rv.ServiceError as exc:
        results.put((name, type(exc).__name__))


def test_concurrent_approvals_release_exactly_once(pending_run):
    """Three approvers approve a 2-approval run at the same moment from three processes: two approvals count, the
    run is released exactly once (one ``release`` row, right after the second approval), the third gets 409."""
    run = pending_run
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(3), ctx.Queue()
    names = ("ana", "ben", "cy")
    procs = [
        ctx.Process(target=_approve_in_process, args=(run.db.locator, str(run.runs_dir), run.run_id, n, start, results))
        for n in names
    ]
    for p in procs:
        p.start()
    outcomes = dict(results.get(timeout=300) for _ in names)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sorted(outcomes.values()) == ["Conflict", "pending", "released"], outcomes
    rows = _review_rows(run)
    kinds = [r[0] for r in rows]
    assert kinds == ["run", "approve", "approve", "release"], rows
    approvers = {r[2] for r in rows if r[0] == "approve"}
    assert len(approvers) == 2 and approvers == {n for n, s in outcomes.items() if s != "Conflict"}
    assert rows[-1][2] == next(n for n, s in outcomes.items() if s == "released")
    assert Ledger(run.db).verify().ok
    final = Path(run.runs_dir) / "released" / run.run_id
    assert final.is_dir() and not run.pending_dir.exists()
    assert hashlib.sha256((final / "video.mp4").read_bytes()).hexdigest() == run.video_sha256


def test_a_failed_move_keeps_the_decision_and_can_be_finished(pending_run, monkeypatch):
    """The directory cannot be moved (here: settle raises a disk error): the decision is committed all the same, the
    error says so (exit 74), the run reads as released from its pending directory, and settling again finishes."""
    from gate import staging

    run = pending_run
    _decide(run, "ana")
    real_settle = staging.settle

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(staging, "settle", disk_full)
    with pytest.raises(OutputError) as err:
        _decide(run, "ben")
    assert err.value.exit_code == 74 and "the decision is recorded" in err.value.rule
    assert "No space left on device" in str(err.value.value)
    assert [r[0] for r in _review_rows(run)] == ["run", "approve", "approve", "release"]
    view = review.get_run(run.db, run.runs_dir, run.run_id)
    assert view.state == "released" and view.directory == run.pending_dir
    assert _refused(run, review.Conflict, "cy").http_status == 409
    monkeypatch.setattr(staging, "settle", real_settle)
    final = review.settle(run.db, run.runs_dir, run.run_id, Ledger(run.db).events(run.run_id), view.review, "released")
    assert final == run.runs_dir / "released" / run.run_id and (final / "review.json").is_file()
    assert review.get_run(run.db, run.runs_dir, run.run_id).directory == final
