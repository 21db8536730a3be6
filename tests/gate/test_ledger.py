from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import os
import sqlite3

import pytest

from gate.ledger import APPLICATION_ID, GENESIS, Ledger
from gate.verify_view import ledger_lookup
from reports.errors import ExitCode, InputError, OutputError, ProvenanceError, UsageError
from tests.filesystems import mounted_tmpfs


def _append(path: str, i: int) -> None:
    lg = Ledger(path, create=True)  # every worker may be the one that creates it
    for k in range(3):
        lg.append(
            run_id=f"run-{i}-{k}",
            created_at="2026-11-23T00:00:00Z",
            decision="released",
            output_path=f"/out/{i}-{k}.mp4",
            output_sha256="ab" * 32,
            payload_hex=f"{i:02x}{k:02x}00000000",
            record_json=json.dumps({"run": i, "k": k}),
        )


def _fill(path, n=5) -> Ledger:
    lg = Ledger(path, create=True)
    for i in range(n):
        lg.append(
            run_id=f"r{i}",
            created_at=f"2026-11-23T00:00:0{i}Z",
            decision="released" if i % 2 else "quarantined",
            output_path=f"/o/{i}.mp4",
            output_sha256=f"{i:064x}",
            payload_hex=f"{i:016x}",
            record_json=json.dumps({"i": i}),
        )
    return lg


def test_chain_builds_and_verifies(tmp_path):
    lg = _fill(tmp_path / "l.sqlite")
    rows = lg.rows()
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5] and rows[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.row_hash for a, b in itertools.pairwise(rows))
    rep = lg.verify()
    assert rep.ok and rep.rows == 5 and rep.head == rows[-1].row_hash
    assert lg.find_by_payload(f"{3:016x}").run_id == "r3" and lg.find_by_payload("ff" * 8) is None


def test_concurrent_appends_never_lose_or_interleave(tmp_path):
    path = str(tmp_path / "l.sqlite")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_append, args=(path, i)) for i in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    lg = Ledger(path)
    assert len(lg.rows()) == 24 and lg.verify().ok


@pytest.mark.parametrize(
    ("sql", "needle"),
    [
        ("UPDATE ledger SET decision='quarantined' WHERE seq=2", "seq 2"),
        ("UPDATE ledger SET record_json='{\"i\": 99}' WHERE seq=3", "record_json was edited"),
        ("DELETE FROM ledger WHERE seq=3", "seq 4"),
        (
            "UPDATE ledger SET seq=100 WHERE seq=2; UPDATE ledger SET seq=2 WHERE seq=4; UPDATE ledger SET seq=4 WHERE seq=100",
            "seq 2",
        ),
    ],
    ids=["edit-field", "edit-record", "delete", "reorder"],
)
def test_tampering_is_named(tmp_path, sql, needle):
    lg = _fill(tmp_path / "l.sqlite")
    con = sqlite3.connect(lg.path)
    con.executescript(sql)
    con.commit()
    con.close()
    rep = lg.verify()
    assert not rep.ok
    assert any(needle in p for p in rep.problems), rep.problems


def test_truncation_detected_with_anchored_head(tmp_path):
    lg = _fill(tmp_path / "l.sqlite")
    anchored = lg.head()
    con = sqlite3.connect(lg.path)
    con.execute("DELETE FROM ledger WHERE seq=5")
    con.commit()
    con.close()
    assert lg.verify().ok  # a shorter chain is self-consistent ...
    rep = lg.verify(expect_head=anchored)  # ... but the anchor exposes it
    assert not rep.ok and "anchored head" in rep.problems[0]


def test_cli_ledger_verify_names_the_edited_row(tmp_path, capsys):
    import json as _json

    from gate.cli import main

    lg = _fill(tmp_path / "l.sqlite")
    assert main(["ledger", "verify", "--ledger", str(lg.path)]) == 0
    con = sqlite3.connect(lg.path)
    con.execute("UPDATE ledger SET output_path='/elsewhere.mp4' WHERE seq=4")
    con.commit()
    con.close()
    capsys.readouterr()
    assert main(["ledger", "verify", "--ledger", str(lg.path), "--json"]) == 1
    rep = _json.loads(capsys.readouterr().out)
    assert not rep["ok"] and any("seq 4" in p for p in rep["problems"])
    assert main(["ledger", "verify", "--ledger", str(tmp_path / "absent.sqlite")]) == 2
    assert not (tmp_path / "absent.sqlite").exists()


# --- opening never writes into a file the ledger did not create ------------------------------------------------------


def _sha(path) -> str:
    import hashlib

    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_opening_an_absent_ledger_is_a_usage_error_and_creates_nothing(tmp_path):
    with pytest.raises(UsageError, match="ledger file must exist"):
        Ledger(tmp_path / "sub" / "l.sqlite")
    assert not (tmp_path / "sub").exists()


def _foreign_sqlite(path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE ledger (id INTEGER PRIMARY KEY, amount REAL, memo TEXT)")
    con.execute("INSERT INTO ledger (amount, memo) VALUES (12.5, 'coffee')")
    con.commit()
    con.close()


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p: p.write_bytes(b""), "an empty file (0 bytes)"),
        (lambda p: p.write_text("not a database " * 100), "SQLite database"),
        (_foreign_sqlite, "a ledger table with columns id, amount, memo"),
        (lambda p: sqlite3.connect(p).execute("CREATE TABLE other (x)").connection.close(), "without a ledger table"),
    ],
    ids=["empty", "text", "other-app-ledger-table", "no-ledger-table"],
)
@pytest.mark.parametrize("create", [False, True])
def test_a_file_that_is_not_a_ledger_is_refused_untouched(tmp_path, make, needle, create):
    path = tmp_path / "l.sqlite"
    make(path)
    before = (_sha(path), sorted(p.name for p in tmp_path.iterdir()))
    with pytest.raises(InputError) as exc:
        Ledger(path, create=create)
    assert needle in str(exc.value) and str(path) in str(exc.value) and exc.value.exit_code == ExitCode.INPUT
    assert (_sha(path), sorted(p.name for p in tmp_path.iterdir())) == before


def test_a_directory_or_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, kind in ((tmp_path, "a directory"), (fifo, "a FIFO")):
        with pytest.raises(InputError, match=f"regular file .got {kind}"):
            Ledger(path, create=True)


def test_create_makes_a_complete_ledger_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "new" / "l.sqlite"
    lg = Ledger(path, create=True)
    rep = lg.verify()
    assert rep.ok and rep.rows == 0 and rep.head == GENESIS
    assert [p.name for p in path.parent.iterdir() if not p.name.startswith("l.sqlite")] == []
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    Ledger(path, create=True).append(**_ROW)  # create=True on an existing ledger opens it
    assert len(Ledger(path).rows()) == 1


_ROW = dict(
    run_id="r",
    created_at="2026-11-23T00:00:00Z",
    decision="released",
    output_path="/o.mp4",
    output_sha256="0" * 64,
    payload_hex="00" * 8,
    record_json="{}",
)


def test_cli_ledger_verify_of_an_empty_file_is_a_bad_input_and_writes_nothing(tmp_path, capsys):
    from gate.cli import main

    path = tmp_path / "l.sqlite"
    path.write_bytes(b"")
    capsys.readouterr()
    assert main(["ledger", "verify", "--ledger", str(path)]) == ExitCode.INPUT
    err = capsys.readouterr().err
    assert "0 bytes" in err and str(path) in err and "Traceback" not in err
    assert path.stat().st_size == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["l.sqlite"]


# --- a full disk ---------------------------------------------------------------------------------------------------


@pytest.fixture()
def tiny_fs(tmp_path):
    """A 160 KiB tmpfs mounted for this test (needs root / CAP_SYS_ADMIN; skipped otherwise)."""
    with mounted_tmpfs(tmp_path / "tiny", "size=160k") as mnt:
        yield mnt


def test_append_on_a_full_disk_is_an_output_error_and_the_chain_stays_intact(tiny_fs):
    lg = Ledger(tiny_fs / "l.sqlite", create=True)
    appended = 0
    with pytest.raises(OutputError) as exc:
        for i in range(1000):
            lg.append(**{**_ROW, "run_id": f"r{i}", "record_json": json.dumps({"pad": f"{i}" * 4000})})
            appended += 1
    assert exc.value.exit_code == ExitCode.IO and str(lg.path) in str(exc.value)
    assert "full" in str(exc.value)
    rep = Ledger(lg.path).verify()
    assert rep.ok and rep.rows == appended >= 1  # every committed row intact, no part of the failed one


# --- verifying part of the chain ---------------------------------------------------------------------------------


def _tamper(lg: Ledger, sql: str) -> None:
    con = sqlite3.connect(lg.path)
    con.executescript(sql)
    con.commit()
    con.close()


def test_verify_since_checks_from_that_row_to_the_head(tmp_path):
    lg = _fill(tmp_path / "l.sqlite", n=6)
    _tamper(lg, "UPDATE ledger SET decision='released' WHERE seq=3")  # run r2 was quarantined
    assert not lg.verify().ok
    rep = lg.verify(since_seq=4)  # rows 4..6 linked to row 3: the edit of row 3 lies before them
    assert rep.ok and rep.rows == 3 and rep.head == lg.head()
    rep = lg.verify(since_seq=3)
    assert not rep.ok and rep.problems[0].startswith("row seq 3 (run r2)")
    _tamper(lg, "DELETE FROM ledger WHERE seq=5")
    rep = lg.verify(since_seq=6)  # the row before 6 is now 4: the gap is seen from 6 on
    assert not rep.ok and any("expected seq 5" in p for p in rep.problems)


# --- ledger_lookup: the record `verify` reports comes from a chain that verifies ------------------------------------


def test_ledger_lookup_reports_the_row_of_an_intact_chain(tmp_path):
    lg = _fill(tmp_path / "l.sqlite")
    found = ledger_lookup(f"{3:016x}", lg.path)
    assert found is not None and found["run_id"] == "r3" and found["decision"] == "released"
    assert ledger_lookup("ff" * 8, lg.path) is None
    assert ledger_lookup("ff" * 8, tmp_path / "absent.sqlite") is None
    assert not (tmp_path / "absent.sqlite").exists()


@pytest.mark.parametrize("whole_chain_rows", [1000, 2], ids=["whole-chain", "from-the-row"])
def test_ledger_lookup_refuses_a_row_edited_to_released(tmp_path, monkeypatch, whole_chain_rows):
    import gate.verify_view

    monkeypatch.setattr(gate.verify_view, "WHOLE_CHAIN_ROWS", whole_chain_rows)
    lg = _fill(tmp_path / "l.sqlite")
    _tamper(lg, "UPDATE ledger SET decision='released' WHERE seq=3")  # run r2 was quarantined
    with pytest.raises(ProvenanceError) as exc:
        ledger_lookup(f"{2:016x}", lg.path)
    msg = exc.value.one_line()
    assert exc.value.exit_code == ExitCode.PROVENANCE
    assert str(lg.path) in msg and "row seq 3 (run r2)" in msg and "chain" in msg


def test_ledger_lookup_refuses_a_broken_chain_before_the_row_when_it_is_small(tmp_path):
    lg = _fill(tmp_path / "l.sqlite")
    _tamper(lg, "UPDATE ledger SET output_path='/x.mp4' WHERE seq=1")
    with pytest.raises(ProvenanceError, match=r"row seq 1 \(run r0\)"):
        ledger_lookup(f"{4:016x}", lg.path)


@pytest.mark.parametrize("whole_chain_rows", [1000, 1], ids=["whole-chain", "from-the-row"])
def test_ledger_lookup_after_retention_finds_the_kept_runs_and_not_the_removed(tmp_path, monkeypatch, whole_chain_rows):
    """_fill dates r0..r4 2026-11-23T00:00:00Z..04Z; a plan whose cutoff is r3's time removes r0..r2 (rows 1-3). The
    lookup of a kept run verifies the shorter chain (whole, or from its row); a removed run is simply not found."""
    from datetime import UTC, datetime, timedelta

    import gate.verify_view
    from gate.retention import apply, plan

    monkeypatch.setattr(gate.verify_view, "WHOLE_CHAIN_ROWS", whole_chain_rows)
    lg = _fill(tmp_path / "l.sqlite")  # r0..r4 at 2026-11-23T00:00:00..04Z
    now = datetime(2026, 11, 23, 0, 0, 3, tzinfo=UTC) + timedelta(days=183)  # cutoff = r3's time: r0..r2 are older
    result = apply(plan(lg.db, None, 183, now=now), "dpo")
    assert result.removed_rows == 3 and [r.seq for r in lg.rows()] == [4, 5, 6]
    found = ledger_lookup(f"{3:016x}", lg.path)
    assert found is not None and found["run_id"] == "r3" and found["seq"] == 4
    assert ledger_lookup(f"{1:016x}", lg.path) is None  # r1's row is gone: a lookup finds nothing, and says nothing
