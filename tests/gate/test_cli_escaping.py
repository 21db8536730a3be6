"""Commands print user strings (paths, names, reasons) as plain text: square brackets are not rich markup, ``:name:``
is not an emoji, control characters and bidi overrides are shown as escapes, and nothing crashes after the work
is done (finding 7: `--out 'o[/]x'` crashed rich after the release; `ledger verify --ledger 'd[/]l.sqlite'` on an
intact ledger exited 1)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from gate import cli
from gate.cli import main
from gate.ledger import Ledger
from provenance.keys import DEV_ROOT_CERT, ENV_SIGN_CHAIN, ENV_SIGN_KEY
from reports.errors import printable

HOSTILE_NAME = "d[/]x [bold]B[/bold] :smile: \x1b[31mred\u202egnp"  # a legal file name
TERMINAL_UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    for var in (ENV_SIGN_CHAIN, ENV_SIGN_KEY, "HALLO3_GATE_TRUST_ANCHORS", "HALLO3_GATE_TSA_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HALLO3_GATE_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def _plain(out: str) -> None:
    assert "Traceback" not in out and not TERMINAL_UNSAFE.search(out), repr(out)


def test_keys_init_prints_a_hostile_directory_literally(tmp_path, capsys):
    target = tmp_path / HOSTILE_NAME
    assert main(["keys", "init", "--dir", str(target)]) == 0
    out = capsys.readouterr().out
    _plain(out)
    assert f"development keys written to {printable(target)}" in out  # brackets, :smile: and escapes as they are
    assert "😄" not in out and (target / DEV_ROOT_CERT).is_file()


def _ledger_with_row(path: Path, output_path: str) -> None:
    Ledger(path, create=True).append(
        run_id="run-1",
        created_at="2026-12-01T00:00:00Z",
        decision="released",
        output_path=output_path,
        output_sha256="0" * 64,
        payload_hex="a5c30000",
        record_json="{}",
    )


def test_ledger_verify_and_show_with_brackets_in_the_path(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli.console, "width", 400)  # table cells on one line
    ledger = tmp_path / "d[/]l.sqlite"
    _ledger_with_row(ledger, f"out/{HOSTILE_NAME}/video.mp4")
    assert main(["ledger", "verify", "--ledger", str(ledger)]) == 0
    out = capsys.readouterr().out
    _plain(out)
    assert out.startswith(f"{ledger}: 1 rows, head ") and out.rstrip().endswith("intact")
    assert main(["ledger", "show", "--ledger", str(ledger)]) == 0
    out = capsys.readouterr().out
    _plain(out)
    assert f"out/{printable(HOSTILE_NAME)}/video.mp4" in out
    assert main(["ledger", "show", "--ledger", str(ledger), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["output_path"] == f"out/{HOSTILE_NAME}/video.mp4"


def _fake_outcome(out_dir: Path) -> SimpleNamespace:
    path = out_dir / "released" / "run-1" / "video.mp4"
    record = SimpleNamespace(
        decision="released",
        output=SimpleNamespace(path=str(path)),
        reasons=[f"note [red]{HOSTILE_NAME}[/red]\nRELEASED fake-line"],
        check_counts=lambda: {"pass": 3, "fail": 0, "not_measured": 0},
        watermark=SimpleNamespace(payload="a5c30000"),
        provenance=SimpleNamespace(manifest_state="Trusted"),
        to_json=lambda: json.dumps({"output": {"path": str(path)}}),
    )
    return SimpleNamespace(record=record, directory=path.parent, exit_code=0)


def test_review_verdict_with_brackets_in_out_is_printed_not_parsed(tmp_path, monkeypatch, capsys):
    """The run itself is replaced (the e2e tests run it for real): this is the printing after a release."""
    import gate.run

    out_dir = tmp_path / "o[/]x"
    monkeypatch.setattr(gate.run, "run", lambda req, progress=None: _fake_outcome(Path(req.out_dir)))
    assert main(["review", "v.mp4", "--reference", "p.png", "--audio", "a.wav", "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    _plain(out)
    lines = out.splitlines()
    assert lines[0] == f"RELEASED {out_dir}/released/run-1/video.mp4"
    assert lines[1] == f"  - note [red]{printable(HOSTILE_NAME)}[/red]\\nRELEASED fake-line"  # one line, not two
    assert len(lines) == 4 and lines[3] == f"  record and reports: {out_dir}/released/run-1"


def test_console_settings_never_interpret_user_text():
    for console in (cli.console, cli.err_console):
        with console.capture() as capture:
            console.print(cli.text("a :smile: [bold]b[/] [/]"))
        assert capture.get() == "a :smile: [bold]b[/] [/]\n"
