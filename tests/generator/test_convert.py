"""Official-checkpoint conversion: strict key accounting, shape-inferred architecture, clear errors, safe loading."""

from __future__ import annotations

import argparse
import fractions
import re
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLCogVideoX

from generator.convert import (
    CheckpointGeometry,
    convert_state,
    convert_vae_state,
    from_official,
    load_converted,
    load_official_state,
    resolve_checkpoint,
    save_converted,
)
from reports.errors import ExitCode, InputError

GEOMETRY = CheckpointGeometry(text_len=8, latent_frames=13, latent_height=6, latent_width=8, audio_blocks=3)
DEN = "model.diffusion_model."
REF = "ref_model.diffusion_model."


@pytest.fixture(scope="module")
def state(official_tiny: Path) -> dict[str, torch.Tensor]:
    return load_official_state(official_tiny / "checkpoint.pt")


def _tiny_inputs(batch: int = 1) -> dict:
    g = torch.Generator().manual_seed(0)
    return dict(
        hidden_states=torch.randn(batch, 13, 32, 6, 8, generator=g),
        encoder_hidden_states=torch.randn(batch, 8, 48, generator=g),
        timestep=torch.tensor([500.0] * batch),
        audio_embeds=torch.randn(batch, 49, 5, 3, 16, generator=g),
        face_embeds=torch.randn(batch, 512, generator=g),
        ref_banks=[torch.randn(1, 12, 64, generator=g) for _ in range(2)],
    )


def test_fixture_converts_with_every_key_accounted(state):
    converted = convert_state(state, GEOMETRY)
    cfg = converted.transformer.config
    assert (cfg.num_layers, cfg.num_attention_heads, cfg.attention_head_dim, cfg.text_embed_dim) == (2, 4, 16, 48)
    assert (cfg.audio_dim, cfg.audio_context_tokens, cfg.audio_channels, cfg.face_dim, cfg.face_context_tokens) == (
        24,
        4,
        16,
        40,
        4,
    )
    assert converted.reference_net.config.num_layers == 2
    dropped = {re.sub(r"^(model|ref_model)\.diffusion_model\.", "", k) for k in converted.dropped}
    assert dropped == {
        "mixins.pos_embed.freqs_sin",
        "mixins.pos_embed.freqs_cos",
        "transformer.position_embeddings.weight",
    }
    assert all(converted.dropped.values())  # every drop has a reason
    # every source tensor ends up somewhere: the denoiser's fused qkv equals the three converted projections
    qkv = state[DEN + "transformer.layers.1.attention.query_key_value.weight"]
    attn = converted.transformer.transformer_blocks[1].attn1
    assert torch.equal(torch.cat([attn.to_q.weight, attn.to_k.weight, attn.to_v.weight]), qkv)
    with torch.no_grad():
        out = converted.transformer(**_tiny_inputs(), return_dict=False)[0]
    assert out.shape == (1, 13, 16, 6, 8) and torch.isfinite(out).all()


def _error(state, geometry=GEOMETRY) -> InputError:
    with pytest.raises(InputError) as info:
        convert_state(state, geometry, subject="ckpt.pt")
    assert info.value.exit_code == ExitCode.INPUT
    return info.value


def test_removed_key_is_named(state):
    key = DEN + "transformer.layers.1.face_attn.dense.bias"
    broken = {k: v for k, v in state.items() if k != key}
    message = str(_error(broken))
    assert "transformer_blocks.1.face_attn.to_out.0.bias" in message
    assert "not filled" in message


def test_renamed_key_is_named(state):
    old = REF + "transformer.layers.0.mlp.dense_4h_to_h.weight"
    broken = {(k.replace("dense_4h_to_h", "dense_4h_to_hh") if k == old else k): v for k, v in state.items()}
    message = str(_error(broken))
    assert "ref_model.diffusion_model.transformer.layers.0.mlp.dense_4h_to_hh.weight" in message  # unmapped source
    assert "transformer_blocks.0.ff.net.2.weight" in message  # unfilled target


def test_shape_mismatch_is_named(state):
    key = DEN + "transformer.layers.0.audio_attn.query.weight"
    broken = dict(state)
    broken[key] = torch.zeros(64, 32)
    message = str(_error(broken))
    assert key in message and "shape" in message


def test_plain_cogvideox_is_rejected(state):
    plain = {k: v for k, v in state.items() if not re.search(r"face|audio", k)}
    error = _error(plain)
    assert "Hallo3 denoiser" in error.rule


def test_layer_count_mismatch_is_rejected(state):
    fewer = {k: v for k, v in state.items() if not k.startswith(REF + "transformer.layers.1.")}
    fewer = {k: v for k, v in fewer.items() if not k.startswith(REF + "mixins.adaln_layer.") or ".1." not in k}
    assert "num_layers" in _error(fewer).rule


def test_missing_reference_network_is_rejected(state):
    assert "reference network" in _error({k: v for k, v in state.items() if k.startswith(DEN)}).rule


def test_wrong_geometry_is_rejected(state):
    assert "position table" in _error(state, CheckpointGeometry(text_len=8, latent_height=8, latent_width=8)).rule


def test_unknown_prefix_is_rejected(state):
    assert "only keys under" in _error({**state, "optimizer.step": torch.zeros(1)}).rule


def test_non_tensor_pickle_is_refused(tmp_path):
    bad = tmp_path / "bad.pt"  # a Fraction is not on the allowlist → weights_only refuses to build it
    torch.save({"module": {"w": torch.zeros(1)}, "extra": fractions.Fraction(1, 3)}, bad)
    with pytest.raises(InputError, match="weights_only") as caught:
        load_official_state(bad)
    message = caught.value.one_line()  # names the refused object; never torch's advice to load it unsafely
    assert "fractions.Fraction" in message and "weights_only=False" not in message


def test_deepspeed_style_extras_are_allowed(tmp_path):
    path = tmp_path / "ds.pt"
    torch.save({"module": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=1.0), "iteration": 1}, path)
    assert torch.equal(load_official_state(path)["w"], torch.ones(2))


def test_release_layout_and_converted_roundtrip(official_tiny, tmp_path):
    root = tmp_path / "pretrained_models"
    (root / "hallo3" / "7").mkdir(parents=True)
    (root / "hallo3" / "latest").write_text("7\n")
    (root / "hallo3" / "7" / "mp_rank_00_model_states.pt").symlink_to(official_tiny / "checkpoint.pt")
    (root / "t5-v1_1-xxl").mkdir()
    assert resolve_checkpoint(root / "hallo3").parent.name == "7"
    release = from_official(root, GEOMETRY)
    assert release.t5_dir == root / "t5-v1_1-xxl" and release.wav2vec_dir is None and release.vae_state is None
    save_converted(release, tmp_path / "converted")
    transformer, reference_net = load_converted(tmp_path / "converted")
    inputs = _tiny_inputs()
    with torch.no_grad():
        assert torch.equal(release.transformer(**inputs)[0], transformer(**inputs)[0])
    assert reference_net.config.num_layers == 2
    with pytest.raises(InputError, match="latest"):
        (root / "hallo3" / "latest").write_text("../../etc\n")
        resolve_checkpoint(root / "hallo3")


def _to_sat_vae_name(key: str, levels: int) -> str:
    """diffusers VAE key → the SAT ``3d-vae.pt`` name (the inverse of spec §8.1 step 5)."""
    key = re.sub(r"^(encoder|decoder)\.mid_block\.resnets\.(\d)\.", lambda m: f"{m[1]}.mid.block_{int(m[2]) + 1}.", key)
    key = re.sub(r"^decoder\.up_blocks\.(\d+)\.", lambda m: f"decoder.up.{levels - 1 - int(m[1])}.", key)
    key = key.replace("encoder.down_blocks.", "encoder.down.")
    key = key.replace(".resnets.", ".block.").replace(".downsamplers.0.", ".downsample.")
    return key.replace(".upsamplers.0.", ".upsample.").replace(".conv_shortcut.", ".nin_shortcut.")


def test_vae_keys_convert_and_load_strictly():
    vae = AutoencoderKLCogVideoX(
        block_out_channels=(8, 8, 8, 16), latent_channels=4, norm_num_groups=4, layers_per_block=1
    )
    target = vae.state_dict()
    sat = {_to_sat_vae_name(k, 4): v for k, v in target.items()}
    assert any(".up.0." in k for k in sat) and any("mid.block_2" in k for k in sat)
    sat["loss.logvar"] = torch.zeros(1)
    converted = convert_vae_state({"state_dict": sat})
    assert set(converted) == set(target)
    for k, v in target.items():
        assert torch.equal(converted[k], v)
    vae.load_state_dict(converted, strict=True)
    with pytest.raises(InputError, match="encoder"):
        convert_vae_state({**sat, "quantizer.embed": torch.zeros(1)})


def _official_full_size_state() -> dict[str, torch.Tensor]:
    """The official 5B-I2V Hallo3 engine's key names and shapes (spec §7.2), as meta tensors (no memory)."""
    hidden, layers, head, text, temb = 3072, 42, 64, 4096, 512
    shapes: dict[str, tuple[int, ...]] = {}

    def linear(name: str, out: int, inp: int) -> None:
        shapes[name + ".weight"], shapes[name + ".bias"] = (out, inp), (out,)

    def norm(name: str, dim: int) -> None:
        shapes[name + ".weight"], shapes[name + ".bias"] = (dim,), (dim,)

    for prefix, hallo3 in ((DEN, True), (REF, False)):
        p = prefix
        linear(p + "time_embed.0", temb, hidden)
        linear(p + "time_embed.2", temb, temb)
        shapes[p + "mixins.pos_embed.pos_embedding"] = (1, 226 + 17550, hidden)
        shapes[p + "mixins.pos_embed.freqs_sin"] = shapes[p + "mixins.pos_embed.freqs_cos"] = (17550, head)
        shapes[p + "mixins.patch_embed.proj.weight"], shapes[p + "mixins.patch_embed.proj.bias"] = (
            (hidden, 32, 2, 2),
            (hidden,),
        )
        linear(p + "mixins.patch_embed.text_proj", hidden, text)
        norm(p + "mixins.final_layer.norm_final", hidden)
        linear(p + "mixins.final_layer.linear", 64, hidden)
        linear(p + "mixins.final_layer.adaLN_modulation.1", 2 * hidden, temb)
        shapes[p + "transformer.position_embeddings.weight"] = (64, hidden)
        norm(p + "transformer.final_layernorm", hidden)
        for i in range(layers):
            linear(p + f"mixins.adaln_layer.adaLN_modulations.{i}.1", 12 * hidden, temb)
            norm(p + f"mixins.adaln_layer.query_layernorm_list.{i}", head)
            norm(p + f"mixins.adaln_layer.key_layernorm_list.{i}", head)
            lp = p + f"transformer.layers.{i}."
            norm(lp + "input_layernorm", hidden)
            norm(lp + "post_attention_layernorm", hidden)
            linear(lp + "attention.query_key_value", 3 * hidden, hidden)
            linear(lp + "attention.dense", hidden, hidden)
            linear(lp + "mlp.dense_h_to_4h", 4 * hidden, hidden)
            linear(lp + "mlp.dense_4h_to_h", hidden, 4 * hidden)
            if hallo3:
                for kind, kv in (("face", 1024), ("audio", 768)):
                    norm(lp + f"{kind}_input_layernorm", hidden)
                    linear(lp + f"{kind}_attn.query", hidden, hidden)
                    linear(lp + f"{kind}_attn.key_value", 2 * hidden, kv)
                    linear(lp + f"{kind}_attn.dense", hidden, hidden)
        if hallo3:
            ap = p + "transformer.audio_proj."
            linear(ap + "proj1", 512, 5 * 12 * 768)
            linear(ap + "proj2", 512, 512)
            linear(ap + "proj3", 32 * 768, 512)
            shapes[ap + "conv1.weight"], shapes[ap + "conv1.bias"] = (32 * 768, 32 * 768, 2), (32 * 768,)
            norm(ap + "norm", 768)
            linear(p + "transformer.face_proj.proj", 4 * 1024, 512)
            norm(p + "transformer.face_proj.norm", 1024)
    return {k: torch.empty(s, device="meta", dtype=torch.bfloat16) for k, s in shapes.items()}


def test_official_full_size_key_set_converts():
    """The full 5B-I2V key set of spec §7.2 maps onto the default-config networks with nothing left over, and the
    inferred config is the official one; parameter counts match the spec (denoiser 8.92 B, reference net 5.625 B)."""
    converted = convert_state(_official_full_size_state(), CheckpointGeometry(), dtype=torch.bfloat16)
    cfg = converted.transformer.config
    assert (cfg.num_layers, cfg.num_attention_heads, cfg.attention_head_dim, cfg.text_embed_dim) == (42, 48, 64, 4096)
    assert (cfg.audio_dim, cfg.audio_context_tokens, cfg.audio_channels, cfg.face_dim) == (768, 32, 768, 1024)
    assert (cfg.sample_height, cfg.sample_width, cfg.max_text_seq_length) == (60, 90, 226)

    def count(module: torch.nn.Module) -> int:
        return sum(t.numel() for t in [*module.parameters(), *module.buffers()])

    assert round(count(converted.transformer) / 1e9, 2) == 8.92
    assert round(count(converted.reference_net) / 1e9, 3) == 5.625
    assert round(count(converted.transformer.audio_proj) / 1e9, 3) == 1.244


def test_stored_rope_table_must_match_the_recomputed_one(state):
    """freqs_sin/cos are dropped only after checking they equal our 3D RoPE for the geometry."""
    key = DEN + "mixins.pos_embed.freqs_sin"
    broken = dict(state)
    broken[key] = state[key].flip(0)
    error = _error(broken)
    assert "RoPE" in error.rule and key in str(error)
