"""The consent check in whole gate runs, on the real Hallo3 portraits of ../shared/data (three different people).

Generate mode refuses before anything is generated (exit 1, the reason on stderr, no output directory, no ledger row)
unless an active consent record matches the portrait; review mode quarantines a video whose person has none.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gate import consent
from gate.cli import main
from gate.database import Database
from gate.ledger import Ledger

OFFLINE_POLICY = Path(__file__).resolve().parents[2] / "gate" / "policies" / "offline.toml"


@pytest.fixture()
def world(gate_env, portraits, tmp_path):
    """A fresh database and output place; the consent evidence file; the shared portraits of three people."""
    evidence = tmp_path / "signed-consent.pdf"
    evidence.write_bytes(b"%PDF-1.4 consent form (test)\n")
    return {
        "db": str(tmp_path / "gate.sqlite"),
        "out": tmp_path / "out",
        "evidence": evidence,
        "portraits": portraits,
        "audio": gate_env.audio,
    }


def _add(world, portrait: Path, expires=None) -> consent.ConsentRecord:
    db = Database.open(world["db"], create=True)
    return consent.add(
        db,
        name="Test Person",
        portrait=portrait,
        evidence=world["evidence"],
        scope="tests",
        actor="lead",
        expires=expires,
    )


def _generate(world, portrait: Path, capsys) -> tuple[int, str]:
    capsys.readouterr()
    argv = ["generate", "--backend", "still", "--portrait", str(portrait), "--audio", str(world["audio"])]
    argv += ["--out", str(world["out"]), "--ledger", world["db"], "--policy", str(OFFLINE_POLICY)]
    code = main(argv)
    return code, capsys.readouterr().err


def _refused(world, code: int, err: str, why: str) -> None:
    assert code == 1, err
    assert "consent" in err and why in err, err
    assert not world["out"].exists()  # nothing was generated, nothing written
    if Path(world["db"]).exists():
        assert not [r for r in Ledger(world["db"]).rows() if r.kind == "run"]


def test_no_consent_record_refuses_generation(world, capsys):
    code, err = _generate(world, world["portraits"][0], capsys)
    _refused(world, code, err, "no consent record")


def test_another_persons_consent_refuses_generation(world, capsys):
    _add(world, world["portraits"][1])  # hallo3_0003 consented; hallo3_0001 is generated
    code, err = _generate(world, world["portraits"][0], capsys)
    _refused(world, code, err, "not the person of any")


def test_revoked_consent_refuses_generation(world, capsys):
    record = _add(world, world["portraits"][0])
    consent.revoke(Database.open(world["db"]), record.id, "lead", "withdrawn by the person")
    code, err = _generate(world, world["portraits"][0], capsys)
    _refused(world, code, err, "revoked")


def test_expired_consent_refuses_generation(world, capsys):
    import datetime as dt

    record = _add(world, world["portraits"][0], expires=dt.date.today() + dt.timedelta(days=30))
    with Database.open(world["db"]).transaction() as tx:  # time passes: the record's last day is behind us
        tx.execute("UPDATE consents SET expires_at = ? WHERE id = ?", ("2026-01-31", record.id))
    code, err = _generate(world, world["portraits"][0], capsys)
    _refused(world, code, err, "expired")


@pytest.mark.slow  # a whole gate run (~30 s on 2 cores)
def test_the_right_persons_consent_lets_the_run_go_through_and_is_named_in_the_record(world, capsys):
    """hallo3_0001's own consent: the run is made (the still baseline then fails AV-sync, as it must), and the record
    names the consent id, never the person's name."""
    record = _add(world, world["portraits"][0])
    capsys.readouterr()
    argv = ["generate", "--backend", "still", "--portrait", str(world["portraits"][0])]
    argv += ["--audio", str(world["audio"]), "--out", str(world["out"]), "--ledger", world["db"]]
    code = main([*argv, "--policy", str(OFFLINE_POLICY), "--json"])
    rec = json.loads(capsys.readouterr().out)
    check = next(c for c in rec["checks"] if c["metric"] == "consent")
    assert check["outcome"] == "pass" and check["value"] == 1
    assert rec["consent"]["consent_id"] == record.id and rec["consent"]["status"] == "matched"
    assert next(r for r in rec["compliance"] if r["id"] == "consent")["status"] == "met"
    assert code == 1 and not any("consent" in r for r in rec["reasons"])  # quarantined for AV-sync, not consent
    folder = Path(rec["output"]["path"]).parent
    assert all("Test Person" not in p.read_text(errors="replace") for p in folder.iterdir() if p.suffix != ".mp4")


@pytest.mark.slow  # a whole gate run (~30 s on 2 cores)
def test_review_of_a_person_without_consent_is_quarantined(gate_env, tmp_path, capsys):
    """Review mode measures first: a video of a person without a consent record is quarantined with the reason."""
    db = str(tmp_path / "no-consent.sqlite")
    argv = ["review", str(gate_env.talking), "--reference", str(gate_env.portrait), "--audio", str(gate_env.audio)]
    capsys.readouterr()
    code = main([*argv, "--out", str(tmp_path / "out"), "--ledger", db, "--policy", str(OFFLINE_POLICY), "--json"])
    rec = json.loads(capsys.readouterr().out)
    assert code == 1 and rec["decision"] == "quarantined"
    check = next(c for c in rec["checks"] if c["metric"] == "consent")
    assert check["outcome"] == "fail" and check["value"] == 0
    assert rec["consent"]["status"] == "no_record" and rec["consent"]["consent_id"] is None
    row = next(r for r in rec["compliance"] if r["id"] == "consent")
    assert row["status"] == "not_met" and "no consent record" in row["reason"]
    assert any("consent" in r for r in rec["reasons"]), rec["reasons"]
