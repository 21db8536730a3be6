"""Hallo3Transformer against the spec's equations written with plain tensor ops (tests/generator/_hallo3_spec.py)."""

from __future__ import annotations

import pytest
import torch
from _hallo3_spec import TINY, TINY_AV, audio_projection, block, layer_norm, randomize_, rope_tables
from _tolerances import TABLE_TOL, TWO_PASSES_TOL

from generator.attention import video_rotary_table
from generator.projections import AudioProjModel
from generator.transformer import Hallo3Transformer

TOL = TWO_PASSES_TOL  # our module vs the spec's plain-op equations: two float32 passes of the same arithmetic


@pytest.fixture(scope="module")
def model() -> Hallo3Transformer:
    return randomize_(Hallo3Transformer(**TINY, **TINY_AV), seed=3)


def _inputs(model: Hallo3Transformer, batch: int = 2, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    return dict(
        hidden_states=torch.randn(batch, 13, 32, cfg.sample_height, cfg.sample_width, generator=g),
        encoder_hidden_states=torch.randn(batch, cfg.max_text_seq_length, cfg.text_embed_dim, generator=g),
        timestep=torch.full((batch,), 321.0),
        audio_embeds=torch.randn(batch, 49, 5, cfg.audio_blocks, cfg.audio_channels, generator=g),
        face_embeds=torch.randn(batch, 512, generator=g),
        ref_banks=[torch.randn(1, 7, 64, generator=g) for _ in range(cfg.num_layers)],
    )


def test_rope_table_matches_spec():
    """diffusers' 3D RoPE on the integer grid equals the spec's t/h/w = d/4, 3d/8, 3d/8 interleaved table."""
    cos, sin = video_rotary_table(16, 3, 2, 3)
    ref_cos, ref_sin = rope_tables(16, 3, 2, 3)
    assert (cos - ref_cos).abs().max() <= TABLE_TOL and (sin - ref_sin).abs().max() <= TABLE_TOL


@pytest.mark.parametrize("n_ref", [7, 0])
def test_block_matches_spec_equations(model, n_ref):
    """One block (self-attention with appended reference tokens, face and audio cross-attention, MLP) equals the
    spec §4.3 equations. 7 reference tokens ≠ 6 tokens per frame: RoPE must cover exactly the video tokens."""
    g = torch.Generator().manual_seed(1)
    batch, frames, per_frame, c = 2, 3, 6, 64
    text = torch.randn(batch, 8, c, generator=g)
    video = torch.randn(batch, frames * per_frame, c, generator=g)
    temb = torch.randn(batch, 32, generator=g)
    ref = torch.randn(1, n_ref, c, generator=g) if n_ref else None
    face = torch.randn(batch, 4, 40, generator=g)[:, None].expand(-1, frames, -1, -1)
    audio = torch.randn(batch, frames, 4, 24, generator=g)
    blk = model.transformer_blocks[1]
    rope = video_rotary_table(16, frames, 2, 3)
    with torch.no_grad():
        video_out, text_out = blk(
            video,
            text,
            temb,
            image_rotary_emb=rope,
            ref_tokens=ref,
            face_tokens=face,
            audio_tokens=audio,
            frame_rotary_emb=(rope[0][:per_frame], rope[1][:per_frame]),
        )
    params = {k: v for k, v in blk.state_dict().items()}
    exp_text, exp_video = block(params, text, video, temb, 4, rope_tables(16, frames, 2, 3), ref, face, audio)
    assert (video_out - exp_video).abs().max().item() <= TOL
    assert (text_out - exp_text).abs().max().item() <= TOL


def test_reference_tokens_change_the_output_but_not_its_length(model):
    inputs = _inputs(model)
    with torch.no_grad():
        with_ref = model(**inputs, return_dict=False)[0]
        inputs["ref_banks"] = [b + 1.0 for b in inputs["ref_banks"]]
        shifted = model(**inputs, return_dict=False)[0]
    assert with_ref.shape == (2, 13, 16, 4, 6)
    assert (with_ref - shifted).abs().max() > 1e-3


def test_bank_batch_one_broadcasts_like_a_repeated_bank(model):
    inputs = _inputs(model)
    with torch.no_grad():
        a = model(**inputs, return_dict=False)[0]
        inputs["ref_banks"] = [b.repeat(2, 1, 1) for b in inputs["ref_banks"]]
        b = model(**inputs, return_dict=False)[0]
    assert (a - b).abs().max() <= TWO_PASSES_TOL  # same values, possibly another kernel for the broadcast bank


@pytest.mark.parametrize("frames", [49, 8])
def test_audio_projection_matches_spec(frames):
    """proj1/ReLU/proj2/ReLU/proj3, one shared Conv1d applied twice causally (odd keeps frame 0), LayerNorm."""
    proj = randomize_(
        AudioProjModel(seq_len=5, blocks=3, channels=16, intermediate_dim=32, output_dim=24, context_tokens=4), 5
    )
    window = torch.randn(2, frames, 5, 3, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = proj(window)
    assert out.shape == (2, proj.latent_frames(frames), 4, 24)
    assert proj.latent_frames(49) == 13 and proj.latent_frames(8) == 2
    expected = audio_projection(dict(proj.state_dict()), window)
    assert (out - expected).abs().max().item() <= TOL


def test_face_projection_matches_spec(model):
    face = torch.randn(3, 512, generator=torch.Generator().manual_seed(4))
    p = model.face_proj.state_dict()
    expected = layer_norm(
        (face @ p["proj.weight"].T + p["proj.bias"]).reshape(3, 4, 40), p["norm.weight"], p["norm.bias"], 1e-5
    )
    with torch.no_grad():
        assert (model.project_face(face) - expected).abs().max().item() <= TOL
        assert (model.project_face(face[:, None]) - expected).abs().max().item() <= TOL


def test_contract_errors(model):
    inputs = _inputs(model)
    with pytest.raises(ValueError, match="reference banks"):
        model(**{**inputs, "ref_banks": inputs["ref_banks"][:1]})
    with pytest.raises(ValueError, match="latent frames"):
        model(**{**inputs, "audio_embeds": inputs["audio_embeds"][:, :45]})
    with pytest.raises(ValueError, match="audio_embeds is required"):
        model(**{**inputs, "audio_embeds": None})


def test_save_and_load_pretrained_roundtrip(model, tmp_path):
    model.save_pretrained(tmp_path, safe_serialization=True)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    loaded = Hallo3Transformer.from_pretrained(tmp_path).eval()
    public = lambda cfg: {k: v for k, v in cfg.items() if not k.startswith("_")}  # noqa: E731
    assert public(loaded.config) == public(model.config)
    assert loaded.norm_out.norm.eps == 1e-6
    inputs = _inputs(model)
    with torch.no_grad():
        assert torch.equal(model(**inputs, return_dict=False)[0], loaded(**inputs, return_dict=False)[0])
