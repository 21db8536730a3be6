"""The watermark codeword (v2): a 48-bit identity + CRC, BCH-coded, cut into 32-bit frame messages naming themselves.

Layout (all bit orders MSB first):

- information (68 bits) = payload (``PAYLOAD_BYTES`` = 6 bytes) || the top ``CRC_BITS`` (20) bits of
  CRC-32(``DOMAIN`` || payload). The domain prefix means an all-zero or all-one vote never passes the check.
- codeword (``CODEWORD_BITS`` = 96) = the shortened binary BCH code :data:`CODE` (GF(2^7), 28 parity bits) over
  the information (systematic: the information bits then the parity); it corrects any ``CORRECTS`` (4) wrong bits.
- segment ``s`` in ``0..SEGMENTS-1`` = codeword bits ``[24 s, 24 s + 24)``. Every segment is sent in ``VARIANTS``
  different disguises: variant ``v`` permutes the 24 bits and XORs them with a pseudo-random mask of its own.
- frame message (32 bits, one RivaGAN message) = ``HEADERS[s * VARIANTS + v]`` (8 bits: codewords of the extended
  Hamming (8,4) code, pairwise distance ≥ 4) || the segment's bits in disguise ``v`` (24 bits).

Why variants: on static content the network misreads the *same* message the same way in every frame (measured:
still portraits after H.264 CRF 28 keep ~6–9 confidently wrong bits after the clip vote), so repeating one message
cannot outvote the error. Sending each segment under several permutation+mask disguises moves such content- and
position-dependent errors onto different codeword bits with independent signs, where the vote and the BCH code
remove them.

Because each frame says which (segment, variant) it carries, decoding needs no frame numbers: frames can be dropped,
cut or reordered. The decoder unmasks and un-permutes each frame with its own variant, soft-votes per codeword bit,
then runs Chase-II decoding: the hard vote and the patterns that flip subsets of the ``chase_bits`` least reliable
bits are each BCH-decoded; among the results whose CRC matches, the one closest to the soft vote wins.

Measured (before the BCH code): 96 bits = 64-bit identity + CRC-32 with one fixed mask per segment left 5–9 wrong
bits after the vote on still portraits after H.264 CRF 28 (several of them confidently wrong); with the disguises
and the weighted re-labelling 1–8, which Chase-II with 8 flipped bits + BCH t = 4 recovered in every measured case.

False positives: see :func:`false_positive_bound` (≈3.2e-6 with 8 Chase bits: 256 BCH decodings per clip).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import zlib
from dataclasses import dataclass

import numpy as np

from provenance.bch import BCH

PAYLOAD_BYTES = 6  # 48-bit identity
SEGMENTS = 4
VARIANTS = 4
INDEX_BITS = 8
DATA_BITS = 24  # per frame message
CODEWORD_BITS = SEGMENTS * DATA_BITS  # 96
CORRECTS = 4  # bit errors the BCH code corrects
_PARITY_BITS = BCH(m=7, t=CORRECTS, k=1).parity_bits  # 28 for t = 4
CRC_BITS = CODEWORD_BITS - 8 * PAYLOAD_BYTES - _PARITY_BITS  # 20: the top bits of a CRC-32
CODE = BCH(m=7, t=CORRECTS, k=8 * PAYLOAD_BYTES + CRC_BITS)
DOMAIN = b"org.hallo3-gate.rivagan-vote.v2"
RELABEL_ROUNDS = 2


def _extended_hamming_8_4() -> np.ndarray:
    """The 16 codewords of the extended Hamming (8,4) code (minimum distance 4), in message order."""
    gen = np.array(
        [[1, 0, 0, 0, 0, 1, 1, 1], [0, 1, 0, 0, 1, 0, 1, 1], [0, 0, 1, 0, 1, 1, 0, 1], [0, 0, 0, 1, 1, 1, 1, 0]],
        dtype=np.uint8,
    )
    msgs = np.array(list(itertools.product((0, 1), repeat=4)), dtype=np.uint8)
    return (msgs @ gen) % 2


HEADERS = _extended_hamming_8_4()[: SEGMENTS * VARIANTS]
_SEED = np.random.default_rng(np.frombuffer(hashlib.sha256(DOMAIN + b"/disguise").digest(), np.uint64))
MASKS = _SEED.integers(0, 2, (SEGMENTS, VARIANTS, DATA_BITS)).astype(np.uint8)
PERMS = np.stack([np.stack([_SEED.permutation(DATA_BITS) for _ in range(VARIANTS)]) for _ in range(SEGMENTS)])


def crc(payload: bytes) -> np.ndarray:
    """The check field: the top ``CRC_BITS`` bits of CRC-32(``DOMAIN`` || payload), uint8 0/1."""
    return np.unpackbits(np.frombuffer(zlib.crc32(DOMAIN + payload).to_bytes(4, "big"), np.uint8))[:CRC_BITS]


def codeword(payload: bytes) -> np.ndarray:
    """``CODEWORD_BITS`` bits (uint8 0/1) for a ``PAYLOAD_BYTES``-byte payload."""
    return CODE.encode(np.concatenate([np.unpackbits(np.frombuffer(payload, np.uint8)), crc(payload)]))


def check(bits: np.ndarray) -> bytes | None:
    """The payload if the codeword's information bits carry a matching CRC, else None (no error correction)."""
    bits = np.asarray(bits, dtype=np.uint8)
    payload = np.packbits(bits[: 8 * PAYLOAD_BYTES]).tobytes()
    return payload if np.array_equal(crc(payload), bits[8 * PAYLOAD_BYTES : CODE.k]) else None


def label(segment: int, variant: int) -> int:
    """Index into ``HEADERS`` of (segment, variant)."""
    return segment * VARIANTS + variant


def frame_message(code: np.ndarray, segment: int, variant: int) -> np.ndarray:
    """The 32 bits a frame carrying ``segment`` of ``code`` in disguise ``variant`` embeds."""
    data = code[segment * DATA_BITS : (segment + 1) * DATA_BITS][PERMS[segment, variant]] ^ MASKS[segment, variant]
    return np.concatenate([HEADERS[label(segment, variant)], data]).astype(np.uint8)


def frame_messages(code: np.ndarray) -> np.ndarray:
    """``[SEGMENTS * VARIANTS, 32]``, row ``label(s, v)``."""
    return np.stack([frame_message(code, s, v) for s in range(SEGMENTS) for v in range(VARIANTS)])


@dataclass
class Vote:
    """Soft votes of a clip: per-codeword-bit sums of unmasked per-frame soft bits, and each frame's label."""

    sums: np.ndarray  # float [CODEWORD_BITS], positive = 1
    counts: np.ndarray  # int [SEGMENTS], frames (with a positive weight) per segment
    weights: np.ndarray  # float [SEGMENTS], total frame weight per segment
    labels: np.ndarray  # int [N], label (row of frame_messages) per decoded frame
    soft: np.ndarray  # float [N, 32] per-frame soft bits in [-1, 1]

    @property
    def complete(self) -> bool:
        return bool(np.all(self.counts > 0))

    @property
    def confidence(self) -> float:
        """Mean weighted per-frame agreement with the vote, in [0, 1]: |sum| / total weight, averaged over bits."""
        per_bit = np.abs(self.sums) / np.repeat(np.maximum(self.weights, 1e-12), DATA_BITS)
        return float(per_bit.mean()) if self.complete else 0.0


def vote(soft: np.ndarray, relabel: int = RELABEL_ROUNDS) -> Vote:
    """Label each frame from its header bits (soft correlation), undo its disguise and add it to its segment.

    Then ``relabel`` times: correlate all 32 soft bits of every frame with the frame messages of the current hard
    vote, re-label the frame by the best match, weight it by that correlation (per bit, clipped at 0) and vote
    again. Measured on still portraits after H.264 CRF 28: the 8-bit header alone misreads many frames, and frames
    that carry almost no mark add the content's own bias; re-labelling and weighting cut the wrong bits.
    """
    soft = np.asarray(soft, dtype=np.float64).reshape(-1, INDEX_BITS + DATA_BITS)
    signs = 2.0 * HEADERS.astype(np.float64) - 1.0
    labels = np.argmax(soft[:, :INDEX_BITS] @ signs.T, axis=1) if len(soft) else np.zeros(0, int)
    v = _accumulate(soft, labels, np.ones(len(soft)))
    for _ in range(relabel if len(soft) else 0):
        fit = soft @ (2.0 * frame_messages((v.sums > 0).astype(np.uint8)) - 1.0).T / (INDEX_BITS + DATA_BITS)
        labels = np.argmax(fit, axis=1)
        v = _accumulate(soft, labels, np.clip(fit[np.arange(len(soft)), labels], 0.0, None))
    return v


def _accumulate(soft: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> Vote:
    sums = np.zeros((SEGMENTS, DATA_BITS))
    counts = np.zeros(SEGMENTS, dtype=int)
    total = np.zeros(SEGMENTS)
    for lab, row, w in zip(labels, soft, weights, strict=True):
        s, v = divmod(int(lab), VARIANTS)
        sums[s, PERMS[s, v]] += w * row[INDEX_BITS:] * (1.0 - 2.0 * MASKS[s, v])
        counts[s] += bool(w > 0)
        total[s] += w
    return Vote(sums=sums.reshape(-1), counts=counts, weights=total, labels=labels, soft=soft)


def chase(v: Vote, flips: int) -> tuple[bytes, np.ndarray] | None:
    """Chase-II: BCH-decode the hard vote with every subset of the ``flips`` least reliable bits flipped; of the
    CRC-valid results, the one with the least total reliability of bits changed from the hard vote wins."""
    if not v.complete:
        return None
    hard = (v.sums > 0).astype(np.uint8)
    rel = np.abs(v.sums)
    order = np.argsort(rel, kind="stable")[:flips]
    best: tuple[float, bytes, np.ndarray] | None = None
    seen: set[bytes] = set()
    for n in range(flips + 1):
        for pattern in itertools.combinations(order, n):
            trial = hard.copy()
            trial[list(pattern)] ^= 1
            fixed = CODE.decode(trial)
            if fixed is None or (key := fixed.tobytes()) in seen:
                continue
            seen.add(key)
            payload = check(fixed)
            if payload is None:
                continue
            cost = float(rel[fixed != hard].sum())
            if best is None or cost < best[0]:
                best = (cost, payload, fixed)
    return None if best is None else (best[1], best[2])


def false_positive_bound(flips: int) -> float:
    """Upper bound on the probability that an unmarked clip (a uniformly random vote) reads as watermarked.

    Each of the ``2**flips`` Chase trials BCH-decodes to *some* codeword only if the trial word lies within ``t`` of
    one: probability ≤ 2**k · V(n, t) / 2**n (V = Hamming-ball volume); that codeword's CRC field then matches its
    payload with probability 2**-CRC_BITS.
    """
    ball = sum(math.comb(CODE.n, i) for i in range(CODE.t + 1))
    per_trial = min(1.0, 2.0 ** (CODE.k - CODE.n) * ball) * 2.0**-CRC_BITS
    return 2**flips * per_trial


def frame_accuracy(v: Vote, bits: np.ndarray) -> list[float]:
    """Per decoded frame: share of its 32 hard bits equal to the message of the label it was read as."""
    messages = frame_messages(bits)
    hard = (v.soft > 0).astype(np.uint8)
    return [float((hard[i] == messages[lab]).mean()) for i, lab in enumerate(v.labels)]
