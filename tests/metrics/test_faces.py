"""metrics.faces: dlib detection + 68 landmarks on real portraits; bad input gives a clear result or error."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from face_fixtures import landmarks_68, no_face_image, read_rgb

from metrics.faces import FaceDetector, as_rgb_frames
from reports.errors import InputError, MeasurementError


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(landmarks_68())


def test_portrait_face_and_landmark_geometry(detector, portraits):
    for path in portraits:
        img = read_rgb(path)
        face = detector.detect_image(img)
        assert face is not None, path
        left, top, right, bottom = face.box
        assert 60 < right - left < img.shape[1] and face.landmarks.shape == (68, 2)
        lm = face.landmarks
        eyes_y = lm[36:48, 1].mean()
        mouth_y = lm[48:68, 1].mean()
        nose_y = lm[30, 1]
        assert eyes_y < nose_y < mouth_y  # upright face: eyes above nose above mouth
        cx = lm[:, 0].mean()
        assert left < cx < right and top < eyes_y < bottom


def test_no_face_image_gives_none_and_track_lists_every_frame(detector):
    img = no_face_image()
    assert detector.detect_image(img) is None
    track = detector.track(np.stack([img, img, img]))
    assert track.missing_frames == [0, 1, 2] and track.present_ratio == 0.0


def test_some_frames_without_face_are_listed(detector, portraits):
    face = read_rgb(portraits[2])
    blank = no_face_image(face.shape[:2])
    track = detector.track(np.stack([face, blank, face, blank]))
    assert track.missing_frames == [1, 3]
    assert track.present_ratio == pytest.approx(0.5)


def test_weak_hits_need_temporal_support():
    """skimage's rocket photo gives only weak HOG hits: never a face in a still image or a clip of it."""
    import skimage.data

    det = FaceDetector(landmarks_68())
    rocket = skimage.data.rocket()
    assert det.candidates(rocket)  # weak candidates exist ...
    assert det.detect_image(rocket) is None  # ... but are not a face without support
    assert det.track(np.stack([rocket] * 3)).present_ratio == 0.0


def test_grey_frames_are_accepted(detector, portraits):
    grey = cv2.cvtColor(read_rgb(portraits[1]), cv2.COLOR_RGB2GRAY)
    track = detector.track(grey[None])  # [T,H,W] uint8
    assert track.present_ratio == 1.0
    assert as_rgb_frames(grey[None, ..., None]).shape == (1, *grey.shape, 3)


def test_4k_frame_box_in_full_resolution(detector, portraits):
    img = read_rgb(portraits[2])
    small = detector.detect_image(img)
    big = cv2.resize(img, (2160, 2160), interpolation=cv2.INTER_CUBIC)
    frame = np.zeros((2160, 3840, 3), np.uint8)
    frame[:, 840:3000] = big
    face = detector.detect_image(frame)
    assert small is not None and face is not None
    scale = 2160 / img.shape[0]
    expected = np.array(small.box) * scale + np.array([840, 0, 840, 0])
    assert np.abs(np.array(face.box) - expected).max() < 0.08 * 2160


@pytest.mark.parametrize(
    ("frames", "rule"),
    [
        (np.zeros((2, 64, 64, 3), np.float32), "8-bit"),
        (np.zeros((2, 64, 64, 4), np.uint8), "[T,H,W,3]"),
        (np.zeros((0, 64, 64, 3), np.uint8), "at least one frame"),
        (np.zeros((1, 8, 8, 3), np.uint8), "at least one frame"),
    ],
)
def test_bad_frames_raise_input_error(frames, rule):
    with pytest.raises(InputError, match=rule.replace("[", r"\[").replace("]", r"\]")):
        as_rgb_frames(frames)


def test_missing_or_wrong_weights(tmp_path):
    with pytest.raises(MeasurementError, match="missing"):
        FaceDetector(tmp_path / "nope.dat")
    bad = tmp_path / "bad.dat"
    bad.write_bytes(b"not a dlib model")
    with pytest.raises(MeasurementError, match="not a dlib shape predictor"):
        FaceDetector(bad)


def test_small_face_in_large_frame_found_by_the_fallback_pass(detector, portraits):
    img = cv2.resize(read_rgb(portraits[2]), (200, 200), interpolation=cv2.INTER_AREA)  # face ~90 px
    frame = np.zeros((1080, 1920, 3), np.uint8)
    frame[600:800, 1500:1700] = img
    assert detector._candidates_at(frame, detector.config.max_side) == []  # too small at 400 px ...
    face = detector.detect_image(frame)  # ... found at 1000 px
    assert face is not None
    assert 1500 <= face.box[0] < face.box[2] <= 1700 and 600 <= face.box[1] < face.box[3] <= 800


def test_face_like_texture_is_not_taken_for_the_face():
    """HOG fires weakly on the astronaut's round mission patch, which is larger than her face; the face must win."""
    from skimage import data

    from gate import weights

    det = FaceDetector(weights.require("dlib_landmarks_68"))
    face = det.detect_image(data.astronaut())
    assert face is not None
    left, top, right, _bottom = face.box
    assert top < 200 and 150 < (left + right) / 2 < 300, face.box  # the head, not the patch at y > 330
