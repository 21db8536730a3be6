"""SIGKILL a gate run: never a released video without its record, and the ledger still verifies.

Stage-targeted: the test hook ``HALLO3_GATE_TEST_KILL_AT=<stage>`` (``gate.run.KILL_STAGES``) makes a real
``hallo3-gate review`` kill itself after encoding, after signing, in the middle of the reports, after the reports,
right after the ledger append, and in the middle of publishing. After each kill the state is what that stage must
leave (a rolled-back-to-be run without a ledger row, or a recorded run waiting in staging); the next run's recovery
then removes the former and publishes the latter.

Random: trials kill runs after a random delay drawn (seeded) from the span of an undisturbed run, two runs at a time
against one output directory and one ledger ($HALLO3_GATE_CRASH_TRIALS, default 6).

After every kill: every directory in released/ and quarantine/ holds the video, its record and its reports, the
record's ledger row exists and names the video's sha256, and the chain verifies; after recovery, every row's run is
published and staging/ is empty.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gate.ledger import Ledger
from gate.run import KILL_ENV, KILL_STAGES
from gate.staging import MARKER
from reports.schema import GateRecord
from reports.write import REPORT_FILES

TRIALS = int(os.environ.get("HALLO3_GATE_CRASH_TRIALS", "6"))
TECH_POLICY = """name = "technical"
version = "1"
[checks.fps]
metric = "fps"
min = 24
[checks.audio]
metric = "audio_present"
min = 1
"""


def _sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _review(
    inputs, out: Path, policy: Path, stdout=subprocess.DEVNULL, *, kill_at: str | None = None
) -> subprocess.Popen:
    env = {**os.environ, **inputs.env}
    env.pop("GITHUB_STEP_SUMMARY", None)
    env.pop(KILL_ENV, None)
    if kill_at is not None:
        env[KILL_ENV] = kill_at
    argv = [
        sys.executable,
        "-m",
        "gate.cli",
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
        "--json",
    ]
    return subprocess.Popen(argv, env=env, stdout=stdout, stderr=subprocess.PIPE)


def _check_invariants(out: Path, ledger: Ledger, *, recovered: bool = False) -> int:
    rep = ledger.verify()
    assert rep.ok, rep.problems
    rows = {r.run_id: r for r in ledger.rows()}
    published = 0
    for kind, decision in (("released", "released"), ("quarantine", "quarantined")):
        for d in sorted((out / kind).glob("*")) if (out / kind).exists() else []:
            video, record = d / "video.mp4", d / "record.json"
            assert all((d / n).is_file() for n in REPORT_FILES.values()), f"{d} lacks a report"
            assert video.is_file() and record.is_file(), f"{d} lacks its video or record"
            rec = GateRecord.from_json(record.read_text())
            row = rows.get(d.name)
            assert row is not None, f"{d} has no ledger row"
            assert row.decision == decision == rec.decision
            assert row.output_sha256 == _sha256(video) == rec.output.sha256
            assert rec.ledger is not None and rec.ledger.row_hash == row.row_hash
            published += 1
    if recovered:
        for run_id, row in rows.items():
            final = out / ("released" if row.decision == "released" else "quarantine") / run_id
            assert (final / "video.mp4").is_file(), f"row {row.seq} says {row.decision}; {final} has no video"
    return published


# what each stage leaves in staging/<run_id>: files present, files absent, ledger row present
BEFORE_ROW = {
    "after_encode": ({"video.mp4"}, {"record.json"}),
    "after_sign": ({"video.mp4"}, {"record.json"}),
    "mid_report": ({"video.mp4", "record.json", "report.html", "junit.xml", "summary.md"}, {"report.pdf"}),
    "after_report": ({"video.mp4", *REPORT_FILES.values()}, set()),
}
AFTER_ROW = ("after_ledger_append", "mid_publish")


def _staged(out: Path) -> set[str]:
    return {p.name for p in (out / "staging").iterdir()} if (out / "staging").exists() else set()


@pytest.mark.slow
def test_a_kill_at_each_stage_leaves_what_recovery_finishes_or_rolls_back(e2e_inputs, tmp_path):
    assert set(BEFORE_ROW) | set(AFTER_ROW) == set(KILL_STAGES)
    out = tmp_path / "out"
    policy = tmp_path / "technical.toml"
    policy.write_text(TECH_POLICY)
    ledger = Ledger(tmp_path / "stage-ledger.sqlite", create=True)
    inputs = type(e2e_inputs)(
        **{**e2e_inputs.__dict__, "env": {**e2e_inputs.env, "HALLO3_GATE_LEDGER": str(ledger.path)}}
    )
    killed: dict[str, str] = {}
    for stage in KILL_STAGES:
        proc = _review(inputs, out, policy, kill_at=stage)
        assert proc.wait(600) == -signal.SIGKILL, (stage, proc.stderr.read().decode()[-2000:] if proc.stderr else "")
        (run_id,) = _staged(out)  # its own start finished or removed what the previous killed run left
        killed[stage] = run_id
        d = out / "staging" / run_id
        assert (d / MARKER).is_file()  # marked as the gate's own: recovery may finish or remove it
        row = ledger.find_by_run(run_id)
        if stage in BEFORE_ROW:
            present, absent = BEFORE_ROW[stage]
            names = {p.name for p in d.iterdir()}
            assert row is None and present <= names and not absent & names, (stage, sorted(names))
        else:
            assert row is not None and all((d / n).is_file() for n in REPORT_FILES.values()), stage
            rec = GateRecord.from_json((d / "record.json").read_text())
            assert (rec.ledger is not None) == (stage == "mid_publish"), stage  # the ledger entry is the last write
        recorded_before = sum(s in AFTER_ROW for s in killed if s != stage)  # published by later runs' recovery
        assert _check_invariants(out, ledger) == recorded_before, stage

    last = _review(inputs, out, policy)  # its recovery finishes or rolls back each killed run
    assert last.wait(600) == 0, last.stderr.read().decode()[-2000:] if last.stderr else ""
    assert _staged(out) == set()
    assert _check_invariants(out, ledger, recovered=True) == 1 + len(AFTER_ROW)
    for stage, run_id in killed.items():
        recorded = ledger.find_by_run(run_id) is not None
        assert recorded == (stage in AFTER_ROW), stage
        assert (out / "released" / run_id / "video.mp4").is_file() == recorded, stage


@pytest.mark.slow
def test_sigkill_never_leaves_a_release_without_its_record(e2e_inputs, tmp_path):
    out = tmp_path / "out"
    policy = tmp_path / "technical.toml"
    policy.write_text(TECH_POLICY)
    ledger = Ledger(e2e_inputs.env["HALLO3_GATE_LEDGER"].replace("ledger.sqlite", "crash-ledger.sqlite"), create=True)
    inputs = type(e2e_inputs)(
        **{**e2e_inputs.__dict__, "env": {**e2e_inputs.env, "HALLO3_GATE_LEDGER": str(ledger.path)}}
    )

    t0 = time.monotonic()
    first = _review(inputs, out, policy)
    assert first.wait(600) == 0, first.stderr.read().decode()[-2000:] if first.stderr else ""
    span = time.monotonic() - t0

    rng = random.Random(20261123)
    for _ in range(0, TRIALS, 2):
        procs = [_review(inputs, out, policy) for _ in range(2)]
        delays = sorted(rng.uniform(0.2, span * 1.1) for _ in procs)
        start = time.monotonic()
        for p, delay in zip(procs, delays, strict=True):
            time.sleep(max(0.0, delay - (time.monotonic() - start)))
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
        for p in procs:
            p.wait(600)
        _check_invariants(out, ledger)

    last = _review(inputs, out, policy)  # recovers or removes whatever the killed runs left in staging
    assert last.wait(600) == 0
    published = _check_invariants(out, ledger, recovered=True)
    assert published == len(ledger.rows()) >= 2
    leftovers = [p for p in (out / "staging").glob("*")] if (out / "staging").exists() else []
    assert not leftovers, leftovers


@pytest.mark.slow
def test_eight_concurrent_runs_give_eight_rows_and_a_valid_chain(e2e_inputs, tmp_path):
    out = tmp_path / "out"
    policy = tmp_path / "technical.toml"
    policy.write_text(TECH_POLICY)
    ledger = Ledger(tmp_path / "concurrent-ledger.sqlite", create=True)
    inputs = type(e2e_inputs)(
        **{**e2e_inputs.__dict__, "env": {**e2e_inputs.env, "HALLO3_GATE_LEDGER": str(ledger.path)}}
    )
    procs = [_review(inputs, out, policy, stdout=subprocess.PIPE) for _ in range(8)]
    outputs = [p.communicate(timeout=900) for p in procs]
    codes = [p.returncode for p in procs]
    why = [
        (c, (o or b"")[-300:].decode(errors="replace"), (e or b"")[-300:].decode(errors="replace"))
        for c, (o, e) in zip(codes, outputs, strict=True)
        if c != 0
    ]
    assert codes == [0] * 8, why
    assert len(ledger.rows()) == 8 and [r.seq for r in ledger.rows()] == list(range(1, 9))
    assert _check_invariants(out, ledger) == 8
