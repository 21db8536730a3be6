"""The consent registry: who agreed to be depicted, for what, until when — and the check that a video of a real person
is made only against an active consent record for that person.

A record (table ``consents`` of the gate's database, beside the ledger: ``gate.database``) holds the person's name, a
free-text scope, the sha256 and file name of the evidence (the signed form, the e-mail: the file itself is never
copied), the sha256 of the portrait it was registered with, the **face embedding** of that portrait from the offline
identity backend (``metrics.identity.FaceNetBackend``, weights verified through ``gate.weights``), an optional expiry
date, and who created or revoked it and when. Ids look like ``cns-0123456789ab``.

Expiry: ``expires_at`` is a calendar date (``YYYY-MM-DD``); the consent holds through the end of that day in UTC and is
expired from the next UTC midnight on.

Personal data. The name, the scope, the evidence file's name, the portrait's sha256, a revocation's reason and the
embedding (biometric data, GDPR Art. 9) stay in the ``consents`` table and nowhere else: they never go into a ledger
row, an audit record, a manifest, a report or a log line — those carry the consent id. ``delete`` (GDPR erasure) sets
all of them NULL and stamps ``deleted_at``; the row stays as a tombstone, so an id named by an old record still
resolves, to "deleted", and a deleted record can never match again (it has no embedding).

Every change (add, revoke, delete) appends a ledger row of kind ``consent`` in the same database transaction as the
change itself: both happen or neither. Its ``record_json`` holds the action, the consent id, the evidence sha256, the
expiry and the backend — never the name, the scope, the portrait hash or the embedding (a ledger row is never
erased, so nothing that an erasure must remove may go into one).

``match`` compares a reference portrait (and, optionally, the faces of an output video) with the records: the person
is consented iff an *active* record's embedding is the same person by the backend's own threshold
(``backend.threshold.same``) and, when output embeddings are given, their mean embedding is that same person too.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from gate.users import BadDecision, Conflict, NotFound, now, stamp
from metrics.measurement import Measurement
from reports.errors import ExitCode, Hallo3Error, InputError
from reports.hashing import sha256_file

if TYPE_CHECKING:
    from gate.database import Database, Tx
    from metrics.identity import IdentityBackend

ID_PREFIX = "cns-"
CONSENT_ID = re.compile(r"cns-[0-9a-f]{12}")
MAX_NAME = 200  # characters
MAX_SCOPE = 2000
MAX_REASON = 500
RecordStatus = Literal["active", "expired", "revoked", "deleted"]
OutcomeStatus = Literal["matched", "no_record", "no_match", "expired", "revoked", "no_face"]
OUTCOME_STATUSES: tuple[str, ...] = ("matched", "no_record", "no_match", "expired", "revoked", "no_face")

_COLUMNS = (
    "id, name, scope, evidence_sha256, evidence_name, portrait_sha256, backend, created_at, created_by, expires_at, "
    "revoked_at, revoked_by, revoke_reason, deleted_at"
)


class ConsentRefused(Hallo3Error):
    """The depicted person has no active consent record that matches (exit 1, like a failed check): raised in
    generate mode before anything is generated."""

    exit_code = ExitCode.GATE_FAILED

    @classmethod
    def from_outcome(cls, outcome: ConsentOutcome) -> ConsentRefused:
        return cls("consent", "the depicted person must have an active consent record", outcome.reason)


# --- records ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsentRecord:
    """One row of ``consents`` without its embedding. Personal fields (``name``, ``scope``, ``evidence_name``,
    ``portrait_sha256``, ``revoke_reason``) are None once the record is deleted."""

    id: str
    name: str | None
    scope: str | None
    evidence_sha256: str
    evidence_name: str | None
    portrait_sha256: str | None
    backend: str
    created_at: str
    created_by: str
    expires_at: str | None  # YYYY-MM-DD: valid through the end of that day (UTC)
    revoked_at: str | None = None
    revoked_by: str | None = None
    revoke_reason: str | None = None
    deleted_at: str | None = None

    def status(self, at: datetime | None = None) -> RecordStatus:
        """deleted > revoked > expired > active, at ``at`` (default now)."""
        if self.deleted_at is not None:
            return "deleted"
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and _utc(at).date() > date.fromisoformat(self.expires_at):
            return "expired"
        return "active"

    def to_dict(self, personal: bool = False, at: datetime | None = None) -> dict[str, Any]:
        """The record with its status at ``at``; the personal fields only with ``personal`` (never the embedding)."""
        out: dict[str, Any] = {
            "id": self.id,
            "status": self.status(at),
            "evidence_sha256": self.evidence_sha256,
            "backend": self.backend,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "revoked_by": self.revoked_by,
            "deleted_at": self.deleted_at,
        }
        if personal:
            out.update(
                name=self.name,
                scope=self.scope,
                evidence_name=self.evidence_name,
                portrait_sha256=self.portrait_sha256,
                revoke_reason=self.revoke_reason,
            )
        return out

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ConsentRecord:
        return cls(**{k: row[k] for k in _COLUMNS.split(", ")})


def _utc(at: datetime | None) -> datetime:
    if at is None:
        return now()
    if at.tzinfo is None:
        raise ValueError("consent time must be timezone-aware")
    return at.astimezone(UTC)


def new_id() -> str:
    return ID_PREFIX + secrets.token_hex(6)


def check_id(consent_id: str) -> str:
    if not isinstance(consent_id, str) or CONSENT_ID.fullmatch(consent_id) is None:
        shown = str(consent_id)[:40]
        raise BadDecision("consent id", "must look like cns-<12 hex digits>", shown)
    return consent_id


def _check_text(value: str | None, what: str, limit: int, *, required: bool) -> str | None:
    """A single line of text: trimmed, not empty when required, at most ``limit`` characters, no control characters.
    The message gives the length, never the text (it may be personal)."""
    if value is None:
        if required:
            raise BadDecision(what, "is required")
        return None
    text = value.strip()
    if not text:
        if required:
            raise BadDecision(what, "must not be empty")
        return None
    if len(text) > limit:
        raise BadDecision(what, f"must be at most {limit} characters", f"{len(text)} characters")
    if any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 or c in "\u2028\u2029" for c in text):
        raise BadDecision(what, "must be one line without control characters", f"{len(text)} characters")
    return text


def _evidence_file(path: Path) -> Path:
    """The evidence must be an existing, non-empty regular file (it is hashed, never copied)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(str(path), "evidence file must exist", "no such file") from None
    except OSError as exc:
        raise InputError(str(path), "evidence file must be readable", exc.strerror or type(exc).__name__) from None
    if not path.is_file():
        from reports.atomic import file_kind

        raise InputError(str(path), "evidence must be a regular file", file_kind(st.st_mode))
    if st.st_size == 0:
        raise InputError(str(path), "evidence file must not be empty", "0 bytes")
    return path


def _sha256(path: Path, what: str) -> str:
    try:
        return sha256_file(path)
    except OSError as exc:
        raise InputError(str(path), f"{what} file must be readable", exc.strerror or type(exc).__name__) from None


def identity_backend(*, allow_unpinned: bool = False) -> IdentityBackend:
    """The offline identity backend the registry stores embeddings of: FaceNet with dlib's 68 landmarks, both weight
    files verified against their registry pins first (as ``gate.measure`` does)."""
    from gate import weights
    from metrics.identity import FaceNetBackend

    landmarks = weights.use("dlib_landmarks_68", allow_unpinned=allow_unpinned).path
    graph = weights.use("facenet", allow_unpinned=allow_unpinned).path
    return FaceNetBackend(landmarks, graph)


def _embedding_json(embedding: np.ndarray) -> str:
    values = [float(v) for v in np.asarray(embedding, dtype=np.float64).ravel()]
    if not values or not all(math.isfinite(v) for v in values) or not any(values):
        raise InputError("portrait", "face embedding must be finite and non-zero", "degenerate embedding")
    return json.dumps(values, separators=(",", ":"))


def _ledger_row(tx: Tx, db: Database, action: str, actor: str, record: ConsentRecord) -> None:
    """The ledger row of one change, in the caller's transaction: the id and the evidence hash, nothing personal."""
    from gate.ledger import Ledger

    details = {
        "action": action,
        "consent_id": record.id,
        "evidence_sha256": record.evidence_sha256,
        "expires_at": record.expires_at,
        "backend": record.backend,
    }
    Ledger(db).append_change(tx, kind="consent", action=action, actor=actor, details=details)


def add(
    db: Database,
    *,
    name: str,
    portrait: Path,
    evidence: Path,
    scope: str | None,
    expires: date | None,
    actor: str,
    backend: IdentityBackend | None = None,
) -> ConsentRecord:
    """Register the consent of the person shown in ``portrait``; returns the new record.

    The portrait is decoded (``gate.media.read_image``) and embedded by the identity backend (default
    ``identity_backend()``); a portrait without a face is an ``InputError`` naming the file. The evidence file is
    hashed, never copied. ``expires`` may not lie in the past (UTC). One transaction: the row and its ledger row."""
    from gate.media import read_image

    name = _check_text(name, "--name", MAX_NAME, required=True) or ""
    scope = _check_text(scope, "--scope", MAX_SCOPE, required=False)
    actor = _check_text(actor, "--actor", MAX_NAME, required=True) or ""
    if expires is not None and expires < now().date():
        raise BadDecision("--expires", "must be today or later (UTC)", expires.isoformat())
    portrait, evidence = Path(portrait), _evidence_file(Path(evidence))
    image = read_image(portrait)
    backend = backend or identity_backend()
    embedding = backend.embed_image(image)
    if embedding is None:
        raise InputError(str(portrait), f"portrait must show a face ({backend.detector})", "no face found")
    record = ConsentRecord(
        id=new_id(),
        name=name,
        scope=scope,
        evidence_sha256=_sha256(evidence, "evidence"),
        evidence_name=evidence.name,
        portrait_sha256=_sha256(portrait, "portrait"),
        backend=backend.name,
        created_at=stamp(now()),
        created_by=actor,
        expires_at=None if expires is None else expires.isoformat(),
    )
    embedding_json = _embedding_json(embedding)
    with db.transaction() as tx:
        tx.execute(
            "INSERT INTO consents (id, name, scope, evidence_sha256, evidence_name, portrait_sha256, embedding, "
            "backend, created_at, created_by, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.id,
                record.name,
                record.scope,
                record.evidence_sha256,
                record.evidence_name,
                record.portrait_sha256,
                embedding_json,
                record.backend,
                record.created_at,
                record.created_by,
                record.expires_at,
            ),
        )
        _ledger_row(tx, db, "add", actor, record)
    return record


def list_records(db: Database, at: datetime | None = None, *, include_all: bool = True) -> list[ConsentRecord]:
    """Every record in creation order (a database that has no ``consents`` table yet has none); without
    ``include_all`` only those active at ``at`` (default now)."""
    if not db.table_exists("consents"):
        return []
    with db.reading() as tx:
        if not db.table_exists("consents"):  # the layout as read inside the snapshot
            return []
        rows = tx.execute(f"SELECT {_COLUMNS} FROM consents ORDER BY created_at, id")
    records = [ConsentRecord.from_row(r) for r in rows]
    return records if include_all else [r for r in records if r.status(at) == "active"]


def get(db: Database, consent_id: str) -> ConsentRecord:
    """The record ``consent_id`` (a deleted one too: its tombstone); ``NotFound`` if there is none."""
    check_id(consent_id)
    row = None
    if _has(db):
        with db.reading() as tx:
            if _has(db):  # the layout as read inside the snapshot
                row = tx.execute_one(f"SELECT {_COLUMNS} FROM consents WHERE id = ?", (consent_id,))
    if row is None:
        raise NotFound(consent_id, "no such consent record")
    return ConsentRecord.from_row(row)


def _has(db: Database) -> bool:
    return db.table_exists("consents")


def _existing(tx: Tx, consent_id: str) -> ConsentRecord:
    row = tx.execute_one(f"SELECT {_COLUMNS} FROM consents WHERE id = ?", (consent_id,))
    if row is None:
        raise NotFound(consent_id, "no such consent record")
    return ConsentRecord.from_row(row)


def revoke(db: Database, consent_id: str, actor: str, reason: str | None = None) -> ConsentRecord:
    """Revoke a record (it never matches again); ``Conflict`` if it is revoked or deleted already. The reason stays
    in the consents table (erased with the record), not in the ledger."""
    check_id(consent_id)
    actor = _check_text(actor, "--actor", MAX_NAME, required=True) or ""
    reason = _check_text(reason, "--reason", MAX_REASON, required=False)
    when = stamp(now())
    with db.transaction() as tx:
        record = _existing(tx, consent_id)
        if record.deleted_at is not None:
            raise Conflict(consent_id, "the consent record is deleted")
        if record.revoked_at is not None:
            raise Conflict(consent_id, "the consent record is revoked already", record.revoked_at)
        tx.execute(
            "UPDATE consents SET revoked_at = ?, revoked_by = ?, revoke_reason = ? WHERE id = ?",
            (when, actor, reason, consent_id),
        )
        _ledger_row(tx, db, "revoke", actor, record)
    return dataclasses.replace(record, revoked_at=when, revoked_by=actor, revoke_reason=reason)


def delete(db: Database, consent_id: str, actor: str) -> ConsentRecord:
    """GDPR erasure: the name, scope, evidence file name, portrait hash, revocation reason and embedding are set
    NULL and ``deleted_at`` is stamped; the row stays as a tombstone (the id still resolves, to "deleted").
    ``Conflict`` if it is deleted already."""
    check_id(consent_id)
    actor = _check_text(actor, "--actor", MAX_NAME, required=True) or ""
    when = stamp(now())
    with db.transaction() as tx:
        record = _existing(tx, consent_id)
        if record.deleted_at is not None:
            raise Conflict(consent_id, "the consent record is deleted already", record.deleted_at)
        tx.execute(
            "UPDATE consents SET name = NULL, scope = NULL, evidence_name = NULL, portrait_sha256 = NULL, "
            "embedding = NULL, revoke_reason = NULL, deleted_at = ? WHERE id = ?",
            (when, consent_id),
        )
        _ledger_row(tx, db, "delete", actor, record)
    erased = dict(name=None, scope=None, evidence_name=None, portrait_sha256=None, revoke_reason=None)
    return dataclasses.replace(record, **erased, deleted_at=when)


# --- matching --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsentOutcome:
    """The consent check of one run: ``status`` and, where a record was found, its id — never a name or embedding.

    ``similarity``: cosine between the reference portrait and the best-matching record (or the nearest record when
    none matches); ``output_similarity``: cosine between the mean embedding of the output's faces and that record.
    ``threshold`` is the backend's "same person" value (``backend.threshold``)."""

    status: OutcomeStatus
    consent_id: str | None
    similarity: float | None
    threshold: float
    backend: str
    output_similarity: float | None
    reason: str

    @property
    def matched(self) -> bool:
        return self.status == "matched"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "consent_id": self.consent_id,
            "similarity": self.similarity,
            "threshold": self.threshold,
            "backend": self.backend,
            "output_similarity": self.output_similarity,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class _Candidate:
    record: ConsentRecord
    cosine: float
    same: bool


def _compare(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(cosine, Euclidean distance) of two embeddings, the quantities the backend's threshold is stated in."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise InputError("embedding", f"must have {b.size} values like the consent record's", a.size)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))), float(np.linalg.norm(a - b))


def _records_with_embeddings(db: Database | None, backend: str) -> tuple[int, list[tuple[ConsentRecord, np.ndarray]]]:
    """(number of records of any kind, the records of ``backend`` that still have an embedding); no database (the
    gate's database does not exist yet) holds none."""
    if db is None or not _has(db):
        return 0, []
    with db.reading() as tx:
        if not _has(db):
            return 0, []
        total = int(tx.execute_one("SELECT COUNT(*) AS n FROM consents")["n"])
        rows = tx.execute(
            f"SELECT {_COLUMNS}, embedding FROM consents WHERE embedding IS NOT NULL AND backend = ? "
            "ORDER BY created_at, id",
            (backend,),
        )
    return total, [(ConsentRecord.from_row(r), np.asarray(json.loads(r["embedding"]), dtype=np.float64)) for r in rows]


def match(
    db: Database | None,
    reference_rgb: np.ndarray,
    *,
    output_embeddings: Sequence[np.ndarray | None] | None = None,
    at: datetime | None = None,
    backend: IdentityBackend | None = None,
) -> ConsentOutcome:
    """Whether the person in ``reference_rgb`` (and, if given, the output's faces) has an active consent record.

    Records without an embedding (deleted) or from another backend cannot match. Among the records that are the same
    person as the reference, an active one wins (the most similar); if only expired or revoked ones match, the most
    similar of those gives the status. ``output_embeddings`` (the backend's embeddings of the output's frames, None
    where a frame has no face): their mean must be the same person as the matched record too."""
    backend = backend or identity_backend()
    threshold = backend.threshold

    def outcome(status: OutcomeStatus, reason: str, **kw: Any) -> ConsentOutcome:
        fields: dict[str, Any] = {"consent_id": None, "similarity": None, "output_similarity": None, **kw}
        return ConsentOutcome(status=status, threshold=threshold.value, backend=backend.name, reason=reason, **fields)

    rule = f"{threshold.metric} {'>=' if threshold.metric == 'cosine' else '<'} {threshold.value}"
    total, records = _records_with_embeddings(db, backend.name)
    if not records:
        why = "no consent record in the registry" if total == 0 else f"none of the {total} consent records"
        if total:
            why += f" has a {backend.name} face embedding (deleted, or registered with another backend)"
        return outcome("no_record", why)
    ref = backend.embed_image(reference_rgb)
    if ref is None:
        return outcome("no_face", f"no face found in the reference portrait ({backend.detector})")
    candidates = []
    for record, emb in records:
        cosine, distance = _compare(ref, emb)
        candidates.append(_Candidate(record, cosine, threshold.same(cosine, distance)))
    same = [c for c in candidates if c.same]
    if not same:
        best = max(c.cosine for c in candidates)
        return outcome(
            "no_match",
            f"the reference portrait is not the person of any of the {len(candidates)} consent records "
            f"(best cosine {best:.4f}; same person iff {rule})",
            similarity=best,
        )
    active = [c for c in same if c.record.status(at) == "active"]
    pick = max(active or same, key=lambda c: c.cosine)
    if not active:
        status = pick.record.status(at)
        when = pick.record.revoked_at if status == "revoked" else pick.record.expires_at
        return outcome(
            status,
            f"the reference portrait matches consent record {pick.record.id}, {status} ({when})",
            consent_id=pick.record.id,
            similarity=pick.cosine,
        )
    found = {"consent_id": pick.record.id, "similarity": pick.cosine}
    if output_embeddings is not None:
        faces = [np.asarray(e, dtype=np.float64) for e in output_embeddings if e is not None]
        if not faces:
            return outcome("no_face", "no face found in the output's frames", **found)
        emb = next(e for r, e in records if r.id == pick.record.id)
        out_cos, out_dist = _compare(np.mean(np.stack(faces), axis=0), emb)
        if not threshold.same(out_cos, out_dist):
            return outcome(
                "no_match",
                f"the output's faces (mean embedding of {len(faces)} frames) are not the person of consent record "
                f"{pick.record.id} (cosine {out_cos:.4f}; same person iff {rule})",
                output_similarity=out_cos,
                **found,
            )
        found["output_similarity"] = out_cos
    return outcome("matched", f"active consent record {pick.record.id} (cosine {pick.cosine:.4f}; {rule})", **found)


def measurement(outcome: ConsentOutcome) -> Measurement:
    """The policy metric ``consent``: 1.0 matched, 0.0 refused (no record, no match, expired, revoked); a reference
    without a face is not measured (the check then fails closed)."""
    protocol = (
        f"consent registry: reference portrait (and the output's faces) vs active consent records, {outcome.backend} "
        "face embedding, the backend's same-person threshold"
    )
    details = outcome.to_dict()
    if outcome.status == "no_face":
        return Measurement.not_measured("consent", f"not measured: {outcome.reason}", protocol, details=details)
    value = 1.0 if outcome.matched else 0.0
    return Measurement("consent", value, protocol, higher_is_better=True, unit="", details=details)
