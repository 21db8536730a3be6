"""ISO BMFF (MP4) top-level boxes: a structural check of the container and the C2PA manifest store it carries.

c2pa-rs puts the manifest store in a top-level ``uuid`` box (user type d8fec3d6-1b0e-483c-9297-5828877ec481) holding
a version/flags word, the NUL-terminated purpose "manifest", an 8-byte offset, then the JUMBF store.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from reports.errors import InputError

C2PA_UUID = bytes.fromhex("d8fec3d61b0e483c92975828877ec481")


@dataclass(frozen=True)
class Box:
    type: str
    offset: int
    size: int  # whole box, header included
    header: int  # header length (8, 16, +16 for uuid)
    usertype: bytes | None = None


def top_level_boxes(path: str | os.PathLike[str]) -> list[Box]:
    """Walk the top-level boxes; ``InputError`` when the file is not a complete ISO BMFF file."""
    p = Path(path)
    try:
        size = p.stat().st_size
        fh = open(p, "rb")  # noqa: SIM115 - closed by the with below, after the error mapping
    except FileNotFoundError:
        raise InputError(str(p), "video file must exist", "no such file") from None
    except OSError as exc:
        raise InputError(str(p), "video file must be readable", type(exc).__name__) from None
    boxes: list[Box] = []
    with fh:
        pos = 0
        while pos < size:
            fh.seek(pos)
            head = fh.read(8)
            if len(head) < 8:
                raise InputError(str(p), "MP4 must be complete (box header cut off)", f"{size - pos} trailing bytes")
            box_size, raw_type = struct.unpack(">I4s", head)
            header = 8
            if box_size == 1:
                ext = fh.read(8)
                if len(ext) < 8:
                    raise InputError(str(p), "MP4 must be complete (box header cut off)", f"at byte {pos}")
                box_size = struct.unpack(">Q", ext)[0]
                header = 16
            elif box_size == 0:
                box_size = size - pos
            box_type = raw_type.decode("latin-1")
            if not boxes and box_type != "ftyp":
                raise InputError(
                    str(p), "must be an MP4 (ISO BMFF file starting with an ftyp box)", _describe(raw_type)
                )
            if not raw_type.isascii() or box_size < header:
                raise InputError(
                    str(p), "MP4 box structure must be valid", f"box {raw_type!r} of {box_size} B at {pos}"
                )
            if pos + box_size > size:
                raise InputError(
                    str(p),
                    "MP4 must be complete (a box extends beyond the end of the file: truncated?)",
                    f"box {box_type} needs {pos + box_size} B, file has {size} B",
                )
            usertype = None
            if box_type == "uuid":
                usertype = fh.read(16)
                header += 16
            boxes.append(Box(box_type, pos, box_size, header, usertype))
            pos += box_size
    if not boxes:
        raise InputError(str(p), "must be an MP4 (ISO BMFF)", "an empty file")
    return boxes


def is_bmff(path: str | os.PathLike[str]) -> bool:
    """Whether the file starts like an ISO BMFF (MP4/MOV) file: an ``ftyp`` box first."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return False
    return len(head) == 8 and head[4:8] == b"ftyp"


def _describe(raw: bytes) -> str:
    return f"first bytes {raw!r}" if raw.isascii() else "binary data that is not MP4"


def read_c2pa_store(path: str | os.PathLike[str], boxes: list[Box] | None = None) -> bytes | None:
    """The raw JUMBF manifest store of an MP4, or None when it has no C2PA box."""
    boxes = top_level_boxes(path) if boxes is None else boxes
    for box in boxes:
        if box.type == "uuid" and box.usertype == C2PA_UUID:
            with open(path, "rb") as fh:
                fh.seek(box.offset + box.header)
                body = fh.read(box.size - box.header)
            # version(1) + flags(3), purpose string NUL-terminated, 8-byte offset, then JUMBF
            end = body.find(b"\x00", 4)
            if end < 0 or body[4:end] != b"manifest":
                continue
            return body[end + 1 + 8 :]
    return None
