"""The compliance matrix: which legal and standards obligations one video meets, and on what evidence.

One row per requirement of ``../shared/specs/compliance.md`` §6. ``REQUIREMENTS`` is the one table of rows (id, the
requirement in one line, its source); the evaluation of each row from what the gate verified on the final file lives
below it. A status comes from evidence read from the file (its manifest, its watermark, its metadata, its frames), from
the gate's own records of it, or from the configuration in force only where the obligation is about the operator
(retention) — never from a policy's wish alone.

Statuses (``reports.schema.ComplianceRow``): ``met`` — the evidence listed shows it; ``not_met`` — the evidence shows
it is not, or the project cannot meet it (the reason says which: e.g. the in-house watermark is not on the C2PA
soft-binding algorithm list); ``not_applicable`` — the obligation does not apply (no rule gives it today);
``not_checked`` — the gate could not look (the reason says what was missing), which is never a pass.

How it is used:

* ``hallo3-gate verify`` of any file: ``evidence_from_report`` (or ``evidence_for_file``) reads the manifest, the
  watermark, the ``AIGC`` tag, the ledger record found by the watermark payload, re-checks the visible label (its spec
  from the validating manifest's disclosure assertion ``visible_label``, else from the record's ``label``), takes the
  consent outcome from the record (and the consent record's status today from the gate database), then ``matrix``.
* a gate run's own record: ``evidence_for_run`` right after the final file was verified from disk, then
  ``record_fields`` gives the record's ``compliance``, ``disclosure``, ``consent`` and ``label``; ``unmet(rows,
  policy.compliance_required)`` lists the required rows that block a release.

Conventions inside ``Evidence`` (documented where they are read): ``label = {"checked": False, "reason": ...}`` —
a label is known but could not be checked here; ``ledger_record = {"run_id": ..., "seq": None}`` — the run's own
ledger row is still to be written; ``consent["status_now"]`` — the consent record's status today.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provenance.disclosure import DISCLOSURE_LABEL
from reports.schema import COMPLIANCE_IDS, ComplianceRow

if TYPE_CHECKING:  # H1's and the verifier's types; imported lazily at run time so this module stays light
    from gate.config import GateConfig
    from provenance.c2pa import ManifestReport
    from provenance.disclosure import AigcLabel
    from provenance.verify import VerifyReport, WatermarkCheck


@dataclass(frozen=True)
class Requirement:
    id: str
    requirement: str  # one line
    source: str


REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement(
        "eu-ai-act-50-2",
        "Synthetic video is marked in a machine-readable, detectable way (signed, time-stamped metadata layer)",
        "EU AI Act Art. 50(2); Code of Practice Measure 1.1.1; Commission Guidelines C(2026)5054 points 69-70",
    ),
    Requirement(
        "eu-code-1-1-2-watermark",
        "An imperceptible watermark is a second marking layer, robust to compression and cropping",
        "EU Code of Practice Measure 1.1.2",
    ),
    Requirement(
        "rfc3161-timestamp",
        "The manifest signature carries an RFC 3161 time-stamp from a time-stamping authority",
        "EU Code of Practice Measure 1.1.1 (digitally signed and time-stamped)",
    ),
    Requirement(
        "ca-sb942-latent",
        "Latent disclosure: provider, system name and version, creation time and a unique id, detectable and durable",
        "California SB 942 as amended by AB 853, Bus. & Prof. Code §22757.3(b)",
    ),
    Requirement(
        "ca-sb942-detection",
        "The provider's detection tool finds the disclosure and says what its answer rests on",
        "California SB 942 §22757.2; EU Code of Practice Commitment 2 and Measure 3.4",
    ),
    Requirement(
        "eu-ai-act-50-4-label",
        "Deep fakes are disclosed clearly at the first exposure (visible label, top-right suggested)",
        "EU AI Act Art. 50(4); Code of Practice Section 2; SB 942 §22757.3(a) (visible disclosure option)",
    ),
    Requirement(
        "cn-gb45438-explicit",
        "A visible AI-generated notice on the opening frames for at least 2 s, text at least 5 % of the short side",
        "China Labelling Measures Art. 4; GB 45438-2025",
    ),
    Requirement(
        "cn-gb45438-implicit",
        "The file carries the AIGC implicit-label metadata (Label, ContentProducer, ProduceID, ContentPropagator, "
        "PropagateID)",
        "China Labelling Measures Art. 5; GB 45438-2025 Annex E; TC260 practice guide (28 Aug 2025)",
    ),
    Requirement(
        "c2pa-watermark-action",
        "The manifest's actions record the watermark, and a soft-binding assertion names it with timespan blocks",
        "C2PA 2.2 §18.10 (c2pa.watermarked), C2PA Implementation Guidance (c2pa.watermarked.bound)",
    ),
    Requirement(
        "c2pa-soft-binding",
        "The soft-binding algorithm is on the C2PA soft-binding algorithm list",
        "C2PA 2.2 §18.10; c2pa-org/softbinding-algorithm-list",
    ),
    Requirement(
        "c2pa-manifest-recovery",
        "A manifest-stripped copy is traced back to its record by its watermark",
        "C2PA 2.2 §18.10.5.1 (soft-binding resolution)",
    ),
    Requirement(
        "cawg-identity",
        "A CAWG identity assertion (X.509, cawg.x509.cose) names the signing organisation",
        "CAWG identity assertion 1.2 (ratified 15 Dec 2025)",
    ),
    Requirement(
        "cawg-training-mining",
        "The manifest states whether AI training and data mining are allowed",
        "CAWG training-and-data-mining assertion; C2PA c2pa.training-mining",
    ),
    Requirement(
        "cn-art9-retention",
        "Logs of generated content are kept at least 6 months, with documented deletion",
        "China Labelling Measures Art. 9; EU Code of Practice Measure 1.1.3",
    ),
    Requirement(
        "consent",
        "The depicted person consented: an active, unexpired, unrevoked consent record matches their face",
        "GDPR Art. 9; Tennessee ELVIS Act; China Deep Synthesis Provisions (separate consent)",
    ),
)
ROW_IDS: tuple[str, ...] = tuple(r.id for r in REQUIREMENTS)
STATUSES = ("met", "not_met", "not_applicable", "not_checked")


def requirement(row_id: str) -> Requirement:
    for r in REQUIREMENTS:
        if r.id == row_id:
            return r
    raise KeyError(row_id)


if ROW_IDS != COMPLIANCE_IDS:  # pragma: no cover - a programming error, caught by the tests too
    raise RuntimeError("gate.compliance.REQUIREMENTS and reports.schema.ComplianceId name different rows")

# --- the evidence ----------------------------------------------------------------------------------------------------

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
# the watermark action labels C2PA knows: spec 2.2 §18.10 ``c2pa.watermarked``; the Implementation Guidance and the
# SDKs ``c2pa.watermarked.bound`` (the watermark's payload is bound to this manifest) / ``.unbound``
WATERMARK_ACTIONS = ("c2pa.watermarked", "c2pa.watermarked.bound", "c2pa.watermarked.unbound")
TRAINING_MINING_LABELS = ("cawg.training-mining", "c2pa.training-mining")
TRAINING_USES = ("allowed", "notAllowed", "constrained")
CAWG_X509 = "cawg.x509.cose"
MIN_RETENTION_DAYS = 183  # gate.config.MIN_RETENTION_DAYS: six months (China Labelling Measures Art. 9)
MIN_LABEL_SECONDS = 2.0  # GB 45438: the notice is visible for at least 2 s at the start
MIN_LABEL_SIZE = 0.05  # GB 45438: text height at least 5 % of the short side (images; for video: our reading)
_SECONDS_SLACK = 1e-6  # float noise in frames / fps (50 frames at 25 fps must read as 2.0 s)
# The video-capable and general ``alg`` names of the C2PA soft-binding algorithm list, copied from
# c2pa-org/softbinding-algorithm-list, softbinding-algorithm-list.json at commit 00c97c07cfe1 (identifiers 1-28,
# read 2026-12-02). Only a name on the list makes a conformant soft-binding assertion; this project's watermark
# (provenance.watermark.METHOD) is not on it.
SOFT_BINDING_ALGORITHM_LIST: tuple[str, ...] = (
    "com.digimarc.validate.1",
    "org.atsc.a336",
    "io.iscc.v0",
    "com.adobe.trustmark.Q",
    "com.adobe.trustmark.C",
    "com.adobe.icn.dense",
    "ai.steg.api",
    "ai.trufo.pawprint.watermark",
    "ai.trufo.pawprint.fingerprint",
    "app.overlai.watermark.1",
    "tv.kinetiq.watercast.48.1",
    "castLabs.watermark.1",
    "com.adobe.trustmark.P",
    "com.imatag.lamark.v1",
    "com.nagra.nexguard.watermark.1",
    "com.mentaport.watermark.1",
    "com.digicaps.fingerprint.1",
    "com.sonicorigin.watermark.1",
    "com.microsoft.invismark.1",
    "com.microsoft.wavmark.1",
    "ai.contentlens.image.basewmk",
    "ai.contentlens.image.ensemblewmk",
    "ai.contentlens.image.customwmk",
    "ai.contentlens.audio.mono",
    "ai.contentlens.audio.stereo",
    "es.lumatrace",
    "com.markany.watermark.1",
    "com.verimatrix.watermark.1",
)
_ACTIONS_LABEL = re.compile(r"^c2pa\.actions(\.v\d+)?(__\d+)?$")


@dataclass(frozen=True)
class Evidence:
    """Everything the matrix rests on, read from the final file and the gate's own records of it.

    ``manifest``: the C2PA manifest as read and validated from the final file. ``watermark``: the watermark decoded
    from its frames; ``agreement``: the watermark equals the manifest's soft binding (None: nothing to compare).
    ``aigc``: the GB 45438 ``AIGC`` container tag, parsed; ``aigc_error``: the tag is present but invalid (the field
    and rule). ``label``: ``gate.label.LabelCheck.to_dict()`` on the final frames (None: not checked;
    ``{"checked": False, "reason": ...}``: a label is known but could not be checked here, and why);
    ``label_required``: the policy burns a label (None: unknown). ``consent``: ``gate.consent.ConsentOutcome.to_dict()``
    (None: not checked; a ``status_now`` key, when present, is the consent record's status today).
    ``retention_days`` / ``retention_source``: the retention in force and where it was set; ``ledger_verified``: the
    ledger's hash chain verifies (None: no ledger); ``ledger_record``: the ledger's record of this output, found by
    its watermark payload (``gate.verify_view.ledger_lookup``). ``false_positive_bound``: the watermark decoder's
    stated false-positive bound, in words.
    """

    manifest: ManifestReport
    watermark: WatermarkCheck
    agreement: bool | None = None
    aigc: AigcLabel | None = None
    aigc_error: str | None = None
    label: dict | None = None
    label_required: bool | None = None
    consent: dict | None = None
    retention_days: int | None = None
    retention_source: str | None = None
    ledger_verified: bool | None = None
    ledger_record: dict | None = None
    false_positive_bound: str | None = None


# --- the matrix ------------------------------------------------------------------------------------------------------


def _row(row_id: str, status: str, evidence: list[str] | None = None, reason: str | None = None) -> ComplianceRow:
    req = requirement(row_id)
    return ComplianceRow(
        id=row_id, requirement=req.requirement, source=req.source, status=status, evidence=evidence or [], reason=reason
    )


def _met(row_id: str, evidence: list[str], note: str | None = None) -> ComplianceRow:
    return _row(row_id, "met", evidence, note)


def _not_met(row_id: str, reason: str, evidence: list[str] | None = None) -> ComplianceRow:
    return _row(row_id, "not_met", evidence, reason)


def _not_checked(row_id: str, reason: str, evidence: list[str] | None = None) -> ComplianceRow:
    return _row(row_id, "not_checked", evidence, reason)


def _h1(manifest: Any, name: str) -> Any:
    """One of the properties provenance.c2pa.ManifestReport gained for compliance (disclosure, cawg_identity,
    watermark_action, timestamp, soft_binding_timespan); a report without it reads as "absent" (fail closed)."""
    return getattr(manifest, name, None)


def _manifest_problem(m: ManifestReport) -> str | None:
    """Why the manifest cannot be evidence (None: it validates)."""
    if not m.present:
        return f"no manifest: {m.note or 'never signed, or stripped by a remux or re-encode'}"
    if not m.validates:
        return f"manifest {m.state}: {', '.join(m.failure_codes) or 'no failure code given'}"
    return None


def _manifest_evidence(m: ManifestReport) -> str:
    signer = m.signature.get("common_name") or m.signature.get("issuer")
    return f"C2PA manifest {m.active_label}: {m.state}" + (f", signed by {signer}" if signer else "")


def _actions(m: ManifestReport) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for label, data in m.assertions.items():
        if _ACTIONS_LABEL.match(label) and isinstance(data, Mapping):
            out.extend(a for a in data.get("actions") or [] if isinstance(a, Mapping))
    return out


def _short_type(url: object) -> str:
    return str(url).rsplit("/", 1)[-1]


def rule_eu_50_2(ev: Evidence) -> ComplianceRow:
    """Met: the file's C2PA manifest validates (Trusted, or Valid with an untrusted signer) and its actions say the
    video was created by a trained algorithm (``c2pa.created`` with IPTC digitalSourceType trainedAlgorithmicMedia)
    — a signed, machine-readable marking that ``verify`` detects. The time-stamp is its own row."""
    rid, m = "eu-ai-act-50-2", ev.manifest
    problem = _manifest_problem(m)
    if problem:
        return _not_met(rid, problem)
    created = [a for a in _actions(m) if a.get("action") == "c2pa.created"]
    if not created:
        return _not_met(rid, "the manifest's actions have no c2pa.created action", [_manifest_evidence(m)])
    types = [str(a.get("digitalSourceType")) for a in created]
    if TRAINED_ALGORITHMIC_MEDIA not in types:
        shown = ", ".join(_short_type(t) for t in types)
        return _not_met(rid, f"c2pa.created has digitalSourceType {shown}, not trainedAlgorithmicMedia")
    return _met(rid, [_manifest_evidence(m), "c2pa.actions: c2pa.created, digitalSourceType trainedAlgorithmicMedia"])


def rule_watermark(ev: Evidence) -> ComplianceRow:
    """Met: the invisible watermark was decoded from the file's frames to a valid payload and, when the file has a
    manifest with a soft binding, equals it. A stripped manifest does not touch this row."""
    rid, wm = "eu-code-1-1-2-watermark", ev.watermark
    if wm.payload_hex is None:
        return _not_met(rid, f"no watermark decoded from {wm.frames_decoded} frames of the file ({wm.method})")
    evidence = [
        f"watermark {wm.method}: payload {wm.payload_hex} decoded from {wm.frames_decoded} frames of the file"
        + (f", confidence {wm.confidence:.3f}" if wm.confidence is not None else "")
    ]
    if ev.false_positive_bound:
        evidence.append(f"false positives: {ev.false_positive_bound}")
    if ev.agreement is False:
        sb = ev.manifest.soft_binding
        theirs = f"{sb.alg}:{sb.payload_hex}" if sb is not None else "?"
        return _not_met(rid, f"the decoded watermark differs from the manifest's soft binding {theirs}", evidence)
    if ev.agreement:
        evidence.append("equals the manifest's c2pa.soft-binding (alg and payload)")
    return _met(rid, evidence)


def rule_timestamp(ev: Evidence) -> ComplianceRow:
    """Met: the manifest validates and its signature carries an RFC 3161 time-stamp (the time the TSA signed)."""
    rid, m = "rfc3161-timestamp", ev.manifest
    problem = _manifest_problem(m)
    if problem:
        return _not_met(rid, problem)
    stamp = _h1(m, "timestamp")
    codes = ", ".join(_h1(m, "timestamp_codes") or []) or "none"
    if not stamp and m.signature.get("time"):
        return _not_met(
            rid, f"the signature's time-stamp did not validate (time-stamp codes: {codes})", [_manifest_evidence(m)]
        )
    if not stamp:
        return _not_met(
            rid,
            "the signature carries no RFC 3161 time-stamp: no time-stamping authority configured "
            "($HALLO3_GATE_TSA_URL)",
            [_manifest_evidence(m)],
        )
    return _met(rid, [_manifest_evidence(m), f"signature time-stamp (RFC 3161): {stamp}; codes: {codes}"])


_DISCLOSURE_FIELDS = ("provider", "system", "version", "created", "id")


def _disclosure_line(d: Any) -> str:
    return f"{DISCLOSURE_LABEL}: " + ", ".join(f"{k} {getattr(d, k)}" for k in _DISCLOSURE_FIELDS)


def rule_sb942_latent(ev: Evidence) -> ComplianceRow:
    """Met: the manifest validates and carries the disclosure assertion with all five latent-disclosure fields
    (provider, system name, version, creation time, unique id) non-empty. Its durability is the watermark row's."""
    rid, m = "ca-sb942-latent", ev.manifest
    problem = _manifest_problem(m)
    if problem:
        return _not_met(rid, problem)
    d = _h1(m, "disclosure")
    if d is None:
        error = _h1(m, "disclosure_error")
        why = f"its disclosure assertion {DISCLOSURE_LABEL} is malformed: {error}" if error else None
        return _not_met(
            rid, why or f"the manifest carries no disclosure assertion {DISCLOSURE_LABEL}", [_manifest_evidence(m)]
        )
    empty = [k for k in _DISCLOSURE_FIELDS if not str(getattr(d, k, "") or "").strip()]
    if empty:
        return _not_met(rid, f"disclosure fields empty: {', '.join(empty)}", [_manifest_evidence(m)])
    return _met(rid, [_manifest_evidence(m), _disclosure_line(d)])


def _pending(ev: Evidence) -> bool:
    """The evidence of a gate run's own record: its ledger row does not exist yet (``evidence_for_run``)."""
    return ev.ledger_record is not None and ev.ledger_record.get("seq") is None


def _recorded_disclosure(ev: Evidence) -> dict | None:
    record = (ev.ledger_record or {}).get("record")
    found = record.get("disclosure") if isinstance(record, Mapping) else None
    return found if isinstance(found, Mapping) else None


def rule_sb942_detection(ev: Evidence) -> ComplianceRow:
    """Met: this detection (``hallo3-gate verify``, ``gate.detect``) found the disclosure — in the validating manifest,
    or through the watermark in the ledger's record of the run — and states what that rests on. Whether the
    operator offers the tool free and publicly (SB 942 §22757.2) is not visible in a file; the note says so."""
    rid, m = "ca-sb942-detection", ev.manifest
    basis: list[str] = []
    evidence: list[str] = []
    disclosure = None
    if _manifest_problem(m) is None:
        basis.append("c2pa_manifest")
        disclosure = _h1(m, "disclosure")
        if disclosure is not None:
            evidence.append(f"found in the manifest: {_disclosure_line(disclosure)}")
    if ev.watermark.payload_hex is not None:
        basis.append("watermark")
    if ev.ledger_record is not None and not _pending(ev):
        basis.append("ledger")
        recorded = _recorded_disclosure(ev)
        if recorded is not None:
            run = ev.ledger_record.get("run_id")
            same = disclosure is not None and all(recorded.get(k) == getattr(disclosure, k) for k in _DISCLOSURE_FIELDS)
            fields_text = ", ".join(f"{k} {recorded.get(k)}" for k in _DISCLOSURE_FIELDS)
            evidence.append(
                f"the ledger record of run {run} holds the same disclosure"
                if same
                else f"found in the ledger record of run {run}: {fields_text}"
            )
            disclosure = disclosure or recorded
    if not basis:
        return _not_met(rid, "no marking of this system found: no valid manifest, no watermark")
    evidence.insert(0, f"answer rests on: {', '.join(basis)}")
    if disclosure is None:
        return _not_met(rid, "detected, but no disclosure fields were found (manifest or ledger record)", evidence)
    return _met(rid, evidence, "the detection tool's public, free access is the operator's to provide")


def _flat_label(label: Mapping[str, Any]) -> dict[str, Any]:
    return {**dict(label.get("spec") or {}), **{k: v for k, v in label.items() if k != "spec"}}


def _label_evidence(lab: Mapping[str, Any]) -> list[str]:
    out = [
        f"visible label {lab.get('text')!r} at {lab.get('position')}, text height {_fmt(lab.get('size'))} of the short "
        f"side: {lab.get('frames_labelled')} of {lab.get('frames_checked')} frames checked carry it, "
        f"{_fmt(lab.get('seconds_labelled'))} s from the start (required {_fmt(lab.get('seconds_required'))} s)"
    ]
    if lab.get("persistent") and lab.get("persistent_frames") is not None:
        out.append(
            f"persistent mark on {lab.get('persistent_labelled')} of {lab.get('persistent_frames')} later frames"
        )
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "?" if value is None else str(value)


def _label_unchecked(rid: str, ev: Evidence) -> ComplianceRow | None:
    """The row when there is no label check to judge (None: there is one)."""
    if ev.label is None:
        return _label_missing(rid, ev)
    if ev.label.get("checked") is False:
        return _not_checked(rid, str(ev.label.get("reason") or "the visible label was not checked"))
    return None


def _label_missing(rid: str, ev: Evidence) -> ComplianceRow:
    if ev.label_required is False:
        return _not_met(rid, "the policy burns no visible label")
    if ev.label_required:
        return _not_checked(rid, "the policy burns a visible label, but it was not checked on the final file")
    return _not_checked(
        rid, "no visible-label spec is known for this file (none in a valid manifest's disclosure, none in a record)"
    )


def rule_eu_50_4(ev: Evidence) -> ComplianceRow:
    """Met: the label check on the final file's frames passed — every frame of the first ``start_seconds`` carries
    the label (and, if persistent, every later frame the mark), found by matching the rendered label."""
    rid = "eu-ai-act-50-4-label"
    unchecked = _label_unchecked(rid, ev)
    if unchecked is not None:
        return unchecked
    lab = _flat_label(ev.label)
    if not lab.get("ok"):
        return _not_met(
            rid, f"visible label check failed: {lab.get('reason') or 'no reason given'}", _label_evidence(lab)
        )
    return _met(rid, _label_evidence(lab))


def rule_cn_explicit(ev: Evidence) -> ComplianceRow:
    """Met: the label check passed, it covers at least ``MIN_LABEL_SECONDS`` from the start, and its text height is
    at least ``MIN_LABEL_SIZE`` of the short side (GB 45438)."""
    rid = "cn-gb45438-explicit"
    unchecked = _label_unchecked(rid, ev)
    if unchecked is not None:
        return unchecked
    lab = _flat_label(ev.label)
    evidence = _label_evidence(lab)
    if not lab.get("ok"):
        return _not_met(rid, f"visible label check failed: {lab.get('reason') or 'no reason given'}", evidence)
    seconds = float(lab.get("seconds_labelled") or 0.0)
    if seconds + _SECONDS_SLACK < MIN_LABEL_SECONDS:
        return _not_met(rid, f"label shown {seconds:.3g} s from the start, less than {MIN_LABEL_SECONDS:g} s", evidence)
    size = float(lab.get("size") or 0.0)
    if size + 1e-9 < MIN_LABEL_SIZE:
        return _not_met(rid, f"label text height {size:.3g} of the short side, less than {MIN_LABEL_SIZE:g}", evidence)
    return _met(rid, evidence)


_AIGC_FIELDS = (
    ("Label", "label"),
    ("ContentProducer", "content_producer"),
    ("ProduceID", "produce_id"),
    ("ReservedCode1", "reserved_code1"),
    ("ContentPropagator", "content_propagator"),
    ("PropagateID", "propagate_id"),
    ("ReservedCode2", "reserved_code2"),
)


def rule_cn_implicit(ev: Evidence) -> ComplianceRow:
    """Met: the MP4 carries the ``AIGC`` metadata tag, its JSON validates (``provenance.disclosure.parse_aigc``: the
    TC260-mandatory fields non-empty) and ``Label`` is "1" (AI-generated)."""
    rid = "cn-gb45438-implicit"
    if ev.aigc_error:
        return _not_met(rid, f"AIGC metadata tag invalid: {ev.aigc_error}")
    if ev.aigc is None:
        return _not_met(rid, "the file carries no AIGC metadata tag")
    shown = ", ".join(f"{key}={getattr(ev.aigc, attr, None)}" for key, attr in _AIGC_FIELDS)
    evidence = [f"container metadata AIGC: {shown}"]
    if str(ev.aigc.label) != "1":
        return _not_met(rid, f"AIGC Label is {ev.aigc.label!r}, not '1' (AI-generated)", evidence)
    return _met(rid, evidence)


def rule_watermark_action(ev: Evidence) -> ComplianceRow:
    """Met: the manifest validates, its actions name the watermark (a ``WATERMARK_ACTIONS`` label) and its
    ``c2pa.soft-binding`` assertion has a block whose scope is a timespan (start < end, in ms)."""
    rid, m = "c2pa-watermark-action", ev.manifest
    problem = _manifest_problem(m)
    if problem:
        return _not_met(rid, problem)
    evidence = [_manifest_evidence(m)]
    if hasattr(m, "watermark_action"):
        action = m.watermark_action
    else:  # a ManifestReport without the property: read the actions directly
        action = next((a.get("action") for a in _actions(m) if a.get("action") in WATERMARK_ACTIONS), None)
    if action not in WATERMARK_ACTIONS:
        return _not_met(
            rid, f"no watermark action ({', '.join(WATERMARK_ACTIONS)}) in the manifest's actions", evidence
        )
    evidence.append(f"c2pa.actions: {action}")
    if m.soft_binding is None:
        return _not_met(rid, "the manifest has no c2pa.soft-binding assertion", evidence)
    evidence.append(f"c2pa.soft-binding: alg {m.soft_binding.alg}, value {m.soft_binding.payload_hex}")
    span = _h1(m, "soft_binding_timespan")
    if not span or len(span) != 2 or not 0 <= span[0] < span[1]:
        return _not_met(rid, f"the soft binding's block has no timespan scope (start < end, ms): {span!r}", evidence)
    evidence.append(f"scope.timespan {span[0]}-{span[1]} ms")
    return _met(rid, evidence)


def rule_soft_binding_list(ev: Evidence) -> ComplianceRow:
    """Met: the soft-binding ``alg`` is on the C2PA soft-binding algorithm list (``SOFT_BINDING_ALGORITHM_LIST``).
    This project's own watermark is not, so a file it made does not meet this row — said with the reason."""
    rid, m = "c2pa-soft-binding", ev.manifest
    problem = _manifest_problem(m)
    if problem:
        return _not_met(rid, problem)
    if m.soft_binding is None:
        return _not_met(rid, "the manifest has no c2pa.soft-binding assertion", [_manifest_evidence(m)])
    alg = m.soft_binding.alg
    evidence = [f"c2pa.soft-binding alg {alg}"]
    if alg not in SOFT_BINDING_ALGORITHM_LIST:
        return _not_met(
            rid,
            f"{alg} (this project's own watermark) is not on the C2PA soft-binding algorithm list "
            "(c2pa-org/softbinding-algorithm-list): its assertion is not a conformant soft binding, and other "
            "tools' resolvers cannot look it up; hallo3-gate's own ledger lookup can",
            evidence,
        )
    return _met(rid, [*evidence, "on the C2PA soft-binding algorithm list"])


def rule_manifest_recovery(ev: Evidence) -> ComplianceRow:
    """Met: the watermark decoded from the frames found this output's run in the gate's ledger (chain verified) —
    what recovers the manifest's claims for a stripped copy."""
    rid = "c2pa-manifest-recovery"
    payload = ev.watermark.payload_hex
    if payload is None:
        return _not_met(rid, "no watermark decoded: nothing to look the record up by")
    if _pending(ev):
        return _not_checked(
            rid,
            f"the ledger row of run {ev.ledger_record.get('run_id')} is appended after this record is written; "
            f"`hallo3-gate verify` finds it by the watermark payload {payload}",
        )
    if ev.ledger_record is None:
        return _not_met(
            rid, f"no ledger record holds watermark payload {payload} (another installation, or another --ledger)"
        )
    rec = ev.ledger_record
    evidence = [
        f"watermark payload {payload} -> ledger {rec.get('ledger')} row {rec.get('seq')}, run {rec.get('run_id')} "
        f"(decision {rec.get('decision')}, state now {rec.get('state', rec.get('decision'))}); chain verified"
    ]
    if not ev.manifest.present:
        evidence.append("the file has no manifest: its record was recovered through the watermark")
    return _met(rid, evidence)


def rule_cawg_identity(ev: Evidence) -> ComplianceRow:
    """Met: the manifest validates and carries a ``cawg.identity`` assertion signed with X.509 (``cawg.x509.cose``)
    that the SDK validated, naming the signing organisation."""
    rid, m = "cawg-identity", ev.manifest
    problem = _manifest_problem(m)
    if problem:
        return _not_met(rid, problem)
    ident = _h1(m, "cawg_identity")
    if not ident:
        return _not_met(
            rid,
            "the manifest carries no cawg.identity assertion (signed by a callback/HSM signer, or with a c2pa SDK "
            "that cannot write it)",
            [_manifest_evidence(m)],
        )
    codes = ", ".join(str(c) for c in ident.get("codes") or []) or "none"
    evidence = [
        f"cawg.identity: sig_type {ident.get('sig_type')}, organisation {ident.get('organisation')}, codes {codes}"
    ]
    if ident.get("sig_type") != CAWG_X509:
        return _not_met(rid, f"cawg.identity sig_type is {ident.get('sig_type')}, not {CAWG_X509}", evidence)
    if not ident.get("validated"):
        return _not_met(rid, f"cawg.identity signature not validated (codes: {codes})", evidence)
    return _met(rid, evidence)


def rule_training_mining(ev: Evidence) -> ComplianceRow:
    """Met: the manifest validates and a training-and-data-mining assertion (CAWG or C2PA) has entries, each with a
    ``use`` of allowed / notAllowed / constrained."""
    rid, m = "cawg-training-mining", ev.manifest
    problem = _manifest_problem(m)
    if problem:
        return _not_met(rid, problem)
    evidence: list[str] = []
    bad: list[str] = []
    for label in TRAINING_MINING_LABELS:
        data = m.assertions.get(label)
        if data is None:
            continue
        entries = data.get("entries") if isinstance(data, Mapping) else None
        if not isinstance(entries, Mapping) or not entries:
            bad.append(f"{label} has no entries")
            continue
        uses = {k: (v.get("use") if isinstance(v, Mapping) else None) for k, v in entries.items()}
        wrong = sorted(k for k, u in uses.items() if u not in TRAINING_USES)
        if wrong:
            bad.append(f"{label}: entries without a valid use: {', '.join(wrong)}")
            continue
        kinds = sorted(set(uses.values()))
        evidence.append(
            f"{label}: {len(uses)} entries, " + (f"all {kinds[0]}" if len(kinds) == 1 else ", ".join(kinds))
        )
    if bad:
        return _not_met(rid, "; ".join(bad), evidence)
    if not evidence:
        return _not_met(rid, f"the manifest has no {' or '.join(TRAINING_MINING_LABELS)} assertion")
    return _met(rid, evidence)


def rule_retention(ev: Evidence) -> ComplianceRow:
    """Met: the retention in force is at least six months (``MIN_RETENTION_DAYS``) and the ledger that keeps the
    logs verifies (its hash chain, including any retention tombstones). An operator obligation: the retention comes
    from the configuration in force, the chain from the ledger itself."""
    rid = "cn-art9-retention"
    if ev.retention_days is None:
        return _not_checked(rid, "the retention setting is not known")
    evidence = [f"retention {ev.retention_days} days ({ev.retention_source or 'source not stated'})"]
    if ev.retention_days < MIN_RETENTION_DAYS:
        return _not_met(
            rid, f"retention {ev.retention_days} days is less than {MIN_RETENTION_DAYS} (six months)", evidence
        )
    if ev.ledger_verified is None:
        return _not_checked(rid, "no ledger to verify (none at the configured place)", evidence)
    if not ev.ledger_verified:
        return _not_met(rid, "the ledger's hash chain does not verify", evidence)
    return _met(rid, [*evidence, "ledger hash chain verifies"])


def rule_consent(ev: Evidence) -> ComplianceRow:
    """Met: the consent check matched an active consent record (by the backend's same-person threshold) and, where
    its status today is known (``status_now``), the record is still active."""
    rid = "consent"
    c = ev.consent
    if c is None:
        return _not_checked(rid, "no consent check for this file (no record of one)")
    status = c.get("status")
    cid = c.get("consent_id")
    line = f"consent {cid or '(none)'}: {status}"
    if c.get("similarity") is not None:
        line += f", similarity {float(c['similarity']):.3f} (threshold {_fmt(c.get('threshold'))}, {c.get('backend')})"
    if c.get("output_similarity") is not None:
        line += f", output faces {float(c['output_similarity']):.3f}"
    evidence = [line]
    if status != "matched":
        return _not_met(rid, c.get("reason") or f"consent {status}", evidence)
    now = c.get("status_now")
    if now is not None and now != "active":
        return _not_met(rid, f"consent {cid} matched when the video was made, but the record is {now} now", evidence)
    if now == "active":
        evidence.append(f"consent record {cid} is still active")
    return _met(rid, evidence)


RULES: dict[str, Callable[[Evidence], ComplianceRow]] = {
    "eu-ai-act-50-2": rule_eu_50_2,
    "eu-code-1-1-2-watermark": rule_watermark,
    "rfc3161-timestamp": rule_timestamp,
    "ca-sb942-latent": rule_sb942_latent,
    "ca-sb942-detection": rule_sb942_detection,
    "eu-ai-act-50-4-label": rule_eu_50_4,
    "cn-gb45438-explicit": rule_cn_explicit,
    "cn-gb45438-implicit": rule_cn_implicit,
    "c2pa-watermark-action": rule_watermark_action,
    "c2pa-soft-binding": rule_soft_binding_list,
    "c2pa-manifest-recovery": rule_manifest_recovery,
    "cawg-identity": rule_cawg_identity,
    "cawg-training-mining": rule_training_mining,
    "cn-art9-retention": rule_retention,
    "consent": rule_consent,
}


def matrix(ev: Evidence) -> list[ComplianceRow]:
    """One row per ``REQUIREMENTS`` entry, in that order."""
    return [RULES[r.id](ev) for r in REQUIREMENTS]


def unmet(rows: list[ComplianceRow], required: tuple[str, ...] | list[str]) -> list[ComplianceRow]:
    """The rows among ``required`` (a policy's ``[compliance] require``) that are not met — what blocks a release."""
    wanted = set(required)
    return [row for row in rows if row.id in wanted and row.status != "met"]


# --- gathering the evidence for any file -----------------------------------------------------------------------------


def evidence_for_file(
    path: str | Path,
    frames: Any,
    *,
    trust_anchors_pem: bytes | None = None,
    ledger_locator: Any = None,
    config: GateConfig | None = None,
    require_trusted: bool = False,
) -> Evidence:
    """Read everything the matrix needs from ``path`` (``frames``: its decoded frames, for the watermark): the
    manifest, the watermark, the ledger record found by the payload (``gate.verify_view.ledger_lookup``, chain
    verified), then ``evidence_from_report``."""
    from gate.verify_view import ledger_lookup
    from provenance.verify import verify

    report = verify(
        path,
        frames,
        trust_anchors_pem=trust_anchors_pem,
        require_trusted=require_trusted,
        lookup=lambda payload: ledger_lookup(payload, ledger_locator),
    )
    return evidence_from_report(report, ledger_locator=ledger_locator, config=config)


def evidence_from_report(
    report: VerifyReport, *, ledger_locator: Any = None, config: GateConfig | None = None
) -> Evidence:
    """The evidence for a file already verified (``provenance.verify.verify`` with the ledger lookup): adds the AIGC
    tag, the visible-label check on the file's frames (decoded again, only when a label spec is known: from the
    validating manifest's disclosure assertion ``visible_label``, else from the ledger record's ``label``), the
    consent outcome of the ledger record (with the consent record's status today), the retention in force and
    whether the ledger verifies."""
    from gate import config as gate_config

    config = config if config is not None else gate_config.load()
    spec, label_required = label_spec_for(report)
    return _evidence(
        report,
        config,
        label=check_label(Path(report.path), spec) if spec is not None else None,
        label_required=label_required,
        consent=consent_for(report.record, ledger_locator),
        ledger_verified=True if report.record is not None else ledger_verifies(ledger_locator),
        ledger_record=report.record,
    )


def _evidence(report: VerifyReport, config: GateConfig, **found: Any) -> Evidence:
    """What every body of evidence reads from a verified file and the configuration: the manifest, the watermark and
    their agreement, the AIGC tag, the retention in force, the watermark's false-positive bound; ``found`` holds the
    rest (label, consent, ledger)."""
    aigc, aigc_error = read_aigc(Path(report.path))
    return Evidence(
        manifest=report.manifest,
        watermark=report.watermark,
        agreement=report.agreement,
        aigc=aigc,
        aigc_error=aigc_error,
        retention_days=config.retention_days,
        retention_source=config.retention_source,
        false_positive_bound=false_positive_bound(report.watermark.method),
        **found,
    )


def evidence_for_run(
    report: VerifyReport,
    *,
    run_id: str,
    label: dict | None,
    label_required: bool,
    consent: dict | None,
    config: GateConfig,
    ledger_locator: Any = None,
) -> Evidence:
    """The evidence for a gate run's own record, gathered right after ``gate.stamp.sign_and_verify`` verified the
    final file from disk (``report``). ``label``: ``gate.label.check`` on the final file's frames (``to_dict()``);
    ``label_required``: the policy burns a label; ``consent``: the run's ``ConsentOutcome.to_dict()``. The run's
    ledger row is appended after its record is written, so ``ledger_record`` is ``{"run_id": run_id, "seq": None}``
    (the recovery row says "not checked" and why), and the ledger verified is the chain before that row."""
    return _evidence(
        report,
        config,
        label=label,
        label_required=label_required,
        consent=consent,
        ledger_verified=ledger_verifies(ledger_locator),
        ledger_record={"run_id": run_id, "seq": None},
    )


def record_fields(ev: Evidence) -> dict[str, Any]:
    """The 1.3 record's compliance parts from one body of evidence: ``compliance`` (``matrix``), ``disclosure`` (the
    validating manifest's disclosure assertion), ``consent`` (by id, ``ConsentRef``), ``label`` (the check,
    ``LabelRecord``) — each None when there is none, so ``GateRecord(..., **record_fields(ev))``."""
    from reports.schema import ConsentRef, DisclosureRecord, LabelRecord

    disclosure = _h1(ev.manifest, "disclosure") if _manifest_problem(ev.manifest) is None else None
    checked = ev.label is not None and ev.label.get("checked") is not False
    return {
        "compliance": matrix(ev),
        "disclosure": DisclosureRecord.from_disclosure(disclosure) if disclosure is not None else None,
        "consent": ConsentRef.from_outcome(ev.consent) if ev.consent is not None else None,
        "label": LabelRecord.from_check(ev.label) if checked else None,
    }


def read_aigc(path: Path) -> tuple[AigcLabel | None, str | None]:
    """The ``AIGC`` container tag parsed (``provenance.disclosure.parse_aigc``), or the reason it is invalid."""
    try:
        from gate.media import read_container_metadata
        from provenance.disclosure import AIGC_KEY, parse_aigc
    except ImportError as exc:  # a build without the AIGC reader: say so rather than claim the tag is absent
        return None, f"this hallo3-gate cannot read container metadata ({exc})"
    text = read_container_metadata(path).get(AIGC_KEY)
    if text is None:
        return None, None
    try:
        return parse_aigc(text), None
    except ValueError as exc:
        return None, str(exc)


def _recorded(report: VerifyReport) -> Mapping[str, Any]:
    record = (report.record or {}).get("record")
    return record if isinstance(record, Mapping) else {}


def label_spec_for(report: VerifyReport) -> tuple[dict | None, bool | None]:
    """The visible-label spec to check and whether a label is required: from a validating manifest's disclosure
    assertion (``visible_label``: a dict, or null when the policy burns none), else from the ledger record
    (``label``; a record of schema 1.3+ without one, or whose policy says ``[disclosure] visible = false``, burns
    none). (None, None): nothing known."""
    m = report.manifest
    if m.present and m.validates:
        assertion = m.assertions.get(DISCLOSURE_LABEL)
        if isinstance(assertion, Mapping) and "visible_label" in assertion:
            spec = assertion["visible_label"]
            return (_from_cbor(spec), True) if isinstance(spec, Mapping) else (None, False)
    record = _recorded(report)
    if isinstance(record.get("label"), Mapping):
        return _flat_label(record["label"]), True
    if not record:
        return None, None
    disclosure = ((record.get("policy") or {}).get("content") or {}).get("disclosure")
    if isinstance(disclosure, Mapping):  # the policy's [disclosure]: a label it asked for but no record of a check
        return None, bool(disclosure.get("visible", True))
    minor = str(record.get("schema_version", "1.0")).partition(".")[2]
    return None, (False if minor.isdigit() and int(minor) >= 3 else None)  # 1.3+ records say when a label exists


_RGB_KEYS = ("text_rgb", "box_rgb")


def _from_cbor(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A label spec as read back from a manifest assertion. c2pa stores assertion JSON as CBOR and writes an array of
    small whole numbers as a byte string, which reads back as base64 text (``[255, 255, 255]`` -> ``"////"``): turn
    the colour triples back into numbers; anything else is left for ``LabelSpec.from_dict`` to judge."""
    out = dict(spec)
    for key in _RGB_KEYS:
        value = out.get(key)
        if isinstance(value, str):
            try:
                raw = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                continue
            if len(raw) == 3:
                out[key] = list(raw)
    return out


def check_label(path: Path, spec: Mapping[str, Any]) -> dict:
    """Run ``gate.label.check`` on the file's frames with ``spec`` (``LabelCheck.to_dict()``). When it cannot run
    here (no ``gate.label``; the spec is malformed; its font is not on this machine), ``{"checked": False, "reason":
    ...}``: the label rows then say "not checked" and why."""
    from reports.errors import Hallo3Error

    try:
        from gate import media
        from gate.label import LabelSpec, check
    except ImportError as exc:
        return {"checked": False, "reason": f"this hallo3-gate cannot check visible labels ({exc})"}
    try:
        label_spec = LabelSpec.from_dict(dict(spec), "visible_label")
        fps = media.probe(path).fps
        return dict(check(media.iter_frames(path), fps, label_spec).to_dict())
    except Hallo3Error as exc:
        return {"checked": False, "reason": f"the label could not be re-checked: {exc.one_line()}"}


def consent_for(record: Mapping[str, Any] | None, ledger_locator: Any = None) -> dict | None:
    """The consent outcome the gate recorded for this output (the ledger record's ``consent``), with
    ``status_now``: the consent record's status today (``gate.consent``), when the registry can say."""
    recorded = ((record or {}).get("record") or {}).get("consent") if record else None
    if not isinstance(recorded, Mapping):
        return None
    out = dict(recorded)
    cid = out.get("consent_id")
    if cid:
        out["status_now"] = consent_status_now(str(cid), ledger_locator)
        if out["status_now"] is None:
            del out["status_now"]
    return out


def consent_status_now(consent_id: str, ledger_locator: Any = None) -> str | None:
    """active / expired / revoked / deleted for a consent id in the gate database, or None (no registry, no such
    id). Only the id and status are read: never the name or the embedding."""
    try:
        from gate import consent
        from gate.database import Database
    except ImportError:
        return None
    from datetime import UTC, datetime

    from reports.errors import Hallo3Error

    try:
        found = consent.get(Database.open(ledger_locator), consent_id)
    except (Hallo3Error, OSError):  # no database, no consents table, no such id (NotFound)
        return None
    return str(found.status(datetime.now(UTC)))


def ledger_verifies(ledger_locator: Any = None) -> bool | None:
    """Whether the ledger's hash chain verifies; None when there is no ledger (never creates one)."""
    from gate.database import resolve
    from gate.staging import existing_ledger

    ledger = existing_ledger(resolve(ledger_locator))  # None: no SQLite file, or a PostgreSQL database without tables
    return ledger.verify().ok if ledger is not None else None


def false_positive_bound(method: str | None) -> str | None:
    """The decoder's stated bound on reading an unmarked clip as watermarked (only for this project's method)."""
    from provenance import watermark, wm_codeword

    if method != watermark.METHOD:
        return None
    flips = watermark.WatermarkConfig().chase_bits
    bound = wm_codeword.false_positive_bound(flips)
    return f"an unmarked clip reads as watermarked with probability <= {bound:.1e} (Chase decoding, {flips} bits)"
