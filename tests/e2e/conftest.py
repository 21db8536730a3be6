"""Whole gate runs on small real inputs: the scikit-image astronaut portrait and espeak-ng speech.

Runs are expensive (watermark, encode, measure, sign, verify, reports), so the inputs are small (256x256, ~2.4 s)
and the main runs happen once per session; each test then checks one property of their outputs.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from gate import media, weights

OFFLINE_POLICY = Path(__file__).resolve().parents[2] / "gate" / "policies" / "offline.toml"
SIDE = 256
SECONDS = 2.4


@dataclass(frozen=True)
class Inputs:
    root: Path
    portrait: Path
    audio: Path
    talking: Path  # a talking video (puppet positive control) to review
    env: dict[str, str]


@pytest.fixture(scope="session")
def e2e_inputs(tmp_path_factory) -> Inputs:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make install adds it)")
    from PIL import Image
    from scipy.io import wavfile
    from skimage import data

    from gate.demo import make_speech
    from generator.puppet import PuppetBackend
    from provenance.keys import init_dev_keys

    root = tmp_path_factory.mktemp("e2e")
    portrait = root / "portrait.png"
    Image.fromarray(data.astronaut()).resize((SIDE, SIDE), Image.Resampling.LANCZOS).save(portrait)
    speech = make_speech(root / "speech_full.wav")
    audio, sr = media.read_audio(speech, sample_rate=16000)
    audio = audio[: int(SECONDS * sr)]
    wav = root / "speech.wav"
    wavfile.write(wav, sr, (np.clip(audio, -1, 1) * 32767).astype(np.int16))
    out = PuppetBackend(weights.require("dlib_landmarks_68")).generate(media.read_image(portrait), audio, sr)
    talking = media.write_mp4(root / "talking.mp4", out.frames, out.fps, audio=out.audio, sample_rate=out.sample_rate)
    keys = init_dev_keys(root / "keys")
    env = {
        "HALLO3_GATE_KEYS_DIR": str(keys.directory),
        "HALLO3_GATE_LEDGER": str(root / "ledger.sqlite"),
        "HALLO3_GATE_WEIGHTS": str(root / "no-weights"),  # SyncNet/S3FD are never found here, even on a dev box
        "XDG_CACHE_HOME": str(root / "cache"),
    }
    (root / "no-weights").mkdir()
    return Inputs(root, portrait, wav, talking, env)


@pytest.fixture()
def gate_env(e2e_inputs, monkeypatch) -> Inputs:
    for k, v in e2e_inputs.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    return e2e_inputs
