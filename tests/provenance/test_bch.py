"""provenance.bch: textbook generator polynomials, correction up to t errors, detection beyond, shortening."""

from __future__ import annotations

import numpy as np
import pytest

from provenance.bch import BCH


def test_generator_polynomials_match_the_textbook() -> None:
    # Lin & Costello, GF(2^4) over x^4 + x + 1: BCH(15,7) t=2 and BCH(15,5) t=3.
    assert BCH(m=4, t=2, k=7).generator == 0b111010001  # x^8 + x^7 + x^6 + x^4 + 1
    assert BCH(m=4, t=3, k=5).generator == 0b10100110111  # x^10 + x^8 + x^5 + x^4 + x^2 + x + 1
    assert BCH(m=7, t=4, k=68).parity_bits == 28 and BCH(m=7, t=4, k=68).n == 96


@pytest.mark.parametrize(("m", "t", "k"), [(4, 3, 5), (7, 4, 68), (8, 8, 80)])
def test_corrects_up_to_t_errors(m: int, t: int, k: int) -> None:
    code, rng = BCH(m=m, t=t, k=k), np.random.default_rng(m * 100 + t)
    for _ in range(100):
        info = rng.integers(0, 2, k).astype(np.uint8)
        word = code.encode(info)
        assert np.array_equal(word[:k], info) and code.decode(word) is not None
        noisy = word.copy()
        noisy[rng.choice(code.n, int(rng.integers(1, t + 1)), replace=False)] ^= 1
        fixed = code.decode(noisy)
        assert fixed is not None and np.array_equal(fixed, word)


def test_more_than_t_errors_never_decode_to_the_sent_word() -> None:
    code, rng = BCH(m=7, t=4, k=68), np.random.default_rng(5)
    failures = 0
    for _ in range(200):
        word = code.encode(rng.integers(0, 2, 68).astype(np.uint8))
        noisy = word.copy()
        noisy[rng.choice(code.n, 5, replace=False)] ^= 1
        fixed = code.decode(noisy)
        assert fixed is None or not np.array_equal(fixed, word)
        if fixed is not None:  # a miscorrection must still be a codeword within t of what was received
            assert (fixed != noisy).sum() <= 4 and code.decode(fixed) is not None
        failures += fixed is None
    assert failures > 150  # mostly detected: a 96-bit word is within 4 of a codeword with probability ≈ 1.3 %


def test_rejects_codes_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="holds fewer"):
        BCH(m=4, t=3, k=6)
