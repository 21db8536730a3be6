"""Small JPEG thumbnails of a few frames, for the audit record and its reports."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from reports.schema import MAX_KEYFRAME_BYTES, Keyframe


def keyframe_indices(n_frames: int, count: int) -> list[int]:
    """``count`` frame indices spread evenly from the first to the last frame (fewer if the clip is shorter)."""
    if n_frames <= 0 or count <= 0:
        return []
    if count == 1:
        return [0]
    return sorted({round(i * (n_frames - 1) / (count - 1)) for i in range(count)})


def encode_thumbnail(frame: np.ndarray, *, max_side: int = 192, quality: int = 75) -> tuple[str, int, int]:
    """One ``uint8 [H,W,3]`` RGB frame → (base64 JPEG, width, height), scaled so its longer side is ``max_side``."""
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be uint8 [H,W,3] RGB, got {frame.dtype} {frame.shape}")
    image = Image.fromarray(frame, mode="RGB")
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=True)
    raw = buffer.getvalue()
    if len(raw) > MAX_KEYFRAME_BYTES:
        raise ValueError(f"thumbnail is {len(raw)} bytes; lower max_side or quality")
    return base64.b64encode(raw).decode("ascii"), image.width, image.height


def make_keyframes(
    frames: np.ndarray, fps: float | None = None, *, count: int = 6, max_side: int = 192, quality: int = 75
) -> list[Keyframe]:
    """Thumbnails of ``count`` evenly spaced frames of a ``uint8 [T,H,W,3]`` clip."""
    if frames.ndim != 4:
        raise ValueError(f"frames must be uint8 [T,H,W,3], got shape {frames.shape}")
    keyframes = []
    for index in keyframe_indices(frames.shape[0], count):
        data, width, height = encode_thumbnail(np.ascontiguousarray(frames[index]), max_side=max_side, quality=quality)
        time_s = index / fps if fps else None
        keyframes.append(Keyframe(frame_index=index, time_s=time_s, width=width, height=height, jpeg_base64=data))
    return keyframes
