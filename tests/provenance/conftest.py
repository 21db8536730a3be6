"""Fixtures for provenance tests: a development PKI, small real MP4s (PyAV, H.264 + AAC), tiny ingredients."""

from __future__ import annotations

import wave
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from provenance.keys import DEV_ROOT_CERT, SignerConfig, init_dev_keys, load_signer


def write_test_mp4(path: Path, *, frames: int = 8, size: int = 256, fps: int = 25, audio: bool = True) -> Path:
    """A small real H.264 (+ AAC) MP4 with seeded noise frames, written straight with PyAV."""
    rng = np.random.default_rng(7)
    with av.open(str(path), "w") as box:
        video = box.add_stream("libx264", rate=fps)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        sound = box.add_stream("aac", rate=16000, layout="mono") if audio else None
        for _ in range(frames):
            img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                box.mux(packet)
        for packet in video.encode():
            box.mux(packet)
        if sound is not None:
            samples = (0.2 * np.sin(np.arange(16000 * frames // fps) * 0.05)).astype(np.float32)[None]
            chunk = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            chunk.sample_rate = 16000
            for packet in sound.encode(chunk):
                box.mux(packet)
            for packet in sound.encode(None):
                box.mux(packet)
    return path


@pytest.fixture(scope="session")
def dev_keys_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("dev-keys")
    init_dev_keys(d)
    return d


@pytest.fixture(scope="session")
def signer(dev_keys_dir):
    return load_signer(SignerConfig.development_keys(dev_keys_dir))


@pytest.fixture(scope="session")
def root_pem(dev_keys_dir) -> bytes:
    return (dev_keys_dir / DEV_ROOT_CERT).read_bytes()


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def plain_mp4(media_dir) -> Path:
    return write_test_mp4(media_dir / "plain.mp4")


@pytest.fixture(scope="session")
def portrait_png(media_dir) -> Path:
    path = media_dir / "portrait.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="session")
def speech_wav(media_dir) -> Path:
    path = media_dir / "speech.wav"
    pcm = (3000 * np.sin(np.arange(8000) * 0.07)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.tobytes())
    return path
