"""The provenance half of the gate: stamp -> verify from disk; stripping, tampering and bad input through the CLI."""

from __future__ import annotations

import datetime as dt
import wave
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from PIL import Image

from gate import media
from gate.cli import main
from provenance.keys import (
    DEV_INTERMEDIATE_CERT,
    DEV_INTERMEDIATE_KEY,
    ENV_SIGN_CHAIN,
    ENV_SIGN_KEY,
    init_dev_keys,
    leaf_cert,
)
from reports.errors import ExitCode

FRAMES, SIZE, FPS = 16, 256, 25.0  # 16 frames: each of the 4 payload segments in one 4-frame group


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("stamp")


@pytest.fixture(scope="module")
def keys_dir(work) -> Path:
    return init_dev_keys(work / "keys").directory


@pytest.fixture(scope="module")
def inputs(work, portraits) -> dict[str, Path]:
    face = np.asarray(Image.open(portraits[0]).convert("RGB").resize((SIZE, SIZE)), dtype=np.int16)
    frames = np.stack([np.clip(face + (t % 5) - 2, 0, 255).astype(np.uint8) for t in range(FRAMES)])
    audio = (0.2 * np.sin(np.arange(int(16000 * FRAMES / FPS)) * 0.05)).astype(np.float32)
    portrait = work / "portrait.png"
    Image.fromarray(frames[0]).save(portrait)
    wav = work / "speech.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((audio * 32767).astype("<i2").tobytes())
    return {
        "video": media.write_mp4(work / "in.mp4", frames, FPS, audio, 16000),
        "silent": media.write_mp4(work / "silent.mp4", frames, FPS),
        "portrait": portrait,
        "wav": wav,
    }


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
