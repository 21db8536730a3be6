"""The provenance half of the gate: watermark + encode, then sign last and verify from disk.

Two steps and their composition, so ``gate.run`` can put measurement between them:

1. ``encode_watermarked`` - watermark every frame, encode H.264 + AAC (atomic);
2. ``sign_and_verify`` - sign the C2PA manifest into the MP4 (the last write), then read it back from disk: the manifest
   must validate and the watermark must decode to the payload, else ``ProvenanceError``;
3. ``stamp`` - both, for an existing video, inside one temporary file: ``out`` appears complete or not at all.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gate import media
from provenance import watermark
from provenance.c2pa import SignResult, sign_mp4
from provenance.disclosure import AIGC_KEY, AigcLabel, Disclosure
from provenance.keys import SignerHandle
from provenance.verify import RecordLookup, VerifyReport, verify
from reports.atomic import atomic_path, check_output_target
from reports.errors import Hallo3Error, ProvenanceError, UsageError

STAMP_ONLY_RESULTS = {
    "decision": "not-gated",
    "reason": "stamped with `hallo3-gate stamp`: watermark and manifest only, no metric was measured",
}


class VerificationFailed(ProvenanceError):
    """The signed file did not verify from disk; ``report`` says what was found (for the audit record)."""

    def __init__(self, subject: str, reasons: str, *, signed: SignResult, report: VerifyReport) -> None:
        super().__init__(subject, "signed output must verify from disk", reasons)
        self.signed = signed
        self.report = report


@dataclass(frozen=True)
class StampResult:
    path: Path
    payload_hex: str
    frames: int
    sign: SignResult
    verify: VerifyReport
    seconds: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "payload": self.payload_hex,
            "frames": self.frames,
            "sign": self.sign.to_dict(),
            "verify": self.verify.to_dict(),
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


def encode_watermarked(
    frames_or_iter: np.ndarray | Iterable[np.ndarray],
    fps: float,
    audio: np.ndarray | None,
    sample_rate: int | None,
    out_path: str | os.PathLike[str],
    *,
    payload: bytes,
    crf: int = 18,
    wm_config: Any = None,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Watermark every frame with ``payload`` and encode H.264 + AAC to ``out_path`` (atomic; frames may stream).
    ``metadata`` becomes container tags (e.g. ``AIGC``), written now, before signing, so the C2PA hard binding of the
    later signature covers them."""
    if not 0 <= crf <= 51:
        raise UsageError("--crf", "must be an H.264 CRF between 0 and 51", crf)
    marked = watermark.embed_iter(iter(frames_or_iter), payload, wm_config)
    return media.write_mp4(out_path, marked, fps, audio=audio, sample_rate=sample_rate, crf=crf, metadata=metadata)


def aigc_metadata(disclosure: Disclosure | None, payload: bytes) -> dict[str, str] | None:
    """The GB 45438 ``AIGC`` container tag for an output with this disclosure (None without one: no provider)."""
    if disclosure is None:
        return None
    return {AIGC_KEY: AigcLabel.for_output(disclosure, watermark_payload_hex=payload.hex()).to_json()}


def sign_and_verify(
    mp4: str | os.PathLike[str],
    *,
    signer: SignerHandle,
    portrait: Path | None,
    audio_path: Path | None,
    payload: bytes,
    gate_results: dict[str, Any] | None,
    trust_anchors_pem: bytes | None,
    title: str | None = None,
    generator: dict[str, Any] | None = None,
    wm_config: Any = None,
    require_trusted: bool = False,
    lookup: RecordLookup | None = None,
    disclosure: Disclosure | None = None,
    duration_ms: int | None = None,
) -> tuple[SignResult, VerifyReport]:
    """Sign ``mp4`` in place (atomically), then verify it from disk. On a failed verification the signed file stays
    where it is (the caller's staging area decides its fate) and ``VerificationFailed`` (a ``ProvenanceError``)
    names the reasons and carries the ``VerifyReport``."""
    mp4 = Path(mp4)
    signed = sign_mp4(
        mp4,
        mp4,
        signer=signer,
        portrait=portrait,
        audio=audio_path,
        watermark_payload=payload,
        gate_results=gate_results,
        title=title or mp4.name,
        generator=generator,
        watermark_method=watermark.METHOD,
        disclosure=disclosure,
        duration_ms=duration_ms,
    )
    report = verify(
        mp4,
        media.iter_frames(mp4),
        trust_anchors_pem=trust_anchors_pem,
        wm_config=wm_config,
        require_trusted=require_trusted,
        lookup=lookup,
    )
    reasons = report.reasons
    if report.watermark.payload_hex is not None and report.watermark.payload_hex != payload.hex():
        reasons.append(f"watermark decodes to {report.watermark.payload_hex}, embedded {payload.hex()}")
    if reasons:
        raise VerificationFailed(str(mp4), "; ".join(reasons), signed=signed, report=report)
    return signed, report


def _refuse_overwriting_an_input(out: Path, inputs: dict[str, Path]) -> None:
    """OUT replaces what is at its path: it must not be one of the inputs (under any name)."""
    for name, path in inputs.items():
        try:
            same = out.exists() and path.exists() and os.path.samefile(out, path)
        except OSError:
            same = False
        if same:
            raise UsageError(str(out), f"output must not be the {name} file it is made from", str(path))


def stamp(
    in_video: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    portrait: Path,
    audio: Path,
    signer: SignerHandle,
    trust_anchors_pem: bytes | None = None,
    crf: int = 18,
    payload: bytes | None = None,
    gate_results: dict[str, Any] | None = None,
    generator: dict[str, Any] | None = None,
    wm_config: Any = None,
    require_trusted: bool = False,
    provider: str | None = None,
    generator_name: str = "unknown generator (an existing video)",
) -> StampResult:
    """Watermark, encode, sign and verify an existing talking-portrait video (it must have an audio track; ``audio``
    is the speech it was made from and goes into the manifest as an ingredient, as does ``portrait``).

    With a ``provider`` (from configuration) the output also carries the disclosure assertion (system
    ``"<generator_name> / hallo3-gate"``, model ``n/a``: no weights were hashed) and the ``AIGC`` metadata tag;
    without one, neither (there is no provider to name)."""
    in_video, out, portrait, audio = Path(in_video), Path(out), Path(portrait), Path(audio)
    # every input and the output are checked before any decoding (exit 2 / 4 / 74, nothing written)
    check_output_target(out)
    _refuse_overwriting_an_input(out, {"IN": in_video, "--portrait": portrait, "--audio": audio})
    media.read_image(portrait)  # a portrait format the manifest can name, readable, at least 64 px
    media.read_audio(audio, ingredient=True)  # a speech format the manifest can name, plausible rate and length
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    clip = media.read_video(in_video, require_audio=True)
    times["read"] = time.perf_counter() - t0
    payload = payload if payload is not None else watermark.new_payload()
    disclosure = None
    if provider is not None:
        try:
            disclosure = Disclosure.new(provider=provider, generator=generator_name, tool_version=_tool_version())
        except ValueError as exc:
            raise UsageError("provider", "must be a provider name for the disclosure", str(exc)) from None
    tmp: Path | None = None
    try:
        with atomic_path(out, suffix=".stamp.mp4") as tmp:
            t0 = time.perf_counter()
            encode_watermarked(
                clip.frames,
                clip.fps,
                clip.audio,
                clip.sample_rate,
                tmp,
                payload=payload,
                crf=crf,
                wm_config=wm_config,
                metadata=aigc_metadata(disclosure, payload),
            )
            times["watermark_encode"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            signed, report = sign_and_verify(
                tmp,
                signer=signer,
                portrait=portrait,
                audio_path=audio,
                payload=payload,
                gate_results=gate_results if gate_results is not None else STAMP_ONLY_RESULTS,
                trust_anchors_pem=trust_anchors_pem,
                title=out.name,
                generator=generator,
                wm_config=wm_config,
                require_trusted=require_trusted,
                disclosure=disclosure,
            )
            times["sign_verify"] = time.perf_counter() - t0
    except Hallo3Error as exc:  # it happened in the temporary file, which is gone: name OUT, what the user gave
        if tmp is not None and str(tmp) in exc.subject:
            exc.subject = exc.subject.replace(str(tmp), str(out))
            exc.args = (exc.one_line(),)
        raise
    return StampResult(
        path=out,
        payload_hex=payload.hex(),
        frames=len(clip.frames),
        sign=dataclasses.replace(signed, path=out),
        verify=dataclasses.replace(report, path=str(out), manifest=dataclasses.replace(report.manifest, path=str(out))),
        seconds=times,
    )


def _tool_version() -> str:
    try:
        from importlib.metadata import version

        return version("hallo3-gate")
    except Exception:
        return "0+unknown"
