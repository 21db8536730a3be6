"""What a run page shows beyond the record itself: which actions the viewer's role offers, each check with the
policy rule behind it, the C2PA manifest as a tree, and the files the page serves (video, reference portrait).

What a role may do is decided (and enforced) by ``gate.review``; the page only hides the buttons a role cannot
use, so a viewer never sees approve/reject.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gate import review
from gate.policy import BACKEND_THRESHOLD, BOUNDS
from gate.staging import VIDEO_NAME
from gate.users import NotFound
from reports.hashing import sha256_file

PORTRAIT_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


@dataclass(frozen=True)
class Check:
    name: str
    metric: str
    rule: str  # e.g. "sync_c >= 3.0"
    value: Any
    outcome: str
    required: bool
    message: str
    why: str  # the policy's own words for the rule


@dataclass(frozen=True)
class Node:
    """One line of the manifest tree."""

    label: str
    value: str = ""
    children: tuple[Node, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class RunPage:
    can_approve: bool
    can_reject: bool
    can_claim: bool
    reason_codes: tuple[str, ...]
    checks: tuple[Check, ...]
    manifest: Node

    @classmethod
    def of(cls, view: Any, user: Any) -> RunPage:
        allowed = review.allowed_decisions(view, user)
        return cls(
            can_approve="approve" in allowed,
            can_reject="reject" in allowed,
            can_claim=view.state == "pending" and not user.disabled and user.at_least("reviewer"),
            reason_codes=tuple(view.review.reason_codes) if view.review is not None else (),
            checks=checks(view.record),
            manifest=manifest_tree(view.record),
        )


def checks(record: dict[str, Any]) -> tuple[Check, ...]:
    rules = ((record.get("policy") or {}).get("content") or {}).get("checks") or {}
    out = []
    for c in record.get("checks") or []:
        table, bound = _policy_bound(rules if isinstance(rules, dict) else {}, c["name"])
        shown = f"|{c['metric']}|" if bound == "abs_max" else c["metric"]
        why = [str(table["why"])] if table.get("why") else []
        if bound and table.get(bound) == BACKEND_THRESHOLD:
            why.append(f'threshold: the identity backend\'s own same-person value (policy: {bound} = "backend")')
        out.append(
            Check(
                name=c["name"],
                metric=c["metric"],
                rule=f"{shown} {c['op']} {_number(c['threshold'])}",
                value=c.get("value"),
                outcome=c["outcome"],
                required=bool(c.get("required", True)),
                message=c.get("message") or "",
                why=" · ".join(why),
            )
        )
    return tuple(out)


def _policy_bound(rules: dict[str, Any], name: str) -> tuple[dict[str, Any], str | None]:
    """The policy table behind check ``name`` and which of its bounds the check is: a check is named after its table
    when the table has one bound, else ``<table>.<bound>`` (``gate.policy``)."""
    table = rules.get(name)
    if isinstance(table, dict):
        bounds = [b for b in BOUNDS if b in table]
        return table, bounds[0] if len(bounds) == 1 else None
    base, _, bound = name.rpartition(".")
    table = rules.get(base)
    if isinstance(table, dict) and bound in BOUNDS:
        return table, bound
    return {}, None


def _number(value: Any) -> str:
    """A threshold as people write it: 256, 0.12, 3 (not 256.0, 3.0)."""
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.6g}"
    return str(value)


def manifest_tree(record: dict[str, Any]) -> Node:
    """The C2PA manifest as read back from disk when the run was gated, as a tree (like ``hallo3-gate verify``)."""
    p = record.get("provenance") or {}
    wm = record.get("watermark") or {}
    signer = Node(
        "signed by",
        str(p.get("signer_subject") or "—"),
        (
            Node("issuer", str(p.get("signer_issuer") or "—")),
            Node("algorithm", str(p.get("signing_alg") or "—")),
            Node("signed at", str(p.get("signed_at") or "—")),
        ),
    )
    children = [
        Node("label", str(p.get("manifest_label") or "—")),
        Node("claim generator", str(p.get("claim_generator") or "—")),
        signer,
        Node("assertions", str(len(p.get("assertions") or [])), tuple(Node(a) for a in p.get("assertions") or [])),
        Node("ingredients", str(len(p.get("ingredients") or [])), tuple(Node(i) for i in p.get("ingredients") or [])),
        Node(
            "soft binding",
            str(p.get("soft_binding_alg") or "—"),
            (Node("payload", str(p.get("soft_binding_payload") or "—")),),
        ),
    ]
    if p.get("failures"):
        children.append(Node("failures", str(len(p["failures"])), tuple(Node(f) for f in p["failures"])))
    watermark = Node(
        "watermark",
        str(wm.get("method") or "—"),
        (
            Node("payload", str(wm.get("payload") or "—")),
            Node("decoded from disk", str(wm.get("decoded_payload") or "—")),
            Node("agrees with manifest", _yes_no(p.get("watermark_agrees"))),
        ),
    )
    state = str(p.get("manifest_state") or "NotChecked")
    return Node("manifest", state, (*children, watermark))


def _yes_no(value: Any) -> str:
    return {True: "yes", False: "NO", None: "not checked"}.get(value, str(value))


# --- files the run page serves ---------------------------------------------------------------------------------------


def video_file(view: Any, runs_dir: Path) -> Path:
    """The run's video: ``<run directory>/video.mp4``, a regular file (not a link) inside the runs directory."""
    if view.directory is None:
        raise NotFound("video", "this run's files are not under the runs directory")
    return _regular_file_inside(Path(view.directory) / VIDEO_NAME, runs_dir, "video")


def portrait_file(view: Any) -> tuple[Path, str]:
    """The reference portrait named in the record, served only while it is an image with the recorded sha256 (a
    moved, changed or substituted file is not shown as this run's reference)."""
    ref = ((view.record.get("inputs") or {}).get("portrait")) or None
    if not ref or ref.get("media_type") not in PORTRAIT_TYPES:
        raise NotFound("portrait", "this run's record names no reference portrait image")
    path = Path(ref["path"])
    try:
        st = os.stat(path)
    except OSError:
        raise NotFound("portrait", "the reference portrait is no longer where the run read it", ref["path"]) from None
    if not stat.S_ISREG(st.st_mode) or sha256_file(path) != ref.get("sha256"):
        raise NotFound("portrait", "the file at the portrait's path is not the one the run read (sha256 differs)")
    return path, ref["media_type"]


def _regular_file_inside(path: Path, root: Path, what: str) -> Path:
    try:
        st = os.lstat(path)
        inside = path.resolve().is_relative_to(Path(root).resolve())
    except OSError:
        raise NotFound(what, f"this run has no {what} file") from None
    if not stat.S_ISREG(st.st_mode) or not inside:
        raise NotFound(what, f"this run's {what} is not a regular file inside the runs directory")
    return path
