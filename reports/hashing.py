"""The project's one sha256-of-a-file helper: streaming reads of 1 MiB, lower-case hex digest.

Every file hash the gate records or checks (inputs, outputs, weight files, checkpoints) goes through
``sha256_file``; callers that want caching (``gate.weights``) build it on top of this function.
"""

from __future__ import annotations

import hashlib
import os

CHUNK = 1 << 20  # 1 MiB: large enough to stream at disk speed, small enough to keep memory flat


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The lower-case hex SHA-256 of the file's bytes, read in ``CHUNK`` blocks (a 40 GB file costs 1 MiB of RAM)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()
