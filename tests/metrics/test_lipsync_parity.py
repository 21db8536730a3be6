"""Our Sync-C/D pipeline against the reference syncnet-python 0.2.3, stage by stage and end to end, on the same
fixture weights (random, in the real file formats) and the same pixels.

The reference reads frames with ``cv2.imread`` from ``*.jpg`` files; ``cv2.imread`` decodes by content, so we hand it
PNG bytes under ``.jpg`` names: identical decoded arrays, no JPEG loss on either side.
"""

from __future__ import annotations

import json
import types
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from lipsync_fixtures import detecting_s3fd, random_s3fd, write_s3fd_fixture, write_syncnet_fixture
from scipy.io import wavfile

from metrics.lipsync import LipsyncConfig, measure_lipsync
from metrics.s3fd import S3FDDetector, load_s3fd
from metrics.syncnet import embed_track, evaluate_sync, load_syncnet, offset_distances, pcm16_levels
from metrics.tracking import FaceTrack, crop_track, detect_scenes, track_faces

reference = pytest.importorskip(
    "syncnet_python", reason="syncnet-python==0.2.3 (the parity reference) is not installed"
)
from syncnet_python import syncnet_pipeline as ref_pipeline  # noqa: E402
from syncnet_python.detectors.s3fd import S3FD as RefS3FD  # noqa: E402
from syncnet_python.detectors.s3fd.nets import S3FDNet as RefS3FDNet  # noqa: E402
from syncnet_python.SyncNetInstance import SyncNetInstance, calc_pdist  # noqa: E402
from syncnet_python.SyncNetModel import S as RefSyncNet  # noqa: E402

REAL_SYNCNET_BYTES = 54_573_114
REAL_S3FD_BYTES = 89_844_381


@pytest.fixture(scope="module")
def syncnet_file(tmp_path_factory) -> Path:
    return write_syncnet_fixture(tmp_path_factory.mktemp("w") / "syncnet_v2.model", seed=3)


@pytest.fixture(scope="module")
def ref_syncnet(syncnet_file) -> SyncNetInstance:
    net = RefSyncNet()
    net.load_state_dict(torch.load(syncnet_file, map_location="cpu"))  # the reference's own loading code
    return SyncNetInstance(net.eval(), device="cpu")


def _moving_face_frames(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Textured frames with a bright ellipse that drifts and opens/closes: BGR uint8 [n, size, size, 3]."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), (9, 9), 0)
    frames = []
    for t in range(n):
        img = base.copy()
        centre = (size // 2 + int(6 * np.sin(t / 4)), size // 2 + int(4 * np.cos(t / 5)))
        cv2.ellipse(img, centre, (size // 5, size // 4), 0, 0, 360, (60, 140, 220), -1)
        cv2.ellipse(
            img,
            (centre[0], centre[1] + size // 8),
            (size // 12, 2 + int(8 * abs(np.sin(t / 2)))),
            0,
            0,
            360,
            (20, 20, 90),
            -1,
        )
        frames.append(img)
    return np.stack(frames)


def _speechlike(seconds: float, seed: int = 0, rate: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.1 * t) ** 2
    tone = np.sin(2 * np.pi * 180 * t) + 0.5 * np.sin(2 * np.pi * 720 * t + 1.0)
    return (0.3 * envelope * tone + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def _write_lossless_jpg_dir(directory: Path, frames_bgr: np.ndarray) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(frames_bgr):
        path = directory / f"{i + 1:06d}.jpg"
        ok, png = cv2.imencode(".png", frame)
        assert ok
        path.write_bytes(png.tobytes())
        paths.append(str(path))
    return paths


def test_fixture_files_have_the_real_format(syncnet_file, tmp_path):
    s3fd_file = write_s3fd_fixture(tmp_path / "sfd_face.pth", random_s3fd(1))
    for path, real in ((syncnet_file, REAL_SYNCNET_BYTES), (s3fd_file, REAL_S3FD_BYTES)):
        assert not zipfile.is_zipfile(path)  # legacy torch.save, like the Oxford files
        assert abs(path.stat().st_size - real) < 1e-4 * real  # same tensors; only pickle metadata differs
    state = torch.load(syncnet_file, map_location="cpu", weights_only=True)
    assert not any(k.endswith("num_batches_tracked") for k in state)
    ref = RefS3FDNet(device="cpu")
    ref.load_state_dict(torch.load(s3fd_file, map_location="cpu"))  # strict: the key layout is the reference's
    ours = load_s3fd(s3fd_file)
    for key, value in ref.state_dict().items():
        assert torch.equal(value, ours.state_dict()[key])


def test_evaluate_equals_reference(tmp_path, syncnet_file, ref_syncnet, capsys):
    crops = _moving_face_frames(16, 224, seed=1)
    audio = _speechlike(16 / 25, seed=2)
    pcm = pcm16_levels(audio)
    _write_lossless_jpg_dir(tmp_path / "crop", crops)
    wavfile.write(tmp_path / "crop" / "audio.wav", 16000, pcm.astype(np.int16))
    opt = types.SimpleNamespace(tmp_dir=str(tmp_path / "crop"), batch_size=20, vshift=15)
    ref_offset, ref_conf, ref_dist = ref_syncnet.evaluate(opt)

    net = load_syncnet(syncnet_file)
    ours = evaluate_sync(net, crops, pcm, vshift=15, batch_size=4)  # other batching, same windows
    assert ours.windows == 16 - 5
    assert ours.offset == ref_offset
    assert ours.min_dist == pytest.approx(ref_dist, abs=1e-3)
    assert ours.confidence == pytest.approx(ref_conf, abs=1e-3)
    assert ours.confidence > 0  # random weights still give a non-flat distance profile

    # per-offset distances against the reference's calc_pdist on the reference network's embeddings
    lip, aud = embed_track(net, crops, pcm)
    video = torch.from_numpy(crops.transpose(3, 0, 1, 2)[None].astype(np.float32))
    ref_lip = torch.cat([ref_syncnet.__S__.forward_lip(video[:, :, i : i + 5]) for i in range(11)]).detach()
    assert torch.allclose(lip, ref_lip, rtol=1e-4, atol=1e-3)
    ref_dists = torch.stack(calc_pdist(ref_lip, aud, vshift=15), 1).T
    assert torch.allclose(offset_distances(lip, aud, 15), ref_dists, atol=1e-3)


def test_s3fd_detections_equal_reference(tmp_path):
    net = random_s3fd(seed=5, conf_gain=30.0)  # spread the random scores so that some exceed the threshold
    path = write_s3fd_fixture(tmp_path / "sfd_face.pth", net)
    ref_net = RefS3FDNet(device="cpu")
    ref_net.load_state_dict(torch.load(path, map_location="cpu"))
    ref = RefS3FD(ref_net.eval(), device="cpu")
    frame_bgr = _moving_face_frames(1, 320, seed=4)[0][:, :288]  # non-square
    frame_rgb = np.ascontiguousarray(frame_bgr[..., ::-1])
    ours = S3FDDetector(load_s3fd(path), scale=0.5, conf_threshold=0.9).detect(frame_rgb[None])[0]
    theirs = ref.detect_faces(frame_rgb, conf_th=0.9, scales=[0.5])
    assert len(theirs) >= 3
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=1e-3)


def _reference_track(detections: list[np.ndarray], min_track: int) -> list[dict]:
    cfg = ref_pipeline.PipelineConfig(min_track=min_track)
    stub = types.SimpleNamespace(cfg=cfg, _iou=ref_pipeline.SyncNetPipeline._iou)
    dets = [[{"frame": t, "bbox": list(b[:4]), "conf": 1.0} for b in d] for t, d in enumerate(detections)]
    return ref_pipeline.SyncNetPipeline._track(stub, dets)


def test_tracks_equal_reference():
    rng = np.random.default_rng(7)
    detections: list[np.ndarray] = []
    for t in range(120):
        faces = []
        if t % 9 != 4 and not 60 <= t < 70:  # missed frames and a 10-frame gap (<= 25): interpolated
            x = 300 + 2.0 * t + rng.normal(0, 2)
            faces.append([x, 100 + rng.normal(0, 2), x + 180, 300 + rng.normal(0, 2), 0.99])
        if t >= 30:  # a second, smaller face far away: its own track
            faces.append([20 + rng.normal(0, 1), 20, 140, 150 + rng.normal(0, 1), 0.95])
        if t == 50:  # a one-off false positive
            faces.append([700, 400, 760, 470, 0.92])
        detections.append(np.array(faces))
    ours = track_faces(detections, (0, 120), min_track=50)
    theirs = _reference_track(detections, min_track=50)
    assert len(ours) == len(theirs) == 2
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a.frames, b["frame"])
        np.testing.assert_allclose(a.boxes, b["bbox"], atol=1e-9)
    assert track_faces(detections, (0, 120), min_track=50, min_face_size=200) == []
    assert track_faces(detections, (0, 40), min_track=50) == []  # scene shorter than min_track


def test_crops_equal_reference(tmp_path, monkeypatch):
    frames_bgr = _moving_face_frames(30, 320, seed=8)
    paths = _write_lossless_jpg_dir(tmp_path / "frames", frames_bgr)
    t = np.arange(30)
    boxes = np.column_stack([10 + 3 * t, 5 + t, 150 + 3 * t, 170 + 2 * t]).astype(np.float64)  # runs off the edge
    track = FaceTrack(frames=t, boxes=boxes, detections=30)

    written: list[np.ndarray] = []

    class CaptureWriter:
        def __init__(self, path, *args):
            Path(path).touch()

        def write(self, image):
            written.append(image.copy())

        def release(self):
            pass

    monkeypatch.setattr(ref_pipeline.cv2, "VideoWriter", CaptureWriter)
    monkeypatch.setattr(ref_pipeline.subprocess, "run", lambda *a, **k: None)
    stub = types.SimpleNamespace(cfg=ref_pipeline.PipelineConfig())
    ref_pipeline.SyncNetPipeline._crop(stub, {"frame": t, "bbox": boxes}, paths, "unused.wav", tmp_path / "crop")

    ours = crop_track(frames_bgr, track, crop_scale=0.40)
    assert len(written) == 30
    np.testing.assert_array_equal(ours, np.stack(written))


def test_scenes_equal_reference(tmp_path):
    rng = np.random.default_rng(9)
    a = cv2.GaussianBlur(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), (15, 15), 0)
    b = np.clip(a.astype(int)[::-1, ::-1] * 0.5 + 90, 0, 255).astype(np.uint8)
    clip = np.stack([a] * 40 + [b] * 35 + [a] * 30)
    path = tmp_path / "cut.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (320, 240))
    for frame in clip:
        writer.write(frame)
    writer.release()
    decoded = []
    cap = cv2.VideoCapture(str(path))
    while (ok := cap.read())[0]:
        decoded.append(ok[1])
    decoded_bgr = np.stack(decoded)

    vm = ref_pipeline.VideoManager([str(path)])
    sm = ref_pipeline.SceneManager(ref_pipeline.StatsManager())
    sm.add_detector(ref_pipeline.ContentDetector())
    vm.start()
    sm.detect_scenes(frame_source=vm)
    theirs = [(s.frame_num, e.frame_num) for s, e in sm.get_scene_list(vm.get_base_timecode())]
    ours = detect_scenes(decoded_bgr, rgb=False)
    assert ours == theirs == [(0, 40), (40, 75), (75, 105)]
    assert detect_scenes(np.stack([a] * 30), rgb=False) == [(0, 30)]


def test_whole_pipeline_equals_reference_chain(tmp_path, syncnet_file, ref_syncnet, capsys):
    """measure_lipsync vs the reference's own stages chained on the same pixels: detect -> track -> crop -> evaluate."""
    s3fd_file = write_s3fd_fixture(tmp_path / "sfd_face.pth", detecting_s3fd(seed=2))
    frames_bgr = _moving_face_frames(18, 256, seed=10)
    frames_rgb = np.ascontiguousarray(frames_bgr[..., ::-1])
    audio = _speechlike(18 / 25, seed=11)
    cfg = LipsyncConfig(min_track=12)
    result = measure_lipsync(
        frames_rgb, 25.0, audio, 16000, syncnet_weights=syncnet_file, s3fd_weights=s3fd_file, config=cfg
    )
    assert result.measured and len(result.tracks) == 1

    ref_net = RefS3FDNet(device="cpu")
    ref_net.load_state_dict(torch.load(s3fd_file, map_location="cpu"))
    detector = RefS3FD(ref_net.eval(), device="cpu")
    detections = [detector.detect_faces(f, conf_th=0.9, scales=[0.25]) for f in frames_rgb]
    (track,) = _reference_track(detections, min_track=12)
    paths = _write_lossless_jpg_dir(tmp_path / "frames", frames_bgr)

    crop_dir = tmp_path / "crop"
    frames_written: list[np.ndarray] = []

    class CaptureWriter:
        def __init__(self, path, *args):
            Path(path).touch()

        def write(self, image):
            frames_written.append(image.copy())

        def release(self):
            pass

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ref_pipeline.cv2, "VideoWriter", CaptureWriter)
        mp.setattr(ref_pipeline.subprocess, "run", lambda *a, **k: None)
        stub = types.SimpleNamespace(cfg=ref_pipeline.PipelineConfig(min_track=12))
        ref_pipeline.SyncNetPipeline._crop(stub, track, paths, "unused.wav", tmp_path / "c" / "00000")
    _write_lossless_jpg_dir(crop_dir, np.stack(frames_written))
    pcm = pcm16_levels(audio)[track["frame"][0] * 640 : (track["frame"][-1] + 1) * 640]
    wavfile.write(crop_dir / "audio.wav", 16000, pcm.astype(np.int16))
    offset, conf, dist = ref_syncnet.evaluate(types.SimpleNamespace(tmp_dir=str(crop_dir), batch_size=20, vshift=15))

    assert result.offset == offset
    assert result.sync_c == pytest.approx(conf, abs=1e-3)
    assert result.sync_d == pytest.approx(dist, abs=1e-3)
    rows = {m.name: m for m in result.measurements()}
    assert rows["sync_c"].value == pytest.approx(conf, abs=1e-3)
    assert rows["sync_d"].value == pytest.approx(dist, abs=1e-3)
    assert rows["sync_offset"].value == offset
    assert json.loads(json.dumps([m.to_dict() for m in rows.values()]))[0]["details"]["tracks"][0]["offset"] == offset
    series = result.framewise_confidence
    assert series.shape == (18,) and np.isfinite(series[2 : 2 + 13]).all() and np.isnan(series[:2]).all()
