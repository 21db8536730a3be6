"""A local RFC 3161 time-stamp authority for tests: HTTP on 127.0.0.1, answers every TimeStampReq with a token whose
genTime is the one the test chose (so the expected time comes from the test, not from the code under test).

Minimal DER on purpose (no ASN.1 package in the environment): it parses the request's messageImprint and nonce and
writes TimeStampResp { status granted, ContentInfo(SignedData(TSTInfo)) } signed ES256 with signed attributes
contentType, messageDigest and signingCertificateV2, the TSA certificate (EKU timeStamping, critical) issued by the
development intermediate CA.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provenance.keys import DEV_INTERMEDIATE_CERT, DEV_INTERMEDIATE_KEY

OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_TST_INFO = "1.2.840.113549.1.9.16.1.4"
OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
OID_SIGNING_CERT_V2 = "1.2.840.113549.1.9.16.2.47"
OID_SHA256 = "2.16.840.1.101.3.4.2.1"
OID_ECDSA_SHA256 = "1.2.840.10045.4.3.2"
OID_TEST_POLICY = "1.3.6.1.4.1.4146.1.2"  # any policy OID; the verifier does not interpret it


# --- DER ------------------------------------------------------------------------------------------------------------


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _len(len(content)) + content


def seq(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


def der_set(*items: bytes) -> bytes:
    return tlv(0x31, b"".join(sorted(items)))  # DER: SET OF sorted by encoding


def integer(n: int) -> bytes:
    body = n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big", signed=True)
    return tlv(0x02, body)


def octets(b: bytes) -> bytes:
    return tlv(0x04, b)


def oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        out.extend(reversed(chunk))
    return tlv(0x06, bytes(out))


def gentime(t: dt.datetime) -> bytes:
    return tlv(0x18, t.astimezone(dt.UTC).strftime("%Y%m%d%H%M%SZ").encode())


def explicit(n: int, content: bytes) -> bytes:
    return tlv(0xA0 + n, content)


def read_tlv(data: bytes, pos: int = 0) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the element at ``pos``."""
    tag = data[pos]
    first = data[pos + 1]
    if first < 0x80:
        return tag, pos + 2, pos + 2 + first
    n = first & 0x7F
    length = int.from_bytes(data[pos + 2 : pos + 2 + n], "big")
    return tag, pos + 2 + n, pos + 2 + n + length


def children(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, element start, content start, content end) of each element in data[start:end]."""
    out = []
    pos = start
    while pos < end:
        tag, cs, ce = read_tlv(data, pos)
        out.append((tag, pos, cs, ce))
        pos = ce
    return out


# --- the authority ----------------------------------------------------------------------------------------------------


@dataclass
class LocalTsa:
    keys_dir: Path
    gen_time: dt.datetime
    requests: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        inter = x509.load_pem_x509_certificate((self.keys_dir / DEV_INTERMEDIATE_CERT).read_bytes())
        inter_key = serialization.load_pem_private_key((self.keys_dir / DEV_INTERMEDIATE_KEY).read_bytes(), None)
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hallo3-gate TEST time-stamp authority")]))
            .issuer_name(inter.subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(inter.public_key()), critical=False)
            .sign(inter_key, hashes.SHA256())
        )
        self.chain_der = [
            self.cert.public_bytes(serialization.Encoding.DER),
            inter.public_bytes(serialization.Encoding.DER),
        ]
        self.serial = 1

    def respond(self, request: bytes) -> bytes:
        self.requests.append(request)
        _, cs, ce = read_tlv(request)
        parts = children(request, cs, ce)
        imprint = request[parts[1][1] : parts[1][3]]  # messageImprint, copied as is
        nonce = next((request[p[1] : p[3]] for p in parts[2:] if p[0] == 0x02), None)
        self.serial += 1
        tst = seq(
            integer(1),
            oid(OID_TEST_POLICY),
            imprint,
            integer(self.serial),
            gentime(self.gen_time),
            *([nonce] if nonce else []),
        )
        sha256 = seq(oid(OID_SHA256))
        ess = seq(seq(seq(octets(hashlib.sha256(self.chain_der[0]).digest()))))
        attrs = [
            seq(oid(OID_CONTENT_TYPE), der_set(oid(OID_TST_INFO))),
            seq(oid(OID_MESSAGE_DIGEST), der_set(octets(hashlib.sha256(tst).digest()))),
            seq(oid(OID_SIGNING_CERT_V2), der_set(ess)),
        ]
        signed_attrs = der_set(*attrs)
        signature = self.key.sign(signed_attrs, ec.ECDSA(hashes.SHA256()))
        issuer_and_serial = seq(self.cert.issuer.public_bytes(), integer(self.cert.serial_number))
        signer_info = seq(
            integer(1),
            issuer_and_serial,
            sha256,
            tlv(0xA0, signed_attrs[_len_prefix(signed_attrs) :]),  # [0] IMPLICIT SET OF Attribute
            seq(oid(OID_ECDSA_SHA256)),
            octets(signature),
        )
        signed_data = seq(
            integer(3),
            der_set(sha256),
            seq(oid(OID_TST_INFO), explicit(0, octets(tst))),
            tlv(0xA0, b"".join(self.chain_der)),
            der_set(signer_info),
        )
        token = seq(oid(OID_SIGNED_DATA), explicit(0, signed_data))
        return seq(seq(integer(0)), token)

    def serve(self) -> tuple[str, ThreadingHTTPServer]:
        tsa = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the name http.server dispatches a POST to
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                answer = tsa.respond(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}/tsa", server


def _len_prefix(element: bytes) -> int:
    """How many bytes the tag and length of a DER element take."""
    _, cs, _ = read_tlv(element)
    return cs
