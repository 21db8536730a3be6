"""S3FD face detector (Zhang et al. 2017) as used by the syncnet_python face-tracking pipeline.

The network loads the state dict layout of ``sfd_face.pth`` (``vgg.N``, ``L2Norm3_3/4_3/5_3.weight``, ``extras.N``,
``loc.N``, ``conf.N``). Detection follows the syncnet_python protocol:

* the frame is resized by ``scale`` (0.25) with bilinear interpolation (``cv2.resize`` with ``fx=fy=scale``);
* the network sees the frame in **RGB** channel order with the per-channel means (R 123, G 117, B 104) subtracted.
  The reference code converts the BGR frame to RGB, flips to BGR, subtracts [104, 117, 123] and flips back, so the
  "BGR mean [104, 117, 123]" is applied to the RGB tensor's reversed channels — this module reproduces exactly that;
* a face anchor per feature-map cell (strides 4..128, anchor sizes 16..512 px at the scaled resolution), the first
  level's background score being the max of three background logits (max-out), softmax, box decoding with variances
  (0.1, 0.2);
* anchors scoring above ``conf_threshold`` (0.9), greedy NMS at IoU 0.3 (top 5000 in, at most 750 out), boxes scaled
  to the original frame's pixels, then a second greedy NMS at IoU 0.1.

The reference first keeps anchors above 0.05, runs NMS at 0.3 and only then drops those below ``conf_threshold``.
Greedy NMS visits boxes by descending score, so a box can only be suppressed by a higher-scoring one: filtering at
``conf_threshold`` first keeps the same boxes (as long as fewer than 5000 anchors pass it) and is much cheaper.
Frames are run through the network in batches (same result per frame as one at a time).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from metrics.state_dict import load_state_dict_checked
from reports.errors import MeasurementError

#: Per-channel means in the order the network sees the channels (R, G, B).
RGB_MEAN = np.array([123.0, 117.0, 104.0], dtype=np.float32)
ANCHOR_STEPS = (4, 8, 16, 32, 64, 128)
ANCHOR_SIZES = (16, 32, 64, 128, 256, 512)
VARIANCES = (0.1, 0.2)
NMS_TOP_K_IN = 5000
NMS_TOP_K_OUT = 750
NMS_IOU_ANCHORS = 0.3
NMS_IOU_FACES = 0.1
MAX_BATCH_PIXELS = 1_000_000  # network-input pixels per batch: bounds memory for large frames

# VGG-16 trunk (conv1_1 .. conv5_3, then fc6 as a dilated 3x3 conv and fc7 as 1x1), indices as in sfd_face.pth.
_VGG_SPEC: tuple[tuple[str, int, int], ...] = (
    ("conv", 3, 64),
    ("conv", 64, 64),
    ("pool", 0, 0),
    ("conv", 64, 128),
    ("conv", 128, 128),
    ("pool", 0, 0),
    ("conv", 128, 256),
    ("conv", 256, 256),
    ("conv", 256, 256),
    ("pool_ceil", 0, 0),
    ("conv", 256, 512),
    ("conv", 512, 512),
    ("conv", 512, 512),
    ("pool", 0, 0),
    ("conv", 512, 512),
    ("conv", 512, 512),
    ("conv", 512, 512),
    ("pool", 0, 0),
    ("fc6", 512, 1024),
    ("fc7", 1024, 1024),
)
# Taps into the trunk (index *after which* the source is taken) for conv3_3, conv4_3, conv5_3.
_TAPS = (16, 23, 30)


def _vgg_layers() -> list[nn.Module]:
    layers: list[nn.Module] = []
    for kind, cin, cout in _VGG_SPEC:
        if kind == "conv":
            layers += [nn.Conv2d(cin, cout, 3, 1, padding=1), nn.ReLU(inplace=True)]
        elif kind == "fc6":
            layers += [nn.Conv2d(cin, cout, 3, 1, padding=6, dilation=6), nn.ReLU(inplace=True)]
        elif kind == "fc7":
            layers += [nn.Conv2d(cin, cout, 1, 1), nn.ReLU(inplace=True)]
        else:
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=kind == "pool_ceil"))
    return layers


class L2Norm(nn.Module):
    """Channel-wise L2 normalisation with a learned per-channel scale (ParseNet)."""

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))
        self.eps = 1e-10

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + self.eps
        return self.weight[None, :, None, None] * (x / norm)


class S3FDNet(nn.Module):
    """The S3FD network: returns per-anchor face probability and regression offsets."""

    def __init__(self) -> None:
        super().__init__()
        self.vgg = nn.ModuleList(_vgg_layers())
        self.L2Norm3_3 = L2Norm(256, 10)
        self.L2Norm4_3 = L2Norm(512, 8)
        self.L2Norm5_3 = L2Norm(512, 5)
        self.extras = nn.ModuleList(
            [
                nn.Conv2d(1024, 256, 1, 1),
                nn.Conv2d(256, 512, 3, 2, padding=1),
                nn.Conv2d(512, 128, 1, 1),
                nn.Conv2d(128, 256, 3, 2, padding=1),
            ]
        )
        source_channels = (256, 512, 512, 1024, 512, 256)
        self.loc = nn.ModuleList([nn.Conv2d(c, 4, 3, 1, padding=1) for c in source_channels])
        # The first level predicts 3 background logits + 1 face logit ("max-out background label").
        self.conf = nn.ModuleList(
            [nn.Conv2d(c, 4 if i == 0 else 2, 3, 1, padding=1) for i, c in enumerate(source_channels)]
        )

    def _sources(self, x: torch.Tensor) -> list[torch.Tensor]:
        sources = []
        norms = (self.L2Norm3_3, self.L2Norm4_3, self.L2Norm5_3)
        start = 0
        for tap, norm in zip(_TAPS, norms, strict=True):
            for layer in self.vgg[start:tap]:
                x = layer(x)
            sources.append(norm(x))
            start = tap
        for layer in self.vgg[start:]:
            x = layer(x)
        sources.append(x)
        for k, layer in enumerate(self.extras):
            x = torch.relu(layer(x))
            if k % 2 == 1:
                sources.append(x)
        return sources

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        """``x``: [B, 3, H, W] float (RGB, mean-subtracted). Returns (face_prob [B, A], loc [B, A, 4], map sizes)."""
        locs, logits, sizes = [], [], []
        for level, source in enumerate(self._sources(x)):
            conf = self.conf[level](source)
            if level == 0:
                background = conf[:, 0:3].amax(dim=1, keepdim=True)
                conf = torch.cat((background, conf[:, 3:]), dim=1)
            sizes.append((source.shape[2], source.shape[3]))
            locs.append(self.loc[level](source).permute(0, 2, 3, 1).reshape(x.shape[0], -1, 4))
            logits.append(conf.permute(0, 2, 3, 1).reshape(x.shape[0], -1, 2))
        face_prob = torch.softmax(torch.cat(logits, dim=1), dim=-1)[..., 1]
        return face_prob, torch.cat(locs, dim=1), sizes


def load_s3fd(path: Path, device: str = "cpu") -> S3FDNet:
    """Build the network and load ``sfd_face.pth`` (a ``torch.save``-d state dict) with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise MeasurementError("not measured", f"{path} missing — run `hallo3-gate weights fetch s3fd`")
    net = S3FDNet()
    load_state_dict_checked(net, path)
    return net.to(device).eval()


def anchor_boxes(image_hw: tuple[int, int], map_sizes: list[tuple[int, int]]) -> torch.Tensor:
    """Prior boxes (cx, cy, w, h), normalised to the network input, one per feature-map cell, row-major."""
    im_h, im_w = image_hw
    priors = []
    for (fh, fw), step, size in zip(map_sizes, ANCHOR_STEPS, ANCHOR_SIZES, strict=True):
        rows, cols = np.meshgrid(np.arange(fh), np.arange(fw), indexing="ij")
        cx = (cols.ravel() + 0.5) / (im_w / step)
        cy = (rows.ravel() + 0.5) / (im_h / step)
        wh = np.broadcast_to([size / im_w, size / im_h], (cx.size, 2))
        priors.append(np.column_stack([cx, cy, wh]))
    return torch.from_numpy(np.concatenate(priors).astype(np.float32))


def decode_boxes(loc: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """Regression offsets -> (x1, y1, x2, y2), normalised (SSD encoding with variances 0.1 / 0.2)."""
    centre = priors[:, :2] + loc[:, :2] * VARIANCES[0] * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(loc[:, 2:] * VARIANCES[1])
    top_left = centre - size / 2
    return torch.cat((top_left, size + top_left), dim=1)


def nms_anchors(boxes: torch.Tensor, scores: torch.Tensor, iou: float, top_k_in: int, top_k_out: int) -> torch.Tensor:
    """Greedy NMS in float32 on normalised boxes; returns kept indices by descending score."""
    order = torch.argsort(scores, descending=True, stable=True)[:top_k_in]
    x1, y1, x2, y2 = boxes.unbind(1)
    area = (x2 - x1) * (y2 - y1)
    keep: list[int] = []
    while order.numel() > 0 and len(keep) < top_k_out:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = (torch.minimum(x2[rest], x2[i]) - torch.maximum(x1[rest], x1[i])).clamp(min=0.0)
        h = (torch.minimum(y2[rest], y2[i]) - torch.maximum(y1[rest], y1[i])).clamp(min=0.0)
        inter = w * h
        overlap = inter / ((area[rest] - inter) + area[i])
        order = rest[overlap <= iou]
    return torch.tensor(keep, dtype=torch.long)


def nms_faces(dets: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS in float64 on pixel boxes [N, 5] (x1, y1, x2, y2, score); returns kept rows."""
    x1, y1, x2, y2, scores = dets.T
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[order[1:]]) - np.maximum(x1[i], x1[order[1:]]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[order[1:]]) - np.maximum(y1[i], y1[order[1:]]))
        inter = w * h
        overlap = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[1:][overlap <= iou]
    return dets[keep]


class S3FDDetector:
    """Runs S3FD on RGB uint8 frames the syncnet_python way; one [N, 5] array (x1, y1, x2, y2, score) per frame."""

    def __init__(self, net: S3FDNet, *, scale: float = 0.25, conf_threshold: float = 0.9, batch_size: int = 8) -> None:
        self.net = net.eval()
        self.scale = scale
        self.conf_threshold = conf_threshold
        self.batch_size = batch_size
        self._device = next(net.parameters()).device

    def _prepare(self, frame_rgb: np.ndarray) -> np.ndarray:
        small = cv2.resize(frame_rgb, dsize=(0, 0), fx=self.scale, fy=self.scale, interpolation=cv2.INTER_LINEAR)
        return (small.astype(np.float32) - RGB_MEAN).transpose(2, 0, 1)

    @torch.inference_mode()
    def detect(self, frames_rgb: np.ndarray) -> list[np.ndarray]:
        """``frames_rgb``: [T, H, W, 3] uint8 (all frames the same size)."""
        height, width = frames_rgb.shape[1:3]
        pixel_scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        results: list[np.ndarray] = []
        priors: torch.Tensor | None = None
        scaled_pixels = max(1, round(height * self.scale) * round(width * self.scale))
        step = max(1, min(self.batch_size, MAX_BATCH_PIXELS // scaled_pixels))
        for start in range(0, len(frames_rgb), step):
            batch = np.stack([self._prepare(f) for f in frames_rgb[start : start + step]])
            x = torch.from_numpy(batch).to(self._device)
            face_prob, loc, sizes = self.net(x)
            if priors is None:
                priors = anchor_boxes((x.shape[2], x.shape[3]), sizes)
            for prob, offsets in zip(face_prob.cpu(), loc.cpu(), strict=True):
                results.append(self._faces(prob, offsets, priors, pixel_scale))
        return results

    def _faces(
        self, prob: torch.Tensor, loc: torch.Tensor, priors: torch.Tensor, pixel_scale: torch.Tensor
    ) -> np.ndarray:
        candidates = torch.nonzero(prob > self.conf_threshold).squeeze(1)
        if candidates.numel() == 0:
            return np.empty((0, 5))
        boxes = decode_boxes(loc[candidates], priors[candidates])
        scores = prob[candidates]
        keep = nms_anchors(boxes, scores, NMS_IOU_ANCHORS, NMS_TOP_K_IN, NMS_TOP_K_OUT)
        pixels = (boxes[keep] * pixel_scale).numpy().astype(np.float64)
        dets = np.column_stack([pixels, scores[keep].numpy().astype(np.float64)])
        return nms_faces(dets, NMS_IOU_FACES)
