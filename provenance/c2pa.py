"""C2PA manifests for MP4 files (c2pa-python 0.38.1 / c2pa-rs 0.91.3): build + sign, and read + validate.

The manifest says: this video was created by a trained algorithm (``c2pa.created`` with IPTC digitalSourceType
``trainedAlgorithmicMedia``) from a portrait and an audio ingredient, carries an invisible watermark
(``c2pa.watermarked.bound`` plus a ``c2pa.soft-binding`` assertion naming method and payload, one block whose
``scope.timespan`` covers the whole video in milliseconds), must not be used for AI training or data mining
(``c2pa.training-mining`` and ``cawg.training-mining``), who made it with what, when, under which id (the
``org.hallo3-gate.disclosure`` assertion, ``provenance.disclosure``), and passed (or failed) the gate with the results
in ``org.hallo3-gate.results``. A PEM signer also writes a CAWG identity assertion (``cawg.identity``, X.509
``cawg.x509.cose``) naming the signing organisation; a callback (KMS/HSM) signer cannot (see ``sign_mp4``).

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

import av
import c2pa

from provenance.bmff import read_c2pa_store, top_level_boxes
from provenance.disclosure import DISCLOSURE_LABEL, Disclosure
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
# The watermark action. c2pa-rs 0.91.3 validates all three labels (measured: c2pa.watermarked, .bound and .unbound
# each read Trusted with the dev root; tests/provenance/test_c2pa.py signs each); spec 2.2 §18.14 names
# c2pa.watermarked, the Implementation Guidance (2025-12-11) and the SDKs c2pa.watermarked.bound / .unbound. Ours is
# "bound": the mark's payload is the one in this manifest's c2pa.soft-binding assertion, so the two are bound.
WATERMARK_ACTION = "c2pa.watermarked.bound"
WATERMARK_ACTIONS = ("c2pa.watermarked", "c2pa.watermarked.bound", "c2pa.watermarked.unbound")
# The assertions the CAWG identity assertion signs over (c2pa-rs adds the hard binding itself): the actions (who made
# it, by which means) and the disclosure (provider, system, version, time, id).
CAWG_REFERENCED_ASSERTIONS = ("c2pa.actions.v2", "c2pa.actions", DISCLOSURE_LABEL)
CAWG_SIG_TYPE = "cawg.x509.cose"
# The Builder attribute c2pa-python 0.38.1 consults to sign with the signer that the Context's Settings describe (it
# sets it only for a Context made with an explicit Signer object); without it there is no way to reach the CAWG signer.
_CONTEXT_SIGNER_ATTR = "_has_context_signer"
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
    watermark_action: str = WATERMARK_ACTION
    timespan_ms: tuple[int, int] | None = None
    disclosure_id: str | None = None
    cawg_identity: bool = False  # a cawg.identity assertion was written
    cawg_reason: str | None = None  # why not, when it was not

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "manifest_bytes": self.manifest_bytes,
            "alg": self.alg,
            "signer_subject": self.signer_subject,
            "development_key": self.development_key,
            "soft_binding": {
                "alg": self.soft_binding_alg,
                "payload": self.soft_binding_hex,
                "timespan_ms": list(self.timespan_ms) if self.timespan_ms else None,
            },
            "watermark_action": self.watermark_action,
            "assertion_labels": list(self.assertion_labels),
            "ingredients": list(self.ingredients),
            "disclosure_id": self.disclosure_id,
            "cawg_identity": self.cawg_identity,
            "cawg_reason": self.cawg_reason,
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
    disclosure: Disclosure | None = None,
    duration_ms: int | None = None,
    cawg_identity: bool = True,
) -> SignResult:
    """Sign ``src`` into ``dst`` (which may be ``src``): written to a temporary file beside ``dst``, then renamed, so
    ``dst`` is either the complete signed file or untouched.

    ``disclosure`` adds the ``org.hallo3-gate.disclosure`` assertion. ``duration_ms`` is the soft binding's timespan
    end (the whole video carries the mark); None reads it from ``src``. With ``cawg_identity`` (the default) a PEM
    signer also signs a ``cawg.identity`` assertion (X.509, the same certificate: the organisation in its subject).
    c2pa-python 0.38.1 exposes no CAWG signer, so it is reached through c2pa-rs Settings (``signer.local`` +
    ``cawg_x509_signer.local``) and the Builder's private ``_has_context_signer`` flag; a callback signer (its key
    is not here), or an SDK without that flag, signs without it and ``SignResult.cawg_reason`` says why.
    """
    t0 = time.perf_counter()
    src, dst = Path(src), Path(dst)
    top_level_boxes(src)  # a clear InputError for a non-MP4 or truncated file, before c2pa sees it
    if not watermark_payload:
        raise UsageError("watermark_payload", "must be the non-empty payload embedded in the frames", "empty")
    if duration_ms is None:
        duration_ms = mp4_duration_ms(src)
    if isinstance(duration_ms, bool) or not isinstance(duration_ms, int) or duration_ms <= 0:
        raise UsageError("duration_ms", "must be the video's positive duration in whole milliseconds", duration_ms)
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
        disclosure=disclosure,
        duration_ms=duration_ms,
    )
    cawg_settings, cawg_reason = _cawg_settings(signer) if cawg_identity else (None, "disabled by the caller")
    c2pa_signer = None
    try:
        builder = _builder(definition, cawg_settings)
        if cawg_settings is not None and not hasattr(builder, _CONTEXT_SIGNER_ATTR):
            builder.close()
            cawg_settings = None
            cawg_reason = (
                f"c2pa-python {_sdk_package_version()} has no Builder.{_CONTEXT_SIGNER_ATTR}: "
                "cannot sign with the Settings' CAWG signer"
            )
            builder = _builder(definition, None)
        for label, path in ingredients:
            mime = ingredient_mime(path)
            with open(path, "rb") as fh:
                builder.add_ingredient({"title": path.name, "relationship": "inputTo", "label": label}, mime, fh)
        if cawg_settings is not None:
            setattr(builder, _CONTEXT_SIGNER_ATTR, True)
        else:
            c2pa_signer = signer.c2pa_signer()
    except c2pa.C2paError as exc:
        raise ProvenanceError(str(dst), "C2PA manifest must build", _c2pa_message(exc)) from None
    try:
        with (
            atomic_path(dst, suffix=".c2pa.part") as tmp,
            open(src, "rb", buffering=_IO_BUFFER) as fin,
            open(tmp, "w+b", buffering=_IO_BUFFER) as fout,
        ):
            if c2pa_signer is not None:
                manifest = builder.sign(c2pa_signer, MP4_MIME, fin, fout)
            else:  # the Context's signer, wrapped by c2pa-rs in the CAWG identity-assertion signer
                manifest = builder.sign(MP4_MIME, fin, fout)
            fout.flush()
            os.fsync(fout.fileno())
    except c2pa.C2paError as exc:
        raise ProvenanceError(str(src), "C2PA signing must succeed", _c2pa_message(exc)) from None
    finally:
        if c2pa_signer is not None:
            c2pa_signer.close()
        builder.close()
    labels = tuple(a["label"] for a in definition["assertions"])
    return SignResult(
        path=dst,
        manifest_bytes=len(manifest),
        alg=signer.alg,
        signer_subject=signer.leaf.subject,
        development_key=signer.development,
        soft_binding_alg=watermark_method,
        soft_binding_hex=watermark_payload.hex(),
        assertion_labels=labels + (("cawg.identity",) if cawg_settings is not None else ()),
        ingredients=tuple(p.name for _, p in ingredients),
        seconds=time.perf_counter() - t0,
        watermark_action=WATERMARK_ACTION,
        timespan_ms=(0, duration_ms),
        disclosure_id=disclosure.id if disclosure is not None else None,
        cawg_identity=cawg_settings is not None,
        cawg_reason=None if cawg_settings is not None else cawg_reason,
    )


def _builder(definition: dict[str, Any], cawg_settings: dict[str, Any] | None) -> c2pa.Builder:
    settings = dict(_SIGN_SETTINGS)
    if cawg_settings is not None:
        settings.update(cawg_settings)
    return c2pa.Builder(definition, context=c2pa.Context(settings=c2pa.Settings.from_dict(settings)))


def _cawg_settings(signer: SignerHandle) -> tuple[dict[str, Any] | None, str | None]:
    """The Settings tables that make c2pa-rs sign with ``signer`` and add a CAWG X.509 identity assertion with the same
    credential; or None and the reason (a callback signer: the key is in the KMS/HSM, and c2pa-python 0.38.1 has no
    way to pass a callback as the CAWG signer)."""
    local = signer.local_signer_settings()
    if local is None:
        return None, (
            f"the {signer.kind} signer keeps its key outside this process; c2pa-python "
            f"{_sdk_package_version()} can write a CAWG identity assertion only from a PEM key"
        )
    cawg = dict(local, referenced_assertions=list(CAWG_REFERENCED_ASSERTIONS))
    return {"signer": {"local": local}, "cawg_x509_signer": {"local": cawg}}, None


def _sdk_package_version() -> str:
    try:
        from importlib.metadata import version

        return version("c2pa-python")
    except Exception:
        return "(unknown version)"


def mp4_duration_ms(path: Path) -> int:
    """How long the watermarked picture lasts, in whole milliseconds (rounded up, at least 1): the first video
    track's duration from its header (the audio track may run longer: AAC priming), else the container's."""
    try:
        with av.open(str(path), mode="r") as container:
            video = container.streams.video[0] if container.streams.video else None
            if video is not None and video.duration and video.time_base:
                seconds = float(video.duration * video.time_base)
            else:
                seconds = (container.duration or 0) / 1_000_000
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise InputError(str(path), "must be a readable MP4 to take its duration", _c2pa_message(exc)) from None
    if not seconds > 0:
        raise InputError(str(path), "must declare a positive duration", seconds)
    return max(1, math.ceil(round(seconds * 1000, 6)))


def build_manifest(
    *,
    title: str,
    ingredient_labels: list[str],
    watermark_method: str,
    watermark_payload: bytes,
    gate_results: dict[str, Any] | None,
    generator: dict[str, Any] | None,
    training_mining: str = "notAllowed",
    disclosure: Disclosure | None = None,
    duration_ms: int | None = None,
) -> dict[str, Any]:
    """The manifest definition handed to ``c2pa.Builder`` (ingredients are added to the builder separately).
    ``duration_ms`` None leaves the soft-binding block's scope empty (whole asset, no timespan)."""
    if training_mining not in TRAINING_USES:
        raise UsageError("training_mining", f"must be one of {', '.join(TRAINING_USES)}", training_mining)
    tool = {"name": "hallo3-gate", "version": _tool_version()}
    created: dict[str, Any] = {"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA}
    if generator:
        created["softwareAgent"] = _json_checked("generator", generator)
    if ingredient_labels:
        created["parameters"] = {"ingredientIds": list(ingredient_labels)}
    watermarked = {
        "action": WATERMARK_ACTION,
        "softwareAgent": tool,
        "description": f"invisible watermark {watermark_method} embedded in every frame",
    }
    scope: dict[str, Any] = {"timespan": {"start": 0, "end": int(duration_ms)}} if duration_ms is not None else {}
    assertions: list[dict[str, Any]] = [
        {"label": "c2pa.actions", "data": {"actions": [created, watermarked]}},
        {"label": "c2pa.training-mining", "data": _training("c2pa", training_mining)},
        {"label": "cawg.training-mining", "data": _training("cawg", training_mining)},
        {
            "label": SOFT_BINDING_LABEL,
            "data": {
                "alg": watermark_method,
                "blocks": [{"scope": scope, "value": list(watermark_payload)}],
                "pad": [],
            },
            "created": True,
        },
    ]
    if disclosure is not None:
        assertions.append(
            {"label": DISCLOSURE_LABEL, "data": _json_checked("disclosure", disclosure.to_assertion()), "created": True}
        )
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
    timespan_ms: tuple[int, int] | None = None  # the first block's scope.timespan (start, end) in ms, if any

    def to_dict(self) -> dict[str, Any]:
        span = list(self.timespan_ms) if self.timespan_ms else None
        return {"alg": self.alg, "payload": self.payload_hex, "timespan_ms": span}


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

    @property
    def signer_trusted(self) -> bool:
        """The C2PA claim signer chains to a trust anchor: the manifest validates, c2pa-rs reports
        ``signingCredential.trusted``, and every failure is a CAWG X.509 one (``cawg.x509.*``). c2pa-rs 0.91.3 reads a
        manifest with a CAWG identity as "Valid", not "Trusted", whenever the identity credential is untrusted
        (``cawg.x509.credential.untrusted``), which it reports for our dev root whatever ``cawg_trust`` says (measured
        with user_anchors, trust_anchors, trust_config and verify_trust_list); the identity assertion is supplementary
        to the claim signature (c2pa-rs tolerates its failures for "Valid"), so it does not decide this."""
        if self.state == "Trusted":
            return True
        return (
            self.state in VALID_STATES
            and any(c.code == "signingCredential.trusted" for c in self.successes)
            and all(c.code.startswith("cawg.x509.") for c in self.failures)
        )

    @property
    def disclosure(self) -> Disclosure | None:
        """The ``org.hallo3-gate.disclosure`` assertion, read back; None when absent or malformed (then
        ``disclosure_error`` says which field)."""
        data = self.assertions.get(DISCLOSURE_LABEL)
        if data is None:
            return None
        try:
            return Disclosure.from_assertion(data)
        except ValueError:
            return None

    @property
    def disclosure_error(self) -> str | None:
        data = self.assertions.get(DISCLOSURE_LABEL)
        if data is None:
            return None
        try:
            Disclosure.from_assertion(data)
        except ValueError as exc:
            return str(exc)
        return None

    @property
    def cawg_identity(self) -> dict[str, Any] | None:
        """The CAWG identity assertion: ``{"label", "sig_type", "organisation" (the signing certificate's subject O),
        "common_name" (its CN), "validated" (c2pa-rs reports cawg.identity.well-formed and
        cawg.x509.signature.validated and no other CAWG failure than an untrusted credential), "trusted" (validated
        and its credential is not reported untrusted), "codes" (every cawg.* status code, success and failure)}``; None
        when the manifest has none."""
        label = next((k for k in self.assertions if k == "cawg.identity" or k.startswith("cawg.identity__")), None)
        if label is None:
            return None
        data = self.assertions.get(label) or {}
        payload = data.get("signer_payload") if isinstance(data, dict) else None
        info = data.get("signature_info") if isinstance(data, dict) else None
        payload = payload if isinstance(payload, dict) else {}
        info = info if isinstance(info, dict) else {}
        ok = [c.code for c in self.successes if c.code.startswith("cawg.")]
        bad = [c.code for c in self.failures if c.code.startswith("cawg.")]
        untrusted = "cawg.x509.credential.untrusted"
        validated = (
            "cawg.identity.well-formed" in ok
            and "cawg.x509.signature.validated" in ok
            and all(code == untrusted for code in bad)
        )
        return {
            "label": label,
            "sig_type": payload.get("sig_type"),
            "organisation": info.get("issuer"),
            "common_name": info.get("common_name"),
            "validated": validated,
            "trusted": validated and untrusted not in bad,
            "codes": list(dict.fromkeys(ok + bad)),
        }

    @property
    def watermark_action(self) -> str | None:
        """The watermark action label in ``c2pa.actions.v2`` (or ``c2pa.actions``), if any."""
        for label in ("c2pa.actions.v2", "c2pa.actions"):
            data = self.assertions.get(label)
            actions = data.get("actions") if isinstance(data, dict) else None
            for action in actions if isinstance(actions, list) else []:
                name = action.get("action") if isinstance(action, dict) else None
                if name in WATERMARK_ACTIONS:
                    return name
        return None

    @property
    def timestamp(self) -> str | None:
        """The RFC 3161 time-stamp of the claim signature: c2pa-rs's ``signature_info.time`` (the TSA token's genTime,
        RFC 3339, e.g. "2026-12-02T09:30:15+00:00"), only when c2pa-rs also reports ``timeStamp.validated``; None
        without a time-stamp (no TSA configured) or with one that did not validate. Whether the TSA is trusted is in
        ``timestamp_codes`` (``timeStamp.trusted`` / ``timeStamp.untrusted``)."""
        value = self.signature.get("time")
        if not (isinstance(value, str) and value):
            return None
        return value if any(c.code == "timeStamp.validated" for c in self.successes) else None

    @property
    def timestamp_codes(self) -> list[str]:
        """Every ``timeStamp.*`` status code c2pa-rs gave (success, informational, failure), in that order."""
        codes = self.successes + self.informational + self.failures
        return list(dict.fromkeys(c.code for c in codes if c.code.startswith("timeStamp.")))

    @property
    def soft_binding_timespan(self) -> tuple[int, int] | None:
        return self.soft_binding.timespan_ms if self.soft_binding is not None else None

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
            "signer_trusted": self.signer_trusted,
            "disclosure": self.disclosure.to_dict() if self.disclosure is not None else None,
            "disclosure_error": self.disclosure_error,
            "cawg_identity": self.cawg_identity,
            "watermark_action": self.watermark_action,
            "timestamp": self.timestamp,
            "timestamp_codes": self.timestamp_codes,
            "soft_binding_timespan": list(self.soft_binding_timespan) if self.soft_binding_timespan else None,
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
        first = blocks[0] if blocks and isinstance(blocks[0], dict) else {}
        return SoftBinding(
            alg=str(data.get("alg")), payload_hex=_payload_hex(first.get("value")), timespan_ms=_timespan(first)
        )
    return None


def _timespan(block: dict[str, Any]) -> tuple[int, int] | None:
    scope = block.get("scope")
    span = scope.get("timespan") if isinstance(scope, dict) else None
    if not isinstance(span, dict):
        return None
    start, end = span.get("start"), span.get("end")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
        return None
    return (start, end)


def _payload_hex(value: Any) -> str | None:
    if isinstance(value, list):
        return bytes(value).hex()
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True).hex()
        except ValueError:
            return None
    return None
