"""Retention (gate.retention, `hallo3-gate retention apply`) on both database backends.

Rows and run directories are dated by hand: "old" ones in 2020 (older than any allowed retention at the real current
time), "new" ones at the current time; every plan uses the real clock, as the command does. Run directories are
written like the gate writes them: a real directory named by the run id, ``record.json`` (a shipped 1.1 record with
this run's id, time and ledger row) and ``video.mp4``. What is expected is stated from those inputs, never taken
from the code under test; the chain is checked with ``Ledger.verify`` and through ``hallo3-gate ledger verify``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer

from gate.database import Database, is_postgres
from gate.ledger import Ledger
from gate.retention import TRASH_PREFIX, RetentionRefused, apply, plan, retention_status
from reports.errors import ExitCode, UsageError, exit_status
from tests import databases

db_url, pg_db_url, postgres_url = databases.db_url, databases.pg_db_url, databases.postgres_url  # the fixtures

RECORD_TEMPLATE = Path(__file__).resolve().parents[1] / "reports" / "data" / "record-1.1-released.json"
OLD = "2020-01-0{}T00:00:00.000000Z"
MIN_DAYS = 183  # China's Labelling Measures Art. 9: six months


def _now() -> str:
    return datetime.now(UTC).isoformat()


# --- building a ledger and a runs directory as the gate leaves them -------------------------------------------------


def _append(db: Database, run_id: str, created_at: str, decision: str = "released", kind: str = "run"):
    return Ledger(db).append(
        run_id=run_id,
        created_at=created_at,
        decision=decision,
        output_path=f"/runs/{run_id}/video.mp4" if kind == "run" else "",
        output_sha256=hashlib.sha256(run_id.encode()).hexdigest() if kind == "run" else "",
        payload_hex=hashlib.sha256(run_id.encode()).hexdigest()[:16] if kind == "run" else None,
        record_json=json.dumps({"run": run_id}),
        kind=kind,
        actor="alice" if kind != "run" else None,
        role="approver" if kind != "run" else None,
    )


def _run_dir(runs: Path, area: str, db: Database, row, created_at: str) -> Path:
    """released|quarantine|pending/<run_id> with its record naming ``row`` of ``db`` and a video."""
    record = json.loads(RECORD_TEMPLATE.read_text(encoding="utf-8"))
    record |= {"run_id": row.run_id, "created_at": created_at, "decision": row.decision}
    record["ledger"] = {"seq": row.seq, "row_hash": row.row_hash, "prev_hash": row.prev_hash, "path": db.display}
    d = runs / area / row.run_id
    d.mkdir(parents=True)
    (d / "record.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    (d / "video.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + row.run_id.encode())
    return d


def _tree(root: Path) -> list[tuple[str, str]]:
    """Every entry under ``root`` (symlinks as their target text, files as their sha256), to see that nothing moved."""
    out = []
    for base, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            p = Path(base) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out.append((rel, "link->" + os.readlink(p)))
            elif p.is_file():
                out.append((rel, hashlib.sha256(p.read_bytes()).hexdigest()))
            else:
                out.append((rel, "dir"))
    return sorted(out)


@pytest.fixture
def world(db_url, tmp_path):
    """A ledger of 6 rows: r1 r2 (released, old), q3 (quarantined, old), an old user change, then n5 (released,
    now), n6 (quarantined, now) — and their run directories."""
    db = Database.open(db_url, create=True)
    runs = tmp_path / "runs"
    rows = {}
    rows["r1"] = _append(db, "r1", OLD.format(1))
    rows["r2"] = _append(db, "r2", OLD.format(2))
    rows["q3"] = _append(db, "q3", OLD.format(3), decision="quarantined")
    rows["u4"] = _append(db, "", OLD.format(4), decision="add", kind="user")
    rows["n5"] = _append(db, "n5", _now())
    rows["n6"] = _append(db, "n6", _now(), decision="quarantined")
    for rid in ("r1", "r2", "n5"):
        _run_dir(runs, "released", db, rows[rid], rows[rid].created_at)
    for rid in ("q3", "n6"):
        _run_dir(runs, "quarantine", db, rows[rid], rows[rid].created_at)
    return db, runs, rows


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``hallo3-gate <argv>`` as ``gate.cli.main`` runs it (exit code from the same ``exit_status`` mapping); through
    ``gate.cli.app`` once the retention app is registered there, else through an app holding only it."""
    from gate.cli import app, main
    from gate.cli_retention import retention_app

    capsys.readouterr()
    if argv[0] != "retention" or any(g.name == "retention" for g in app.registered_groups):
        code = main(argv)
    else:
        local = typer.Typer()
        local.add_typer(retention_app, name="retention")
        local.command("noop")(lambda: None)  # a group with one subgroup only would swallow its name
        try:
            rv = local(args=argv, prog_name="hallo3-gate", standalone_mode=False)
            code = int(rv) if isinstance(rv, int) else 0
        except BaseException as exc:  # as gate.cli.main does
            status = exit_status(exc)
            if status.message:
                print(status.message, file=__import__("sys").stderr)
            code = int(status.code)
    out = capsys.readouterr()
    return code, out.out, out.err


def _raw(url: str, sql: str, params: tuple = ()) -> None:
    if is_postgres(url):
        import psycopg

        with psycopg.connect(url, autocommit=True) as con:
            con.execute(sql.replace("?", "%s"), params)
        return
    with contextlib.closing(sqlite3.connect(url)) as con:
        con.execute(sql, params)
        con.commit()


# --- dry run, apply, verify ---------------------------------------------------------------------------------------------


def test_dry_run_lists_what_would_go_and_writes_nothing(world, capsys):
    db, runs, rows = world
    before_rows, before_tree = Ledger(db).rows(), _tree(runs)
    code, out, err = _cli(
        ["retention", "apply", "--runs", str(runs), "--db", db.locator, "--days", "200", "--dry-run", "--json"], capsys
    )
    assert code == 0, err
    got = json.loads(out)
    assert got["dry_run"] is True and got["result"] is None and got["days_source"] == "--days"
    led = got["plan"]["ledger"]
    assert led["verified"] is True
    assert led["remove"]["first_seq"] == 1 and led["remove"]["through_seq"] == 4 and led["remove"]["count"] == 4
    assert led["remove"]["last_hash"] == rows["u4"].row_hash and led["remove"]["runs"] == ["r1", "r2", "q3"]
    removed = {(d["area"], d["run_id"]) for d in got["plan"]["directories"] if d["action"] == "remove"}
    assert removed == {("released", "r1"), ("released", "r2"), ("quarantine", "q3")}
    assert got["plan"]["kept_recent"] == 2
    assert Ledger(db).rows() == before_rows and _tree(runs) == before_tree
    # the plain listing names them too
    code, out, _ = _cli(["retention", "apply", "--runs", str(runs), "--db", db.locator, "--dry-run"], capsys)
    assert code == 0
    assert "would remove" in out and "rows 1..4 (4 rows, 3 runs)" in out
    assert "remove: released/r1 (older than the cutoff)" in out and "remove: quarantine/q3" in out
    assert Ledger(db).rows() == before_rows and _tree(runs) == before_tree


def test_apply_removes_the_old_prefix_and_directories_and_the_chain_still_verifies(world, capsys):
    db, runs, rows = world
    code, out, err = _cli(
        ["retention", "apply", "--runs", str(runs), "--db", db.locator, "--actor", "dpo", "--json"], capsys
    )
    assert code == 0, err
    result = json.loads(out)["result"]
    assert result["ok"] and result["removed_rows"] == 4 and result["row"]["seq"] == 7
    left = Ledger(db).rows()
    assert [r.seq for r in left] == [5, 6, 7]
    assert left[0].prev_hash == rows["u4"].row_hash  # the chain still links to the removed row ...
    ret = left[-1]
    assert ret.kind == "retention" and ret.actor == "dpo" and ret.prev_hash == rows["n6"].row_hash
    rec = json.loads(ret.record_json)
    assert rec["removed_through_seq"] == 4 and rec["removed_last_hash"] == rows["u4"].row_hash  # ... and says so
    assert rec["removed_count"] == 4 and rec["runs"] == ["r1", "r2", "q3"] and rec["days"] == 365  # the default
    assert sorted(rec["directories"]) == ["quarantine/q3", "released/r1", "released/r2"]
    assert Ledger(db).verify().ok
    code, out, _ = _cli(["ledger", "verify", "--ledger", db.locator, "--json"], capsys)
    assert code == 0 and json.loads(out)["ok"] is True
    assert sorted(p.name for p in (runs / "released").iterdir()) == ["n5"]
    assert sorted(p.name for p in (runs / "quarantine").iterdir()) == ["n6"]
    # the records of kept runs still find their rows
    assert Ledger(db).find_by_run("n5").row_hash == rows["n5"].row_hash


def test_a_second_apply_changes_nothing(world):
    db, runs, _ = world
    first = apply(plan(db, runs, MIN_DAYS), "dpo")
    assert first.row_seq == 7
    rows, tree = Ledger(db).rows(), _tree(runs)
    second_plan = plan(db, runs, MIN_DAYS)
    assert second_plan.empty and second_plan.removed_count == 0 and not second_plan.to_remove
    second = apply(second_plan, "dpo")
    assert second.row_seq is None and second.removed_rows == 0 and second.removed_directories == ()
    assert Ledger(db).rows() == rows and _tree(runs) == tree


def test_a_later_apply_removes_a_prefix_that_holds_the_earlier_retention_row(db_url, tmp_path):
    """Planned for a time years ahead (``now``), the first apply's own retention row is old too: the second apply
    removes it with the rows after it, and the chain still verifies from the second retention row's record."""
    db = Database.open(db_url, create=True)
    for i in (1, 2):
        _append(db, f"a{i}", OLD.format(i))
    first = apply(plan(db, tmp_path, MIN_DAYS), "dpo")
    assert first.removed_rows == 2 and first.row_seq == 3
    a4 = _append(db, "a4", _now())
    later = datetime(2040, 1, 1, tzinfo=UTC)
    second = apply(plan(db, tmp_path, MIN_DAYS, now=later), "dpo")
    assert second.removed_rows == 2 and second.row_seq == 5  # rows 3 (the first retention row) and 4
    left = Ledger(db).rows()
    assert [r.seq for r in left] == [5] and left[0].prev_hash == a4.row_hash
    assert json.loads(left[0].record_json)["removed_through_seq"] == 4
    assert Ledger(db).verify().ok


def test_a_time_without_a_zone_is_refused(db_url, tmp_path):
    db = Database.open(db_url, create=True)
    with pytest.raises(UsageError, match="timezone-aware"):
        plan(db, tmp_path, MIN_DAYS, now=datetime(2030, 1, 1))


# --- tampering after a removal is still detected -----------------------------------------------------------------------


TAMPER = {
    "delete-one-more-row": "DELETE FROM ledger WHERE seq = 5",
    "edit-the-recorded-seq": "UPDATE ledger SET record_json = replace(record_json, "
    "'\"removed_through_seq\": 4', '\"removed_through_seq\": 5') WHERE kind = 'retention'",
    "edit-the-recorded-hash": 'UPDATE ledger SET record_json = replace(record_json, \'"removed_last_hash": "\', '
    "'\"removed_last_hash\": \"0') WHERE kind = 'retention'",
    "delete-the-retention-row": "DELETE FROM ledger WHERE kind = 'retention'",
}


@pytest.mark.parametrize("how", list(TAMPER))
def test_tampering_after_a_removal_is_detected(world, how, capsys):
    db, runs, _ = world
    apply(plan(db, runs, MIN_DAYS), "dpo")
    assert Ledger(db).verify().ok
    before = Ledger(db).rows()
    _raw(db.locator, TAMPER[how])
    assert Ledger(db).rows() != before  # the tampering took effect
    rep = Ledger(db).verify()
    assert not rep.ok, how
    code, out, _ = _cli(["ledger", "verify", "--ledger", db.locator, "--json"], capsys)
    assert code == int(ExitCode.GATE_FAILED) and json.loads(out)["ok"] is False
    with pytest.raises(RetentionRefused):  # and retention refuses to remove anything from a broken chain
        apply(plan(db, runs, MIN_DAYS), "dpo")


def test_a_gap_no_retention_row_accounts_for_is_a_deletion(db_url):
    db = Database.open(db_url, create=True)
    for i in (1, 2, 3):
        _append(db, f"a{i}", OLD.format(i))
    _raw(db.locator, "DELETE FROM ledger WHERE seq = 1")
    rep = Ledger(db).verify()
    assert not rep.ok and any("expected seq 1" in p for p in rep.problems)


# --- what is kept -----------------------------------------------------------------------------------------------------


def test_a_pending_run_is_kept_and_ends_the_removable_prefix(db_url, tmp_path, capsys):
    db = Database.open(db_url, create=True)
    runs = tmp_path / "runs"
    r1 = _append(db, "r1", OLD.format(1))
    p2 = _append(db, "p2", OLD.format(2), decision="pending")
    r3 = _append(db, "r3", OLD.format(3))
    _run_dir(runs, "released", db, r1, r1.created_at)
    _run_dir(runs, "pending", db, p2, p2.created_at)
    _run_dir(runs, "released", db, r3, r3.created_at)
    code, out, err = _cli(["retention", "apply", "--runs", str(runs), "--db", db.locator], capsys)
    assert code == 0, err
    assert "keep: pending/p2 (kept: pending)" in out
    assert [r.seq for r in Ledger(db).rows()] == [2, 3, 4]  # only r1's row: p2's and everything after it stay
    assert Ledger(db).verify().ok
    assert (runs / "pending" / "p2" / "record.json").is_file()
    assert not (runs / "released" / "r1").exists() and not (runs / "released" / "r3").exists()  # old dirs go
    # once people reject it, the run row is no longer pending and the prefix goes on
    _append(db, "p2", _now(), decision="quarantined", kind="reject")
    p = plan(db, runs, MIN_DAYS)
    assert (p.removed_first_seq, p.removed_through_seq) == (2, 3)


def test_a_symlinked_run_directory_is_not_followed(world, tmp_path):
    db, runs, _ = world
    outside = tmp_path / "outside"
    row = _append(db, "x9", OLD.format(9))
    _run_dir(tmp_path / "outside-runs", "released", db, row, OLD.format(9)).rename(outside)
    os.symlink(outside, runs / "released" / "x9")  # an old, valid-looking run ... through a symlink
    inner = runs / "released" / "r2" / "record.json"  # a run whose record is a symlink
    real = tmp_path / "r2-record.json"
    inner.rename(real)
    os.symlink(real, inner)
    outside_tree = _tree(outside)
    p = plan(db, runs, MIN_DAYS)
    kept = {d.path.name: d.reason for d in p.directories if d.action == "keep"}
    assert kept["x9"].startswith("not the gate's") and "symlink" in kept["x9"]
    assert kept["r2"].startswith("not the gate's") and "record.json" in kept["r2"]
    result = apply(p, "dpo")
    assert result.ok
    assert os.path.islink(runs / "released" / "x9") and _tree(outside) == outside_tree
    assert inner.is_symlink() and real.is_file()
    assert not (runs / "released" / "r1").exists()


def test_an_area_that_is_a_symlink_is_refused_untouched(world, tmp_path):
    db, runs, _ = world
    (runs / "quarantine").rename(tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", runs / "quarantine")
    tree, rows = _tree(tmp_path / "elsewhere"), Ledger(db).rows()
    with pytest.raises(UsageError, match="never a symlink"):
        plan(db, runs, MIN_DAYS)
    assert _tree(tmp_path / "elsewhere") == tree and Ledger(db).rows() == rows


def test_runs_of_another_ledger_and_foreign_entries_are_kept(world, tmp_path):
    db, runs, _ = world
    other = Database.open(str(tmp_path / "other.sqlite"), create=True)
    row = _append(other, "o7", OLD.format(7))
    _run_dir(runs, "released", other, row, OLD.format(7))
    # a record naming this ledger's file but not the row this ledger holds for its run (a copy, or a forgery)
    f8 = _append(db, "f8", OLD.format(8))
    forged = _run_dir(runs, "quarantine", db, f8, OLD.format(8))
    rec = json.loads((forged / "record.json").read_text())
    rec["ledger"]["row_hash"] = "0" * 64
    (forged / "record.json").write_text(json.dumps(rec))
    (runs / "released" / "notes.txt").write_text("mine")
    (runs / "released" / "my dir").mkdir()
    p = plan(db, runs, MIN_DAYS)
    kept = {d.path.name: d.reason for d in p.directories if d.action == "keep"}
    assert kept["o7"].startswith("kept: this ledger holds no row of this run") and "other.sqlite" in kept["o7"]
    assert kept["f8"].startswith("kept: its record names another ledger")
    assert kept["notes.txt"].startswith("not the gate's") and kept["my dir"].startswith("not the gate's")
    apply(p, "dpo")
    assert (runs / "released" / "o7" / "video.mp4").is_file() and (runs / "released" / "notes.txt").is_file()
    assert (runs / "released" / "my dir").is_dir() and (forged / "video.mp4").is_file()


# --- refusals -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("days", ["182", "0", "-5"])
def test_days_below_six_months_are_refused_and_nothing_is_written(world, days, capsys):
    db, runs, _ = world
    rows, tree = Ledger(db).rows(), _tree(runs)
    code, _, err = _cli(["retention", "apply", "--runs", str(runs), "--db", db.locator, "--days", days], capsys)
    assert code == int(ExitCode.USAGE)
    assert "--days" in err and "183" in err
    assert Ledger(db).rows() == rows and _tree(runs) == tree


def test_a_configured_retention_below_six_months_is_refused(world, capsys, monkeypatch):
    db, runs, _ = world
    rows = Ledger(db).rows()
    monkeypatch.setenv("HALLO3_GATE_RETENTION_DAYS", "90")
    code, _, err = _cli(["retention", "apply", "--runs", str(runs), "--db", db.locator], capsys)
    assert code == int(ExitCode.USAGE) and "HALLO3_GATE_RETENTION_DAYS" in err
    assert Ledger(db).rows() == rows
    monkeypatch.setenv("HALLO3_GATE_RETENTION_DAYS", "200")  # a valid configured value is used
    code, out, _ = _cli(["retention", "apply", "--runs", str(runs), "--db", db.locator, "--dry-run", "--json"], capsys)
    assert code == 0 and json.loads(out)["plan"]["days"] == 200
    assert json.loads(out)["days_source"] == "$HALLO3_GATE_RETENTION_DAYS"


def test_a_broken_ledger_is_listed_and_nothing_is_removed(world, capsys):
    db, runs, _ = world
    _raw(db.locator, "UPDATE ledger SET decision = 'released' WHERE seq = 3")
    rows, tree = Ledger(db).rows(), _tree(runs)
    code, out, _ = _cli(["retention", "apply", "--runs", str(runs), "--db", db.locator, "--dry-run"], capsys)
    assert code == int(ExitCode.GATE_FAILED) and "ledger does NOT verify: row seq 3" in out
    code, _, err = _cli(["retention", "apply", "--runs", str(runs), "--db", db.locator], capsys)
    assert code == int(ExitCode.GATE_FAILED) and "must verify" in err
    assert Ledger(db).rows() == rows and _tree(runs) == tree


def test_a_plan_made_stale_by_another_apply_is_refused(world):
    db, runs, _ = world
    stale = plan(db, runs, MIN_DAYS)
    apply(plan(db, runs, MIN_DAYS), "dpo")
    rows = Ledger(db).rows()
    with pytest.raises(RetentionRefused, match="planned rows"):
        apply(stale, "dpo")
    assert Ledger(db).rows() == rows  # not even a second retention row


def test_the_runs_directory_must_exist(world, tmp_path, capsys):
    db, _, _ = world
    code, _, err = _cli(["retention", "apply", "--runs", str(tmp_path / "nope"), "--db", db.locator], capsys)
    assert code == int(ExitCode.USAGE) and "--runs" in err


# --- a removal that fails half way is finished by the next apply ------------------------------------------------------


def test_a_directory_that_could_not_be_removed_is_removed_by_the_next_apply(world, monkeypatch, capsys):
    import gate.retention as R

    db, runs, _ = world
    real_rmtree = R.shutil.rmtree

    def failing_rmtree(path, *a, **k):
        if Path(path).name == TRASH_PREFIX + "r2":
            raise PermissionError(13, "Permission denied", str(path))
        return real_rmtree(path, *a, **k)

    monkeypatch.setattr(R.shutil, "rmtree", failing_rmtree)
    real_rename = os.rename

    def failing_rename(src, dst, *a, **k):  # r1's directory cannot even be renamed out of the way
        if Path(src).name == "r1":
            raise PermissionError(13, "Permission denied", str(src))
        return real_rename(src, dst, *a, **k)

    monkeypatch.setattr(R.os, "rename", failing_rename)
    code, _, err = _cli(["retention", "apply", "--runs", str(runs), "--db", db.locator], capsys)
    assert code == int(ExitCode.IO) and "NOT removed" in err
    assert Ledger(db).verify().ok and [r.seq for r in Ledger(db).rows()] == [5, 6, 7]  # the rows went
    assert (runs / "released" / (TRASH_PREFIX + "r2")).is_dir() and (runs / "released" / "r1").is_dir()
    assert not (runs / "quarantine" / "q3").exists()
    monkeypatch.undo()
    p = plan(db, runs, MIN_DAYS)
    reasons = {d.path.name: d.reason for d in p.to_remove}
    assert reasons == {
        "r1": "its ledger row (seq 1) was removed by an earlier retention apply",
        TRASH_PREFIX + "r2": "left over from an interrupted removal",
    }
    result = apply(p, "dpo")
    assert result.ok and result.removed_rows == 0 and result.row_seq == 8  # a row documents the removal
    assert sorted(os.listdir(runs / "released")) == ["n5"]
    assert Ledger(db).verify().ok


# --- status for the compliance matrix -----------------------------------------------------------------------------------


def test_retention_status_reports_days_verification_oldest_row_and_last_apply(world):
    from gate.config import load

    db, runs, _ = world
    config = load({"HALLO3_GATE_CONFIG": "", "HALLO3_GATE_RETENTION_DAYS": "200", "XDG_CONFIG_HOME": str(runs)})
    before = retention_status(db, config)
    assert before["days"] == 200 and before["source"] == "$HALLO3_GATE_RETENTION_DAYS"
    assert before["ledger_verified"] is True and before["oldest_row"]["seq"] == 1 and before["last_apply"] is None
    apply(plan(db, runs, 200), "dpo")
    after = retention_status(db, config)
    assert after["ledger_verified"] is True and after["oldest_row"]["seq"] == 5
    last = after["last_apply"]
    assert last["seq"] == 7 and last["actor"] == "dpo" and last["removed_through_seq"] == 4
    assert last["removed_count"] == 4 and last["days"] == 200
    _raw(db.locator, "DELETE FROM ledger WHERE seq = 5")
    assert retention_status(db, config)["ledger_verified"] is False


# --- a ledger written before the review service (layout 1) --------------------------------------------------------------


def test_a_layout_1_ledger_is_planned_unwritten_and_migrated_by_the_apply(db_url, tmp_path):
    """Its rows (October 2026 in the old layout) are old when planned for 2040: the dry run writes nothing (the
    ledger keeps its 11 columns), the apply migrates it and removes all three old-hash rows in one transaction."""
    from tests.gate.test_ledger_backends import _columns, _make_v1_ledger

    old = _make_v1_ledger(db_url)
    later = datetime(2040, 1, 1, tzinfo=UTC)
    p = plan(Database.open(db_url), tmp_path, MIN_DAYS, now=later)
    assert (p.removed_first_seq, p.removed_through_seq, p.removed_count) == (1, 3, 3)
    assert p.removed_last_hash == old[-1]["row_hash"] and p.removed_runs == ("old0", "old1", "old2")
    assert len(_columns(db_url)) == 11  # planning wrote nothing
    result = apply(p, "dpo")
    assert result.removed_rows == 3 and result.row_seq == 4
    left = Ledger(db_url).rows()
    assert [r.seq for r in left] == [4] and left[0].prev_hash == old[-1]["row_hash"] and left[0].hash_version == 2
    assert Ledger(db_url).verify().ok


def test_names_are_printed_escaped(world, capsys):
    db, runs, _ = world
    (runs / "released" / "evil\x1b[31m\nremove: released\u202en5").mkdir()
    code, out, _ = _cli(["retention", "apply", "--runs", str(runs), "--db", db.locator, "--dry-run"], capsys)
    assert code == 0
    assert "\x1b" not in out and "\u202e" not in out and "\\x1b[31m" in out
    faked = [line for line in out.splitlines() if line.startswith("remove: released")]
    assert sorted(faked) == [
        "remove: released/r1 (older than the cutoff)",
        "remove: released/r2 (older than the cutoff)",
    ]


def test_a_run_released_after_a_long_review_is_kept_from_its_release(db_url, tmp_path):
    """Submitted in 2020, released now: its run row may go (the release row stays, and ends the prefix), its
    directory stays; planned for 2040 both are old and go, the directory as an orphan of the first apply."""
    db = Database.open(db_url, create=True)
    runs = tmp_path / "runs"
    run = _append(db, "p1", OLD.format(1), decision="pending")
    _append(db, "p1", _now(), decision="approved", kind="approve")
    _append(db, "p1", _now(), decision="released", kind="release")
    _run_dir(runs, "released", db, run, run.created_at)
    first = plan(db, runs, MIN_DAYS)
    assert (first.removed_first_seq, first.removed_through_seq) == (1, 1)  # the run row only
    assert first.to_remove == () and first.kept_recent == 1
    apply(first, "dpo")
    assert (runs / "released" / "p1" / "video.mp4").is_file() and Ledger(db).verify().ok
    later = plan(db, runs, MIN_DAYS, now=datetime(2040, 1, 1, tzinfo=UTC))
    assert later.removed_through_seq == 4  # approve, release, the first retention row
    (gone,) = later.to_remove
    assert gone.run_id == "p1"
    assert gone.reason.startswith("its ledger row (seq 1) was removed by an earlier retention apply (its last ledger")
    apply(later, "dpo")
    assert not (runs / "released" / "p1").exists() and Ledger(db).verify().ok


def test_a_failure_inside_the_transaction_leaves_neither_the_row_nor_the_removal(world, monkeypatch):
    """The retention row and the DELETE are one transaction: a write that fails between them (here: the database
    refusing the DELETE) leaves the ledger exactly as it was, and no directory is touched."""
    from gate.ledger import Ledger as L
    from reports.errors import OutputError

    db, runs, _ = world
    rows, tree = Ledger(db).rows(), _tree(runs)

    def full_disk(self, tx, **kw):
        tx.execute("SELECT 1")  # the retention row was appended in this transaction just before
        raise OutputError(db.display, "ledger must be writable", "database or disk is full")

    monkeypatch.setattr(L, "remove_prefix_in", full_disk)
    with pytest.raises(OutputError):
        apply(plan(db, runs, MIN_DAYS), "dpo")
    assert Ledger(db).rows() == rows and _tree(runs) == tree
