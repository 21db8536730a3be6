"""The model-comparison report: fake models with known differences give the right winner, CI and counts."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from metrics.stats import bootstrap_ci
from reports.compare import build_comparison, load_runs, write_comparison
from reports.errors import InputError, UsageError
from reports.json_report import write_json
from reports.schema import GateRecord
from reports.templating import fmt_num

N = 6  # videos per fake model


def _write_model(root, make_record, model, shift, *, unmeasured=(), n=N, edit=None):
    """N records of one fake model under root/model/<run_id>/record.json; returns the directory."""
    folder = root / model
    for seed in range(n):
        record = make_record("unmeasured" if seed in unmeasured else "released", seed=seed, model=model, shift=shift)
        if edit is not None:
            record = GateRecord.model_validate(edit(record.model_dump()))
        write_json(record, folder / record.run_id / "record.json")
    return folder


@pytest.fixture(scope="module")
def runs(make_record, tmp_path_factory):
    """'hallo3' is clearly better than 'still' (Sync-C +1, identity +0.1, FVD -40); 'near' is 'still' + 0.02."""
    root = tmp_path_factory.mktemp("runs")
    return {
        "hallo3": _write_model(root, make_record, "hallo3", 1.0),
        "still": _write_model(root, make_record, "still", 0.0, unmeasured={2}),
        "near": _write_model(root, make_record, "near", 0.02),
    }


@pytest.fixture(scope="module")
def clear(runs):
    return build_comparison(load_runs([runs["hallo3"], runs["still"]]))


def _values_from_files(folder, metric):
    values = []
    for path in sorted(folder.rglob("record.json")):
        m = next(x for x in json.loads(path.read_text())["measurements"] if x["name"] == metric)
        if m["value"] is not None:
            values.append(m["value"])
    return np.array(values)


def test_runs_in_staging_are_not_outputs(tmp_path, make_record):
    released, staged = make_record(seed=1), make_record(seed=2)
    write_json(released, tmp_path / "released" / released.run_id / "record.json")
    write_json(staged, tmp_path / "staging" / staged.run_id / "record.json")
    assert set(load_runs([tmp_path])["run_id"]) == {released.run_id}


def test_load_runs_reads_every_record_labelled_by_model(runs):
    df = load_runs([runs["hallo3"], runs["still"]])
    assert list(df["model"].cat.categories) == ["hallo3-tiny", "still-tiny"]
    assert df.drop_duplicates("record_path").groupby("model", observed=True).size().tolist() == [N, N]
    not_measured = df[~df["measured"]]
    assert set(not_measured["metric"]) == {"identity_mean", "identity_min"}
    assert not_measured["reason"].str.contains("missing").all()


def test_clear_winner_with_the_bootstrap_ci_of_the_recorded_values(clear, runs):
    sync_c = clear.metric("sync_c")
    assert (sync_c.winner, sync_c.runner_up, sync_c.cis_overlap) == ("hallo3-tiny", "still-tiny", False)
    for label, model in (("hallo3-tiny", "hallo3"), ("still-tiny", "still")):
        expected = bootstrap_ci(_values_from_files(runs[model], "sync_c"), n_boot=clear.n_boot, seed=clear.seed)
        row = sync_c.table.loc[label]
        assert row["n"] == N and row["not_measured"] == 0
        assert row["mean"] == pytest.approx(expected.estimate)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((expected.low, expected.high))
        assert row["ci_low"] < row["mean"] < row["ci_high"]
    assert sync_c.table.loc["hallo3-tiny", "mean"] - sync_c.table.loc["still-tiny", "mean"] == pytest.approx(1.0)
    # lower is better for Sync-D: the lower mean wins
    sync_d = clear.metric("sync_d")
    assert sync_d.higher_is_better is False and sync_d.winner == "hallo3-tiny"
    assert sync_d.table.loc["hallo3-tiny", "mean"] < sync_d.table.loc["still-tiny", "mean"]


def test_unmeasured_videos_are_counted_and_excluded(clear):
    identity = clear.metric("identity_mean")
    assert identity.table.loc["still-tiny", ["n", "not_measured"]].tolist() == [N - 1, 1]
    assert clear.decisions.loc["still-tiny", ["released", "quarantined"]].tolist() == [N - 1, 1]
    assert "identity_mean: 1 of still-tiny" in clear.summary


def test_metric_without_direction_is_never_won(clear):
    fps = clear.metric("fps")
    assert fps.higher_is_better is None and fps.winner is None
    assert [m.metric for m in clear.metrics][-1] == "fps"  # descriptive metrics come after the rankable ones


def test_set_level_fvd_per_model(clear):
    (fvd,) = clear.set_metrics
    assert fvd.metric == "fvd" and fvd.higher_is_better is False
    assert fvd.table.loc["hallo3-tiny", "value"] == pytest.approx(372.0)
    assert fvd.table.loc["still-tiny", "value"] == pytest.approx(412.0)
    assert fvd.winner == "hallo3-tiny"
    assert "fvd" not in [m.metric for m in clear.metrics]


def test_summary_names_the_winner_and_flags_overlapping_cis(clear, runs):
    table = clear.metric("sync_c").table
    means = [fmt_num(table.loc[m, "mean"]) for m in ("hallo3-tiny", "still-tiny")]
    assert "hallo3-tiny is better on" in clear.summary
    assert f"sync_c ({means[0]} vs {means[1]}, higher is better)" in clear.summary
    close = build_comparison(load_runs([runs["near"], runs["still"]]))
    sync_c = close.metric("sync_c")
    assert sync_c.winner == "near-tiny" and sync_c.cis_overlap is True
    assert "overlap" in sync_c.note
    assert "sync_c (near-tiny ahead of still-tiny)" in close.summary
    assert "not established" in close.summary


def test_different_protocols_are_not_ranked(make_record, tmp_path, runs):
    def other_protocol(data):
        for m in data["measurements"]:
            if m["name"] == "sync_c":
                m["protocol"] = "LatentSync SyncNet, 16-frame crops"
        return data

    other = _write_model(tmp_path, make_record, "other", 3.0, edit=other_protocol)
    cmp = build_comparison(load_runs([runs["still"], other]))
    sync_c = cmp.metric("sync_c")
    assert sync_c.winner is None and "different protocols" in sync_c.note
    assert len(sync_c.protocols) == 2


def test_write_comparison_outputs(clear, tmp_path, external_references):
    paths = write_comparison(clear, tmp_path)
    per_video = pd.read_csv(paths["per_video_csv"])
    assert len(per_video) == 2 * N
    assert {"model", "run_id", "decision", "sync_c", "identity_mean", "fvd"} <= set(per_video.columns)
    assert per_video["identity_mean"].isna().sum() == 1
    parquet = pd.read_parquet(paths["per_video_parquet"])
    assert parquet["run_id"].tolist() == per_video["run_id"].tolist()
    np.testing.assert_allclose(parquet["sync_c"], per_video["sync_c"])
    assert len(pd.read_parquet(paths["measurements_parquet"])) == len(clear.rows)
    metrics_csv = pd.read_csv(paths["metrics_csv"])
    assert metrics_csv.loc[metrics_csv["winner"], "metric"].tolist().count("sync_c") == 1
    html = paths["html"].read_text()
    assert external_references(html) == []
    assert "hallo3-tiny vs still-tiny" in html and clear.summary.split(".")[0] in html
    # one per-video distribution per ranked metric that varies (the bar charts of means repeated the tables)
    assert html.count("<img ") == 4
    assert paths["pdf"].read_bytes().startswith(b"%PDF-")
    # compare is the report half of evaluate: the same executive report over the runs, one results row per video
    results = pd.read_parquet(paths["results_parquet"])
    assert len(results) == 2 * N and set(results["model"]) == {"hallo3-tiny", "still-tiny"}
    assert results.loc[results["model"] == "still-tiny", "mnm_identity_mean"].notna().sum() == 1
    summary = json.loads(paths["summary_json"].read_text())
    assert summary["models"]["hallo3-tiny"]["metrics"]["sync_c"]["mean"] == pytest.approx(
        clear.metric("sync_c").table.loc["hallo3-tiny", "mean"]
    )
    report = paths["report_html"].read_text()
    assert 'id="scorecard"' in report and report.count('<tr id="score-') == 2
    assert paths["report_pdf"].read_bytes().startswith(b"%PDF-")
    assert paths["report_markdown"].read_text().startswith("## hallo3-gate evaluation: comparison")


@pytest.mark.parametrize("problem", ["empty", "mixed", "duplicate", "invalid"])
def test_bad_run_directories_are_input_errors(problem, tmp_path, runs, make_record):
    if problem == "empty":
        (tmp_path / "empty").mkdir()
        dirs, match = [tmp_path / "empty"], "must contain audit records"
    elif problem == "mixed":
        mixed = tmp_path / "mixed"
        for model in ("a", "b"):
            record = make_record(seed=0, model=model)
            write_json(record, mixed / record.run_id / "record.json")
        dirs, match = [mixed], "one model/backend"
    elif problem == "duplicate":
        dirs, match = [runs["still"], runs["still"]], "already loaded"
    else:
        bad = tmp_path / "bad" / "x"
        bad.mkdir(parents=True)
        (bad / "record.json").write_text('{"decision": "released"}')
        dirs, match = [bad.parent], "valid hallo3-gate audit record"
    with pytest.raises(InputError, match=match):
        load_runs(dirs)


def test_labels_are_arguments_one_distinct_per_directory(runs):
    dirs = [runs["hallo3"], runs["still"]]
    for labels, rule in (
        (["a", "b", "c"], "once per run directory (2)"),
        (["a", "a"], "distinct"),
        (["a", " "], "blank"),
    ):
        with pytest.raises(UsageError, match=re.escape(rule)):
            load_runs(dirs, labels=labels)
    assert list(load_runs(dirs, labels=["A", "B"])["model"].cat.categories) == ["A", "B"]


def test_out_must_be_a_directory_and_is_left_untouched(clear, tmp_path):
    target = tmp_path / "comparison"
    target.write_text("mine")
    with pytest.raises(UsageError, match="must be a directory"):
        write_comparison(clear, target, pdf=False)
    assert target.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["comparison"]
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(UsageError, match="must be a directory"):
        write_comparison(clear, link, pdf=False)
    assert not (tmp_path / "nowhere").exists()
