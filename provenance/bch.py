"""Binary BCH codes, shortened, with a hard-decision decoder (Berlekamp–Massey + Chien search).

A narrow-sense binary BCH code over GF(2^m) of designed distance ``2t + 1`` has length ``2^m - 1`` and a generator
polynomial ``g(x)`` = lcm of the minimal polynomials of ``α, α^2, …, α^(2t)``; it corrects any ``t`` bit errors.
Shortening (fixing the leading information bits to zero and not sending them) gives any length ``n = k + deg g``
with the same correction power.

Bit order: codeword bit ``j`` (of ``n``) is the coefficient of ``x^(n-1-j)``; the ``k`` information bits come first
(systematic), the ``deg g`` parity bits last. Polynomials over GF(2) are Python ints (bit ``i`` = coefficient of
``x^i``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

# Primitive polynomials (bit i = coefficient of x^i) for GF(2^m).
PRIMITIVE = {4: 0x13, 5: 0x25, 6: 0x43, 7: 0x89, 8: 0x11D, 9: 0x211, 10: 0x409}


@dataclass(frozen=True)
class Field:
    """GF(2^m) with exp/log tables over a primitive polynomial."""

    m: int
    exp: list[int] = field(init=False, repr=False)
    log: list[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        order = (1 << self.m) - 1
        exp, log = [0] * (2 * order), [0] * (order + 1)
        x = 1
        for i in range(order):
            exp[i] = exp[i + order] = x
            log[x] = i
            x <<= 1
            if x >> self.m:
                x ^= PRIMITIVE[self.m]
        object.__setattr__(self, "exp", exp)
        object.__setattr__(self, "log", log)

    @property
    def order(self) -> int:
        return (1 << self.m) - 1

    def mul(self, a: int, b: int) -> int:
        return 0 if a == 0 or b == 0 else self.exp[self.log[a] + self.log[b]]

    def div(self, a: int, b: int) -> int:
        return 0 if a == 0 else self.exp[(self.log[a] - self.log[b]) % self.order]

    def power(self, i: int) -> int:
        """α^i."""
        return self.exp[i % self.order]


def _poly_mod(a: int, g: int) -> int:
    """Remainder of GF(2) polynomial division."""
    dg = g.bit_length() - 1
    while a.bit_length() - 1 >= dg:
        a ^= g << (a.bit_length() - 1 - dg)
    return a


def _poly_mul(a: int, b: int) -> int:
    out = 0
    while b:
        if b & 1:
            out ^= a
        a <<= 1
        b >>= 1
    return out


def _minimal_polynomial(gf: Field, i: int) -> int:
    """Minimal polynomial over GF(2) of α^i: the product of (x - β) over β's conjugacy class."""
    conj, j = [], i % gf.order
    while j not in conj:
        conj.append(j)
        j = (2 * j) % gf.order
    poly = [1]  # coefficients in GF(2^m), lowest degree first
    for c in conj:
        root = gf.power(c)
        nxt = [0] * (len(poly) + 1)
        for d, coef in enumerate(poly):
            nxt[d + 1] ^= coef
            nxt[d] ^= gf.mul(coef, root)
        poly = nxt
    return sum(c << d for d, c in enumerate(poly))


@dataclass(frozen=True)
class BCH:
    """Shortened binary BCH code: ``k`` information bits, corrects ``t`` errors, over GF(2^m)."""

    m: int
    t: int
    k: int

    @cached_property
    def gf(self) -> Field:
        return Field(self.m)

    @cached_property
    def generator(self) -> int:
        g, seen = 1, set()
        for i in range(1, 2 * self.t + 1):
            mp = _minimal_polynomial(self.gf, i)
            if mp not in seen:
                seen.add(mp)
                g = _poly_mul(g, mp)
        return g

    @property
    def parity_bits(self) -> int:
        return self.generator.bit_length() - 1

    @property
    def n(self) -> int:
        return self.k + self.parity_bits

    def __post_init__(self) -> None:
        if self.m not in PRIMITIVE or self.t < 1 or self.k < 1:
            raise ValueError(f"BCH(m={self.m}, t={self.t}, k={self.k}) is not supported")
        if self.n > (1 << self.m) - 1:
            raise ValueError(f"BCH over GF(2^{self.m}) with t={self.t} holds fewer than {self.k} information bits")

    def encode(self, info: np.ndarray) -> np.ndarray:
        """``n`` bits (uint8 0/1): the ``k`` information bits then the parity."""
        info = np.asarray(info, dtype=np.uint8)
        msg = _to_int(info)
        parity = _poly_mod(msg << self.parity_bits, self.generator)
        return np.concatenate([info, _to_bits(parity, self.parity_bits)])

    @cached_property
    def _syndrome_table(self) -> np.ndarray:
        """``[n, 2t]``: α^(e·s) for bit ``j`` (exponent ``e = n-1-j``) and syndrome ``s`` in 1..2t."""
        e = (self.n - 1 - np.arange(self.n))[:, None] * np.arange(1, 2 * self.t + 1)[None, :]
        return np.asarray(self.gf.exp, dtype=np.int64)[e % self.gf.order]

    def decode(self, word: np.ndarray) -> np.ndarray | None:
        """The nearest codeword if at most ``t`` bits are wrong, else None (a detected failure)."""
        word = np.asarray(word, dtype=np.uint8)
        syndromes = np.bitwise_xor.reduce(self._syndrome_table[word.astype(bool)], axis=0, initial=0).tolist()
        if not any(syndromes):
            return word.copy()
        locator = _berlekamp_massey(self.gf, syndromes)
        degree = len(locator) - 1
        if degree > self.t:
            return None
        errors = _chien(self.gf, locator, self.n)
        if errors is None or len(errors) != degree:
            return None
        fixed = word.copy()
        fixed[self.n - 1 - errors] ^= 1
        return fixed


def _berlekamp_massey(gf: Field, syndromes: list[int]) -> list[int]:
    """The error-locator polynomial Λ (coefficients lowest degree first, Λ0 = 1)."""
    lam, prev = [1], [1]
    length, shift, prev_disc = 0, 1, 1
    for r, _ in enumerate(syndromes):
        disc = syndromes[r]
        for i in range(1, length + 1):
            if i < len(lam):
                disc ^= gf.mul(lam[i], syndromes[r - i])
        if disc == 0:
            shift += 1
            continue
        coef = gf.div(disc, prev_disc)
        update = [0] * shift + [gf.mul(coef, p) for p in prev]
        size = max(len(lam), len(update))
        new = [a ^ b for a, b in zip(lam + [0] * (size - len(lam)), update + [0] * (size - len(update)), strict=True)]
        if 2 * length <= r:
            prev, length, prev_disc, shift = lam, r + 1 - length, disc, 1
        else:
            shift += 1
        lam = new
    while len(lam) > 1 and lam[-1] == 0:
        lam.pop()
    return lam


def _chien(gf: Field, locator: list[int], n: int) -> np.ndarray | None:
    """Exponents ``e`` in ``0..n-1`` whose α^-e is a root of Λ (error positions); None if a root lies outside."""
    exp = np.asarray(gf.exp, dtype=np.int64)
    e = np.arange(gf.order)
    acc = np.zeros(gf.order, dtype=np.int64)
    for i, coef in enumerate(locator):
        if coef:
            acc ^= exp[(gf.log[coef] - i * e) % gf.order]
    roots = np.flatnonzero(acc == 0)
    return None if np.any(roots >= n) else roots  # a root in the shortened (absent) part is no valid correction


def _to_int(bits: np.ndarray) -> int:
    return int("".join("1" if b else "0" for b in bits) or "0", 2)


def _to_bits(value: int, width: int) -> np.ndarray:
    return np.array([(value >> (width - 1 - i)) & 1 for i in range(width)], dtype=np.uint8)
