"""SyncNet (Chung & Zisserman 2016, ``syncnet_v2.model``) and the syncnet_python ``evaluate`` arithmetic.

The network has two branches that embed 0.2 s of speech and of mouth motion into the same 1024-d space:

* audio: 13 MFCC x 20 frames (python_speech_features defaults at 16 kHz, 100 frames/s) -> 2-D conv stack -> FC;
* lips: 5 frames of 224x224 **BGR** face crops, raw 0..255 values -> 3-D conv stack -> FC.

Scoring follows ``SyncNetInstance.evaluate`` (syncnet_python; identical in syncnet-python 0.2.3):

1. usable length ``L = min(frames, floor(samples / 640))``; windows ``i = 0 .. L-5`` (exclusive), i.e. frames
   ``i..i+4`` and MFCC columns ``4i..4i+19``;
2. Euclidean distance (``pairwise_distance``, eps 1e-6) between window ``i``'s lip embedding and the audio embeddings
   of windows ``i-vshift .. i+vshift``, audio zero-padded by ``vshift`` rows at both ends;
3. mean over windows per offset -> ``2*vshift+1`` distances; Sync-D = min, Sync-C = median - min,
   AV offset = vshift - argmin; per-window confidence = median - distance at argmin, median-filtered (kernel 9).

Speed without changing the arithmetic: every lip layer after the first has temporal kernel 1 and the first has
temporal kernel 5 and no temporal padding, so running the lip branch once over a run of ``n+4`` frames yields the
``n`` window embeddings exactly (no frame is copied five times); audio windows are strided views of one MFCC matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import python_speech_features
import torch
from scipy import signal
from torch import nn

from metrics.state_dict import load_state_dict_checked
from reports.errors import MeasurementError

SAMPLE_RATE = 16000
FRAME_RATE = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FRAME_RATE  # 640
WINDOW_FRAMES = 5
MFCC_PER_FRAME = 4  # 100 MFCC frames/s at 25 video frames/s
MFCC_WINDOW = 20
CROP_SIZE = 224
FRAMEWISE_MEDFILT = 9


def _bn_relu_2d(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]


def _bn_relu_3d(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm3d(channels), nn.ReLU(inplace=True)]


def _fc_head(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, width))


class SyncNet(nn.Module):
    """The two-stream network; module names and indices follow ``syncnet_v2.model``'s state dict."""

    def __init__(self, embedding_size: int = 1024) -> None:
        super().__init__()
        self.netcnnaud = nn.Sequential(
            nn.Conv2d(1, 64, kernel_size=3, padding=1),
            *_bn_relu_2d(64),
            nn.MaxPool2d(kernel_size=1, stride=1),
            nn.Conv2d(64, 192, kernel_size=3, padding=1),
            *_bn_relu_2d(192),
            nn.MaxPool2d(kernel_size=3, stride=(1, 2)),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            *_bn_relu_2d(384),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            *_bn_relu_2d(256),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            *_bn_relu_2d(256),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(256, 512, kernel_size=(5, 4)),
            *_bn_relu_2d(512),
        )
        self.netfcaud = _fc_head(embedding_size)
        self.netfclip = _fc_head(embedding_size)
        self.netcnnlip = nn.Sequential(
            nn.Conv3d(3, 96, kernel_size=(5, 7, 7), stride=(1, 2, 2)),
            *_bn_relu_3d(96),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(96, 256, kernel_size=(1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),
            *_bn_relu_3d(256),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            *_bn_relu_3d(256),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            *_bn_relu_3d(256),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            *_bn_relu_3d(256),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(256, 512, kernel_size=(1, 6, 6)),
            *_bn_relu_3d(512),
        )

    def embed_audio(self, mfcc_windows: torch.Tensor) -> torch.Tensor:
        """[N, 1, 13, 20] MFCC windows -> [N, 1024]."""
        return self.netfcaud(self.netcnnaud(mfcc_windows).flatten(1))

    def embed_lips(self, frames: torch.Tensor) -> torch.Tensor:
        """[1, 3, n+4, 224, 224] consecutive BGR frames -> [n, 1024], one embedding per 5-frame window."""
        features = self.netcnnlip(frames)  # [1, 512, n, 1, 1]
        return self.netfclip(features[0].permute(1, 0, 2, 3).flatten(1))


def load_syncnet(path: Path, device: str = "cpu") -> SyncNet:
    """Build SyncNet and load ``syncnet_v2.model`` (a ``torch.save``-d state dict) with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise MeasurementError("not measured", f"{path} missing — run `hallo3-gate weights fetch syncnet`")
    net = SyncNet()
    load_state_dict_checked(net, path)
    return net.to(device).eval()


def pcm16_levels(audio: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] -> the int16 sample values a 16-bit PCM wav holds (as ffmpeg writes them), as float64.

    The reference reads ``audio.wav`` with ``scipy.io.wavfile`` and feeds the int16 values straight to the MFCC, so
    the cepstra (c0/log-energy in particular) depend on this scale.
    """
    return np.clip(np.rint(np.asarray(audio, dtype=np.float64) * 32768.0), -32768, 32767)


def mfcc_features(pcm16: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """MFCC with python_speech_features defaults (25 ms / 10 ms, 13 cepstra, 26 filters, nfft 512): [13, N]."""
    return python_speech_features.mfcc(pcm16, sample_rate).T.astype(np.float32)


@dataclass(frozen=True)
class SyncScores:
    """The outcome of ``evaluate`` for one face track."""

    offset: int  # frames; vshift - argmin
    min_dist: float  # Sync-D / LSE-D
    confidence: float  # Sync-C / LSE-C
    mean_dists: np.ndarray  # [2*vshift+1], distance per candidate offset averaged over windows
    framewise_confidence: np.ndarray  # [windows], median(mean_dists) - dist at argmin, medfilt 9
    windows: int


def usable_windows(n_frames: int, n_samples: int) -> int:
    """Number of 5-frame windows the protocol scores (may be <= 0 for too-short input)."""
    # The reference stops one window short of the last full one (``range(0, min_length - 5)``); kept for parity.
    return min(n_frames, n_samples // SAMPLES_PER_FRAME) - WINDOW_FRAMES


@torch.inference_mode()
def embed_track(
    net: SyncNet, crops_bgr: np.ndarray, pcm16: np.ndarray, *, batch_size: int = 20
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lip and audio embeddings for every window: ``crops_bgr`` [T, 224, 224, 3] uint8, ``pcm16`` 16 kHz samples."""
    windows = usable_windows(len(crops_bgr), len(pcm16))
    if windows <= 0:
        raise ValueError(f"{len(crops_bgr)} frames / {len(pcm16)} samples give no {WINDOW_FRAMES}-frame window")
    device = next(net.parameters()).device
    mfcc = torch.from_numpy(mfcc_features(pcm16))
    starts = torch.arange(windows) * MFCC_PER_FRAME
    audio_windows = torch.stack([mfcc[:, s : s + MFCC_WINDOW] for s in starts.tolist()])[:, None]
    lips, audio = [], []
    for start in range(0, windows, batch_size):
        stop = min(windows, start + batch_size)
        clip = crops_bgr[start : stop + WINDOW_FRAMES - 1]
        video = torch.from_numpy(np.ascontiguousarray(clip.transpose(3, 0, 1, 2))).float()[None].to(device)
        lips.append(net.embed_lips(video).cpu())
        audio.append(net.embed_audio(audio_windows[start:stop].to(device)).cpu())
    return torch.cat(lips), torch.cat(audio)


def offset_distances(lip_emb: torch.Tensor, audio_emb: torch.Tensor, vshift: int) -> torch.Tensor:
    """[N, 2*vshift+1]: distance of lip window i to audio window i+k-vshift (zero rows past the ends)."""
    padded = torch.nn.functional.pad(audio_emb, (0, 0, vshift, vshift))
    candidates = padded.unfold(0, 2 * vshift + 1, 1).permute(0, 2, 1)  # [N, 2v+1, D]
    return torch.nn.functional.pairwise_distance(lip_emb[:, None, :], candidates)


def score_distances(dists: torch.Tensor, vshift: int) -> SyncScores:
    mean_dists = dists.mean(dim=0)
    min_dist, min_idx = torch.min(mean_dists, dim=0)
    median = torch.median(mean_dists)
    framewise = (median - dists[:, int(min_idx)]).numpy().astype(np.float64)
    return SyncScores(
        offset=vshift - int(min_idx),
        min_dist=float(min_dist),
        confidence=float(median - min_dist),
        mean_dists=mean_dists.numpy().astype(np.float64),
        framewise_confidence=signal.medfilt(framewise, kernel_size=FRAMEWISE_MEDFILT),
        windows=len(dists),
    )


def evaluate_sync(
    net: SyncNet, crops_bgr: np.ndarray, pcm16: np.ndarray, *, vshift: int = 15, batch_size: int = 20
) -> SyncScores:
    """Score one face track: 224x224 BGR crops at 25 fps and its 16 kHz audio slice (int16 levels)."""
    lip_emb, audio_emb = embed_track(net, crops_bgr, pcm16, batch_size=batch_size)
    return score_distances(offset_distances(lip_emb, audio_emb, vshift), vshift)
