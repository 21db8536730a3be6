"""Signing credentials: the development PKI, the up-front checks of load_signer, and that keys never leak."""

from __future__ import annotations

import base64
import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from provenance.keys import (
    DEV_INTERMEDIATE_CERT,
    DEV_INTERMEDIATE_KEY,
    DEV_ORG,
    ENV_SIGN_CHAIN,
    ENV_SIGN_KEY,
    SignerConfig,
    init_dev_keys,
    leaf_cert,
    load_signer,
    load_trust_anchors,
)
from reports.errors import ProvenanceError, UsageError

NOW = dt.datetime.now(dt.UTC)


def _intermediate(dev_keys_dir: Path):
    cert = x509.load_pem_x509_certificate((dev_keys_dir / DEV_INTERMEDIATE_CERT).read_bytes())
    key = serialization.load_pem_private_key((dev_keys_dir / DEV_INTERMEDIATE_KEY).read_bytes(), None)
    return cert, key


def _write_pair(tmp: Path, dev_keys_dir: Path, **leaf_kwargs) -> tuple[Path, Path, ec.EllipticCurvePrivateKey]:
    """A leaf issued by the dev intermediate with the given deviations; returns (chain, key, key object)."""
    inter, inter_key = _intermediate(dev_keys_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    days = leaf_kwargs.pop("days", 30)
    cert = leaf_cert("test signer", key.public_key(), inter, inter_key, NOW, days, **leaf_kwargs)
    chain = tmp / "chain.pem"
    chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + inter.public_bytes(serialization.Encoding.PEM))
    key_path = tmp / "key.pem"
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return chain, key_path, key


def _secret_fragments(key_path: Path) -> list[str]:
    """Pieces of a private key that must never appear anywhere: PEM body lines and the private scalar."""
    pem = key_path.read_text()
    lines = [ln for ln in pem.splitlines() if ln and not ln.startswith("-----")]
    key = serialization.load_pem_private_key(pem.encode(), None)
    scalar = key.private_numbers().private_value
    raw = scalar.to_bytes(32, "big")
    return [*lines, format(scalar, "x"), str(scalar), base64.b64encode(raw).decode()[:20], raw.hex()]


def test_dev_pki_files_modes_and_labels(tmp_path):
    paths = init_dev_keys(tmp_path / "k")
    keys = sorted(paths.directory.glob("*.key.pem"))
    assert len(keys) == 3
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE(paths.root_cert.stat().st_mode) == 0o644
    assert "DEVELOPMENT" in paths.signer_key.name and "DEVELOPMENT" in paths.root_cert.name
    chain = x509.load_pem_x509_certificates(paths.signer_chain.read_bytes())
    assert len(chain) == 2  # leaf then intermediate
    leaf, inter = chain
    leaf.verify_directly_issued_by(inter)
    root = x509.load_pem_x509_certificate(paths.root_cert.read_bytes())
    inter.verify_directly_issued_by(root)
    assert DEV_ORG in leaf.subject.rfc4514_string() and "not for production" in DEV_ORG
    ext = leaf.extensions
    assert ext.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.EMAIL_PROTECTION]
    )
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature
    assert ext.get_extension_for_class(x509.BasicConstraints).value.ca is False
    ext.get_extension_for_class(x509.AuthorityKeyIdentifier)
    ext.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey) and leaf.public_key().curve.name == "secp256r1"


def test_dev_pki_refuses_to_overwrite_without_force(tmp_path):
    first = init_dev_keys(tmp_path)
    before = first.signer_key.read_bytes()
    with pytest.raises(UsageError, match="--force"):
        init_dev_keys(tmp_path)
    assert first.signer_key.read_bytes() == before
    init_dev_keys(tmp_path, force=True)
    assert first.signer_key.read_bytes() != before


def test_loaded_signer_never_shows_the_key(dev_keys_dir, signer):
    secrets = _secret_fragments(dev_keys_dir / "dev-signer.DEVELOPMENT.key.pem")
    shown = " ".join([repr(signer), str(signer.to_dict()), repr(SignerConfig.development_keys(dev_keys_dir))])
    for s in secrets:
        assert s not in shown
    with pytest.raises(TypeError):
        __import__("pickle").dumps(signer)
    assert signer.alg == "es256" and signer.development
    assert signer.leaf.subject.startswith("CN=hallo3-gate DEVELOPMENT signer")


def test_expired_leaf_is_refused(tmp_path, dev_keys_dir):
    chain, key, _ = _write_pair(tmp_path, dev_keys_dir, days=-1, not_before=NOW - dt.timedelta(days=30))
    with pytest.raises(ProvenanceError, match="expired") as err:
        load_signer(SignerConfig.from_pem(chain, key))
    assert str(chain) in str(err.value)


def test_not_yet_valid_leaf_is_refused(tmp_path, dev_keys_dir):
    chain, key, _ = _write_pair(tmp_path, dev_keys_dir, not_before=NOW + dt.timedelta(days=1))
    with pytest.raises(ProvenanceError, match="not valid before"):
        load_signer(SignerConfig.from_pem(chain, key))


@pytest.mark.parametrize(
    "ekus, expected",
    [
        ((ExtendedKeyUsageOID.SERVER_AUTH,), "serverAuth"),
        ((ExtendedKeyUsageOID.CODE_SIGNING,), "codeSigning"),
        ((), "no ExtendedKeyUsage"),
    ],
)
def test_wrong_eku_is_refused(tmp_path, dev_keys_dir, ekus, expected):
    chain, key, _ = _write_pair(tmp_path, dev_keys_dir, ekus=ekus)
    with pytest.raises(ProvenanceError, match="emailProtection") as err:
        load_signer(SignerConfig.from_pem(chain, key))
    assert expected in str(err.value)


def test_key_not_matching_certificate_is_refused_without_leaking_it(tmp_path, dev_keys_dir):
    chain, _, _ = _write_pair(tmp_path, dev_keys_dir)
    other = tmp_path / "other.key.pem"
    other.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(ProvenanceError, match="must match the leaf certificate") as err:
        load_signer(SignerConfig.from_pem(chain, other))
    assert str(other) in str(err.value)
    for s in _secret_fragments(other):
        assert s not in str(err.value)


def test_garbage_key_file_error_does_not_quote_it(tmp_path, dev_keys_dir):
    chain, key, _ = _write_pair(tmp_path, dev_keys_dir)
    body = key.read_text().replace("A", "B", 3)  # a corrupted key: the parser must not echo it back
    key.write_text(body)
    with pytest.raises(ProvenanceError) as err:
        load_signer(SignerConfig.from_pem(chain, key))
    for line in body.splitlines()[1:-1]:
        assert line not in str(err.value)


def test_chain_in_wrong_order_is_refused(tmp_path, dev_keys_dir):
    chain, key, _ = _write_pair(tmp_path, dev_keys_dir)
    leaf, inter = x509.load_pem_x509_certificates(chain.read_bytes())
    chain.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (inter, leaf)))
    with pytest.raises(ProvenanceError):
        load_signer(SignerConfig.from_pem(chain, key))


def test_callback_signer_is_checked_against_the_certificate(tmp_path, dev_keys_dir):
    chain, _, key = _write_pair(tmp_path, dev_keys_dir)
    handle = load_signer(SignerConfig.from_callback(chain, lambda data: key.sign(data, ec.ECDSA(hashes.SHA256()))))
    assert handle.alg == "es256" and "callback" in repr(handle)
    stranger = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ProvenanceError, match="must verify with the leaf public key"):
        load_signer(SignerConfig.from_callback(chain, lambda data: stranger.sign(data, ec.ECDSA(hashes.SHA256()))))


def test_config_from_env(tmp_path, dev_keys_dir):
    chain, key, _ = _write_pair(tmp_path, dev_keys_dir)
    cfg = SignerConfig.from_env({ENV_SIGN_CHAIN: str(chain), ENV_SIGN_KEY: str(key)})
    assert cfg.kind == "pem" and not cfg.development and cfg.key_path == key
    with pytest.raises(UsageError, match=ENV_SIGN_KEY):
        SignerConfig.from_env({ENV_SIGN_CHAIN: str(chain)})
    dev = SignerConfig.from_env({"HALLO3_GATE_KEYS_DIR": str(dev_keys_dir)})
    assert dev.development and dev.chain_path.parent == dev_keys_dir
    missing = SignerConfig.from_env({"HALLO3_GATE_KEYS_DIR": str(tmp_path / "none")})
    with pytest.raises(ProvenanceError, match="keys init"):
        load_signer(missing)


def test_trust_anchor_file_errors_are_usage_errors(tmp_path):
    with pytest.raises(UsageError):
        load_trust_anchors(tmp_path / "absent.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(UsageError):
        load_trust_anchors(junk)
    assert load_trust_anchors(None, env={}) is None
