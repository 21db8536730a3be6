"""Fixtures of the review pages' tests: a runs directory with pending runs, a database with users, the app.

``make_pending_run`` lays a pending run out as the gate does — in about a second, where a real gate run
(``tests.gate.review_fixtures``) takes a gate run per module — a TEST DOUBLE of the gate's run step, not product
code: a real H.264 + AAC MP4 (``gate.media.write_mp4``) in ``OUT/pending/<run_id>/``, a schema 1.2
record (decision pending, exit code 6, its review) as ``record.json``, and the ledger row ``kind=run,
decision=pending, actor=<submitter>, role=submitter`` appended through ``gate.ledger.Ledger`` — so every page reads
it through the real ``gate.review`` service, and decisions settle it with the real ``gate.staging.settle``.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from gate import users
from gate.database import Database
from gate.ledger import Ledger
from gate.media import write_mp4
from gate.staging import VIDEO_NAME, Layout
from reports.hashing import sha256_file
from reports.schema import GateRecord
from review_app.app import create_app
from review_app.settings import Settings
from tests.conftest import SHARED_DATA
from tests.reports.conftest import FPS, N_FRAMES, build_record_dict, synthetic_frames

PASSWORD = "correct horse battery staple"
REASON_CODES = ["meets-policy", "identity-mismatch", "lip-sync", "visual-artifacts", "other"]
PEOPLE = {"sam": "reviewer", "ann": "approver", "bob": "approver", "val": "viewer", "ada": "admin", "rex": "reviewer"}
HOSTILE = '<script>alert("x")</script>'


@dataclass(frozen=True)
class Site:
    runs: Path
    db: Database
    settings: Settings


def _portrait(tmp: Path) -> Path:
    src = SHARED_DATA / "portraits" / "hallo3_0001.jpg"
    dst = tmp / "inputs" / "portrait.jpg"
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.exists():
        shutil.copyfile(src, dst)
    else:  # a JPEG of the synthetic face when the shared media is absent
        from PIL import Image

        Image.fromarray(synthetic_frames(1, 7, size=256)[0]).save(dst, "JPEG")
    return dst


def make_pending_run(site: Site, *, seed: int, submitter: str = "sam", model: str = "hallo3") -> str:
    """A pending run of ``site`` (see the module docstring); returns its run id."""
    d = build_record_dict("released", seed=seed, model=model)
    run_id = d["run_id"].replace("-released", "-pending")
    layout = Layout(site.runs)
    directory = layout.pending / run_id
    directory.mkdir(parents=True)
    video = directory / VIDEO_NAME
    t = np.arange(int(N_FRAMES / FPS * 16000)) / 16000
    audio = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    write_mp4(video, synthetic_frames(N_FRAMES, seed, size=256), FPS, audio, 16000, preset="ultrafast")
    portrait = _portrait(site.runs.parent)
    created = d["created_at"]
    d.update(
        schema_version="1.2",
        run_id=run_id,
        decision="pending",
        exit_code=6,
        reasons=[],
        review={
            "required_approvals": 2,
            "four_eyes": True,
            "reason_codes": REASON_CODES,
            "submitted_by": submitter,
            "state": "pending",
            "events": [{"kind": "run", "actor": submitter, "role": "submitter", "at": created}],
        },
    )
    d["inputs"]["portrait"] = {
        "path": str(portrait),
        "sha256": sha256_file(portrait),
        "size": portrait.stat().st_size,
        "media_type": "image/jpeg",
    }
    d["output"].update(path=str(video), sha256=sha256_file(video), size=video.stat().st_size, staging_path=None)
    d["policy"]["content"]["review"] = {"required_approvals": 2, "four_eyes": True, "reason_codes": REASON_CODES}
    d.pop("ledger", None)
    for w in d["weights"]:  # schema >= 1.1: each weight states how it was checked
        w.update(pinned_sha256=w["sha256"], status="verified", verified=True)
    record = GateRecord.model_validate(d)
    Ledger(site.db).append(
        run_id=run_id,
        created_at=created,
        decision="pending",
        output_path=str(video),
        output_sha256=record.output.sha256,
        payload_hex=record.watermark.payload,
        record_json=record.to_json(),
        actor=submitter,
        role="submitter",
    )
    (directory / "record.json").write_text(record.to_json())
    return run_id


def make_site(root: Path) -> Site:
    runs = root / "runs"
    runs.mkdir(parents=True)
    locator = str(root / "gate.sqlite")
    db = Database.open(locator, create=True)
    for name, role in PEOPLE.items():
        users.add_user(db, name, role, PASSWORD, actor="setup")
    return Site(runs, db, Settings(runs_dir=runs, db=locator))


@pytest.fixture()
def site(tmp_path) -> Site:
    return make_site(tmp_path)


@pytest.fixture()
def app(site):
    return create_app(site.settings)


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = _CSRF.search(html)
    assert found, "the page carries no CSRF field"
    return found.group(1)


def log_in(client, name: str, password: str = PASSWORD):
    """Log ``client`` in through the login form; returns the final response (the queue on success)."""
    form = client.get("/login")
    return client.post(
        "/login", data={"name": name, "password": password, "csrf": csrf_of(form.text), "next": "/queue"}
    )


def ledger_kinds(site: Site, run_id: str) -> list[str]:
    return [r["kind"] for r in Ledger(site.db).events(run_id)] if hasattr(Ledger, "events") else []


__all__ = ["HOSTILE", "PASSWORD", "Site", "csrf_of", "json", "ledger_kinds", "log_in", "make_pending_run", "make_site"]
