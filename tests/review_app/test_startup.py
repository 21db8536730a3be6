"""The service finishes, at startup, a decision whose directory move did not happen (the same recovery a gate run
does): a real pending gate run, two approvals committed while the move fails, then the app starts → released/."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from gate import review, staging
from reports.errors import OutputError
from review_app.app import create_app
from review_app.settings import Settings
from tests import databases
from tests.gate.review_fixtures import pending_run, pending_source  # noqa: F401

db_url = databases.db_url


@pytest.mark.slow  # one more real gate run (~30 s)
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_startup_moves_a_decided_run_into_place(pending_run, monkeypatch):  # noqa: F811
    run_id = pending_run.another(monkeypatch)  # recorded in this test's own database (a copy's record names another)
    approve = ("approve", "meets-policy", "looked at it")
    review.decide(pending_run.db, pending_run.runs_dir, run_id, pending_run.user("ana"), *approve)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as mp:
        mp.setattr(staging, "settle", disk_full)
        with pytest.raises(OutputError):
            review.decide(pending_run.db, pending_run.runs_dir, run_id, pending_run.user("ben"), *approve)
    pending_dir = pending_run.runs_dir / "pending" / run_id
    assert pending_dir.is_dir() and not (pending_run.runs_dir / "released" / run_id).exists()

    settings = Settings(runs_dir=pending_run.runs_dir, db=pending_run.db.locator)
    with TestClient(create_app(settings)) as client:  # the lifespan runs the recovery
        assert client.get("/healthz").status_code == 200
    released = pending_run.runs_dir / "released" / run_id
    assert not pending_dir.exists() and (released / "review.json").is_file()
    view = review.get_run(pending_run.db, pending_run.runs_dir, run_id)
    assert view.state == "released" and view.directory == released
