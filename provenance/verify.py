"""Verify a video from disk: its C2PA manifest, its invisible watermark, and whether the two name the same payload.

The manifest is the strong claim (cryptographic, but stripped by any remux); the watermark is the durable one (it
survives re-encoding, but says only a payload). A file is *verified* when the manifest validates (Trusted, or Valid
when untrusted signers are allowed) and the watermark decoded from the frames equals the manifest's soft-binding
payload under the same method. ``record`` is the ledger record found for the payload by the caller's ``lookup``.

Frames come from the caller (``provenance`` never imports ``gate``), so the CLI decodes them with ``gate.media``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from provenance.bmff import is_bmff
from provenance.c2pa import ManifestReport, read_manifest
from reports.errors import InputError

NOT_BMFF_NOTE = "not an MP4 (ISO BMFF) file: it cannot carry an embedded C2PA manifest"
RecordLookup = Callable[[str], dict[str, Any] | None]


@dataclass(frozen=True)
class WatermarkCheck:
    payload_hex: str | None
    confidence: float | None
    method: str | None
    frames_decoded: int
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "payload": self.payload_hex,
            "confidence": self.confidence,
            "method": self.method,
            "frames_decoded": self.frames_decoded,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class VerifyReport:
    path: str
    manifest: ManifestReport
    watermark: WatermarkCheck
    agreement: bool | None  # None: nothing to compare (no soft binding in the manifest, or no watermark decoded)
    require_trusted: bool = False
    record: dict[str, Any] | None = None

    @property
    def reasons(self) -> list[str]:
        """Why the file is not verified; empty when it is."""
        out: list[str] = []
        m = self.manifest
        if not m.present:
            out.append(f"no C2PA manifest ({m.note or 'never signed, or stripped by a remux/re-encode'})")
        elif not m.validates:
            out.append(f"manifest {m.state}: {', '.join(m.failure_codes) or 'no failure code given'}")
        elif self.require_trusted and not m.signer_trusted:
            out.append(f"manifest {m.state} but its signer is not trusted: {', '.join(m.failure_codes)}")
        if m.present and m.soft_binding is None:
            out.append("manifest has no c2pa.soft-binding assertion naming the watermark")
        if self.watermark.payload_hex is None:
            out.append("no watermark payload decoded from the frames")
        elif m.soft_binding is not None and self.agreement is False:
            out.append(
                f"watermark {self.watermark.method}:{self.watermark.payload_hex} differs from the manifest's soft "
                f"binding {m.soft_binding.alg}:{m.soft_binding.payload_hex}"
            )
        return out

    @property
    def verified(self) -> bool:
        return not self.reasons

    @property
    def payload_hex(self) -> str | None:
        """The payload naming this output: the watermark's (it survives stripping), else the manifest's."""
        if self.watermark.payload_hex is not None:
            return self.watermark.payload_hex
        sb = self.manifest.soft_binding
        return sb.payload_hex if sb is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "verified": self.verified,
            "reasons": self.reasons,
            "require_trusted": self.require_trusted,
            "manifest": self.manifest.to_dict(),
            "watermark": self.watermark.to_dict(),
            "agreement": self.agreement,
            "record": self.record,
            "disclosure": self.disclosure,
        }

    @property
    def disclosure(self) -> dict[str, str] | None:
        """The manifest's disclosure fields (provider, system, version, created, id), or None without one."""
        found = self.manifest.disclosure
        return found.to_dict() if found is not None else None


def verify(
    path: str | os.PathLike[str],
    frames: Iterable[np.ndarray] | np.ndarray,
    *,
    trust_anchors_pem: bytes | None = None,
    wm_config: Any = None,
    require_trusted: bool = False,
    lookup: RecordLookup | None = None,
) -> VerifyReport:
    """Validate the manifest (first: a truncated MP4 fails fast), then decode the watermark from ``frames`` (the
    decoded frames of ``path``, uint8 RGB). A file in another container (a leaked copy re-wrapped as MKV, say) has no
    manifest, but its watermark is still read: the frames decide whether it is a video at all."""
    p = Path(path)
    try:
        manifest = read_manifest(p, trust_anchors_pem=trust_anchors_pem)
    except InputError:
        if is_bmff(p) or not p.is_file():
            raise
        manifest = ManifestReport(path=str(p), state=None, note=NOT_BMFF_NOTE)
    report = assess(manifest, decode_watermark(frames, wm_config), require_trusted=require_trusted)
    if lookup is not None and report.payload_hex is not None:
        report = dataclasses.replace(report, record=lookup(report.payload_hex))
    return report


def assess(manifest: ManifestReport, watermark: WatermarkCheck, *, require_trusted: bool = False) -> VerifyReport:
    """Put a read manifest and a decoded watermark side by side: they agree when the soft binding names the same
    method and payload the frames carry."""
    sb = manifest.soft_binding
    agreement = None
    if sb is not None and watermark.payload_hex is not None:
        agreement = sb.payload_hex == watermark.payload_hex and sb.alg == watermark.method
    return VerifyReport(
        path=manifest.path, manifest=manifest, watermark=watermark, agreement=agreement, require_trusted=require_trusted
    )


def decode_watermark(frames: Iterable[np.ndarray] | np.ndarray, wm_config: Any = None) -> WatermarkCheck:
    from provenance import watermark

    result = watermark.decode(frames, wm_config)
    payload_hex = result.payload.hex() if result.payload is not None else None
    return WatermarkCheck(
        payload_hex=payload_hex,
        confidence=float(result.confidence) if result.confidence is not None else None,
        method=result.method,
        frames_decoded=int(result.frames_decoded),
        detail=result.to_dict(),
    )
