"""Whole gate runs on small real inputs: the scikit-image astronaut portrait and espeak-ng speech.

Runs are expensive (watermark, encode, measure, sign, verify, reports), so the inputs are small (256x256, ~2.4 s)
and the main runs happen once per session; each test then checks one property of their outputs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.talking import Inputs, make_inputs, with_consent

OFFLINE_POLICY = Path(__file__).resolve().parents[2] / "gate" / "policies" / "offline.toml"


@pytest.fixture(scope="session")
def e2e_inputs(tmp_path_factory) -> Inputs:
    inputs = make_inputs(tmp_path_factory.mktemp("e2e"))
    inputs.env["HALLO3_GATE_LEDGER"] = with_consent(inputs, inputs.root / "ledger.sqlite")
    return inputs


@pytest.fixture()
def gate_env(e2e_inputs, monkeypatch) -> Inputs:
    for k, v in e2e_inputs.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    return e2e_inputs
