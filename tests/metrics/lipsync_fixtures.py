"""Fixture weights for the lip-sync tests and benchmark, in the real on-disk formats.

``syncnet_v2.model`` and ``sfd_face.pth`` are legacy (pre-zip) ``torch.save`` files of plain state dicts; the Oxford
SyncNet file predates BatchNorm's ``num_batches_tracked``. A random seeded state dict of the real networks, saved the
same way, is within a few hundred bytes of the real files' sizes (54,573,454 vs 54,573,114 B; 89,845,326 vs
89,844,381 B), so the real loaders are exercised on the real key names and shapes.

The S3FD fixture can be made *detecting* (``detecting_s3fd``): on any video it reports one stable 256 px box, so
the whole pipeline runs end to end — meaningless numbers, identical arithmetic.
"""

from __future__ import annotations

from pathlib import Path

import torch

from metrics.s3fd import S3FDNet
from metrics.syncnet import SyncNet

FACE_LEVEL = 2  # stride 16, 64 px anchors at scale 0.25 -> 256 px boxes on the full frame


def _randomise_batchnorm(net: torch.nn.Module, gen: torch.Generator) -> None:
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)


def write_syncnet_fixture(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    net = SyncNet()
    _randomise_batchnorm(net, torch.Generator().manual_seed(seed + 1))
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, path, _use_new_zipfile_serialization=False)
    return path


def random_s3fd(seed: int = 0, conf_gain: float = 1.0) -> S3FDNet:
    torch.manual_seed(seed)
    net = S3FDNet()
    with torch.no_grad():
        for layer in net.conf:
            layer.weight.mul_(conf_gain)
    return net.eval()


def write_s3fd_fixture(path: Path, net: S3FDNet) -> Path:
    torch.save(net.state_dict(), path, _use_new_zipfile_serialization=False)
    return path


def detecting_s3fd(seed: int = 0, face_logit: float = 5.0, penalty: float = 2.0) -> S3FDNet:
    """A random S3FD that reports one confident 'face': the top-left 64 px anchor of the stride-16 level.

    Box regression is zeroed (boxes = anchors) and every other level votes background. The face read-out of the
    stride-16 level is ``face_logit - penalty * sum(features)`` over the kernel taps that lie above or left of the
    cell: the trunk's features are non-negative and L2-normalised (sum >= 5 per tap), so every cell scores far below
    0.9 except the top-left one, whose taps there fall in the zero padding — on any frame, i.e. a stable track.
    """
    net = random_s3fd(seed)
    with torch.no_grad():
        for level, (loc, conf) in enumerate(zip(net.loc, net.conf, strict=True)):
            loc.weight.zero_()
            loc.bias.zero_()
            conf.weight.zero_()
            conf.bias.zero_()
            if level != FACE_LEVEL:
                conf.bias[-1] = -20.0
        face = net.conf[FACE_LEVEL]
        face.weight[1, :, 0, :] = -penalty
        face.weight[1, :, :, 0] = -penalty
        face.bias[1] = face_logit
    return net.eval()
