"""Reference-bank capture against the spec's equations, the learned-position pitfall, and the per-portrait cache."""

from __future__ import annotations

import pytest
import torch
from _hallo3_spec import TINY, randomize_, reference_banks
from _tolerances import TWO_PASSES_TOL

from generator.reference import Hallo3ReferenceNet, ReferenceBanks, bank_cache_key, compute_banks, run_reference

TOL = TWO_PASSES_TOL  # our bank runner vs the spec's plain-op equations: two float32 passes of the same arithmetic


@pytest.fixture(scope="module")
def ref_net() -> Hallo3ReferenceNet:
    return randomize_(Hallo3ReferenceNet(**TINY), seed=11)


def _latent(seed: int = 0) -> torch.Tensor:
    return 0.7 * torch.randn(1, 1, 16, 4, 6, generator=torch.Generator().manual_seed(seed))


def test_banks_match_spec_equations(ref_net):
    """bank i = modulate(LN1(video), shift, scale) at block i's input; input [ref ; ref], t = 0, zero text,
    learned positions [: text_len + tokens_per_frame], frame-0 RoPE (spec §3.1–3.2)."""
    latent = _latent()
    banks = compute_banks(ref_net, latent, text_len=8)
    expected = reference_banks(dict(ref_net.state_dict()), latent, text_len=8, heads=4, text_dim=48)
    assert len(banks) == len(expected) == 2
    for got, want in zip(banks, expected, strict=True):
        assert got.shape == (1, 6, 64)
        assert (got - want).abs().max().item() <= TOL


def test_last_block_is_cut_after_norm1(ref_net):
    latent = _latent(1)
    full = run_reference(ref_net, latent, 8, full_output=True)
    short = run_reference(ref_net, latent, 8)
    assert short.output is None and full.output is not None and full.output.shape == (1, 1, 16, 4, 6)
    for a, b in zip(full.banks, short.banks, strict=True):
        assert torch.equal(a, b)


def test_learned_positions_are_sliced_not_recomputed(ref_net):
    """Rows [text_len : text_len + 6] of the learned table feed frame 0; rows past them must not matter
    (diffusers' own patch embedding would swap in a sin-cos table for a 1-frame input)."""
    latent = _latent(2)
    base = compute_banks(ref_net, latent, 8)
    table = ref_net.patch_embed.pos_embedding
    saved = table.clone()
    try:
        table[:, 8 + 6 :] += torch.randn(table[:, 8 + 6 :].shape, generator=torch.Generator().manual_seed(1))
        assert torch.equal(compute_banks(ref_net, latent, 8)[0], base[0])
        table.copy_(saved)
        table[:, 8 : 8 + 6] += 0.5 * torch.randn(table[:, 8 : 8 + 6].shape, generator=torch.Generator().manual_seed(0))
        assert (compute_banks(ref_net, latent, 8)[0] - base[0]).abs().max() > 1e-3
    finally:
        table.copy_(saved)


def test_cache_computes_once_per_portrait(ref_net):
    cache = ReferenceBanks(ref_net, max_entries=2)
    a, b = _latent(3), _latent(4)
    first = cache.get(a, 8)
    assert cache.get(a.clone(), 8) is first  # same bytes → same entry
    assert (cache.hits, cache.misses) == (1, 1)
    for cached, fresh in zip(first, compute_banks(ref_net, a, 8), strict=True):
        assert torch.equal(cached, fresh)
    assert cache.get(b, 8) is not first
    assert cache.misses == 2
    cache.get(_latent(5), 8)  # evicts the oldest entry (a)
    cache.get(a, 8)
    assert cache.misses == 4


def test_cache_key_depends_on_content_shape_and_text_len():
    a = _latent(6)
    key = bank_cache_key(a, 8)
    assert len(key) == 64 and key == bank_cache_key(a.clone(), 8)
    nudged = a.clone()
    nudged[0, 0, 0, 0, 0] += 1e-6
    assert bank_cache_key(nudged, 8) != key
    assert bank_cache_key(a, 9) != key
    assert bank_cache_key(a.reshape(1, 1, 16, 6, 4), 8) != key
