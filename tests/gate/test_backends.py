"""gate.backends: a ``--model`` directory's weight files are hashed and checked before the pipeline loads anything."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from gate import backends
from gate.weights import WeightRefusedError
from reports.errors import UsageError


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HALLO3_GATE_WEIGHTS", str(tmp_path / "no-weights"))


@pytest.fixture
def model_dir(tmp_path) -> Path:
    """A release-shaped directory: two weight files in subfolders and a config that is not a weight file."""
    root = tmp_path / "release"
    (root / "hallo3" / "1").mkdir(parents=True)
    (root / "t5-v1_1-xxl").mkdir()
    (root / "hallo3" / "1" / "mp_rank_00_model_states.pt").write_bytes(b"checkpoint bytes")
    (root / "t5-v1_1-xxl" / "model.safetensors").write_bytes(b"encoder bytes")
    (root / "hallo3" / "config.yaml").write_text("not: weights\n")
    return root


@pytest.fixture
def loads(monkeypatch) -> list[Path]:
    """Calls of the pipeline loader: it must never be reached with refused weights."""
    from generator import pipeline

    calls: list[Path] = []

    def from_directory(path, *args, **kwargs):
        calls.append(Path(path))
        raise RuntimeError("the loader stops the test here")

    monkeypatch.setattr(pipeline.Hallo3Pipeline, "from_directory", staticmethod(from_directory))
    return calls


def _generate(model_dir: Path, **kwargs):
    portrait = np.zeros((64, 64, 3), np.uint8)
    audio = np.zeros(16000, np.float32)
    return backends.generate("hallo3", portrait, audio, 16000, model_dir=model_dir, **kwargs)


def test_unpinned_model_files_are_refused_before_the_pipeline_loads(model_dir, loads):
    with pytest.raises(WeightRefusedError) as caught:
        _generate(model_dir)
    assert loads == []  # refused before anything was read by the pipeline
    message = caught.value.one_line()
    assert "no sha256 pin" in message and "allow_unpinned" in message
    assert caught.value.exit_code == 3


def test_allowed_unpinned_model_files_are_hashed_and_recorded_as_unpinned(model_dir):
    refs = backends.model_weights(model_dir, allow_unpinned=True)
    by_name = {r["name"]: r for r in refs}
    assert set(by_name) == {"hallo3/1/mp_rank_00_model_states.pt", "t5-v1_1-xxl/model.safetensors"}
    expected = hashlib.sha256(b"checkpoint bytes").hexdigest()  # computed here, independently of the gate
    ckpt = by_name["hallo3/1/mp_rank_00_model_states.pt"]
    assert (ckpt["sha256"], ckpt["status"], ckpt["verified"], ckpt["pinned_sha256"]) == (
        expected,
        "unpinned",
        False,
        None,
    )


def test_allowed_unpinned_model_files_reach_the_loader(model_dir, loads):
    with pytest.raises(RuntimeError, match="loader stops"):
        _generate(model_dir, allow_unpinned=True)
    assert loads == [model_dir]


@pytest.mark.parametrize(
    ("name", "steps", "sampler", "option"),
    [
        ("nosuch", None, None, "--backend"),
        ("hallo3-tiny", None, "euler", "--sampler"),
        ("hallo3", 1, None, "--steps"),  # the zero-SNR rescale of the official sampler needs two steps
        ("hallo3", 3, "diffusers-dpm", "--steps"),  # diffusers' scheduler needs a step count dividing 1000
        ("still", None, "official", "--sampler"),  # no sampler in a calibration backend: say so, don't ignore it
    ],
)
def test_options_are_checked_before_anything_loads(name, steps, sampler, option):
    with pytest.raises(UsageError) as caught:
        backends.check_options(name, steps, sampler)
    assert caught.value.subject == option


def test_valid_options_pass():
    for name, steps, sampler in (("hallo3", 50, None), ("hallo3", 7, "official"), ("hallo3-tiny", 50, "diffusers-dpm")):
        backends.check_options(name, steps, sampler)
