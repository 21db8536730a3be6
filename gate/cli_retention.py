"""``hallo3-gate retention``: remove ledger rows and run directories older than the retention period.

The lead registers it in ``gate.cli``: ``app.add_typer(retention_app, name="retention")``. Commands return their exit
code (``gate.cli.main`` exits with it); errors are ``reports.errors`` exceptions, mapped there. This module does not
import ``gate.cli`` (which imports it); its output goes through ``reports.errors.printable``.
"""

from __future__ import annotations

import getpass
import json
import os

import typer

from reports.errors import ExitCode, OutputError, printable

__all__ = ["retention_app"]

USER_ENV = "HALLO3_GATE_USER"
DB_HELP = (
    "The gate's database (ledger): an SQLite file or a postgresql:// URL (default $HALLO3_GATE_DB, else "
    "$HALLO3_GATE_LEDGER, else ~/.local/share/hallo3-gate/ledger.sqlite)."
)

retention_app = typer.Typer(
    help="Retention: remove ledger rows and run directories older than the retention period.", no_args_is_help=True
)


def _say(line: str, *, err: bool = False) -> None:
    """One line, control characters and line breaks escaped (a run id or path cannot fake another line)."""
    typer.echo(printable(line, newlines=False), err=err)


def _actor(name: str | None) -> str:
    if name:
        return name
    if os.environ.get(USER_ENV):
        return os.environ[USER_ENV]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid{os.getuid()}"


@retention_app.command("apply")
def retention_apply(
    runs: str = typer.Option(
        ..., "--runs", help="The gate's output directory (--out): released/, quarantine/ and pending/ run directories."
    ),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    days: int | None = typer.Option(
        None,
        "--days",
        help="Retention in days, at least 183 (default: the configuration file's retention days, "
        "$HALLO3_GATE_RETENTION_DAYS, else 365).",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be removed; write nothing."),
    json_out: bool = typer.Option(False, "--json", help="Print the plan (and the result) as JSON."),
    actor: str | None = typer.Option(
        None, "--actor", help="Who applies it, recorded in the ledger (default $HALLO3_GATE_USER, else the OS user)."
    ),
) -> int:
    """Remove what is older than the retention period: the oldest ledger rows (a prefix of the hash chain, recorded
    by one retention row so `ledger verify` still passes) and the run directories under released/ and quarantine/
    whose record is older. Pending runs, and anything the gate did not make, are kept and listed.

    Example: hallo3-gate retention apply --runs runs/ --db ledger.sqlite --dry-run

    Exit codes: 0 done (or listed, with --dry-run); 1 the ledger does not verify or changed meanwhile (nothing
    removed); 2 --days below 183, --runs not a directory, the database does not exist, a bad configuration; 4 --db is
    not a hallo3-gate database; 74 the database cannot be written, or a directory could not be removed (the others
    and the ledger rows were; the next apply removes it).
    """
    from gate.config import check_retention_days, load
    from gate.database import Database
    from gate.retention import RetentionRefused, apply, plan, relative

    if days is not None:
        chosen, source = check_retention_days("--days", days), "--days"
    else:
        config = load()
        chosen, source = config.retention_days, config.retention_source
    who = None if dry_run else _actor(actor)
    database = Database.open(db)
    p = plan(database, runs, chosen)
    result = None
    refused: RetentionRefused | None = None
    if not dry_run:
        try:
            result = apply(p, who or "")
        except RetentionRefused as exc:
            refused = exc
    if json_out:
        out = {"dry_run": dry_run, "days_source": source, "plan": p.to_dict()}
        out["result"] = result.to_dict() if result is not None else None
        typer.echo(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        what = "would remove" if dry_run else "applying"
        _say(f"retention {chosen} days ({source}), cutoff {p.to_dict()['cutoff']}, {p.database}: {what}")
        if not p.ledger_verified:
            _say(f"ledger does NOT verify: {p.ledger_problems[0] if p.ledger_problems else 'unknown'}")
        if p.removed_count:
            _say(
                f"ledger: rows {p.removed_first_seq}..{p.removed_through_seq} ({p.removed_count} rows, "
                f"{len(p.removed_runs)} runs); {p.prefix_end}"
            )
        else:
            _say(f"ledger: no rows; {p.prefix_end}")
        for d in p.directories:
            _say(f"{d.action}: {relative(d.path, p.runs_dir)} ({d.reason})")
        _say(f"kept: {p.kept_recent} run directories newer than the cutoff")
        if result is not None:
            if result.row_seq is None:
                _say("nothing to remove; nothing written")
            else:
                _say(
                    f"done: retention row seq {result.row_seq}, {result.removed_rows} ledger rows and "
                    f"{len(result.removed_directories)} directories removed"
                )
            for path, why in result.skipped_directories:
                _say(f"skipped: {path} ({why})")
            for path, why in result.failed_directories:
                _say(f"NOT removed: {path} ({why}); the next apply removes it", err=True)
    if refused is not None:
        raise refused
    if dry_run and not p.ledger_verified:
        return int(ExitCode.GATE_FAILED)  # an apply would be refused
    if result is not None and not result.ok:
        path, why = result.failed_directories[0]
        raise OutputError(path, "a run directory past retention must be removable", why)
    return 0
