"""C2PA manifests for MP4 files (c2pa-python 0.38.1 / c2pa-rs 0.91.3): build + sign, and read + validate.

The manifest says: this video was created by a trained algorithm (``c2pa.created`` with IPTC digitalSourceType
``trainedAlgorithmicMedia``) from a portrait and an audio ingredient, carries an invisible watermark
(``c2pa.watermarked`` plus a ``c2pa.soft-binding`` assertion naming method and payload), must not be used for AI
training or data mining (``c2pa.training-mining`` and ``cawg.training-mining``), and passed (or failed) the gate with
the results in ``org.hallo3-gate.results``.

The hard binding (``c2pa.hash.bmff.v3``) covers every byte outside the manifest box, so signing must be the last
write: any re-encode or remux afterwards drops or breaks the manifest.
"""

from __future__ import annotations

import base64
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import c2pa

from provenance.bmff import read_c2pa_store, top_level_boxes
from provenance.signer_certs import chain_from_store
from reports.atomic import atomic_path
from reports.errors import InputError, ProvenanceError, UsageError

if TYPE_CHECKING:
    from provenance.keys import SignerHandle

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
GATE_RESULTS_LABEL = "org.hallo3-gate.results"
SOFT_BINDING_LABEL = "c2pa.soft-binding"
MP4_MIME = "video/mp4"
TRAINING_USES = ("allowed", "notAllowed", "constrained")
_TRAINING_KEYS = ("ai_generative_training", "ai_inference", "ai_training", "data_mining")
_SIGN_SETTINGS = {"builder": {"thumbnail": {"enabled": False}}}
VALID_STATES = ("Trusted", "Valid")
# c2pa-rs reads and writes 8 KiB at a time through Python callbacks; a large buffer saves ~1/3 of the signing time.
_IO_BUFFER = 1 << 20


def _tool_version() -> str:
    try:
        from importlib.metadata import version

        return version("hallo3-gate")
    except Exception:
        return "0+unknown"


# --- signing -----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignResult:
    path: Path
    manifest_bytes: int
    alg: str
    signer_subject: str
    development_key: bool
    soft_binding_alg: str
    soft_binding_hex: str
    assertion_labels: tuple[str, ...]
    ingredients: tuple[str, ...]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "manifest_bytes": self.manifest_bytes,
            "alg": self.alg,
            "signer_subject": self.signer_subject,
            "development_key": self.development_key,
            "soft_binding": {"alg": self.soft_binding_alg, "payload": self.soft_binding_hex},
            "assertion_labels": list(self.assertion_labels),
            "ingredients": list(self.ingredients),
            "seconds": round(self.seconds, 4),
        }


def sign_mp4(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    signer: SignerHandle,
    portrait: Path | None,
    audio: Path | None,
    watermark_payload: bytes,
    gate_results: dict[str, Any] | None,
    title: str,
    generator: dict[str, Any] | None = None,
    watermark_method: str | None = None,
    training_mining: str = "notAllowed",
) -> SignResult:
    """Sign ``src`` into ``dst`` (which may be ``src``): written to a temporary file beside ``dst``, then renamed, so
    ``dst`` is either the complete signed file or untouched."""
    t0 = time.perf_counter()
    src, dst = Path(src), Path(dst)
    top_level_boxes(src)  # a clear InputError for a non-MP4 or truncated file, before c2pa sees it
    if not watermark_payload:
        raise UsageError("watermark_payload", "must be the non-empty payload embedded in the frames", "empty")
    if watermark_method is None:
        from provenance.watermark import METHOD as watermark_method
    ingredients = [(label, Path(p)) for label, p in (("portrait", portrait), ("audio", audio)) if p is not None]
    definition = build_manifest(
        title=title,
        ingredient_labels=[label for label, _ in ingredients],
        watermark_method=watermark_method,
        watermark_payload=watermark_payload,
        gate_results=gate_results,
        generator=generator,
        training_mining=training_mining,
    )
    context = c2pa.Context(settings=c2pa.Settings.from_dict(_SIGN_SETTINGS))
    try:
        builder = c2pa.Builder(definition, context=context)
        for label, path in ingredients:
            mime = ingredient_mime(path)
            with open(path, "rb") as fh:
                builder.add_ingredient({"title": path.name, "relationship": "inputTo", "label": label}, mime, fh)
        c2pa_signer = signer.c2pa_signer()
    except c2pa.C2paError as exc:
        raise ProvenanceError(str(dst), "C2PA manifest must build", _c2pa_message(exc)) from None
    try:
        with (
            atomic_path(dst, suffix=".c2pa.part") as tmp,
            open(src, "rb", buffering=_IO_BUFFER) as fin,
            open(tmp, "w+b", buffering=_IO_BUFFER) as fout,
        ):
            manifest = builder.sign(c2pa_signer, MP4_MIME, fin, fout)
            fout.flush()
            os.fsync(fout.fileno())
    except c2pa.C2paError as exc:
        raise ProvenanceError(str(src), "C2PA signing must succeed", _c2pa_message(exc)) from None
    finally:
        c2pa_signer.close()
        builder.close()
    return SignResult(
        path=dst,
        manifest_bytes=len(manifest),
        alg=signer.alg,
        signer_subject=signer.leaf.subject,
        development_key=signer.development,
        soft_binding_alg=watermark_method,
        soft_binding_hex=watermark_payload.hex(),
        assertion_labels=tuple(a["label"] for a in definition["assertions"]),
        ingredients=tuple(p.name for _, p in ingredients),
        seconds=time.perf_counter() - t0,
    )


def build_manifest(
    *,
    title: str,
    ingredient_labels: list[str],
    watermark_method: str,
    watermark_payload: bytes,
    gate_results: dict[str, Any] | None,
    generator: dict[str, Any] | None,
    training_mining: str = "notAllowed",
) -> dict[str, Any]:
    """The manifest definition handed to ``c2pa.Builder`` (ingredients are added to the builder separately)."""
    if training_mining not in TRAINING_USES:
        raise UsageError("training_mining", f"must be one of {', '.join(TRAINING_USES)}", training_mining)
    tool = {"name": "hallo3-gate", "version": _tool_version()}
    created: dict[str, Any] = {"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA}
    if generator:
        created["softwareAgent"] = _json_checked("generator", generator)
    if ingredient_labels:
        created["parameters"] = {"ingredientIds": list(ingredient_labels)}
    watermarked = {
        "action": "c2pa.watermarked",
        "softwareAgent": tool,
        "description": f"invisible watermark {watermark_method} embedded in every frame",
    }
    assertions: list[dict[str, Any]] = [
        {"label": "c2pa.actions", "data": {"actions": [created, watermarked]}},
        {"label": "c2pa.training-mining", "data": _training("c2pa", training_mining)},
        {"label": "cawg.training-mining", "data": _training("cawg", training_mining)},
        {
            "label": SOFT_BINDING_LABEL,
            "data": {"alg": watermark_method, "blocks": [{"scope": {}, "value": list(watermark_payload)}], "pad": []},
            "created": True,
        },
    ]
    if gate_results is not None:
        assertions.append(
            {"label": GATE_RESULTS_LABEL, "data": _json_checked("gate_results", gate_results), "created": True}
        )
    return {"claim_generator_info": [tool], "title": title, "format": MP4_MIME, "assertions": assertions}


def _training(namespace: str, use: str) -> dict[str, Any]:
    return {"entries": {f"{namespace}.{key}": {"use": use} for key in _TRAINING_KEYS}}


def _json_checked(name: str, value: dict[str, Any]) -> dict[str, Any]:
    """Strict JSON (no NaN/Infinity): what lands in a signed manifest must read back as written. A violation is a
    ``ProvenanceError`` (the manifest cannot be made), so a gate quarantines rather than crashes."""
    bad = _first_non_finite(value, name)
    if bad is not None:
        raise ProvenanceError(
            bad, "manifest data must be finite JSON (null for a value that was not measured)", "NaN or Infinity"
        )
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ProvenanceError(name, "manifest data must be JSON-serialisable", str(exc)) from None


def _first_non_finite(value: Any, where: str) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return where
    if isinstance(value, dict):
        for k, v in value.items():
            found = _first_non_finite(v, f"{where}.{k}")
            if found:
                return found
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found = _first_non_finite(v, f"{where}[{i}]")
            if found:
                return found
    return None


# --- ingredients: the one list of portrait and speech formats the gate accepts -------------------------------------


@dataclass(frozen=True)
class IngredientFormat:
    mime: str
    kind: str  # "image" (the portrait) or "audio" (the speech)
    name: str  # what a person calls it


# Each was signed as an ingredient and read back Valid with c2pa-python 0.38.1 / c2pa-rs 0.91.3 (the test signs one
# of each). The SDK parses JPEG, PNG, GIF, WebP, TIFF, WAV, MP3, FLAC and M4A (for a manifest they may carry) and
# records Ogg, which it cannot parse, by format and title like any other. ``gate.media`` validates the portrait and
# the speech against this table before any work, so signing never meets a format it cannot name.
INGREDIENT_FORMATS = (
    IngredientFormat("image/jpeg", "image", "JPEG"),
    IngredientFormat("image/png", "image", "PNG"),
    IngredientFormat("image/gif", "image", "GIF"),
    IngredientFormat("image/webp", "image", "WebP"),
    IngredientFormat("image/tiff", "image", "TIFF"),
    IngredientFormat("audio/wav", "audio", "WAV"),
    IngredientFormat("audio/mpeg", "audio", "MP3"),
    IngredientFormat("audio/flac", "audio", "FLAC"),
    IngredientFormat("audio/mp4", "audio", "M4A"),
    IngredientFormat("audio/ogg", "audio", "Ogg"),
)
_BY_MIME = {f.mime: f for f in INGREDIENT_FORMATS}
_M4A_BRANDS = (b"M4A ", b"M4B ")  # ISO BMFF brands of audio-only MP4 (an MP4 video is not a speech ingredient)
# formats recognised only to name them in the refusal
_NAMED = (
    (b"BM", "a BMP image"),
    (b"8BPS", "a Photoshop document"),
    (b"%PDF", "a PDF document"),
    (b"\x1a\x45\xdf\xa3", "a Matroska/WebM file"),
    (b"FORM", "an AIFF/IFF file"),
    (b"\x00\x00\x01\x00", "an ICO icon"),
    (b"\xff\x0a", "a JPEG XL image"),
    (b"\x00\x00\x00\x0cJXL ", "a JPEG XL image"),
    (b"II+\x00", "a BigTIFF image"),
    (b"MM\x00+", "a BigTIFF image"),
    (b"RF64", "an RF64 (64-bit WAV) file"),
)


def _kind_rule(kind: str | None) -> str:
    if kind is None:
        images = ", ".join(f.name for f in INGREDIENT_FORMATS if f.kind == "image" and f.name not in ("JPEG", "PNG"))
        audio = ", ".join(f.name for f in INGREDIENT_FORMATS if f.kind == "audio" and f.name not in ("WAV", "MP3"))
        return f"ingredient must be a JPEG/PNG image or a WAV/MP3 file (also accepted: {images} images; {audio} audio)"
    names = [f.name for f in INGREDIENT_FORMATS if f.kind == kind]
    listed = ", ".join(names[:-1]) + " or " + names[-1]
    return f"portrait must be a {listed} image" if kind == "image" else f"speech audio must be a {listed} file"


def _is_mpeg_audio(head: bytes) -> bool:
    """An MPEG audio frame header: 11 sync bits, a version that is not reserved, layer I, II or III (not 00: ADTS)."""
    return (
        len(head) >= 2
        and head[0] == 0xFF
        and head[1] & 0xE0 == 0xE0
        and (head[1] >> 3) & 3 != 1
        and (head[1] >> 1) & 3 != 0
    )


def identify(head: bytes) -> tuple[IngredientFormat | None, str]:
    """The ingredient format of a file from its first 12 bytes, or None and what the file appears to be."""
    riff = head[8:12] if head[:4] == b"RIFF" else b""
    found = None
    if head.startswith(b"\xff\xd8\xff"):
        found = "image/jpeg"
    elif head.startswith(b"\x89PNG\r\n\x1a\n"):
        found = "image/png"
    elif head[:6] in (b"GIF87a", b"GIF89a"):
        found = "image/gif"
    elif riff == b"WEBP":
        found = "image/webp"
    elif head[:4] in (b"II*\x00", b"MM\x00*"):
        found = "image/tiff"
    elif riff == b"WAVE":
        found = "audio/wav"
    elif head.startswith(b"ID3") or _is_mpeg_audio(head):
        found = "audio/mpeg"
    elif head.startswith(b"fLaC"):
        found = "audio/flac"
    elif head.startswith(b"OggS"):
        found = "audio/ogg"
    elif head[4:8] == b"ftyp" and head[8:12] in _M4A_BRANDS:
        found = "audio/mp4"
    if found is not None:
        fmt = _BY_MIME[found]
        return fmt, f"a {fmt.name} {fmt.kind} file"
    if head[4:8] == b"ftyp":
        return None, f"an ISO BMFF file of brand {head[8:12].decode('latin-1')!r} (MP4/QuickTime video, HEIC, AVIF ...)"
    if riff:
        return None, f"a RIFF {riff.decode('latin-1').strip()!r} file" + (" (an AVI video)" if riff == b"AVI " else "")
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return None, "raw AAC (ADTS) audio"
    for magic, name in _NAMED:
        if head.startswith(magic):
            return None, name
    return None, f"first bytes {head[:8]!r}"


def ingredient_format(path: Path, kind: str | None = None) -> IngredientFormat:
    """The ingredient format of ``path`` from its bytes (not its name); ``kind`` ("image" for the portrait, "audio"
    for the speech) narrows what is accepted. ``InputError`` names what the file is when it is not accepted."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except FileNotFoundError:
        raise InputError(str(path), "ingredient file must exist", "no such file") from None
    except OSError as exc:
        raise InputError(str(path), "ingredient file must be readable", type(exc).__name__) from None
    fmt, what = identify(head)
    if fmt is None or (kind is not None and fmt.kind != kind):
        raise InputError(str(path), _kind_rule(kind), what)
    return fmt


def ingredient_mime(path: Path) -> str:
    """The MIME type of an ingredient, from its bytes (not its name): one of ``INGREDIENT_FORMATS``."""
    return ingredient_format(path).mime


def _c2pa_message(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


# --- reading -----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidationCode:
    code: str
    url: str | None = None
    explanation: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "url": self.url, "explanation": self.explanation}


@dataclass(frozen=True)
class SoftBinding:
    alg: str
    payload_hex: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"alg": self.alg, "payload": self.payload_hex}


@dataclass(frozen=True)
class ManifestReport:
    """What the file's C2PA manifest store says. ``state`` is None when the file carries no manifest."""

    path: str
    state: str | None
    active_label: str | None = None
    title: str | None = None
    claim_generator: list[dict[str, Any]] = field(default_factory=list)
    failures: tuple[ValidationCode, ...] = ()
    successes: tuple[ValidationCode, ...] = ()
    informational: tuple[ValidationCode, ...] = ()
    assertions: dict[str, Any] = field(default_factory=dict)
    ingredients: tuple[dict[str, Any], ...] = ()
    signature: dict[str, Any] = field(default_factory=dict)
    signer_chain: tuple[dict[str, Any], ...] = ()
    soft_binding: SoftBinding | None = None
    manifest_count: int = 0
    trust_anchors: bool = False
    note: str | None = None  # e.g. why no manifest could be present

    @property
    def present(self) -> bool:
        return self.state is not None

    @property
    def validates(self) -> bool:
        return self.state in VALID_STATES

    @property
    def failure_codes(self) -> list[str]:
        return [c.code for c in self.failures]

    @property
    def gate_results(self) -> dict[str, Any] | None:
        return self.assertions.get(GATE_RESULTS_LABEL)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "state": self.state,
            "active_manifest": self.active_label,
            "title": self.title,
            "claim_generator": self.claim_generator,
            "failures": [c.code for c in self.failures],
            "failure_details": [c.to_dict() for c in self.failures],
            "successes": list(dict.fromkeys(c.code for c in self.successes)),
            "informational": [c.code for c in self.informational],
            "assertions": self.assertions,
            "ingredients": list(self.ingredients),
            "signature": self.signature,
            "signer_chain": list(self.signer_chain),
            "soft_binding": self.soft_binding.to_dict() if self.soft_binding else None,
            "manifest_count": self.manifest_count,
            "trust_anchors": self.trust_anchors,
            "note": self.note,
        }


def read_manifest(path: str | os.PathLike[str], *, trust_anchors_pem: bytes | None = None) -> ManifestReport:
    """Read and validate the manifest store of an MP4. No manifest -> ``state`` None. A file that is not a complete
    MP4 -> ``InputError``; a manifest c2pa-rs cannot even parse -> state "Invalid" with code ``manifest.unreadable``."""
    p = Path(path)
    boxes = top_level_boxes(p)
    anchors = trust_anchors_pem is not None
    context = c2pa.Context.from_dict(_read_settings(trust_anchors_pem))
    try:
        with open(p, "rb", buffering=_IO_BUFFER) as fh:
            reader = c2pa.Reader.try_create(MP4_MIME, fh, context=context)
            if reader is None:
                return ManifestReport(path=str(p), state=None, trust_anchors=anchors)
            with reader:
                state = reader.get_validation_state()
                results = reader.get_validation_results() or {}
                store = json.loads(reader.json())
    except c2pa.C2paError as exc:
        return ManifestReport(
            path=str(p),
            state="Invalid",
            failures=(ValidationCode("manifest.unreadable", None, _c2pa_message(exc)),),
            trust_anchors=anchors,
        )
    active_label = store.get("active_manifest")
    manifest = store.get("manifests", {}).get(active_label, {}) if active_label else {}
    active = results.get("activeManifest") or {}
    raw_store = read_c2pa_store(p, boxes)
    return ManifestReport(
        path=str(p),
        state=state or "Invalid",
        active_label=active_label,
        title=manifest.get("title"),
        claim_generator=list(manifest.get("claim_generator_info") or []),
        failures=_codes(active.get("failure")) + _ingredient_failures(results),
        successes=_codes(active.get("success")),
        informational=_codes(active.get("informational")),
        assertions={a["label"]: a.get("data") for a in manifest.get("assertions", []) if "label" in a},
        ingredients=tuple(_ingredient(i) for i in manifest.get("ingredients", [])),
        signature=dict(manifest.get("signature_info") or {}),
        signer_chain=tuple(c.to_dict() for c in chain_from_store(raw_store, active_label)) if raw_store else (),
        soft_binding=_soft_binding(manifest),
        manifest_count=len(store.get("manifests", {})),
        trust_anchors=anchors,
    )


def _read_settings(trust_anchors_pem: bytes | None) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if trust_anchors_pem is not None:
        settings["trust"] = {"user_anchors": trust_anchors_pem.decode("ascii")}
    return settings


def _codes(items: list[dict[str, Any]] | None) -> tuple[ValidationCode, ...]:
    return tuple(ValidationCode(i.get("code", "?"), i.get("url"), i.get("explanation")) for i in items or [])


def _ingredient_failures(results: dict[str, Any]) -> tuple[ValidationCode, ...]:
    out: list[ValidationCode] = []
    for delta in results.get("ingredientDeltas") or []:
        out.extend(_codes((delta.get("validationDeltas") or {}).get("failure")))
    return tuple(out)


def _ingredient(item: dict[str, Any]) -> dict[str, Any]:
    keys = ("title", "format", "relationship", "label", "instance_id", "active_manifest")
    return {k: item[k] for k in keys if k in item}


def _soft_binding(manifest: dict[str, Any]) -> SoftBinding | None:
    for assertion in manifest.get("assertions", []):
        if assertion.get("label") != SOFT_BINDING_LABEL:
            continue
        data = assertion.get("data") or {}
        blocks = data.get("blocks") or []
        value = blocks[0].get("value") if blocks else None
        return SoftBinding(alg=str(data.get("alg")), payload_hex=_payload_hex(value))
    return None


def _payload_hex(value: Any) -> str | None:
    if isinstance(value, list):
        return bytes(value).hex()
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True).hex()
        except ValueError:
            return None
    return None
