"""Signing credentials: a development PKI, production PEM files or a KMS/HSM callback, and trust anchors.

c2pa-rs (0.91.3) signs only with a certificate it would itself accept: an end-entity leaf (BasicConstraints CA=false)
with ExtendedKeyUsage emailProtection, KeyUsage digitalSignature, an AuthorityKeyIdentifier, issued by a CA whose
certificate follows it in the chain PEM (leaf first). ``load_signer`` checks all of that up front, with the file and
the rule named, so a bad credential fails before any video is touched rather than deep inside the native signer.

A private key is held only inside ``SignerHandle`` (never in its ``repr``, ``to_dict`` or any error message).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import c2pa
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from reports.atomic import write_bytes_atomic
from reports.errors import ProvenanceError, UsageError

ENV_KEYS_DIR = "HALLO3_GATE_KEYS_DIR"
ENV_SIGN_CHAIN = "HALLO3_GATE_SIGN_CHAIN"
ENV_SIGN_KEY = "HALLO3_GATE_SIGN_KEY"
ENV_TRUST_ANCHORS = "HALLO3_GATE_TRUST_ANCHORS"
ENV_TSA_URL = "HALLO3_GATE_TSA_URL"

DEV_ORG = "hallo3-gate DEVELOPMENT - not for production"
DEV_ROOT_CERT = "dev-root-ca.DEVELOPMENT.crt.pem"
DEV_ROOT_KEY = "dev-root-ca.DEVELOPMENT.key.pem"
DEV_INTERMEDIATE_CERT = "dev-intermediate-ca.DEVELOPMENT.crt.pem"
DEV_INTERMEDIATE_KEY = "dev-intermediate-ca.DEVELOPMENT.key.pem"
DEV_SIGNER_CHAIN = "dev-signer.DEVELOPMENT.chain.pem"
DEV_SIGNER_KEY = "dev-signer.DEVELOPMENT.key.pem"

# ExtendedKeyUsage values c2pa-rs 0.91.3 signs with by default (measured: documentSigning and the C2PA OID alone fail
# unless a trust_config lists them, serverAuth/codeSigning/anyExtendedKeyUsage always fail).
ACCEPTED_EKUS = {ExtendedKeyUsageOID.EMAIL_PROTECTION.dotted_string: "emailProtection"}


def default_keys_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get(ENV_KEYS_DIR):
        return Path(env[ENV_KEYS_DIR]).expanduser()
    base = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "hallo3-gate" / "dev-keys"


# --- certificate facts (public; safe to log) -------------------------------------------------------------------------


@dataclass(frozen=True)
class CertInfo:
    """Public facts about a certificate: what a report may show (never key material)."""

    subject: str
    issuer: str
    common_name: str
    serial: str
    not_before: str
    not_after: str
    sha256: str
    ekus: tuple[str, ...]

    @classmethod
    def of(cls, cert: x509.Certificate) -> CertInfo:
        return cls(
            subject=cert.subject.rfc4514_string(),
            issuer=cert.issuer.rfc4514_string(),
            common_name=_common_name(cert),
            serial=format(cert.serial_number, "x"),
            not_before=cert.not_valid_before_utc.isoformat(),
            not_after=cert.not_valid_after_utc.isoformat(),
            sha256=cert.fingerprint(hashes.SHA256()).hex(),
            ekus=tuple(_eku_names(cert)),
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "common_name": self.common_name,
            "serial": self.serial,
            "not_before": self.not_before,
            "not_after": self.not_after,
            "sha256": self.sha256,
            "ekus": list(self.ekus),
        }


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def _eku_names(cert: x509.Certificate) -> list[str]:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return []
    return [getattr(oid, "_name", None) or oid.dotted_string for oid in eku]


# --- configuration -----------------------------------------------------------------------------------------------------

SignCallback = Callable[[bytes], bytes]


@dataclass(frozen=True)
class SignerConfig:
    """Which credentials sign. ``kind`` is "pem" (chain + key files; the development PKI is PEM files too) or
    "callback" (a KMS/HSM signs: ``callback(data) -> signature``; only the chain is a file here)."""

    kind: str
    chain_path: Path
    key_path: Path | None = None
    callback: SignCallback | None = field(default=None, repr=False, compare=False)
    alg: str | None = None  # "es256" ...; derived from the key (or the leaf's public key for a callback) when None
    tsa_url: str | None = None
    development: bool = False

    @classmethod
    def from_pem(cls, chain: str | os.PathLike[str], key: str | os.PathLike[str], *, tsa_url: str | None = None):
        return cls(kind="pem", chain_path=Path(chain), key_path=Path(key), tsa_url=tsa_url)

    @classmethod
    def from_callback(
        cls,
        chain: str | os.PathLike[str],
        callback: SignCallback,
        *,
        alg: str | None = None,
        tsa_url: str | None = None,
    ) -> SignerConfig:
        return cls(kind="callback", chain_path=Path(chain), callback=callback, alg=alg, tsa_url=tsa_url)

    @classmethod
    def development_keys(cls, directory: str | os.PathLike[str] | None = None) -> SignerConfig:
        d = Path(directory) if directory is not None else default_keys_dir()
        return cls(
            kind="pem", chain_path=d / DEV_SIGNER_CHAIN, key_path=d / DEV_SIGNER_KEY, development=True, tsa_url=None
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SignerConfig:
        """Production PEM files when ``HALLO3_GATE_SIGN_CHAIN`` and ``HALLO3_GATE_SIGN_KEY`` are set, otherwise the
        development keys in ``HALLO3_GATE_KEYS_DIR`` (default ``~/.config/hallo3-gate/dev-keys``)."""
        env = os.environ if env is None else env
        chain, key, tsa = env.get(ENV_SIGN_CHAIN), env.get(ENV_SIGN_KEY), env.get(ENV_TSA_URL) or None
        if bool(chain) != bool(key):
            given, missing = (ENV_SIGN_CHAIN, ENV_SIGN_KEY) if chain else (ENV_SIGN_KEY, ENV_SIGN_CHAIN)
            raise UsageError(missing, f"must be set together with {given}, which is set", "unset")
        if chain and key:
            return cls.from_pem(Path(chain).expanduser(), Path(key).expanduser(), tsa_url=tsa)
        dev = cls.development_keys(default_keys_dir(env))
        return SignerConfig(**{**dev.__dict__, "tsa_url": tsa})

    def describe(self) -> str:
        what = "development keys" if self.development else ("KMS/HSM callback" if self.kind == "callback" else "PEM")
        return f"{what}, chain {self.chain_path}"


# --- the loaded signer -------------------------------------------------------------------------------------------------


class SignerHandle:
    """Validated signing credentials. Makes a fresh ``c2pa.Signer`` per signature (a Signer is consumed by use in a
    Context); the private key stays in a private slot and is never shown."""

    __slots__ = ("_callback", "_key_pem", "alg", "chain", "chain_pem", "development", "leaf", "tsa_url")

    def __init__(
        self,
        *,
        alg: str,
        chain_pem: bytes,
        chain: tuple[CertInfo, ...],
        tsa_url: str | None,
        development: bool,
        key_pem: bytes | None = None,
        callback: SignCallback | None = None,
    ) -> None:
        self.alg = alg
        self.chain_pem = chain_pem
        self.chain = chain
        self.leaf = chain[0]
        self.tsa_url = tsa_url
        self.development = development
        self._key_pem = key_pem
        self._callback = callback

    def __repr__(self) -> str:
        kind = "callback" if self._callback is not None else "pem"
        return f"SignerHandle(alg={self.alg!r}, kind={kind!r}, subject={self.leaf.subject!r}, dev={self.development})"

    def __reduce__(self):  # a handle holding a key must not be pickled into a log, cache or worker
        raise TypeError("SignerHandle holds a private key and cannot be pickled")

    def c2pa_signer(self) -> c2pa.Signer:
        alg = getattr(c2pa.C2paSigningAlg, self.alg.upper())
        if self._callback is not None:
            return c2pa.Signer.from_callback(self._callback, alg, self.chain_pem.decode("ascii"), self.tsa_url)
        info = c2pa.C2paSignerInfo(alg, self.chain_pem, self._key_pem, self.tsa_url.encode() if self.tsa_url else None)
        return c2pa.Signer.from_info(info)

    @property
    def kind(self) -> str:
        """Where the key is: "pem" (held here) or "callback" (a KMS/HSM signs; the key never leaves it)."""
        return "callback" if self._callback is not None else "pem"

    def local_signer_settings(self) -> dict[str, object] | None:
        """The c2pa-rs ``Settings`` form of this signer (``{"alg", "sign_cert", "private_key", "tsa_url"}``, the shape
        of the ``signer.local`` and ``cawg_x509_signer.local`` tables), or None for a callback signer, whose key is not
        here. It HOLDS THE PRIVATE KEY: hand it only to ``c2pa.Settings``; never log, print or store it."""
        if self._callback is not None or self._key_pem is None:
            return None
        return {
            "alg": self.alg,
            "sign_cert": self.chain_pem.decode("ascii"),
            "private_key": self._key_pem.decode("ascii"),
            "tsa_url": self.tsa_url,
        }

    def to_dict(self) -> dict[str, object]:
        return {
            "alg": self.alg,
            "kind": self.kind,
            "development": self.development,
            "tsa_url": self.tsa_url,
            "leaf": self.leaf.to_dict(),
            "chain": [c.to_dict() for c in self.chain[1:]],
        }


def load_signer(config: SignerConfig, *, now: dt.datetime | None = None) -> SignerHandle:
    """Read and check the credentials; every problem is a ``ProvenanceError`` naming the file, the rule, the value."""
    now = now or dt.datetime.now(dt.UTC)
    if config.kind not in ("pem", "callback"):
        raise UsageError("signer kind", "must be 'pem' or 'callback'", config.kind)
    if config.development and not config.chain_path.exists():
        raise ProvenanceError(
            str(config.chain_path),
            f"no signing credentials: set {ENV_SIGN_CHAIN}/{ENV_SIGN_KEY} or run `hallo3-gate keys init`",
            "file absent",
        )
    chain_pem = _read_file(config.chain_path, "certificate chain")
    certs = _parse_chain(config.chain_path, chain_pem)
    _check_leaf(config.chain_path, certs[0], now)
    _check_chain_order(config.chain_path, certs, now)
    leaf_key = certs[0].public_key()
    if config.kind == "pem":
        if config.key_path is None:
            raise UsageError("signer key", "a PEM signer needs a private key file", None)
        key_pem = _read_file(config.key_path, "private key")
        key = _parse_key(config.key_path, key_pem)
        if _public_der(key.public_key()) != _public_der(leaf_key):
            raise ProvenanceError(
                str(config.key_path),
                f"private key must match the leaf certificate of {config.chain_path}",
                f"a different key (leaf {certs[0].subject.rfc4514_string()})",
            )
        alg = _alg_for(config.key_path, key.public_key(), config.alg)
        return SignerHandle(
            alg=alg,
            chain_pem=_pem_of(certs),
            chain=tuple(CertInfo.of(c) for c in certs),
            tsa_url=_check_tsa(config.tsa_url),
            development=config.development,
            key_pem=key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
    if config.callback is None:
        raise UsageError("signer callback", "a callback signer needs a callable", None)
    alg = _alg_for(config.chain_path, leaf_key, config.alg)
    _check_callback(config.chain_path, config.callback, leaf_key, alg)
    return SignerHandle(
        alg=alg,
        chain_pem=_pem_of(certs),
        chain=tuple(CertInfo.of(c) for c in certs),
        tsa_url=_check_tsa(config.tsa_url),
        development=config.development,
        callback=config.callback,
    )


def _read_file(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ProvenanceError(str(path), f"{what} file must exist", "no such file") from None
    except OSError as exc:
        raise ProvenanceError(str(path), f"{what} file must be readable", type(exc).__name__) from None
    if not data.strip():
        raise ProvenanceError(str(path), f"{what} file must be PEM", "an empty file")
    return data


def _parse_chain(path: Path, data: bytes) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ProvenanceError(str(path), "must hold PEM certificates (leaf first)", "no parsable certificate") from None
    if not certs:
        raise ProvenanceError(str(path), "must hold PEM certificates (leaf first)", "no certificate")
    return certs


def _parse_key(path: Path, data: bytes):
    # The parser's own message may quote the input, so only the exception type is shown.
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ProvenanceError(str(path), "private key must not be password-protected", "an encrypted key") from None
    except (ValueError, Exception) as exc:
        raise ProvenanceError(str(path), "must hold one unencrypted PEM private key", type(exc).__name__) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey):
        raise ProvenanceError(str(path), "key type must be EC P-256/384/521, Ed25519 or RSA", type(key).__name__)
    return key


def _public_der(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _alg_for(path: Path, public_key, requested: str | None) -> str:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        by_curve = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        alg = by_curve.get(public_key.curve.name)
        if alg is None:
            raise ProvenanceError(str(path), "EC key curve must be P-256, P-384 or P-521", public_key.curve.name)
    elif isinstance(public_key, ed25519.Ed25519PublicKey):
        alg = "ed25519"
    elif isinstance(public_key, rsa.RSAPublicKey):
        alg = requested.lower() if requested and requested.lower().startswith("ps") else "ps256"
    else:
        raise ProvenanceError(str(path), "key type must be EC, Ed25519 or RSA", type(public_key).__name__)
    if requested is not None and requested.lower() != alg:
        raise ProvenanceError(str(path), f"signing algorithm must fit the key ({alg})", requested)
    return alg


def _check_leaf(path: Path, leaf: x509.Certificate, now: dt.datetime) -> None:
    subject = leaf.subject.rfc4514_string()
    if now < leaf.not_valid_before_utc:
        raise ProvenanceError(
            str(path), f"leaf certificate {subject} must be valid now", f"not valid before {leaf.not_valid_before_utc}"
        )
    if now > leaf.not_valid_after_utc:
        raise ProvenanceError(
            str(path), f"leaf certificate {subject} must be valid now", f"expired {leaf.not_valid_after_utc}"
        )
    ext = leaf.extensions
    try:
        bc = ext.get_extension_for_class(x509.BasicConstraints).value
        if bc.ca:
            raise ProvenanceError(str(path), "leaf certificate must not be a CA (BasicConstraints CA=false)", "CA=true")
    except x509.ExtensionNotFound:
        pass
    try:
        eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise ProvenanceError(
            str(path), "leaf certificate needs ExtendedKeyUsage emailProtection", "no ExtendedKeyUsage"
        ) from None
    if not any(oid.dotted_string in ACCEPTED_EKUS for oid in eku):
        got = ", ".join(getattr(o, "_name", None) or o.dotted_string for o in eku) or "empty"
        raise ProvenanceError(str(path), "leaf ExtendedKeyUsage must include emailProtection", got)
    try:
        ku = ext.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise ProvenanceError(str(path), "leaf certificate needs KeyUsage digitalSignature", "no KeyUsage") from None
    if not (ku.digital_signature or ku.content_commitment):
        raise ProvenanceError(
            str(path), "leaf KeyUsage must include digitalSignature", "digitalSignature and nonRepudiation absent"
        )
    try:
        ext.get_extension_for_class(x509.AuthorityKeyIdentifier)
    except x509.ExtensionNotFound:
        raise ProvenanceError(
            str(path), "leaf certificate needs an AuthorityKeyIdentifier", "no AuthorityKeyIdentifier"
        ) from None


def _check_chain_order(path: Path, certs: list[x509.Certificate], now: dt.datetime) -> None:
    if len(certs) == 1 and certs[0].issuer == certs[0].subject:
        raise ProvenanceError(str(path), "leaf certificate must be issued by a CA, not self-signed", "self-signed")
    for i, (child, parent) in enumerate(itertools.pairwise(certs)):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature):
            raise ProvenanceError(
                str(path),
                f"chain must be ordered leaf first, each certificate issued by the next (position {i} -> {i + 1})",
                f"{child.subject.rfc4514_string()} not issued by {parent.subject.rfc4514_string()}",
            ) from None
        if not parent.not_valid_before_utc <= now <= parent.not_valid_after_utc:
            raise ProvenanceError(
                str(path),
                f"CA certificate {parent.subject.rfc4514_string()} must be valid now",
                f"valid {parent.not_valid_before_utc} .. {parent.not_valid_after_utc}",
            )


def _check_tsa(url: str | None) -> str | None:
    if url and not url.startswith(("http://", "https://")):
        raise UsageError(ENV_TSA_URL, "must be an http(s) URL of an RFC 3161 time-stamp authority", url)
    return url or None


def _check_callback(path: Path, callback: SignCallback, public_key, alg: str) -> None:
    """Sign a probe with the callback and verify it with the leaf's public key: a KMS key that does not match the
    certificate is caught here, not in every manifest it would sign."""
    probe = b"hallo3-gate signer probe " + hashlib.sha256(_public_der(public_key)).digest()
    try:
        sig = bytes(callback(probe))
    except Exception as exc:
        raise ProvenanceError("signer callback", "must sign a probe message", type(exc).__name__) from None
    try:
        _verify_signature(public_key, alg, sig, probe)
    except (InvalidSignature, ValueError):
        raise ProvenanceError(
            "signer callback", f"signature must verify with the leaf public key of {path}", "a non-matching signature"
        ) from None


def _verify_signature(public_key, alg: str, sig: bytes, data: bytes) -> None:
    digests = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}
    if alg == "ed25519":
        public_key.verify(sig, data)
    elif alg.startswith("es"):
        digest = digests[alg[2:]]
        size = (public_key.curve.key_size + 7) // 8
        if len(sig) == 2 * size:  # raw r||s (what COSE carries); DER is accepted too
            sig = encode_dss_signature(int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big"))
        public_key.verify(sig, data, ec.ECDSA(digest))
    else:
        digest = digests[alg[2:]]
        public_key.verify(sig, data, padding.PSS(padding.MGF1(digest), digest.digest_size), digest)


def _pem_of(certs: list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


# --- trust anchors -----------------------------------------------------------------------------------------------------


def load_trust_anchors(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> bytes | None:
    """PEM trust anchors for reading: ``path``, else ``HALLO3_GATE_TRUST_ANCHORS``, else None (built-in list only)."""
    env = os.environ if env is None else env
    chosen = Path(path) if path is not None else (Path(env[ENV_TRUST_ANCHORS]) if env.get(ENV_TRUST_ANCHORS) else None)
    if chosen is None:
        return None
    try:
        data = _read_file(chosen, "trust anchor")
        _parse_chain(chosen, data)
    except ProvenanceError as exc:  # a bad --trust argument is a usage error, not a verification result
        raise UsageError(exc.subject, exc.rule, exc.value) from None
    return data


# --- development PKI ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DevKeys:
    directory: Path
    root_cert: Path
    intermediate_cert: Path
    signer_chain: Path
    signer_key: Path

    def to_dict(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.__dict__.items()}


def dev_keys_paths(directory: Path) -> DevKeys:
    return DevKeys(
        directory=directory,
        root_cert=directory / DEV_ROOT_CERT,
        intermediate_cert=directory / DEV_INTERMEDIATE_CERT,
        signer_chain=directory / DEV_SIGNER_CHAIN,
        signer_key=directory / DEV_SIGNER_KEY,
    )


def init_dev_keys(
    directory: str | os.PathLike[str] | None = None,
    *,
    force: bool = False,
    now: dt.datetime | None = None,
    leaf_days: int = 825,
) -> DevKeys:
    """Make root CA -> intermediate CA -> ES256 leaf in ``directory`` (private keys mode 0600). Refuses to replace
    existing keys unless ``force``."""
    d = Path(directory) if directory is not None else default_keys_dir()
    if (d.exists() or d.is_symlink()) and not d.is_dir():
        raise UsageError(str(d), "must be a directory for the development keys (or not exist yet)", "not a directory")
    paths = dev_keys_paths(d)
    if paths.signer_key.exists() and not force:
        raise UsageError(str(d), "development keys already exist here; pass --force to replace them", "existing keys")
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = now or dt.datetime.now(dt.UTC)
    root_key, inter_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _ca_cert("hallo3-gate DEVELOPMENT root CA", root_key, None, None, now, 3650, path_len=1)
    inter = _ca_cert("hallo3-gate DEVELOPMENT intermediate CA", inter_key, root, root_key, now, 1825, path_len=0)
    leaf = leaf_cert("hallo3-gate DEVELOPMENT signer", leaf_key.public_key(), inter, inter_key, now, leaf_days)
    _write_key(d / DEV_ROOT_KEY, root_key)
    _write_key(d / DEV_INTERMEDIATE_KEY, inter_key)
    _write_key(paths.signer_key, leaf_key)
    for path, certs in (
        (paths.root_cert, [root]),
        (paths.intermediate_cert, [inter]),
        (paths.signer_chain, [leaf, inter]),
    ):
        write_bytes_atomic(path, _pem_of(certs))
        os.chmod(path, 0o644)  # certificates are public
    return paths


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, DEV_ORG), x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )


def _ca_cert(cn, key, issuer_cert, issuer_key, now, days, *, path_len):
    name = _name(cn)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_cert.subject if issuer_cert is not None else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_len), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # keyCertSign, cRLSign
        .add_extension(ski, critical=False)
    )
    signing_key = issuer_key if issuer_key is not None else key
    aki_source = issuer_key.public_key() if issuer_key is not None else key.public_key()
    builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(aki_source), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def leaf_cert(
    cn: str,
    public_key,
    issuer_cert: x509.Certificate,
    issuer_key,
    now: dt.datetime,
    days: int,
    *,
    ekus: tuple[x509.ObjectIdentifier, ...] = (ExtendedKeyUsageOID.EMAIL_PROTECTION,),
    not_before: dt.datetime | None = None,
) -> x509.Certificate:
    """An end-entity signing certificate as c2pa-rs wants it (also used by tests to make bad ones)."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )  # digitalSignature
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_cert.public_key()), critical=False)
    )
    if ekus:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_key(path: Path, key) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    tmp = path.with_name(f".{path.name}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def dev_trust_anchor(config: SignerConfig) -> bytes | None:
    """The development root next to development keys (so their own output reads Trusted), else None."""
    if not config.development:
        return None
    root = config.chain_path.parent / DEV_ROOT_CERT
    return root.read_bytes() if root.exists() else None
