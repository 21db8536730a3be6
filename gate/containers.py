"""Byte-level completeness of a media file: every size its container declares must fit inside the file.

A cut-off file is recognised before any picture is decoded, whatever survives of its index:

* **ISO BMFF** (MP4, MOV, M4A starting with ``ftyp``): every top-level box must end inside the file
  (``provenance.bmff.top_level_boxes``, the walker the signer uses).
* **RIFF** (AVI, WAV): every top-level ``RIFF`` chunk (``AVI ``, then OpenDML ``AVIX`` continuations) must end inside
  the file. A size of 0 or 0xFFFFFFFF is the placeholder a writer leaves when it streams and cannot seek back: unknown,
  not checked.
* **EBML** (Matroska, WebM): the EBML header and every top-level element after it (the ``Segment``) must end inside
  the file. An element of unknown size (live recordings) ends the check.

Other containers declare no byte sizes at this level; ``gate.media`` still checks their packets and durations.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from provenance.bmff import top_level_boxes
from reports.errors import InputError

_RIFF_UNKNOWN_SIZES = (0, 0xFFFFFFFF)
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"


def check_complete(path: str | os.PathLike[str]) -> None:
    """``InputError`` naming the file, the element and both sizes when a declared size runs past the end of the file."""
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as fh:
        head = fh.read(12)
        if head[4:8] == b"ftyp":
            top_level_boxes(p)
        elif head[:4] == b"RIFF":
            _check_riff(fh, size, p)
        elif head[:4] == _EBML_MAGIC:
            _check_ebml(fh, size, p)


def _truncated(p: Path, kind: str, what: str, needs: int, size: int) -> InputError:
    return InputError(
        str(p),
        f"{kind} file must be complete (an element extends beyond the end of the file: truncated?)",
        f"{what} needs {needs} B, file has {size} B",
    )


def _check_riff(fh: BinaryIO, size: int, p: Path) -> None:
    pos = 0
    while pos + 8 <= size:
        fh.seek(pos)
        head = fh.read(12)
        if head[:4] != b"RIFF":
            return  # bytes after the last RIFF chunk are not part of the file's structure
        declared = int.from_bytes(head[4:8], "little")
        if declared in _RIFF_UNKNOWN_SIZES:
            return
        end = pos + 8 + declared
        if end > size:
            form = head[8:12].decode("latin-1").strip() or "?"
            raise _truncated(p, "RIFF", f"RIFF chunk {form!r} at byte {pos}", end, size)
        pos = end + (declared & 1)  # chunks are padded to an even length


class _CutOff(Exception):
    """The file ends inside an element header."""


def _vint(fh: BinaryIO, keep_marker: bool) -> tuple[int, int, bool] | None:
    """An EBML variable-length integer: (value, length in bytes, all value bits set); None when the bytes are not one;
    ``_CutOff`` when the file ends inside it."""
    first = fh.read(1)
    if not first:
        raise _CutOff
    b0 = first[0]
    length = 1
    while length <= 8 and not b0 & (0x80 >> (length - 1)):
        length += 1
    if length > 8:
        return None
    rest = fh.read(length - 1)
    if len(rest) < length - 1:
        raise _CutOff
    value = b0 if keep_marker else b0 & (0xFF >> length)
    for b in rest:
        value = (value << 8) | b
    all_ones = not keep_marker and value == (1 << (7 * length)) - 1
    return value, length, all_ones


def _check_ebml(fh: BinaryIO, size: int, p: Path) -> None:
    pos = 0
    while pos < size:
        fh.seek(pos)
        try:
            element = _vint(fh, keep_marker=True)
            length = _vint(fh, keep_marker=False) if element is not None else None
        except _CutOff:
            raise InputError(
                str(p),
                "Matroska/WebM file must be complete (an element header is cut off: truncated?)",
                f"{size - pos} trailing bytes at byte {pos}",
            ) from None
        if element is None or length is None:
            return  # not EBML: bytes after the last element are not part of the file's structure
        data_size, _, unknown = length
        if unknown:
            return  # an element of unknown size runs to the end of the file by definition
        end = pos + element[1] + length[1] + data_size
        if end > size:
            raise _truncated(p, "Matroska/WebM", f"element 0x{element[0]:X} at byte {pos}", end, size)
        pos = end
