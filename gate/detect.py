"""Public detection: does this video come from this system, and what does the answer rest on?

EU Code of Practice Commitment 2 asks a detection result to state what it rests on; California SB 942 §22757.2 asks
the provider's detection tool to output system provenance data and **no personal provenance data**. So the answer
(``DetectResult``) is built only from:

* ``c2pa_manifest`` - the file's C2PA manifest validates (Trusted, or Valid when its signer is not in the trust list)
  and names this system (its soft binding is this system's watermark method, or it carries the gate's results
  assertion). Reported: presence, validation state, the signer's organisation, the claim generator and the
  validation failure codes. Never the ingredients (their titles are the user's input file names) or the title.
* ``watermark`` - the invisible watermark decoded from the frames to a CRC-valid payload (it survives a stripped
  manifest and re-encoding). Reported: the payload, the decoder's confidence and mean bit accuracy.
* ``ledger`` - the ledger holds a gate run whose output carries that payload, and the hash chain verifies (the
  whole chain up to ``WHOLE_CHAIN_ROWS`` rows, else from that row to the head). Reported: run id, current state
  (folded from the run's events: pending / released / quarantined), when it was decided, the model (backend and
  model name) and the system version. Never who submitted or decided, the prompt, input or output paths.

A payload is looked up only when it comes from the decoded watermark or from a manifest that validates: the soft
binding of an Invalid manifest could be forged to point at someone else's run. A ledger whose chain does not verify
is reported as such (``ledger.chain == "broken"``) and its record is not used.

``generated_by_this_system``: True when the ledger knows the payload (chain verified); False when nothing was found
(``basis`` empty: no manifest of this system, no watermark - note that heavy editing can destroy both, so False
means "no marking of this system found", never a proof of the opposite); None when some marking was found but no
verified ledger record confirms it (e.g. a watermark from another installation, or a broken chain).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from gate.ledger import Ledger
from provenance.c2pa import GATE_RESULTS_LABEL, ManifestReport
from provenance.verify import VerifyReport, verify

BASIS_ORDER = ("c2pa_manifest", "watermark", "ledger")
FINAL_STATES = ("released", "quarantined")
ChainState = Literal["verified", "broken", "no-record", "no-ledger", "not-consulted"]


@dataclass(frozen=True)
class ManifestEvidence:
    present: bool
    state: str | None  # Trusted | Valid | Invalid, None when absent
    signer_organisation: str | None
    claim_generator: str | None
    validation_failures: list[str]
    names_this_system: bool
    note: str | None = None
    # the claim signer is on the trust list; c2pa-rs still says "Valid" when the only failure is the CAWG identity's
    # credential missing from a CAWG trust list (e.g. the development CA)
    signer_trusted: bool = False


@dataclass(frozen=True)
class WatermarkEvidence:
    detected: bool
    method: str | None
    payload_hex: str | None
    confidence: float | None  # mean per-frame agreement with the clip vote, 0..1
    bit_accuracy: float | None  # mean per-frame bit accuracy against the decoded codeword, 0..1
    frames_decoded: int


@dataclass(frozen=True)
class LedgerEvidence:
    chain: ChainState
    problem: str | None = None  # the first broken link, when chain == "broken"


@dataclass(frozen=True)
class RunEvidence:
    run_id: str
    state: str  # pending | released | quarantined
    decided_at: str | None  # when the state became final; None while pending
    model: dict[str, str | None]  # {"backend", "model_name"}
    system_version: str | None


@dataclass(frozen=True)
class DetectResult:
    basis: list[str]
    generated_by_this_system: bool | None
    summary: str
    manifest: ManifestEvidence
    watermark: WatermarkEvidence
    agreement: bool | None  # watermark payload == the manifest's soft-binding payload (None: nothing to compare)
    ledger: LedgerEvidence
    run: RunEvidence | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        import json

        return json.dumps(self.to_dict(), sort_keys=False)


def detect(
    path: str | os.PathLike[str],
    db_or_locator: Any = None,
    *,
    trust_anchors_pem: bytes | None = None,
    wm_config: Any = None,
    frames: Iterable[np.ndarray] | None = None,
) -> DetectResult:
    """Examine the video at ``path`` (manifest, watermark, then the ledger of ``db_or_locator``: a
    ``gate.database.Database``, a ``Ledger``, a locator string/path, or None for no ledger at all).

    Raises ``InputError`` when ``path`` is not a readable, complete video (the caller names the upload)."""
    from gate import media

    report = verify(path, frames if frames is not None else media.iter_frames(path), trust_anchors_pem=trust_anchors_pem,
                    wm_config=wm_config)  # fmt: skip
    manifest = _manifest_evidence(report.manifest)
    watermark = _watermark_evidence(report)
    payload = _trusted_payload(report, manifest)
    ledger_ev, run = _ledger_evidence(db_or_locator, payload)
    basis = [
        name
        for name, found in zip(
            BASIS_ORDER,
            (manifest.names_this_system and report.manifest.validates, watermark.detected, run is not None),
            strict=True,
        )
        if found
    ]
    generated = True if run is not None else (False if not basis and ledger_ev.chain != "broken" else None)
    notes = []
    if report.agreement is False:
        notes.append("the watermark's payload differs from the manifest's soft binding: the file was altered")
    if ledger_ev.chain == "broken":
        notes.append("the ledger's hash chain does not verify, so its record of this payload cannot be proven")
    return DetectResult(
        basis=basis,
        generated_by_this_system=generated,
        summary=_summary(generated, basis, run),
        manifest=manifest,
        watermark=watermark,
        agreement=report.agreement,
        ledger=ledger_ev,
        run=run,
        notes=notes,
    )


def _manifest_evidence(m: ManifestReport) -> ManifestEvidence:
    generators = [f"{g.get('name')} {g.get('version', '')}".strip() for g in m.claim_generator if g.get("name")]
    names_us = m.present and (
        (m.soft_binding is not None and m.soft_binding.alg == _watermark_method()) or GATE_RESULTS_LABEL in m.assertions
    )
    return ManifestEvidence(
        present=m.present,
        state=m.state,
        signer_organisation=_str_or_none(m.signature.get("issuer")) if m.present else None,
        claim_generator=", ".join(generators) or None,
        validation_failures=list(m.failure_codes),
        names_this_system=bool(names_us),
        note=m.note if not m.present else None,
        signer_trusted=bool(m.present and m.signer_trusted),
    )


def _watermark_evidence(report: VerifyReport) -> WatermarkEvidence:
    wm = report.watermark
    accuracy = wm.detail.get("bit_accuracy_mean") if wm.payload_hex is not None else None
    return WatermarkEvidence(
        detected=wm.payload_hex is not None,
        method=wm.method,
        payload_hex=wm.payload_hex,
        confidence=round(wm.confidence, 4) if wm.confidence is not None else None,
        bit_accuracy=float(accuracy) if accuracy is not None else None,
        frames_decoded=wm.frames_decoded,
    )


def _trusted_payload(report: VerifyReport, manifest: ManifestEvidence) -> str | None:
    """The payload to look up: the decoded watermark's, else the soft binding of a manifest that validates."""
    if report.watermark.payload_hex is not None:
        return report.watermark.payload_hex
    sb = report.manifest.soft_binding
    if sb is not None and report.manifest.validates and manifest.names_this_system:
        return sb.payload_hex
    return None


def _ledger_evidence(db_or_locator: Any, payload_hex: str | None) -> tuple[LedgerEvidence, RunEvidence | None]:
    from gate.verify_view import WHOLE_CHAIN_ROWS

    if payload_hex is None:
        return LedgerEvidence("not-consulted"), None
    ledger = open_ledger(db_or_locator)
    if ledger is None:
        return LedgerEvidence("no-ledger"), None
    row = ledger.find_by_payload(payload_hex)
    if row is None:
        return LedgerEvidence("no-record"), None
    whole = ledger.last_seq() <= WHOLE_CHAIN_ROWS
    check = ledger.verify(since_seq=None if whole else row.seq)
    if not check.ok:
        return LedgerEvidence("broken", check.problems[0]), None
    events = [ev for ev in ledger.events(row.run_id) if ev.seq >= row.seq]  # this run's rows, from its run row on
    return LedgerEvidence("verified"), _run_evidence(row, events)


def open_ledger(db_or_locator: Any) -> Ledger | None:
    """The ledger to consult, or None when there is none: no locator, or an SQLite file that does not exist (a
    detection request never creates a database)."""
    if db_or_locator is None:
        return None
    if isinstance(db_or_locator, Ledger):
        return db_or_locator
    if isinstance(db_or_locator, str | os.PathLike):
        from gate.database import is_postgres, resolve, sqlite_path

        locator = resolve(db_or_locator)
        if not is_postgres(locator) and not os.path.lexists(sqlite_path(locator)):
            return None
        return Ledger(locator)
    return Ledger(db_or_locator)  # a gate.database.Database


def decided_at(events: list[Any], state: str) -> str | None:
    """When the run's state became final: the time of its first ``release``/``reject`` row, else (a run the gate
    decided alone) of its ``run`` row; None while pending."""
    if state not in FINAL_STATES:
        return None
    return next((ev.created_at for ev in events if ev.kind in ("release", "reject")), events[0].created_at)


def _run_evidence(row: Any, events: list[Any]) -> RunEvidence:
    from gate.staging import run_state

    state = run_state(events) or row.decision
    record = row.record if isinstance(row.record, dict) else {}
    generator = record.get("generator") if isinstance(record.get("generator"), dict) else {}
    environment = record.get("environment") if isinstance(record.get("environment"), dict) else {}
    return RunEvidence(
        run_id=row.run_id,
        state=state,
        decided_at=decided_at(events, state),
        model={
            "backend": _str_or_none(generator.get("backend")),
            "model_name": _str_or_none(generator.get("model_name")),
        },
        system_version=_str_or_none(environment.get("hallo3_gate")),
    )


def _summary(generated: bool | None, basis: list[str], run: RunEvidence | None) -> str:
    if generated and run is not None:
        return f"generated by this system: gate run {run.run_id}, {run.state} (rests on {', '.join(basis)})"
    if generated is False:
        return "no marking of this system found: no C2PA manifest of this system and no watermark"
    if basis:
        return f"markings of this system found ({', '.join(basis)}) but no verified ledger record confirms the run"
    return "no verified evidence either way (the ledger could not be proven)"


def _watermark_method() -> str:
    from provenance.watermark import METHOD

    return METHOD


def _str_or_none(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


# --- feedback on a detection answer (SB 942 §22757.2: the tool collects user feedback) -----------------------------

MAX_FEEDBACK_COMMENT = 2000
MAX_PAYLOAD_HEX = 64


class Feedback(BaseModel):
    """What a member of the public says about a detection answer. Nothing identifies them: no name, no address."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    verdict: Literal["correct", "incorrect", "unsure"]
    payload_hex: str | None = Field(default=None, pattern=r"^[0-9a-f]{1,64}$", max_length=MAX_PAYLOAD_HEX)
    comment: str = Field(default="", max_length=MAX_FEEDBACK_COMMENT)


def record_feedback(db: Any, feedback: Feedback) -> int:
    """Store one piece of feedback (table ``detect_feedback``); returns its id."""
    created_at = datetime.now(UTC).isoformat(timespec="seconds")
    with db.transaction() as tx:
        row = tx.execute_one(
            "INSERT INTO detect_feedback (created_at, verdict, payload_hex, comment) VALUES (?, ?, ?, ?) RETURNING id",
            (created_at, feedback.verdict, feedback.payload_hex, feedback.comment),
        )
    assert row is not None
    return int(row["id"])
