"""The consent registry on real portraits (../shared/data: hallo3_0001, _0003 and _0008 are three different people)
with the real FaceNet backend, on SQLite and PostgreSQL: every refusal (no record, another person's consent, expired,
revoked, deleted, no face) and the one pass; the ledger rows of each change, with nothing personal in them; the
personal fields erased by a deletion; the bad inputs, each naming what is wrong."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from gate import consent as C
from gate.database import Database
from gate.ledger import Ledger
from gate.media import iter_frames, read_image
from gate.users import BadDecision, Conflict, NotFound
from metrics.identity import FACENET_THRESHOLD
from reports.errors import ExitCode, InputError
from tests import databases

db_url, pg_db_url, postgres_url = databases.db_url, databases.pg_db_url, databases.postgres_url  # the fixtures

NAME = "Zoë Example-Person"  # personal data: must never appear outside the consents table
SCOPE = "talking-portrait videos for the spring campaign"


@pytest.fixture(scope="module")
def backend():
    return C.identity_backend()


@pytest.fixture
def evidence(tmp_path) -> Path:
    p = tmp_path / "signed-consent-form.pdf"
    p.write_bytes(b"%PDF-1.4 consent form signed 2026-12-01\n")
    return p


@pytest.fixture
def db(db_url) -> Database:
    return Database.open(db_url, create=True)


def _add(db, portrait: Path, evidence: Path, backend, **kw):
    args = {"name": NAME, "scope": SCOPE, "expires": None, "actor": "ops"} | kw
    return C.add(db, portrait=portrait, evidence=evidence, backend=backend, **args)


def _raw(db, sql: str) -> list[dict]:
    with db.reading() as tx:
        return tx.execute(sql)


# --- the acceptance cases ----------------------------------------------------------------------------------------


def test_no_record_refuses(db, portraits, backend):
    out = C.match(db, read_image(portraits[0]), backend=backend)
    assert (out.status, out.consent_id, out.similarity, out.matched) == ("no_record", None, None, False)
    assert out.threshold == FACENET_THRESHOLD.value and out.backend == "facenet"
    assert "no consent record" in out.reason


def test_the_right_person_passes(db, portraits, evidence, backend):
    rec = _add(db, portraits[0], evidence, backend)
    out = C.match(db, read_image(portraits[0]), backend=backend)
    assert out.status == "matched" and out.consent_id == rec.id and out.matched
    assert out.similarity > 0.99  # the registered portrait itself: the same embedding up to float rounding
    mirrored = read_image(portraits[0])[:, ::-1].copy()  # another image of the same face (mirrored)
    again = C.match(db, mirrored, backend=backend)
    assert again.status == "matched" and again.consent_id == rec.id
    assert FACENET_THRESHOLD.value < again.similarity < 1.0  # measured 0.990
    m = C.measurement(out)
    assert (m.name, m.value, m.higher_is_better, m.details["consent_id"]) == ("consent", 1.0, True, rec.id)


def test_another_persons_consent_refuses(db, portraits, evidence, backend):
    _add(db, portraits[1], evidence, backend)  # hallo3_0003 consented
    _add(db, portraits[2], evidence, backend)  # hallo3_0008 consented
    out = C.match(db, read_image(portraits[0]), backend=backend)  # hallo3_0001 is depicted
    assert out.status == "no_match" and out.consent_id is None
    assert out.similarity < FACENET_THRESHOLD.value  # measured 0.177 (vs 0003) and 0.079 (vs 0008)
    assert "none" not in out.reason and "2 consent records" in out.reason
    assert C.measurement(out).value == 0.0


def test_an_expired_consent_refuses(db, portraits, evidence, backend):
    today = datetime.now(UTC).date()
    rec = _add(db, portraits[0], evidence, backend, expires=today)
    assert rec.status() == "active"  # valid through the end of the day it names (UTC)
    later = datetime.now(UTC) + timedelta(days=2)
    out = C.match(db, read_image(portraits[0]), at=later, backend=backend)
    assert (out.status, out.consent_id) == ("expired", rec.id) and today.isoformat() in out.reason
    assert C.measurement(out).value == 0.0
    assert C.match(db, read_image(portraits[0]), backend=backend).status == "matched"  # today it still holds


def test_a_revoked_consent_refuses_and_a_new_active_one_wins(db, portraits, evidence, backend):
    rec = _add(db, portraits[0], evidence, backend)
    revoked = C.revoke(db, rec.id, "ops", "withdrawn by e-mail")
    assert revoked.status() == "revoked" and revoked.revoked_by == "ops"
    out = C.match(db, read_image(portraits[0]), backend=backend)
    assert (out.status, out.consent_id) == ("revoked", rec.id)
    renewed = _add(db, portraits[0], evidence, backend)
    out = C.match(db, read_image(portraits[0]), backend=backend)
    assert (out.status, out.consent_id) == ("matched", renewed.id)


def test_a_deleted_consent_never_matches(db, portraits, evidence, backend):
    rec = _add(db, portraits[0], evidence, backend)
    C.delete(db, rec.id, "dpo")
    out = C.match(db, read_image(portraits[0]), backend=backend)
    assert out.status == "no_record" and "1 consent records" in out.reason and out.consent_id is None
    _add(db, portraits[1], evidence, backend)
    assert C.match(db, read_image(portraits[0]), backend=backend).status == "no_match"


def test_a_reference_without_a_face_is_not_measured(db, portraits, evidence, backend):
    _add(db, portraits[0], evidence, backend)
    grey = np.full((256, 256, 3), 128, np.uint8)
    out = C.match(db, grey, backend=backend)
    assert out.status == "no_face" and "reference portrait" in out.reason
    m = C.measurement(out)
    assert m.value is None and m.reason.startswith("not measured") and not m.measured


def test_the_outputs_faces_must_be_the_consented_person_too(db, portraits, evidence, backend, speaker_clip):
    rec = _add(db, portraits[0], evidence, backend)
    ref = read_image(portraits[0])
    own = backend.embed_frames(np.stack([ref, ref[:, ::-1].copy()]))  # frames that show the consented face
    out = C.match(db, ref, output_embeddings=own, backend=backend)
    assert out.status == "matched" and out.output_similarity > 0.99
    frames = np.stack(list(iter_frames(speaker_clip, max_frames=25)))[::3]  # another man's face
    other = backend.embed_frames(frames)
    assert sum(e is not None for e in other) >= 3  # measured 6 of 9
    out = C.match(db, ref, output_embeddings=other, backend=backend)
    assert (out.status, out.consent_id) == ("no_match", rec.id) and "output" in out.reason
    assert out.output_similarity < FACENET_THRESHOLD.value  # measured 0.18
    out = C.match(db, ref, output_embeddings=[None, None], backend=backend)
    assert out.status == "no_face" and "output" in out.reason


# --- the records, the ledger rows, erasure -------------------------------------------------------------------------


def test_add_stores_hashes_and_the_embedding_and_the_ledger_row_holds_nothing_personal(
    db, portraits, evidence, backend
):
    rec = _add(db, portraits[0], evidence, backend, expires=date(2099, 12, 31))
    assert C.CONSENT_ID.fullmatch(rec.id)
    assert rec.evidence_sha256 == hashlib.sha256(evidence.read_bytes()).hexdigest()
    assert rec.portrait_sha256 == hashlib.sha256(portraits[0].read_bytes()).hexdigest()
    assert (rec.name, rec.scope, rec.evidence_name, rec.expires_at) == (NAME, SCOPE, evidence.name, "2099-12-31")
    (row,) = _raw(db, "SELECT * FROM consents")
    stored = json.loads(row["embedding"])
    expected = backend.embed_image(read_image(portraits[0]))
    assert len(stored) == 512 and np.allclose(stored, expected, rtol=0, atol=1e-12)  # the float64 values, exactly
    assert row["backend"] == "facenet" and row["created_by"] == "ops" and row["deleted_at"] is None

    (lrow,) = Ledger(db).rows(kind="consent")
    assert (lrow.kind, lrow.decision, lrow.actor, lrow.run_id) == ("consent", "add", "ops", "")
    assert json.loads(lrow.record_json) == {
        "action": "add",
        "consent_id": rec.id,
        "evidence_sha256": rec.evidence_sha256,
        "expires_at": "2099-12-31",
        "backend": "facenet",
    }
    _assert_nothing_personal_in_the_ledger(db, stored)
    assert Ledger(db).verify().ok


def _assert_nothing_personal_in_the_ledger(db, embedding: list[float]) -> None:
    text = json.dumps(_raw(db, "SELECT * FROM ledger"), default=str)
    for secret in (NAME, "Zo", SCOPE, "signed-consent-form", repr(embedding[0]), repr(embedding[-1])):
        assert secret not in text, secret


def test_list_revoke_delete_each_a_ledger_row_and_delete_erases_the_personal_fields(db, portraits, evidence, backend):
    a = _add(db, portraits[0], evidence, backend)
    b = _add(db, portraits[1], evidence, backend, expires=datetime.now(UTC).date())
    embedding = json.loads(_raw(db, "SELECT embedding FROM consents WHERE id = '" + a.id + "'")[0]["embedding"])
    assert [r.id for r in C.list_records(db)] == [a.id, b.id]
    later = datetime.now(UTC) + timedelta(days=3)
    assert [r.status(later) for r in C.list_records(db)] == ["active", "expired"]
    assert [r.id for r in C.list_records(db, later, include_all=False)] == [a.id]

    C.revoke(db, a.id, "ops", "withdrawn")
    gone = C.delete(db, a.id, "dpo")
    assert gone.status() == "deleted" and (gone.name, gone.scope, gone.evidence_name, gone.portrait_sha256) == (
        None,
        None,
        None,
        None,
    )
    (row,) = _raw(db, f"SELECT * FROM consents WHERE id = '{a.id}'")
    assert {k: row[k] for k in ("name", "scope", "evidence_name", "portrait_sha256", "embedding", "revoke_reason")} == {
        k: None for k in ("name", "scope", "evidence_name", "portrait_sha256", "embedding", "revoke_reason")
    }
    assert row["evidence_sha256"] == a.evidence_sha256 and row["deleted_at"] is not None  # the tombstone
    assert C.get(db, a.id).status() == "deleted"  # the id in an old record still resolves

    rows = Ledger(db).rows(kind="consent")
    assert [(r.decision, json.loads(r.record_json)["consent_id"], r.actor) for r in rows] == [
        ("add", a.id, "ops"),
        ("add", b.id, "ops"),
        ("revoke", a.id, "ops"),
        ("delete", a.id, "dpo"),
    ]
    _assert_nothing_personal_in_the_ledger(db, embedding)
    assert "withdrawn" not in json.dumps(_raw(db, "SELECT * FROM ledger"), default=str)
    assert Ledger(db).verify().ok


def test_to_dict_leaves_out_the_personal_fields_unless_asked(db, portraits, evidence, backend):
    rec = _add(db, portraits[0], evidence, backend)
    plain = rec.to_dict()
    assert plain["id"] == rec.id and plain["status"] == "active" and "name" not in plain and "scope" not in plain
    assert NAME not in json.dumps(plain) and "embedding" not in json.dumps(plain)
    assert rec.to_dict(personal=True)["name"] == NAME
    out = C.match(db, read_image(portraits[0]), backend=backend).to_dict()
    assert set(out) == {"status", "consent_id", "similarity", "threshold", "backend", "output_similarity", "reason"}
    assert NAME not in json.dumps(out)


def test_changes_to_unknown_or_finished_records_are_refused(db, portraits, evidence, backend):
    rec = _add(db, portraits[0], evidence, backend)
    with pytest.raises(NotFound):
        C.revoke(db, "cns-000000000000", "ops")
    with pytest.raises(BadDecision, match="cns-<12 hex digits>"):
        C.delete(db, "not-an-id", "ops")
    C.revoke(db, rec.id, "ops")
    with pytest.raises(Conflict, match="revoked already"):
        C.revoke(db, rec.id, "ops")
    C.delete(db, rec.id, "ops")
    with pytest.raises(Conflict, match="deleted already"):
        C.delete(db, rec.id, "ops")
    with pytest.raises(Conflict, match="is deleted"):
        C.revoke(db, rec.id, "ops")
    assert [r.decision for r in Ledger(db).rows(kind="consent")] == ["add", "revoke", "delete"]  # no row for refusals


# --- bad inputs ----------------------------------------------------------------------------------------------------


def test_a_portrait_without_a_face_is_an_input_error_naming_the_file(db, tmp_path, evidence, backend):
    from PIL import Image

    blank = tmp_path / "wall.png"
    Image.fromarray(np.full((256, 256, 3), 200, np.uint8)).save(blank)
    with pytest.raises(InputError) as exc:
        _add(db, blank, evidence, backend)
    assert str(blank) in str(exc.value) and "face" in str(exc.value) and exc.value.exit_code == ExitCode.INPUT
    assert _raw(db, "SELECT id FROM consents") == [] and Ledger(db).rows(kind="consent") == []


def test_the_evidence_must_be_an_existing_non_empty_regular_file(db, tmp_path, portraits, backend):
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    for path, rule in ((tmp_path / "missing.pdf", "must exist"), (tmp_path, "regular file"), (empty, "not be empty")):
        with pytest.raises(InputError) as exc:
            _add(db, portraits[0], path, backend)
        assert str(path) in str(exc.value) and rule in str(exc.value)
    assert _raw(db, "SELECT id FROM consents") == []


def test_bad_names_scopes_and_past_expiry_are_refused_without_echoing_the_text(db, portraits, evidence, backend):
    for kw, subject in (
        ({"name": "  "}, "--name"),
        ({"name": "Ann\x1b[31m"}, "--name"),
        ({"name": "x" * 201}, "--name"),
        ({"scope": "a\nb"}, "--scope"),
        ({"expires": datetime.now(UTC).date() - timedelta(days=1)}, "--expires"),
    ):
        with pytest.raises(BadDecision) as exc:
            _add(db, portraits[0], evidence, backend, **kw)
        assert str(exc.value).startswith(subject) and "Ann" not in str(exc.value)
    assert _raw(db, "SELECT id FROM consents") == []


def test_consent_refused_exits_1_with_the_reason():
    out = C.ConsentOutcome("revoked", "cns-0123456789ab", 0.99, 0.4592, "facenet", None, "record cns-0123456789ab")
    err = C.ConsentRefused.from_outcome(out)
    assert err.exit_code == ExitCode.GATE_FAILED == 1 and "cns-0123456789ab" in str(err)


def test_a_schema_2_database_has_no_records_until_the_first_add_migrates_it(tmp_path, portraits, evidence, backend):
    import sqlite3
    from contextlib import closing

    path = tmp_path / "old.sqlite"
    Database.open(path, create=True)
    with closing(sqlite3.connect(path)) as con:  # back to schema version 2: no consents table
        con.execute("DROP TABLE consents")
        con.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
        con.commit()
    old = Database.open(path)
    assert C.list_records(old) == [] and C.match(old, read_image(portraits[0]), backend=backend).status == "no_record"
    with pytest.raises(NotFound):
        C.get(old, "cns-0123456789ab")
    assert old.layout == 2  # reading wrote nothing
    rec = _add(old, portraits[0], evidence, backend)
    assert old.layout == 3 and [r.id for r in C.list_records(Database.open(path))] == [rec.id]


# --- the command line (through gate.cli.main, as a user runs it) ---------------------------------------------------


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """``run(argv) -> (exit code, stdout, stderr)`` through ``gate.cli.main`` with ``consent`` registered."""
    import gate.cli
    from gate.cli_consent import consent_app

    if not any(g.name == "consent" for g in gate.cli.app.registered_groups):  # until gate.cli registers it itself
        gate.cli.app.add_typer(consent_app, name="consent")
    for var in ("HALLO3_GATE_DB", "HALLO3_GATE_LEDGER", "HALLO3_GATE_USER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HALLO3_GATE_DEBUG", "0")

    def run(argv: list[str]) -> tuple[int, str, str]:
        capsys.readouterr()
        code = gate.cli.main(argv)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_cli_add_list_revoke_delete(cli, tmp_path, portraits, evidence):
    dbf = ["--db", str(tmp_path / "gate.sqlite")]
    add = ["consent", "add", "--name", NAME, "--portrait", str(portraits[0]), "--evidence", str(evidence), *dbf]
    code, out, err = cli([*add, "--scope", SCOPE, "--expires", "2099-01-31", "--actor", "ops"])
    assert code == 0, err
    cid = out.split()[2]
    assert C.CONSENT_ID.fullmatch(cid) and out.strip() == f"added consent {cid} (expires 2099-01-31)"
    assert NAME not in out

    add_other = ["consent", "add", "--name", "Other", "--portrait", str(portraits[1]), "--evidence", str(evidence)]
    code, out, _ = cli([*add_other, "--json", *dbf])
    other = json.loads(out)
    assert code == 0 and other["status"] == "active" and other["expires_at"] is None and "name" not in other

    code, out, _ = cli(["consent", "list", "--json", *dbf])
    listed = json.loads(out)
    assert code == 0 and [(r["id"], r["name"], r["status"]) for r in listed] == [
        (cid, NAME, "active"),
        (other["id"], "Other", "active"),
    ]
    assert all("embedding" not in r for r in listed)

    assert cli(["consent", "revoke", cid, "--reason", "withdrawn", "--actor", "ops", *dbf])[:2] == (
        0,
        f"revoked consent {cid}\n",
    )
    code, out, _ = cli(["consent", "list", "--json", *dbf])
    assert [r["id"] for r in json.loads(out)] == [other["id"]]  # only the active ones by default
    code, out, _ = cli(["consent", "delete", cid, "--actor", "dpo", *dbf])
    assert code == 0 and out.startswith(f"deleted consent {cid}:")
    code, out, _ = cli(["consent", "list", "--all", "--json", *dbf])
    assert [(r["id"], r["status"], r["name"]) for r in json.loads(out)] == [
        (cid, "deleted", None),
        (other["id"], "active", "Other"),
    ]
    code, out, _ = cli(["consent", "list", "--all", *dbf])
    assert code == 0 and "(erased)" in out and "deleted" in out and "Other" in out
    rows = Ledger(str(tmp_path / "gate.sqlite")).rows(kind="consent")
    assert [(r.decision, r.actor) for r in rows] == [
        ("add", "ops"),
        ("add", _os_user()),  # no --actor and no $HALLO3_GATE_USER: the OS user
        ("revoke", "ops"),
        ("delete", "dpo"),
    ]


def _os_user() -> str:
    import getpass

    return getpass.getuser()


def test_cli_prints_a_name_escaped(cli, tmp_path, portraits, evidence):
    dbf = ["--db", str(tmp_path / "gate.sqlite")]
    sly = "Ann \u202egnp.exe"  # a right-to-left override would reorder the line on a terminal
    assert (
        cli(["consent", "add", "--name", sly, "--portrait", str(portraits[0]), "--evidence", str(evidence), *dbf])[0]
        == 0
    )
    code, out, _ = cli(["consent", "list", *dbf])
    assert code == 0 and "\u202e" not in out and "\\u202e" in out


def test_cli_errors_name_the_argument_and_exit_with_their_code(cli, tmp_path, portraits, evidence):
    dbf = ["--db", str(tmp_path / "gate.sqlite")]
    base = ["consent", "add", "--name", "Ann", "--portrait", str(portraits[0]), "--evidence", str(evidence), *dbf]
    code, _, err = cli([*base, "--expires", "31.12.2027"])
    assert code == ExitCode.USAGE and "--expires" in err and "YYYY-MM-DD" in err
    code, _, err = cli([*base, "--expires", "2001-01-01"])
    assert code == ExitCode.USAGE and "--expires" in err and "today or later" in err
    code, _, err = cli(
        [
            "consent",
            "add",
            "--name",
            "Ann",
            "--portrait",
            str(portraits[0]),
            *dbf,
            "--evidence",
            str(tmp_path / "no.pdf"),
        ]
    )
    assert code == ExitCode.INPUT and "no.pdf" in err and "evidence file must exist" in err
    from PIL import Image

    Image.fromarray(np.full((200, 200, 3), 90, np.uint8)).save(tmp_path / "wall.jpg")
    code, _, err = cli(
        ["consent", "add", "--name", "Ann", "--portrait", str(tmp_path / "wall.jpg"), "--evidence", str(evidence), *dbf]
    )
    assert code == ExitCode.INPUT and "wall.jpg" in err and "face" in err
    code, _, err = cli(["consent", "revoke", "cns-0123456789ab", *dbf])
    assert code == ExitCode.USAGE and "cns-0123456789ab" in err and "no such consent record" in err
    code, _, err = cli(["consent", "delete", "bogus", *dbf])
    assert code == ExitCode.USAGE and "cns-<12 hex digits>" in err
    code, _, err = cli(["consent", "list", "--db", str(tmp_path / "absent.sqlite")])
    assert code == ExitCode.USAGE and "absent.sqlite" in err
    assert not (tmp_path / "absent.sqlite").exists()
    code, out, _ = cli(["consent", "list", "--json", *dbf])
    assert code == 0 and json.loads(out) == []  # nothing was added by the refused commands
