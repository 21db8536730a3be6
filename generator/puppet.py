"""The ``puppet`` calibration backend: the portrait with its mouth opened in step with the speech envelope.

Not a generative model. It is the positive control next to the ``still`` baseline (the negative control): a video
whose identity is the portrait's by construction and whose mouth movement follows the audio by construction, so a lip-
sync metric that cannot tell ``puppet`` from ``still`` is broken, and a gate that quarantines it is too strict. It
also gives the offline demo a video that can pass. Each frame warps the region below the mouth line of the original
portrait downward by an opening proportional to the speech envelope at that frame, filling the gap with a dark mouth
interior (a smooth remap with ``cv2.remap``; landmarks from dlib's 68-point predictor, weights by explicit path).
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
from scipy.signal import resample_poly

from generator.output import GenerationOutput
from reports.errors import InputError

FPS = 25.0
MOUTH_COLOUR = np.array([52, 22, 24], dtype=np.float32)  # dark red-brown mouth interior
MAX_OPENING = 0.45  # of the mouth width, at full envelope


def speech_envelope(audio: np.ndarray, sample_rate: int, n_frames: int, fps: float = FPS) -> np.ndarray:
    """Per-frame speech level in [0, 1]: log RMS of each frame's samples, 10th → 0 and 95th percentile → 1."""
    x = np.asarray(audio, dtype=np.float64)
    if sample_rate != 16000:
        g = math.gcd(int(sample_rate), 16000)
        x = resample_poly(x, 16000 // g, int(sample_rate) // g)
    hop = 16000 / fps
    rms = np.empty(n_frames)
    for i in range(n_frames):
        seg = x[round(i * hop) : round((i + 1) * hop)]
        rms[i] = math.sqrt(float(np.mean(seg * seg))) if seg.size else 0.0
    db = 20 * np.log10(np.maximum(rms, 1e-6))
    lo, hi = np.percentile(db, 10), np.percentile(db, 95)
    if hi - lo < 1e-6:
        return np.zeros(n_frames)
    return np.clip((db - lo) / (hi - lo), 0.0, 1.0)


def open_mouth(image: np.ndarray, landmarks: np.ndarray, opening: float) -> np.ndarray:
    """``image`` with the lower lip and jaw pushed down by ``opening`` pixels (0 returns the image unchanged)."""
    if opening <= 0.5:
        return image.copy()
    h, w = image.shape[:2]
    inner = landmarks[60:68]
    xc, yc = float(inner[:, 0].mean()), float(inner[:, 1].mean())
    mouth_w = float(np.linalg.norm(landmarks[54] - landmarks[48]))
    bottom = float(landmarks[8, 1]) + 0.4 * mouth_w  # below the chin the image is untouched
    half = 0.75 * mouth_w
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    wx = np.clip(1.0 - np.abs(xs - xc) / half, 0.0, 1.0)
    wx = 0.5 - 0.5 * np.cos(np.pi * wx)  # smooth falloff to the sides
    depth = np.clip(1.0 - (ys - yc) / max(bottom - yc, 1.0), 0.0, 1.0) * (ys >= yc)
    shift = opening * wx * depth
    src_y = (ys - shift).astype(np.float32)
    warped = cv2.remap(image, xs, src_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    gap = (ys >= yc) & (src_y < yc) & (wx > 0.05)  # pixels that would come from above the mouth line: the open mouth
    alpha = np.clip((yc - src_y) / 2.0, 0.0, 1.0) * np.clip(wx * 3.0, 0.0, 1.0)
    alpha = np.where(gap, alpha, 0.0)[..., None]
    out = warped.astype(np.float32) * (1 - alpha) + MOUTH_COLOUR * alpha
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


class PuppetBackend:
    """Positive-control backend: deterministic, CPU-cheap, same output contract as the real generator."""

    name = "puppet"

    def __init__(self, landmarks_68: Path | str, max_side: int = 512) -> None:
        from metrics.faces import FaceDetector

        self.detector = FaceDetector(landmarks_68)
        self.landmarks_path = str(landmarks_68)
        self.max_side = max_side

    def generate(
        self, image: np.ndarray, audio: np.ndarray, sample_rate: int, prompt: str = "", seed: int = 0
    ) -> GenerationOutput:
        img = np.asarray(image, dtype=np.uint8)
        scale = min(1.0, self.max_side / max(img.shape[:2]))
        if scale < 1.0:
            img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        img = img[: img.shape[0] // 2 * 2, : img.shape[1] // 2 * 2]
        face = self.detector.detect_image(img)
        if face is None:
            raise InputError("portrait", "the puppet backend needs a detectable frontal face", "no face found")
        audio = np.asarray(audio, dtype=np.float32)
        n = math.ceil(audio.size / sample_rate * FPS)
        if n < 1:
            raise InputError("audio", "must be longer than one video frame (40 ms)", f"{audio.size} samples")
        env = speech_envelope(audio, sample_rate, n)
        mouth_w = float(np.linalg.norm(face.landmarks[54] - face.landmarks[48]))
        frames = np.stack([open_mouth(img, face.landmarks, MAX_OPENING * mouth_w * e) for e in env])
        config = {
            "kind": "positive control (not a generative model)",
            "max_opening_of_mouth_width": MAX_OPENING,
            "envelope": "log RMS per 40 ms, 10th..95th percentile -> 0..1",
            "landmarks": Path(self.landmarks_path).name,
            "size": [int(img.shape[1]), int(img.shape[0])],
        }
        return GenerationOutput(frames, FPS, audio, int(sample_rate), config=config, seed=seed, backend=self.name)
