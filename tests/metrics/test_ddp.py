"""The Metrics under real ``torch.distributed``: two gloo processes on CPU each update half the data; ``compute()``
(which all-gathers and reduces the states) must give the single-process numbers.

This is how a user runs them in a DDP / Lightning validation loop. Each rank writes what it computed to a JSON file
(floats round-trip exactly through ``repr``); the test compares both ranks with the single-process values computed
here by ``metrics.fvd`` and numpy. Rank 1 never updates the AV-sync metric, so its ``"cat"`` state is an empty list at
sync time: torchmetrics 1.9 would send a float32 empty tensor against rank 0's float64 values, and gloo aborts the
process (``gloo::EnforceNotMet``); ``MergeableMetric._sync_dist`` sends a float64 one instead.
"""

from __future__ import annotations

import json
import os
import socket
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from metrics.fvd import FVDState, compute_fvd
from metrics.stats import bootstrap_ci

WORLD = 2
# Ranks' float64 sums are added in another order than one pass's; 1e-9 relative is the issue's bound.
RTOL = 1e-9


def _features(seed: int, n: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(shift, 2.0, size=(n, 400)) + np.linspace(-3, 3, 400)).astype(np.float32)


def _data() -> dict[str, np.ndarray]:
    """Everything every process regenerates from fixed seeds (nothing large is pickled to the children)."""
    return {
        "few_gen": _features(8, 61, 0.3),  # fewer samples than dimensions: the features ("cat") route
        "few_ref": _features(7, 50),
        "many_gen": _features(1, 601, 0.1),  # more samples than dimensions: the sums route
        "many_ref": _features(2, 500),
        "sync_c": np.random.default_rng(3).normal(6.0, 1.5, size=41),
        "identity": np.random.default_rng(4).uniform(0.3, 0.9, size=9),
    }


def _half(x: np.ndarray, rank: int) -> np.ndarray:
    cut = len(x) // 2 + 1  # unequal halves: the all-gather pads and trims
    return x[:cut] if rank == 0 else x[cut:]


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        from metrics.fvd_metric import FrechetVideoDistance
        from metrics.video_metrics import AVSyncCorrelation, IdentitySimilarity, SyncConfidence

        data = _data()
        few = FrechetVideoDistance(FVDState().add_features(data["few_ref"]), keep_features=True)
        few.update(torch.from_numpy(_half(data["few_gen"], rank)))
        many = FrechetVideoDistance(FVDState(keep_features=False).add_features(data["many_ref"]))
        many.update(torch.from_numpy(_half(data["many_gen"], rank)))
        sync_c = SyncConfidence()
        sync_c.update(torch.from_numpy(_half(data["sync_c"], rank)))
        identity = IdentitySimilarity()
        if rank == 0:
            identity.update(torch.from_numpy(data["identity"]))
        else:
            identity.update_from({})  # no value on this rank: one not-measured video
        avsync = AVSyncCorrelation()  # rank 1 never updates it: its "cat" state is an empty list at sync time
        if rank == 0:
            avsync.update(torch.from_numpy(data["identity"]))

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "The ``compute`` method", UserWarning)  # rank 1's untouched avsync
            avsync_value = float(avsync.compute())
            avsync_values = avsync.per_video().tolist()
        result = {
            "avsync": avsync_value,
            "avsync_values": avsync_values,
            "few": float(few.compute()),
            "few_ci": few.interval(n_boot=30, seed=2).to_dict(),
            "many": float(many.compute()),
            "many_local_n": float(many.fake_n),  # compute() restores the local state afterwards
            "sync_c": float(sync_c.compute()),
            "sync_c_ci": sync_c.interval(n_boot=300, seed=1).to_dict(),
            "identity": float(identity.compute()),
            "identity_local_not_measured": float(identity.not_measured),
        }
        with identity.sync_context():  # the reduced states, as compute() saw them
            result["identity_not_measured"] = float(identity.not_measured)
            result["identity_values"] = identity.per_video().tolist()
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result), encoding="utf-8")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch built without gloo")
def test_two_gloo_processes_give_the_single_process_numbers(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text(encoding="utf-8")) for r in range(WORLD)]

    data = _data()
    few = compute_fvd(
        FVDState().add_features(data["few_gen"]), FVDState().add_features(data["few_ref"]), n_boot=30, seed=2
    )
    many = compute_fvd(
        FVDState(keep_features=False).add_features(data["many_gen"]),
        FVDState(keep_features=False).add_features(data["many_ref"]),
    )
    sync_ci = bootstrap_ci(data["sync_c"], n_boot=300, seed=1)
    for rank, got in enumerate(ranks):
        assert abs(got["few"] - few.value) <= RTOL * few.value, rank
        assert abs(got["many"] - many.value) <= RTOL * many.value, rank
        assert got["few_ci"]["n"] == few.ci.n and got["few_ci"]["low"] == pytest.approx(few.ci.low, rel=RTOL)
        assert got["few_ci"]["high"] == pytest.approx(few.ci.high, rel=RTOL)
        assert got["many_local_n"] == len(_half(data["many_gen"], rank))
        assert got["sync_c"] == pytest.approx(float(np.mean(data["sync_c"])), rel=RTOL)
        assert got["sync_c_ci"]["low"] == pytest.approx(sync_ci.low, rel=RTOL)
        assert got["sync_c_ci"]["high"] == pytest.approx(sync_ci.high, rel=RTOL)
        assert got["identity"] == pytest.approx(float(np.mean(data["identity"])), rel=RTOL)
        assert got["identity_not_measured"] == 1 and got["identity_local_not_measured"] == rank
        assert got["identity_values"] == data["identity"].tolist() == got["avsync_values"]
        assert got["avsync"] == got["identity"]
