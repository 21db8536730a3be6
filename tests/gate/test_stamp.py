"""The provenance half of the gate: stamp -> verify from disk; stripping, tampering and bad input through the CLI."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
from pathlib import Path

import av
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from PIL import Image

from gate import media
from gate.cli import main
from gate.ledger import Ledger
from gate.stamp import VerificationFailed, sign_and_verify, stamp
from provenance import watermark
from provenance.c2pa import read_manifest
from provenance.disclosure import AIGC_KEY, parse_aigc
from provenance.keys import (
    DEV_INTERMEDIATE_CERT,
    DEV_INTERMEDIATE_KEY,
    DEV_ROOT_CERT,
    ENV_SIGN_CHAIN,
    ENV_SIGN_KEY,
    SignerConfig,
    init_dev_keys,
    leaf_cert,
    load_signer,
)
from reports.errors import ExitCode, UsageError
from tests.conftest import TEST_PROVIDER
from tests.wav import write_wav

STAMP_CRF = 18  # the default: what users get
FRAMES, SIZE, FPS = 48, 288, 25.0  # 16 intro frames + four 8-frame segment runs: every segment decoded twice+


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("stamp")


@pytest.fixture(scope="module")
def keys_dir(work) -> Path:
    return init_dev_keys(work / "keys").directory


@pytest.fixture(scope="module")
def inputs(work, portraits) -> dict[str, Path]:
    face = np.asarray(Image.open(portraits[0]).convert("RGB").resize((SIZE + 32, SIZE + 32)))
    frames = np.stack([face[(t // 2) % 16 :][:SIZE, t % 16 :][:, :SIZE] for t in range(FRAMES)])  # a slow pan
    audio = (0.2 * np.sin(np.arange(int(16000 * FRAMES / FPS)) * 0.05)).astype(np.float32)
    portrait = work / "portrait.png"
    Image.fromarray(frames[0]).save(portrait)
    wav = write_wav(work / "speech.wav", audio, 16000)
    return {
        "video": media.write_mp4(work / "in.mp4", frames, FPS, audio, 16000),
        "silent": media.write_mp4(work / "silent.mp4", frames, FPS),
        "portrait": portrait,
        "wav": wav,
    }


@pytest.fixture(scope="module")
def stamped(work, keys_dir, inputs):
    """`hallo3-gate stamp` run through the CLI with the development keys; returns its JSON result."""
    out = work / "out" / "stamped.mp4"
    with pytest.MonkeyPatch.context() as env:
        for var in (ENV_SIGN_CHAIN, ENV_SIGN_KEY, "HALLO3_GATE_TRUST_ANCHORS", "HALLO3_GATE_TSA_URL"):
            env.delenv(var, raising=False)
        env.setenv("HALLO3_GATE_KEYS_DIR", str(keys_dir))
        args = ["stamp", str(inputs["video"]), str(out), "--portrait", str(inputs["portrait"])]
        args += ["--audio", str(inputs["wav"]), "--crf", str(STAMP_CRF), "--json"]
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert main(args) == 0
    result = json.loads(buf.getvalue())
    result["path"] = Path(result["path"])
    return result


def test_stamp_output_is_signed_watermarked_and_verified(stamped):
    out = stamped["path"]
    assert out.exists() and sorted(p.name for p in out.parent.iterdir()) == ["stamped.mp4"]
    report = stamped["verify"]
    # the dev root anchors its own keys: the claim signer is trusted; c2pa-rs 0.91.3 says "Valid" rather than
    # "Trusted" because it reads the CAWG identity credential (the same certificate) as untrusted
    assert report["verified"] and report["manifest"]["state"] == "Valid" and report["manifest"]["signer_trusted"]
    assert report["manifest"]["failures"] == ["cawg.x509.credential.untrusted"]
    assert report["manifest"]["cawg_identity"]["validated"] and stamped["sign"]["cawg_identity"] is True
    assert report["manifest"]["watermark_action"] == "c2pa.watermarked.bound"
    assert report["manifest"]["soft_binding_timespan"] == [0, int(FRAMES / FPS * 1000)]
    # the configured provider (the test suite's configuration) is named in the disclosure and the AIGC tag
    assert report["disclosure"]["provider"] == TEST_PROVIDER and stamped["sign"]["disclosure_id"]
    aigc = json.loads(media.read_container_metadata(out)["AIGC"])
    assert aigc["ContentProducer"] == TEST_PROVIDER and aigc["ReservedCode1"] == stamped["payload"]
    assert report["watermark"]["payload"] == stamped["payload"] == report["manifest"]["soft_binding"]["payload"]
    assert report["manifest"]["soft_binding"]["alg"] == watermark.METHOD
    assert report["manifest"]["assertions"]["org.hallo3-gate.results"]["decision"] == "not-gated"
    assert [i["title"] for i in report["manifest"]["ingredients"]] == ["portrait.png", "speech.wav"]
    assert stamped["sign"]["development_key"] is True
    clip = media.read_video(out, require_audio=True)
    assert clip.frames.shape[0] == FRAMES and clip.audio is not None


def test_verify_cli_on_the_stamped_file(stamped, keys_dir, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HALLO3_GATE_LEDGER", str(tmp_path / "none.sqlite"))
    assert main(["verify", str(stamped["path"]), "--trust", str(keys_dir / DEV_ROOT_CERT)]) == 0
    tree = capsys.readouterr().out
    for shown in ("VERIFIED", "manifest Valid", "ingredients", "portrait.png", "speech.wav", "all notAllowed",
                  "c2pa.created (trainedAlgorithmicMedia), c2pa.watermarked", stamped["payload"],
                  "watermark agrees with manifest: yes"):  # fmt: skip
        assert shown in tree, shown
    assert "NOT VERIFIED" not in tree


def _rewrap_as_mkv(src: Path, dst: Path) -> Path:
    with av.open(str(src)) as fin, av.open(str(dst), "w", format="matroska") as fout:
        streams = {s.index: fout.add_stream_from_template(s) for s in fin.streams}
        for packet in fin.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                fout.mux(packet)
    return dst


def test_stripped_copy_is_traced_to_its_ledger_record_by_the_watermark(stamped, tmp_path, capsys, monkeypatch):
    ledger_path = tmp_path / "ledger.sqlite"
    monkeypatch.setenv("HALLO3_GATE_LEDGER", str(ledger_path))
    Ledger(ledger_path, create=True).append(
        run_id="run-42",
        created_at="2026-11-23T00:00:00+00:00",
        decision="released",
        output_path=str(stamped["path"]),
        output_sha256="0" * 64,
        payload_hex=stamped["payload"],
        record_json=json.dumps({"run_id": "run-42"}),
    )
    stripped = _rewrap_as_mkv(stamped["path"], tmp_path / "leaked.mkv")  # stream copy into another container
    assert main(["verify", str(stripped), "--json"]) == ExitCode.PROVENANCE
    data = json.loads(capsys.readouterr().out)
    assert data["manifest"]["state"] is None and data["agreement"] is None and not data["verified"]
    assert "cannot carry" in data["manifest"]["note"]
    assert data["watermark"]["payload"] == stamped["payload"]
    assert data["record"]["run_id"] == "run-42" and data["record"]["record"] == {"run_id": "run-42"}


def test_sign_and_verify_refuses_a_payload_the_frames_do_not_carry(stamped, keys_dir, inputs, tmp_path):
    signer = load_signer(SignerConfig.development_keys(keys_dir))
    stripped = media.remux(stamped["path"], tmp_path / "unsigned.mp4")  # frames carry stamped["payload"]
    other = bytes(b ^ 0xFF for b in bytes.fromhex(stamped["payload"]))
    with pytest.raises(VerificationFailed, match="differs from the manifest") as err:
        sign_and_verify(
            stripped,
            signer=signer,
            portrait=inputs["portrait"],
            audio_path=inputs["wav"],
            payload=other,
            gate_results=None,
            trust_anchors_pem=None,
        )
    assert err.value.report.manifest.state == "Valid" and err.value.report.agreement is False


# --- a provider configured: the disclosure assertion and the GB 45438 AIGC tag, both under the hard binding ------


@pytest.fixture(scope="module")
def disclosed(work, keys_dir, inputs):
    out = work / "disclosed" / "disclosed.mp4"
    signer = load_signer(SignerConfig.development_keys(keys_dir))
    root = (keys_dir / DEV_ROOT_CERT).read_bytes()
    result = stamp(
        inputs["video"], out, portrait=inputs["portrait"], audio=inputs["wav"], signer=signer, trust_anchors_pem=root,
        require_trusted=True, provider="Provider-QX7 Ltd",
    )  # fmt: skip
    return {"result": result, "root": root, "out": out}


def test_stamp_with_a_provider_writes_disclosure_and_aigc(disclosed):
    result, out = disclosed["result"], disclosed["out"]
    assert result.verify.verified  # with require_trusted: the claim signer chains to the dev root
    disclosure = result.verify.manifest.disclosure
    assert disclosure is not None and disclosure.provider == "Provider-QX7 Ltd"
    assert disclosure.system == "unknown generator (an existing video) / hallo3-gate"
    assert disclosure.version.startswith("model n/a; hallo3-gate ") and disclosure.created.endswith("Z")
    assert (
        result.to_dict()["verify"]["disclosure"] == disclosure.to_dict() and result.sign.disclosure_id == disclosure.id
    )
    aigc = parse_aigc(media.read_container_metadata(out)[AIGC_KEY])
    assert (aigc.label, aigc.content_producer, aigc.produce_id) == ("1", "Provider-QX7 Ltd", disclosure.id)
    assert aigc.reserved_code1 == result.payload_hex  # ties the metadata label to the watermark in the frames
    assert (aigc.content_propagator, aigc.propagate_id, aigc.reserved_code2) == (
        "Provider-QX7 Ltd",
        disclosure.id,
        disclosure.id,
    )


def test_stamped_aigc_tag_is_covered_by_the_hard_binding(disclosed, tmp_path):
    data = disclosed["out"].read_bytes()
    assert data.count(b'"Label":"1"') == 1
    bad = tmp_path / "edited.mp4"
    bad.write_bytes(data.replace(b'"Label":"1"', b'"Label":"3"'))  # one byte, same length, still valid Annex E
    assert parse_aigc(media.read_container_metadata(bad)[AIGC_KEY]).label == "3"
    report = read_manifest(bad, trust_anchors_pem=disclosed["root"])
    assert report.state == "Invalid" and "assertion.bmffHash.mismatch" in report.failure_codes


def test_stamp_refuses_an_empty_provider_before_writing(keys_dir, inputs, tmp_path):
    signer = load_signer(SignerConfig.development_keys(keys_dir))
    out = tmp_path / "never.mp4"
    with pytest.raises(UsageError, match=r"^provider: must be a provider name .*disclosure\.provider"):
        stamp(inputs["video"], out, portrait=inputs["portrait"], audio=inputs["wav"], signer=signer, provider=" ")
    assert list(tmp_path.iterdir()) == []


# --- the stamp command: bad input and bad credentials give one line, a distinct code, and no output ---------------


@pytest.fixture
def cli_env(monkeypatch, keys_dir, tmp_path):
    for var in (ENV_SIGN_CHAIN, ENV_SIGN_KEY, "HALLO3_GATE_TRUST_ANCHORS", "HALLO3_GATE_TSA_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HALLO3_GATE_KEYS_DIR", str(keys_dir))
    monkeypatch.setenv("HALLO3_GATE_LEDGER", str(tmp_path / "none.sqlite"))
    return monkeypatch


def _stamp_cli(video: Path, out: Path, inputs) -> int:
    return main(["stamp", str(video), str(out), "--portrait", str(inputs["portrait"]), "--audio", str(inputs["wav"])])


def _error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("hallo3-gate: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_stamp_cli_bad_inputs(cli_env, inputs, tmp_path, capsys):
    out = tmp_path / "out" / "o.mp4"
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(inputs["video"].read_bytes()[:-2000])
    cases = [(text, "notes.mp4"), (cut, "cut.mp4"), (inputs["silent"], "audio")]
    for video, expected in cases:
        assert _stamp_cli(video, out, inputs) == ExitCode.INPUT, video
        assert expected in _error_line(capsys.readouterr().err)
        assert not out.exists() and (not out.parent.exists() or list(out.parent.iterdir()) == [])


def _bad_credentials(keys_dir: Path, tmp_path: Path, kind: str) -> tuple[Path, Path]:
    inter = x509.load_pem_x509_certificate((keys_dir / DEV_INTERMEDIATE_CERT).read_bytes())
    inter_key = serialization.load_pem_private_key((keys_dir / DEV_INTERMEDIATE_KEY).read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    kwargs: dict = {}
    days = 30
    if kind == "expired":
        days, kwargs["not_before"] = -1, now - dt.timedelta(days=60)
    if kind == "eku":
        kwargs["ekus"] = (ExtendedKeyUsageOID.SERVER_AUTH,)
    cert = leaf_cert("bad signer", key.public_key(), inter, inter_key, now, days, **kwargs)
    if kind == "mismatch":
        key = ec.generate_private_key(ec.SECP256R1())
    chain, key_path = tmp_path / f"{kind}.chain.pem", tmp_path / f"{kind}.key.pem"
    chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + inter.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return chain, key_path


@pytest.mark.parametrize("kind, expected", [("expired", "expired"), ("eku", "serverAuth"), ("mismatch", "match")])
def test_stamp_cli_bad_credentials(cli_env, keys_dir, inputs, tmp_path, capsys, kind, expected):
    chain, key = _bad_credentials(keys_dir, tmp_path, kind)
    cli_env.setenv(ENV_SIGN_CHAIN, str(chain))
    cli_env.setenv(ENV_SIGN_KEY, str(key))
    out = tmp_path / "o.mp4"
    assert _stamp_cli(inputs["video"], out, inputs) == ExitCode.PROVENANCE
    line = _error_line(capsys.readouterr().err)
    assert expected in line
    assert not out.exists()
