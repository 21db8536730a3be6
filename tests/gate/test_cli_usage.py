"""Usage errors of every command exit 2 with click's usage message and no traceback, whichever click/typer flavour is
installed; every other exception maps to its documented code in one place (``reports.errors.exit_status``).

The commands are enumerated from the typer app, so a command added later is walked through the same cases.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import subprocess
import sys
import typing
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer

from gate import cli
from gate.cli import app, main
from reports.errors import (
    ExitCode,
    Hallo3Error,
    InputError,
    MeasurementError,
    OutputError,
    ProvenanceError,
    UsageError,
    exit_status,
    write_traceback_log,
)

CONSOLE_SCRIPT = Path(sys.executable).with_name("hallo3-gate")
README = Path(__file__).resolve().parents[2] / "README.md"


@dataclass(frozen=True)
class Command:
    path: tuple[str, ...]
    callback: typing.Callable
    required: tuple[str, ...]  # names of required parameters
    typed: tuple[tuple[str, str], ...]  # (option, type name) of every int/float option
    flags: tuple[str, ...]  # boolean options


def _commands(typer_app: typer.Typer, prefix: tuple[str, ...] = ()) -> tuple[list[Command], list[tuple[str, ...]]]:
    """Every leaf command and every group of ``typer_app``, from typer's own registration (works for every flavour)."""
    leaves: list[Command] = []
    groups: list[tuple[str, ...]] = [prefix]
    for info in typer_app.registered_commands:
        hints = typing.get_type_hints(info.callback)
        required, typed, flags = [], [], []
        for name, param in inspect.signature(info.callback).parameters.items():
            spec = param.default
            if spec.default is ...:
                required.append(name)
            decls = getattr(spec, "param_decls", None) or ()
            option = next((d for d in decls if d.startswith("--")), None)
            if option is None:
                continue
            kind = hints[name]
            if kind is bool:
                flags.append(option)
            elif kind in (int, float):
                typed.append((option, kind.__name__))
        name = info.name or info.callback.__name__.replace("_", "-")
        leaves.append(Command((*prefix, name), info.callback, tuple(required), tuple(typed), tuple(flags)))
    for group in typer_app.registered_groups:
        sub_leaves, sub_groups = _commands(group.typer_instance, (*prefix, group.name))
        leaves += sub_leaves
        groups += sub_groups
    return leaves, groups


LEAVES, GROUPS = _commands(app)


HELP = "<the group's help>"


def _cases() -> list[tuple[list[str], str]]:
    """(argv, what click's message must say) for every usage error of every command and group."""
    cases: list[tuple[list[str], str]] = []
    for cmd in LEAVES:
        cases.append(([*cmd.path, "--no-such-option"], "No such option"))
        if cmd.required:
            cases.append(([*cmd.path], "Missing"))
        for option, _kind in cmd.typed:
            cases.append(([*cmd.path, option, "abc"], f"Invalid value for '{option}'"))
        for flag in cmd.flags[:1]:  # click reports this one without the usage line
            cases.append(([*cmd.path, f"{flag}=yes"], f"Error: Option '{flag}' does not take a value."))
    for group in GROUPS:
        cases.append(([*group], HELP))  # no arguments: the group's help, exit 2
        cases.append(([*group, "no-such-command"], "No such command"))
    return cases


CASES = _cases()


def test_the_walk_covers_every_command():
    paths = {" ".join(c.path) for c in LEAVES}
    assert {"review", "generate", "verify", "stamp", "measure", "compare", "fvd-stats", "demo"} <= paths
    assert {"keys init", "keys show", "weights list", "weights fetch", "weights verify", "ledger verify"} <= paths
    assert {"ledger show"} <= paths and {(), ("keys",), ("weights",), ("ledger",)} <= set(GROUPS)
    assert {"consent add", "consent list", "consent revoke", "consent delete", "retention apply"} <= paths
    assert {("consent",), ("retention",)} <= set(GROUPS)
    assert any(c.typed for c in LEAVES) and any(c.required for c in LEAVES)  # the type and missing cases exist


def _assert_usage_error(code: int, out: str, err: str, expect: str) -> None:
    assert code == ExitCode.USAGE, (code, out, err)
    assert "Traceback" not in out + err
    if expect == HELP:  # a group given no arguments: its help (typer's rich help goes to stdout), and exit 2
        assert "Usage: hallo3-gate" in out + err and "Commands" in out + err, (out, err)
        return
    assert expect in err, err
    assert "Usage: hallo3-gate" in err or "does not take a value" in expect, err
    assert len(err.strip().splitlines()) <= 5 and err.count("Error:") == 1, err  # click's few lines, the error once
    assert out == ""


@pytest.mark.parametrize(("argv", "expect"), CASES, ids=[" ".join(a) or "<none>" for a, _ in CASES])
def test_usage_errors_exit_2_with_the_usage_message(argv, expect, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written, and if it were, not into the repository
    code = main(argv)
    captured = capsys.readouterr()
    _assert_usage_error(code, captured.out, captured.err, expect)
    assert list(tmp_path.iterdir()) == []


SUBPROCESS_CASES = [
    (["review", "x.mp4"], "Missing option '--reference'"),
    (["review", "x.mp4", "--reference", "a.png", "--audio", "a.wav", "--out", "o", "--crf", "abc"], "'--crf'"),
    (["verify", "clip.mp4", "--bogus"], "No such option: --bogus"),
    ([], HELP),
    (["no-such-command"], "No such command 'no-such-command'"),
]


@pytest.mark.parametrize(
    ("argv", "expect"), SUBPROCESS_CASES, ids=[" ".join(a) or "<none>" for a, _ in SUBPROCESS_CASES]
)
def test_console_script_usage_errors(argv, expect, tmp_path):
    assert CONSOLE_SCRIPT.is_file(), f"{CONSOLE_SCRIPT}: the console script must be installed (make install)"
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "COLUMNS": "100"}
    proc = subprocess.run([str(CONSOLE_SCRIPT), *argv], capture_output=True, text=True, env=env, cwd=tmp_path)
    _assert_usage_error(proc.returncode, proc.stdout, proc.stderr, expect)
    assert list(tmp_path.iterdir()) == []


def test_help_is_success(capsys):
    assert main(["--help"]) == 0
    assert main(["review", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--reference" in out and "Exit codes" in out


# --- both click flavours -------------------------------------------------------------------------------------------

FLAVOURS = [name for name in ("click", "typer._click") if importlib.util.find_spec(name) is not None]


def test_the_installed_typer_flavour_is_one_of_those_tested():
    import typer.main as typer_main

    root = type(typer_main.get_command(app)).__mro__[1].__module__.split(".")
    flavour = "typer._click" if root[:2] == ["typer", "_click"] else "click"
    assert flavour in FLAVOURS and root[0] in ("click", "typer")


@pytest.mark.skipif(importlib.util.find_spec("click") is None, reason="click (the standalone library) not installed")
@pytest.mark.parametrize(
    ("argv", "expect"),
    [([], "Missing option '--n'"), (["--n", "abc"], "Invalid value for '--n'"), (["--x"], "No such option: --x")],
)
def test_real_click_usage_errors_map_to_2(argv, expect):
    """The flavour older typer uses: exceptions raised by click itself, not typer's vendored copy."""
    import click

    cmd = click.Command("tool", params=[click.Option(["--n"], type=int, required=True)], callback=lambda n: n)
    with pytest.raises(click.exceptions.UsageError) as info:
        cmd.main(argv, prog_name="tool", standalone_mode=False)
    status = exit_status(info.value)
    assert status.code == ExitCode.USAGE and not status.internal
    assert status.message.startswith("Usage: tool [OPTIONS]") and f"Error: {expect}" in status.message


def _flavour_exceptions(name: str) -> list[tuple[BaseException, int]]:
    exc = importlib.import_module(f"{name}.exceptions")
    found: list[tuple[BaseException, int]] = [
        (exc.UsageError("bad usage"), ExitCode.USAGE),
        (exc.BadParameter("not a number", param_hint="'--crf'"), ExitCode.USAGE),
        (exc.NoSuchOption("--bogus"), ExitCode.USAGE),
        (exc.ClickException("some click failure"), ExitCode.USAGE),  # exit_code 1 in click: never a verdict here
    ]
    exits = importlib.import_module("typer.exceptions") if name == "typer._click" else exc
    found += [(exits.Exit(0), 0), (exits.Exit(3), 3), (exits.Abort(), ExitCode.INTERRUPTED)]
    return found


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_every_flavour_of_click_exception_maps_the_same(flavour):
    for exc, code in _flavour_exceptions(flavour):
        status = exit_status(exc, log=lambda e: pytest.fail(f"no log for {e!r}"))
        assert status.code == code, (flavour, exc)
        assert not status.internal and "Traceback" not in status.message
        if code == ExitCode.USAGE:
            assert "Error:" in status.message


def test_a_usage_error_that_cannot_draw_its_usage_line_is_still_2():
    """A click/typer version mismatch can make click's own usage formatting raise (seen with typer 0.15 on click
    8.2): the mapping must not raise in turn."""
    exc_module = importlib.import_module(f"{FLAVOURS[0]}.exceptions")

    class Broken(exc_module.UsageError):
        def show(self, file=None):
            raise TypeError("make_metavar() takes 1 positional argument but 2 were given")

    status = exit_status(Broken("Missing option '--out'."), log=lambda e: pytest.fail("not internal"))
    assert status == type(status)(ExitCode.USAGE, "hallo3-gate: error: Missing option '--out'.")


def test_typer_public_exit_and_abort():
    assert exit_status(typer.Exit(4)).code == 4
    assert exit_status(typer.Abort()).code == ExitCode.INTERRUPTED
    assert exit_status(typer.BadParameter("x")).code == ExitCode.USAGE


# --- the other exceptions ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (UsageError("--crf", "must be 0-51", 99), ExitCode.USAGE),
        (InputError("clip.mp4", "must be a video", "text"), ExitCode.INPUT),
        (MeasurementError("sync_c", "not measured", "no weights"), ExitCode.NOT_MEASURED),
        (ProvenanceError("key.pem", "must load", "bad"), ExitCode.PROVENANCE),
        (OutputError("out/x", "must be a regular file", "a FIFO"), ExitCode.IO),
    ],
)
def test_hallo3_errors_keep_their_code_and_one_line(exc: Hallo3Error, code):
    status = exit_status(exc, log=lambda e: pytest.fail("a Hallo3Error is not internal"))
    assert status.code == code and status.message == f"hallo3-gate: error: {exc.one_line()}"
    assert "\n" not in status.message


def test_os_errors_are_io_naming_path_and_reason():
    status = exit_status(PermissionError(13, "Permission denied", "/out/x.mp4"))
    assert status.code == ExitCode.IO == 74
    assert status.message == "hallo3-gate: error: /out/x.mp4: Permission denied"
    status = exit_status(OSError(18, "Invalid cross-device link", "/a", None, "/b"))
    assert status.message == "hallo3-gate: error: /a -> /b: Invalid cross-device link"
    assert exit_status(OSError("no path")).message == "hallo3-gate: error: I/O error: no path"


def test_keyboard_interrupt_is_130():
    assert exit_status(KeyboardInterrupt()).code == ExitCode.INTERRUPTED == 130


def test_unexpected_errors_are_70_with_the_traceback_in_a_log_file(tmp_path):
    try:
        {}["missing"]
    except KeyError as exc:
        error = exc
    status = exit_status(error, log=lambda e: write_traceback_log(e, tmp_path / "logs"))
    assert status.code == ExitCode.INTERNAL == 70 and status.internal
    match = re.fullmatch(r"hallo3-gate: internal error: KeyError: 'missing' — traceback in (\S+)", status.message)
    assert match, status.message
    log = Path(match.group(1))
    assert log.parent == tmp_path / "logs" and log.stat().st_mode & 0o077 == 0
    assert "Traceback (most recent call last)" in log.read_text() and "KeyError: 'missing'" in log.read_text()


def test_unwritable_log_says_run_with_debug(tmp_path):
    blocker = tmp_path / "state"
    blocker.write_text("a file where the log directory would go")
    status = exit_status(ValueError("boom"), log=lambda e: write_traceback_log(e, blocker / "logs"))
    assert status.message == "hallo3-gate: internal error: ValueError: boom — run with --debug for the traceback"
    assert exit_status(ValueError("boom"), debug=True).message.endswith("— traceback above")


# --- end to end through main: internal error, --debug, OSError, interrupt ------------------------------------------


def _break_keys_show(monkeypatch, exc: BaseException) -> None:
    from provenance import keys

    def explode(*args, **kwargs):
        raise exc

    monkeypatch.setattr(keys.SignerConfig, "from_env", classmethod(explode))


def test_main_internal_error_one_line_and_log(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    _break_keys_show(monkeypatch, ZeroDivisionError("division by zero"))
    assert main(["keys", "show"]) == 70
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.out == ""
    (line,) = captured.err.strip().splitlines()
    prefix = "hallo3-gate: internal error: ZeroDivisionError: division by zero — traceback in "
    assert line.startswith(prefix)
    log = Path(line.removeprefix(prefix))
    assert log.parent == tmp_path / "state" / "hallo3-gate" / "logs"
    assert "in explode" in log.read_text()  # the real traceback, down to the raising frame


@pytest.mark.parametrize("how", ["option", "env"])
def test_debug_prints_the_traceback_instead(how, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    argv = ["keys", "show"]
    if how == "option":
        monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
        argv = ["--debug", *argv]
    else:
        monkeypatch.setenv(cli.DEBUG_ENV, "1")
    _break_keys_show(monkeypatch, ZeroDivisionError("division by zero"))
    assert main(argv) == 70
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in explode" in err
    assert err.rstrip().endswith("hallo3-gate: internal error: ZeroDivisionError: division by zero — traceback above")
    assert not (tmp_path / "state").exists()


def test_debug_is_not_sticky_between_calls(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    _break_keys_show(monkeypatch, RuntimeError("x"))
    assert main(["--debug", "keys", "show"]) == 70
    capsys.readouterr()
    assert main(["keys", "show"]) == 70
    assert "Traceback" not in capsys.readouterr().err


def test_console_script_internal_error_exits_70_without_traceback(tmp_path):
    code = (
        "import sys; from provenance import keys\n"
        "def boom(*a, **k): raise RuntimeError('unexpected')\n"
        "keys.SignerConfig.from_env = classmethod(boom)\n"
        "from gate.cli import main; main()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != cli.DEBUG_ENV}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    proc = subprocess.run(
        [sys.executable, "-c", code, "keys", "show"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert proc.returncode == 70, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "internal error: RuntimeError: unexpected — traceback in " + str(tmp_path / "state") in proc.stderr


def test_main_os_error_is_74_naming_the_path(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["keys", "init", "--dir", str(blocker / "keys")]) == ExitCode.IO
    err = capsys.readouterr().err
    assert err == f"hallo3-gate: error: {blocker / 'keys'}: Not a directory\n"
    assert blocker.read_text() == "x"


def test_main_keyboard_interrupt_is_130(monkeypatch, capsys):
    _break_keys_show(monkeypatch, KeyboardInterrupt())
    assert main(["keys", "show"]) == 130
    assert "Traceback" not in capsys.readouterr().err


# --- findings fixed in the commands ---------------------------------------------------------------------------------


def test_compare_label_count_is_a_usage_error(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    code = main(
        ["compare", str(a), str(b), "--out", str(tmp_path / "o"), "--label", "x", "--label", "y", "--label", "z"]
    )
    assert code == ExitCode.USAGE
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("hallo3-gate: error: --label: must be given once per run directory (2)")
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "o"), "--label", "x", "--label", "x"]) == 2
    assert "distinct" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_compare_out_an_existing_file_is_refused_untouched(tmp_path, capsys):
    target = tmp_path / "report.html"
    target.write_text("mine")
    assert main(["compare", str(tmp_path), "--out", str(target)]) == ExitCode.USAGE
    (line,) = capsys.readouterr().err.splitlines()
    assert (
        line
        == f"hallo3-gate: error: {target}: must be a directory (or not exist yet) to write the comparison into (got not a directory)"
    )
    assert target.read_text() == "mine"


def test_keys_init_dir_a_file_is_refused_untouched(tmp_path, capsys):
    target = tmp_path / "keys.txt"
    target.write_text("mine")
    assert main(["keys", "init", "--dir", str(target)]) == ExitCode.USAGE
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"hallo3-gate: error: {target}: must be a directory for the development keys")
    assert target.read_text() == "mine"


# --- documented exit codes -----------------------------------------------------------------------------------------

_CODE = re.compile(r"(?:^|[;:])\s*(\d+(?:/\d+)*)\s", flags=re.M)  # "Exit codes: 0 ...; 2/4 ...", or one per line


def _documented_codes(doc: str) -> set[int]:
    section = doc[doc.index("Exit codes") :]
    return {int(n) for item in _CODE.findall(section) for n in item.split("/")}


@pytest.mark.parametrize("cmd", LEAVES, ids=[" ".join(c.path) for c in LEAVES])
def test_every_command_documents_its_exit_codes(cmd):
    doc = inspect.getdoc(cmd.callback) or ""
    assert "Exit codes" in doc, f"{' '.join(cmd.path)}: its --help must list its exit codes"
    if "as for `review`" in doc:
        return
    codes = _documented_codes(doc)
    assert 0 in codes and codes <= {int(c) for c in ExitCode}, (cmd.path, codes)


def test_app_help_and_readme_list_the_global_codes():
    epilog = app.info.epilog or ""
    assert all(str(int(c)) in epilog for c in (ExitCode.USAGE, ExitCode.IO, ExitCode.INTERNAL, ExitCode.INTERRUPTED))
    section = README.read_text().split("### Exit codes", 1)[1].split("###", 1)[0]
    table = {int(m) for m in re.findall(r"^\| (\d+) \|", section, flags=re.M)}
    assert table == {int(c) for c in ExitCode}


def test_the_format_lists_in_the_help_are_the_ingredient_formats():
    from provenance.c2pa import INGREDIENT_FORMATS

    for kind, listed in (("image", cli.PORTRAIT_FORMATS), ("audio", cli.SPEECH_FORMATS)):
        assert listed.split(", ") == [f.name for f in INGREDIENT_FORMATS if f.kind == kind]
