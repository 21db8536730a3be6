"""Real pending runs for review tests, made quickly: one real gate run per session, copied per test.

``pending_source`` (session) gates a short talking video (the puppet positive control on the scikit-image astronaut
with espeak-ng speech, 256x256, 2.4 s) with the shipped ``offline-review`` policy (2 approvals, four eyes): it passes
every automated check, so it waits in ``OUT/pending/<run_id>`` with exit code 6 and one ``run`` ledger row
(decision ``pending``, actor ``SUBMITTER``). ``pending_run`` (per test) copies that output directory and that
database — the ledger rows verbatim, hashes included — into a fresh database at the test's ``db_url`` (SQLite or
PostgreSQL) and a fresh runs directory, and adds the users ``USERS`` (name → role; password ``PASSWORD``).

Use, in a test module (import every name: pytest finds fixtures in the module's namespace)::

    from tests.databases import db_url, pg_db_url, postgres_url  # noqa: F401
    from tests.gate.review_fixtures import pending_run, pending_source  # noqa: F401

    def test_x(pending_run):
        review.decide(pending_run.db, pending_run.runs_dir, pending_run.run_id, pending_run.user("ana"), ...)

A test that needs a second pending run calls ``pending_run.another()`` (a copy under a new run id is not possible —
the id is signed into the video — so it makes one more real gate run into the same runs directory and database).
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gate.database import LEDGER_COLUMNS, Database
from gate.users import User, add_user
from tests.talking import Inputs, make_inputs, with_consent

REPO = Path(__file__).resolve().parents[2]
REVIEW_POLICY = REPO / "gate" / "policies" / "offline-review.toml"
SUBMITTER = "sam"
PASSWORD = "review-fixture-password"
USERS = {
    "sam": "approver",  # the submitter (an approver, so four eyes is what stops them)
    "ana": "approver",
    "ben": "approver",
    "cy": "approver",
    "ada": "admin",
    "rita": "reviewer",
    "vic": "viewer",
}


@dataclass(frozen=True)
class Source:
    inputs: Inputs
    out_dir: Path
    ledger: Path
    run_id: str


@dataclass
class PendingRun:
    db: Database
    runs_dir: Path
    run_id: str
    video_sha256: str  # of pending/<run_id>/video.mp4 as the gate wrote it
    source: Source
    extra: list[str] = field(default_factory=list)

    @property
    def pending_dir(self) -> Path:
        return self.runs_dir / "pending" / self.run_id

    def user(self, name: str) -> User:
        return User(name, USERS[name], False)

    def another(self, monkeypatch: pytest.MonkeyPatch) -> str:
        """One more real pending run (a new gate run) in this runs directory and database; returns its run id."""
        run_id = _gate_run(self.source.inputs, self.runs_dir, self.db.locator, monkeypatch)
        self.extra.append(run_id)
        return run_id


def _gate_run(inputs: Inputs, out_dir: Path, ledger: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """`review` of the talking video under the offline-review policy, submitted by SUBMITTER: a pending run."""
    from gate.run import RunRequest, run
    from provenance.keys import SignerConfig, dev_trust_anchor
    from reports.errors import ExitCode

    for k, v in inputs.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.delenv("HALLO3_GATE_DB", raising=False)
    config = SignerConfig.from_env()
    outcome = run(
        RunRequest(
            mode="review",
            out_dir=out_dir,
            portrait=inputs.portrait,
            audio=inputs.audio,
            video=inputs.talking,
            policy_path=REVIEW_POLICY,
            ledger_path=ledger,
            signer=config,
            trust_anchors_pem=dev_trust_anchor(config),
            submitted_by=SUBMITTER,
        )
    )
    assert outcome.exit_code == ExitCode.AWAITING_REVIEW, outcome.record.reasons
    return outcome.record.run_id


@pytest.fixture(scope="session")
def pending_source(tmp_path_factory) -> Source:
    root = tmp_path_factory.mktemp("review-source")
    inputs = make_inputs(root)
    out_dir, ledger = root / "runs", root / "ledger.sqlite"
    with_consent(inputs, ledger)
    with pytest.MonkeyPatch.context() as mp:
        run_id = _gate_run(inputs, out_dir, str(ledger), mp)
    return Source(inputs, out_dir, ledger, run_id)


def copy_database(source: Path, target: str) -> Database:
    """A new database at ``target`` holding ``source``'s ledger rows verbatim (same seq, hashes, records) and its
    consent records (the review fixtures' person)."""
    db = Database.open(target, create=True)
    cols = ", ".join(LEDGER_COLUMNS)
    with Database.open(str(source)).reading() as tx:
        rows = tx.execute(f"SELECT {cols} FROM ledger ORDER BY seq")
        consents = tx.execute("SELECT * FROM consents")
    with db.transaction() as tx:
        for r in rows:
            marks = ", ".join("?" * len(LEDGER_COLUMNS))
            tx.execute(f"INSERT INTO ledger ({cols}) VALUES ({marks})", [r[c] for c in LEDGER_COLUMNS])
        for r in consents:
            tx.execute(f"INSERT INTO consents ({', '.join(r)}) VALUES ({', '.join('?' * len(r))})", list(r.values()))
    return db


@pytest.fixture
def pending_run(pending_source: Source, db_url: str, tmp_path) -> PendingRun:
    runs_dir = tmp_path / "runs"
    shutil.copytree(pending_source.out_dir, runs_dir, symlinks=True)
    db = copy_database(pending_source.ledger, db_url)
    for name, role in USERS.items():
        add_user(db, name, role, PASSWORD, actor="fixture")
    video = runs_dir / "pending" / pending_source.run_id / "video.mp4"
    return PendingRun(
        db, runs_dir, pending_source.run_id, hashlib.sha256(video.read_bytes()).hexdigest(), pending_source
    )
