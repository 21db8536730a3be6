"""The gate touches only what it made under --out: recovery of interrupted runs, and the checks of --out itself.

A "dead run" here is a staging directory made by ``gate.staging.new_staging`` whose lock was released (as the kernel
does when a process dies), holding what a run had written by then.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest

from gate.ledger import Ledger
from gate.staging import (
    MARKER,
    NEW_PREFIX,
    Layout,
    check_layout,
    make_layout,
    new_staging,
    recover,
    remove_if_empty,
)
from reports.errors import OutputError, UsageError
from reports.schema import GateRecord
from reports.write import REPORT_FILES
from tests.filesystems import mounted_tmpfs
from tests.reports.conftest import build_record_dict

REPORTS = tuple(REPORT_FILES.values())


def _record(run_id: str, decision: str = "released") -> GateRecord:
    d = build_record_dict("released" if decision == "released" else "failed")
    d.pop("ledger")
    return GateRecord.model_validate({**d, "run_id": run_id})


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under root (symlinks not followed): kind, size, mtime, content or link target."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath) / name
            st = os.lstat(p)
            if os.path.islink(p):
                out[str(p)] = ("link", os.readlink(p))
            elif p.is_dir():
                out[str(p)] = ("dir",)
            else:
                out[str(p)] = ("file", st.st_size, st.st_mtime_ns, p.read_bytes())
    return out


@pytest.fixture()
def out(tmp_path) -> Layout:
    layout = Layout(tmp_path / "out")
    make_layout(layout)
    return layout


@pytest.fixture()
def ledger(tmp_path) -> Ledger:
    return Ledger(tmp_path / "ledger.sqlite", create=True)


def dead_run(layout: Layout, ledger: Ledger, run_id: str, *, reports: bool = True, row: str | None = None) -> Path:
    """A staging directory left by a run that died: video (and reports), a ledger row if ``row`` names a decision."""
    with new_staging(layout, run_id, ledger.path) as d:
        (d / "video.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 a video")
        record = _record(run_id, row or "released")
        if reports:
            for name in REPORTS:
                (d / name).write_text(record.to_json() if name == "record.json" else f"{name} of {run_id}")
        if row is not None:
            ledger.append(
                run_id=run_id,
                created_at=record.created_at.isoformat(),
                decision=row,
                output_path=str(layout.final_dir(row, run_id) / "video.mp4"),
                output_sha256="ab" * 32,
                payload_hex=record.watermark.payload,
                record_json=record.to_json(),
            )
    return d


# --- recovery finishes or rolls back only marked directories --------------------------------------------------------


def test_a_dead_run_without_a_row_is_removed(out, ledger):
    d = dead_run(out, ledger, "20260101T000000Z-00000001")
    notes = recover(out, ledger.path)
    assert not d.exists() and notes == [f"{d.name}: removed an incomplete run (no ledger row; nothing was released)"]
    assert not list(out.released.iterdir()) and not list(out.quarantine.iterdir())


@pytest.mark.parametrize("decision", ["released", "quarantined"])
def test_a_dead_run_with_a_row_is_published_with_its_ledger_entry(out, ledger, decision):
    run_id = "20260101T000000Z-00000002"
    d = dead_run(out, ledger, run_id, row=decision)
    (d / ".record.json.x1y2z3.json.part").write_text("{half a rec")  # killed while completing record.json
    before = {n: (d / n).read_bytes() for n in REPORTS if n != "record.json"}
    notes = recover(out, ledger.path)
    final = out.final_dir(decision, run_id)
    assert not d.exists() and (final / "video.mp4").is_file() and notes[0].startswith(f"{run_id}: finished")
    assert sorted(p.name for p in final.iterdir()) == sorted(["video.mp4", *REPORTS])  # no marker, no .part
    row = ledger.find_by_run(run_id)
    rec = GateRecord.from_json((final / "record.json").read_text())
    assert rec.ledger is not None and (rec.ledger.seq, rec.ledger.row_hash) == (row.seq, row.row_hash)
    assert rec.decision == decision
    assert {n: (final / n).read_bytes() for n in before} == before  # reports that exist are never re-rendered
    assert recover(out, ledger.path) == []  # idempotent


def test_a_run_that_died_while_starting_is_removed(out, ledger):
    with new_staging(out, "20260101T000000Z-00000003", ledger.path) as d:
        pass
    os.rename(d, out.staging / f"{NEW_PREFIX}{d.name}")  # as if it died before naming its directory
    assert recover(out, ledger.path) == [f"{NEW_PREFIX}{d.name}: removed a run that died while starting"]
    assert list(out.staging.iterdir()) == []


def test_foreign_entries_in_staging_are_never_touched_or_followed(out, ledger, tmp_path):
    s = out.staging
    (s / "assets").mkdir()  # `mkdir -p OUT/staging/assets`: the user's folder
    (s / "assets" / "logo.png").write_bytes(b"\x89PNG user data")
    (s / "20260101T000000Z-0000000a").mkdir()  # a run-id name, but no marker
    (s / "20260101T000000Z-0000000a" / "video.mp4").write_bytes(b"user's")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / MARKER).write_text(json.dumps({"run_id": "linked", "ledger": str(ledger.path)}))
    (s / "linked").symlink_to(precious, target_is_directory=True)  # a symlink to a marked directory
    (s / "dangling").symlink_to(tmp_path / "nowhere")
    (s / "note.txt").write_text("a file")
    fake = s / "20260101T000000Z-0000000b"  # marker naming another run id
    fake.mkdir()
    (fake / MARKER).write_text(json.dumps({"run_id": "20260101T000000Z-0000000c", "ledger": str(ledger.path)}))
    linked_marker = s / "20260101T000000Z-0000000d"  # the marker itself a symlink to a real marker
    linked_marker.mkdir()
    real = tmp_path / "real-marker"
    real.write_text(json.dumps({"run_id": linked_marker.name, "ledger": str(ledger.path)}))
    (linked_marker / MARKER).symlink_to(real)
    garbage = s / "20260101T000000Z-0000000e"  # not a marker we wrote
    garbage.mkdir()
    (garbage / MARKER).write_bytes(b"\xff\xfe not json")
    before = {**_snapshot(s), **_snapshot(precious), **_snapshot(tmp_path / "real-marker")}
    assert recover(out, ledger.path) == []
    assert {**_snapshot(s), **_snapshot(precious), **_snapshot(tmp_path / "real-marker")} == before


def test_a_run_holding_its_lock_is_left_alone(out, ledger):
    d = dead_run(out, ledger, "20260101T000000Z-00000004")
    fd = os.open(d / MARKER, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a live run
        before = _snapshot(out.out_dir)
        assert recover(out, ledger.path) == []
        assert _snapshot(out.out_dir) == before
    finally:
        os.close(fd)
    assert recover(out, ledger.path)[0].startswith(f"{d.name}: removed")


def test_a_run_recorded_in_another_ledger_is_left_for_that_ledger(out, ledger, tmp_path):
    other = Ledger(tmp_path / "other.sqlite", create=True)
    d = dead_run(out, other, "20260101T000000Z-00000005", row="released")  # its row is in `other`
    before = _snapshot(out.out_dir)
    notes = recover(out, ledger.path)  # `ledger` has no row for it: removing it would lose a released video
    assert notes == [f"{d.name}: left in place (its run records into another ledger: {other.path})"]
    assert _snapshot(out.out_dir) == before
    assert recover(out, other.path)[0].startswith(f"{d.name}: finished")
    assert (out.released / d.name / "video.mp4").is_file()


def test_an_existing_final_directory_is_never_replaced(out, ledger):
    run_id = "20260101T000000Z-00000006"
    d = dead_run(out, ledger, run_id, row="released")
    (out.released / run_id).mkdir()  # someone made it (empty: a rename would silently replace it)
    notes = recover(out, ledger.path)
    assert d.is_dir() and notes[0].startswith(f"{run_id}: left in place")
    assert list((out.released / run_id).iterdir()) == []


def test_missing_reports_are_rendered_again_only_when_missing(out, ledger):
    run_id = "20260101T000000Z-00000007"
    d = dead_run(out, ledger, run_id, reports=False, row="quarantined")
    recover(out, ledger.path)
    final = out.quarantine / run_id
    assert all((final / n).stat().st_size > 0 for n in REPORTS)
    assert (final / "report.pdf").read_bytes().startswith(b"%PDF")
    assert not d.exists()


# --- --out itself ---------------------------------------------------------------------------------------------------


def test_out_that_is_a_file_is_a_usage_error(tmp_path):
    f = tmp_path / "out"
    f.write_text("a file")
    with pytest.raises(UsageError, match=r"--out must be a directory \(got a regular file\)"):
        check_layout(f)


@pytest.mark.parametrize("what", ["symlink", "regular file"])
def test_a_gate_subdirectory_that_is_not_a_real_directory_is_refused(tmp_path, what):
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if what == "symlink":
        (out / "staging").symlink_to(elsewhere, target_is_directory=True)
    else:
        (out / "staging").write_text("x")
    before = _snapshot(tmp_path)
    with pytest.raises(UsageError) as exc:
        check_layout(out)
    assert (
        exc.value.one_line()
        == f"{out / 'staging'}: must be a directory the gate made (never a symlink or a file) (got a {what})"
    )
    assert _snapshot(tmp_path) == before


def test_out_that_is_a_symlink_to_a_directory_is_accepted(tmp_path):
    real = tmp_path / "big-disk"
    real.mkdir()
    (tmp_path / "out").symlink_to(real, target_is_directory=True)
    layout = check_layout(tmp_path / "out")
    assert make_layout(layout) == [layout.staging, layout.released, layout.quarantine]
    assert (real / "staging").is_dir()


def test_make_layout_creates_parents_and_undoes_only_what_it_made(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "mine.txt").write_text("the user's")
    layout = Layout(tmp_path / "a" / "b" / "c")
    created = make_layout(layout)
    assert created == [tmp_path / "a" / "b", layout.out_dir, layout.staging, layout.released, layout.quarantine]
    remove_if_empty(created)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["mine.txt"]


def test_an_unwritable_out_is_an_output_error_and_nothing_is_created(tmp_path):
    with mounted_tmpfs(tmp_path / "ro", "ro,size=64k") as ro:
        with pytest.raises(OutputError, match="output directory must be writable") as exc:
            check_layout(ro / "out")
        assert str(ro / "out") in str(exc.value) and exc.value.exit_code == 74
        assert not (ro / "out").exists()


def test_out_under_proc_cannot_be_made(tmp_path):
    layout = Layout(Path("/proc/hallo3-gate-test-out"))
    with pytest.raises(OutputError, match=r"/proc/hallo3-gate-test-out.*must be creatable"):
        make_layout(check_layout(layout.out_dir))


def test_a_marked_run_naming_a_ledger_that_does_not_exist_yet_is_rolled_back(out, tmp_path):
    ledger = Ledger(tmp_path / "soon.sqlite", create=True)
    d = dead_run(out, ledger, "20260101T000000Z-00000008")
    ledger.path.unlink()  # as if the run died before its (lazily created) ledger existed
    assert recover(out, ledger.path) == [f"{d.name}: removed an incomplete run (no ledger row; nothing was released)"]
    assert not d.exists() and not ledger.path.exists()  # recovery never creates a ledger


def test_publishing_makes_a_missing_released_directory_but_never_follows_a_symlink(out, ledger, tmp_path):
    run_id = "20260101T000000Z-00000009"
    dead_run(out, ledger, run_id, row="released")
    out.released.rmdir()
    assert recover(out, ledger.path)[0].startswith(f"{run_id}: finished")
    assert (out.released / run_id / "video.mp4").is_file()
    other = "20260101T000000Z-0000000a"
    d = dead_run(out, ledger, other, row="quarantined")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out.quarantine.rmdir()
    out.quarantine.symlink_to(elsewhere, target_is_directory=True)
    notes = recover(out, ledger.path)
    assert notes[0].startswith(f"{other}: could not finish") and "symlink" in notes[0], notes
    assert d.is_dir() and list(elsewhere.iterdir()) == []
