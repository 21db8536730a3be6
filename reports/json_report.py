"""``record.json``: the authoritative audit record, written atomically with a stable key order."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from reports.atomic import write_text_atomic
from reports.errors import InputError
from reports.schema import SCHEMA_VERSION, GateRecord


def write_json(record: GateRecord, path: str | Path) -> Path:
    """Fields in schema order, free-form objects with sorted keys, UTF-8, newline at the end."""
    return write_text_atomic(path, record.to_json())


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "(record)"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {err['msg']}{more}"


def read_json(path: str | Path) -> GateRecord:
    """Load and validate a record; an unreadable or invalid file is an ``InputError`` naming the first problem."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise InputError(p, "must be a readable audit record file", exc.strerror or type(exc).__name__) from None
    try:
        return GateRecord.from_json(raw)
    except ValidationError as exc:
        raise InputError(
            p, f"must be a valid hallo3-gate audit record (schema {SCHEMA_VERSION})", _first_error(exc)
        ) from None
