"""Small real inputs for whole gate runs: the scikit-image astronaut portrait (256x256), 2.4 s of espeak-ng speech,
and a talking video of them made by the puppet positive control — plus the environment a run needs (development
signing keys, an empty weights folder so SyncNet/S3FD are never found, a private cache). Used by the e2e tests and the
review fixtures (tests/gate/review_fixtures.py)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from gate import media, weights

SIDE, SECONDS = 256, 2.4


@dataclass(frozen=True)
class Inputs:
    root: Path
    portrait: Path
    audio: Path
    talking: Path  # a talking video (puppet positive control) to review
    env: dict[str, str]


def make_inputs(root: Path) -> Inputs:
    """A portrait, 2.4 s of speech and a talking video of them (the puppet backend), and the environment to run in."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make install adds it)")
    from PIL import Image
    from scipy.io import wavfile
    from skimage import data

    from gate.demo import make_speech
    from generator.puppet import PuppetBackend
    from provenance.keys import init_dev_keys

    portrait = root / "portrait.png"
    Image.fromarray(data.astronaut()).resize((SIDE, SIDE), Image.Resampling.LANCZOS).save(portrait)
    audio, sr = media.read_audio(make_speech(root / "speech_full.wav"), sample_rate=16000)
    audio = audio[: int(SECONDS * sr)]
    wav = root / "speech.wav"
    wavfile.write(wav, sr, (np.clip(audio, -1, 1) * 32767).astype(np.int16))
    out = PuppetBackend(weights.require("dlib_landmarks_68")).generate(media.read_image(portrait), audio, sr)
    talking = media.write_mp4(root / "talking.mp4", out.frames, out.fps, audio=out.audio, sample_rate=out.sample_rate)
    keys = init_dev_keys(root / "keys")
    (root / "no-weights").mkdir()
    env = {
        "HALLO3_GATE_KEYS_DIR": str(keys.directory),
        "HALLO3_GATE_WEIGHTS": str(root / "no-weights"),  # SyncNet/S3FD are never found here, even on a dev box
        "XDG_CACHE_HOME": str(root / "cache"),
    }
    return Inputs(root, portrait, wav, talking, env)
