"""Shot boundaries, face tracks and mouth-centred crops, following syncnet_python's ``run_pipeline`` protocol.

* Scenes: PySceneDetect's own ``ContentDetector`` (default threshold 27, min scene length 15 frames) fed with the
  in-memory frames exactly as ``SceneManager`` would feed it (BGR, downscaled by ``width / 256`` with bilinear
  interpolation when wider than 256 px, frame numbers from 0). Cuts split the clip into ``[start, end)`` ranges; no
  cut -> one scene covering the clip.
* Tracks, within a scene of at least ``min_track`` frames: greedy linking of detections frame by frame; a detection
  joins the track when its frame is at most ``max_gap`` (25) frames after the track's last detection and its IoU with
  that detection is > 0.5 (the first such face of a frame, in detection order). A track is kept when it has more than
  ``min_track`` detections and its (linearly interpolated) boxes have a mean width or height > ``min_face_size``.
  (syncnet-python 0.2.3 stops scanning a frame at its first non-overlapping face; joonson's original tries every face.
  Both agree whenever a frame holds one face; this module follows the original.)
* Crops: box half-size ``s = max(w, h) / 2`` and centre are median-filtered (kernel 13); the frame is padded with grey
  110 by ``int(s * (1 + 2 * crop_scale))``; the crop spans rows ``[cy - s, cy + s(1 + 2 cs))`` and columns
  ``[cx - s(1 + cs), cx + s(1 + cs))`` of the padded frame (integer-truncated as the reference does) — a square of
  side 2.8 s for cs = 0.4, shifted down to take in mouth and chin — resized to 224x224 (bilinear).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import cv2
import numpy as np
from scenedetect import ContentDetector
from scipy import signal

from metrics.syncnet import CROP_SIZE

SCENE_DETECT_MIN_WIDTH = 256  # scenedetect's auto-downscale target width
PAD_VALUE = 110
CROP_MEDFILT = 13


@dataclass(frozen=True)
class FaceTrack:
    frames: np.ndarray  # [n] consecutive frame indices into the (25 fps) clip
    boxes: np.ndarray  # [n, 4] x1, y1, x2, y2 in pixels, interpolated over missed frames
    detections: int  # frames with an actual detection (the rest are interpolated)

    @property
    def start(self) -> int:
        return int(self.frames[0])

    @property
    def stop(self) -> int:
        return int(self.frames[-1]) + 1


def detect_scenes(
    frames: np.ndarray, *, rgb: bool = True, threshold: float = 27.0, min_scene_len: int = 15
) -> list[tuple[int, int]]:
    """Scene ranges ``[start, end)`` from PySceneDetect's ContentDetector run on in-memory frames.

    ``frames`` [T, H, W, 3] uint8, RGB (``rgb=True``) or BGR; each frame is handed to the detector in BGR.
    """
    n = len(frames)
    if n == 0:
        return []
    width, height = frames.shape[2], frames.shape[1]
    factor = max(width, height) / SCENE_DETECT_MIN_WIDTH
    size = (max(1, round(width / factor)), max(1, round(height / factor))) if factor > 1.0 else None
    detector = ContentDetector(threshold=threshold, min_scene_len=min_scene_len)
    cuts: list[int] = []
    for index, frame in enumerate(frames):
        image = cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR) if size else frame
        image = np.ascontiguousarray(image[..., ::-1] if rgb else image)
        cuts += detector.process_frame(index, image)
    cuts += detector.post_process(n - 1)
    bounds = [0, *sorted(c for c in set(cuts) if 0 < c < n), n]
    return list(itertools.pairwise(bounds))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area_a + area_b - inter + 1e-8)


def _link_one_track(pending: list[list[np.ndarray]], frame_ids: range, max_gap: int, iou_threshold: float) -> list:
    """Take one greedy track out of ``pending`` (per-frame lists of boxes, consumed in place)."""
    track: list[tuple[int, np.ndarray]] = []
    for frame, faces in zip(frame_ids, pending, strict=True):
        if track and frame - track[-1][0] > max_gap:
            break
        for k, box in enumerate(faces):
            if not track or iou(box, track[-1][1]) > iou_threshold:
                track.append((frame, box))
                del faces[k]
                break
    return track


def track_faces(
    detections: list[np.ndarray],
    scene: tuple[int, int],
    *,
    min_track: int = 50,
    max_gap: int = 25,
    min_face_size: float = 100.0,
    iou_threshold: float = 0.5,
) -> list[FaceTrack]:
    """Face tracks inside one scene; ``detections[t]`` is frame t's [N, 5] (or [N, 4]) boxes, best score first."""
    start, end = scene
    if end - start < min_track:
        return []
    pending = [[np.asarray(d[:4], dtype=np.float64) for d in detections[t]] for t in range(start, end)]
    tracks = []
    while True:
        linked = _link_one_track(pending, range(start, end), max_gap, iou_threshold)
        if not linked:
            return tracks
        if len(linked) <= min_track:
            continue
        known = np.array([f for f, _ in linked])
        boxes = np.stack([b for _, b in linked])
        frames = np.arange(known[0], known[-1] + 1)
        dense = np.column_stack([np.interp(frames, known, boxes[:, i]) for i in range(4)])
        mean_size = max(np.mean(dense[:, 2] - dense[:, 0]), np.mean(dense[:, 3] - dense[:, 1]))
        if mean_size > min_face_size:
            tracks.append(FaceTrack(frames=frames, boxes=dense, detections=len(linked)))


def crop_geometry(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median-filtered (kernel 13) half-size, centre x and centre y of each box."""
    half = np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    return tuple(signal.medfilt(v, CROP_MEDFILT) for v in (half, cx, cy))  # type: ignore[return-value]


def _padded_window(frame: np.ndarray, pad: int, y1: int, y2: int, x1: int, x2: int) -> np.ndarray:
    """``frame`` padded by ``pad`` grey pixels on every side, then sliced [y1:y2, x1:x2] (numpy slice semantics)."""
    h, w = frame.shape[:2]
    ys = slice(*slice(y1, y2).indices(h + 2 * pad)[:2])
    xs = slice(*slice(x1, x2).indices(w + 2 * pad)[:2])
    out = np.full((max(0, ys.stop - ys.start), max(0, xs.stop - xs.start), frame.shape[2]), PAD_VALUE, frame.dtype)
    sy0, sy1 = max(ys.start, pad), min(ys.stop, pad + h)
    sx0, sx1 = max(xs.start, pad), min(xs.stop, pad + w)
    if sy1 > sy0 and sx1 > sx0:
        out[sy0 - ys.start : sy1 - ys.start, sx0 - xs.start : sx1 - xs.start] = frame[
            sy0 - pad : sy1 - pad, sx0 - pad : sx1 - pad
        ]
    return out


def crop_track(frames: np.ndarray, track: FaceTrack, crop_scale: float = 0.40) -> np.ndarray:
    """[n, 224, 224, 3] uint8 crops (same channel order as ``frames``) for every frame of ``track``."""
    half, cx, cy = crop_geometry(track.boxes)
    crops = np.empty((len(track.frames), CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    for i, frame_index in enumerate(track.frames):
        s = half[i]
        pad = int(s * (1 + 2 * crop_scale))
        my, mx = cy[i] + pad, cx[i] + pad
        y1, y2 = int(my - s), int(my + s * (1 + 2 * crop_scale))
        x1, x2 = int(mx - s * (1 + crop_scale)), int(mx + s * (1 + crop_scale))
        window = _padded_window(frames[frame_index], pad, y1, y2, x1, x2)
        if window.size == 0:  # degenerate box (the reference would crash here): an all-grey crop
            crops[i] = PAD_VALUE
            continue
        crops[i] = cv2.resize(window, (CROP_SIZE, CROP_SIZE))
    return crops
