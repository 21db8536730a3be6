"""The RivaGAN encoder/decoder networks shipped in the invisible-watermark 0.2.0 wheel, run with onnxruntime.

The two ONNX graphs (``imwatermark/rivagan_encoder.onnx``, ``rivagan_decoder.onnx``) are fully convolutional
(11×11 kernels, any height/width, a batch axis and a singleton time axis). What they expect, read from the library
and the graphs themselves:

- input ``frame``: float32 ``[B, 3, 1, H, W]``, **BGR** channel order (the library is fed OpenCV images), values
  ``pixel / 127.5 - 1`` in [-1, 1];
- encoder input ``data``: float32 ``[B, 32]`` of 0/1 bits (the graph maps them to ±1 itself);
- encoder output: ``frame + 0.016 * tanh(...)`` — an additive residual of at most ±2 grey levels, which the library
  clamps to [-1, 1];
- decoder output: ``[B, 32]`` unbounded soft values (attention-weighted spatial means); the library thresholds them at
  0.52, i.e. essentially at their sign.

This module only knows tensors: frames in, residuals or soft bits out. Colour order and scaling live here so no
caller can get them wrong. The model files are checked against pinned SHA-256 digests, because a different network
would write (and read) a different watermark.
"""

from __future__ import annotations

import importlib.util
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from reports.errors import MeasurementError
from reports.hashing import sha256_file

BITS = 32
THRESHOLD = 0.52  # the library's decision threshold on the decoder's soft outputs
ENCODER_FILE = "rivagan_encoder.onnx"
DECODER_FILE = "rivagan_decoder.onnx"
SHA256 = {
    ENCODER_FILE: "66bc7814fadac7d686105c8ab26c6cf2cc8e40deb83e67bb6ef5b9de9b8ece0d",
    DECODER_FILE: "6b006690cf352fa50a91a0b6d6241dbcded0a9957969e2c0665cf9a7011b3880",
}
_LOCK = threading.Lock()


def model_dir() -> Path:
    """The folder of the installed ``imwatermark`` package (found without importing it: it imports torch)."""
    spec = importlib.util.find_spec("imwatermark")
    if spec is None or not spec.submodule_search_locations:
        raise MeasurementError("imwatermark", "invisible-watermark==0.2.0 must be installed (ships RivaGAN)", "absent")
    return Path(next(iter(spec.submodule_search_locations)))


def model_path(name: str) -> Path:
    path = model_dir() / name
    if not path.is_file():
        raise MeasurementError(
            str(path), "the RivaGAN ONNX file from the invisible-watermark wheel must exist", "absent"
        )
    digest = sha256_file(path)
    if digest != SHA256[name]:
        raise MeasurementError(str(path), f"sha256 must be {SHA256[name]}", digest)
    return path


@lru_cache(maxsize=8)
def _session(name: str, threads: int):  # -> onnxruntime.InferenceSession
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(0, int(threads))
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(model_path(name)), opts, providers=["CPUExecutionProvider"])


def to_network(frames_rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB ``[B,H,W,3]`` → float32 BGR ``[B,3,1,H,W]`` in [-1, 1]."""
    x = frames_rgb[..., ::-1].astype(np.float32) / 127.5 - 1.0
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)[:, :, None])


def residual(frames_rgb: np.ndarray, bits: np.ndarray, *, threads: int = 2) -> np.ndarray:
    """The encoder's additive change in grey levels, float32 RGB ``[B,H,W,3]``, for one 32-bit message per frame."""
    bits = np.asarray(bits, dtype=np.float32).reshape(len(frames_rgb), BITS)
    x = to_network(frames_rgb)
    with _LOCK:  # one inference at a time per process: the sessions already use every thread we allow
        y = _session(ENCODER_FILE, threads).run(None, {"frame": x, "data": bits})[0]
    r = (np.clip(y, -1.0, 1.0) - x)[:, :, 0] * 127.5  # [B,3,H,W] BGR grey levels
    return np.ascontiguousarray(r.transpose(0, 2, 3, 1)[..., ::-1])


def soft_bits(frames_rgb: np.ndarray, *, threads: int = 2) -> np.ndarray:
    """The decoder's soft outputs ``[B,32]`` centred on the library's threshold (positive means bit 1)."""
    with _LOCK:
        z = _session(DECODER_FILE, threads).run(None, {"frame": to_network(frames_rgb)})[0]
    return z.astype(np.float32) - THRESHOLD
