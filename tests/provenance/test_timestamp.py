"""RFC 3161 time-stamps, measured against a local TSA (tests/provenance/tsa.py) whose genTime the test chooses."""

from __future__ import annotations

import datetime as dt

import pytest

from provenance.c2pa import read_manifest, sign_mp4
from provenance.keys import DEV_SIGNER_CHAIN, DEV_SIGNER_KEY, SignerConfig, load_signer
from reports.errors import ProvenanceError
from tests.provenance.tsa import LocalTsa

GEN_TIME = dt.datetime(2026, 12, 2, 9, 30, 15, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def tsa(dev_keys_dir):
    authority = LocalTsa(dev_keys_dir, GEN_TIME)
    url, server = authority.serve()
    yield authority, url
    server.shutdown()
    server.server_close()


def _signer(dev_keys_dir, url):
    config = SignerConfig(
        kind="pem", chain_path=dev_keys_dir / DEV_SIGNER_CHAIN, key_path=dev_keys_dir / DEV_SIGNER_KEY, tsa_url=url
    )
    return load_signer(config)


@pytest.mark.parametrize("cawg", [True, False])
def test_a_tsa_time_stamp_is_reported(cawg, tsa, dev_keys_dir, plain_mp4, tmp_path, root_pem):
    authority, url = tsa
    before = len(authority.requests)
    out = tmp_path / "stamped.mp4"
    result = sign_mp4(
        plain_mp4, out, signer=_signer(dev_keys_dir, url), portrait=None, audio=None, watermark_payload=b"\x05",
        gate_results=None, title="t", watermark_method="m", cawg_identity=cawg,
    )  # fmt: skip
    assert result.cawg_identity is cawg and len(authority.requests) > before  # the TSA was asked
    report = read_manifest(out, trust_anchors_pem=root_pem)
    assert report.validates and report.signer_trusted, report.failure_codes
    # c2pa-rs 0.91.3 reports the genTime in RFC 3339 with +00:00; our test TSA is not on its time-stamp trust list
    assert report.timestamp == "2026-12-02T09:30:15+00:00"
    assert report.timestamp_codes == ["timeStamp.validated", "timeStamp.untrusted"]
    assert report.to_dict()["timestamp"] == report.timestamp


def test_an_unreachable_tsa_fails_signing_and_writes_nothing(dev_keys_dir, plain_mp4, tmp_path):
    signer = _signer(dev_keys_dir, "http://127.0.0.1:9/tsa")  # the discard port: nothing listens
    out = tmp_path / "never.mp4"
    for cawg in (True, False):
        with pytest.raises(ProvenanceError, match="C2PA signing must succeed"):
            sign_mp4(
                plain_mp4, out, signer=signer, portrait=None, audio=None, watermark_payload=b"\x05",
                gate_results=None, title="t", watermark_method="m", cawg_identity=cawg,
            )  # fmt: skip
    assert list(tmp_path.iterdir()) == []
