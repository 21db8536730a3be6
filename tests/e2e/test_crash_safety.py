"""SIGKILL a gate run at random points: never a released video without its record, and the ledger still verifies.

Each trial starts a real `hallo3-gate review` in a subprocess and kills it after a random delay drawn (seeded) from
the span of an undisturbed run, two runs at a time against one output directory and one ledger. Afterwards every
directory in released/ and quarantine/ must hold the video and its record, the record's ledger row must exist and
name the video's sha256, the chain must verify, and a following run must clean up what the killed runs left in
staging/. Trials: $HALLO3_GATE_CRASH_TRIALS (default 20).
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

from gate.ledger import Ledger
from reports.schema import GateRecord

TRIALS = int(os.environ.get("HALLO3_GATE_CRASH_TRIALS", "20"))
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


def _review(inputs, out: Path, policy: Path, stdout=subprocess.DEVNULL) -> subprocess.Popen:
    env = {**os.environ, **inputs.env}
    env.pop("GITHUB_STEP_SUMMARY", None)
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


def _check_invariants(out: Path, ledger: Ledger) -> int:
    rep = ledger.verify()
    assert rep.ok, rep.problems
    rows = {r.run_id: r for r in ledger.rows()}
    published = 0
    for kind in ("released", "quarantine"):
        for d in sorted((out / kind).glob("*")) if (out / kind).exists() else []:
            video, record = d / "video.mp4", d / "record.json"
            assert video.is_file() and record.is_file(), f"{d} lacks its video or record"
            rec = GateRecord.from_json(record.read_text())
            row = rows.get(d.name)
            assert row is not None, f"{d} has no ledger row"
            assert row.output_sha256 == _sha256(video) == rec.output.sha256
            assert rec.ledger is not None and rec.ledger.row_hash == row.row_hash
            published += 1
    return published


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
    published = _check_invariants(out, ledger)
    assert published == len(ledger.rows()) >= 2
    leftovers = [p for p in (out / "staging").glob("*")] if (out / "staging").exists() else []
    assert not leftovers, leftovers


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
