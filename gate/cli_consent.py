"""`hallo3-gate consent ...`: the consent registry of the people depicted (``gate.consent``) on the command line.

``consent_app`` is registered by ``gate.cli`` (``app.add_typer(consent_app, name="consent")``); errors go through
``gate.cli.main`` like every command's (one line naming the argument, the rule and the value; the exit code of its
class). Every line printed is escaped (``gate.cli.text``): a name or scope cannot colour, move or fake output.

The registry holds personal and biometric data (see ``gate.consent``): ``add`` prints only the new id, ``list`` shows
names to the operator who can read the database anyway, and nothing here writes a log.
"""

from __future__ import annotations

import json
from datetime import date

import typer

from reports.errors import UsageError

consent_app = typer.Typer(
    help="Consent records of the people depicted: add, list, revoke, delete (GDPR erasure).", no_args_is_help=True
)

DB_HELP = (
    "The gate's database (the ledger's): an SQLite file or a postgresql:// URL (default $HALLO3_GATE_DB, else "
    "$HALLO3_GATE_LEDGER, else ~/.local/share/hallo3-gate/ledger.sqlite)."
)
ACTOR_HELP = "Who does this (default $HALLO3_GATE_USER, else the OS user); recorded in the ledger."
ID_HELP = "The consent id (cns-<12 hex digits>)."


def _db(db: str | None, *, create: bool = False):
    from gate.database import Database

    return Database.open(db, create=create)


def _actor(actor: str | None) -> str:
    from gate.cli import _acting_user

    return _acting_user(actor)


def _say(*parts: str) -> None:
    from gate.cli import say

    say(*parts)


def parse_expires(value: str | None) -> date | None:
    """``--expires YYYY-MM-DD`` → a date (the consent holds through the end of that day, UTC)."""
    if value is None:
        return None
    try:
        if len(value) != 10:
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError("--expires", "must be a date YYYY-MM-DD", value[:40]) from None


@consent_app.command("add")
def consent_add(
    name: str = typer.Option(
        ..., "--name", help="The depicted person's name (personal data: kept in the registry only)."
    ),
    portrait: str = typer.Option(
        ..., "--portrait", help="A portrait of the person (JPEG, PNG, GIF, WebP, TIFF): its face embedding is stored."
    ),
    evidence: str = typer.Option(
        ..., "--evidence", help="The consent evidence (signed form, e-mail): its sha256 is stored, never the file."
    ),
    scope: str | None = typer.Option(None, "--scope", help="What the person consented to (free text, one line)."),
    expires: str | None = typer.Option(
        None, "--expires", help="Last day the consent holds, YYYY-MM-DD (UTC); default: until revoked."
    ),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the new record (without the personal fields) as JSON."),
) -> int:
    """Register a person's consent: the portrait's face embedding (offline FaceNet backend) and the evidence's sha256.

    Example: hallo3-gate consent add --name "Ann Example" --portrait ann.jpg --evidence ann-consent.pdf
    --scope "product videos 2027" --expires 2027-12-31

    The database is created if it does not exist. The change is a ledger row holding the consent id and the evidence
    hash — never the name or the embedding.

    Exit codes: 0 added; 2 a bad name, scope, actor or date (or a date in the past); 3 the identity weights are
    missing or fail their pin; 4 the portrait is unreadable or shows no face, the evidence is missing, empty or not
    a regular file, or --db is not a hallo3-gate database; 74 the database cannot be written or reached.
    """
    from pathlib import Path

    from gate.consent import add

    until = parse_expires(expires)
    record = add(
        _db(db, create=True),
        name=name,
        portrait=Path(portrait),
        evidence=Path(evidence),
        scope=scope,
        expires=until,
        actor=_actor(actor),
    )
    if json_out:
        typer.echo(json.dumps(record.to_dict(), indent=2))
        return 0
    _say(f"added consent {record.id} ({'expires ' + record.expires_at if record.expires_at else 'no expiry'})")
    return 0


@consent_app.command("list")
def consent_list(
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print as JSON (with names and scopes)."),
    show_all: bool = typer.Option(False, "--all", help="Also expired, revoked and deleted (tombstone) records."),
) -> int:
    """List the active consent records (with --all: every record and its status). Never shows an embedding.

    Exit codes: 0 listed; 2 --db names no database; 4 --db is not a hallo3-gate database; 74 it cannot be read.
    """
    from rich.table import Table

    from gate.cli import console, text
    from gate.consent import list_records

    records = list_records(_db(db), include_all=show_all)
    if json_out:
        typer.echo(json.dumps([r.to_dict(personal=True) for r in records], indent=2))
        return 0
    table = Table("id", "status", "name", "scope", "expires", "created")
    for r in records:
        table.add_row(
            text(r.id),
            text(r.status()),
            text(r.name if r.name is not None else "(erased)"),
            text(r.scope if r.scope is not None else "-"),
            text(r.expires_at or "-"),
            text(f"{r.created_at} by {r.created_by}"),
        )
    console.print(table)
    return 0


@consent_app.command("revoke")
def consent_revoke(
    consent_id: str = typer.Argument(..., metavar="ID", help=ID_HELP),
    reason: str | None = typer.Option(None, "--reason", help="Why (kept in the registry, erased with the record)."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP),
) -> int:
    """Revoke a consent record: it never matches again (runs that depict the person are refused).

    Exit codes: 0 revoked; 2 a malformed or unknown id, a record revoked or deleted already, or --db names no
    database; 4 --db is not a hallo3-gate database; 74 the database cannot be written or reached.
    """
    from gate.consent import revoke

    record = revoke(_db(db), consent_id, _actor(actor), reason)
    _say(f"revoked consent {record.id}")
    return 0


@consent_app.command("delete")
def consent_delete(
    consent_id: str = typer.Argument(..., metavar="ID", help=ID_HELP),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP),
) -> int:
    """Erase a consent record (GDPR Art. 17): the name, scope, evidence file name, portrait hash, revocation reason
    and face embedding are removed; the id stays as a tombstone ("deleted") so old audit records still resolve it.

    Exit codes: 0 deleted; 2 a malformed or unknown id, a record deleted already, or --db names no database; 4 --db
    is not a hallo3-gate database; 74 the database cannot be written or reached.
    """
    from gate.consent import delete

    record = delete(_db(db), consent_id, _actor(actor))
    _say(f"deleted consent {record.id}: name, scope and face embedding erased; the id remains as a tombstone")
    return 0
