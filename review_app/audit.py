"""The audit page's view of the ledger: rows filtered by kind, run, actor and decision, the result of verifying the
whole hash chain (what ``hallo3-gate ledger verify`` prints), and exports as CSV or JSON.

Exports hold the hashed columns of every row (not ``record_json``, which ``record_sha256`` binds); CSV cells that a
spreadsheet would read as a formula (starting with ``= + - @``, tab or carriage return) are prefixed with ``'``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from typing import Any

from gate.database import LEDGER_COLUMNS
from gate.ledger import KINDS, Ledger

FORMATS = ("csv", "json")
COLUMNS = tuple(c for c in LEDGER_COLUMNS if c != "record_json")  # every column but the record itself
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Filters:
    kind: str = ""
    run_id: str = ""
    actor: str = ""
    decision: str = ""

    @classmethod
    def of(cls, **values: str) -> Filters:
        clean = {k: (v or "").strip()[:200] for k, v in values.items()}
        if clean.get("kind") and clean["kind"] not in KINDS:
            clean["kind"] = ""
        return cls(**clean)

    def query(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v}

    def matches(self, row: dict[str, Any]) -> bool:
        return all(not want or str(row.get(key) or "") == want for key, want in asdict(self).items())


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    rows: int
    head: str
    problems: tuple[str, ...]


def _row_dict(row: Any) -> dict[str, Any]:
    return {c: getattr(row, c, None) for c in COLUMNS}


def user_change(kind: str, record_json: str | None) -> str | None:
    """Whom a ``user`` row changed, in words for the page ("demo-approver-1 as approver"); None for other rows."""
    if kind != "user" or not record_json:
        return None
    details = json.loads(record_json)
    who = str(details.get("user", "?"))
    return f"{who} as {details['role']}" if details.get("role") else who


def rows(db: Any, filters: Filters) -> list[dict[str, Any]]:
    """The ledger's rows that match ``filters``, newest first."""
    ledger = Ledger(db)
    found = [
        {**_row_dict(r), "user_change": user_change(r.kind, r.record_json)}
        for r in ledger.rows(kind=filters.kind or None)
    ]
    return [r for r in reversed(found) if filters.matches(r)]


def verify(db: Any) -> ChainCheck:
    report = Ledger(db).verify()
    return ChainCheck(
        ok=bool(report.ok),
        rows=int(getattr(report, "rows", 0) or 0),
        head=str(getattr(report, "head", "") or ""),
        problems=tuple(str(p) for p in report.problems),
    )


def export(found: list[dict[str, Any]], fmt: str) -> tuple[bytes, str]:
    found = [{c: row[c] for c in COLUMNS} for row in found]  # the hashed columns only
    if fmt == "json":
        return (json.dumps(found, indent=2, ensure_ascii=False) + "\n").encode("utf-8"), "application/json"
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for row in found:
        writer.writerow({k: _csv_cell(v) for k, v in row.items()})
    return buf.getvalue().encode("utf-8"), "text/csv; charset=utf-8"


def _csv_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return "" if value is None else value
