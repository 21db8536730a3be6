"""What ``hallo3-gate verify`` shows: a tree like c2patool's ``--tree`` (file -> manifest -> ingredients/assertions,
then watermark and agreement), and the ledger lookup that fills ``VerifyReport.record``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.tree import Tree

from gate.database import is_postgres, resolve, sqlite_path
from gate.ledger import Ledger, Row
from gate.staging import REVIEW_KINDS, review_event, run_state
from provenance.verify import VerifyReport
from reports.errors import ProvenanceError, printable
from reports.schema import COMPLIANCE_LABELS, ComplianceRow

WHOLE_CHAIN_ROWS = 1000  # up to this many rows ledger_lookup verifies the whole chain (a fraction of a second)
_STATE_STYLE = {"Trusted": "bold green", "Valid": "yellow", "Invalid": "bold red"}


def ledger_lookup(payload_hex: str, path: Path | str | None = None) -> dict[str, Any] | None:
    """The newest ledger ``run`` row whose payload matches, or None — reported only from a chain that verifies —
    with the run's CURRENT state (``state``: the fold of every row of the run, ``gate.staging.run_state``: a pending
    run that people approved is released, one they rejected quarantined) and its review events (``review``: who,
    role, reason, comment, time, row). ``decision`` stays what the gate decided in the run row.

    ``path``: the ledger's locator (``gate.database.resolve``: an SQLite file, or a PostgreSQL URL; None → the
    default).

    The chain is recomputed before the row is returned: the whole chain when it holds at most ``WHOLE_CHAIN_ROWS``
    rows, else from the found row to the head (an edited row, or a row rewritten with its own hash recomputed,
    breaks the link to its successor). A broken chain raises ``ProvenanceError`` (exit 5) naming the ledger and the
    first bad row: the record's claim cannot be proven. Never creates a ledger that does not exist (None then); a
    file that is not a ledger raises ``InputError`` (exit 4).
    """
    locator = resolve(path)
    if not is_postgres(locator) and not sqlite_path(locator).exists():
        return None
    ledger = Ledger(locator)
    row = ledger.find_by_payload(payload_hex)
    if row is None:
        return None
    whole = ledger.last_seq() <= WHOLE_CHAIN_ROWS
    check = ledger.verify(since_seq=None if whole else row.seq)
    if not check.ok:
        span = "" if whole else f" from row {row.seq} to the head"
        raise ProvenanceError(
            ledger.display,
            f"ledger chain must verify{span} before its record of run {row.run_id} is reported",
            f"broken: {check.problems[0]}",
        )
    events = ledger.events(row.run_id)
    return {
        "ledger": ledger.display,
        "seq": row.seq,
        "run_id": row.run_id,
        "created_at": row.created_at,
        "decision": row.decision,
        "output_path": row.output_path,
        "output_sha256": row.output_sha256,
        "row_hash": row.row_hash,
        "record": row.record,
        "state": run_state(events),
        "review": [_event(r) for r in events if r.kind in REVIEW_KINDS and r.seq > row.seq],
    }


def _event(row: Row) -> dict[str, Any]:
    """A review row as ``verify --json`` shows it (a comment with the frame it is pinned to)."""
    keys = ("seq", "kind", "actor", "role", "reason", "comment", "created_at", "row_hash")
    return {**{k: getattr(row, k) for k in keys}, "frame": review_event(row).frame}


def _e(text: object) -> str:
    """A user-supplied string for rich markup: control characters shown as escapes, markup brackets escaped."""
    return escape(printable(text, newlines=False))


def disclosure_dict(manifest: Any) -> dict[str, Any] | None:
    """The manifest's latent disclosure fields (provider, system, version, created, id), or None when it has none."""
    disclosure = getattr(manifest, "disclosure", None)
    if disclosure is None:
        return None
    data = disclosure.to_dict()
    return {k: data.get(k) for k in ("provider", "system", "version", "created", "id")}


_COMPLIANCE_STYLE = {"met": "green", "not_met": "bold red", "not_applicable": "dim", "not_checked": "yellow"}


def _compliance_branch(root: Tree, rows: Sequence[ComplianceRow]) -> None:
    """One line per row: status, id and requirement; under it the evidence and the reason."""
    counts = {s: sum(r.status == s for r in rows) for s in _COMPLIANCE_STYLE}
    summary = ", ".join(f"{n} {COMPLIANCE_LABELS[s]}" for s, n in counts.items() if n)
    branch = root.add(f"compliance [dim]({_e(summary)})[/]")
    for row in rows:
        style = _COMPLIANCE_STYLE[row.status]
        node = branch.add(f"[{style}]{_e(COMPLIANCE_LABELS[row.status])}[/] {_e(row.id)} [dim]{_e(row.requirement)}[/]")
        for line in row.evidence:
            node.add(f"[dim]evidence:[/] {_e(line)}")
        if row.reason:
            node.add(f"[dim]{'note' if row.status == 'met' else 'why'}:[/] {_e(row.reason)}")


def verify_tree(report: VerifyReport, compliance: Sequence[ComplianceRow] | None = None) -> Tree:
    verdict = "[bold green]VERIFIED[/]" if report.verified else "[bold red]NOT VERIFIED[/]"
    root = Tree(f"{_e(report.path)}  {verdict}")
    _manifest_branch(root, report)
    wm = report.watermark
    w = root.add(f"watermark [dim]{_e(str(wm.method))}[/]")
    if wm.payload_hex is None:
        w.add("[red]no payload decoded[/]")
    else:
        w.add(f"payload {_e(wm.payload_hex)}")
    w.add(f"confidence {_num(wm.confidence)} over {wm.frames_decoded} frames")
    agree = {True: "[green]yes[/]", False: "[bold red]NO[/]", None: "[dim]nothing to compare[/]"}[report.agreement]
    root.add(f"watermark agrees with manifest: {agree}")
    rec = root.add("ledger record")
    if report.record is None:
        rec.add("[dim]none found[/]")
    else:
        rec.add(_e(f"seq {report.record.get('seq')} run {report.record.get('run_id')}"))
        rec.add(_e(f"decision {report.record.get('decision')} at {report.record.get('created_at')}"))
        if "state" in report.record:
            rec.add(_e(f"state now {report.record['state']}"))
        if report.record.get("review"):
            review = rec.add("review")
            for e in report.record["review"]:
                said = "".join(f", {k} {e[k]}" for k in ("reason", "comment") if e.get(k))
                review.add(_e(f"row {e['seq']} {e['kind']} by {e['actor']} ({e['role']}) at {e['created_at']}{said}"))
    if compliance:
        _compliance_branch(root, compliance)
    for reason in report.reasons:
        root.add(f"[red]why not verified:[/] {_e(reason)}")
    return root


def _manifest_branch(root: Tree, report: VerifyReport) -> None:
    m = report.manifest
    if not m.present:
        root.add("[red]no C2PA manifest[/]" + (f" [dim]({_e(m.note)})[/]" if m.note else ""))
        return
    style = _STATE_STYLE.get(m.state or "", "red")
    node = root.add(f"manifest [{style}]{_e(m.state)}[/] {_e(m.active_label)}")
    if m.title:
        node.add(f"title {_e(m.title)}")
    disclosure = disclosure_dict(m)
    if disclosure is not None:
        node.add(_e("disclosure: " + ", ".join(f"{k} {v}" for k, v in disclosure.items())))
    sig = m.signature
    signer = node.add(_e(f"signed by {sig.get('common_name')} ({sig.get('alg')})"))
    for cert in m.signer_chain:
        signer.add(_e(f"{cert['common_name']}  valid {cert['not_before'][:10]} .. {cert['not_after'][:10]}"))
    if m.failures:
        fails = node.add("[red]failures[/]")
        for code in m.failures:
            fails.add(f"[red]{_e(code.code)}[/] {_e(code.explanation or '')}")
    ingredients = node.add("ingredients")
    for ing in m.ingredients:
        ingredients.add(_e(f"{ing.get('title')} ({ing.get('format')}, {ing.get('relationship')})"))
    assertions = node.add("assertions")
    for label, data in m.assertions.items():
        assertions.add(f"{_e(label)} [dim]{_e(_summary(label, data))}[/]")


def _summary(label: str, data: Any) -> str:
    """One line per assertion: what a reviewer needs, not the raw CBOR-as-JSON."""
    try:
        if label.startswith("c2pa.actions"):
            return ", ".join(
                a["action"] + (f" ({a['digitalSourceType'].rsplit('/', 1)[-1]})" if "digitalSourceType" in a else "")
                for a in data["actions"]
            )
        if label.endswith("training-mining"):
            uses = {v.get("use") for v in data["entries"].values()}
            return f"all {uses.pop()}" if len(uses) == 1 else _brief(data)
        if label == "c2pa.soft-binding":
            return f"{data['alg']} ({len(data.get('blocks', []))} block)"
        if label.startswith("c2pa.hash.bmff"):
            return f"{data['alg']} over the whole file, {len(data.get('exclusions', []))} exclusions"
        if isinstance(data, dict) and "decision" in data:
            return f"decision {data['decision']}"
    except (KeyError, TypeError, AttributeError, IndexError):
        pass
    return _brief(data)


def _brief(data: Any, limit: int = 60) -> str:
    text = json.dumps(data, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
