"""Reference-portrait preprocessing: identity embedding of the largest face, face-box mask, official resize rules."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from generator.face import (
    box_mask,
    expand_box,
    largest_face,
    load_image,
    load_insightface,
    prepare_reference,
    resize_to_target,
)
from reports.errors import InputError, UsageError


class FixedFaces:
    """A face analyser returning fixed faces (x1, y1, x2, y2, embedding); records the image it was given."""

    def __init__(self, faces: list[tuple[float, float, float, float, np.ndarray]]) -> None:
        self.faces = faces
        self.seen: list[np.ndarray] = []

    def get(self, img: np.ndarray) -> list[Any]:
        self.seen.append(img)
        return [SimpleNamespace(bbox=np.array(f[:4]), embedding=f[4]) for f in self.faces]


def test_expand_box_is_1_2x_around_the_centre_and_clipped() -> None:
    assert expand_box((100, 100, 200, 300), 1000, 1000) == (90, 80, 210, 320)
    assert expand_box((0, 0, 100, 50), 60, 80) == (0, 0, 80, 55)


def test_box_mask_is_a_hard_rectangle() -> None:
    mask = box_mask(10, 12, (2, 3, 5, 9))
    assert mask.sum() == 3 * 6 and mask[3:9, 2:5].all() and set(np.unique(mask)) == {0, 1}


def test_largest_face_wins() -> None:
    faces = [SimpleNamespace(bbox=np.array([0, 0, 10, 10])), SimpleNamespace(bbox=np.array([5, 5, 30, 25]))]
    assert largest_face(faces) is faces[1]
    assert largest_face([]) is None


def test_square_image_is_resized_and_zero_padded_to_480x720() -> None:
    image = np.random.default_rng(0).integers(0, 256, (480, 480, 3), dtype=np.uint8)
    out = resize_to_target(image)
    assert out.shape == (3, 480, 720)
    assert (out[:, :, :120] == -1).all() and (out[:, :, 600:] == -1).all()
    expected = torch.from_numpy(image).permute(2, 0, 1).float() / 255 * 2 - 1
    torch.testing.assert_close(out[:, :, 120:600], expected)


def test_small_square_image_is_upscaled_to_480() -> None:
    image = np.full((100, 100, 3), 200, dtype=np.uint8)
    out = resize_to_target(image)
    assert out.shape == (3, 480, 720)
    torch.testing.assert_close(out[:, :, 120:600], torch.full((3, 480, 480), 200 / 255 * 2 - 1))


def test_wide_image_is_cover_resized_and_centre_cropped() -> None:
    image = np.zeros((300, 900, 3), dtype=np.uint8)  # → 480×1440, crop columns 360…1079
    image[:, 450:, 0] = 255  # right half red: the crop's centre column splits red/black
    out = resize_to_target(image)
    assert out.shape == (3, 480, 720)
    assert (out[0, :, :350] == -1).all() and (out[0, :, 370:] == 1).all()


def test_tall_image_is_cover_resized_and_centre_cropped() -> None:
    image = np.zeros((900, 300, 3), dtype=np.uint8)  # → 2160×720, crop rows 840…1319
    image[450:, :, 1] = 255  # bottom half green
    out = resize_to_target(image)
    assert (out[1, :230] == -1).all() and (out[1, 250:] == 1).all()


def test_mask_is_applied_at_original_resolution_then_resized() -> None:
    image = np.full((400, 600, 3), 255, dtype=np.uint8)  # 3:2 → exact ×1.2 scale to 480×720
    embedding = np.linspace(-30, 30, 512, dtype=np.float32)  # raw, not unit-norm
    analyser = FixedFaces([(250, 100, 350, 250, embedding)])
    ref = prepare_reference(image, analyser)
    assert ref.face_box == (240, 85, 360, 265)
    assert not ref.square and ref.source_size == (400, 600)
    assert ref.image.shape == ref.face_image.shape == (3, 480, 720)
    assert (ref.image == 1).all()
    inside = ref.face_image[:, 110:310, 296:424]  # box ×1.2 = rows 102…318, cols 288…432, shrunk for the filter
    assert (inside == 1).all()
    assert (ref.face_image[:, :95] == -1).all() and (ref.face_image[:, :, :280] == -1).all()
    np.testing.assert_array_equal(ref.face_embedding.numpy(), embedding)  # un-normalised
    assert analyser.seen[0].shape == (400, 600, 3)  # the analyser sees the original resolution (BGR)


def test_largest_face_embedding_is_used() -> None:
    small, large = np.ones(512, np.float32), np.full(512, 2.0, np.float32)
    image = np.full((200, 200, 3), 128, dtype=np.uint8)
    ref = prepare_reference(image, FixedFaces([(0, 0, 20, 20, small), (50, 50, 150, 160, large)]))
    np.testing.assert_array_equal(ref.face_embedding.numpy(), large)
    assert ref.square


def test_image_without_a_face_is_refused() -> None:
    image = np.full((200, 300, 3), 90, dtype=np.uint8)
    with pytest.raises(InputError, match="must show a face") as caught:
        prepare_reference(image, FixedFaces([]), subject="portrait.png")
    assert caught.value.subject == "portrait.png"


def test_non_image_file_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "portrait.jpg"
    fake.write_text("this is not a JPEG")
    with pytest.raises(InputError, match="readable image file") as caught:
        load_image(fake)
    assert str(fake) in str(caught.value)
    with pytest.raises(InputError, match="must exist"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(InputError, match="at least 64 px"):
        load_image(np.zeros((32, 32, 3), np.uint8))


def test_image_modes_are_converted_to_rgb(tmp_path: Path) -> None:
    path = tmp_path / "grey.png"
    Image.fromarray(np.full((80, 90), 77, np.uint8), mode="L").save(path)
    rgb = load_image(path)
    assert rgb.shape == (80, 90, 3) and (rgb == 77).all()


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path: Path) -> None:
    path = tmp_path / "grey16.png"
    ramp = np.linspace(0, 65535, 90).round().astype(np.uint16)  # black to white across the width
    Image.fromarray(np.tile(ramp, (80, 1))).save(path)
    rgb = load_image(path)
    expected = np.round(ramp / 257.0).astype(np.uint8)  # 65535 / 255 = 257 exactly
    assert rgb.shape == (80, 90, 3) and (rgb[0, :, 0] == expected).all() and (rgb[..., 0] == rgb[..., 2]).all()


def test_real_portrait_with_a_real_detector(portraits: list[Path]) -> None:
    pytest.importorskip("dlib")
    from generator.tiny import TinyFaceAnalyser

    ref = prepare_reference(portraits[0], TinyFaceAnalyser())
    x1, y1, x2, y2 = ref.face_box
    assert ref.square and 0 <= x1 < x2 <= 480 and 0 <= y1 < y2 <= 480
    assert 60 < x2 - x1 < 300  # a face, not the whole image
    blank = np.full((480, 480, 3), 128, dtype=np.uint8)
    with pytest.raises(InputError, match="must show a face"):
        prepare_reference(blank, TinyFaceAnalyser())


def test_missing_insightface_pack_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="insightface model pack"):
        load_insightface(tmp_path / "nope")


def _metrics_pack_builder() -> Any:
    """The metrics tests' tiny insightface pack builder (real ONNX files insightface's own router loads)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "metrics" / "insightface_fixtures.py"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    spec = importlib.util.spec_from_file_location("insightface_fixtures_for_face", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_insightface_loader_on_a_tiny_pack(tmp_path: Path) -> None:
    """``load_insightface`` → insightface's FaceAnalysis on a pack folder; the largest detection's raw 512-d
    embedding becomes the identity; a dark image has no face and is refused."""
    pytest.importorskip("insightface")
    builder = _metrics_pack_builder()
    pack = tmp_path / "pack"
    pack.mkdir()
    builder.build_detector(pack / "det_tiny.onnx")
    builder.build_recogniser(pack / "w_tiny.onnx", dim=512)
    analyser = load_insightface(pack, det_size=(builder.DET_SIZE, builder.DET_SIZE))
    image = np.zeros((320, 480, 3), dtype=np.uint8)
    image[80:240, 160:320] = 255  # the tiny detector "sees a face" in bright regions
    ref = prepare_reference(image, analyser, subject="bright.png")
    assert ref.face_embedding.shape == (512,) and float(ref.face_embedding.norm()) > 0
    assert abs(float(ref.face_embedding.norm()) - 1.0) > 1e-3  # raw, not normalised
    x1, y1, x2, y2 = ref.face_box
    assert x1 < 240 < x2 and y1 < 160 < y2
    with pytest.raises(InputError, match="must show a face"):
        prepare_reference(np.zeros((320, 480, 3), np.uint8), analyser, subject="dark.png")
