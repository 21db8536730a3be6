"""Small real inputs for whole gate runs: the scikit-image astronaut portrait (256x256), 2.4 s of espeak-ng speech,
and a talking video of them made by the puppet positive control — plus the environment a run needs (development
signing keys, an empty weights folder so SyncNet/S3FD are never found, a private cache). Used by the e2e tests and the
review fixtures (tests/gate/review_fixtures.py).

The shipped policies release a video of a person only against a consent record for them (``gate.consent``): the
inputs carry a database holding one for the astronaut (``consent_db``), and ``with_consent`` gives any database a run
will use the same record (copied verbatim into a new one, else registered again)."""

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
    consent_db: Path  # an SQLite gate database holding one active consent record for the portrait's person


CONSENT_NAME = "Astronaut portrait (test person)"


def with_consent(inputs: Inputs, locator: str | Path) -> str:
    """The gate database at ``locator`` (an SQLite path or a PostgreSQL URL) holds the portrait's consent record:
    a new one gets ``inputs.consent_db``'s rows verbatim (ledger and consents: the chain stays as it was made); one
    that exists gets the record registered again. Returns the locator."""
    from gate import consent
    from gate.database import LEDGER_COLUMNS, Database, is_postgres

    locator = str(locator)
    if not is_postgres(locator) and not Path(locator).exists():
        shutil.copyfile(inputs.consent_db, locator)
        return locator
    db = Database.open(locator, create=True)
    with db.reading() as tx:
        empty = tx.execute_one("SELECT COUNT(*) AS n FROM ledger")["n"] == 0
    if not empty:
        consent.add(
            db,
            name=CONSENT_NAME,
            portrait=inputs.portrait,
            evidence=inputs.consent_db.with_name("consent-evidence.txt"),
            scope="hallo3-gate tests",
            expires=None,
            actor="test-suite",
        )
        return locator
    with Database.open(str(inputs.consent_db)).reading() as tx:
        ledger_rows = tx.execute(f"SELECT {', '.join(LEDGER_COLUMNS)} FROM ledger ORDER BY seq")
        consent_rows = tx.execute("SELECT * FROM consents")
    with db.transaction() as tx:
        for table, rows in (("ledger", ledger_rows), ("consents", consent_rows)):
            for r in rows:
                cols = list(r)
                tx.execute(
                    f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    [r[c] for c in cols],
                )
    return locator


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
    evidence = root / "consent-evidence.txt"
    evidence.write_text("Signed consent of the test portrait's person (test data).\n", encoding="utf-8")
    consent_db = root / "consent.sqlite"
    from gate import consent
    from gate.database import Database

    consent.add(
        Database.open(str(consent_db), create=True),
        name=CONSENT_NAME,
        portrait=portrait,
        evidence=evidence,
        scope="hallo3-gate tests",
        expires=None,
        actor="test-suite",
    )
    return Inputs(root, portrait, wav, talking, env, consent_db)
