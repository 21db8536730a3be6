"""The watermark codeword: a 64-bit identity + CRC-32, cut into four 32-bit frame messages that carry their index.

Layout (all bit orders MSB first):

- codeword (96 bits) = payload (``PAYLOAD_BYTES`` = 8 bytes) || CRC-32(``DOMAIN`` || payload) (4 bytes). The domain
  prefix means an all-zero or all-one vote never passes the check.
- segment ``s`` in 0..3 = codeword bits ``[24 s, 24 s + 24)``.
- frame message (32 bits, one RivaGAN message) = ``INDEX_CODES[s]`` (8 bits, pairwise Hamming distance ≥ 5) ||
  segment bits XOR a fixed pseudo-random whitening mask (24 bits). The mask keeps any bias of the decoder on
  unmarked content from lining up with the codeword structure.

Because each frame says which segment it carries, decoding needs no frame numbers: frames can be dropped, cut or
reordered. The clip-level decoder soft-votes every segment over the frames that carry it, then tries the hard vote
and the ``2**chase_bits - 1`` patterns that flip the least reliable bits (Chase decoding), accepting the first
pattern, in order of least total flipped reliability, whose CRC matches.

False positives: on unmarked video every tried pattern matches the CRC with probability 2**-32, so a clip reads as
watermarked by chance with probability at most ``2**chase_bits * 2**-32`` (6 flipped bits: 64 / 2**32 ≈ 1.5e-8).
"""

from __future__ import annotations

import hashlib
import itertools
import zlib
from dataclasses import dataclass

import numpy as np

PAYLOAD_BYTES = 8
CRC_BITS = 32
SEGMENTS = 4
INDEX_BITS = 8
DATA_BITS = 24  # per frame message
CODEWORD_BITS = SEGMENTS * DATA_BITS  # 96 = 8 * PAYLOAD_BYTES + CRC_BITS
DOMAIN = b"org.hallo3-gate.rivagan-vote.v1"

# 4 codewords of 8 bits with minimum pairwise Hamming distance 5 (the Plotkin bound for n=8, M=4).
INDEX_CODES = np.array(
    [
        [0, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 0, 0, 0],
        [0, 0, 0, 1, 1, 1, 1, 1],
        [1, 1, 1, 0, 0, 1, 1, 1],
    ],
    dtype=np.uint8,
)
MASK = np.unpackbits(np.frombuffer(hashlib.sha256(DOMAIN + b"/mask").digest()[:12], np.uint8)).reshape(
    SEGMENTS, DATA_BITS
)


def crc(payload: bytes) -> bytes:
    return zlib.crc32(DOMAIN + payload).to_bytes(4, "big")


def codeword(payload: bytes) -> np.ndarray:
    """96 bits (uint8 0/1) for an ``PAYLOAD_BYTES``-byte payload."""
    return np.unpackbits(np.frombuffer(payload + crc(payload), np.uint8))


def check(bits: np.ndarray) -> bytes | None:
    """The payload if the 96 bits carry a matching CRC, else None."""
    raw = np.packbits(bits.astype(np.uint8)).tobytes()
    payload, tag = raw[:PAYLOAD_BYTES], raw[PAYLOAD_BYTES:]
    return payload if crc(payload) == tag else None


def frame_message(code: np.ndarray, segment: int) -> np.ndarray:
    """The 32 bits a frame carrying ``segment`` of ``code`` embeds."""
    data = code[segment * DATA_BITS : (segment + 1) * DATA_BITS] ^ MASK[segment]
    return np.concatenate([INDEX_CODES[segment], data]).astype(np.uint8)


def frame_messages(code: np.ndarray) -> np.ndarray:
    """``[SEGMENTS, 32]``."""
    return np.stack([frame_message(code, s) for s in range(SEGMENTS)])


@dataclass
class Vote:
    """Soft votes of a clip: per-segment sums of per-frame soft bits, and which segment each frame was read as."""

    sums: np.ndarray  # float [CODEWORD_BITS], positive = 1
    counts: np.ndarray  # int [SEGMENTS], frames per segment
    segments: np.ndarray  # int [N], segment per decoded frame
    soft: np.ndarray  # float [N, 32] per-frame soft bits in [-1, 1]

    @property
    def complete(self) -> bool:
        return bool(np.all(self.counts > 0))

    @property
    def confidence(self) -> float:
        """Mean per-frame agreement with the vote, in [0, 1]: |sum| / frames, averaged over the codeword's bits."""
        per_bit = np.abs(self.sums) / np.repeat(np.maximum(self.counts, 1), DATA_BITS)
        return float(per_bit.mean()) if self.complete else 0.0


def vote(soft: np.ndarray) -> Vote:
    """Assign each frame a segment from its index bits (soft correlation) and sum its unmasked data bits there."""
    soft = np.asarray(soft, dtype=np.float64).reshape(-1, INDEX_BITS + DATA_BITS)
    signs = 2.0 * INDEX_CODES.astype(np.float64) - 1.0  # [S, 8]
    segments = np.argmax(soft[:, :INDEX_BITS] @ signs.T, axis=1) if len(soft) else np.zeros(0, int)
    unmask = 1.0 - 2.0 * MASK.astype(np.float64)  # flip sign where the mask bit is 1
    sums = np.zeros((SEGMENTS, DATA_BITS))
    counts = np.zeros(SEGMENTS, dtype=int)
    for s, row in zip(segments, soft, strict=True):
        sums[s] += row[INDEX_BITS:] * unmask[s]
        counts[s] += 1
    return Vote(sums=sums.reshape(-1), counts=counts, segments=segments, soft=soft)


def chase(v: Vote, flips: int) -> tuple[bytes, np.ndarray] | None:
    """Hard vote, then flips of the ``flips`` least reliable bits, cheapest first; the first CRC match wins."""
    if not v.complete:
        return None
    hard = (v.sums > 0).astype(np.uint8)
    order = np.argsort(np.abs(v.sums))[:flips]
    rel = np.abs(v.sums)[order]
    patterns = [c for n in range(flips + 1) for c in itertools.combinations(range(len(order)), n)]
    patterns.sort(key=lambda c: float(sum(rel[i] for i in c)))
    for pattern in patterns:
        bits = hard.copy()
        bits[order[list(pattern)]] ^= 1
        payload = check(bits)
        if payload is not None:
            return payload, bits
    return None


def frame_accuracy(v: Vote, bits: np.ndarray) -> list[float]:
    """Per decoded frame: share of its 32 hard bits equal to the message of the segment it was read as."""
    messages = frame_messages(bits)
    hard = (v.soft > 0).astype(np.uint8)
    return [float((hard[i] == messages[s]).mean()) for i, s in enumerate(v.segments)]
