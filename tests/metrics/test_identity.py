"""metrics.identity: same portrait under mild augmentation is above each backend's threshold, other people below;
missing faces are counted and listed; the insightface loader runs on a tiny pack in the real layout."""

from __future__ import annotations

import numpy as np
import pytest
from face_fixtures import (
    augment,
    dlib_resnet,
    facenet_graph,
    landmarks_68,
    no_face_image,
    read_rgb,
)
from insightface_fixtures import build_pack

from metrics.identity import ArcFaceBackend, DlibResNetBackend, FaceNetBackend, measure_identity
from reports.errors import InputError, MeasurementError


@pytest.fixture(scope="module", params=["facenet", "dlib"])
def backend(request):
    if request.param == "facenet":
        return FaceNetBackend(landmarks_68(), facenet_graph())
    return DlibResNetBackend(landmarks_68(), dlib_resnet())


def _augmented(img: np.ndarray, n: int = 3) -> np.ndarray:
    return np.stack([augment(img, seed) for seed in range(n)])


def test_same_portrait_above_threshold_others_below(backend, portraits):
    imgs = [read_rgb(p) for p in portraits]
    for i, ref in enumerate(imgs):
        same = measure_identity(ref, _augmented(ref), backend)
        assert same.missing_frames == []
        assert all(same.same_person()), (backend.name, i, same.cosine, same.distance)
        others = np.stack([imgs[j] for j in range(len(imgs)) if j != i])
        diff = measure_identity(ref, others, backend)
        assert not any(diff.same_person()), (backend.name, i, diff.cosine, diff.distance)
        assert min(same.present) > max(diff.present)
        if backend.threshold.metric == "cosine":
            assert min(same.present) >= backend.threshold.value > max(diff.present)


def test_measurements_shape_and_stats(backend, portraits):
    ref = read_rgb(portraits[0])
    res = measure_identity(ref, _augmented(ref, 4), backend)
    rows = {m.name: m for m in res.measurements()}
    assert set(rows) == {"identity_mean", "identity_min", "identity_p10", "face_present_ratio"}
    v = np.array(res.cosine, dtype=float)
    assert rows["identity_mean"].value == pytest.approx(v.mean())
    assert rows["identity_min"].value == pytest.approx(v.min())
    assert rows["identity_min"].value <= rows["identity_p10"].value <= rows["identity_mean"].value
    assert rows["face_present_ratio"].value == 1.0
    assert rows["identity_mean"].details["threshold"]["metric"] in {"cosine", "euclidean"}


def test_face_in_some_frames_only(backend, portraits):
    ref = read_rgb(portraits[1])
    blank = no_face_image(ref.shape[:2])
    frames = np.stack([augment(ref, 1), blank, augment(ref, 2), blank, blank])
    res = measure_identity(ref, frames, backend)
    assert res.missing_frames == [1, 3, 4]
    rows = {m.name: m for m in res.measurements()}
    assert rows["face_present_ratio"].value == pytest.approx(0.4)
    assert rows["identity_mean"].measured and rows["identity_mean"].details["missing_frames"] == [1, 3, 4]


def test_no_face_anywhere_is_not_measured(backend, portraits):
    ref = read_rgb(portraits[2])
    res = measure_identity(ref, np.stack([no_face_image(ref.shape[:2])] * 2), backend)
    rows = {m.name: m for m in res.measurements()}
    for name in ("identity_mean", "identity_min", "identity_p10"):
        assert rows[name].value is None and "no face found in any of the 2 frames" in rows[name].reason
    assert rows["face_present_ratio"].value == 0.0


def test_reference_without_face_is_not_measured(backend, portraits):
    res = measure_identity(no_face_image(), np.stack([read_rgb(portraits[0])]), backend)
    rows = {m.name: m for m in res.measurements()}
    assert rows["identity_mean"].value is None and "reference image" in rows["identity_mean"].reason
    assert rows["face_present_ratio"].value is None  # frames not searched: unknown, not 0


def test_grey_and_4k_frames(portraits):
    import cv2

    backend = FaceNetBackend(landmarks_68(), facenet_graph())
    ref = read_rgb(portraits[2])
    grey = cv2.cvtColor(augment(ref, 5), cv2.COLOR_RGB2GRAY)
    big = np.zeros((2160, 3840, 3), np.uint8)
    big[:, 840:3000] = cv2.resize(ref, (2160, 2160), interpolation=cv2.INTER_CUBIC)
    res_grey = measure_identity(ref, grey[None], backend)
    res_4k = measure_identity(ref, big[None], backend)
    assert res_grey.same_person() == [True] and res_4k.same_person() == [True]
    with pytest.raises(InputError, match="8-bit"):
        measure_identity(ref, np.zeros((1, 64, 64, 3), np.float32), backend)


def test_missing_weights_raise_measurement_error(tmp_path):
    with pytest.raises(MeasurementError, match="FaceNet graph"):
        FaceNetBackend(landmarks_68(), tmp_path / "graph_final.pb")
    with pytest.raises(MeasurementError, match="ResNet"):
        DlibResNetBackend(landmarks_68(), tmp_path / "dlib_face_recognition_resnet_model_v1.dat")


# --- insightface ArcFace on a tiny pack in the real layout -----------------------------------------------------------


def _bright_square(x: int, y: int) -> np.ndarray:
    img = np.zeros((480, 640, 3), np.uint8)
    img[y : y + 256, x : x + 256] = 255
    return img


def test_arcface_loader_routes_tiny_pack_and_measures(tmp_path, monkeypatch):
    import insightface.utils.storage as storage

    def no_download(*a, **k):
        raise AssertionError("insightface tried to download")

    monkeypatch.setattr(storage, "download_file", no_download)
    pack = build_pack(tmp_path)
    backend = ArcFaceBackend(pack)
    assert {k: type(v).__name__ for k, v in backend.app.models.items()} == {
        "detection": "SCRFD",
        "recognition": "ArcFaceONNX",
    }
    ref = _bright_square(160, 96)
    frames = np.stack([ref, np.zeros_like(ref), _bright_square(320, 200)])
    res = measure_identity(ref, frames, backend)
    assert res.missing_frames == [1]  # nothing bright: the tiny detector finds no face
    assert res.cosine[0] == pytest.approx(1.0, abs=1e-6)
    assert res.cosine[2] is not None and res.cosine[2] < 0.999
    assert res.threshold.value == 0.40 and "insightface" in res.threshold.source


def test_arcface_pack_errors_name_the_directory(tmp_path):
    missing = tmp_path / "models" / "buffalo_l"
    with pytest.raises(MeasurementError, match=r"buffalo_l.*missing"):
        ArcFaceBackend(missing)
    missing.mkdir(parents=True)
    with pytest.raises(MeasurementError, match=r"no \*\.onnx"):
        ArcFaceBackend(missing)
    only_rec = build_pack(tmp_path, "rec_only", detector=False)
    with pytest.raises(MeasurementError, match="no detection model"):
        ArcFaceBackend(only_rec)
    only_det = build_pack(tmp_path, "det_only", recogniser=False)
    with pytest.raises(MeasurementError, match="no recognition model"):
        ArcFaceBackend(only_det)


def test_presence_protocol_names_the_detector_not_an_object_repr(portraits):
    backend = FaceNetBackend(landmarks_68(), facenet_graph())
    img = read_rgb(portraits[1])
    rows = {m.name: m for m in measure_identity(img, img[None], backend).measurements()}
    protocol = rows["face_present_ratio"].protocol
    assert "dlib HOG" in protocol and " object at 0x" not in protocol
