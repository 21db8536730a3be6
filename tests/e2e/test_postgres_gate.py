"""PostgreSQL as a team's shared database, with real gate runs (issue 9, point 5).

Every gate run here is a separate ``python -m gate.cli review`` process of the short e2e clip (the puppet talking
video, 256x256, 2.4 s) under the shipped ``offline-review`` policy, recording into ONE throw-away PostgreSQL database
(tests/postgres.py; skipped with the reason only where the PostgreSQL binaries are absent):

* 8 gate runs (at most ``POOL`` at a time; each one's run overlaps at least one other's) while two reviewers, in two
  more processes, approve two already-pending runs at once through ``gate.review.decide`` → every row is there (runs,
  approvals, releases, user changes), seq has no gap, the chain verifies, each pending run is released exactly once;
* a run given ``--ledger postgresql://user:PASSWORD@…`` writes the password nowhere under --out (the staging marker
  of a run killed after its ledger row, record.json and the reports) and never prints it; recovery given the URL
  with its password recognises the killed run's ledger by its password-free form and publishes it; an unreachable server and
  another application's database are refused before anything is written (74 / 4), the URL shown without password.

Wall time on 2 shared cores is measured and printed (``-s``), never asserted.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pytest

from gate.database import Database, display_url
from gate.ledger import Ledger
from gate.run import KILL_ENV
from gate.staging import MARKER, VIDEO_NAME, Layout, recover
from gate.users import add_user
from reports.hashing import sha256_file
from reports.schema import GateRecord
from tests.postgres import fresh_database, pg_db_url, postgres_url  # noqa: F401
from tests.talking import with_consent

REPO = Path(__file__).resolve().parents[2]
REVIEW_POLICY = REPO / "gate" / "policies" / "offline-review.toml"
RUNS, POOL = 8, 4
SUBMITTER = "sam"
REVIEWERS = ("ana", "ben")
PASSWORD = "h6-Pg-Secret-7f3a9c"  # the database password in test 2: must appear in no file and no output

REVIEWER_SCRIPT = """
import json, sys, time
from gate.database import Database
from gate.review import decide
from gate.users import get_user
url, runs_dir, name, run_ids, ready = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), sys.argv[5]
db = Database.open(url)
user = get_user(db, name)
open(ready, "w").close()
sys.stdin.readline()  # the start signal: both reviewers decide at once
out = []
for run_id in run_ids:
    t0 = time.time()
    state = decide(db, runs_dir, run_id, user, "approve", "meets-policy", f"checked by {name}")
    out.append({"run_id": run_id, "state": state, "start": t0, "end": time.time()})
print(json.dumps(out), flush=True)
"""


@dataclass
class Proc:
    """A child process (its stdout and stderr go to files: a pipe nobody reads would block it) and when the parent
    saw it start and end (wall clock)."""

    name: str
    popen: subprocess.Popen
    start: float
    logs: Path
    end: float | None = None
    out: str = ""
    err: str = ""

    @classmethod
    def spawn(cls, name: str, argv: list[str], env: dict[str, str], logs: Path, **kw) -> Proc:
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{name}.out", "wb") as out, open(logs / f"{name}.err", "wb") as err:
            popen = subprocess.Popen(argv, env=env, stdout=out, stderr=err, cwd=REPO, **kw)
        return cls(name, popen, time.time(), logs)

    def finish(self, timeout: float = 600) -> Proc:
        self.popen.wait(timeout=timeout)
        self.end = self.end or time.time()
        self.out = (self.logs / f"{self.name}.out").read_text(errors="replace")
        self.err = (self.logs / f"{self.name}.err").read_text(errors="replace")
        return self

    @property
    def code(self) -> int | None:
        return self.popen.returncode

    def why(self) -> str:
        return f"{self.name}: exit {self.code}\nstdout: {self.out[-600:]}\nstderr: {self.err[-1500:]}"


def _env(inputs, **extra: str) -> dict[str, str]:
    env = {**os.environ, **inputs.env, "OMP_NUM_THREADS": "1", **extra}
    for k in ("GITHUB_STEP_SUMMARY", "HALLO3_GATE_DB", "HALLO3_GATE_LEDGER", KILL_ENV):
        if k not in extra:
            env.pop(k, None)
    return env


def _gate(inputs, out: Path, ledger: str, name: str, **env: str) -> Proc:
    """``hallo3-gate review`` of the e2e clip under the offline-review policy, as a separate process (its output in
    ``out``'s sibling ``logs/``)."""
    argv = [sys.executable, "-m", "gate.cli", "review", str(inputs.talking), "--reference", str(inputs.portrait)]
    argv += ["--audio", str(inputs.audio), "--out", str(out), "--policy", str(REVIEW_POLICY), "--ledger", ledger]
    argv += ["--submitted-by", SUBMITTER, "--json"]
    return Proc.spawn(name, argv, _env(inputs, **env), out.parent / "logs")


def _pool(procs_to_start: list, size: int) -> list[Proc]:
    """Start the callables in ``procs_to_start`` keeping at most ``size`` running; return every Proc, finished."""
    todo, running, done = list(procs_to_start), [], []
    while todo or running:
        while todo and len(running) < size:
            running.append(todo.pop(0)())
        time.sleep(0.05)
        for p in list(running):
            if p.popen.poll() is not None:
                p.end = time.time()
                running.remove(p)
                done.append(p.finish())
    return done


def _overlaps(p: Proc, others: list[Proc]) -> bool:
    return any(q is not p and q.start < p.end and p.start < q.end for q in others)


def _gated(p: Proc) -> dict:
    assert p.code == 6, p.why()
    return json.loads(p.out)


@pytest.mark.slow
def test_eight_gate_runs_and_two_reviewers_at_once_on_one_postgres_database(e2e_inputs, pg_db_url, tmp_path):  # noqa: F811
    t0 = time.time()
    out = tmp_path / "runs"
    with_consent(e2e_inputs, pg_db_url)  # the depicted person's consent record (the shipped policies require one)
    # two runs already pending (each waits for 2 approvals) and the two approvers
    first = [_gate(e2e_inputs, out, pg_db_url, f"pending-{i}") for i in range(2)]
    first = [p.finish() for p in first]
    pending = [_gated(p)["run_id"] for p in first]
    db = Database.open(pg_db_url)
    for name in REVIEWERS:
        add_user(db, name, "approver", "correct horse battery staple", actor="admin")
    videos = {r: sha256_file(out / "pending" / r / "video.mp4") for r in pending}
    t_setup = time.time() - t0

    # the reviewers get ready (imports, database), then 8 gate runs start (POOL at a time) and the reviewers go
    ready = {name: tmp_path / f"{name}.ready" for name in REVIEWERS}
    reviewers = [
        Proc.spawn(
            name,
            [sys.executable, "-c", REVIEWER_SCRIPT, pg_db_url, str(out), name, json.dumps(pending), str(ready[name])],
            _env(e2e_inputs),
            tmp_path / "logs",
            stdin=subprocess.PIPE,
        )
        for name in REVIEWERS
    ]
    for r in reviewers:
        while not ready[r.name].exists():
            assert r.popen.poll() is None, r.finish().why()
            time.sleep(0.05)

    def go() -> None:
        for r in reviewers:
            r.start = time.time()
            r.popen.stdin.write(b"go\n")
            r.popen.stdin.flush()

    t1 = time.time()
    starters = [lambda i=i: _gate(e2e_inputs, out, pg_db_url, f"run-{i}") for i in range(RUNS)]
    starters[2] = lambda: (go(), _gate(e2e_inputs, out, pg_db_url, "run-2"))[1]  # the reviewers start with run 3
    runs = _pool(starters, POOL)
    decided = [r.finish() for r in reviewers]
    t_concurrent = time.time() - t1

    # every gate run waited for review (exit 6), each overlapped another one, and the reviewers overlapped the runs
    assert len(runs) == RUNS
    new_ids = [_gated(p)["run_id"] for p in runs]
    assert len(set(new_ids)) == RUNS
    assert all(_overlaps(p, runs) for p in runs), [(p.name, p.start - t1, p.end - t1) for p in runs]
    answers = []
    for r in decided:
        assert r.code == 0, r.why()
        answers.append(json.loads(r.out.strip().splitlines()[-1]))
        r.start, r.end = min(a["start"] for a in answers[-1]), max(a["end"] for a in answers[-1])  # its decisions
        assert _overlaps(r, runs), (r.name, r.start - t1, r.end - t1)

    # the ledger: every row, gap-free, chain intact
    ledger = Ledger(pg_db_url)
    rows = ledger.rows()
    total_runs = RUNS + len(pending)
    kinds = collections.Counter(r.kind for r in rows)
    assert kinds == {
        "consent": 1,
        "run": total_runs,
        "approve": 2 * len(pending),
        "release": len(pending),
        "user": len(REVIEWERS),
    }
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    check = ledger.verify()
    assert check.ok and check.rows == len(rows), check.problems
    for run_id in new_ids:
        row = ledger.find_by_run(run_id)
        assert (row.kind, row.decision, row.actor) == ("run", "pending", SUBMITTER)
        rec = GateRecord.from_json((out / "pending" / run_id / "record.json").read_bytes())
        assert rec.ledger.seq == row.seq and rec.ledger.row_hash == row.row_hash
        assert rec.ledger.path == display_url(pg_db_url)

    # each pending run released exactly once: one caller saw "released", the other "pending"; one release row
    for run_id in pending:
        states = sorted(a["state"] for ans in answers for a in ans if a["run_id"] == run_id)
        assert states == ["pending", "released"], answers
        events = ledger.events(run_id)
        assert [e.kind for e in events] == ["run", "approve", "approve", "release"]
        assert sorted(e.actor for e in events if e.kind == "approve") == sorted(REVIEWERS)
        final = out / "released" / run_id
        assert not (out / "pending" / run_id).exists() and (final / "review.json").is_file()
        rec = GateRecord.from_json((final / "record.json").read_bytes())
        assert rec.decision == "released" and rec.review.state == "released"
        assert sha256_file(final / "video.mp4") == videos[run_id] == rec.output.sha256
    assert sorted(p.name for p in (out / "pending").iterdir()) == sorted(new_ids)
    assert list((out / "staging").iterdir()) == []

    spans = ", ".join(f"{p.name} {p.start - t1:.1f}-{p.end - t1:.1f}s" for p in sorted(runs, key=lambda p: p.start))
    print(
        f"\n[postgres gate] setup (2 pending runs) {t_setup:.1f}s; {RUNS} runs, pool {POOL}, + 2 reviewers: "
        f"{t_concurrent:.1f}s; reviewers "
        + ", ".join(f"{r.name} {r.start - t1:.1f}-{r.end - t1:.1f}s" for r in decided)
        + f"; runs {spans}; {len(rows)} rows"
    )


def _with_password(url: str, password: str) -> str:
    parts = urllib.parse.urlsplit(url)
    user, host = parts.netloc.split("@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


def _files_holding(root: Path, secret: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and not p.is_symlink() and secret in p.read_bytes()]


@pytest.mark.slow
def test_a_database_password_is_never_written_or_printed(e2e_inputs, pg_db_url, postgres_url, tmp_path):  # noqa: F811
    secret = PASSWORD.encode()
    url = _with_password(pg_db_url, PASSWORD)
    assert PASSWORD in url and display_url(url) == pg_db_url  # the throw-away server trusts; a real one checks it
    out = tmp_path / "runs"

    # refused before anything is written: no server there (74), another application's database (4)
    gone = _with_password(f"postgresql://postgres@/nodb?host={tmp_path / 'no-server'}", PASSWORD)
    with fresh_database(postgres_url) as foreign_url:
        import psycopg

        with psycopg.connect(foreign_url, autocommit=True) as con:
            con.execute("CREATE TABLE ledger (id integer, note text)")
        refused = [
            _gate(e2e_inputs, out, gone, "unreachable").finish(),
            _gate(e2e_inputs, out, _with_password(foreign_url, PASSWORD), "foreign").finish(),
        ]
        with psycopg.connect(foreign_url) as con:
            assert con.execute("SELECT count(*) FROM ledger").fetchone()[0] == 0
    assert [p.code for p in refused] == [74, 4], [p.why() for p in refused]
    assert display_url(gone) in refused[0].err and "reachable" in refused[0].err
    assert "hallo3-gate" in refused[1].err
    assert not out.exists()

    # a run killed right after its ledger row: its staging marker names the database without the password
    with_consent(e2e_inputs, pg_db_url)  # the depicted person's consent record (ledger row 1)
    killed = _gate(e2e_inputs, out, url, "killed", **{KILL_ENV: "after_ledger_append"}).finish()
    assert killed.code == -9, killed.why()
    [staged] = list((out / "staging").iterdir())
    marker = json.loads((staged / MARKER).read_text())
    assert marker == {"run_id": staged.name, "ledger": pg_db_url}
    assert _files_holding(out, secret) == []

    # recovery (what the next gate run does first), given the URL with its password, knows the marker's ledger and
    # publishes the run with its ledger entry
    notes = recover(Layout(out), url)
    assert notes == [
        f"{staged.name}: finished an interrupted run (pending: {out / 'pending' / staged.name / VIDEO_NAME})"
    ]
    ledger = Ledger(url)
    assert ledger.verify().ok and [r.kind for r in ledger.rows()] == ["consent", "run"]
    rec = GateRecord.from_json((out / "pending" / staged.name / "record.json").read_bytes())
    assert rec.ledger.path == pg_db_url and rec.ledger.seq == ledger.find_by_run(staged.name).seq == 2
    assert rec.decision == "pending" and list((out / "staging").iterdir()) == []

    assert _files_holding(out, secret) == []  # records, reports, markers, anything under --out
    for p in (*refused, killed):
        assert PASSWORD not in p.err and PASSWORD not in p.out, p.name
