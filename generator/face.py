"""Reference-portrait preprocessing for Hallo3: identity embedding, face-box mask, resize to 480×720 (spec §1.3).

* Identity: insightface ``FaceAnalysis`` (detector + ``glintr100`` recogniser) on the original image; the **largest**
  face's raw, un-normalised 512-d ``embedding`` is the face embedding — exactly what the model was trained on.
  An image without a face is refused (the official code silently feeds a zero vector; the model then has no identity).
* Face mask: a hard rectangle over the face box enlarged 1.2× around its centre, applied to the *original-resolution*
  image; the masked image then goes through the same resize as the full image and feeds the reference network.
  **Deviation**: the official box is the bounding box of MediaPipe's 36 face-oval landmarks. MediaPipe and its
  ``face_landmarker_v2_with_blendshapes.task`` model are not used here; the box is the insightface detection box
  (SCRFD: roughly forehead to chin), widened to the 106-point contour when the pack's ``landmark_2d_106`` model ran.
  Both boxes cover the face; the region kept can differ by a few pixels at the forehead and the ears.
* Resize: square images → 480×480 bicubic + 120 px of zero padding left and right (480×720); any other aspect →
  bicubic cover-resize to 480×720 and centre crop; [0, 1] → [−1, 1].

The face analyser is injectable: anything with ``get(image_bgr: uint8 [H, W, 3]) -> list[face]`` where a face has
``bbox`` (x1, y1, x2, y2) and ``embedding`` (512 floats) works, so tests need no insightface model pack.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from reports.errors import InputError, UsageError
from reports.images import rgb8

TARGET_HEIGHT = 480
TARGET_WIDTH = 720
FACE_REGION_RATIO = 1.2
MIN_SIDE = 64


class FaceAnalyser(Protocol):
    """The part of insightface's ``FaceAnalysis`` this module uses."""

    def get(self, img: np.ndarray) -> list[Any]: ...


@dataclass(frozen=True)
class ReferenceInputs:
    """A reference portrait, ready for the pipeline."""

    image: torch.Tensor  # [3, 480, 720] float32 in [-1, 1]: the full portrait (I2V concat branch, motion frames)
    face_image: torch.Tensor  # [3, 480, 720] float32 in [-1, 1]: the face-box-masked portrait (reference network)
    face_embedding: torch.Tensor  # [512] float32, raw insightface embedding of the largest face
    face_box: tuple[int, int, int, int]  # expanded mask box (x1, y1, x2, y2) in original pixels, x2/y2 exclusive
    square: bool  # the source was square: output frames are cropped back to 480×480
    source_size: tuple[int, int]  # (height, width) of the source image


def load_insightface(
    pack_dir: str | Path, det_size: tuple[int, int] = (640, 640), providers: tuple[str, ...] = ("CPUExecutionProvider",)
) -> FaceAnalyser:
    """insightface ``FaceAnalysis`` from a model-pack folder (e.g. ``face_analysis/models`` of the Hallo3 release)."""
    pack = Path(pack_dir)
    if not pack.is_dir() or not any(pack.glob("*.onnx")):
        raise UsageError(str(pack), "insightface model pack must be a folder of .onnx models", "missing or empty")
    from insightface.app import FaceAnalysis

    analysis = FaceAnalysis(name=str(pack), providers=list(providers))
    analysis.prepare(ctx_id=-1, det_size=det_size)
    return analysis


def load_image(source: str | Path | Image.Image | np.ndarray, subject: str | None = None) -> np.ndarray:
    """A path, PIL image or ``uint8 [H, W, 3]`` array → RGB ``uint8 [H, W, 3]``; anything else is an ``InputError``."""
    name = subject or (str(source) if isinstance(source, (str, Path)) else "reference image")
    if isinstance(source, np.ndarray):
        array = source
    else:
        try:
            if isinstance(source, Image.Image):
                picture = source
            else:
                picture = Image.open(Path(source))
                picture.load()
            array = rgb8(ImageOps.exif_transpose(picture), name)
        except FileNotFoundError as error:
            raise InputError(name, "reference image must exist", "not found") from error
        except (UnidentifiedImageError, OSError, ValueError) as error:
            raise InputError(
                name, "reference must be a readable image file (JPEG, PNG, WebP ...)", "not an image"
            ) from error
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise InputError(name, "reference image must be RGB uint8 [H, W, 3]", f"{array.dtype} {array.shape}")
    if min(array.shape[:2]) < MIN_SIDE:
        raise InputError(
            name, f"reference image must be at least {MIN_SIDE} px on each side", f"{array.shape[1]}×{array.shape[0]}"
        )
    return array


def largest_face(faces: list[Any]) -> Any | None:
    """The face with the largest detection box (what the official preprocessing picks)."""
    if not faces:
        return None
    return max(faces, key=lambda f: float((f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1])))


def face_region(face: Any) -> tuple[float, float, float, float]:
    """The face's box: the detection box, widened to the 106-point landmarks when the pack provides them."""
    x1, y1, x2, y2 = (float(v) for v in face.bbox[:4])
    landmarks = getattr(face, "landmark_2d_106", None)
    if landmarks is not None:
        points = np.asarray(landmarks, dtype=np.float64)
        x1, y1 = min(x1, points[:, 0].min()), min(y1, points[:, 1].min())
        x2, y2 = max(x2, points[:, 0].max()), max(y2, points[:, 1].max())
    return x1, y1, x2, y2


def expand_box(
    box: tuple[float, float, float, float], height: int, width: int, ratio: float = FACE_REGION_RATIO
) -> tuple[int, int, int, int]:
    """Enlarge a box ``ratio``× around its centre, round outwards to whole pixels and clip to the image."""
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    half_w, half_h = (x2 - x1) * ratio / 2.0, (y2 - y1) * ratio / 2.0
    left = max(0, int(np.floor(cx - half_w)))
    top = max(0, int(np.floor(cy - half_h)))
    right = min(width, int(np.ceil(cx + half_w)))
    bottom = min(height, int(np.ceil(cy + half_h)))
    return left, top, right, bottom


def box_mask(height: int, width: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """Hard rectangular mask ``uint8 [H, W]``: 1 inside ``box`` (x2/y2 exclusive), 0 outside."""
    mask = np.zeros((height, width), dtype=np.uint8)
    x1, y1, x2, y2 = box
    mask[y1:y2, x1:x2] = 1
    return mask


def resize_to_target(image: np.ndarray, height: int = TARGET_HEIGHT, width: int = TARGET_WIDTH) -> torch.Tensor:
    """RGB ``uint8 [H, W, 3]`` → ``float32 [3, height, width]`` in [−1, 1] by the official rules.

    Square: resize to ``height × height`` and zero-pad left/right (black); otherwise cover-resize and centre-crop.
    """
    h, w = image.shape[:2]
    picture = Image.fromarray(image)
    if h == w:
        side = height
        resized = np.asarray(picture.resize((side, side), Image.Resampling.BICUBIC))
        canvas = np.zeros((height, width, 3), dtype=np.uint8)
        left = (width - side) // 2
        canvas[:, left : left + side] = resized
    else:
        if w / h > width / height:
            new_h, new_w = height, int(w * height / h)
        else:
            new_h, new_w = int(h * width / w), width
        resized = np.asarray(picture.resize((new_w, new_h), Image.Resampling.BICUBIC))
        top, left = (new_h - height) // 2, (new_w - width) // 2
        canvas = resized[top : top + height, left : left + width]
    tensor = torch.from_numpy(np.array(canvas, copy=True)).permute(2, 0, 1).float() / 255.0
    return tensor * 2.0 - 1.0


def prepare_reference(
    source: str | Path | Image.Image | np.ndarray,
    analyser: FaceAnalyser,
    height: int = TARGET_HEIGHT,
    width: int = TARGET_WIDTH,
    subject: str | None = None,
) -> ReferenceInputs:
    """Load the portrait, find its identity and face box, and build the full and face-masked model inputs."""
    name = subject or (str(source) if isinstance(source, (str, Path)) else "reference image")
    rgb = load_image(source, name)
    face = largest_face(list(analyser.get(np.ascontiguousarray(rgb[:, :, ::-1]))))
    if face is None:
        raise InputError(
            name, "reference image must show a face (the model needs an identity to animate)", "no face detected"
        )
    embedding = np.asarray(face.embedding, dtype=np.float32).reshape(-1)
    if embedding.size != 512 or not np.all(np.isfinite(embedding)):
        raise InputError(
            name, "face analyser must return a finite 512-d identity embedding", f"{embedding.size} values"
        )
    h, w = rgb.shape[:2]
    box = expand_box(face_region(face), h, w)
    masked = rgb * box_mask(h, w, box)[:, :, None]
    return ReferenceInputs(
        image=resize_to_target(rgb, height, width),
        face_image=resize_to_target(masked, height, width),
        face_embedding=torch.from_numpy(embedding),
        face_box=box,
        square=h == w,
        source_size=(h, w),
    )
