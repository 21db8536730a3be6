"""Generator backends the gate can run, by name, with their weights resolved through ``gate.weights``.

* ``hallo3`` — the real model: ``--model DIR`` holding the official release layout (``hallo3/``,
  ``cogvideox-5b-i2v-sat/vae/3d-vae.pt``, ``t5-v1_1-xxl/``, ``wav2vec/wav2vec2-base-960h/``,
  ``face_analysis/models/``) or a converted (``save_pretrained``) pipeline directory.
* ``still`` — the portrait repeated (negative control: must fail lip sync).
* ``puppet`` — the portrait with its mouth opened by the speech envelope (positive control, not a model).
* ``hallo3-tiny`` — the real Hallo3 pipeline code with tiny RANDOM weights (machinery demo; its output is noise).

Both Hallo3 backends sample with the official sampler by default (``generator.sampling.DEFAULT_SAMPLER``);
``sampler="diffusers-dpm"`` picks diffusers' stock ``CogVideoXDPMScheduler``. The record's generator config names it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from gate import weights
from generator.output import GenerationOutput
from reports import schema as S
from reports.errors import UsageError

NAMES = ("hallo3", "still", "puppet", "hallo3-tiny")
TINY_SIZE = (256, 384)  # height, width: the smallest the watermark and the metrics accept comfortably


def generate(
    name: str,
    portrait_rgb: np.ndarray,
    audio: np.ndarray,
    sample_rate: int,
    *,
    prompt: str = "",
    seed: int = 0,
    model_dir: Path | None = None,
    steps: int | None = None,
    sampler: str | None = None,
    allow_unpinned: bool = False,
) -> tuple[GenerationOutput, S.GeneratorInfo, list[dict[str, Any]]]:
    """Run backend ``name``; returns its output, what the record says about it, and the weight files it used.

    Every weight file is checked against its pin before it is loaded (``gate.weights``); files without a pin (a
    user's ``--model`` directory) are refused unless ``allow_unpinned`` (the policy's ``[weights] allow_unpinned``)."""
    check_options(name, steps, sampler)
    used: list[dict[str, Any]] = []
    if name == "still":
        from generator.still import StillBackend

        out = StillBackend().generate(portrait_rgb, audio, sample_rate, prompt=prompt, seed=seed)
        model = "still baseline (reference image repeated; negative control)"
    elif name == "puppet":
        from generator.puppet import PuppetBackend

        lm = weights.use("dlib_landmarks_68")
        used.append(lm.to_ref())
        out = PuppetBackend(lm.path).generate(portrait_rgb, audio, sample_rate, prompt=prompt, seed=seed)
        model = "puppet (mouth opened by the speech envelope; positive control, not a generative model)"
    elif name == "hallo3-tiny":
        out = _tiny(portrait_rgb, audio, sample_rate, prompt=prompt, seed=seed, steps=steps, sampler=sampler)
        model = "Hallo3 pipeline with tiny RANDOM weights (machinery demo; not a trained model)"
    else:
        out, used = _hallo3(
            portrait_rgb,
            audio,
            sample_rate,
            prompt=prompt,
            seed=seed,
            model_dir=model_dir,
            steps=steps,
            sampler=sampler,
            allow_unpinned=allow_unpinned,
        )
        model = f"Hallo3 ({model_dir})"
    info = S.GeneratorInfo(
        backend=name,
        model_name=model,
        config=out.config,
        seed=seed,
        weight_hashes={w["name"]: w["sha256"] for w in used},
    )
    return out, info, used


def check_options(name: str, steps: int | None = None, sampler: str | None = None) -> None:
    """Usage checks that need nothing loaded (call before anything is written): a known backend, and for the Hallo3
    backends a known sampler (None: the default, official) and a step count it can take."""
    if name not in NAMES:
        raise UsageError("--backend", f"must be one of {', '.join(NAMES)}", repr(name))
    if name not in ("hallo3", "hallo3-tiny"):
        if sampler is not None:
            raise UsageError("--sampler", "applies only to the hallo3 and hallo3-tiny backends", f"backend {name}")
        return
    from generator.sampling import DEFAULT_SAMPLER, SAMPLERS, step_count_rule

    sampler = sampler or DEFAULT_SAMPLER
    if sampler not in SAMPLERS:
        raise UsageError("--sampler", f"must be one of {', '.join(SAMPLERS)}", repr(sampler))
    rule = step_count_rule(sampler, steps) if steps else None
    if rule is not None:
        raise UsageError("--steps", rule, steps)


def _tiny(
    portrait_rgb, audio, sample_rate, *, prompt: str, seed: int, steps: int | None, sampler: str | None
) -> GenerationOutput:
    from generator.tiny import TinyFaceAnalyser, build_tiny_pipeline, tiny_generation

    height, width = TINY_SIZE
    with tempfile.TemporaryDirectory(prefix="hallo3-tiny-") as tmp:
        pipe = build_tiny_pipeline(tmp, seed=seed, face_analyser=TinyFaceAnalyser())
        if sampler:
            pipe.use_sampler(sampler)
        config = tiny_generation(height=height, width=width, **({"num_inference_steps": steps} if steps else {}))
        return pipe(portrait_rgb, audio, sample_rate, prompt=prompt, config=config, seed=seed).to_generation_output()


def _hallo3(
    portrait_rgb,
    audio,
    sample_rate,
    *,
    prompt: str,
    seed: int,
    model_dir: Path | None,
    steps: int | None,
    sampler: str | None,
    allow_unpinned: bool,
):
    from generator.pipeline import GenerationConfig, Hallo3Pipeline

    if model_dir is None:
        raise UsageError("--model", "the hallo3 backend needs the weights directory (official release or converted)")
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise UsageError("--model", "must be a directory", str(model_dir))
    used = model_weights(model_dir, allow_unpinned=allow_unpinned)  # checked (and refused) before anything loads
    pipe = Hallo3Pipeline.from_directory(model_dir)
    if sampler:
        pipe.use_sampler(sampler)
    config = GenerationConfig(**({"num_inference_steps": steps} if steps else {}))
    out = pipe(portrait_rgb, audio, sample_rate, prompt=prompt, config=config, seed=seed).to_generation_output()
    return out, used


WEIGHT_SUFFIXES = frozenset({".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".onnx", ".model"})


def model_weights(model_dir: Path, *, allow_unpinned: bool = False) -> list[dict[str, Any]]:
    """Every weight file under a ``--model`` directory, hashed and checked (``gate.weights.weight_ref``), named by
    its path relative to the directory. Raises ``WeightRefusedError`` (exit 3) for a file that fails its pin or has
    none while ``allow_unpinned`` is false; symlinks are resolved by ``gate.weights`` like any explicit path."""
    files = sorted(p for p in model_dir.rglob("*") if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    return [weights.weight_ref(p.relative_to(model_dir).as_posix(), p, allow_unpinned=allow_unpinned) for p in files]
