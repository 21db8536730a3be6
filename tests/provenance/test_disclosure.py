"""Latent disclosure (SB 942 / EU 50(2)) and the GB 45438 AIGC label: fields, validation, and that the C2PA hard
binding covers both (one edited byte -> Invalid)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from gate import media
from provenance.bmff import top_level_boxes
from provenance.c2pa import ManifestReport, read_manifest, sign_mp4
from provenance.disclosure import (
    AIGC_KEY,
    DISCLOSURE_LABEL,
    AigcLabel,
    Disclosure,
    parse_aigc,
)
from provenance.verify import WatermarkCheck, assess

PROVIDER = "Provider-QX7 Ltd"
MODEL = "3f2a9c01b4de" + "0" * 52
PAYLOAD = bytes.fromhex("a1b2c3d4e5f60718")
LABEL_SPEC = {"text": "AI生成", "position": "top-right", "start_seconds": 3.0}


def _disclosure(**kw) -> Disclosure:
    args = dict(
        provider=PROVIDER,
        generator="hallo3 (Hallo3 official)",
        tool_version="0.9.0",
        model_sha256=MODEL,
        weights={"hallo3.safetensors": MODEL},
        id="run-20261202-abc123",
        created="2026-12-02T10:11:12Z",
        visible_label=LABEL_SPEC,
    )
    args.update(kw)
    return Disclosure.new(**args)


def test_disclosure_fields_and_round_trip():
    d = _disclosure()
    assert d.to_dict() == {
        "provider": PROVIDER,
        "system": "hallo3 (Hallo3 official) / hallo3-gate",
        "version": "model 3f2a9c01b4de; hallo3-gate 0.9.0",
        "created": "2026-12-02T10:11:12Z",
        "id": "run-20261202-abc123",
    }
    data = d.to_assertion()
    assert data["model_sha256"] == MODEL and data["weights"] == {"hallo3.safetensors": MODEL}
    assert data["visible_label"] == LABEL_SPEC
    assert Disclosure.from_assertion(json.loads(json.dumps(data))) == d
    fresh = Disclosure.new(provider=PROVIDER, generator="g", tool_version="1")
    assert fresh.version == "model n/a; hallo3-gate 1" and fresh.id.startswith("urn:uuid:")
    assert (
        fresh.created.endswith("Z")
        and fresh.id != Disclosure.new(provider=PROVIDER, generator="g", tool_version="1").id
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"provider": ""}, "disclosure.provider"),
        ({"provider": "  "}, "disclosure.provider"),
        ({"provider": None}, "disclosure.provider"),
        ({"system": 7}, "disclosure.system"),
        ({"created": "2026-12-02 10:11:12"}, "disclosure.created"),
        ({"created": "2026-12-02T10:11:12+01:00"}, "disclosure.created"),
        ({"created": "2026-13-02T10:11:12Z"}, "disclosure.created"),
        ({"id": "a\nb"}, "disclosure.id"),
        ({"model_sha256": "XYZ"}, "disclosure.model_sha256"),
        ({"weights": {"w": "short"}}, "disclosure.weights.w"),
        ({"weights": ["x"]}, "disclosure.weights"),
        ({"visible_label": "top-right"}, "disclosure.visible_label"),
    ],
)
def test_from_assertion_names_the_bad_field(change, field):
    data = {**_disclosure().to_assertion(), **change}
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        Disclosure.from_assertion(data)


@pytest.mark.parametrize("missing", ["provider", "system", "version", "created", "id"])
def test_from_assertion_names_a_missing_field(missing):
    data = _disclosure().to_assertion()
    del data[missing]
    with pytest.raises(ValueError, match=rf"disclosure\.{missing}: is missing"):
        Disclosure.from_assertion(data)
    with pytest.raises(ValueError, match="must be an object"):
        Disclosure.from_assertion([data])


def _aigc() -> AigcLabel:
    return AigcLabel.for_output(_disclosure(), watermark_payload_hex=PAYLOAD.hex())


def test_aigc_json_is_the_annex_e_object():
    label = _aigc()
    # written out by hand from GB 45438 Annex E's key order and the gate's documented field contents
    assert label.to_json() == (
        '{"Label":"1","ContentProducer":"Provider-QX7 Ltd","ProduceID":"run-20261202-abc123",'
        '"ReservedCode1":"a1b2c3d4e5f60718","ContentPropagator":"Provider-QX7 Ltd",'
        '"PropagateID":"run-20261202-abc123","ReservedCode2":"run-20261202-abc123"}'
    )
    assert parse_aigc(label.to_json()) == label
    cjk = AigcLabel.for_output(_disclosure(provider="北京示例科技有限公司"), watermark_payload_hex="00")
    assert "北京示例科技有限公司" in cjk.to_json() and parse_aigc(cjk.to_json()) == cjk  # UTF-8, not \u escapes
    optional = {**label.to_dict(), "ReservedCode1": "", "ReservedCode2": ""}
    assert parse_aigc(json.dumps(optional)).reserved_code1 == ""  # the reserved codes are not mandatory


def _with(**changes) -> str:
    data = _aigc().to_dict()
    for key, value in changes.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    return json.dumps(data, ensure_ascii=False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", r"AIGC: must be valid JSON"),
        ("[1, 2]", r"AIGC: must be a JSON object"),
        (_with(Label="0"), r"AIGC\.Label: must be one of 1, 2, 3"),
        (_with(Label="4"), r"AIGC\.Label: must be one of 1, 2, 3"),
        (_with(Label=1), r"AIGC\.Label: must be a string"),
        (_with(ContentProducer=""), r"AIGC\.ContentProducer: must be a non-empty string"),
        (_with(ProduceID=" "), r"AIGC\.ProduceID: must be a non-empty string"),
        (_with(ContentPropagator=""), r"AIGC\.ContentPropagator: must be a non-empty string"),
        (_with(PropagateID=""), r"AIGC\.PropagateID: must be a non-empty string"),
        (_with(ReservedCode1=None), r"AIGC\.ReservedCode1: must be a string"),
        (_with(ReservedCode2=["x"]), r"AIGC\.ReservedCode2: must be a string"),
        (_with(ProduceID="a\x00b"), r"AIGC\.ProduceID: must not contain control characters"),
        (_with(Extra="x"), r"AIGC\.Extra: is not a GB 45438 Annex E field"),
        (_with(Label=...), r"AIGC\.Label: is missing"),
        (_with(PropagateID=...), r"AIGC\.PropagateID: is missing"),
        (_with(ReservedCode2=...), r"AIGC\.ReservedCode2: is missing"),
    ],
)
def test_parse_aigc_rejects_each_bad_field(text, message):
    with pytest.raises(ValueError, match=message):
        parse_aigc(text)


# --- in a real MP4: ffprobe reads the tag; the hard binding covers it and the disclosure assertion ----------------


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, signer, portraits) -> dict:
    """A real portrait (hallo3_0001), 12 frames at 25 fps, written with the AIGC tag, then signed with the
    disclosure assertion: the order the gate uses (metadata at encode time, signing last)."""
    work = tmp_path_factory.mktemp("labelled")
    face = media.read_image(portraits[0])
    h, w = (min(face.shape[0], 256) // 2) * 2, (min(face.shape[1], 256) // 2) * 2
    frames = np.stack([np.roll(face[:h, :w], t, axis=1) for t in range(12)])
    disclosure = _disclosure()
    aigc = AigcLabel.for_output(disclosure, watermark_payload_hex=PAYLOAD.hex())
    plain = media.write_mp4(work / "plain.mp4", frames, 25.0, metadata={AIGC_KEY: aigc.to_json()})
    signed = work / "signed.mp4"
    result = sign_mp4(
        plain, signed, signer=signer, portrait=None, audio=None, watermark_payload=PAYLOAD, gate_results=None,
        title="signed.mp4", watermark_method="org.hallo3-gate.test-method", disclosure=disclosure,
    )  # fmt: skip
    return {"plain": plain, "signed": signed, "result": result, "disclosure": disclosure, "aigc": aigc}


def test_ffprobe_shows_the_aigc_tag_and_it_validates(labelled):
    for name in ("plain", "signed"):
        out = subprocess.run(
            ["ffprobe", "-v", "error", "-show_format", "-of", "json", str(labelled[name])],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        tags = json.loads(out.stdout)["format"]["tags"]
        assert parse_aigc(tags[AIGC_KEY]) == labelled["aigc"], name
    assert media.read_container_metadata(labelled["signed"])[AIGC_KEY] == labelled["aigc"].to_json()


def test_disclosure_reads_back_from_the_signed_file(labelled, root_pem):
    report = read_manifest(labelled["signed"], trust_anchors_pem=root_pem)
    assert report.validates and report.signer_trusted, report.failure_codes
    assert report.disclosure == labelled["disclosure"] and report.disclosure_error is None
    assert report.to_dict()["disclosure"] == labelled["disclosure"].to_dict()
    assert labelled["result"].disclosure_id == "run-20261202-abc123"
    wm = WatermarkCheck(
        payload_hex=PAYLOAD.hex(), confidence=0.9, method="org.hallo3-gate.test-method", frames_decoded=3
    )
    assert assess(report, wm).to_dict()["disclosure"] == labelled["disclosure"].to_dict()
    assert DISCLOSURE_LABEL in labelled["result"].assertion_labels


def _edit_once(src: Path, dst: Path, needle: bytes, replacement: bytes) -> None:
    assert len(needle) == len(replacement)
    data = src.read_bytes()
    assert data.count(needle) == 1, f"{needle!r} occurs {data.count(needle)} times"
    shutil.copyfile(src, dst)
    dst.write_bytes(data.replace(needle, replacement))


def test_an_edited_aigc_byte_makes_the_manifest_invalid(labelled, root_pem, tmp_path):
    bad = tmp_path / "aigc-edited.mp4"
    _edit_once(labelled["signed"], bad, b'"Label":"1"', b'"Label":"2"')  # same length, still valid Annex E JSON
    assert parse_aigc(media.read_container_metadata(bad)[AIGC_KEY]).label == "2"
    report = read_manifest(bad, trust_anchors_pem=root_pem)
    assert report.state == "Invalid" and "assertion.bmffHash.mismatch" in report.failure_codes


def test_an_edited_disclosure_value_makes_the_manifest_invalid(labelled, root_pem, tmp_path):
    bad = tmp_path / "disclosure-edited.mp4"
    data = labelled["signed"].read_bytes()
    # the provider name occurs in the AIGC tag (moov) and in the disclosure assertion (the C2PA uuid box): edit the
    # occurrence after the start of the manifest store only
    store_at = data.index(DISCLOSURE_LABEL.encode())
    at = data.index(PROVIDER.encode(), store_at)
    c2pa_box = next(b for b in top_level_boxes(labelled["signed"]) if b.type == "uuid")
    assert c2pa_box.offset < at < c2pa_box.offset + c2pa_box.size  # inside the manifest store, not the AIGC tag
    bad.write_bytes(data[:at] + b"Q" + data[at + 1 :])
    report = read_manifest(bad, trust_anchors_pem=root_pem)
    assert report.state == "Invalid" and "assertion.hashedURI.mismatch" in report.failure_codes


def test_a_malformed_disclosure_assertion_reads_as_none_with_the_field_named():
    data = {**_disclosure().to_assertion(), "created": "yesterday"}
    report = ManifestReport(path="x.mp4", state="Valid", assertions={DISCLOSURE_LABEL: data})
    assert report.disclosure is None and report.disclosure_error.startswith("disclosure.created: must be UTC ISO 8601")
    assert report.to_dict()["disclosure"] is None and "disclosure.created" in report.to_dict()["disclosure_error"]
    none = ManifestReport(path="x.mp4", state="Valid")
    assert none.disclosure is None and none.disclosure_error is None
    assert none.cawg_identity is None and none.watermark_action is None and none.timestamp is None
    assert none.soft_binding_timespan is None
