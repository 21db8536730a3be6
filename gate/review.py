"""Human review of gated runs: the service layer the command line, the web pages and the JSON API all call.

A run whose policy has a ``[review]`` table and that passed every automated check is ``pending`` (its directory is
``OUT/pending/<run_id>``). People then decide, and every decision is a ledger row of that run:

* ``approve`` (decision ``pending``) — by an approver or admin; the approval that completes the policy's
  ``required_approvals`` is followed, in the SAME transaction, by a ``release`` row (decision ``released``);
* ``reject`` (decision ``quarantined``) — by a reviewer, approver or admin;
* ``comment`` (decision ``pending``: the state it was written in) — a note by a reviewer, approver or admin while the
  run is pending, optionally pinned to a frame of the video (``record_json`` = ``{"run_id", "frame"}``). A comment
  decides nothing: it is no approval, changes no state, and the state fold ignores it.

The state of a run is the fold of its ledger rows (``reports.schema.review_state``); it is never kept anywhere else.
The four-eyes rule and the state are checked inside the write transaction that appends the row (serialised against
every other writer of the database), so two people deciding at once can never both count as the last approval, nor
decide a run that is no longer pending:

* the submitter never approves their own run (with ``four_eyes = true``, the default);
* one person counts once (a second approval by the same user is refused);
* admins are not exempt; a reviewer may reject but not approve; a viewer decides nothing;
* a run that is not pending → ``Conflict``.

After the commit the run's directory is settled (``gate.staging.settle``: ``review.json``, the record with its review,
the reports re-rendered, one rename to ``released/`` or ``quarantine/``). Should that fail, the decision stands (it
is in the ledger) and ``gate.staging.recover`` (run at the start of every gate run in that directory) or ``settle``
finishes the move.

Run ids from requests are checked (``gate.staging.check_run_id``) and paths are only ever built from the runs
directory's ``Layout``; nothing a request sends is used as a path.

Claims (table ``claims``) tell other reviewers that someone works on a run; they expire (``CLAIM_TTL_S``) and are
not ledger rows (they decide nothing).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from gate.staging import REVIEW_KINDS, comment_frame, review_event
from gate.users import (
    AuthError,
    BadDecision,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    ServiceError,
    User,
    now,
    stamp,
)
from reports import schema as S
from reports.errors import Hallo3Error, OutputError

__all__ = [
    "AuthError",
    "BadDecision",
    "Claim",
    "Conflict",
    "Forbidden",
    "NotFound",
    "RateLimited",
    "RunPage",
    "RunState",
    "RunSummary",
    "RunView",
    "ServiceError",
    "allowed_decisions",
    "can_comment",
    "checked_run_id",
    "claim",
    "comment",
    "decide",
    "get_run",
    "list_runs",
    "review_record",
    "unclaim",
]

RunState = Literal["pending", "released", "quarantined"]
STATES: tuple[str, ...] = ("pending", "released", "quarantined")
DECISIONS = ("approve", "reject")
SORTS = ("age", "newest", "model", "submitter", "advisories")
MAX_COMMENT = 2000
MAX_PER_PAGE = 200
CLAIM_TTL_S = 30 * 60
_EVENT_COLUMNS = "seq, kind, run_id, created_at, decision, actor, role, reason, comment, row_hash"
# a comment row's details (its frame) are in its record_json; other rows' (the run's whole record) are not read here
_NOTE_COLUMN = "CASE WHEN kind = 'comment' THEN record_json ELSE NULL END AS note_json"


# --- values ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    run_id: str
    user_name: str
    claimed_at: str
    expires_at: str


@dataclass(frozen=True)
class RunSummary:
    """One line of the queue."""

    run_id: str
    state: RunState
    created_at: str
    age_s: float
    model: str
    backend: str
    submitter: str | None
    advisory_failures: int
    approvals: int
    required_approvals: int | None
    claim: Claim | None


@dataclass(frozen=True)
class RunPage:
    items: list[RunSummary]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


@dataclass(frozen=True)
class RunView:
    """One run: its record (as the ledger holds it), state, directory, review history and claim."""

    run_id: str
    state: RunState
    record: dict[str, Any]
    directory: Path | None  # where its files are now (None: not under this runs directory)
    submitter: str | None
    review: S.ReviewRecord | None  # None: the policy asked for no review
    claim: Claim | None
    events: list[dict[str, Any]] = field(default_factory=list)  # its ledger rows (without record_json), by seq

    @property
    def video(self) -> Path | None:
        from gate.staging import VIDEO_NAME

        return self.directory / VIDEO_NAME if self.directory is not None else None

    @property
    def approvers(self) -> list[str]:
        return [e["actor"] for e in self.events if e["kind"] == "approve"]


# --- reading ---------------------------------------------------------------------------------------------------------


def checked_run_id(run_id: str) -> str:
    """A run id from a request: one that cannot name a run (bad characters, ``..``, a path) is simply not found."""
    from gate.staging import check_run_id

    try:
        return check_run_id(run_id)
    except Hallo3Error:
        shown = run_id if isinstance(run_id, str) and len(run_id) <= 140 else "(too long)"
        raise NotFound("run_id", "no run has this id (1-128 letters, digits, '.', '_', '-')", shown) from None


def _events(tx, run_id: str) -> list[dict[str, Any]]:
    """A run's review rows by seq (dicts of ``_EVENT_COLUMNS`` plus ``frame``: a comment's pinned frame, else None)."""
    rows = tx.execute(
        f"SELECT {_EVENT_COLUMNS}, {_NOTE_COLUMN} FROM ledger WHERE run_id = ? "
        f"AND kind IN ({', '.join('?' * len(REVIEW_KINDS))}) ORDER BY seq",
        (run_id, *REVIEW_KINDS),
    )
    for r in rows:
        r["frame"] = comment_frame(r.pop("note_json", None))
    return rows


def state_of(events: Iterable[Mapping[str, Any]]) -> RunState:
    """The state a run's ledger rows lead to: the gate's own decision, then the review's (a final state stays)."""
    rows = list(events)
    if not rows:
        raise ValueError("a run has at least its own ledger row")
    first = rows[0]["decision"]
    if first != "pending":
        return first
    return S.review_state(r["kind"] for r in rows)


def _review_rules(record: Mapping[str, Any]) -> tuple[int, bool, tuple[str, ...]] | None:
    """(required approvals, four eyes, reason codes) of a run: its record's ``review``, else its policy's
    ``[review]`` (parsed by the policy's own rules); None when the run's policy asks for no review."""
    review = record.get("review")
    if isinstance(review, Mapping):
        return int(review["required_approvals"]), bool(review["four_eyes"]), tuple(review["reason_codes"])
    content = (record.get("policy") or {}).get("content") or {}
    if "review" not in content:
        return None
    from gate.policy import _parse_review

    rules = _parse_review(f"run {record.get('run_id')}: policy", content["review"])
    return rules.required_approvals, rules.four_eyes, tuple(rules.reason_codes)


@dataclass(frozen=True)
class _Rules:
    required_approvals: int
    four_eyes: bool
    reason_codes: tuple[str, ...]


def review_record(events: Iterable[Any], review_policy: Any) -> S.ReviewRecord:
    """The review of a run as its record and ``review.json`` carry it: the policy's rules and the run's ledger rows
    (its submission ``run`` row first; ``Row`` objects or dicts)."""
    rows = [_as_dict(e) for e in events]
    if not rows or rows[0]["kind"] != "run":
        raise ValueError("a review starts with the run's own ledger row")
    review_events = [review_event(r) for r in rows if r["kind"] in REVIEW_KINDS]
    return S.ReviewRecord(
        required_approvals=review_policy.required_approvals,
        four_eyes=review_policy.four_eyes,
        reason_codes=list(review_policy.reason_codes),
        submitted_by=rows[0]["actor"] or "unknown",
        state=S.review_state(e.kind for e in review_events),
        events=review_events,
    )


def _as_dict(event: Any) -> dict[str, Any]:
    return dict(event) if isinstance(event, Mapping) else dict(event.__dict__)


def _claims(tx, run_ids: Iterable[str] | None = None) -> dict[str, Claim]:
    rows = tx.execute(
        "SELECT run_id, user_name, claimed_at, expires_at FROM claims WHERE expires_at > ?", (stamp(now()),)
    )
    wanted = set(run_ids) if run_ids is not None else None
    return {r["run_id"]: Claim(**r) for r in rows if wanted is None or r["run_id"] in wanted}


def _directory(layout, state: str, run_id: str) -> Path | None:
    """Where a run's files are under this runs directory: its state's directory, else pending/ (decided, not yet
    moved); None if neither exists."""
    places = {"pending": layout.pending, "released": layout.released, "quarantined": layout.quarantine}
    for place in (places[state], layout.pending):
        d = place / run_id
        if d.is_dir() and not d.is_symlink():
            return d
    return None


def _layout(runs_dir: str | Path):
    from gate.staging import Layout

    return Layout(Path(runs_dir))


def get_run(db, runs_dir: str | Path, run_id: str) -> RunView:
    """One run of this runs directory; ``NotFound`` if the ledger has no such run or its files are not here."""
    run_id = checked_run_id(run_id)
    with db.reading() as tx:
        events = _events(tx, run_id)
        run_row = tx.execute_one(
            "SELECT record_json FROM ledger WHERE run_id = ? AND kind = 'run' ORDER BY seq LIMIT 1", (run_id,)
        )
        claims = _claims(tx, [run_id])
    if not events or run_row is None or events[0]["kind"] != "run":
        raise NotFound(run_id, "no run with this id in the ledger")
    state = state_of(events)
    directory = _directory(_layout(runs_dir), state, run_id)
    if directory is None:
        raise NotFound(run_id, "the run's directory is not under this runs directory", str(runs_dir))
    record = json.loads(run_row["record_json"])
    rules = _review_rules(record)
    review = review_record(events, _Rules(*rules)) if rules is not None else None
    return RunView(run_id, state, record, directory, events[0]["actor"], review, claims.get(run_id), events)


def _summary(record: dict[str, Any], events: list[dict[str, Any]], claim: Claim | None, t: datetime) -> RunSummary:
    created = events[0]["created_at"]
    try:
        age = (t - datetime.fromisoformat(created)).total_seconds()
    except ValueError:
        age = 0.0
    generator = record.get("generator") or {}
    advisories = sum(
        1 for c in record.get("checks") or [] if not c.get("required", True) and c.get("outcome") != "pass"
    )
    rules = _review_rules(record)
    return RunSummary(
        run_id=events[0]["run_id"],
        state=state_of(events),
        created_at=created,
        age_s=max(0.0, age),
        model=str(generator.get("model_name") or ""),
        backend=str(generator.get("backend") or ""),
        submitter=events[0]["actor"],
        advisory_failures=advisories,
        approvals=sum(1 for e in events if e["kind"] == "approve"),
        required_approvals=rules[0] if rules else None,
        claim=claim,
    )


_SORT_KEYS = {
    "age": (lambda s: s.created_at, False),  # longest waiting first
    "newest": (lambda s: s.created_at, True),
    "model": (lambda s: (s.model, s.backend, s.created_at), False),
    "submitter": (lambda s: (s.submitter or "", s.created_at), False),
    "advisories": (lambda s: (-s.advisory_failures, s.created_at), False),
}


def list_runs(
    db,
    runs_dir: str | Path,
    *,
    state: str | None = None,
    model: str | None = None,
    submitter: str | None = None,
    max_age_s: float | None = None,
    sort: str = "age",
    page: int = 1,
    per_page: int = 25,
) -> RunPage:
    """The runs of this runs directory (those whose files are under it), filtered, sorted and one page of them.

    ``model`` matches the generator's model name or backend; ``max_age_s`` keeps runs younger than that."""
    if state is not None and state not in STATES:
        raise BadDecision("state", f"must be one of {', '.join(STATES)}", state)
    if sort not in SORTS:
        raise BadDecision("sort", f"must be one of {', '.join(SORTS)}", sort)
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise BadDecision("page", "must be a whole number from 1", page)
    if isinstance(per_page, bool) or not isinstance(per_page, int) or not 1 <= per_page <= MAX_PER_PAGE:
        raise BadDecision("per_page", f"must be a whole number from 1 to {MAX_PER_PAGE}", per_page)
    if max_age_s is not None and not max_age_s >= 0:
        raise BadDecision("max_age_s", "must be a number of seconds >= 0", max_age_s)
    layout = _layout(runs_dir)
    t = now()
    with db.reading() as tx:
        rows = tx.execute(
            f"SELECT {_EVENT_COLUMNS} FROM ledger WHERE kind IN ('run', 'approve', 'reject', 'release') ORDER BY seq"
        )
        by_run: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            by_run.setdefault(r["run_id"], []).append(r)
        claims = _claims(tx)
        records = {
            r["run_id"]: r["record_json"]
            for r in tx.execute("SELECT run_id, record_json FROM ledger WHERE kind = 'run' ORDER BY seq")
        }
    items: list[RunSummary] = []
    for run_id, events in by_run.items():
        if events[0]["kind"] != "run" or run_id not in records:
            continue
        run_state = state_of(events)
        if state is not None and run_state != state:
            continue
        if submitter is not None and events[0]["actor"] != submitter:
            continue
        if _directory(layout, run_state, run_id) is None:
            continue  # another runs directory's run (one database may serve several)
        summary = _summary(json.loads(records[run_id]), events, claims.get(run_id), t)
        if model is not None and model not in (summary.model, summary.backend):
            continue
        if max_age_s is not None and summary.age_s > max_age_s:
            continue
        items.append(summary)
    key, reverse = _SORT_KEYS[sort]
    items.sort(key=key, reverse=reverse)
    start = (page - 1) * per_page
    return RunPage(items[start : start + per_page], len(items), page, per_page)


# --- deciding --------------------------------------------------------------------------------------------------------


def _may_decide(
    user: User, decision: str, state: str, submitter: str | None, approvers: list[str], four_eyes: bool
) -> None:
    """Raise unless ``user`` may make ``decision`` on a run in ``state`` (the role and four-eyes rules)."""
    if user.disabled:
        raise Forbidden(user.name, "a disabled user decides nothing")
    if not user.at_least("reviewer"):
        raise Forbidden(user.name, "a viewer may not decide", f"role {user.role}")
    if decision == "approve" and not user.at_least("approver"):
        raise Forbidden(user.name, "only an approver or admin may approve (a reviewer may reject)", f"role {user.role}")
    if state != "pending":
        raise Conflict("run", "only a pending run can be decided", state)
    if decision == "approve":
        if four_eyes and user.name == submitter:
            raise Forbidden(user.name, "four eyes: the submitter may not approve their own run")
        if user.name in approvers:
            raise Forbidden(user.name, "four eyes: one person's approval counts once (already approved)")


def allowed_decisions(view: RunView, user: User) -> tuple[str, ...]:
    """The decisions ``user`` may make on this run now (empty: show no decision buttons)."""
    if view.review is None:
        return ()
    allowed = []
    for decision in DECISIONS:
        try:
            _may_decide(user, decision, view.state, view.submitter, view.approvers, view.review.four_eyes)
        except ServiceError:
            continue
        allowed.append(decision)
    return tuple(allowed)


def _checked_comment(comment: Any) -> str:
    if not isinstance(comment, str):
        raise BadDecision("comment", "must be text", type(comment).__name__)
    text = comment.strip()
    if not text:
        raise BadDecision("comment", "must say why (it is empty)")
    if len(text) > MAX_COMMENT:
        raise BadDecision("comment", f"must be at most {MAX_COMMENT} characters", len(text))
    if "\x00" in text:
        raise BadDecision("comment", "must not contain NUL characters")
    return text


def decide(db, runs_dir: str | Path, run_id: str, user: User, decision: str, reason: str, comment: str) -> RunState:
    """Record ``user``'s decision on a pending run; returns the run's state after it.

    Checks, in this order: the decision word, the role (``Forbidden``), the run (``NotFound``), the reason code (one
    of the run's policy's ``reason_codes``) and the comment (non-empty, at most ``MAX_COMMENT`` characters) →
    ``BadDecision``; then, inside the locked transaction, the state (``Conflict``) and four eyes (``Forbidden``).
    The approval that completes the required number appends the ``release`` row in the same transaction; then the
    directory is settled (see the module docstring)."""
    if decision not in DECISIONS:
        raise BadDecision("decision", f"must be one of {', '.join(DECISIONS)}", decision)
    if user.disabled or not user.at_least("reviewer") or (decision == "approve" and not user.at_least("approver")):
        _may_decide(user, decision, "pending", None, [], True)  # raises the role's Forbidden
    run_id = checked_run_id(run_id)
    view = get_run(db, runs_dir, run_id)  # NotFound; the run's rules come from its ledger record
    if view.review is None:
        raise Conflict(run_id, "this run's policy asks for no human review", view.state)
    rules = view.review
    if reason not in rules.reason_codes:
        shown = reason if isinstance(reason, str) and len(reason) <= 60 else "(not a code)"
        raise BadDecision("reason", f"must be one of the run's reason codes: {', '.join(rules.reason_codes)}", shown)
    text = _checked_comment(comment)

    from gate.ledger import Ledger

    ledger = Ledger(db)
    with db.transaction() as tx:
        events = _events(tx, run_id)
        state = state_of(events)
        approvers = [e["actor"] for e in events if e["kind"] == "approve"]
        _may_decide(user, decision, state, events[0]["actor"], approvers, rules.four_eyes)
        at = now().isoformat()
        if decision == "reject":
            new_state: RunState = "quarantined"
            details = {"run_id": run_id, "decision": "reject", "reason": reason}
        else:
            approvers.append(user.name)
            done = len(approvers) >= rules.required_approvals
            new_state = "released" if done else "pending"
            details = {
                "run_id": run_id,
                "decision": "approve",
                "reason": reason,
                "approvals": len(approvers),
                "required_approvals": rules.required_approvals,
            }
        common = {"run_id": run_id, "created_at": at, "output_path": "", "output_sha256": "", "payload_hex": None}
        ledger.append_in(
            tx,
            kind=decision,
            decision="quarantined" if decision == "reject" else "pending",
            actor=user.name,
            role=user.role,
            reason=reason,
            comment=text,
            record_json=_json(details),
            **common,
        )
        if new_state == "released":
            ledger.append_in(
                tx,
                kind="release",
                decision="released",
                actor=user.name,
                role=user.role,
                reason=None,
                comment=None,
                record_json=_json({"run_id": run_id, "approved_by": approvers}),
                **common,
            )
        if new_state != "pending":
            tx.execute("DELETE FROM claims WHERE run_id = ?", (run_id,))
        final_events = _events(tx, run_id)
    if new_state != "pending":
        settle(db, runs_dir, run_id, final_events, rules, new_state)
    return new_state


# --- comments --------------------------------------------------------------------------------------------------------


def _may_comment(user: User, state: str) -> None:
    """Raise unless ``user`` may comment on a run in ``state``: a reviewer or above, while the run is pending."""
    if user.disabled:
        raise Forbidden(user.name, "a disabled user comments on nothing")
    if not user.at_least("reviewer"):
        raise Forbidden(user.name, "a viewer may not comment (a reviewer, approver or admin may)", f"role {user.role}")
    if state != "pending":
        raise Conflict("run", "only a pending run can be commented on (the review ended with its decision)", state)


def can_comment(view: RunView, user: User) -> bool:
    """Whether ``user`` may comment on this run now (False: show no comment form)."""
    if view.review is None:
        return False
    try:
        _may_comment(user, view.state)
    except ServiceError:
        return False
    return True


def _frame_count(record: Mapping[str, Any]) -> int | None:
    frames = (record.get("output") or {}).get("frames")
    return frames if isinstance(frames, int) and not isinstance(frames, bool) and frames > 0 else None


def _checked_frame(frame: Any, record: Mapping[str, Any]) -> int | None:
    """A comment's frame: None, or a whole number within the run's video (0 .. frames - 1 of its record)."""
    if frame is None:
        return None
    if isinstance(frame, bool) or not isinstance(frame, int):
        shown = frame if isinstance(frame, int | float) or (isinstance(frame, str) and len(frame) <= 40) else "(?)"
        raise BadDecision("frame", "must be a whole number of a video frame (0-based)", shown)
    frames = _frame_count(record)
    if frames is None:
        raise BadDecision("frame", "cannot be checked: the run's record gives no frame count of its video", frame)
    if not 0 <= frame < frames:
        raise BadDecision("frame", f"must be within the run's video: 0 to {frames - 1}", frame)
    return frame


def comment(db, runs_dir: str | Path, run_id: str, user: User, text: str, *, frame: int | None = None) -> S.ReviewEvent:
    """Record ``user``'s comment on a pending run (a ledger row ``kind="comment"``); returns it as a review event.

    Checks, in this order: the role (``Forbidden``: reviewer or above), the run (``NotFound``), the text (as a
    decision's comment: non-empty, at most ``MAX_COMMENT`` characters, no NUL) and the frame (``None`` or within
    0 .. frames - 1 of the run's video) → ``BadDecision``; then, inside the locked transaction that appends the row,
    the state (``Conflict`` unless pending). A comment is no approval and changes no state."""
    if user.disabled or not user.at_least("reviewer"):
        _may_comment(user, "pending")  # raises the role's Forbidden
    run_id = checked_run_id(run_id)
    view = get_run(db, runs_dir, run_id)  # NotFound
    if view.review is None:
        raise Conflict(run_id, "this run's policy asks for no human review", view.state)
    note = _checked_comment(text)
    pinned = _checked_frame(frame, view.record)

    from gate.ledger import Ledger

    with db.transaction() as tx:
        _may_comment(user, state_of(_events(tx, run_id)))
        row = Ledger(db).append_in(
            tx,
            kind="comment",
            run_id=run_id,
            created_at=now().isoformat(),
            decision="pending",
            actor=user.name,
            role=user.role,
            reason=None,
            comment=note,
            output_path="",
            output_sha256="",
            payload_hex=None,
            record_json=_json({"run_id": run_id, "frame": pinned}),
        )
    return S.ReviewEvent(
        seq=row.seq,
        kind="comment",
        actor=row.actor,
        role=row.role,
        comment=row.comment,
        at=row.created_at,
        row_hash=row.row_hash,
        frame=pinned,
    )


def settle(db, runs_dir: str | Path, run_id: str, events, rules, state: RunState) -> Path:
    """Move a decided run's directory into place (``gate.staging.settle``); the decision is already committed, so a
    failure here says so and leaves the move to ``recover`` (or a later call)."""
    from gate import staging

    review = review_record(events, rules)
    try:
        return staging.settle(_layout(runs_dir), run_id, review, state)
    except (OSError, Hallo3Error) as exc:
        why = exc.one_line() if isinstance(exc, Hallo3Error) else (exc.strerror or type(exc).__name__)
        raise OutputError(
            str(_layout(runs_dir).pending / run_id),
            f"the decision is recorded in {db.display} (state {state}) but the directory could not be moved yet; "
            "the next gate run in this directory finishes it",
            why,
        ) from None


def _json(obj: dict[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=True, separators=(",", ":"))


# --- claims ----------------------------------------------------------------------------------------------------------


def claim(db, run_id: str, user: User, *, ttl_s: int = CLAIM_TTL_S) -> Claim:
    """Tell others that ``user`` works on this pending run (until ``ttl_s`` from now; claiming again renews).
    ``Conflict`` while someone else's claim is live or when the run is not pending."""
    if user.disabled or not user.at_least("reviewer"):
        raise Forbidden(user.name, "only a reviewer, approver or admin may claim a run", f"role {user.role}")
    run_id = checked_run_id(run_id)
    t = now()
    with db.transaction() as tx:
        events = _events(tx, run_id)
        if not events or events[0]["kind"] != "run":
            raise NotFound(run_id, "no run with this id in the ledger")
        state = state_of(events)
        if state != "pending":
            raise Conflict(run_id, "only a pending run can be claimed", state)
        held = tx.execute_one(
            "SELECT user_name, expires_at FROM claims WHERE run_id = ? AND expires_at > ?", (run_id, stamp(t))
        )
        if held is not None and held["user_name"] != user.name:
            raise Conflict(run_id, f"claimed by {held['user_name']} until {held['expires_at']}")
        tx.execute("DELETE FROM claims WHERE run_id = ?", (run_id,))
        c = Claim(run_id, user.name, stamp(t), stamp(t + timedelta(seconds=ttl_s)))
        tx.execute(
            "INSERT INTO claims (run_id, user_name, claimed_at, expires_at) VALUES (?, ?, ?, ?)",
            (c.run_id, c.user_name, c.claimed_at, c.expires_at),
        )
    return c


def unclaim(db, run_id: str, user: User) -> bool:
    """Release a claim: one's own, or anyone's for an admin. Returns whether a live claim was removed."""
    run_id = checked_run_id(run_id)
    with db.transaction() as tx:
        held = tx.execute_one(
            "SELECT user_name FROM claims WHERE run_id = ? AND expires_at > ?", (run_id, stamp(now()))
        )
        if held is None:
            tx.execute("DELETE FROM claims WHERE run_id = ?", (run_id,))
            return False
        if held["user_name"] != user.name and not (user.at_least("admin") and not user.disabled):
            raise Forbidden(user.name, f"only {held['user_name']} or an admin may release this claim")
        tx.execute("DELETE FROM claims WHERE run_id = ?", (run_id,))
    return True
