"""The ``hallo3-gate`` console script: the gate's command line (``gate.cli.app``) plus ``serve``, which runs the
review web application. It lives here because ``gate`` never imports the web app; ``main`` is the same exception →
exit code mapping as ``gate.cli.main``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from gate import cli as gate_cli
from gate.cli import app, say
from gate.database import Database, display_url, resolve
from reports.errors import UsageError
from review_app.settings import DEFAULT_HOST, DEFAULT_PORT, Settings


@app.command(
    "serve",
    epilog="Exit codes: 0 stopped normally; 2 usage error (--runs is not a directory, a bad --port); 4 the database "
    "file is not a database; 74 the database cannot be opened or written.",
)
def serve(
    runs: Path = typer.Option(..., "--runs", help="A gate --out directory: its pending/, released/, quarantine/."),
    host: str = typer.Option(DEFAULT_HOST, "--host", help="Address to bind; 127.0.0.1 unless you mean otherwise."),
    port: int = typer.Option(DEFAULT_PORT, "--port", help="TCP port (0: any free port)."),
    db: str | None = typer.Option(
        None,
        "--db",
        help="Database of the ledger and review state: a path, sqlite:///path or postgresql://… "
        "(default $HALLO3_GATE_DB, else $HALLO3_GATE_LEDGER, else the default ledger).",
    ),
    secure_cookies: bool = typer.Option(
        False, "--secure-cookies", help="Mark the session cookie Secure (set this behind HTTPS)."
    ),
) -> int:
    """Serve the reviewer web application (queue, run pages, audit) and the JSON API."""
    import uvicorn

    if not runs.is_dir():
        raise UsageError("--runs", "must be an existing directory (a gate --out)", str(runs))
    if not 0 <= port <= 65535:
        raise UsageError("--port", "must be 0..65535", port)
    locator = resolve(db)
    Database.open(locator, create=True)  # a bad database fails here, with the gate's one-line error
    settings = Settings(runs_dir=runs.resolve(), db=locator, host=host, port=port, secure_cookies=secure_cookies)
    from review_app.app import create_app

    config = uvicorn.Config(create_app(settings), host=host, port=port, log_level="info", server_header=False)
    server = uvicorn.Server(config)
    say(f"hallo3-gate review serving {runs} from {display_url(locator)} at http://{host}:{port}/ (Ctrl-C stops)")
    server.run()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script (``gate.cli.main`` with ``serve`` registered)."""
    return gate_cli.main(argv)


if __name__ == "__main__":
    main()
