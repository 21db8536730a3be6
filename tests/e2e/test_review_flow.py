"""Human review in the gate, end to end: real gate runs of the puppet talking clip under the offline-review policy.

A passing run waits in pending/ (exit 6) with its record, reports and ledger row; a failing run is quarantined at
once; approvals and a rejection in the ledger are settled into released/ and quarantine/ with the review in every
report, the video bytes unchanged; a settle killed half way is finished by the next run's recovery."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gate import staging
from gate.cli import main
from gate.ledger import Ledger
from gate.run import RunRequest, run
from gate.verify_view import ledger_lookup
from reports.errors import ExitCode, OutputError, ProvenanceError, UsageError
from reports.hashing import sha256_file
from reports.schema import GateRecord, ReviewEvent, ReviewRecord
from tests.talking import with_consent

REPO = Path(__file__).resolve().parents[2]
REVIEW_POLICY = REPO / "gate" / "policies" / "offline-review.toml"
HOSTILE = "ann <script>alert(1)</script>"


def _cli(argv: list[str]) -> tuple[int, dict]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main([*argv, "--json"])
    return code, json.loads(buf.getvalue())


def _review_argv(inputs, out: Path, policy: Path, submitter: str) -> list[str]:
    return [
        "review",
        str(inputs.talking),
        "--reference",
        str(inputs.portrait),
        "--audio",
        str(inputs.audio),
        "--out",
        str(out),
        "--policy",
        str(policy),
        "--submitted-by",
        submitter,
    ]


@pytest.fixture(scope="module")
def flow(e2e_inputs, tmp_path_factory):
    """Four real gate runs into one --out: three pass the automated checks and wait (pending) — one to release, one
    to reject, one whose settle is killed; one fails a check (the same clip, a policy asking for 4096 px width)."""
    root = tmp_path_factory.mktemp("review-flow")
    out = root / "out"
    failing = root / "failing-review.toml"
    failing.write_text(REVIEW_POLICY.read_text().replace("min = 256", "min = 4096", 1))
    results: dict[str, tuple[int, dict]] = {}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in e2e_inputs.env.items():
            mp.setenv(k, v)
        mp.delenv("GITHUB_STEP_SUMMARY", raising=False)
        mp.setenv("HALLO3_GATE_LEDGER", with_consent(e2e_inputs, root / "ledger.sqlite"))
        results["pending"] = _cli(_review_argv(e2e_inputs, out, REVIEW_POLICY, "sam"))
        results["failing"] = _cli(_review_argv(e2e_inputs, out, failing, "sam"))
        mp.setenv("HALLO3_GATE_USER", "sue")  # no --submitted-by: the environment names the submitter
        for name in ("to_reject", "to_crash"):
            req = RunRequest(
                mode="review",
                out_dir=out,
                portrait=e2e_inputs.portrait,
                audio=e2e_inputs.audio,
                video=e2e_inputs.talking,
                policy_path=REVIEW_POLICY,
            )
            outcome = run(req)
            results[name] = (int(outcome.exit_code), json.loads(outcome.record.to_json()))
    return root, out, results


def _decide(ledger: Ledger, run_id: str, kind: str, actor: str, *, reason: str, comment: str, decision: str) -> None:
    """A review decision as a ledger row (what gate.review appends after its four-eyes checks)."""
    ledger.append(
        run_id=run_id,
        created_at=dt.datetime.now(dt.UTC).isoformat(),
        decision=decision,
        output_path="",
        output_sha256="",
        payload_hex=None,
        record_json=json.dumps({"run_id": run_id, "decision": kind}),
        kind=kind,
        actor=actor,
        role="approver" if kind in ("approve", "release") else "reviewer",
        reason=reason,
        comment=comment,
    )


def _review_of(ledger: Ledger, run_dir: Path, run_id: str) -> ReviewRecord:
    record = GateRecord.from_json((run_dir / "record.json").read_bytes())
    return staging.review_from_rows(record.review, ledger.events(run_id))


def test_a_passing_run_under_review_waits_in_pending_with_exit_6(flow):
    root, out, results = flow
    code, rec = results["pending"]
    assert code == 6, rec["reasons"]
    assert rec["decision"] == "pending" and rec["exit_code"] == 6
    assert all(c["outcome"] == "pass" for c in rec["checks"] if c["required"])
    run_dir = out / "pending" / rec["run_id"]
    assert Path(rec["output"]["path"]) == run_dir / "video.mp4"
    for name in ("video.mp4", "record.json", "report.html", "report.pdf", "junit.xml", "summary.md"):
        assert (run_dir / name).stat().st_size > 0, name
    assert not (out / "released" / rec["run_id"]).exists() and not list((out / "staging").iterdir())
    on_disk = GateRecord.from_json((run_dir / "record.json").read_bytes())
    assert on_disk.review.state == "pending" and on_disk.review.submitted_by == "sam"
    assert on_disk.review.required_approvals == 2 and on_disk.review.four_eyes
    row = Ledger(root / "ledger.sqlite").find_by_run(rec["run_id"])
    assert (row.kind, row.decision, row.actor, row.role) == ("run", "pending", "sam", "submitter")
    submission = on_disk.review.events[0]
    assert (submission.kind, submission.actor, submission.seq, submission.row_hash) == (
        "run",
        "sam",
        row.seq,
        row.row_hash,
    )
    assert staging.recover(staging.Layout(out), root / "ledger.sqlite") == []  # undecided: recovery leaves it
    assert (run_dir / "video.mp4").is_file()
    html = (run_dir / "report.html").read_text()
    assert 'id="review"' in html and "Human review" in html and "awaiting approval" in html
    junit = ET.parse(run_dir / "junit.xml").getroot()
    case = next(c for c in junit.iter("testcase") if c.get("name") == "human review")
    assert case.find("error").get("type") == "awaiting-review"  # CI must not read a pending run as passed


def test_the_submitter_comes_from_the_environment_without_the_option(flow):
    root, _, results = flow
    code, rec = results["to_reject"]
    assert code == 6 and rec["review"]["submitted_by"] == "sue"
    assert Ledger(root / "ledger.sqlite").find_by_run(rec["run_id"]).actor == "sue"


def test_a_failing_run_under_review_is_quarantined_at_once(flow):
    root, out, results = flow
    code, rec = results["failing"]
    assert code == 1 and rec["decision"] == "quarantined" and "review" not in rec
    assert any("min_width" in r for r in rec["reasons"]), rec["reasons"]
    assert (out / "quarantine" / rec["run_id"] / "video.mp4").is_file()
    assert not (out / "pending" / rec["run_id"]).exists()
    row = Ledger(root / "ledger.sqlite").find_by_run(rec["run_id"])
    assert (row.decision, row.actor, row.role) == ("quarantined", "sam", "submitter")


def test_approvals_release_the_run_with_the_review_in_every_report(flow):
    root, out, results = flow
    run_id = results["pending"][1]["run_id"]
    ledger = Ledger(root / "ledger.sqlite")
    layout = staging.Layout(out)
    pending_dir = layout.pending / run_id
    video_sha = sha256_file(pending_dir / "video.mp4")
    _decide(ledger, run_id, "approve", HOSTILE, reason="meets-policy", comment="ok <b>bold</b> | x", decision="pending")
    assert staging.run_state(ledger.events(run_id)) == "pending"
    _decide(ledger, run_id, "approve", "bob", reason="meets-policy", comment="fine", decision="pending")
    _decide(ledger, run_id, "release", "bob", reason="meets-policy", comment="fine", decision="released")
    assert staging.run_state(ledger.events(run_id)) == "released"
    review = _review_of(ledger, pending_dir, run_id)

    final = staging.settle(layout, run_id, review, "released")
    assert final == out / "released" / run_id and not pending_dir.exists()
    assert staging.settle(layout, run_id, review, "released") == final  # idempotent
    assert sha256_file(final / "video.mp4") == video_sha  # the signed bytes never change
    record = GateRecord.from_json((final / "record.json").read_bytes())
    assert (record.decision, record.exit_code, record.reasons) == ("released", 0, [])
    assert record.output.path == str(final / "video.mp4") and record.output.sha256 == video_sha
    assert [e.actor for e in record.review.approvals] == [HOSTILE, "bob"]
    assert ReviewRecord.model_validate_json((final / "review.json").read_text()) == review
    html = (final / "report.html").read_text()
    assert "Human review" in html and "ann &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in html and "ok &lt;b&gt;bold&lt;/b&gt; | x" in html
    assert (final / "report.pdf").read_bytes().startswith(b"%PDF")
    md = (final / "summary.md").read_text()
    assert "**Human review:** released · 2 of 2 approvals" in md and "ann &lt;script&gt;" in md and "<script>" not in md
    case = next(c for c in ET.parse(final / "junit.xml").getroot().iter("testcase") if c.get("name") == "human review")
    assert case.find("failure") is None and case.find("error") is None and HOSTILE in case.find("system-out").text


def test_a_rejection_quarantines_the_run_with_who_and_why(flow):
    root, out, results = flow
    run_id = results["to_reject"][1]["run_id"]
    ledger = Ledger(root / "ledger.sqlite")
    layout = staging.Layout(out)
    video_sha = sha256_file(layout.pending / run_id / "video.mp4")
    _decide(ledger, run_id, "reject", "rita", reason="lip-sync", comment="mouth lags", decision="quarantined")
    assert staging.run_state(ledger.events(run_id)) == "quarantined"
    final = staging.settle(layout, run_id, _review_of(ledger, layout.pending / run_id, run_id), "quarantined")
    assert final == out / "quarantine" / run_id and sha256_file(final / "video.mp4") == video_sha
    record = GateRecord.from_json((final / "record.json").read_bytes())
    assert (record.decision, record.exit_code, record.reasons) == ("quarantined", 1, ["rejected by rita: lip-sync"])
    assert "mouth lags" in (final / "report.html").read_text()
    case = next(c for c in ET.parse(final / "junit.xml").getroot().iter("testcase") if c.get("name") == "human review")
    assert case.find("failure").get("message") == "rejected by rita: lip-sync"


def test_verify_reports_the_current_state_and_the_review_events(flow, capsys):
    root, out, results = flow
    ledger_path = root / "ledger.sqlite"
    released = results["pending"][1]
    found = ledger_lookup(released["watermark"]["payload"], ledger_path)
    assert (found["decision"], found["state"]) == ("pending", "released")  # the run row, and what people made of it
    assert [(e["kind"], e["actor"]) for e in found["review"]] == [
        ("approve", HOSTILE),
        ("approve", "bob"),
        ("release", "bob"),
    ]
    rejected = ledger_lookup(results["to_reject"][1]["watermark"]["payload"], ledger_path)
    assert rejected["state"] == "quarantined" and rejected["review"][0]["reason"] == "lip-sync"
    undecided = ledger_lookup(results["to_crash"][1]["watermark"]["payload"], ledger_path)
    assert (undecided["state"], undecided["review"]) == ("pending", [])
    failing = ledger_lookup(results["failing"][1]["watermark"]["payload"], ledger_path)
    assert (failing["decision"], failing["state"], failing["review"]) == ("quarantined", "quarantined", [])

    capsys.readouterr()
    code = main(["verify", str(out / "released" / released["run_id"] / "video.mp4"), "--ledger", str(ledger_path)])
    shown = capsys.readouterr().out
    assert code == 0, shown
    assert "state now released" in shown and "approve by bob (approver)" in shown and "release by bob" in shown
    assert f"approve by {HOSTILE} (approver)" in shown  # printed literally: rich markup escaped


def test_settle_fails_closed_and_touches_nothing(flow):
    """A changed video is never settled (exit 5, still pending, nothing written); a wrong state or a missing run is
    refused before anything is written."""
    _, out, results = flow
    layout = staging.Layout(out)
    source = layout.pending / results["to_crash"][1]["run_id"]
    review = GateRecord.from_json((source / "record.json").read_bytes()).review
    at = dt.datetime.now(dt.UTC)
    decided = [
        ReviewEvent(seq=900 + i, kind=k, actor="ann", role="approver", at=at)
        for i, k in enumerate(("approve", "release"))
    ]
    released = ReviewRecord.model_validate(
        {**review.model_dump(), "state": "released", "events": [*review.events, *decided]}
    )
    copy = layout.pending / "tampered-copy"
    shutil.copytree(source, copy)
    try:
        with open(copy / "video.mp4", "r+b") as fh:
            fh.seek(-1, os.SEEK_END)
            last = fh.read(1)
            fh.seek(-1, os.SEEK_END)
            fh.write(bytes([last[0] ^ 0xFF]))
        before = {p.name: p.read_bytes() for p in copy.iterdir()}
        with pytest.raises(ProvenanceError) as exc:
            staging.settle(layout, "tampered-copy", released, "released")
        assert exc.value.exit_code == ExitCode.PROVENANCE and "video.mp4" in str(exc.value)
        assert {p.name: p.read_bytes() for p in copy.iterdir()} == before and not (
            out / "released" / copy.name
        ).exists()
        with pytest.raises(UsageError, match=r"review\.state"):
            staging.settle(layout, "tampered-copy", released, "quarantined")
        with pytest.raises(UsageError, match="run_id"):
            staging.settle(layout, "../escape", released, "released")
        with pytest.raises(OutputError, match="must exist"):
            staging.settle(layout, "no-such-run", released, "released")
    finally:
        shutil.rmtree(copy)


def test_a_settle_killed_half_way_is_finished_by_recovery(flow):
    root, out, results = flow
    run_id = results["to_crash"][1]["run_id"]
    ledger_path = root / "ledger.sqlite"
    ledger = Ledger(ledger_path)
    layout = staging.Layout(out)
    pending_dir = layout.pending / run_id
    video_sha = sha256_file(pending_dir / "video.mp4")
    _decide(ledger, run_id, "approve", "ann", reason="meets-policy", comment="", decision="pending")
    _decide(ledger, run_id, "approve", "bob", reason="other", comment="late", decision="pending")
    _decide(ledger, run_id, "release", "bob", reason="other", comment="late", decision="released")
    # a settle that writes review.json and the settled record.json, then is SIGKILLed before the other reports
    script = f"""
import os, signal
from pathlib import Path
from gate import staging
from gate.ledger import Ledger
from reports.json_report import write_json
def dying_write_reports(record, out_dir, **kw):
    write_json(record, Path(out_dir) / "record.json")
    os.kill(os.getpid(), signal.SIGKILL)
staging.write_reports = dying_write_reports
layout, run_id = staging.Layout(Path({str(out)!r})), {run_id!r}
ledger = Ledger({str(ledger_path)!r})
from reports.schema import GateRecord
rec = GateRecord.from_json((layout.pending / run_id / "record.json").read_bytes())
staging.settle(layout, run_id, staging.review_from_rows(rec.review, ledger.events(run_id)), "released")
"""
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    assert proc.returncode == -9
    assert pending_dir.is_dir() and (pending_dir / "review.json").is_file()  # killed half way: still pending
    half = GateRecord.from_json((pending_dir / "record.json").read_bytes())
    assert half.decision == "released" and '<span class="badge b-pending">' in (pending_dir / "report.html").read_text()

    notes = staging.recover(layout, ledger_path)
    final = out / "released" / run_id
    assert any(run_id in n and "finished a reviewed run (released" in n for n in notes), notes
    assert not pending_dir.exists() and sha256_file(final / "video.mp4") == video_sha
    assert '<span class="badge b-released">released</span>' in (final / "report.html").read_text()
    record = GateRecord.from_json((final / "record.json").read_bytes())
    assert record.review.state == "released" and [e.actor for e in record.review.approvals] == ["ann", "bob"]
    assert staging.recover(layout, ledger_path) == []  # nothing left to do


def test_after_every_settle_nothing_is_left_pending_and_the_chain_verifies(flow):
    root, out, _ = flow
    assert staging.recover(staging.Layout(out), root / "ledger.sqlite") == []
    assert list((out / "pending").iterdir()) == [] and list((out / "staging").iterdir()) == []
    ledger = Ledger(root / "ledger.sqlite")
    assert ledger.verify().ok
    assert [r.kind for r in ledger.rows()].count("release") == 2 and [r.kind for r in ledger.rows()].count(
        "reject"
    ) == 1
