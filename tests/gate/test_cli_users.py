"""`hallo3-gate users ...` and `--submitted-by` through the real command line (``gate.cli.main``)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from gate import users as U
from gate.cli import main
from gate.database import Database
from gate.ledger import Ledger
from reports.errors import ExitCode

PASSWORD = "a long enough password"


@pytest.fixture
def db_path(tmp_path, monkeypatch) -> Path:
    for var in ("HALLO3_GATE_DB", "HALLO3_GATE_LEDGER", "HALLO3_GATE_USER"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "gate.sqlite"


def _run(capsys, monkeypatch, argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_add_list_disable_enable_role(db_path, capsys, monkeypatch):
    db = ["--db", str(db_path)]
    code, out, _ = _run(
        capsys,
        monkeypatch,
        ["users", "add", "alice", "--role", "approver", "--password-stdin", *db, "--actor", "ops"],
        stdin=PASSWORD + "\n",
    )
    assert code == 0 and out.strip() == "added alice (approver)"
    assert U.authenticate_password(Database.open(str(db_path)), "alice", PASSWORD, client="t").name == "alice"
    code, out, _ = _run(
        capsys,
        monkeypatch,
        ["users", "add", "bob", "--role", "viewer", "--password-stdin", *db],
        stdin=PASSWORD + "\r\n",
    )
    assert code == 0
    assert U.authenticate_password(Database.open(str(db_path)), "bob", PASSWORD, client="t").role == "viewer"
    code, out, _ = _run(capsys, monkeypatch, ["users", "list", "--json", *db])
    assert code == 0 and json.loads(out) == [
        {"name": "alice", "role": "approver", "disabled": False},
        {"name": "bob", "role": "viewer", "disabled": False},
    ]
    assert _run(capsys, monkeypatch, ["users", "disable", "alice", *db])[0] == 0
    code, _, err = _run(capsys, monkeypatch, ["users", "disable", "alice", *db])
    assert code == ExitCode.USAGE and "disabled already" in err
    code, out, _ = _run(capsys, monkeypatch, ["users", "list", *db])
    assert code == 0 and "alice" in out and "disabled" in out
    assert _run(capsys, monkeypatch, ["users", "enable", "alice", *db])[0] == 0
    assert _run(capsys, monkeypatch, ["users", "role", "bob", "--role", "reviewer", *db])[0] == 0
    rows = [(r.decision, r.actor, r.record.get("user")) for r in Ledger(str(db_path)).rows()]
    assert rows[0] == ("add", "ops", "alice")
    assert [r[0] for r in rows] == ["add", "add", "disable", "enable", "role"]
    assert PASSWORD not in db_path.read_bytes().decode("latin-1")


def test_the_actor_defaults_to_the_env_then_the_os_user(db_path, capsys, monkeypatch):
    import getpass

    db = ["--db", str(db_path)]
    monkeypatch.setenv("HALLO3_GATE_USER", "carol")
    _run(capsys, monkeypatch, ["users", "add", "alice", "--role", "admin", "--password-stdin", *db], PASSWORD)
    monkeypatch.delenv("HALLO3_GATE_USER")
    _run(capsys, monkeypatch, ["users", "add", "bob", "--role", "admin", "--password-stdin", *db], PASSWORD)
    assert [r.actor for r in Ledger(str(db_path)).rows()] == ["carol", getpass.getuser()]


def test_token_is_printed_once_and_works_until_revoked(db_path, capsys, monkeypatch):
    db = ["--db", str(db_path)]
    _run(capsys, monkeypatch, ["users", "add", "alice", "--role", "approver", "--password-stdin", *db], PASSWORD)
    code, out, _ = _run(capsys, monkeypatch, ["users", "token", "alice", *db])
    token = out.strip()
    assert code == 0 and token.startswith(U.TOKEN_PREFIX) and "\n" not in token
    database = Database.open(str(db_path))
    assert U.authenticate_token(database, token).name == "alice"
    assert token not in db_path.read_bytes().decode("latin-1")
    code, out, _ = _run(capsys, monkeypatch, ["users", "revoke-tokens", "alice", *db])
    assert code == 0 and out.strip() == "alice: 1 token revoked"
    with pytest.raises(U.AuthError):
        U.authenticate_token(database, token)


@pytest.mark.parametrize(
    ("argv", "stdin", "says"),
    [
        (["users", "add", "alice", "--role", "approver"], PASSWORD, "--password-stdin"),
        (["users", "add", "alice", "--role", "approver", "--password-stdin"], "short\n", "password"),
        (["users", "add", "alice", "--role", "approver", "--password-stdin"], "", "password"),
        (["users", "add", "alice", "--role", "root", "--password-stdin"], PASSWORD, "role"),
        (["users", "add", "Al ice", "--role", "approver", "--password-stdin"], PASSWORD, "user name"),
        (["users", "add", "\x1b[31mred", "--role", "approver", "--password-stdin"], PASSWORD, "user name"),
    ],
)
def test_bad_arguments_are_2_and_create_nothing(db_path, capsys, monkeypatch, argv, stdin, says):
    code, _, err = _run(capsys, monkeypatch, [*argv, "--db", str(db_path)], stdin)
    assert code == ExitCode.USAGE and says in err and len(err.strip().splitlines()) == 1, err
    assert "\x1b" not in err  # a hostile name is shown escaped, never acted on by the terminal
    assert not db_path.exists()


def test_unknown_user_and_missing_database(db_path, capsys, monkeypatch):
    code, _, err = _run(capsys, monkeypatch, ["users", "list", "--db", str(db_path)])
    assert code == ExitCode.USAGE and "must exist" in err and not db_path.exists()
    _run(
        capsys,
        monkeypatch,
        ["users", "add", "alice", "--role", "approver", "--password-stdin", "--db", str(db_path)],
        PASSWORD,
    )
    for argv in (["users", "disable", "zed"], ["users", "token", "zed"], ["users", "role", "zed", "--role", "admin"]):
        code, out, err = _run(capsys, monkeypatch, [*argv, "--db", str(db_path)])
        assert code == ExitCode.USAGE and "zed: no such user" in err and out == ""
    code, _, err = _run(
        capsys,
        monkeypatch,
        ["users", "add", "alice", "--role", "viewer", "--password-stdin", "--db", str(db_path)],
        PASSWORD,
    )
    assert code == ExitCode.USAGE and "exists already" in err


def test_not_a_database_is_4_untouched(tmp_path, capsys, monkeypatch):
    bogus = tmp_path / "notes.txt"
    bogus.write_text("my notes")
    code, _, err = _run(capsys, monkeypatch, ["users", "list", "--db", str(bogus)])
    assert code == ExitCode.INPUT and str(bogus) in err
    assert bogus.read_text() == "my notes"


@pytest.mark.parametrize("command", ["review", "generate"])
def test_submitted_by_reaches_the_run_request(command, tmp_path, capsys, monkeypatch):
    """``--submitted-by`` (else $HALLO3_GATE_USER, else the OS user) becomes ``RunRequest.submitted_by``."""
    import getpass

    from gate import run as run_module

    seen = []

    class Stop(Exception):
        pass

    def fake_run(req, progress=None):
        seen.append(req.submitted_by)
        raise Stop

    monkeypatch.setattr(run_module, "run", fake_run)
    f = tmp_path / "x"
    argv = {
        "review": ["review", str(f), "--reference", str(f), "--audio", str(f), "--out", str(tmp_path / "o")],
        "generate": ["generate", "--portrait", str(f), "--audio", str(f), "--out", str(tmp_path / "o")],
    }[command]
    monkeypatch.setenv("HALLO3_GATE_USER", "envuser")
    for extra in (["--submitted-by", "ana"], []):
        with pytest.raises(Stop):
            from gate.cli import app

            app(args=[*argv, "--json", *extra], prog_name="hallo3-gate", standalone_mode=False)
    monkeypatch.delenv("HALLO3_GATE_USER")
    with pytest.raises(Stop):
        app(args=[*argv, "--json"], prog_name="hallo3-gate", standalone_mode=False)
    assert seen == ["ana", "envuser", getpass.getuser()]
    from gate import cli

    doc = " ".join((cli.review_command.__doc__ or "").split())
    assert "6 every automated check passed and the policy's [review] asks for people" in doc
    assert "(6: passed, waiting in OUT/pending/ for human approval)" in " ".join(cli.generate_command.__doc__.split())
