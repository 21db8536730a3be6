"""The audit record: JSON round trip, JSON Schema validity, fail-closed invariants, no drift of the schema file."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from reports.schema import (
    SCHEMA_FILE,
    SCHEMA_VERSION,
    GateRecord,
    LedgerRecord,
    json_schema,
    json_schema_text,
    review_state,
)
from tests.reports.conftest import compliance_parts, compliance_rows

VARIANTS = ["released", "failed", "unmeasured"]


def test_committed_schema_file_matches_the_model():
    assert SCHEMA_FILE.read_text(encoding="utf-8") == json_schema_text(), (
        "reports/schema/gate-record.schema.json is stale: run `python -m reports.schema`"
    )


def test_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(json_schema())


@pytest.mark.parametrize("variant", VARIANTS)
def test_round_trip_and_schema_validation(make_record, variant):
    record = make_record(variant)
    text = record.to_json()
    loaded = json.loads(text)
    jsonschema.Draft202012Validator(json_schema()).validate(loaded)
    again = GateRecord.from_json(text)
    assert again == record
    assert again.to_json() == text
    # the review --json contract
    assert loaded["decision"] == record.decision
    assert loaded["output"]["path"].endswith(".mp4")
    assert loaded["watermark"]["payload"] == record.watermark.payload
    assert isinstance(loaded["checks"], list) and loaded["checks"]
    assert loaded["schema_version"] == record.schema_version


def test_variants_decide_as_expected(make_record):
    assert make_record("released").decision == "released"
    failed = make_record("failed")
    assert (failed.decision, failed.exit_code) == ("quarantined", 1)
    assert any(c.outcome == "fail" for c in failed.checks)
    unmeasured = make_record("unmeasured")
    assert (unmeasured.decision, unmeasured.exit_code) == ("quarantined", 3)
    assert unmeasured.measurement("identity_mean").value is None


def test_free_form_objects_serialise_with_sorted_keys(make_record):
    record = make_record()
    record.generator.config = {"z": 1, "a": {"y": 2, "b": 3}}
    dumped = json.loads(record.to_json())["generator"]["config"]
    assert list(dumped) == ["a", "z"] and list(dumped["a"]) == ["b", "y"]
    assert list(json.loads(record.to_json()))[:5] == ["schema_version", "run_id", "created_at", "mode", "decision"]


def test_a_check_without_a_value_cannot_pass(record_dict):
    data = record_dict("released")
    data["checks"][0]["value"] = None
    with pytest.raises(ValidationError, match="not_measured"):
        GateRecord.model_validate(data)


def test_a_measurement_without_a_value_needs_a_reason(record_dict):
    data = record_dict("released")
    data["measurements"][1]["value"] = None
    with pytest.raises(ValidationError, match="no value and no reason"):
        GateRecord.model_validate(data)


def test_released_requires_every_required_check_to_pass(record_dict):
    data = record_dict("failed")
    data["decision"], data["exit_code"] = "released", 0
    with pytest.raises(ValidationError, match="required checks did not pass"):
        GateRecord.model_validate(data)


def test_quarantine_needs_a_reason_and_a_nonzero_exit_code(record_dict):
    data = record_dict("failed")
    data["reasons"] = []
    with pytest.raises(ValidationError, match="at least one reason"):
        GateRecord.model_validate(data)
    data = record_dict("failed")
    data["exit_code"] = 0
    with pytest.raises(ValidationError, match="exit code 0"):
        GateRecord.model_validate(data)


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        (("created_at",), "2026-11-23T23:19:00", "timezone-aware"),
        (("run_id",), "../escape", "run_id"),
        (("output", "sha256"), "ABC", "pattern"),
        (("watermark", "payload"), "not-hex", "pattern"),
        (("schema_version",), "2.0", "pattern"),
        (("timings", "sign"), -1.0, "non-negative"),
        (("output", "unexpected_field"), 1, "Extra inputs"),
    ],
)
def test_invalid_fields_are_rejected(record_dict, path, value, match):
    data = record_dict("released")
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ValidationError, match=match):
        GateRecord.model_validate(data)


def test_created_at_is_normalised_to_utc(record_dict):
    data = record_dict("released")
    data["created_at"] = "2026-11-24T01:19:00+02:00"
    record = GateRecord.model_validate(data)
    assert record.created_at.utcoffset().total_seconds() == 0
    assert record.created_at.hour == 23


def test_content_digest_ignores_the_ledger_entry_but_not_the_content(make_record):
    record = make_record()
    moved = record.with_ledger(LedgerRecord(seq=99, row_hash="0" * 64))
    assert moved.ledger.seq == 99
    assert moved.content_digest() == record.content_digest()
    changed = record.model_copy(update={"reasons": ["a note"]})
    assert changed.content_digest() != record.content_digest()


def test_series_are_compact_and_keep_gaps(make_record):
    series = make_record().measurement("identity_mean").series
    assert series.values[40] is None
    assert all(v is None or round(v, 5) == v for v in series.values)
    assert series.frame_indices()[:2] == [0, 1]


def test_from_measurement_marks_set_level_metrics():
    from metrics.measurement import Measurement
    from reports.schema import MeasurementRecord

    fvd = MeasurementRecord.from_measurement(Measurement("fvd", 250.0, "I3D", higher_is_better=False))
    assert fvd.scope == "set"
    sync = MeasurementRecord.from_measurement(Measurement.not_measured("sync_c", "syncnet_v2.model missing"))
    assert (sync.scope, sync.value, sync.reason) == ("video", None, "syncnet_v2.model missing")


# --- weights: only verified (or knowingly unpinned) files are recorded; 1.0 records still read --------------------

PIN = "961e8696f888fce4f3f3a6c3d5b3267cf5b343100b238e79b2659bff2c605442"
OTHER = "0" * 63 + "1"


def _weight(**kw) -> dict:
    base = {"name": "syncnet", "path": "/w/syncnet_v2.model", "sha256": PIN, "size": 54_573_114, "licence": "VGG"}
    return {**base, **kw}


def test_new_records_carry_the_current_minor_version(record_dict):
    data = record_dict("released")
    del data["schema_version"]
    data["weights"] = [_weight(pinned_sha256=PIN, status="verified", verified=True)]
    data["compliance"] = compliance_rows()
    assert SCHEMA_VERSION == "1.3"
    assert GateRecord.model_validate(data).schema_version == SCHEMA_VERSION
    assert json_schema()["$comment"].endswith(f"schema version {SCHEMA_VERSION}; generated by reports.schema")


def test_a_1_0_record_without_weight_status_still_reads(record_dict):
    data = record_dict("released")
    assert data["schema_version"] == "1.0" and "status" not in data["weights"][0]
    record = GateRecord.model_validate(data)
    assert record.weights[0].status is None and not record.weights[0].verified
    jsonschema.Draft202012Validator(json_schema()).validate(json.loads(record.to_json()))


@pytest.mark.parametrize(
    ("entry", "status"),
    [
        (_weight(pinned_sha256=PIN, status="verified", verified=True), "verified"),
        (_weight(name="my.ckpt", sha256=OTHER, pinned_sha256=None, status="unpinned", verified=False), "unpinned"),
    ],
)
def test_verified_and_unpinned_weights_round_trip(record_dict, entry, status):
    data = record_dict("released")
    data.update(schema_version=SCHEMA_VERSION, compliance=compliance_rows())
    data["weights"] = [entry]
    record = GateRecord.model_validate(data)
    loaded = json.loads(record.to_json())
    jsonschema.Draft202012Validator(json_schema()).validate(loaded)
    assert loaded["weights"][0]["status"] == status
    assert loaded["weights"][0]["verified"] is (status == "verified")
    assert GateRecord.from_json(record.to_json()) == record


def test_a_1_1_record_states_how_each_weight_was_checked(record_dict):
    data = record_dict("released")
    data.update(schema_version=SCHEMA_VERSION, compliance=compliance_rows())
    with pytest.raises(ValidationError, match="weights syncnet_v2 must state their status"):
        GateRecord.model_validate(data)


@pytest.mark.parametrize(
    ("entry", "match"),
    [  # a file whose hash is not its pin was never loaded, so it can never be recorded as used
        (_weight(sha256=OTHER, pinned_sha256=PIN, status="verified", verified=True), "differs from its pin"),
        (_weight(sha256=OTHER, pinned_sha256=PIN), "differs from its pin"),
        (_weight(status="verified", verified=True), "needs the pinned_sha256"),
        (_weight(pinned_sha256=PIN, status="unpinned"), "'unpinned' but a pinned_sha256"),
        (_weight(pinned_sha256=PIN, status="verified", verified=False), "contradicts status"),
        (_weight(status="unpinned", verified=True), "contradicts status"),
        (_weight(status="mismatch"), "status"),
        (_weight(pinned_sha256="ABC"), "pattern"),
    ],
)
def test_weight_entries_that_claim_more_than_was_checked_are_rejected(record_dict, entry, match):
    data = record_dict("released")
    data["weights"] = [entry]
    with pytest.raises(ValidationError, match=match):
        GateRecord.model_validate(data)


# --- 1.1 records written by the gate before 1.2 still read ----------------------------------------------------------

DATA = Path(__file__).resolve().parent / "data"


@pytest.mark.parametrize("name", ["record-1.1-released.json", "record-1.1-quarantined.json"])
def test_real_1_1_records_still_read_and_validate_against_the_1_2_schema(name):
    text = (DATA / name).read_text(encoding="utf-8")
    raw = json.loads(text)
    assert raw["schema_version"] == "1.1" and "review" not in raw
    jsonschema.Draft202012Validator(json_schema()).validate(raw)
    record = GateRecord.from_json(text)
    assert record.schema_version == "1.1" and record.review is None
    assert record.decision == raw["decision"] and record.ledger.seq == raw["ledger"]["seq"]
    assert json.loads(record.to_json()) == raw  # read and written back: nothing gained, nothing lost


# --- 1.2: human review ----------------------------------------------------------------------------------------------

SUBMIT = {"seq": None, "kind": "run", "actor": "sam", "role": "submitter", "at": "2026-12-01T10:00:00Z"}


def _event(seq: int, kind: str, actor: str, reason: str | None = None, comment: str | None = None) -> dict:
    role = "approver" if kind in ("approve", "release") else "reviewer"
    at = f"2026-12-01T11:{seq:02d}:00+00:00"
    return {"seq": seq, "kind": kind, "actor": actor, "role": role, "reason": reason, "comment": comment, "at": at}


def _review(state: str, *events: dict) -> dict:
    return {
        "required_approvals": 2,
        "four_eyes": True,
        "reason_codes": ["meets-policy", "other"],
        "submitted_by": "sam",
        "state": state,
        "events": [SUBMIT, *events],
    }


def _pending(record_dict) -> dict:
    data = record_dict("released")
    data.update(schema_version=SCHEMA_VERSION, compliance=compliance_rows())
    data["weights"] = []
    data.update(decision="pending", exit_code=6, reasons=["awaiting review: 2 approvals"], review=_review("pending"))
    return data


def test_a_pending_record_round_trips_and_validates(record_dict):
    record = GateRecord.model_validate(_pending(record_dict))
    loaded = json.loads(record.to_json())
    jsonschema.Draft202012Validator(json_schema()).validate(loaded)
    assert loaded["decision"] == "pending" and loaded["exit_code"] == 6
    assert loaded["review"]["events"][0]["kind"] == "run" and loaded["review"]["events"][0]["seq"] is None
    assert GateRecord.from_json(record.to_json()) == record


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"exit_code": 0}, "pending run has exit code 6"),
        ({"exit_code": 1}, "pending run has exit code 6"),
        ({"review": None}, "carries its review"),
        ({"schema_version": "1.1"}, "that is 1.2"),
    ],
)
def test_pending_claims_no_more_than_was_proven(record_dict, change, match):
    data = {**_pending(record_dict), **change}
    with pytest.raises(ValidationError, match=match):
        GateRecord.model_validate(data)


def test_a_run_with_a_failed_required_check_is_never_pending(record_dict):
    data = record_dict("failed")
    data.update(schema_version=SCHEMA_VERSION, weights=[], decision="pending", exit_code=6, review=_review("pending"))
    data["compliance"] = compliance_rows()
    with pytest.raises(ValidationError, match="pending although required checks did not pass"):
        GateRecord.model_validate(data)


def test_released_and_rejected_reviews_carry_their_events(record_dict):
    released = _pending(record_dict)
    review = _review("released", _event(5, "approve", "ann", "meets-policy"), _event(6, "approve", "bob"))
    review["events"].append(_event(7, "release", "bob"))
    released.update(decision="released", exit_code=0, reasons=[], review=review)
    record = GateRecord.model_validate(released)
    assert [e.actor for e in record.review.approvals] == ["ann", "bob"]
    assert record.review.decided_by.seq == 6  # the approval whose transaction carried the release
    rejected = _pending(record_dict)
    review = _review("quarantined", _event(5, "reject", "rita", "lip-sync", "mouth off <b>"))
    rejected.update(decision="quarantined", exit_code=1, reasons=["rejected by rita: lip-sync"], review=review)
    record = GateRecord.model_validate(rejected)
    assert record.review.decided_by.comment == "mouth off <b>"
    jsonschema.Draft202012Validator(json_schema()).validate(json.loads(record.to_json()))


@pytest.mark.parametrize(
    ("state", "events", "decision", "match"),
    [
        ("released", [_event(5, "approve", "ann")], "released", "contradicts its events"),
        ("pending", [_event(5, "reject", "rita")], "pending", "contradicts its events"),
        ("quarantined", [_event(5, "reject", "rita")], "pending", "contradicts the review's state"),
        ("pending", [_event(6, "approve", "ann"), _event(5, "approve", "bob")], "pending", "ledger order"),
        ("pending", [_event(5, "approve", "ann"), _event(5, "approve", "bob")], "pending", "ledger order"),
        ("pending", [{**SUBMIT, "seq": 9}], "pending", "one submission"),
    ],
)
def test_a_review_states_what_its_events_say(record_dict, state, events, decision, match):
    data = _pending(record_dict)
    data["decision"] = decision
    data["review"] = _review(state, *events)
    with pytest.raises(ValidationError, match=match):
        GateRecord.model_validate(data)


def test_a_review_starts_with_the_submission_and_times_are_utc(record_dict):
    data = _pending(record_dict)
    data["review"]["events"] = [_event(5, "approve", "ann")]
    with pytest.raises(ValidationError, match="first event is the submission"):
        GateRecord.model_validate(data)
    data = _pending(record_dict)
    data["review"]["events"][0] = {**SUBMIT, "at": "2026-12-01T10:00:00"}
    with pytest.raises(ValidationError, match="timezone-aware"):
        GateRecord.model_validate(data)


@pytest.mark.parametrize(
    ("kinds", "state"),
    [
        (["run"], "pending"),
        (["run", "approve"], "pending"),
        (["run", "approve", "approve", "release"], "released"),
        (["run", "reject"], "quarantined"),
        (["run", "approve", "reject"], "quarantined"),
        (["run", "reject", "release"], "quarantined"),  # a final state is never left
    ],
)
def test_review_state_folds_the_ledger_events(kinds, state):
    assert review_state(kinds) == state


# --- 1.3: the compliance matrix -------------------------------------------------------------------------------------


def test_a_1_3_record_round_trips_with_its_matrix_disclosure_consent_and_label(record_dict):
    record = GateRecord.model_validate(record_dict("released", compliance=True))
    assert record.schema_version == "1.3"
    text = record.to_json()
    loaded = json.loads(text)
    jsonschema.Draft202012Validator(json_schema()).validate(loaded)
    assert [row["id"] for row in loaded["compliance"]][:2] == ["eu-ai-act-50-2", "eu-code-1-1-2-watermark"]
    assert loaded["disclosure"]["provider"] == "Example <Studios> & Co"
    assert loaded["consent"] == {**compliance_parts()["consent"], "reason": None}
    assert loaded["label"]["ok"] is True and loaded["label"]["position"] == "top-right"
    assert GateRecord.from_json(text) == record and GateRecord.from_json(text).to_json() == text
    assert record.compliance_counts() == {"met": 11, "not_met": 2, "not_applicable": 1, "not_checked": 1}
    assert record.compliance_row("consent").met and record.compliance_row("rfc3161-timestamp").reason


def test_records_before_1_3_are_written_without_the_new_keys(record_dict):
    loaded = json.loads(GateRecord.model_validate(record_dict("released")).to_json())
    assert not {"compliance", "disclosure", "consent", "label"} & set(loaded)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"compliance": []}, "carries its compliance matrix"),
        ({"schema_version": "1.2"}, "has no compliance matrix .compliance, disclosure, consent, label.: that is 1.3"),
        ({"compliance": compliance_rows() + compliance_rows()[:1]}, "duplicate compliance rows: eu-ai-act-50-2"),
        ({"compliance": [{**compliance_rows()[0], "id": "eu-ai-act-99"}]}, "id"),
        ({"compliance": [{**compliance_rows()[0], "evidence": []}]}, "'met' needs the evidence"),
        ({"compliance": [{**compliance_rows()[0], "evidence": ["  "]}]}, "'met' needs the evidence"),
        ({"compliance": [{**compliance_rows()[2], "reason": None}]}, "'not_met' needs a reason"),
        ({"compliance": [{**compliance_rows()[2], "status": "not_checked", "reason": ""}]}, "needs a reason"),
        ({"compliance": [{**compliance_rows()[2], "status": "passed"}]}, "status"),
        ({"consent": {**compliance_parts()["consent"], "name": "Jane Doe"}}, "name"),
        ({"consent": {**compliance_parts()["consent"], "consent_id": None}}, "names its consent id"),
        ({"disclosure": {**compliance_parts()["disclosure"], "created": "2026-11-23 23:19"}}, "with its zone"),
        ({"disclosure": {**compliance_parts()["disclosure"], "provider": ""}}, "provider"),
        ({"label": {**compliance_parts()["label"], "ok": False}}, "gives its reason"),
        ({"label": {**compliance_parts()["label"], "frames_labelled": 126}}, "126 frames labelled of 125"),
    ],
)
def test_a_1_3_record_claims_no_more_than_its_evidence(record_dict, change, match):
    data = {**record_dict("released", compliance=True), **change}
    with pytest.raises(ValidationError, match=match):
        GateRecord.model_validate(data)


def test_consent_and_label_are_taken_from_the_outcome_and_check_dicts_field_by_field():
    from reports.schema import ConsentRef, DisclosureRecord, LabelRecord

    outcome = {**compliance_parts()["consent"], "reason": "matched", "name": "Jane Doe", "embedding": [0.1, 0.2]}
    ref = ConsentRef.from_outcome(outcome)
    assert "name" not in ref.model_dump() and "embedding" not in ref.model_dump() and ref.reason == "matched"
    label = compliance_parts()["label"]
    spec_keys = ("text", "position", "start_seconds", "persistent", "size", "font", "font_sha256")
    nested = {"spec": {k: label[k] for k in spec_keys}, **{k: v for k, v in label.items() if k not in spec_keys}}
    assert LabelRecord.from_check({**nested, "worst_contrast": 41.5}) == LabelRecord(**label, worst_contrast=41.5)
    full = {**compliance_parts()["disclosure"], "model_sha256": None, "weights": {}, "visible_label": None}
    assert DisclosureRecord.from_disclosure(full).model_dump() == compliance_parts()["disclosure"]


def test_the_schema_and_the_gate_name_the_same_compliance_rows():
    from gate.compliance import ROW_IDS
    from reports.schema import COMPLIANCE_IDS

    assert COMPLIANCE_IDS == ROW_IDS
    enum = json_schema()["$defs"]["ComplianceRow"]["properties"]["id"]["enum"]
    assert tuple(enum) == ROW_IDS
