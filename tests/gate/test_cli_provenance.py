"""`hallo3-gate keys init|show` and `verify` through gate.cli.main: exit codes, one-line errors, no key leaks."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import numpy as np
import pytest

from gate.cli import main
from gate.media import write_mp4
from provenance.keys import DEV_ROOT_CERT, DEV_SIGNER_KEY, ENV_SIGN_CHAIN, ENV_SIGN_KEY
from reports.errors import ExitCode


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    for var in (ENV_SIGN_CHAIN, ENV_SIGN_KEY, "HALLO3_GATE_TRUST_ANCHORS", "HALLO3_GATE_TSA_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HALLO3_GATE_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("HALLO3_GATE_LEDGER", str(tmp_path / "ledger.sqlite"))


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("hallo3-gate: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_keys_init_show_and_force(tmp_path, capsys):
    keys = tmp_path / "keys"
    assert main(["keys", "init", "--json"]) == 0
    paths = json.loads(capsys.readouterr().out)
    assert Path(paths["signer_key"]).parent == keys
    assert stat.S_IMODE((keys / DEV_SIGNER_KEY).stat().st_mode) == 0o600
    assert main(["keys", "init"]) == ExitCode.USAGE
    assert "--force" in _one_error_line(capsys.readouterr().err)
    assert main(["keys", "init", "--force"]) == 0
    capsys.readouterr()
    assert main(["keys", "show", "--json"]) == 0
    shown = capsys.readouterr().out
    info = json.loads(shown)
    assert info["development"] is True and info["leaf"]["subject"].startswith("CN=hallo3-gate DEVELOPMENT")
    key_lines = [ln for ln in (keys / DEV_SIGNER_KEY).read_text().splitlines() if not ln.startswith("-----")]
    assert all(line not in shown for line in key_lines)


def test_keys_show_without_credentials_is_a_provenance_error(capsys):
    assert main(["keys", "show"]) == ExitCode.PROVENANCE
    assert "keys init" in _one_error_line(capsys.readouterr().err)


def test_verify_rejects_non_video_and_truncated_files(tmp_path, capsys):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    assert main(["verify", str(text)]) == ExitCode.INPUT
    assert str(text) in _one_error_line(capsys.readouterr().err)
    clip = write_mp4(tmp_path / "clip.mp4", np.zeros((4, 64, 64, 3), np.uint8), 25.0)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    assert main(["verify", str(cut), "--json"]) == ExitCode.INPUT
    assert "truncated" in _one_error_line(capsys.readouterr().err)
    assert main(["verify", str(tmp_path / "absent.mp4")]) == ExitCode.INPUT
    capsys.readouterr()


def test_verify_bad_trust_file_is_a_usage_error(tmp_path, capsys):
    clip = write_mp4(tmp_path / "clip.mp4", np.zeros((4, 64, 64, 3), np.uint8), 25.0)
    assert main(["verify", str(clip), "--trust", str(tmp_path / "absent.pem")]) == ExitCode.USAGE
    assert "absent.pem" in _one_error_line(capsys.readouterr().err)


def test_keys_init_dir_option(tmp_path, capsys):
    target = tmp_path / "elsewhere"
    assert main(["keys", "init", "--dir", str(target)]) == 0
    assert (target / DEV_ROOT_CERT).exists() and "DEVELOPMENT" in capsys.readouterr().out


def _write_avi(path: Path, n: int = 20) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 10 * i, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def test_verify_a_readable_avi_is_not_verified_exit_5_as_its_help_says(tmp_path, capsys):
    """A video in another container is readable (its watermark is read) but cannot carry our manifest: exit 5, and
    `verify --help` says so (it used to promise 4, the bad-input code, for anything that is not an MP4)."""
    import inspect

    from gate.cli import verify_command

    avi = _write_avi(tmp_path / "clip.avi")
    assert main(["verify", str(avi)]) == ExitCode.PROVENANCE
    captured = capsys.readouterr()
    assert "NOT VERIFIED" in captured.out and "Traceback" not in captured.err
    assert f"{avi}: not verified: no C2PA manifest (not an MP4" in captured.err
    doc = inspect.getdoc(verify_command).split("Exit codes:", 1)[1]
    items = {line.split(" ", 1)[0]: line for line in re.split(r";\s*\n", doc.strip())}
    assert "non-MP4" in items["5"] and "not a readable, complete video" in items["4"] and "MP4" not in items["4"]


@pytest.mark.parametrize(("given", "missing"), [(ENV_SIGN_CHAIN, ENV_SIGN_KEY), (ENV_SIGN_KEY, ENV_SIGN_CHAIN)])
def test_half_set_signing_variables_name_both(given, missing, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(given, str(tmp_path / "x.pem"))
    assert main(["keys", "show"]) == ExitCode.USAGE
    line = _one_error_line(capsys.readouterr().err)
    assert line == f"hallo3-gate: error: {missing}: must be set together with {given}, which is set (got unset)"
