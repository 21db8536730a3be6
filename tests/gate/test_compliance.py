"""The compliance matrix: each row's rule on evidence built from real provenance objects (a ManifestReport as
c2pa-rs reports a signed gate output, a decoded WatermarkCheck, a parsed AIGC label), and the schema it fills.

Expected statuses and reasons are written out by hand from the rules in ../shared/specs/compliance.md §6."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from gate import compliance as C
from provenance.c2pa import ManifestReport, SoftBinding, ValidationCode
from provenance.disclosure import DISCLOSURE_LABEL, AigcLabel, Disclosure
from provenance.verify import WatermarkCheck
from reports.schema import COMPLIANCE_IDS, ComplianceRow

PAYLOAD = "a1b2c3d4e5f6"
METHOD = "org.hallo3-gate.rivagan-vote.v2"
TRAINED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
DISCLOSURE = Disclosure(
    provider="Example Studios GmbH",
    system="hallo3 (Hallo3 official) / hallo3-gate",
    version="model 3f2a9c01b4de; hallo3-gate 0.9.0",
    created="2026-12-02T10:00:00Z",
    id="urn:uuid:0b0e3c52-5d0c-4c1e-9d39-7d0f3a2b1c11",
)
TRAINING = {"entries": {f"cawg.{k}": {"use": "notAllowed"} for k in ("ai_training", "data_mining")}}
CAWG_CODES = ("cawg.identity.well-formed", "cawg.x509.signature.validated")


def signed_manifest(*, state: str = "Valid", time: str | None = None, **changes) -> ManifestReport:
    """A gate output's manifest as provenance.c2pa.read_manifest reports it (dev signer, no TSA unless ``time``)."""
    assertions = {
        "c2pa.actions.v2": {
            "actions": [
                {"action": "c2pa.created", "digitalSourceType": TRAINED},
                {"action": "c2pa.watermarked.bound", "description": "invisible watermark"},
            ]
        },
        "c2pa.soft-binding": {"alg": METHOD, "blocks": [{"scope": {"timespan": {"start": 0, "end": 4000}}}]},
        "cawg.training-mining": TRAINING,
        "cawg.identity": {
            "signer_payload": {"sig_type": "cawg.x509.cose"},
            "signature_info": {"issuer": "hallo3-gate"},
        },
        DISCLOSURE_LABEL: DISCLOSURE.to_assertion(),
    }
    signature = {"common_name": "hallo3-gate DEVELOPMENT signer", "alg": "Es256"}
    if time is not None:
        signature["time"] = time
    report = ManifestReport(
        path="out.mp4",
        state=state,
        active_label="urn:c2pa:0b0e3c52",
        assertions=assertions,
        signature=signature,
        successes=tuple(ValidationCode(code) for code in CAWG_CODES),
        soft_binding=SoftBinding(alg=METHOD, payload_hex=PAYLOAD, timespan_ms=(0, 4000)),
    )
    return dataclasses.replace(report, **changes)


def decoded(payload: str | None = PAYLOAD) -> WatermarkCheck:
    return WatermarkCheck(payload_hex=payload, confidence=0.97 if payload else 0.51, method=METHOD, frames_decoded=48)


LABEL_OK = {
    "text": "AI-generated",
    "position": "top-right",
    "start_seconds": 3.0,
    "persistent": True,
    "size": 0.06,
    "font": "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "font_sha256": "0" * 64,
    "frames_checked": 100,
    "frames_labelled": 100,
    "first_unlabelled_frame": None,
    "seconds_required": 3.0,
    "seconds_labelled": 4.0,
    "persistent_frames": 25,
    "persistent_labelled": 25,
    "ok": True,
    "reason": None,
}
CONSENT_OK = {
    "status": "matched",
    "consent_id": "cns-0123456789ab",
    "similarity": 0.83,
    "threshold": 0.6,
    "backend": "facenet",
    "output_similarity": 0.79,
    "reason": "matched active consent cns-0123456789ab",
}
LEDGER_RECORD = {
    "ledger": "ledger.sqlite",
    "seq": 7,
    "run_id": "20261202T100000Z-abc",
    "decision": "released",
    "state": "released",
    "record": {"disclosure": DISCLOSURE.to_dict()},
}


def full_evidence(**changes) -> C.Evidence:
    """What the gate sees on a released output under the default offline policy (no TSA configured)."""
    ev = C.Evidence(
        manifest=signed_manifest(),
        watermark=decoded(),
        agreement=True,
        aigc=AigcLabel.for_output(DISCLOSURE, watermark_payload_hex=PAYLOAD),
        label=dict(LABEL_OK),
        label_required=True,
        consent=dict(CONSENT_OK),
        retention_days=365,
        retention_source="default",
        ledger_verified=True,
        ledger_record=LEDGER_RECORD,
        false_positive_bound="an unmarked clip reads as watermarked with probability <= 3.2e-06",
    )
    return dataclasses.replace(ev, **changes)


def rows(ev: C.Evidence) -> dict[str, ComplianceRow]:
    return {row.id: row for row in C.matrix(ev)}


def test_the_requirement_table_the_schema_and_the_rules_name_the_same_rows():
    assert C.ROW_IDS == COMPLIANCE_IDS
    assert tuple(C.RULES) == C.ROW_IDS
    for rule in C.RULES.values():
        assert "Met" in (inspect.getdoc(rule) or ""), f"{rule.__name__} must say what 'met' means"
    out = C.matrix(full_evidence())
    assert [r.id for r in out] == list(C.ROW_IDS)
    assert all(r.requirement == C.requirement(r.id).requirement and r.source for r in out)


def test_a_released_output_meets_the_rows_the_issue_lists():
    got = rows(full_evidence())
    statuses = {rid: row.status for rid, row in got.items()}
    assert statuses == {
        "eu-ai-act-50-2": "met",
        "eu-code-1-1-2-watermark": "met",
        "rfc3161-timestamp": "not_met",
        "ca-sb942-latent": "met",
        "ca-sb942-detection": "met",
        "eu-ai-act-50-4-label": "met",
        "cn-gb45438-explicit": "met",
        "cn-gb45438-implicit": "met",
        "c2pa-watermark-action": "met",
        "c2pa-soft-binding": "not_met",
        "c2pa-manifest-recovery": "met",
        "cawg-identity": "met",
        "cawg-training-mining": "met",
        "cn-art9-retention": "met",
        "consent": "met",
    }
    assert "$HALLO3_GATE_TSA_URL" in got["rfc3161-timestamp"].reason
    soft = got["c2pa-soft-binding"]
    assert METHOD in soft.reason and "softbinding-algorithm-list" in soft.reason
    latent = " ".join(got["ca-sb942-latent"].evidence)
    for value in ("Example Studios GmbH", "hallo3 (Hallo3 official) / hallo3-gate", "2026-12-02T10:00:00Z"):
        assert value in latent
    assert "urn:uuid:0b0e3c52-5d0c-4c1e-9d39-7d0f3a2b1c11" in latent
    assert "ProduceID=urn:uuid:0b0e3c52" in got["cn-gb45438-implicit"].evidence[0]
    assert "c2pa.watermarked.bound" in " ".join(got["c2pa-watermark-action"].evidence)
    assert "0-4000 ms" in " ".join(got["c2pa-watermark-action"].evidence)
    assert "cns-0123456789ab" in got["consent"].evidence[0]
    assert "run 20261202T100000Z-abc" in got["c2pa-manifest-recovery"].evidence[0]
    assert "3.2e-06" in " ".join(got["eu-code-1-1-2-watermark"].evidence)
    assert "365 days" in got["cn-art9-retention"].evidence[0]
    assert "all notAllowed" in got["cawg-training-mining"].evidence[0]


def test_a_time_stamped_signature_meets_the_rfc3161_row():
    stamped = signed_manifest(time="2026-12-02T10:00:03+00:00")
    validated = dataclasses.replace(stamped, successes=(*stamped.successes, ValidationCode("timeStamp.validated")))
    row = rows(full_evidence(manifest=validated))["rfc3161-timestamp"]
    assert row.status == "met" and "2026-12-02T10:00:03+00:00" in row.evidence[-1]
    assert "timeStamp.validated" in row.evidence[-1]
    row = rows(full_evidence(manifest=stamped))["rfc3161-timestamp"]  # a time, but c2pa-rs did not validate it
    assert row.status == "not_met" and row.reason.startswith("the signature's time-stamp did not validate")


MANIFEST_ROWS = (
    "eu-ai-act-50-2",
    "rfc3161-timestamp",
    "ca-sb942-latent",
    "c2pa-watermark-action",
    "c2pa-soft-binding",
    "cawg-identity",
    "cawg-training-mining",
)


def test_a_stripped_copy_loses_the_manifest_rows_but_keeps_watermark_and_recovery():
    stripped = ManifestReport(path="stripped.mp4", state=None)
    got = rows(full_evidence(manifest=stripped, agreement=None))
    for rid in MANIFEST_ROWS:
        assert got[rid].status == "not_met", rid
        assert got[rid].reason.startswith("no manifest: never signed, or stripped"), got[rid].reason
    assert got["eu-code-1-1-2-watermark"].status == "met"
    assert got["c2pa-manifest-recovery"].status == "met"
    assert "recovered through the watermark" in got["c2pa-manifest-recovery"].evidence[-1]
    detection = got["ca-sb942-detection"]
    assert detection.status == "met" and detection.evidence[0] == "answer rests on: watermark, ledger"
    assert "found in the ledger record of run 20261202T100000Z-abc" in detection.evidence[1]


def test_an_invalid_manifest_is_no_evidence():
    bad = signed_manifest(state="Invalid", failures=(ValidationCode("assertion.dataHash.mismatch"),))
    got = rows(full_evidence(manifest=bad, agreement=True))
    for rid in MANIFEST_ROWS:
        assert got[rid].status == "not_met" and got[rid].reason == "manifest Invalid: assertion.dataHash.mismatch"
    assert got["ca-sb942-detection"].evidence[0] == "answer rests on: watermark, ledger"


def test_no_watermark_and_no_ledger_record():
    got = rows(full_evidence(watermark=decoded(None), agreement=None, ledger_record=None))
    assert got["eu-code-1-1-2-watermark"].status == "not_met"
    assert got["eu-code-1-1-2-watermark"].reason.startswith("no watermark decoded from 48 frames")
    assert got["c2pa-manifest-recovery"].reason == "no watermark decoded: nothing to look the record up by"
    assert got["ca-sb942-detection"].status == "met"  # the manifest still carries the disclosure
    got = rows(full_evidence(ledger_record=None))
    assert got["c2pa-manifest-recovery"].status == "not_met" and PAYLOAD in got["c2pa-manifest-recovery"].reason
    nothing = full_evidence(
        manifest=ManifestReport(path="x.mp4", state=None), watermark=decoded(None), agreement=None, ledger_record=None
    )
    assert (
        rows(nothing)["ca-sb942-detection"].reason == "no marking of this system found: no valid manifest, no watermark"
    )


def test_a_watermark_that_disagrees_with_the_soft_binding_is_not_met():
    row = rows(full_evidence(watermark=decoded("ffffffffffff"), agreement=False))["eu-code-1-1-2-watermark"]
    assert row.status == "not_met" and f"{METHOD}:{PAYLOAD}" in row.reason


def test_disclosure_missing_or_malformed():
    plain = signed_manifest()
    no_disclosure = dataclasses.replace(
        plain, assertions={k: v for k, v in plain.assertions.items() if k != DISCLOSURE_LABEL}
    )
    row = rows(full_evidence(manifest=no_disclosure))["ca-sb942-latent"]
    assert row.status == "not_met" and row.reason == f"the manifest carries no disclosure assertion {DISCLOSURE_LABEL}"
    broken = {**DISCLOSURE.to_assertion(), "provider": ""}
    malformed = dataclasses.replace(plain, assertions={**plain.assertions, DISCLOSURE_LABEL: broken})
    row = rows(full_evidence(manifest=malformed))["ca-sb942-latent"]
    assert row.status == "not_met" and "malformed" in row.reason and "disclosure.provider" in row.reason


def test_actions_and_soft_binding_shape():
    plain = signed_manifest()
    photo = {
        "actions": [
            {
                "action": "c2pa.created",
                "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture",
            }
        ]
    }
    m = dataclasses.replace(plain, assertions={**plain.assertions, "c2pa.actions.v2": photo})
    got = rows(full_evidence(manifest=m))
    assert (
        got["eu-ai-act-50-2"].reason == "c2pa.created has digitalSourceType digitalCapture, not trainedAlgorithmicMedia"
    )
    assert (
        got["c2pa-watermark-action"].status == "not_met"
        and "no watermark action" in got["c2pa-watermark-action"].reason
    )
    no_span = dataclasses.replace(plain, soft_binding=SoftBinding(alg=METHOD, payload_hex=PAYLOAD))
    row = rows(full_evidence(manifest=no_span))["c2pa-watermark-action"]
    assert row.status == "not_met" and "no timespan scope" in row.reason
    listed = dataclasses.replace(plain, soft_binding=SoftBinding("com.digimarc.validate.1", PAYLOAD, (0, 4000)))
    assert rows(full_evidence(manifest=listed, agreement=None))["c2pa-soft-binding"].status == "met"


def test_cawg_identity_absent_or_not_validated():
    plain = signed_manifest()
    none = dataclasses.replace(plain, assertions={k: v for k, v in plain.assertions.items() if k != "cawg.identity"})
    row = rows(full_evidence(manifest=none))["cawg-identity"]
    assert row.status == "not_met" and "no cawg.identity assertion" in row.reason
    unvalidated = dataclasses.replace(plain, successes=(ValidationCode("cawg.identity.well-formed"),))
    row = rows(full_evidence(manifest=unvalidated))["cawg-identity"]
    assert row.status == "not_met" and row.reason.startswith("cawg.identity signature not validated")


def test_training_mining_missing_or_invalid_use():
    plain = signed_manifest()
    none = dataclasses.replace(plain, assertions={k: v for k, v in plain.assertions.items() if "training" not in k})
    assert (
        "no cawg.training-mining or c2pa.training-mining"
        in rows(full_evidence(manifest=none))["cawg-training-mining"].reason
    )
    odd = {"entries": {"cawg.ai_training": {"use": "maybe"}}}
    m = dataclasses.replace(plain, assertions={**plain.assertions, "cawg.training-mining": odd})
    row = rows(full_evidence(manifest=m))["cawg-training-mining"]
    assert row.status == "not_met" and "cawg.ai_training" in row.reason


def test_visible_label_rows():
    got = rows(full_evidence(label=None, label_required=False))
    for rid in ("eu-ai-act-50-4-label", "cn-gb45438-explicit"):
        assert got[rid].status == "not_met" and got[rid].reason == "the policy burns no visible label"
    got = rows(full_evidence(label=None, label_required=True))
    assert got["eu-ai-act-50-4-label"].status == "not_checked"
    got = rows(full_evidence(label=None, label_required=None))
    assert (
        got["cn-gb45438-explicit"].status == "not_checked"
        and "no visible-label spec" in got["cn-gb45438-explicit"].reason
    )
    failed = {
        **LABEL_OK,
        "ok": False,
        "frames_labelled": 25,
        "seconds_labelled": 1.0,
        "reason": "frame 25 carries no label",
    }
    got = rows(full_evidence(label=failed))
    assert got["eu-ai-act-50-4-label"].reason == "visible label check failed: frame 25 carries no label"
    assert got["cn-gb45438-explicit"].status == "not_met"
    short_clip = {**LABEL_OK, "seconds_required": 1.5, "seconds_labelled": 1.5}  # ok: the whole 1.5 s clip is labelled
    got = rows(full_evidence(label=short_clip))
    assert got["eu-ai-act-50-4-label"].status == "met"
    assert got["cn-gb45438-explicit"].reason == "label shown 1.5 s from the start, less than 2 s"
    exactly_two = {**LABEL_OK, "seconds_labelled": 50 / 25}
    assert rows(full_evidence(label=exactly_two))["cn-gb45438-explicit"].status == "met"
    small = {**LABEL_OK, "size": 0.04}
    assert (
        rows(full_evidence(label=small))["cn-gb45438-explicit"].reason
        == "label text height 0.04 of the short side, less than 0.05"
    )
    nested = {
        "spec": {k: LABEL_OK[k] for k in ("text", "position", "size")},
        **{k: v for k, v in LABEL_OK.items() if k not in ("text", "position", "size")},
    }
    assert "'AI-generated' at top-right" in rows(full_evidence(label=nested))["eu-ai-act-50-4-label"].evidence[0]


def test_aigc_rows():
    got = rows(full_evidence(aigc=None))
    assert got["cn-gb45438-implicit"].reason == "the file carries no AIGC metadata tag"
    got = rows(full_evidence(aigc=None, aigc_error="AIGC.ContentProducer: must not be empty"))
    assert got["cn-gb45438-implicit"].reason == "AIGC metadata tag invalid: AIGC.ContentProducer: must not be empty"
    maybe = dataclasses.replace(AigcLabel.for_output(DISCLOSURE, watermark_payload_hex=PAYLOAD), label="2")
    assert rows(full_evidence(aigc=maybe))["cn-gb45438-implicit"].reason == "AIGC Label is '2', not '1' (AI-generated)"


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("no_record", "no consent record for this person"),
        ("no_match", "no active consent matches the reference face"),
        ("expired", "consent cns-0123456789ab expired on 2026-01-01"),
        ("revoked", "consent cns-0123456789ab was revoked"),
        ("no_face", "no face in the reference portrait"),
    ],
)
def test_consent_not_matched_is_not_met_with_its_reason(status, reason):
    row = rows(full_evidence(consent={**CONSENT_OK, "status": status, "reason": reason}))["consent"]
    assert row.status == "not_met" and row.reason == reason


def test_consent_unchecked_or_revoked_since():
    assert rows(full_evidence(consent=None))["consent"].status == "not_checked"
    row = rows(full_evidence(consent={**CONSENT_OK, "status_now": "revoked"}))["consent"]
    assert row.status == "not_met" and row.reason.endswith("but the record is revoked now")
    row = rows(full_evidence(consent={**CONSENT_OK, "status_now": "active"}))["consent"]
    assert row.status == "met" and row.evidence[-1] == "consent record cns-0123456789ab is still active"


def test_retention_rows():
    assert (
        rows(full_evidence(retention_days=90))["cn-art9-retention"].reason
        == "retention 90 days is less than 183 (six months)"
    )
    assert rows(full_evidence(ledger_verified=False))["cn-art9-retention"].status == "not_met"
    assert rows(full_evidence(ledger_verified=None))["cn-art9-retention"].status == "not_checked"
    assert rows(full_evidence(retention_days=None))["cn-art9-retention"].status == "not_checked"
    assert rows(full_evidence(retention_days=183))["cn-art9-retention"].status == "met"


def test_unmet_lists_the_required_rows_that_block_a_release():
    required = ("eu-ai-act-50-2", "consent", "cn-gb45438-explicit")
    out = C.matrix(full_evidence(label=None, label_required=False))
    assert [r.id for r in C.unmet(out, required)] == ["cn-gb45438-explicit"]
    assert C.unmet(C.matrix(full_evidence()), required) == []


def test_the_false_positive_bound_is_stated_only_for_this_projects_watermark():
    text = C.false_positive_bound(METHOD)
    assert text is not None and "3.2e-06" in text
    assert C.false_positive_bound("com.digimarc.validate.1") is None


def test_a_gate_runs_own_record_says_its_ledger_row_is_still_to_come():
    pending = full_evidence(ledger_record={"run_id": "20261202T100000Z-abc", "seq": None})
    got = rows(pending)
    recovery = got["c2pa-manifest-recovery"]
    assert recovery.status == "not_checked" and "appended after this record is written" in recovery.reason
    assert got["ca-sb942-detection"].evidence[0] == "answer rests on: c2pa_manifest, watermark"


def test_record_fields_fill_a_valid_1_3_record():
    from reports.schema import GateRecord
    from tests.reports.conftest import build_record_dict as record_dict

    ev = full_evidence(consent={**CONSENT_OK, "name": "Jane Doe"}, label={**LABEL_OK, "worst_contrast": 80.0})
    parts = C.record_fields(ev)
    assert parts["disclosure"].model_dump() == DISCLOSURE.to_dict()
    assert parts["consent"].consent_id == "cns-0123456789ab" and "name" not in parts["consent"].model_dump()
    assert parts["label"].ok and parts["label"].worst_contrast == 80.0
    data = record_dict("released", compliance=True)
    data.update({k: v.model_dump(mode="json") if hasattr(v, "model_dump") else v for k, v in parts.items()})
    data["compliance"] = [row.model_dump(mode="json") for row in parts["compliance"]]
    record = GateRecord.model_validate(data)
    assert [r.id for r in record.compliance] == list(C.ROW_IDS) and record.consent.status == "matched"
    stripped = C.record_fields(full_evidence(manifest=ManifestReport(path="x.mp4", state=None), label=None))
    assert stripped["disclosure"] is None and stripped["label"] is None
    unchecked = C.record_fields(full_evidence(label={"checked": False, "reason": "font missing"}))
    assert unchecked["label"] is None
    assert rows(full_evidence(label={"checked": False, "reason": "font missing"}))["cn-gb45438-explicit"].reason == (
        "font missing"
    )
