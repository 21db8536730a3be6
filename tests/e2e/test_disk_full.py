"""A full disk at any point of a gate run: exit 74 with one line, nothing released without its record and ledger row,
the ledger still verifies, and once space is back the next run's recovery leaves no row "released" without
``released/<run>/video.mp4``.

Two ways to fill the disk:

* fault injection: every write the run makes under its output and ledger directory (directory creation, file
  creation, open for writing, rename/replace/link, the ledger append) is counted in an undisturbed run; then, for
  every k, a fresh run has its k-th write fail with ``OSError(ENOSPC)`` (the ledger append with SQLite's own "database
  or disk is full"). ``HALLO3_GATE_DISK_FULL_EVERY=0`` fails only the last write of each file (faster);
* a real small file system: a tmpfs mounted inside the test (needs root or CAP_SYS_ADMIN; skipped otherwise) holding
  the output directory and the ledger, at several sizes below and around what a run needs, then grown (``remount``)
  so that recovery can finish what was recorded.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from gate import database as database_mod
from gate import ledger as ledger_mod
from gate.cli import main
from gate.ledger import Ledger
from gate.staging import Layout, recover
from reports.schema import GateRecord
from reports.write import REPORT_FILES

pytestmark = pytest.mark.slow

TECH_POLICY = 'name = "technical"\nversion = "1"\n[checks.fps]\nmetric = "fps"\nmin = 24\n'
TECH_POLICY += '[checks.audio]\nmetric = "audio_present"\nmin = 1\n'
EVERY_WRITE = os.environ.get("HALLO3_GATE_DISK_FULL_EVERY", "1") != "0"
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT


class WriteFaults:
    """Counts the writes made under ``root`` (and the ledger appends); raises ENOSPC at write number ``fail_at``."""

    def __init__(self, root: Path, fail_at: int | None = None) -> None:
        self.root = str(root)
        self.fail_at = fail_at
        self.events: list[str] = []
        self.fired: str | None = None

    def _hit(self, what: str, path: object) -> None:
        try:
            p = os.fsdecode(path)  # type: ignore[arg-type]
        except TypeError:
            return  # a file descriptor
        if not os.path.isabs(p) or not (p == self.root or p.startswith(self.root + os.sep)):
            return
        self.events.append(f"{what} {os.path.relpath(p, self.root)}")
        if len(self.events) - 1 == self.fail_at:
            self.fired = self.events[-1]
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), p)

    def install(self, mp: pytest.MonkeyPatch) -> None:
        def counted(name: str, real, when=lambda *a, **k: True):
            def call(*a, **k):
                if when(*a, **k):
                    self._hit(name, a[0])
                return real(*a, **k)

            mp.setattr(os, name, call)

        counted("mkdir", os.mkdir, lambda p, *a, **k: not os.path.lexists(p))  # exist_ok callers: not a write
        counted("rename", os.rename)
        counted("replace", os.replace)
        counted("link", os.link)
        counted("open", os.open, lambda p, flags, *a, **k: bool(flags & _WRITE_FLAGS) and "dir_fd" not in k)
        real_open = builtins.open

        def open_(file, mode="r", *a, **k):
            if isinstance(file, str | bytes | os.PathLike) and any(c in mode for c in "wax+"):
                self._hit(f"open[{mode}]", file)
            return real_open(file, mode, *a, **k)

        mp.setattr(builtins, "open", open_)
        mp.setattr(io, "open", open_)
        real_execute = database_mod.Tx.execute

        def execute(tx, sql, params=()):  # the row's INSERT fails inside the write transaction, as SQLite's ENOSPC does
            if sql.lstrip().startswith("INSERT INTO ledger"):
                self.events.append("ledger append")
                if len(self.events) - 1 == self.fail_at:
                    self.fired = self.events[-1]
                    with tx.db._errors("ledger must be writable"):  # the database's own mapping of SQLite errors
                        raise sqlite3.OperationalError("database or disk is full")
            return real_execute(tx, sql, params)

        mp.setattr(database_mod.Tx, "execute", execute)


def _review(gate_env, root: Path) -> list[str]:
    policy = root.parent / "technical.toml"
    if not policy.exists():
        policy.write_text(TECH_POLICY)
    argv = ["review", str(gate_env.talking), "--reference", str(gate_env.portrait), "--audio", str(gate_env.audio)]
    return [*argv, "--out", str(root / "out"), "--ledger", str(root / "ledger.sqlite"), "--policy", str(policy)]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_consistent(out: Path, ledger_path: Path, *, recovered: bool) -> dict[str, ledger_mod.Row]:
    """Every published run is complete and recorded; after recovery, every row is published."""
    if not ledger_path.exists():
        assert not any((out / k).exists() and any((out / k).iterdir()) for k in ("released", "quarantine"))
        return {}
    lg = Ledger(ledger_path)
    rep = lg.verify()
    assert rep.ok, rep.problems
    rows = {r.run_id: r for r in lg.rows()}
    for kind, decision in (("released", "released"), ("quarantine", "quarantined")):
        for d in sorted((out / kind).iterdir()) if (out / kind).is_dir() else []:
            assert all((d / n).is_file() for n in ("video.mp4", *REPORT_FILES.values())), f"{d} is incomplete"
            row = rows.get(d.name)
            assert row is not None, f"{d} is published without a ledger row"
            assert row.decision == decision and row.output_sha256 == _sha256(d / "video.mp4")
            rec = GateRecord.from_json((d / "record.json").read_text())
            assert rec.ledger is not None and rec.ledger.row_hash == row.row_hash, f"{d}: record lacks its row"
    if recovered:
        for run_id, row in rows.items():
            final = out / ("released" if row.decision == "released" else "quarantine") / run_id
            assert (final / "video.mp4").is_file(), f"row {row.seq} says {row.decision} but {final} has no video"
    return rows


def _one_line_74(code: int, err: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 74, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert any(why in err for why in ("No space left on device", "disk is full", "disk I/O error")), err


# --- fault injection at every write ---------------------------------------------------------------------------------


def test_enospc_at_every_write_leaves_a_consistent_state(gate_env, tmp_path, capsys):
    counting = WriteFaults(tmp_path / "count")
    with pytest.MonkeyPatch.context() as mp:
        counting.install(mp)
        assert main(_review(gate_env, tmp_path / "count")) == 0
    events = counting.events
    append_at = events.index("ledger append")
    assert events[-1].startswith("rename out/staging/")  # the publishing rename is the last write
    if EVERY_WRITE:
        targets = list(range(len(events)))
    else:  # the last write of each file or directory (its replace/rename/link), and the ledger append
        targets = [i for i, e in enumerate(events) if e.split()[0] in ("mkdir", "rename", "replace", "link", "ledger")]
    problems = []
    for k in targets:
        root = tmp_path / f"k{k:02d}"
        out, ledger_path = root / "out", root / "ledger.sqlite"
        faults = WriteFaults(root, fail_at=k)
        capsys.readouterr()
        with pytest.MonkeyPatch.context() as mp:
            faults.install(mp)
            code = main(_review(gate_env, root))
        err = capsys.readouterr().err
        try:
            assert faults.fired is not None, f"the run no longer makes write {k} ({events[k]})"
            _one_line_74(code, err)
            rows = check_consistent(out, ledger_path, recovered=False)
            staged = sorted(p.name for p in (out / "staging").iterdir()) if (out / "staging").exists() else []
            if k <= append_at:  # up to the row: rolled back, nothing recorded, nothing left in staging
                assert rows == {} and staged == [], (rows, staged)
                assert "recorded in the ledger" not in err, err
            else:  # after the row: recorded, waiting in staging; the message says the next run publishes it
                assert len(rows) == 1 and staged == list(rows), (rows, staged)
                assert "is recorded in the ledger as" in err and "publishes it" in err, err
                notes = recover(Layout(out), ledger_path)
                assert notes and "finished an interrupted run" in notes[0], notes
            check_consistent(out, ledger_path, recovered=True)
        except AssertionError as exc:
            problems.append(f"write {k} ({events[k]}): {exc}")
        shutil.rmtree(root, ignore_errors=True)
    assert not problems, "\n".join(problems)


# --- a real small file system ---------------------------------------------------------------------------------------


def _mount(path: Path, size_kib: int, remount: bool = False) -> None:
    path.mkdir(parents=True, exist_ok=True)
    opts = f"{'remount,' if remount else ''}size={size_kib}k"
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip() or proc.returncode}")


def _used_kib(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize // 1024


def test_a_small_tmpfs_at_several_sizes_leaves_a_consistent_state(gate_env, tmp_path, capsys):
    big = tmp_path / "big"
    _mount(big, 64 * 1024)
    try:
        assert main(_review(gate_env, big)) == 0
        need = _used_kib(big)  # what a finished run occupies (signing briefly needs a second copy of the video)
    finally:
        subprocess.run(["umount", "-l", str(big)], check=False)
    outcomes = {}
    for frac in (0.05, 0.2, 0.4, 0.6, 0.8, 0.95, 1.1, 1.5):
        mnt = tmp_path / f"fs{int(frac * 100)}"
        size = max(16, int(need * frac))
        _mount(mnt, size)
        try:
            capsys.readouterr()
            code = main(_review(gate_env, mnt))
            printed = capsys.readouterr()
            err = printed.err
            outcomes[frac] = code
            assert code in (0, 74), f"{size} KiB: exit {code}: {err}{printed.out}"
            if code == 74:
                _one_line_74(code, err)
            _mount(mnt, size + 64 * 1024, remount=True)  # space is back (SQLite needs some even to read)
            check_consistent(mnt / "out", mnt / "ledger.sqlite", recovered=False)  # as the failed run left it
            if (mnt / "ledger.sqlite").exists():  # what the next run does first
                recover(Layout(mnt / "out"), mnt / "ledger.sqlite")
            check_consistent(mnt / "out", mnt / "ledger.sqlite", recovered=True)
        finally:
            subprocess.run(["umount", "-l", str(mnt)], check=False)
    assert outcomes[1.5] == 0 and outcomes[0.05] == 74, outcomes  # the sweep spans failure and success
