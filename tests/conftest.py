"""Shared test fixtures: the real media in ../shared/data, and a seeded CPU torch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HALLO3_GATE_TEST_DATA", ROOT.parent / "shared" / "data"))
SHARED_FIXTURES = SHARED_DATA.parent / "fixtures"
TEST_PROVIDER = "hallo3-gate test suite"


def _isolated_config() -> None:
    """Every test (and every gate process a test starts) reads one known configuration, never the developer's own
    ``~/.config/hallo3-gate/config.toml``: the provider named in latent disclosures, the default retention. Set at
    import so that pytest-xdist workers and subprocesses inherit it; a test that needs another one sets its own."""
    import atexit
    import shutil
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="hallo3-gate-test-config-"))
    atexit.register(shutil.rmtree, directory, True)
    path = directory / "config.toml"
    path.write_text(f'[provider]\nname = "{TEST_PROVIDER}"\n', encoding="utf-8")
    os.environ["HALLO3_GATE_CONFIG"] = str(path)
    for var in ("HALLO3_GATE_PROVIDER", "HALLO3_GATE_RETENTION_DAYS"):
        os.environ.pop(var, None)


_isolated_config()


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"test media {path} is absent (see ../shared/data/README.md)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return _need(SHARED_DATA)


@pytest.fixture(scope="session")
def speaker_clip() -> Path:
    """976x528, 25 fps, 133 frames, MPEG-4 Part 2 + MP3: a generated singing man."""
    return _need(SHARED_DATA / "talking" / "speaker.avi")


@pytest.fixture(scope="session")
def speaker_wav() -> Path:
    return _need(SHARED_DATA / "talking" / "speaker.wav")


@pytest.fixture(scope="session")
def portraits() -> list[Path]:
    return [_need(SHARED_DATA / "portraits" / f"hallo3_{n}.jpg") for n in ("0001", "0003", "0008")]


@pytest.fixture(scope="session")
def official_tiny() -> Path:
    return _need(SHARED_FIXTURES / "hallo3_official_tiny")


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)
