"""Shared face detection and 68-point landmarks for the identity and AV-sync metrics (dlib).

One face per frame: dlib's HOG frontal detector finds candidates on a downscaled copy of the frame, the largest
confident candidate is kept, and dlib's 68-point shape predictor places landmarks on the full-resolution frame.

Generated talking heads turn and tilt; the HOG detector then scores the real face below its default threshold. A
*weak* candidate (score between ``weak_score`` and ``min_score``) is accepted only when it overlaps the nearest
confident face found within ``support_frames`` frames (IoU >= ``support_iou``, similar size): temporal support, so a
one-off weak hit on a background texture is not taken for the face. A single image gets confident faces only.

Frames where no face is accepted are listed (``missing_frames``); nothing is interpolated here.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import dlib
import numpy as np

from reports.errors import InputError, MeasurementError

N_LANDMARKS = 68


@dataclass(frozen=True)
class FaceDetectorConfig:
    max_side: int = 400  # detection runs on a copy whose longer side is at most this (4K frames stay fast)
    fallback_max_side: int = 1000  # ... and again at this size where the first pass found nothing
    upsample: int = 1  # dlib pyramid upsampling on that copy (finds faces down to ~40 px on that copy)
    min_score: float = 0.0  # dlib's default threshold: a confident face
    score_margin: float = 1.0  # "largest face" among confident faces scoring within this of the frame's best one:
    # HOG fires weakly on face-like textures (the astronaut's mission patch scores 0.06-0.15 next to her face's 1.58)
    weak_score: float = -0.5  # weaker candidates, accepted only with temporal support
    support_frames: int = 25  # a weak face needs a confident one within this many frames (1 s at 25 fps)
    support_iou: float = 0.5  # ... overlapping it this much
    support_size_ratio: float = 1.5  # ... and of a similar size (at most this ratio either way)

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # left, top, right, bottom in full-frame pixels
    score: float  # dlib HOG detection score
    landmarks: np.ndarray  # (68, 2) float32, x/y in full-frame pixels (iBUG 300-W order)
    supported: bool  # True when accepted as a weak candidate through temporal support

    @property
    def size(self) -> float:
        """Face size: the mean of box width and height, in pixels."""
        return 0.5 * ((self.box[2] - self.box[0]) + (self.box[3] - self.box[1]))

    def to_dlib_shape(self) -> dlib.full_object_detection:
        rect = dlib.rectangle(*(round(v) for v in self.box))
        points = dlib.points([dlib.point(round(float(x)), round(float(y))) for x, y in self.landmarks])
        return dlib.full_object_detection(rect, points)


@dataclass(frozen=True)
class FaceTrack:
    """The face per frame (``None`` where none was accepted)."""

    faces: list[Face | None]
    frame_size: tuple[int, int]  # H, W
    config: FaceDetectorConfig

    @property
    def missing_frames(self) -> list[int]:
        return [i for i, f in enumerate(self.faces) if f is None]

    @property
    def present_ratio(self) -> float:
        return 0.0 if not self.faces else 1.0 - len(self.missing_frames) / len(self.faces)


def as_rgb_frames(frames: np.ndarray, subject: str = "frames") -> np.ndarray:
    """Validate ``uint8`` frames ``[T,H,W,3]``; 8-bit grey ``[T,H,W]`` / ``[T,H,W,1]`` is expanded to RGB."""
    arr = np.asarray(frames)
    if arr.dtype != np.uint8:
        raise InputError(subject, "frames must be 8-bit (uint8)", arr.dtype)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise InputError(subject, "frames must be [T,H,W,3] RGB or [T,H,W] grey", arr.shape)
    if arr.shape[0] == 0 or arr.shape[1] < 16 or arr.shape[2] < 16:
        raise InputError(subject, "need at least one frame of at least 16x16 pixels", arr.shape)
    return arr


class FaceDetector:
    """dlib HOG detector + 68-point shape predictor, weights by explicit path."""

    def __init__(self, landmarks_68: Path | str, config: FaceDetectorConfig | None = None) -> None:
        path = Path(landmarks_68)
        if not path.is_file():
            raise MeasurementError(str(path), "dlib 68-point shape predictor file is missing", None)
        self.config = config or FaceDetectorConfig()
        self._detector = dlib.get_frontal_face_detector()
        stat = path.stat()
        self._predictor = _load_predictor(str(path.resolve()), stat.st_size, stat.st_mtime_ns)

    # -- one frame -------------------------------------------------------------------------------------------------
    def candidates(self, frame: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        """All detections with score >= weak_score: (box in full-frame pixels, score).

        Runs on a ``max_side`` copy; when that finds nothing and the frame is larger, once more on a
        ``fallback_max_side`` copy (small faces in large frames: ~40 px faces at 1000 px, i.e. 4 % of the long side).
        """
        out = self._candidates_at(frame, self.config.max_side)
        if not out and max(frame.shape[:2]) > self.config.max_side:
            out = self._candidates_at(frame, self.config.fallback_max_side)
        return out

    def _candidates_at(self, frame: np.ndarray, max_side: int) -> list[tuple[tuple[float, float, float, float], float]]:
        h, w = frame.shape[:2]
        scale = min(1.0, max_side / max(h, w))
        small = frame if scale == 1.0 else cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        rects, scores, _ = self._detector.run(np.ascontiguousarray(small), self.config.upsample, self.config.weak_score)
        out = []
        for r, s in zip(rects, scores, strict=True):
            box = (r.left() / scale, r.top() / scale, (r.right() + 1) / scale, (r.bottom() + 1) / scale)
            box = (max(0.0, box[0]), max(0.0, box[1]), min(float(w), box[2]), min(float(h), box[3]))
            if box[2] - box[0] >= 8 and box[3] - box[1] >= 8:
                out.append((box, float(s)))
        return out

    def landmarks(self, frame: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        rect = dlib.rectangle(*(round(v) for v in box))
        shape = self._predictor(np.ascontiguousarray(frame), rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def _plausible(
        self, cands: list[tuple[tuple[float, float, float, float], float]]
    ) -> list[tuple[tuple[float, float, float, float], float]]:
        """Confident candidates that score within ``score_margin`` of the best one in the frame."""
        confident = [c for c in cands if c[1] >= self.config.min_score]
        if not confident:
            return []
        best = max(c[1] for c in confident)
        return [c for c in confident if c[1] >= best - self.config.score_margin]

    def detect_image(self, image: np.ndarray) -> Face | None:
        """The largest confident face of one RGB image (no temporal support for a single image)."""
        frame = as_rgb_frames(np.asarray(image)[None], "image")[0]
        confident = self._plausible(self.candidates(frame))
        if not confident:
            return None
        box, score = max(confident, key=lambda c: _area(c[0]))
        return Face(box, score, self.landmarks(frame, box), supported=False)

    # -- a clip ----------------------------------------------------------------------------------------------------
    def track(self, frames: np.ndarray) -> FaceTrack:
        """The largest face per frame, with weak candidates accepted through temporal support."""
        arr = as_rgb_frames(frames)
        cands = [self.candidates(f) for f in arr]
        chosen: list[tuple[tuple[float, float, float, float], float, bool] | None] = []
        for cs in cands:
            confident = self._plausible(cs)
            chosen.append((*max(confident, key=lambda c: _area(c[0])), False) if confident else None)
        anchors = [i for i, c in enumerate(chosen) if c is not None]
        for i, cs in enumerate(cands):
            if chosen[i] is not None or not cs:
                continue
            near = [j for j in anchors if abs(j - i) <= self.config.support_frames]
            if not near:
                continue
            ref = chosen[min(near, key=lambda j: abs(j - i))]
            assert ref is not None
            best = max(cs, key=lambda c: _iou(c[0], ref[0]))
            ratio = math.sqrt(_area(best[0]) / _area(ref[0]))
            similar = 1 / self.config.support_size_ratio <= ratio <= self.config.support_size_ratio
            if _iou(best[0], ref[0]) >= self.config.support_iou and similar:
                chosen[i] = (best[0], best[1], True)
        faces: list[Face | None] = []
        for frame, c in zip(arr, chosen, strict=True):
            faces.append(None if c is None else Face(c[0], c[1], self.landmarks(frame, c[0]), supported=c[2]))
        return FaceTrack(faces=faces, frame_size=(arr.shape[1], arr.shape[2]), config=self.config)


@functools.lru_cache(maxsize=2)
def _load_predictor(path: str, size: int, mtime_ns: int) -> dlib.shape_predictor:
    """Load (once per file version: 100 MB, ~1 s) and check that it places 68 landmarks."""
    try:
        predictor = dlib.shape_predictor(path)
    except RuntimeError as exc:
        raise MeasurementError(path, "not a dlib shape predictor file", str(exc)) from exc
    probe = predictor(np.zeros((32, 32), np.uint8), dlib.rectangle(4, 4, 28, 28))
    if probe.num_parts != N_LANDMARKS:
        raise MeasurementError(path, "shape predictor must place 68 landmarks", probe.num_parts)
    return predictor


def _area(box: tuple[float, float, float, float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    inter = _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0
