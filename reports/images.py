"""A still image of any Pillow pixel format as the 8-bit RGB array every model and metric takes.

One conversion for every reader of portraits (``gate.media.read_image`` and ``generator.face.load_image``): 16-bit
samples are scaled (65535 -> 255, rounded), never clipped to white; grey, palette and CMYK become RGB; transparency is
composited over white; 32-bit integer or float pixels have no agreed 8-bit meaning and are refused.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from reports.errors import InputError


def rgb8(image: Image.Image, subject: str) -> np.ndarray:
    """``image`` as ``uint8 [H, W, 3]``; ``subject`` (the file or argument) names it in an ``InputError``."""
    mode = image.mode
    if mode.startswith("I;16"):  # 16-bit grey: scale to 8 bits (rounded), never clip
        grey16 = np.asarray(image).astype(np.uint32)
        grey = ((grey16 * 255 + 32767) // 65535).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode in ("I", "F"):
        kind = "integer" if mode == "I" else "floating-point"
        raise InputError(subject, "image samples must be 8 or 16 bits", f"32-bit {kind} pixels (mode {mode})")
    if "A" in mode or "a" in mode or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))
