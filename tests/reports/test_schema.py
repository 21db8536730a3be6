"""The audit record: JSON round trip, JSON Schema validity, fail-closed invariants, no drift of the schema file."""

from __future__ import annotations

import json

import jsonschema
import pytest
from pydantic import ValidationError

from reports.schema import SCHEMA_FILE, SCHEMA_VERSION, GateRecord, LedgerRecord, json_schema, json_schema_text

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
    assert SCHEMA_VERSION == "1.1"
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
    data["schema_version"] = SCHEMA_VERSION
    data["weights"] = [entry]
    record = GateRecord.model_validate(data)
    loaded = json.loads(record.to_json())
    jsonschema.Draft202012Validator(json_schema()).validate(loaded)
    assert loaded["weights"][0]["status"] == status
    assert loaded["weights"][0]["verified"] is (status == "verified")
    assert GateRecord.from_json(record.to_json()) == record


def test_a_1_1_record_states_how_each_weight_was_checked(record_dict):
    data = record_dict("released")
    data["schema_version"] = SCHEMA_VERSION
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
