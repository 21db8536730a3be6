"""Small real file systems for tests of full and read-only disks: a tmpfs mounted inside the test.

Mounting needs root (or CAP_SYS_ADMIN); where it is refused the test is skipped with the reason, and the tests that
inject ENOSPC or use RLIMIT_FSIZE cover the same paths for any user.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def mounted_tmpfs(mountpoint: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at ``mountpoint`` (made if absent) with mount ``options`` (e.g. ``size=64k``, ``ro,size=64k``)
    for the duration of the block; lazily unmounted afterwards."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mountpoint)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, check=False)
