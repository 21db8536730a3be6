# ruff: noqa: F811  (pytest fixtures imported from tests/gate/review_fixtures.py are taken as arguments)
"""Review comments (``gate.review.comment``) on SQLite and PostgreSQL, on a real pending gate run
(tests/gate/review_fixtures.py): comment rows are chained ledger rows that verify, decide nothing and count as no
approval; viewers are refused; a decided run takes no comment; the frame must lie within the run's video; comments
(with their frame, escaped) reach review.json, the record and the released reports."""

from __future__ import annotations

import json

import pytest

from gate import review
from gate.ledger import Ledger
from gate.users import User
from reports.schema import GateRecord
from tests.databases import db_url, pg_db_url, postgres_url  # noqa: F401
from tests.gate.review_fixtures import SUBMITTER, PendingRun, pending_run, pending_source  # noqa: F401

OK = "meets-policy"
HOSTILE = '<script>alert("pwned")</script> & more'


def _comment(run: PendingRun, name: str, text: str = "mouth drifts here", frame=None):
    return review.comment(run.db, run.runs_dir, run.run_id, run.user(name), text, frame=frame)


def _decide(run: PendingRun, name: str, decision: str = "approve", reason: str = OK, comment: str = "fine"):
    return review.decide(run.db, run.runs_dir, run.run_id, run.user(name), decision, reason, comment)


def _frames(run: PendingRun) -> int:
    frames = review.get_run(run.db, run.runs_dir, run.run_id).record["output"]["frames"]
    assert isinstance(frames, int) and frames > 1  # the fixture's 2.4 s clip
    return frames


def _refused(run: PendingRun, exc: type[Exception], *args, **kwargs) -> Exception:
    """Assert the comment is refused with ``exc`` and writes nothing."""
    before = Ledger(run.db).last_seq()
    with pytest.raises(exc) as err:
        _comment(run, *args, **kwargs)
    assert Ledger(run.db).last_seq() == before
    return err.value


def test_comments_are_chained_rows_that_count_as_no_approval(pending_run):
    """2 comments by ana and 1 approval by ben: still pending, 1 approval of 2, ana may still approve; the comment
    rows carry actor, role, text and frame, and the whole chain verifies."""
    run = pending_run
    last = _frames(run) - 1
    first = _comment(run, "ana", "lips late at the end", frame=last)
    second = _comment(run, "ana", "identity holds throughout")
    assert first.kind == "comment" and first.frame == last and first.actor == "ana" and first.role == "approver"
    assert second.frame is None and second.seq == first.seq + 1
    assert _decide(run, "ben") == "pending"
    view = review.get_run(run.db, run.runs_dir, run.run_id)
    assert view.state == "pending" and view.approvers == ["ben"]
    assert view.review.state == "pending" and len(view.review.approvals) == 1
    assert review.list_runs(run.db, run.runs_dir).items[0].approvals == 1
    assert "approve" in review.allowed_decisions(view, run.user("ana"))  # commenting is not approving
    rows = [r for r in Ledger(run.db).rows() if r.run_id == run.run_id]
    assert [(r.kind, r.decision, r.actor, r.role, r.reason, r.comment) for r in rows] == [
        ("run", "pending", SUBMITTER, "submitter", None, None),
        ("comment", "pending", "ana", "approver", None, "lips late at the end"),
        ("comment", "pending", "ana", "approver", None, "identity holds throughout"),
        ("approve", "pending", "ben", "approver", OK, "fine"),
    ]
    assert json.loads(rows[1].record_json) == {"run_id": run.run_id, "frame": last}
    assert json.loads(rows[2].record_json) == {"run_id": run.run_id, "frame": None}
    assert (rows[1].seq, rows[1].row_hash) == (first.seq, first.row_hash)
    by_seq = {r.seq: r for r in Ledger(run.db).rows()}
    assert by_seq[first.seq].prev_hash == by_seq[first.seq - 1].row_hash  # chained like every other row
    rep = Ledger(run.db).verify()
    assert rep.ok, rep.problems
    # the review record built from the ledger's Row objects carries the comments and their frames
    rec = review.review_record(Ledger(run.db).events(run.run_id), view.review)
    assert [(e.kind, e.frame) for e in rec.events] == [
        ("run", None),
        ("comment", last),
        ("comment", None),
        ("approve", None),
    ]
    assert rec.state == "pending"
    assert [(e["kind"], e["frame"]) for e in view.events][1:3] == [("comment", last), ("comment", None)]


def test_a_reviewer_comments_and_a_viewer_is_refused(pending_run):
    run = pending_run
    assert _comment(run, "rita", "check the teeth at frame 0", frame=0).frame == 0
    assert _comment(run, SUBMITTER, "context: re-shot after a complaint").actor == SUBMITTER
    err = _refused(run, review.Forbidden, "vic")
    assert err.http_status == 403 and "viewer" in err.rule
    with pytest.raises(review.Forbidden):
        review.comment(run.db, run.runs_dir, run.run_id, User("rita", "reviewer", disabled=True), "x")
    view = review.get_run(run.db, run.runs_dir, run.run_id)
    assert review.can_comment(view, run.user("rita")) and not review.can_comment(view, run.user("vic"))
    with pytest.raises(review.NotFound):
        review.comment(run.db, run.runs_dir, "no-such-run", run.user("rita"), "x")


def test_bad_text_or_frame_is_422_and_writes_nothing(pending_run):
    run = pending_run
    frames = _frames(run)
    for frame in (frames, -1, 10**9, True, "3", 1.0):
        err = _refused(run, review.BadDecision, "ana", "x", frame=frame)
        assert err.http_status == 422 and err.subject == "frame", frame
    for text in ("", "  \n ", "x" * (review.MAX_COMMENT + 1), "nul\x00byte", None):
        err = _refused(run, review.BadDecision, "ana", text)
        assert err.http_status == 422 and err.subject == "comment", text
    assert _comment(run, "ana", "x", frame=frames - 1).frame == frames - 1  # the last frame is in range


@pytest.mark.parametrize("ending", ["released", "quarantined"])
def test_a_decided_run_takes_no_comment(pending_run, ending):
    run = pending_run
    _comment(run, "rita", HOSTILE, frame=1)
    if ending == "released":
        _decide(run, "ana")
        assert _decide(run, "ben") == "released"
    else:
        assert _decide(run, "rita", "reject", "lip-sync", "drifts") == "quarantined"
    view = review.get_run(run.db, run.runs_dir, run.run_id)
    assert not review.can_comment(view, run.user("ana"))
    err = _refused(run, review.Conflict, "ana", "too late")
    assert err.http_status == 409
    assert Ledger(run.db).verify().ok


def test_comments_reach_review_json_the_record_and_the_reports_escaped(pending_run):
    run = pending_run
    _comment(run, "rita", HOSTILE, frame=2)
    _decide(run, "ana")
    _decide(run, "ben")
    final = run.runs_dir / "released" / run.run_id
    saved = json.loads((final / "review.json").read_text())
    comments = [e for e in saved["events"] if e["kind"] == "comment"]
    assert [(e["actor"], e["role"], e["comment"], e["frame"]) for e in comments] == [("rita", "reviewer", HOSTILE, 2)]
    assert all("frame" not in e for e in saved["events"] if e["kind"] != "comment")
    assert saved["state"] == "released"
    record = GateRecord.from_json((final / "record.json").read_text())
    assert [(e.kind, e.frame) for e in record.review.events if e.kind == "comment"] == [("comment", 2)]
    assert len(record.review.approvals) == 2
    html = (final / "report.html").read_text()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(" in html and "frame 2" in html and "commented" in html
    md = (final / "summary.md").read_text()
    assert "commented" in md and "frame 2" in md and "<script>" not in md
    junit = (final / "junit.xml").read_text()
    assert "commented by rita" in junit and "frame: 2" in junit


def test_recovery_and_verify_keep_the_comments(pending_run):
    """What ``recover`` settles from the ledger alone (``staging.review_from_rows``) and what ``verify`` shows carry
    the comments with their frames, as ``decide`` does."""
    from gate import staging
    from gate.verify_view import ledger_lookup

    run = pending_run
    _comment(run, "rita", "lips late", frame=3)
    _comment(run, "ana", "looks fine otherwise")
    record = GateRecord.from_json((run.pending_dir / "record.json").read_text())
    rebuilt = staging.review_from_rows(record.review, Ledger(run.db).events(run.run_id))
    assert [(e.kind, e.actor, e.frame) for e in rebuilt.events] == [
        ("run", SUBMITTER, None),
        ("comment", "rita", 3),
        ("comment", "ana", None),
    ]
    assert rebuilt.state == "pending"
    found = ledger_lookup(record.watermark.payload, run.db.locator)
    assert [(e["kind"], e["actor"], e["frame"]) for e in found["review"]] == [
        ("comment", "rita", 3),
        ("comment", "ana", None),
    ]
