"""The executive evaluation report, checked the way a person reads it.

Inputs are a realistic results table (one row per (model, case), the columns ``gate.evaluate`` writes) and summary,
built here independently of the code under test: means and intervals with ``metrics.stats.bootstrap_ci``, release
intervals from published Wilson values. Each case has a real audit record (with keyframes) and a run report on disk.
The PDF's pages are rendered to PNG with pdftoppm and its first page's text read with pdftotext; the HTML is opened
in Debian's Chromium (marked ``browser``). Rendered pages and screenshots go to ``$HALLO3_GATE_TEST_ARTIFACTS``
(else the test's tmp dir) and are named in the output.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metrics.specs import HEADLINE, SPECS
from metrics.stats import bootstrap_ci
from reports.errors import InputError
from reports.evaluation import (
    Estimate,
    build_scorecard,
    cases_needed,
    distribution_plots,
    rate_cases_needed,
    render_evaluation,
    wilson_interval,
)
from reports.json_report import write_json
from reports.plots import distribution_figure, overlapping_tick_labels

N_CASES = 6
# Wilson 95 % score intervals of k successes in 6 trials (published tables; z = 1.959964)
WILSON_6 = {6: (0.6097, 1.0), 5: (0.4365, 0.9699), 3: (0.1876, 0.8124), 0: (0.0, 0.3903)}
STAGES = ("generate", "watermark", "encode", "measure", "sign")
PDFTOPPM = shutil.which("pdftoppm")
PDFTOTEXT = shutil.which("pdftotext")


def artifacts_dir(tmp_path: Path) -> Path:
    target = Path(os.environ.get("HALLO3_GATE_TEST_ARTIFACTS") or tmp_path / "artifacts")
    target.mkdir(parents=True, exist_ok=True)
    return target


# --- a realistic evaluation ---------------------------------------------------------------------------------------

MODELS = {
    # name: (backend, description, Sync-C centre, identity centre, released of 6, FVD)
    "puppet": ("puppet", "positive control: the portrait's mouth moved by the audio envelope", 7.4, 0.86, 6, 310.0),
    "still": ("still", "negative control: the portrait, unmoving", 1.6, 0.93, 3, 512.0),
    "hallo3-tiny": ("hallo3-tiny", "Hallo3 at 4 sampling steps, 64 px", 3.1, 0.71, 5, 455.0),
}


def _rows(make_record, root: Path, models: dict, *, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for name, (backend, _, sync_c, identity, released, fvd) in models.items():
        for i in range(N_CASES):
            ok = i < released
            record = make_record("released" if ok else "failed", seed=i, model=backend)
            run_dir = root / "runs" / name / record.run_id
            write_json(record, run_dir / "record.json")
            (run_dir / "report.html").write_text("<!DOCTYPE html><title>run</title>")
            timings = {f"seconds_{s}": float(rng.uniform(0.2, 3.0)) for s in STAGES}
            total = sum(timings.values())
            row = {
                "suite": "demo",
                "model": name,
                "case": f"c{i + 1}",
                "run_id": record.run_id,
                "decision": "released" if ok else "quarantined",
                "exit_code": 0 if ok else 1,
                "reasons": json.dumps([] if ok else ["sync_c 1.7 < 3.0 (sync_min)"]),
                "record_path": str(run_dir.relative_to(root) / "record.json"),
                "video_path": str(run_dir / "video.mp4"),
                "report_path": str(run_dir.relative_to(root) / "report.html"),
                "backend": backend,
                "seconds_total": total,
                **timings,
                "video_seconds": 5.0,
                "compute_per_video_second": total / 5.0,
                "provenance_ok": not (name == "hallo3-tiny" and i == 0),
                "consent_ok": True,
                "not_measured": 1 if name == "still" and i == 2 else 0,
            }
            for metric in SPECS:
                row[f"m_{metric}"] = None
                row[f"mnm_{metric}"] = None
            row["m_sync_c"] = float(sync_c + rng.normal(0, 0.5))
            row["m_sync_d"] = float(14.5 - sync_c + rng.normal(0, 0.4))
            row["m_avsync_corr"] = float(np.clip(sync_c / 10 + rng.normal(0, 0.05), -1, 1))
            if name == "still" and i == 2:
                row["mnm_identity_mean"] = "no face found in 100 % of frames"
            else:
                row["m_identity_mean"] = float(identity + rng.normal(0, 0.02))
            row["m_fps"] = 25.0
            row["m_audio_present"] = 1.0  # constant: no plot
            row["m_fvd"] = fvd
            rows.append(row)
    return rows


def _summary(results: pd.DataFrame, models: dict) -> dict:
    out = {}
    for name, (*_, released, fvd) in models.items():
        rows = results[results["model"] == name]
        metrics = {}
        for metric in ("sync_c", "sync_d", "identity_mean", "avsync_corr"):
            values = rows[f"m_{metric}"].dropna().to_numpy(dtype=np.float64)
            ci = bootstrap_ci(values, n_boot=2000, seed=0)
            metrics[metric] = {
                "mean": ci.estimate,
                "ci": [ci.low, ci.high],
                "n": int(values.size),
                "not_measured": int(rows[f"mnm_{metric}"].notna().sum()),
            }
        out[name] = {
            "cases": N_CASES,
            "released": released,
            "release_rate": released / N_CASES,
            "release_ci": list(WILSON_6[released]),
            "metrics": metrics,
            "fvd": {"value": fvd, "n": 96},
            "seconds_per_video_second": float(rows["seconds_total"].sum() / rows["video_seconds"].sum()),
        }
    return {"suite": "demo", "created_at": "2026-12-02T12:00:00+00:00", "models": out, "regression": None}


@pytest.fixture(scope="module")
def evaluation(make_record, tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluation")
    results = pd.DataFrame(_rows(make_record, root, MODELS))
    return root, results, _summary(results, MODELS)


@pytest.fixture(scope="module")
def rendered(evaluation):
    root, results, summary = evaluation
    descriptions = {name: spec[1] for name, spec in MODELS.items()}
    return render_evaluation(results, summary, out_dir=root, descriptions=descriptions)


# --- statistics ---------------------------------------------------------------------------------------------------


def test_wilson_interval_matches_published_values():
    for k, (low, high) in WILSON_6.items():
        assert wilson_interval(k, N_CASES) == pytest.approx((low, high), abs=1e-4)
    assert wilson_interval(3, 3) == pytest.approx((0.4385, 1.0), abs=1e-4)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError, match="successes <= n"):
        wilson_interval(4, 3)


def test_cases_needed_is_n_times_twice_the_half_width_over_the_difference_squared():
    a, b = Estimate(1.0, 0.5, 1.5, 4), Estimate(1.4, 0.9, 1.9, 4)
    assert cases_needed(a, b) == 25  # 4 · (2 · 0.5 / 0.4)² = 25 (0.4 is 0.3999… in binary: no 26)
    wide = Estimate(1.5, 0.5, 2.5, 4)  # the wider half-width (1.0) counts: 4 · (2 · 1.0 / 0.5)² = 64
    assert cases_needed(a, wide) == 64
    assert cases_needed(a, Estimate(1.0, 0.4, 1.6, 4)) is None  # no difference: no number
    assert cases_needed(a, Estimate(1.4, math.nan, math.nan, 1)) is None  # no interval: no number


def test_rate_cases_needed_is_where_the_wilson_intervals_of_the_observed_rates_separate():
    # 3/3 vs 0/3: [0.4385, 1] and [0, 0.5615] overlap; 4/4 vs 0/4: [0.5101, 1] and [0, 0.4899] do not
    all_, none = Estimate(1.0, 0.3424, 1.0, 2, min_n=1), Estimate(0.0, 0.0, 0.6576, 2, min_n=1)
    assert rate_cases_needed(all_, none) == 4
    assert rate_cases_needed(all_, all_) is None
    assert (
        rate_cases_needed(Estimate(0.5, 0.2, 0.8, 6, min_n=1), Estimate(0.52, 0.2, 0.8, 6, min_n=1), limit=50) is None
    )


# --- the scorecard and the verdict --------------------------------------------------------------------------------


def test_scorecard_names_the_winner_only_where_intervals_separate(evaluation):
    _, results, summary = evaluation
    card = build_scorecard(results, summary)
    assert [c.name for c in card.models] == list(MODELS)
    assert [h.name for h in card.headline] == list(HEADLINE)  # fvd is measured, so all five show
    puppet = card.card("puppet")
    assert {"sync_c", "sync_d", "avsync_corr"} <= puppet.ahead
    assert "identity_mean" not in puppet.ahead and "identity_mean" in card.card("still").ahead
    # puppet leads Sync-C but is behind still on identity (separated): a trade-off, so no single winner
    assert card.verdict.winner is None
    assert card.verdict.text == (
        "No single winner: the leader is puppet on Sync-C, Sync-D and AV-sync and still on Identity, each with its "
        "95 % interval clear of every other model's; on release rate and FVD no model is clear of the others."
    )
    assert puppet.release.mean == 1.0 and (puppet.release.low, puppet.release.high) == WILSON_6[6]
    assert card.card("hallo3-tiny").flags() == [("fail", "1 provenance failure")]
    assert card.card("still").flags() == [("warn", "1 not measured")]


def test_a_model_ahead_on_something_and_behind_on_nothing_wins(make_record, tmp_path):
    models = {k: v for k, v in MODELS.items() if k != "still"}
    results = pd.DataFrame(_rows(make_record, tmp_path, models))
    card = build_scorecard(results, _summary(results, models))
    assert card.verdict.winner == "puppet"
    assert card.verdict.text.startswith("puppet is the better model: ahead of hallo3-tiny on Sync-C")
    assert card.verdict.text.endswith(
        "with non-overlapping 95 % intervals, and behind on nothing (6 cases per model; few cases, so provisional)."
    )


def test_a_winner_over_several_models_names_what_it_won_against_each(make_record, tmp_path):
    models = {
        "puppet": ("puppet", "", 7.4, 0.95, 6, 310.0),
        "still": ("still", "", 1.6, 0.93, 3, 512.0),
        "hallo3-tiny": ("hallo3-tiny", "", 3.1, 0.71, 5, 455.0),
    }
    results = pd.DataFrame(_rows(make_record, tmp_path, models))
    summary = _summary(results, models)
    summary["models"]["puppet"]["fvd"]["ci"] = [290.0, 330.0]  # a bootstrap interval over the videos, when given
    summary["models"]["still"]["fvd"]["ci"] = [480.0, 540.0]
    card = build_scorecard(results, summary)
    assert card.verdict.winner == "puppet"
    assert card.verdict.text.startswith("puppet is the better model: ahead of every other model (Sync-C, Sync-D")
    assert "FVD vs still" in card.verdict.text  # the FVD intervals separate from still's (hallo3-tiny has none)
    assert "fvd" not in card.card("puppet").ahead  # not clear of hallo3-tiny, which has no FVD interval


def test_indistinguishable_models_say_how_many_cases_would_separate_them(make_record, tmp_path):
    near = {"a": ("puppet", "", 5.0, 0.80, 6, 400.0), "b": ("puppet", "", 5.2, 0.81, 6, 400.0)}
    results = pd.DataFrame(_rows(make_record, tmp_path, near, seed=3))
    summary = _summary(results, near)
    card = build_scorecard(results, summary)
    assert card.verdict.winner is None and not any(c.ahead for c in card.models)
    assert card.verdict.text.startswith("The suite cannot tell a and b apart: no two models' 95 % intervals separate;")
    # the closest call, recomputed by hand from the summary: min over metrics of ceil(n · (2h/d)²)
    needs = []
    for metric in ("sync_c", "sync_d", "identity_mean", "avsync_corr"):
        ea, eb = (summary["models"][m]["metrics"][metric] for m in ("a", "b"))
        d = abs(ea["mean"] - eb["mean"])
        h = max((e["ci"][1] - e["ci"][0]) / 2 for e in (ea, eb))
        needs.append(max(N_CASES + 1, math.ceil(N_CASES * (2 * h / d) ** 2)))
    assert card.verdict.cases_needed == min(needs)
    more = min(needs) - N_CASES
    assert f"about {more} more case{'s' if more != 1 else ''} per model ({min(needs)} each)" in card.verdict.text


def test_one_case_per_model_has_no_interval_and_no_winner(make_record, tmp_path):
    results = pd.DataFrame(_rows(make_record, tmp_path, MODELS)).groupby("model").head(1)
    summary = {
        "suite": "one",
        "models": {
            name: {
                "cases": 1,
                "released": 1,
                "release_rate": 1.0,
                "release_ci": [0.2065, 1.0],
                "metrics": {"sync_c": {"mean": 5.0 + i, "ci": None, "n": 1, "not_measured": 0}},
                "fvd": None,
                "seconds_per_video_second": 2.0,
            }
            for i, name in enumerate(MODELS)
        },
    }
    card = build_scorecard(results, summary)
    assert card.verdict.winner is None
    assert "fewer than 3 cases per model there is no interval" in card.verdict.text
    assert [h.name for h in card.headline] == ["sync_c"]


@pytest.mark.parametrize(
    ("edit", "rule"),
    [
        (lambda s: s["models"].pop("still"), "must name the models of results.parquet"),
        (lambda s: s["models"]["puppet"].update(release_ci=[0.9, 0.1]), "release_ci must have low <= high"),
        (lambda s: s["models"]["puppet"]["metrics"]["sync_c"].update(mean="7"), "sync_c.mean must be a finite"),
        (lambda s: s["models"]["puppet"].update(metrics=[]), "models.puppet.metrics must be an object"),
    ],
)
def test_a_malformed_summary_is_an_input_error_naming_the_field(evaluation, edit, rule):
    _, results, summary = evaluation
    bad = json.loads(json.dumps(summary))
    edit(bad)
    with pytest.raises(InputError, match=rule.replace("(", r"\(").replace(")", r"\)")):
        build_scorecard(results, bad)


# --- plots --------------------------------------------------------------------------------------------------------


def test_one_plot_per_varying_headline_metric_and_the_others_say_why_not(evaluation):
    _, results, summary = evaluation
    card = build_scorecard(results, summary)
    plots, skipped = distribution_plots(results, card)
    assert [p.key for p in plots] == ["sync_c", "sync_d", "identity_mean", "avsync_corr"]
    assert {k.metric: k.reason for k in skipped} == {"fvd": pytest.approx(skipped[0].reason)}
    constant = results.assign(m_avsync_corr=0.5, m_identity_mean=None)
    plots, skipped = distribution_plots(constant, card)
    assert [p.key for p in plots] == ["sync_c", "sync_d"]
    reasons = {k.metric: k.reason for k in skipped}
    assert reasons["avsync_corr"] == "the same value (0.5) in every case"
    assert reasons["identity_mean"] == "not measured for any case"


@pytest.mark.parametrize("n_models", [2, 3, 8])
def test_no_two_tick_labels_overlap(n_models):
    rng = np.random.default_rng(n_models)
    labels = [f"hallo3-checkpoint-{i:02d}-long-n…" if i % 2 else f"m{i}" for i in range(n_models)]
    samples = [rng.normal(1000 + 50 * i, 300, 12) for i in range(n_models)]
    samples[-1] = np.array([])  # a model without values keeps its row
    fig = distribution_figure("FVD-like spread per case", labels, samples, higher_is_better=False, unit="score")
    assert overlapping_tick_labels(fig) == []
    # the check can fail: crowded x tick labels on a narrow figure do overlap
    crowded = distribution_figure("x", ["a"], [[1.0, 2.0]], higher_is_better=True, width=0.9)
    crowded.axes[0].set_xticks(np.linspace(1.0, 2.0, 12), [f"{v:.5f}" for v in np.linspace(1.0, 2.0, 12)])
    assert overlapping_tick_labels(crowded)


def test_no_report_plot_has_overlapping_tick_labels(evaluation):
    from reports import evaluation as ev

    _, results, summary = evaluation
    card = build_scorecard(results, summary)
    figures = []
    real = ev.figure_to_data_uri

    def keep(fig):
        figures.append(fig)
        return real(fig)

    ev.figure_to_data_uri = keep
    try:
        distribution_plots(results, card)
    finally:
        ev.figure_to_data_uri = real
    assert len(figures) == 4
    assert all(overlapping_tick_labels(f) == [] for f in figures)


# --- the rendered report ------------------------------------------------------------------------------------------


def test_render_writes_html_pdf_and_markdown(rendered, evaluation, external_references):
    root, _, _ = evaluation
    assert set(rendered) == {"html", "pdf", "markdown"}
    assert {p.parent for p in rendered.values()} == {root}
    html = rendered["html"].read_text()
    links = [r for r in external_references(html) if r.startswith("runs/") and r.endswith("/report.html")]
    assert external_references(html) == links and len(links) == 3 * 3  # only the worst cases' run reports
    assert html.count('<figure id="plot-') == 4
    assert html.count('class="worst"') == 3 * 3
    # relative links to the run reports, and keyframes from the records
    assert 'href="runs/still/' in html and "/report.html" in html
    assert html.count("data:image/jpeg;base64,") >= 9
    md = rendered["markdown"].read_text()
    assert md.startswith("## hallo3-gate evaluation: demo\n")
    assert md.count("\n| ") == 1 + len(MODELS)
    assert "- puppet: positive control" in md


@pytest.mark.skipif(PDFTOTEXT is None or PDFTOPPM is None, reason="poppler-utils (pdftotext, pdftoppm) not installed")
def test_pdf_page_one_holds_the_scorecard_of_every_model(rendered, tmp_path):
    text = subprocess.run(
        [PDFTOTEXT, "-f", "1", "-l", "1", "-layout", str(rendered["pdf"]), "-"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    lines = text.splitlines()
    for name, (*_, released, fvd) in MODELS.items():
        row = next((line for line in lines if line.strip().startswith(name + " ")), None)
        assert row is not None, f"no scorecard row for {name} on page 1:\n{text}"
        assert f"{released / N_CASES:.0%}".replace("%", " %") in row and f"{fvd:.0f}" in row
        assert f"{released} of {N_CASES}" in text
    for header in ("released", "Sync-C", "Sync-D", "Identity", "FVD", "AV-sync", "risk flags"):
        assert header in text
    assert "No single winner" in text
    out = artifacts_dir(tmp_path)
    subprocess.run([PDFTOPPM, "-r", "70", "-png", str(rendered["pdf"]), str(out / "evaluation-page")], check=True)
    pages = sorted(out.glob("evaluation-page-*.png"))
    assert len(pages) >= 2
    print("rendered PDF pages:", *pages, sep="\n  ")


def test_hostile_names_stay_text(make_record, tmp_path):
    evil = "<script>alert(1)</script>|*x*$x_1$"
    models = {evil: MODELS["puppet"], "still": MODELS["still"]}
    results = pd.DataFrame(_rows(make_record, tmp_path, models))
    paths = render_evaluation(results, _summary(results, models), out_dir=tmp_path, pdf=False)
    html = paths["html"].read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    md = paths["markdown"].read_text()
    assert "<script>" not in md and r"&lt;script&gt;alert(1)&lt;/script&gt;\|\*x\*\$x_1\$" in md


@pytest.mark.browser
def test_html_in_chromium_shows_the_scorecard_first(rendered, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("/usr/bin/chromium not installed")
    out = artifacts_dir(tmp_path)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(rendered["html"].as_uri())
        rows = page.locator("#scorecard tbody tr")
        assert rows.count() == len(MODELS)
        for i in range(len(MODELS)):
            box = rows.nth(i).bounding_box()
            assert box is not None and box["y"] + box["height"] <= 900, "scorecard row below the first screen"
        assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
        page.set_viewport_size({"width": 900, "height": 900})  # a laptop window: the scorecard still fits
        assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
        page.screenshot(path=str(out / "evaluation-900px.png"))
        page.set_viewport_size({"width": 1280, "height": 900})
        images = page.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
        assert images and all(images)
        page.screenshot(path=str(out / "evaluation-first-screen.png"))
        page.screenshot(path=str(out / "evaluation-full.png"), full_page=True)
        browser.close()
    print("screenshots:", out / "evaluation-first-screen.png", out / "evaluation-full.png")


def test_the_baseline_comparison_shows_on_page_one(evaluation, tmp_path):
    _, results, summary = evaluation
    with_baseline = json.loads(json.dumps(summary))
    with_baseline["regression"] = {
        "baseline": "runs/prod/summary.json",
        "baseline_suite": "demo",
        "regressed": True,
        "models": {
            "hallo3-tiny": {
                "baseline_model": "hallo3",
                "metrics": {
                    "sync_c": {
                        "candidate": 3.26,
                        "candidate_ci": [2.97, 3.57],
                        "baseline": 6.1,
                        "baseline_ci": [5.8, 6.4],
                        "allowed": 0.3,
                        "higher_is_better": True,
                        "outcome": "regressed",
                        "worse_by": 2.84,
                        "message": "sync_c 3.26 vs baseline 6.1: worse by 2.84 (allowed 0.3)",
                    },
                    "identity_mean": {
                        "candidate": 0.709,
                        "candidate_ci": [0.698, 0.721],
                        "baseline": None,
                        "baseline_ci": None,
                        "allowed": 0.02,
                        "higher_is_better": True,
                        "outcome": "not_compared",
                        "worse_by": None,
                        "message": "identity_mean: not measured on the baseline",
                    },
                },
            }
        },
    }
    card = build_scorecard(results, with_baseline)
    assert card.regression is not None and card.regression.regressed
    assert [(r.metric, r.outcome) for r in card.regression.rows] == [
        ("sync_c", "regressed"),
        ("identity_mean", "not_compared"),
    ]
    paths = render_evaluation(results, with_baseline, out_dir=tmp_path, pdf=False)
    html = paths["html"].read_text()
    assert html.index('id="regression"') < html.index('id="plots"')
    assert ">REGRESSION</span>" in html and "not compared" in html and "vs hallo3" in html
    with_baseline["regression"]["regressed"] = "yes"
    with pytest.raises(InputError, match=r"regression\.regressed must be true or false"):
        build_scorecard(results, with_baseline)


def test_a_worst_case_without_its_record_says_so(evaluation, tmp_path):
    _, results, summary = evaluation
    moved = results.assign(record_path=str(tmp_path / "gone" / "record.json"))
    html = render_evaluation(moved, summary, out_dir=tmp_path, pdf=False)["html"].read_text()
    assert html.count("record not found: ") == 3 * 3


def test_two_cases_per_model_give_no_interval_that_could_separate(evaluation):
    _, results, summary = evaluation
    two = results.groupby("model").head(2)
    small = json.loads(json.dumps(summary))
    for name, entry in small["models"].items():
        entry.update(cases=2, released=2, release_rate=1.0, release_ci=[0.3424, 1.0])
        for metric, m in entry["metrics"].items():
            values = two.loc[two["model"] == name, f"m_{metric}"].dropna().to_numpy(dtype=np.float64)
            ci = bootstrap_ci(values, n_boot=2000, seed=0)  # two values: the interval is about their range
            m.update(mean=ci.estimate, ci=[ci.low, ci.high], n=2, not_measured=0)
    card = build_scorecard(two, small)
    assert not any(c.ahead for c in card.models) and card.verdict.winner is None
    assert "fewer than 3 cases per model there is no interval" in card.verdict.text


def test_headline_metrics_nobody_measured_are_named_under_the_scorecard(evaluation, tmp_path):
    _, results, summary = evaluation
    no_sync = json.loads(json.dumps(summary))
    for entry in no_sync["models"].values():
        entry["metrics"].pop("sync_c")
        entry["metrics"].pop("sync_d")
    card = build_scorecard(results.assign(m_sync_c=None, m_sync_d=None), no_sync)
    assert [s.name for s in card.unmeasured] == ["sync_c", "sync_d"]
    html = render_evaluation(results, no_sync, out_dir=tmp_path, pdf=False)["html"].read_text()
    assert "Not on the scorecard (no model has a value): Sync-C, Sync-D." in html


def test_render_an_evaluation_directory_and_append_the_step_summary(evaluation, tmp_path):
    from reports.evaluation import append_step_summary, render_evaluation_dir

    _, results, summary = evaluation
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"results\.parquet: must be the results table of an evaluation"):
        render_evaluation_dir(out)
    out.mkdir()
    results.to_parquet(out / "results.parquet", index=False)
    (out / "summary.json").write_text("{not json")
    with pytest.raises(InputError, match=r"summary\.json: must be the summary of an evaluation"):
        render_evaluation_dir(out)
    assert sorted(p.name for p in out.iterdir()) == ["results.parquet", "summary.json"]  # nothing half-written
    (out / "summary.json").write_text(json.dumps(summary))
    paths = render_evaluation_dir(out, pdf=False)
    assert set(paths) == {"html", "markdown"}
    step = tmp_path / "step.md"
    step.write_text("earlier step\n")
    assert append_step_summary(paths["markdown"], {"GITHUB_STEP_SUMMARY": str(step)}) == step
    assert step.read_text() == "earlier step\n" + paths["markdown"].read_text() + "\n"
    assert append_step_summary(paths["markdown"], {}) is None


def test_a_directory_where_the_report_goes_is_refused_before_anything_is_written(evaluation, tmp_path):
    from reports.errors import OutputError

    _, results, summary = evaluation
    (tmp_path / "summary.md").mkdir()
    with pytest.raises(OutputError, match="output must be a file path, not a directory"):
        render_evaluation(results, summary, out_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.md"]
