"""``evaluate --ray`` (``gate.evaluate_ray``): the settings, what travels back from a worker, the actor pool on a real
local Ray cluster (2 CPUs), and the acceptance of issue 11: a suite of 2 models x 3 cases evaluated without and with
Ray gives identical per-video measurements and FVD.

Ray runs here on a local cluster started once per module (``ray.init(num_cpus=2, include_dashboard=False)``); the
pool has at most 2 actors of 1 CPU each (a Dataset built with ``from_items`` has no read tasks competing for a CPU:
measured, it does not hang) and the cluster is shut down after the module.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gate.evaluate_ray import (
    RaySettings,
    actor_resources,
    forwarded_env,
    pack_error,
    pack_result,
    run_on_ray,
    unpack,
)
from gate.suite import Case, ModelSpec, Suite
from reports.errors import ExitCode, InputError, UsageError

ray = pytest.importorskip("ray")


def tiny_suite(cases: tuple[str, ...] = ("c1", "c2", "c3")) -> Suite:
    """A suite object for the pool tests: the fake halves below never read its files."""
    models = {m: ModelSpec(m, "still", None) for m in ("a", "b")}
    return Suite(
        name="ray-unit",
        path=Path("suite.toml"),
        policy_path=None,
        fvd_reference=None,
        models=models,
        cases=[Case(c, Path("p.png"), Path("a.wav"), seed=i) for i, c in enumerate(cases)],
        regression={},
    )


# --- settings and resources -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "subject"),
    [
        ({"workers": 0}, "--workers"),
        ({"workers": True}, "--workers"),
        ({"workers": 1.5}, "--workers"),
        ({"num_cpus": 0}, "ray num_cpus"),
        ({"address": "   "}, "--ray-address"),
        ({"address": "10.0.0.1:6379", "num_cpus": 2}, "ray num_cpus"),
        ({"num_gpus_per_generator": -1}, "ray num_gpus_per_generator"),
        ({"num_gpus_per_generator": float("nan")}, "ray num_gpus_per_generator"),
        ({"cpus_per_worker": 0}, "ray cpus_per_worker"),
    ],
)
def test_settings_refuse_bad_values(kwargs: dict, subject: str) -> None:
    with pytest.raises(UsageError) as err:
        RaySettings(**kwargs)
    assert err.value.subject == subject
    assert err.value.exit_code == ExitCode.USAGE


def test_actor_resources_fit_the_cluster() -> None:
    assert actor_resources(RaySettings(workers=2), {"CPU": 2.0}, 2) == (1.0, 0.0)
    assert actor_resources(RaySettings(workers=4), {"CPU": 2.0}, 4) == (0.5, 0.0)
    assert actor_resources(RaySettings(workers=2), {"CPU": 16.0}, 2) == (1.0, 0.0)
    assert actor_resources(RaySettings(workers=2, num_gpus_per_generator=0.5), {"CPU": 8, "GPU": 1}, 2) == (1.0, 0.5)
    with pytest.raises(UsageError) as err:  # no GPU in the cluster: refused, not an actor waiting forever
        actor_resources(RaySettings(workers=2, num_gpus_per_generator=1), {"CPU": 2.0}, 2)
    assert "0 GPU" in err.value.one_line()
    with pytest.raises(UsageError):
        actor_resources(RaySettings(workers=2, cpus_per_worker=2), {"CPU": 2.0}, 2)


def test_forwarded_env_is_the_gates_own() -> None:
    env = {"HALLO3_GATE_KEYS_DIR": "/k", "XDG_CACHE_HOME": "/c", "HOME": "/root", "AWS_SECRET": "x"}
    assert forwarded_env(env) == {"HALLO3_GATE_KEYS_DIR": "/k", "XDG_CACHE_HOME": "/c"}


# --- what travels back ----------------------------------------------------------------------------------------------


def test_a_worker_gate_error_comes_back_with_its_type_and_exit_code() -> None:
    try:
        raise InputError("faces/a.png", "a portrait must be a readable image", "truncated")
    except InputError as exc:
        payload = pack_error(exc)
    with pytest.raises(InputError) as err:
        unpack(payload)
    assert (err.value.subject, err.value.rule, err.value.value) == ("faces/a.png", err.value.rule, "truncated")
    assert err.value.exit_code == ExitCode.INPUT
    assert err.value.one_line() == "faces/a.png: a portrait must be a readable image (got truncated)"
    assert any("raised on a Ray worker" in n and "InputError" in n for n in err.value.__notes__)


def test_an_unpicklable_worker_error_comes_back_as_runtime_error() -> None:
    class Local(Exception):  # a local class cannot be pickled
        pass

    try:
        raise Local("kaput")
    except Local as exc:
        payload = pack_error(exc)
    with pytest.raises(RuntimeError, match="Local: kaput"):
        unpack(payload)


def test_a_produced_case_round_trips() -> None:
    import numpy as np

    from gate.evaluate import ProducedCase

    p = ProducedCase("a", "c1", None, refusal=(1, "no consent"), fvd_features=np.ones((2, 400), np.float32))
    back = unpack(pack_result(p))
    assert (back.model, back.case, back.refusal) == ("a", "c1", (1, "no consent"))
    assert back.fvd_features is not None and back.fvd_features.shape == (2, 400)


# --- the pool on a real local cluster -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        yield
    finally:
        ray.shutdown()


def fake_halves(fail_on: str | None = None):
    """A worker half that says which process made the case (and fails on case ``fail_on``), and a driver half that
    records which process finished it. Local functions: Ray pickles them by value (the test module is not importable
    on a worker)."""
    from gate.evaluate import CaseResult, ProducedCase

    def produce(suite, model, case, out_dir):
        if case == fail_on:
            raise InputError(f"{case}.png", "a portrait must be a readable image", "truncated")
        return ProducedCase(model, case, None, refusal=(1, f"{os.getpid()}"), seconds=0.0)

    def finish(suite, model, case, produced, out_dir):
        assert (produced.model, produced.case) == (model, case)
        row = {"producer": int(produced.refusal[1]), "finisher": os.getpid(), "suite": suite.name, "out": out_dir}
        return CaseResult(model, case, row)

    return produce, finish


@pytest.mark.slow  # starts a local Ray cluster (~10-25 s on 2 cores)
def test_pool_produces_in_actors_and_finishes_on_the_driver(local_ray, tmp_path: Path) -> None:
    suite = tiny_suite()
    produce, finish = fake_halves()
    seen = []
    results = run_on_ray(suite, tmp_path, RaySettings(workers=2), produce, finish, seen.append)
    want = {(m, c) for m in ("a", "b") for c in ("c1", "c2", "c3")}
    assert {(r.model, r.case) for r in results} == want and len(results) == 6  # every case exactly once
    assert [(r.model, r.case) for r in seen] == [(r.model, r.case) for r in results]
    producers = {r.row["producer"] for r in results}
    assert os.getpid() not in producers  # made in the actors ...
    assert 1 <= len(producers) <= 2  # ... of a pool of at most 2
    assert {r.row["finisher"] for r in results} == {os.getpid()}  # finished here: one writer
    assert {r.row["out"] for r in results} == {tmp_path}
    assert ray.is_initialized()  # a runtime it did not start is left running


@pytest.mark.slow  # starts a local Ray cluster (~10-25 s on 2 cores)
def test_pool_runs_only_the_pairs_given(local_ray, tmp_path: Path) -> None:
    produce, finish = fake_halves()
    results = run_on_ray(tiny_suite(), tmp_path, RaySettings(workers=2), produce, finish, pairs=[("b", "c2")])
    assert [(r.model, r.case) for r in results] == [("b", "c2")]
    assert run_on_ray(tiny_suite(), tmp_path, RaySettings(), produce, finish, pairs=[]) == []
    with pytest.raises(UsageError):
        run_on_ray(tiny_suite(), tmp_path, RaySettings(), produce, finish, pairs=[("a", "c1"), ("a", "c1")])


@pytest.mark.slow  # starts a local Ray cluster (~10-25 s on 2 cores)
def test_a_worker_error_is_raised_on_the_driver(local_ray, tmp_path: Path) -> None:
    produce, finish = fake_halves(fail_on="c2")
    finished = []
    with pytest.raises(InputError) as err:
        run_on_ray(tiny_suite(), tmp_path, RaySettings(workers=1), produce, finish, finished.append)
    assert err.value.subject == "c2.png" and err.value.exit_code == ExitCode.INPUT
    assert ("a", "c2") not in {(r.model, r.case) for r in finished}


# --- the acceptance: the same numbers with and without Ray ----------------------------------------------------------

MODELS, CASES = ("puppet", "still"), ("c1", "c2", "c3")
# compared exactly between the two evaluations: everything measured or decided (not run ids, paths or timings)
SAME_COLUMNS = ("decision", "exit_code", "reasons", "video_seconds", "provenance_ok", "consent_ok", "not_measured")


def suite_file(root: Path, inputs, reference: Path) -> Path:
    cases = "".join(
        f'[[cases]]\nid = "{c}"\nportrait = "{inputs.portrait}"\naudio = "{inputs.audio}"\nseed = {i}\n'
        for i, c in enumerate(CASES)
    )
    path = root / "suite.toml"
    path.write_text(
        f'name = "ray-e2e"\npolicy = "offline"\nfvd_reference = "{reference}"\n'
        '[models.puppet]\nbackend = "puppet"\n[models.still]\nbackend = "still"\n' + cases,
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def both_evaluations(e2e_inputs, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The suite evaluated sequentially and on a local Ray cluster (2 CPUs, 2 actors), each into its own OUT with
    its own ledger, with the deterministic watermark payload of ``evaluate(fixed_payload=True)`` (the payload is
    random per run otherwise, and the watermarked pixels — so the measurements' last digits — depend on it)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "metrics"))
    from i3d_fixtures import i3d_checkpoint

    import gate.evaluate as ev
    from gate.cli import main
    from tests.talking import with_consent

    root = tmp_path_factory.mktemp("evaluate-ray")
    ckpt = i3d_checkpoint()  # the real I3D weights (skips when they cannot be fetched)
    out: dict = {}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in e2e_inputs.env.items():
            mp.setenv(k, v)
        mp.setenv("HALLO3_GATE_WEIGHTS", str(ckpt.parent))
        mp.delenv("GITHUB_STEP_SUMMARY", raising=False)
        reference = root / "ref.npz"
        assert main(["fvd-stats", str(e2e_inputs.talking), "--out", str(reference)]) == 0
        suite = Suite.load(suite_file(root, e2e_inputs, reference))
        for name, settings in (("sequential", None), ("ray", RaySettings(num_cpus=2, workers=2))):
            target = root / name
            target.mkdir()
            with_consent(e2e_inputs, target / ev.DB_NAME)
            out[name] = ev.evaluate(suite, target, ray=settings, fixed_payload=True)
    return out


def _rows(result) -> dict[tuple[str, str], dict]:
    return {(r["model"], r["case"]): r for r in result.rows}


@pytest.mark.slow
def test_ray_gives_the_same_per_video_measurements(both_evaluations) -> None:
    from gate.evaluate import columns
    from metrics.specs import SPECS

    seq, on_ray = _rows(both_evaluations["sequential"]), _rows(both_evaluations["ray"])
    assert sorted(seq) == sorted(on_ray) == sorted((m, c) for m in MODELS for c in CASES)  # one row per pair
    assert both_evaluations["ray"].ran == 6 and both_evaluations["ray"].skipped == 0
    metric_cols = [n for n, _ in columns() if n.startswith(("m_", "mnm_"))]
    assert len(metric_cols) == 2 * len(SPECS)
    measured = 0
    for key in seq:
        for col in (*SAME_COLUMNS, *metric_cols):
            assert seq[key][col] == on_ray[key][col], (key, col, seq[key][col], on_ray[key][col])
        measured += sum(seq[key][f"m_{n}"] is not None for n in SPECS)
        assert seq[key]["run_id"] != on_ray[key]["run_id"]  # two separate sets of runs
    assert measured >= 6 * 10  # the comparison compares numbers, not two columns of None


@pytest.mark.slow
def test_ray_gives_the_same_fvd(both_evaluations) -> None:
    import numpy as np

    import gate.evaluate as ev

    for model in MODELS:
        a = both_evaluations["sequential"].summary["models"][model]["fvd"]
        b = both_evaluations["ray"].summary["models"][model]["fvd"]
        assert a["value"] is not None and a["n"] == 3, a  # measured, over the three cases
        assert a == b
        for case in CASES:  # the features behind it, case by case, bit for bit
            ra = _rows(both_evaluations["sequential"])[(model, case)]
            rb = _rows(both_evaluations["ray"])[(model, case)]
            fa = ev.read_features(both_evaluations["sequential"].out_dir, model, ra["run_id"])
            fb = ev.read_features(both_evaluations["ray"].out_dir, model, rb["run_id"])
            assert fa is not None and fb is not None and np.array_equal(fa, fb)


@pytest.mark.slow
def test_ray_results_are_recorded_by_the_driver_like_sequential_ones(both_evaluations) -> None:
    import json
    import sqlite3

    import gate.evaluate as ev

    result = both_evaluations["ray"]
    with sqlite3.connect(result.out_dir / ev.DB_NAME) as db:
        runs = [r[0] for r in db.execute("SELECT run_id FROM ledger WHERE kind = 'run' ORDER BY seq")]
    assert sorted(runs) == sorted(r["run_id"] for r in result.rows)  # one ledger row per case
    lines = (result.out_dir / ev.PROGRESS_NAME).read_text().splitlines()
    assert sorted(json.loads(x)["run_id"] for x in lines) == sorted(runs)
    for r in result.rows:
        assert Path(r["record_path"]).is_file() and Path(r["video_path"]).is_file()
    for model in MODELS:  # nothing left in staging: every run was published by the driver
        assert list((result.out_dir / "runs" / model / "staging").iterdir()) == []


@pytest.mark.slow
def test_cli_ray_flag_runs_the_suite_on_a_local_cluster(e2e_inputs, tmp_path: Path, monkeypatch, capsys) -> None:
    """``hallo3-gate evaluate --ray --workers 1`` end to end through the command line: one case of the still model
    on a local cluster this command starts and stops."""
    import json

    import pyarrow.parquet as pq

    import gate.evaluate as ev
    from gate.cli import main
    from tests.talking import with_consent

    for k, v in e2e_inputs.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    suite = tmp_path / "suite.toml"
    suite.write_text(
        'name = "cli-ray"\npolicy = "offline"\n[models.still]\nbackend = "still"\n'
        f'[[cases]]\nid = "only"\nportrait = "{e2e_inputs.portrait}"\naudio = "{e2e_inputs.audio}"\n',
        encoding="utf-8",
    )
    out = tmp_path / "out"
    out.mkdir()
    with_consent(e2e_inputs, out / ev.DB_NAME)
    assert not ray.is_initialized()
    code = main(["evaluate", str(suite), "--out", str(out), "--ray", "--workers", "1", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert summary["models"]["still"]["cases"] == 1
    table = pq.read_table(out / ev.RESULTS_NAME).to_pylist()
    assert [(r["model"], r["case"]) for r in table] == [("still", "only")]
    assert table[0]["decision"] in ("released", "quarantined") and Path(table[0]["record_path"]).is_file()
    assert not ray.is_initialized()  # the cluster the command started is shut down
