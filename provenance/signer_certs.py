"""The signer's certificate chain, read from a manifest's COSE signature.

c2pa-python reports the signer's issuer and common name but not the certificates, so validity dates and
fingerprints come from here: JUMBF store -> manifest (by label) -> ``c2pa.signature`` box -> COSE_Sign1 -> ``x5chain``
(header 33). Only public certificates are read. Anything unexpected gives an empty chain, never an exception: the
cryptographic validation is c2pa-rs's job; this is a display aid.
"""

from __future__ import annotations

import struct
from typing import Any

from cryptography import x509

from provenance.keys import CertInfo

_X5CHAIN = 33


def chain_from_store(store: bytes, manifest_label: str | None) -> list[CertInfo]:
    try:
        cose = _signature_cbor(store, manifest_label)
        if cose is None:
            return []
        ders = _x5chain(_cbor_decode(cose))
        return [CertInfo.of(x509.load_der_x509_certificate(d)) for d in ders]
    except (ValueError, IndexError, KeyError, TypeError, struct.error):
        return []


# --- JUMBF --------------------------------------------------------------------------------------------------------------


def _boxes(data: bytes) -> list[tuple[str, bytes]]:
    out, pos = [], 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[pos + 8 : pos + 16])[0], 16
        elif size == 0:
            size = len(data) - pos
        if size < header or pos + size > len(data):
            raise ValueError("bad JUMBF box")
        out.append((kind.decode("latin-1"), data[pos + header : pos + size]))
        pos += size
    return out


def _jumb_label(body: bytes) -> tuple[str | None, list[tuple[str, bytes]]]:
    children = _boxes(body)
    if not children or children[0][0] != "jumd":
        raise ValueError("JUMBF superbox without description")
    desc = children[0][1]
    label = None
    if len(desc) > 16 and desc[16] & 0x02:
        end = desc.index(b"\x00", 17)
        label = desc[17:end].decode("utf-8")
    return label, children[1:]


def _signature_cbor(store: bytes, manifest_label: str | None) -> bytes | None:
    (kind, body), *_ = _boxes(store)
    if kind != "jumb":
        return None
    _, manifests = _jumb_label(body)
    candidates = [(lbl, kids) for lbl, kids in (_jumb_label(b) for k, b in manifests if k == "jumb")]
    if not candidates:
        return None
    chosen = next((kids for lbl, kids in candidates if lbl == manifest_label), candidates[-1][1])
    for kind, body in chosen:
        if kind != "jumb":
            continue
        label, kids = _jumb_label(body)
        if label == "c2pa.signature":
            return next((b for k, b in kids if k == "cbor"), None)
    return None


def _x5chain(cose: Any) -> list[bytes]:
    if isinstance(cose, _Tag):
        cose = cose.value
    protected = _cbor_decode(cose[0]) if cose[0] else {}
    for header in (protected, cose[1]):
        chain = header.get(_X5CHAIN) if isinstance(header, dict) else None
        if isinstance(chain, bytes):
            return [chain]
        if isinstance(chain, list):
            return [c for c in chain if isinstance(c, bytes)]
    return []


# --- a minimal CBOR decoder (definite lengths; what COSE headers use) ---------------------------------------------------


class _Tag:
    def __init__(self, tag: int, value: Any) -> None:
        self.tag, self.value = tag, value


def _cbor_decode(data: bytes) -> Any:
    value, _ = _item(data, 0)
    return value


def _item(data: bytes, pos: int) -> tuple[Any, int]:
    initial = data[pos]
    major, info = initial >> 5, initial & 0x1F
    pos += 1
    if major == 7:
        if info in (20, 21):
            return info == 21, pos
        if info in (22, 23):
            return None, pos
        if info == 25:
            return struct.unpack(">e", data[pos : pos + 2])[0], pos + 2
        if info == 26:
            return struct.unpack(">f", data[pos : pos + 4])[0], pos + 4
        if info == 27:
            return struct.unpack(">d", data[pos : pos + 8])[0], pos + 8
        raise ValueError("unsupported CBOR simple value")
    if info < 24:
        arg = info
    elif info in (24, 25, 26, 27):
        n = 1 << (info - 24)
        arg = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    else:
        raise ValueError("indefinite CBOR lengths are not supported")
    if major == 0:
        return arg, pos
    if major == 1:
        return -1 - arg, pos
    if major in (2, 3):
        raw = data[pos : pos + arg]
        if len(raw) != arg:
            raise ValueError("CBOR string cut off")
        return (raw if major == 2 else raw.decode("utf-8")), pos + arg
    if major == 4:
        items = []
        for _ in range(arg):
            v, pos = _item(data, pos)
            items.append(v)
        return items, pos
    if major == 5:
        mapping = {}
        for _ in range(arg):
            k, pos = _item(data, pos)
            v, pos = _item(data, pos)
            mapping[k if not isinstance(k, list | dict) else repr(k)] = v
        return mapping, pos
    value, pos = _item(data, pos)
    return _Tag(arg, value), pos
