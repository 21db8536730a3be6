"""Load a ``torch.save``-d state dict file into a network safely (``weights_only=True``) and strictly.

Errors name the file and the first mismatch (unreadable file, not a state dict, missing/unexpected keys, a shape).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from reports.errors import InputError, loader_reason


def load_state_dict_checked(net: nn.Module, path: Path) -> None:
    """Load a state dict file into ``net`` (weights_only), naming the file and the first mismatch on error.

    BatchNorm ``num_batches_tracked`` counters are optional: files written by torch < 0.4.1 (such as the Oxford
    ``syncnet_v2.model``) do not carry them, and they play no part in inference.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable, truncated, or a pickle that is not plain tensors
        raise InputError(
            str(path), "a torch.save state dict loadable with weights_only=True", loader_reason(exc)
        ) from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(str(path), "a state dict (name -> tensor)", type(state).__name__)
    expected = net.state_dict()
    required = {k for k in expected if not k.endswith("num_batches_tracked")}
    missing = sorted(required - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    if missing or unexpected:
        raise InputError(
            str(path), "the state dict keys of this network", f"missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise InputError(str(path), f"{key} of shape {tuple(expected[key].shape)}", tuple(tensor.shape))
    net.load_state_dict(state, strict=False)
