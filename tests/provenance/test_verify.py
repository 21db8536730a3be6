"""VerifyReport's verdict: every way a file can fail to be verified is named, and only full agreement passes.

The manifests are real (signed and read by c2pa); the watermark side is a WatermarkCheck as decode() would give it,
so the verdict logic is tested without running the watermark networks (tests/gate/test_stamp.py runs them)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from provenance.c2pa import read_manifest, sign_mp4
from provenance.verify import VerifyReport, WatermarkCheck, assess

METHOD = "org.hallo3-gate.test-method"
PAYLOAD = bytes.fromhex("00112233445566778899")


@pytest.fixture(scope="module")
def signed(tmp_path_factory, signer, plain_mp4, portrait_png, speech_wav) -> Path:
    out = tmp_path_factory.mktemp("verify") / "signed.mp4"
    sign_mp4(
        plain_mp4, out, signer=signer, portrait=portrait_png, audio=speech_wav, watermark_payload=PAYLOAD,
        gate_results={"decision": "pass"}, title="t", watermark_method=METHOD,
    )  # fmt: skip
    return out


def _wm(payload_hex: str | None, method: str = METHOD) -> WatermarkCheck:
    return WatermarkCheck(payload_hex=payload_hex, confidence=0.9, method=method, frames_decoded=6)


def _report(manifest, wm: WatermarkCheck, require_trusted: bool = False) -> VerifyReport:
    return assess(manifest, wm, require_trusted=require_trusted)


def test_full_agreement_verifies(signed, root_pem):
    report = _report(read_manifest(signed, trust_anchors_pem=root_pem), _wm(PAYLOAD.hex()))
    assert report.verified and report.reasons == [] and report.payload_hex == PAYLOAD.hex()
    # the claim signer is trusted; c2pa-rs says "Valid" only because the CAWG identity credential reads untrusted
    assert report.to_dict()["manifest"]["state"] == "Valid" and report.manifest.signer_trusted
    strict = _report(read_manifest(signed, trust_anchors_pem=root_pem), _wm(PAYLOAD.hex()), require_trusted=True)
    assert strict.verified


def test_untrusted_passes_unless_trust_is_required(signed):
    manifest = read_manifest(signed)
    assert _report(manifest, _wm(PAYLOAD.hex())).verified
    strict = _report(manifest, _wm(PAYLOAD.hex()), require_trusted=True)
    assert not strict.verified and "not trusted" in strict.reasons[0]


def test_each_failure_is_named(signed, plain_mp4, root_pem, tmp_path):
    manifest = read_manifest(signed, trust_anchors_pem=root_pem)
    wrong = _report(manifest, _wm("ff" * len(PAYLOAD)))
    assert not wrong.verified and wrong.agreement is False and "differs" in wrong.reasons[0]
    other_method = _report(manifest, _wm(PAYLOAD.hex(), method="some.other.method"))
    assert not other_method.verified and other_method.agreement is False
    missing = _report(manifest, _wm(None))
    assert not missing.verified and missing.agreement is None and "no watermark" in missing.reasons[0]
    unsigned = _report(read_manifest(plain_mp4), _wm(PAYLOAD.hex()))
    assert not unsigned.verified and "no C2PA manifest" in unsigned.reasons[0]
    assert unsigned.payload_hex == PAYLOAD.hex()  # the watermark still names the output
    broken = tmp_path / "broken.mp4"
    shutil.copyfile(signed, broken)
    data = bytearray(broken.read_bytes())
    data[-100] ^= 0x01
    broken.write_bytes(bytes(data))
    invalid = _report(read_manifest(broken, trust_anchors_pem=root_pem), _wm(PAYLOAD.hex()))
    assert not invalid.verified and invalid.reasons[0].startswith("manifest Invalid")
