"""gate.detect: what a detection answer rests on, the run's state from its ledger events, and no personal data.

The video is real: watermarked, encoded and signed by ``gate.stamp.stamp`` with the development keys (what the gate
does to every output), its ingredients named after a person. The ledger rows are those the gate and the review write
(kinds run / approve / reject / release, who and their role), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gate import media
from gate.database import Database
from gate.detect import BASIS_ORDER, Feedback, detect, record_feedback
from gate.ledger import Ledger
from gate.stamp import stamp
from provenance.keys import DEV_ROOT_CERT, SignerConfig, init_dev_keys, load_signer
from reports.errors import InputError
from tests.databases import db_url, pg_db_url, postgres_url  # noqa: F401
from tests.reports.conftest import build_record_dict
from tests.wav import write_wav

FRAMES, SIZE, FPS = 48, 288, 25.0
SUBMITTER, APPROVER_1, APPROVER_2, REJECTER = "alice-submitter", "bob-approver", "carol-approver", "dave-reviewer"
PROMPT = "Zelda Quixote reads the secret quarterly numbers aloud"
PORTRAIT_NAME, SPEECH_NAME = "zelda-quixote-portrait.png", "zelda-quixote-voice.wav"
T_RUN, T_APPROVE, T_RELEASE = "2026-12-01T10:00:00+00:00", "2026-12-01T11:00:00+00:00", "2026-12-01T12:30:00+00:00"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("detect")


@pytest.fixture(scope="module")
def keys_dir(work) -> Path:
    return init_dev_keys(work / "keys").directory


@pytest.fixture(scope="module")
def root_pem(keys_dir) -> bytes:
    return (keys_dir / DEV_ROOT_CERT).read_bytes()


@pytest.fixture(scope="module")
def clip(work, portraits) -> dict[str, Path]:
    """An unmarked talking-portrait clip (a slow pan over a real portrait) and its ingredients, named after a person."""
    face = np.asarray(Image.open(portraits[0]).convert("RGB").resize((SIZE + 32, SIZE + 32)))
    frames = np.stack([face[(t // 2) % 16 :][:SIZE, t % 16 :][:, :SIZE] for t in range(FRAMES)])
    audio = (0.2 * np.sin(np.arange(int(16000 * FRAMES / FPS)) * 0.05)).astype(np.float32)
    inputs = work / "inputs-of-alice"
    inputs.mkdir()
    Image.fromarray(frames[0]).save(inputs / PORTRAIT_NAME)
    return {
        "video": media.write_mp4(work / "clean-never-seen.mp4", frames, FPS, audio, 16000),
        "portrait": inputs / PORTRAIT_NAME,
        "speech": write_wav(inputs / SPEECH_NAME, audio, 16000),
    }


@pytest.fixture(scope="module")
def marked(work, keys_dir, clip) -> tuple[Path, str]:
    """The clip watermarked and signed as the gate does it; (path, payload hex)."""
    out = work / "released-by-alice" / "video.mp4"
    out.parent.mkdir()
    signer = load_signer(SignerConfig.development_keys(keys_dir))
    result = stamp(clip["video"], out, portrait=clip["portrait"], audio=clip["speech"], signer=signer)
    return out, result.payload_hex


def _record(run_id: str, payload: str, clip: dict[str, Path], out: Path) -> str:
    rec = build_record_dict("released", model="hallo3")
    rec["run_id"] = run_id
    rec["inputs"]["portrait"]["path"] = str(clip["portrait"])
    rec["inputs"]["audio"]["path"] = str(clip["speech"])
    rec["inputs"]["prompt"] = PROMPT
    rec["output"]["path"] = str(out)
    rec["output"]["staging_path"] = str(out.parent / "staging" / "video.mp4")
    rec["watermark"]["payload"] = payload
    rec["environment"]["hallo3_gate"] = "0.1.0"
    return json.dumps(rec)


def _row(ledger: Ledger, run_id: str, kind: str, decision: str, at: str, actor: str, role: str, **extra) -> None:
    ledger.append(
        run_id=run_id, created_at=at, decision=decision, kind=kind, actor=actor, role=role,
        output_path=extra.pop("output_path", ""), output_sha256=extra.pop("output_sha256", ""),
        payload_hex=extra.pop("payload_hex", None), record_json=extra.pop("record_json", json.dumps({"kind": kind})),
        **extra,
    )  # fmt: skip


def _gate_run(ledger: Ledger, run_id: str, decision: str, marked, clip) -> None:
    """The gate's own row for a run: who submitted it, the output, its payload, its full record."""
    out, payload = marked
    _row(ledger, run_id, "run", decision, T_RUN, SUBMITTER, "submitter", output_path=str(out),
         output_sha256="ab" * 32, payload_hex=payload, record_json=_record(run_id, payload, clip, out))  # fmt: skip


def _released_through_review(ledger: Ledger, run_id: str, marked, clip) -> None:
    _gate_run(ledger, run_id, "pending", marked, clip)
    _row(ledger, run_id, "approve", "pending", T_APPROVE, APPROVER_1, "approver", reason="meets-policy",
         comment=f"checked by {APPROVER_1} against {PORTRAIT_NAME}")  # fmt: skip
    _row(ledger, run_id, "approve", "pending", T_RELEASE, APPROVER_2, "approver", reason="meets-policy")
    _row(ledger, run_id, "release", "released", T_RELEASE, APPROVER_2, "approver")


def _assert_no_personal_data(result, clip, marked) -> None:
    text = result.to_json()
    out, _ = marked
    forbidden = [SUBMITTER, APPROVER_1, APPROVER_2, REJECTER, "alice", "bob", "carol", "dave", PROMPT, "Zelda",
                 "zelda", PORTRAIT_NAME, SPEECH_NAME, str(clip["portrait"]), str(clip["speech"]), str(out),
                 str(out.parent), "inputs-of-alice", "released-by-alice", "/tmp", "meets-policy"]  # fmt: skip
    leaked = [word for word in forbidden if word in text]
    assert not leaked, f"personal data in the detection answer: {leaked}\n{text}"


# --- the four files of the issue -------------------------------------------------------------------------------------


def test_a_released_file_rests_on_all_three_and_names_its_run(db_url, marked, clip, root_pem):  # noqa: F811
    ledger = Ledger(db_url, create=True)
    ledger.append(run_id="", created_at=T_RUN, decision="add", kind="user", actor="root", role="admin",
                  output_path="", output_sha256="", payload_hex=None, record_json='{"user": "bob-approver"}')  # fmt: skip
    _released_through_review(ledger, "20261201T100000Z-released", marked, clip)
    result = detect(marked[0], Database.open(db_url), trust_anchors_pem=root_pem)
    assert result.basis == ["c2pa_manifest", "watermark", "ledger"]
    assert result.generated_by_this_system is True and result.ledger.chain == "verified"
    # the claim signer is trusted; the dev CA is not on a CAWG trust list, so c2pa-rs says Valid for that one failure
    assert result.manifest.present and result.manifest.state == "Valid" and result.manifest.signer_trusted
    assert result.manifest.validation_failures == ["cawg.x509.credential.untrusted"]
    assert result.manifest.signer_organisation == "hallo3-gate DEVELOPMENT - not for production"
    assert result.manifest.claim_generator.startswith("hallo3-gate ")
    assert result.watermark.detected and result.watermark.payload_hex == marked[1] and result.agreement is True
    assert 0.9 <= result.watermark.confidence <= 1 and 0.9 <= result.watermark.bit_accuracy <= 1  # a clean decode
    run = result.run
    assert (run.run_id, run.state, run.decided_at) == ("20261201T100000Z-released", "released", T_RELEASE)
    assert run.model == {"backend": "hallo3", "model_name": "hallo3-tiny"} and run.system_version == "0.1.0"
    assert json.loads(result.to_json())["basis"] == result.basis
    _assert_no_personal_data(result, clip, marked)


def test_a_manifest_stripped_copy_still_rests_on_watermark_and_ledger(tmp_path, marked, clip, root_pem):
    ledger = Ledger(tmp_path / "gate.sqlite", create=True)
    _released_through_review(ledger, "20261201T100000Z-stripped", marked, clip)
    stripped = media.remux(marked[0], tmp_path / "leaked-copy.mp4")  # a stream copy: the manifest is gone
    result = detect(stripped, tmp_path / "gate.sqlite", trust_anchors_pem=root_pem)
    assert result.basis == ["watermark", "ledger"]
    assert not result.manifest.present and result.manifest.state is None and result.agreement is None
    assert result.watermark.payload_hex == marked[1] and result.generated_by_this_system is True
    assert result.run.state == "released" and result.run.run_id == "20261201T100000Z-stripped"
    _assert_no_personal_data(result, clip, marked)


@pytest.mark.parametrize("how", ["rejected in review", "failed the gate's checks"])
def test_a_quarantined_file_says_quarantined_and_when(how, tmp_path, marked, clip):
    ledger = Ledger(tmp_path / "gate.sqlite", create=True)
    run_id = "20261201T100000Z-quarantined"
    if how == "rejected in review":
        _gate_run(ledger, run_id, "pending", marked, clip)
        _row(ledger, run_id, "reject", "quarantined", T_RELEASE, REJECTER, "reviewer", reason="identity-mismatch",
             comment=f"{REJECTER}: not {PORTRAIT_NAME}")  # fmt: skip
    else:
        _gate_run(ledger, run_id, "quarantined", marked, clip)
    result = detect(marked[0], tmp_path / "gate.sqlite")
    assert result.basis == ["c2pa_manifest", "watermark", "ledger"]  # Valid (untrusted dev signer) still validates
    assert result.manifest.state == "Valid" and "signingCredential.untrusted" in result.manifest.validation_failures
    expected_time = T_RELEASE if how == "rejected in review" else T_RUN
    assert (result.run.state, result.run.decided_at) == ("quarantined", expected_time)
    assert result.generated_by_this_system is True  # made here, even though it was never released
    _assert_no_personal_data(result, clip, marked)


def test_a_pending_run_is_pending_with_no_decision_time(tmp_path, marked, clip):
    ledger = Ledger(tmp_path / "gate.sqlite", create=True)
    _gate_run(ledger, "20261201T100000Z-pending", "pending", marked, clip)
    _row(ledger, "20261201T100000Z-pending", "approve", "pending", T_APPROVE, APPROVER_1, "approver",
         reason="meets-policy")  # fmt: skip
    result = detect(marked[0], tmp_path / "gate.sqlite")
    assert (result.run.state, result.run.decided_at) == ("pending", None)


def test_a_clean_video_never_seen_rests_on_nothing(tmp_path, clip, marked):
    ledger = Ledger(tmp_path / "gate.sqlite", create=True)
    _released_through_review(ledger, "20261201T100000Z-other", marked, clip)
    result = detect(clip["video"], tmp_path / "gate.sqlite")
    assert result.basis == [] and result.generated_by_this_system is False and result.run is None
    assert not result.manifest.present and not result.watermark.detected and result.watermark.payload_hex is None
    assert result.ledger.chain == "not-consulted"  # no payload: nothing to look up
    assert "no marking of this system found" in result.summary


# --- what the ledger may and may not claim ---------------------------------------------------------------------------


def test_a_payload_the_ledger_does_not_know_is_marked_but_unconfirmed(tmp_path, marked):
    Ledger(tmp_path / "gate.sqlite", create=True)
    result = detect(marked[0], tmp_path / "gate.sqlite")
    assert result.basis == ["c2pa_manifest", "watermark"] and result.ledger.chain == "no-record"
    assert result.generated_by_this_system is None and result.run is None


def test_no_ledger_file_is_never_created_by_a_detection(tmp_path, marked):
    missing = tmp_path / "nothing-here.sqlite"
    result = detect(marked[0], missing)
    assert result.ledger.chain == "no-ledger" and not missing.exists()


def test_a_broken_chain_is_said_so_and_its_record_not_used(tmp_path, marked, clip):
    path = tmp_path / "gate.sqlite"
    _released_through_review(Ledger(path, create=True), "20261201T100000Z-tampered", marked, clip)
    with sqlite3.connect(path) as con:  # someone rewrites history: the reject becomes a release
        con.execute("UPDATE ledger SET actor = 'mallory' WHERE kind = 'release'")
    result = detect(marked[0], path)
    assert result.ledger.chain == "broken" and "row_hash" in result.ledger.problem
    assert result.run is None and "ledger" not in result.basis and result.generated_by_this_system is None
    assert any("hash chain does not verify" in n for n in result.notes)


def test_basis_keeps_its_documented_order():
    assert BASIS_ORDER == ("c2pa_manifest", "watermark", "ledger")


def test_not_a_video_is_an_input_error(tmp_path):
    bogus = tmp_path / "upload.mp4"
    bogus.write_bytes(b"this is a text file, not a video\n" * 20)
    with pytest.raises(InputError):
        detect(bogus, None)


# --- feedback --------------------------------------------------------------------------------------------------------


def test_feedback_is_stored_on_both_backends(db_url):  # noqa: F811
    db = Database.open(db_url, create=True)
    first = record_feedback(db, Feedback(verdict="incorrect", payload_hex="724024f3f760", comment="not mine"))
    second = record_feedback(db, Feedback(verdict="unsure"))
    with db.reading() as tx:
        rows = tx.execute("SELECT id, verdict, payload_hex, comment FROM detect_feedback ORDER BY id")
    assert [r["id"] for r in rows] == [first, second] and first != second
    assert [(r["verdict"], r["payload_hex"], r["comment"]) for r in rows] == [
        ("incorrect", "724024f3f760", "not mine"),
        ("unsure", None, ""),
    ]


@pytest.mark.parametrize(
    "fields",
    [
        {"verdict": "maybe"},
        {"verdict": "correct", "payload_hex": "XYZ"},
        {"verdict": "correct", "payload_hex": "a" * 65},
        {"verdict": "correct", "comment": "x" * 2001},
        {"verdict": "correct", "email": "someone@example.org"},
        {},
    ],
)
def test_feedback_outside_its_rules_is_refused(fields):
    with pytest.raises(ValueError):
        Feedback.model_validate(fields)
