"""The ``hallo3-gate`` command line.

Commands are thin: they parse arguments, call the package that owns the work, and print (``--json`` for machines).
Every ``Hallo3Error`` becomes one line on stderr and its exit code (see ``reports.errors.ExitCode``); no traceback
is shown for a user mistake. Each section below belongs to one part of the system.
"""

from __future__ import annotations

import sys

import click
import typer
from rich.console import Console

from reports.errors import ExitCode, Hallo3Error

app = typer.Typer(
    name="hallo3-gate",
    help="Measure, watermark, sign, verify, record and report every Hallo3 video - or quarantine it with the reason.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="Signing credentials (development PKI, production PEM/KMS).", no_args_is_help=True)
weights_app = typer.Typer(help="The weight-file registry: list, fetch, verify.", no_args_is_help=True)
ledger_app = typer.Typer(help="The tamper-evident ledger of every gate run.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(weights_app, name="weights")
app.add_typer(ledger_app, name="ledger")

err_console = Console(stderr=True, highlight=False, soft_wrap=True)
console = Console(highlight=False, soft_wrap=True)


# --- provenance commands: keys, verify, stamp -------------------------------------------------------------------


# --- metrics commands: measure ---------------------------------------------------------------------------------


# --- generator commands: generate --------------------------------------------------------------------------------


# --- gate commands: review, compare, weights, ledger, demo ---------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns (and exits with) the exit code."""
    try:
        rv = app(args=argv, prog_name="hallo3-gate", standalone_mode=False)
    except Hallo3Error as exc:
        err_console.print(f"hallo3-gate: error: {exc.one_line()}", markup=False)
        code = int(exc.exit_code)
    except click.exceptions.Exit as exc:
        code = int(exc.exit_code)
    except click.exceptions.ClickException as exc:
        exc.show()
        code = int(ExitCode.USAGE)
    except click.exceptions.Abort:
        err_console.print("hallo3-gate: aborted", markup=False)
        code = 130
    else:
        code = int(rv) if isinstance(rv, int) else 0
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":
    main()
