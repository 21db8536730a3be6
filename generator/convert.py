"""Official Hallo3 (SAT/DeepSpeed) checkpoint → diffusers-style ``Hallo3Transformer`` + ``Hallo3ReferenceNet``.

Strict key accounting: every source key is either mapped to exactly one target tensor or dropped with a stated
reason; every target parameter must be filled with the right shape. Anything else is one ``InputError`` listing the
offending keys. The architecture is inferred from the checkpoint's shapes; only what shapes cannot tell (the latent
geometry and the wav2vec2 window layout) is given by ``CheckpointGeometry`` (official 480x720 values by default).

Files are loaded with ``torch.load(weights_only=True)`` and an explicit allowlist of the few non-tensor objects a
DeepSpeed checkpoint may hold; never plain pickle.
"""

from __future__ import annotations

import argparse
import collections
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from generator.attention import video_rotary_table
from generator.reference import Hallo3ReferenceNet
from generator.transformer import Hallo3Transformer
from reports.errors import InputError, loader_reason

DENOISER_PREFIX = "model.diffusion_model."
REFERENCE_PREFIX = "ref_model.diffusion_model."
CHECKPOINT_FILE = "mp_rank_00_model_states.pt"

StateDict = dict[str, torch.Tensor]


# ---------------------------------------------------------------------------------------------------------------------
# safe loading
# ---------------------------------------------------------------------------------------------------------------------
def _safe_globals() -> list:
    """Non-tensor objects a DeepSpeed/SAT ``mp_rank_00_model_states.pt`` may hold besides tensors."""
    allowed: list = [argparse.Namespace, collections.OrderedDict, set, frozenset, slice]
    try:  # DeepSpeed stores its version as packaging's Version in newer releases
        from packaging.version import Version

        allowed.append(Version)
    except ImportError:  # pragma: no cover - packaging ships with pip
        pass
    return allowed


def load_official_state(path: str | Path) -> StateDict:
    """The model state dict of an official checkpoint file (the ``"module"`` entry of a DeepSpeed save)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "an official checkpoint file (mp_rank_00_model_states.pt) must exist", "missing")
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # unpickling errors name the offending global
        raise InputError(
            str(path),
            "a torch checkpoint loadable with weights_only=True",
            loader_reason(exc),
        ) from None
    state = payload.get("module", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not state:
        raise InputError(str(path), "a dict with the model state dict under 'module'", type(payload).__name__)
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise InputError(str(path), "every entry of the state dict must be a tensor", f"non-tensor entries {bad[:5]}")
    return state


# ---------------------------------------------------------------------------------------------------------------------
# architecture inference
# ---------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckpointGeometry:
    """What the shapes cannot tell: latent token grid and text length, and the wav2vec2 window layout."""

    text_len: int = 226
    latent_frames: int = 13
    latent_height: int = 60
    latent_width: int = 90
    audio_window: int = 5
    audio_blocks: int = 12


def _need(state: StateDict, key: str, subject: str, rule: str) -> torch.Tensor:
    if key not in state:
        raise InputError(subject, rule, f"missing key {key}")
    return state[key]


def _layer_indices(state: StateDict, prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"transformer\.layers\.(\d+)\.")
    return sorted({int(m.group(1)) for k in state if (m := pattern.match(k))})


def infer_backbone(state: StateDict, prefix: str, geometry: CheckpointGeometry, subject: str) -> dict:
    """CogVideoX backbone config from the shapes under ``prefix``."""
    layers = _layer_indices(state, prefix)
    if not layers:
        raise InputError(subject, f"a CogVideoX transformer under '{prefix}' (transformer.layers.N.*)", "no layers")
    if layers != list(range(len(layers))):
        raise InputError(subject, "transformer layers numbered 0..N-1 without gaps", f"layers {layers}")
    hidden = _need(state, prefix + "transformer.layers.0.input_layernorm.weight", subject, "input LayerNorm").shape[0]
    head_dim = _need(state, prefix + "mixins.adaln_layer.query_layernorm_list.0.weight", subject, "q LayerNorm").shape[
        0
    ]
    if hidden % head_dim:
        raise InputError(subject, "hidden size divisible by the q/k-norm head dim", f"{hidden} / {head_dim}")
    t0 = _need(state, prefix + "time_embed.0.weight", subject, "time embedding")
    if t0.shape[1] != hidden:
        raise InputError(
            subject, "timestep sinusoid dim equal to the hidden size (CogVideoX)", f"{t0.shape[1]} vs {hidden}"
        )
    proj = _need(state, prefix + "mixins.patch_embed.proj.weight", subject, "patch embedding")
    text_proj = _need(state, prefix + "mixins.patch_embed.text_proj.weight", subject, "text projection")
    final = _need(state, prefix + "mixins.final_layer.linear.weight", subject, "final layer")
    ffn = _need(state, prefix + "transformer.layers.0.mlp.dense_h_to_4h.weight", subject, "MLP").shape[0]
    if ffn != 4 * hidden:
        raise InputError(subject, "MLP inner size 4x hidden (CogVideoX)", f"{ffn} for hidden {hidden}")
    patch = proj.shape[2]
    pos = _need(state, prefix + "mixins.pos_embed.pos_embedding", subject, "learned position embedding (I2V)")
    g = geometry
    tokens = g.text_len + g.latent_frames * (g.latent_height // patch) * (g.latent_width // patch)
    if pos.shape[1] != tokens:
        raise InputError(
            subject,
            f"learned position table rows = text_len + latent tokens = {tokens} for geometry {g}",
            f"{pos.shape[1]} rows",
        )
    return dict(
        num_attention_heads=hidden // head_dim,
        attention_head_dim=head_dim,
        in_channels=proj.shape[1],
        out_channels=final.shape[0] // (patch * patch),
        time_embed_dim=t0.shape[0],
        text_embed_dim=text_proj.shape[1],
        num_layers=len(layers),
        sample_width=g.latent_width,
        sample_height=g.latent_height,
        sample_frames=(g.latent_frames - 1) * 4 + 1,
        patch_size=patch,
        max_text_seq_length=g.text_len,
    )


def infer_denoiser_config(state: StateDict, geometry: CheckpointGeometry, subject: str = "checkpoint") -> dict:
    """``Hallo3Transformer`` kwargs from the shapes of the ``model.diffusion_model.*`` keys."""
    p = DENOISER_PREFIX
    config = infer_backbone(state, p, geometry, subject)
    rule = "a Hallo3 denoiser (face cross-attention and face projection in every layer)"
    face_kv = _need(state, p + "transformer.layers.0.face_attn.key_value.weight", subject, rule)
    face_proj = _need(state, p + "transformer.face_proj.proj.weight", subject, rule)
    face_dim = _need(state, p + "transformer.face_proj.norm.weight", subject, rule).shape[0]
    has_audio = p + "transformer.layers.0.audio_attn.key_value.weight" in state
    config.update(
        face_embed_dim=face_proj.shape[1],
        face_dim=face_dim,
        face_context_tokens=face_proj.shape[0] // face_dim,
        add_audio_module=has_audio,
    )
    if face_kv.shape[1] != face_dim:
        raise InputError(
            subject, "face cross-attention key/value input = face projection width", f"{face_kv.shape[1]} vs {face_dim}"
        )
    if has_audio:
        arule = "a Hallo3 stage-2 denoiser (audio projection with the audio cross-attention)"
        proj1 = _need(state, p + "transformer.audio_proj.proj1.weight", subject, arule)
        proj3 = _need(state, p + "transformer.audio_proj.proj3.weight", subject, arule)
        audio_dim = _need(state, p + "transformer.audio_proj.norm.weight", subject, arule).shape[0]
        flat = proj1.shape[1]
        window = geometry.audio_window * geometry.audio_blocks
        if flat % window:
            raise InputError(
                subject,
                f"audio proj1 input = window {geometry.audio_window} x blocks {geometry.audio_blocks} x channels",
                flat,
            )
        audio_kv = state[p + "transformer.layers.0.audio_attn.key_value.weight"]
        if audio_kv.shape[1] != audio_dim:
            raise InputError(
                subject,
                "audio cross-attention key/value input = audio projection width",
                f"{audio_kv.shape[1]} vs {audio_dim}",
            )
        config.update(
            audio_seq_len=geometry.audio_window,
            audio_blocks=geometry.audio_blocks,
            audio_channels=flat // window,
            audio_intermediate_dim=proj1.shape[0],
            audio_dim=audio_dim,
            audio_context_tokens=proj3.shape[0] // audio_dim,
        )
    return config


# ---------------------------------------------------------------------------------------------------------------------
# key mapping
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class Conversion:
    """Result of mapping one network's source keys: target tensors, dropped keys with reasons, unmapped keys."""

    target: StateDict = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)
    unmapped: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # target key -> source key


_SIMPLE: list[tuple[str, str]] = [
    (r"time_embed\.0\.(weight|bias)", r"time_embedding.linear_1.\1"),
    (r"time_embed\.2\.(weight|bias)", r"time_embedding.linear_2.\1"),
    (r"mixins\.pos_embed\.pos_embedding", r"patch_embed.pos_embedding"),
    (r"mixins\.patch_embed\.proj\.(weight|bias)", r"patch_embed.proj.\1"),
    (r"mixins\.patch_embed\.text_proj\.(weight|bias)", r"patch_embed.text_proj.\1"),
    (r"mixins\.adaln_layer\.query_layernorm_list\.(\d+)\.(weight|bias)", r"transformer_blocks.\1.attn1.norm_q.\2"),
    (r"mixins\.adaln_layer\.key_layernorm_list\.(\d+)\.(weight|bias)", r"transformer_blocks.\1.attn1.norm_k.\2"),
    (r"mixins\.final_layer\.norm_final\.(weight|bias)", r"norm_out.norm.\1"),
    (r"mixins\.final_layer\.linear\.(weight|bias)", r"proj_out.\1"),
    (r"mixins\.final_layer\.adaLN_modulation\.1\.(weight|bias)", r"norm_out.linear.\1"),
    (r"transformer\.final_layernorm\.(weight|bias)", r"norm_final.\1"),
    (r"transformer\.layers\.(\d+)\.input_layernorm\.(weight|bias)", r"transformer_blocks.\1.norm1.norm.\2"),
    (r"transformer\.layers\.(\d+)\.post_attention_layernorm\.(weight|bias)", r"transformer_blocks.\1.norm2.norm.\2"),
    (r"transformer\.layers\.(\d+)\.attention\.dense\.(weight|bias)", r"transformer_blocks.\1.attn1.to_out.0.\2"),
    (r"transformer\.layers\.(\d+)\.mlp\.dense_h_to_4h\.(weight|bias)", r"transformer_blocks.\1.ff.net.0.proj.\2"),
    (r"transformer\.layers\.(\d+)\.mlp\.dense_4h_to_h\.(weight|bias)", r"transformer_blocks.\1.ff.net.2.\2"),
    # Hallo3-only (denoiser)
    (r"transformer\.layers\.(\d+)\.(face|audio)_input_layernorm\.(weight|bias)", r"transformer_blocks.\1.\2_norm.\3"),
    (r"transformer\.layers\.(\d+)\.(face|audio)_attn\.query\.(weight|bias)", r"transformer_blocks.\1.\2_attn.to_q.\3"),
    (
        r"transformer\.layers\.(\d+)\.(face|audio)_attn\.dense\.(weight|bias)",
        r"transformer_blocks.\1.\2_attn.to_out.0.\3",
    ),
    (r"transformer\.audio_proj\.(proj1|proj2|proj3|conv1|norm)\.(weight|bias)", r"audio_proj.\1.\2"),
    (r"transformer\.face_proj\.(proj|norm)\.(weight|bias)", r"face_proj.\1.\2"),
]

_DROPPED: list[tuple[str, str]] = [
    (r"mixins\.pos_embed\.freqs_(sin|cos)", "RoPE table buffer: recomputed from the geometry (checked equal)"),
    (r"transformer\.position_embeddings\.weight", "unused SAT leftover (max_sequence_length embedding)"),
]


def _split(name: str, parts: list[str]) -> Callable[[re.Match, torch.Tensor], list[tuple[str, torch.Tensor]]]:
    """A rule that chunks a fused tensor along dim 0 into the named target parts (in order)."""

    def apply(m: re.Match, t: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        chunks = t.chunk(len(parts), dim=0)
        return [(m.expand(name).replace("{}", part), c.clone()) for part, c in zip(parts, chunks, strict=True)]

    return apply


def _adaln(m: re.Match, t: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """SAT 12-chunk adaLN (video msa 0-2, video mlp 3-5, text msa 6-8, text mlp 9-11) → diffusers norm1 / norm2."""
    c = t.chunk(12, dim=0)
    i, kind = m.group(1), m.group(2)
    return [
        (f"transformer_blocks.{i}.norm1.linear.{kind}", torch.cat([*c[0:3], *c[6:9]], dim=0)),
        (f"transformer_blocks.{i}.norm2.linear.{kind}", torch.cat([*c[3:6], *c[9:12]], dim=0)),
    ]


_FUSED: list[tuple[str, Callable[[re.Match, torch.Tensor], list[tuple[str, torch.Tensor]]]]] = [
    (
        r"transformer\.layers\.(\d+)\.attention\.query_key_value\.(weight|bias)",
        _split(r"transformer_blocks.\1.attn1.{}.\2", ["to_q", "to_k", "to_v"]),
    ),
    (
        r"transformer\.layers\.(\d+)\.(face|audio)_attn\.key_value\.(weight|bias)",
        _split(r"transformer_blocks.\1.\2_attn.{}.\3", ["to_k", "to_v"]),
    ),
    (r"mixins\.adaln_layer\.adaLN_modulations\.(\d+)\.1\.(weight|bias)", _adaln),
]


def map_keys(state: StateDict, prefix: str) -> Conversion:
    """Map every key under ``prefix`` (prefix stripped) to target keys, or drop it with a reason."""
    conv = Conversion()
    for key, tensor in state.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix) :]
        produced: list[tuple[str, torch.Tensor]] | None = None
        for pattern, repl in _SIMPLE:
            if m := re.fullmatch(pattern, name):
                produced = [(m.expand(repl), tensor)]
                break
        if produced is None:
            for pattern, fn in _FUSED:
                if m := re.fullmatch(pattern, name):
                    produced = fn(m, tensor)
                    break
        if produced is None:
            reason = next((why for pattern, why in _DROPPED if re.fullmatch(pattern, name)), None)
            if reason is not None:
                conv.dropped[key] = reason
            else:
                conv.unmapped.append(key)
            continue
        for target, value in produced:
            if target in conv.target:
                conv.unmapped.append(f"{key} (collides on {target} with {conv.sources[target]})")
            conv.target[target] = value
            conv.sources[target] = key
    return conv


def _load_strict(model: torch.nn.Module, conv: Conversion, subject: str, what: str, dtype: torch.dtype) -> None:
    """Load ``conv.target`` into ``model`` after checking key sets and shapes; one error lists every problem."""
    expected = model.state_dict()
    problems: list[str] = []
    if conv.unmapped:
        problems.append("unmapped source keys: " + ", ".join(sorted(conv.unmapped)))
    missing = sorted(set(expected) - set(conv.target))
    if missing:
        problems.append("target parameters not filled: " + ", ".join(missing))
    extra = sorted(set(conv.target) - set(expected))
    if extra:
        problems.append("mapped keys with no target: " + ", ".join(f"{conv.sources[k]} -> {k}" for k in extra))
    shapes = [
        f"{conv.sources[k]} -> {k} {tuple(conv.target[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in conv.target and conv.target[k].shape != v.shape
    ]
    if shapes:
        problems.append("shape mismatches: " + "; ".join(shapes))
    if problems:
        raise InputError(
            subject, f"every {what} key mapped or dropped with a reason, every parameter filled", " | ".join(problems)
        )
    # the model was built on the meta device: assign the (mmap-backed) source tensors instead of copying into
    # allocated parameters, so a full-size conversion never holds two copies of the weights
    model.load_state_dict({k: v.to(dtype) for k, v in conv.target.items()}, strict=True, assign=True)


def _check_rope(
    state: StateDict, prefix: str, model: torch.nn.Module, geometry: CheckpointGeometry, subject: str
) -> None:
    """The dropped RoPE buffers must equal the table we recompute (else the geometry or RoPE layout differs)."""
    sin_key, cos_key = prefix + "mixins.pos_embed.freqs_sin", prefix + "mixins.pos_embed.freqs_cos"
    if sin_key not in state or cos_key not in state:
        return
    if state[sin_key].is_meta or state[cos_key].is_meta:
        return  # shape-only (meta) state dict: no values to compare
    cfg = model.config
    p = cfg.patch_size
    cos, sin = video_rotary_table(
        cfg.attention_head_dim, geometry.latent_frames, geometry.latent_height // p, geometry.latent_width // p
    )
    # SAT stores one value per frequency pair (head_dim/2 columns); ours repeats each for the pair
    ref_cos, ref_sin = state[cos_key].float(), state[sin_key].float()
    if ref_cos.shape[-1] * 2 == cos.shape[-1]:
        cos, sin = cos[:, ::2], sin[:, ::2]
    if ref_cos.shape != cos.shape or (ref_cos - cos).abs().max() > 1e-4 or (ref_sin - sin).abs().max() > 1e-4:
        raise InputError(
            subject, f"stored RoPE table equal to the recomputed 3D RoPE for geometry {geometry}", f"{sin_key} differs"
        )


# ---------------------------------------------------------------------------------------------------------------------
# public conversion API
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class ConvertedHallo3:
    transformer: Hallo3Transformer
    reference_net: Hallo3ReferenceNet
    dropped: dict[str, str]  # source key -> reason


_OTHER_PREFIXES = {
    "first_stage_model.": "VAE: loaded from cogvideox-5b-i2v-sat/vae/3d-vae.pt (convert_vae_state)",
    "conditioner.": "T5 text encoder: loaded from the t5-v1_1-xxl folder",
}


def convert_state(
    state: StateDict,
    geometry: CheckpointGeometry | None = None,
    subject: str = "checkpoint",
    dtype: torch.dtype = torch.float32,
) -> ConvertedHallo3:
    """Build and strictly load both networks from an official engine state dict."""
    geometry = geometry or CheckpointGeometry()
    stray = []
    dropped: dict[str, str] = {}
    for key in state:
        if key.startswith((DENOISER_PREFIX, REFERENCE_PREFIX)):
            continue
        reason = next((why for p, why in _OTHER_PREFIXES.items() if key.startswith(p)), None)
        if reason is None:
            stray.append(key)
        else:
            dropped[key] = reason
    if stray:
        raise InputError(
            subject,
            f"only keys under {DENOISER_PREFIX}, {REFERENCE_PREFIX} or {', '.join(_OTHER_PREFIXES)}",
            ", ".join(stray[:20]),
        )
    if not any(k.startswith(REFERENCE_PREFIX) for k in state):
        raise InputError(
            subject, f"a Hallo3 engine checkpoint with the reference network under '{REFERENCE_PREFIX}'", "none found"
        )

    den_config = infer_denoiser_config(state, geometry, subject)
    ref_config = infer_backbone(state, REFERENCE_PREFIX, geometry, subject)
    for name in ("num_layers", "num_attention_heads", "attention_head_dim", "time_embed_dim", "text_embed_dim"):
        if den_config[name] != ref_config[name]:
            raise InputError(
                subject,
                f"reference network with the same {name} as the denoiser",
                f"{ref_config[name]} vs {den_config[name]}",
            )

    with torch.device("meta"):
        transformer = Hallo3Transformer(**den_config)
        reference_net = Hallo3ReferenceNet(**ref_config)
    for prefix, model, what in (
        (DENOISER_PREFIX, transformer, "denoiser"),
        (REFERENCE_PREFIX, reference_net, "reference-network"),
    ):
        conv = map_keys(state, prefix)
        _load_strict(model, conv, subject, what, dtype)
        _check_rope(state, prefix, model, geometry, subject)
        dropped.update(conv.dropped)
        model.requires_grad_(False)
        model.eval()
    return ConvertedHallo3(transformer=transformer, reference_net=reference_net, dropped=dropped)


def convert_official_checkpoint(
    path: str | Path, geometry: CheckpointGeometry | None = None, dtype: torch.dtype = torch.float32
) -> ConvertedHallo3:
    """``mp_rank_00_model_states.pt`` → both networks."""
    return convert_state(load_official_state(path), geometry, subject=str(path), dtype=dtype)


# ---------------------------------------------------------------------------------------------------------------------
# VAE (3d-vae.pt) → AutoencoderKLCogVideoX keys (spec §8.1 step 5)
# ---------------------------------------------------------------------------------------------------------------------
_VAE_RENAMES: list[tuple[str, str]] = [
    (r"^(encoder|decoder)\.mid\.block_1\.", r"\1.mid_block.resnets.0."),
    (r"^(encoder|decoder)\.mid\.block_2\.", r"\1.mid_block.resnets.1."),
    (r"^encoder\.down\.(\d+)\.", r"encoder.down_blocks.\1."),
    (r"\.block\.(\d+)\.", r".resnets.\1."),
    (r"\.downsample\.", r".downsamplers.0."),
    (r"\.upsample\.", r".upsamplers.0."),
    (r"\.nin_shortcut\.", r".conv_shortcut."),
]


def convert_vae_state(state: StateDict, subject: str = "3d-vae.pt") -> StateDict:
    """SAT CogVideoX VAE state dict → ``AutoencoderKLCogVideoX`` keys. ``loss*`` keys are dropped (training-only);
    ``decoder.up.{k}`` becomes ``decoder.up_blocks.{levels-1-k}`` (SAT numbers decoder levels bottom-up)."""
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    up_levels = {int(m.group(1)) for k in state if (m := re.match(r"decoder\.up\.(\d+)\.", k))}
    top = max(up_levels) if up_levels else 0
    out: StateDict = {}
    stray = []
    for key, tensor in state.items():
        if key.startswith("loss"):
            continue
        if not key.startswith(("encoder.", "decoder.")) or not isinstance(tensor, torch.Tensor):
            stray.append(key)
            continue
        name = key
        if m := re.match(r"decoder\.up\.(\d+)\.", name):
            name = f"decoder.up_blocks.{top - int(m.group(1))}." + name[m.end() :]
        for pattern, repl in _VAE_RENAMES:
            name = re.sub(pattern, repl, name)
        if name in out:
            stray.append(f"{key} (collides on {name})")
        out[name] = tensor
    if stray:
        raise InputError(subject, "VAE keys under encoder./decoder. (or loss.*, dropped)", ", ".join(stray[:20]))
    return out


def load_vae_state(path: str | Path) -> StateDict:
    """Read ``3d-vae.pt`` safely (``weights_only``) and convert its keys."""
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "the CogVideoX VAE checkpoint (3d-vae.pt) must exist", "missing")
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        raise InputError(str(path), "a torch checkpoint loadable with weights_only=True", type(exc).__name__) from None
    if not isinstance(payload, dict):
        raise InputError(str(path), "a state dict", type(payload).__name__)
    return convert_vae_state(payload, subject=str(path))


# ---------------------------------------------------------------------------------------------------------------------
# release layout and the converted (safetensors) form
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class OfficialRelease:
    """Everything ``from_official`` resolves from a ``pretrained_models/`` folder."""

    transformer: Hallo3Transformer
    reference_net: Hallo3ReferenceNet
    dropped: dict[str, str]
    vae_state: StateDict | None  # AutoencoderKLCogVideoX keys (scaling_factor 0.7), None if 3d-vae.pt is absent
    t5_dir: Path | None
    wav2vec_dir: Path | None


def resolve_checkpoint(model_dir: str | Path) -> Path:
    """``<dir>/latest`` names the tag folder holding ``mp_rank_00_model_states.pt``; a file path is taken as is."""
    path = Path(model_dir)
    if path.is_file():
        return path
    latest = path / "latest"
    if latest.is_file():
        tag = latest.read_text().strip()
        if not tag or "/" in tag or tag.startswith("."):
            raise InputError(str(latest), "a plain iteration tag (e.g. '1')", repr(tag))
        candidate = path / tag / CHECKPOINT_FILE
    else:
        candidate = path / "1" / CHECKPOINT_FILE
    if not candidate.is_file():
        raise InputError(
            str(path), f"a SAT checkpoint folder with latest -> <tag>/{CHECKPOINT_FILE}", f"{candidate} missing"
        )
    return candidate


def from_official(
    pretrained_dir: str | Path, geometry: CheckpointGeometry | None = None, dtype: torch.dtype = torch.float32
) -> OfficialRelease:
    """Convert the official release layout: ``hallo3/`` (denoiser + reference net), ``cogvideox-5b-i2v-sat/vae/3d-vae.pt``
    (VAE keys), and the paths of the plain HF folders ``t5-v1_1-xxl`` and ``wav2vec/wav2vec2-base-960h``."""
    root = Path(pretrained_dir)
    if not root.is_dir():
        raise InputError(str(root), "the official pretrained_models folder", "not a directory")
    converted = convert_official_checkpoint(resolve_checkpoint(root / "hallo3"), geometry, dtype)
    vae_path = root / "cogvideox-5b-i2v-sat" / "vae" / "3d-vae.pt"
    t5_dir = root / "t5-v1_1-xxl"
    wav2vec_dir = root / "wav2vec" / "wav2vec2-base-960h"
    return OfficialRelease(
        transformer=converted.transformer,
        reference_net=converted.reference_net,
        dropped=converted.dropped,
        vae_state=load_vae_state(vae_path) if vae_path.is_file() else None,
        t5_dir=t5_dir if t5_dir.is_dir() else None,
        wav2vec_dir=wav2vec_dir if wav2vec_dir.is_dir() else None,
    )


def save_converted(converted: ConvertedHallo3 | OfficialRelease, out_dir: str | Path) -> Path:
    """Write the converted networks as diffusers folders (safetensors): ``transformer/`` and ``reference_net/``."""
    out = Path(out_dir)
    converted.transformer.save_pretrained(out / "transformer", safe_serialization=True)
    converted.reference_net.save_pretrained(out / "reference_net", safe_serialization=True)
    return out


def load_converted(
    out_dir: str | Path, dtype: torch.dtype = torch.float32
) -> tuple[Hallo3Transformer, Hallo3ReferenceNet]:
    """Load what ``save_converted`` wrote."""
    root = Path(out_dir)
    for sub in ("transformer", "reference_net"):
        if not (root / sub / "config.json").is_file():
            raise InputError(str(root / sub), "a converted diffusers folder (config.json + safetensors)", "missing")
    transformer = Hallo3Transformer.from_pretrained(root / "transformer", torch_dtype=dtype)
    reference_net = Hallo3ReferenceNet.from_pretrained(root / "reference_net", torch_dtype=dtype)
    return transformer.eval(), reference_net.eval()
