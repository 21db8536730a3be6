"""The Hallo3 pipeline end to end at tiny width on CPU: long video by clips, conditioning, sampler step, bad input."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _official_sampler import coefficients_at, official_alphas
from _tolerances import CFG_TOL, CFG_TWO_PASSES_TOL, OFFICIAL_VALUE_TOL, sampler_step_tolerance

from generator import pipeline as pipeline_module
from generator.audio import AudioConfig, AudioEncoder, clip_audio_windows
from generator.output import GenerationOutput
from generator.pipeline import ClipConditions, Hallo3Pipeline, MemoryConfig, PromptTruncatedWarning
from generator.sampling import DIFFUSERS_DPM, OFFICIAL, diffusers_scheduler, make_scheduler
from generator.tiny import TINY, TINY_AUDIO_HIDDEN, TINY_AUDIO_LAYERS, build_tiny_pipeline, tiny_generation
from reports.errors import InputError, UsageError

RATE = 16_000
PROMPT = "A woman talking on a dimly lit beach with the waves of the sea behind her."


def speech_like(seconds: float, seed: int) -> np.ndarray:
    """A voiced-speech stand-in: harmonics of a wandering pitch under a syllable-rate envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * RATE)) / RATE
    pitch = 120 + 40 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t)
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, np.pi))
    return (0.2 * voice * envelope).astype(np.float32)


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    data = pytest.importorskip("skimage.data")
    return data.astronaut()  # a real 512×512 portrait photo shipped with scikit-image


@pytest.fixture(scope="module")
def analyser() -> Any:
    pytest.importorskip("dlib")
    from generator.tiny import TinyFaceAnalyser

    return TinyFaceAnalyser()


@pytest.fixture(scope="module")
def pipe(tmp_path_factory: pytest.TempPathFactory, analyser: Any) -> Hallo3Pipeline:
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny"), seed=0, face_analyser=analyser, sizes=TINY)


@dataclass
class Recorder:
    """Records what every transformer call and every VAE encode/decode received or returned."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    encoded: list[torch.Tensor] = field(default_factory=list)
    decoded: list[torch.Tensor] = field(default_factory=list)

    def __call__(self, kwargs: dict[str, Any]) -> None:
        self.calls.append({k: v.clone() for k, v in kwargs.items() if isinstance(v, torch.Tensor)})


def run(pipe: Hallo3Pipeline, image: Any, audio: np.ndarray, monkeypatch: pytest.MonkeyPatch | None = None, **kw: Any):
    recorder = Recorder()
    pipe.transformer_calls.append(recorder)
    if monkeypatch is not None:
        encode, decode = pipe._vae_encode, pipe.decode_latents

        def spy_encode(frames: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
            recorder.encoded.append(frames.clone())
            return encode(frames, generator)

        def spy_decode(latents: torch.Tensor) -> torch.Tensor:
            out = decode(latents)
            recorder.decoded.append(out.clone())
            return out

        monkeypatch.setattr(pipe, "_vae_encode", spy_encode)
        monkeypatch.setattr(pipe, "decode_latents", spy_decode)
    try:
        kw.setdefault("config", tiny_generation(TINY))
        out = pipe(image, audio, RATE, **kw)
    finally:
        pipe.transformer_calls.remove(recorder)
    return out, recorder


@pytest.fixture(scope="module")
def first_run(pipe: Hallo3Pipeline, portrait: np.ndarray) -> tuple[Any, Recorder]:
    with pytest.MonkeyPatch.context() as mp:
        return run(pipe, portrait, speech_like(2.4, seed=1), mp, prompt=PROMPT, seed=3)


def test_two_clip_long_video_end_to_end(pipe: Hallo3Pipeline, first_run: tuple[Any, Recorder]) -> None:
    out, rec = first_run
    # 2.4 s → N = 60 frames → 2 clips of 47 new frames (the official 49-padding would need 3)
    assert out.frames.shape == (60, 32, 32, 3) and out.frames.dtype == np.uint8  # square portrait: cropped back
    assert out.fps == 25.0 and out.sample_rate == RATE and out.seed == 3
    np.testing.assert_array_equal(out.audio, speech_like(2.4, seed=1))
    assert out.config["clips"] == 2 and out.config["official_clips"] == 3
    assert out.config["generation"]["num_inference_steps"] == 3 and out.config["prompt"] == PROMPT
    assert out.config["sampler"] == OFFICIAL and out.config["scheduler"]["prediction_type"] == "sample"  # the default
    json.dumps(out.config)
    generated = out.to_generation_output()
    assert isinstance(generated, GenerationOutput) and generated.backend == "hallo3" and generated.num_frames == 60

    # frames = clip 0 decoded frames 2…48, then clip 1 frames 2…14, as uint8, centre-cropped to 32×32
    assert len(rec.decoded) == 2 and rec.decoded[0].shape == (49, 3, 32, 48)
    expected = torch.cat([rec.decoded[0][2:], rec.decoded[1][2:15]])
    expected = ((expected.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1)[:, :, 8:40].numpy()
    np.testing.assert_array_equal(out.frames, expected)


def test_motion_frames_are_the_last_two_decoded_frames_with_a_shared_10_percent_mask(
    first_run: tuple[Any, Recorder],
) -> None:
    _, rec = first_run
    face_pass, clip0, clip1 = rec.encoded
    assert face_pass.shape == (1, 3, 32, 48)  # the face-masked reference, one frame
    assert clip0.shape == clip1.shape == (3, 3, 32, 48)  # [reference ; m1 ; m2]
    torch.testing.assert_close(clip0[0], clip1[0])  # the reference frame itself is never masked
    previous = rec.decoded[0][-2:].clamp(-1, 1)
    masked = (clip1[1:] == 0).all(dim=0).all(dim=0)  # positions zeroed in both frames and all channels
    share = masked.float().mean().item()
    assert 0.05 < share < 0.16
    torch.testing.assert_close(clip1[1:][:, :, ~masked], previous[:, :, ~masked])
    # clip 0's motion frames are the reference itself, masked the same way
    masked0 = (clip0[1:] == 0).all(dim=0).all(dim=0)
    torch.testing.assert_close(clip0[1:][:, :, ~masked0], clip0[:1].expand(2, -1, -1, -1)[:, :, ~masked0])


def test_transformer_calls_batch_uncond_then_cond(pipe: Hallo3Pipeline, first_run: tuple[Any, Recorder]) -> None:
    _, rec = first_run
    assert len(rec.calls) == 2 * 3  # 2 clips × 3 steps, one batched call each
    windows = pipe.audio_encoder.encode(speech_like(2.4, seed=1), RATE).windows
    for n, call in enumerate(rec.calls):
        clip = n // 3
        assert call["hidden_states"].shape == (2, 13, 32, 4, 6)
        assert call["audio_embeds"].shape == (2, 49, 5, TINY_AUDIO_LAYERS, TINY_AUDIO_HIDDEN)
        assert (call["audio_embeds"][0] == 0).all()  # uncond: zeros into the audio projection
        torch.testing.assert_close(call["audio_embeds"][1], clip_audio_windows(windows, clip))
        assert (call["encoder_hidden_states"][0] == 0).all() and call["encoder_hidden_states"][1].abs().sum() > 0
        torch.testing.assert_close(call["face_embeds"][0], call["face_embeds"][1])
        image = call["hidden_states"][:, :, 16:]
        torch.testing.assert_close(image[0], image[1])  # concat latent identical in both halves
        assert (image[:, 1:] == 0).all() and image[:, 0].abs().sum() > 0  # 1 latent frame + 12 zero frames
        torch.testing.assert_close(call["hidden_states"][0, :, :16], call["hidden_states"][1, :, :16])
        assert call["timestep"].tolist() == [int(pipe.scheduler.timesteps[n % 3])] * 2


def test_deterministic_under_a_seed(
    pipe: Hallo3Pipeline, portrait: np.ndarray, first_run: tuple[Any, Recorder]
) -> None:
    again, _ = run(pipe, portrait, speech_like(2.4, seed=1), prompt=PROMPT, seed=3)
    np.testing.assert_array_equal(again.frames, first_run[0].frames)
    other, _ = run(pipe, portrait, speech_like(2.4, seed=1), prompt=PROMPT, seed=4)
    assert not np.array_equal(other.frames, first_run[0].frames)


def test_audio_drives_the_output_but_not_the_unconditional_branch(
    pipe: Hallo3Pipeline, portrait: np.ndarray, first_run: tuple[Any, Recorder]
) -> None:
    out_a, rec_a = first_run
    out_b, rec_b = run(pipe, portrait, speech_like(2.4, seed=2), prompt=PROMPT, seed=3)
    assert np.abs(out_a.frames.astype(int) - out_b.frames.astype(int)).mean() > 0.5
    # first call of both runs: same noise, image, text, face; only the audio differs
    a, b = rec_a.calls[0], rec_b.calls[0]
    assert not torch.equal(a["audio_embeds"][1], b["audio_embeds"][1])
    for name in ("hidden_states", "encoder_hidden_states", "face_embeds", "audio_embeds"):
        torch.testing.assert_close(a[name][0], b[name][0], rtol=0, atol=0)
    banks = pipeline_module.compute_banks(
        pipe.ref_net, torch.randn(1, 1, 16, 4, 6, generator=torch.Generator().manual_seed(0))
    )
    with torch.no_grad():
        v_a = pipe.transformer(**{k: v for k, v in a.items()}, ref_banks=banks, return_dict=False)[0]
        v_b = pipe.transformer(**{k: v for k, v in b.items()}, ref_banks=banks, return_dict=False)[0]
    torch.testing.assert_close(v_a[0], v_b[0], rtol=0, atol=0)  # uncond prediction ignores the audio
    assert (v_a[1] - v_b[1]).abs().max() > 1e-4  # cond prediction follows it


def test_reference_banks_computed_once_and_equal_to_recomputing(
    pipe: Hallo3Pipeline, portrait: np.ndarray, first_run: tuple[Any, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = pipeline_module.compute_banks

    def counting(*args: Any, **kwargs: Any) -> list[torch.Tensor]:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline_module, "compute_banks", counting)
    before = dict(pipe.bank_stats)
    cached, _ = run(pipe, portrait, speech_like(2.4, seed=1), prompt=PROMPT, seed=3)
    assert pipe.bank_stats["reused"] - before["reused"] == 2  # same portrait latent as first_run: no new pass
    assert len(calls) == pipe.bank_stats["computed"] - before["computed"] == 0
    recomputed, _ = run(
        pipe,
        portrait,
        speech_like(2.4, seed=1),
        prompt=PROMPT,
        seed=3,
        config=tiny_generation(TINY, cache_reference_banks=False),
    )
    assert len(calls) == 2  # the official behaviour: once per clip
    np.testing.assert_array_equal(recomputed.frames, first_run[0].frames)
    np.testing.assert_array_equal(cached.frames, first_run[0].frames)


def _random_conditions(pipe: Hallo3Pipeline, seed: int) -> ClipConditions:
    g = torch.Generator().manual_seed(seed)
    image = torch.zeros(1, 13, 16, 4, 6)
    image[:, 0] = torch.randn(1, 16, 4, 6, generator=g)
    text = torch.cat([torch.zeros(1, 226, 16), torch.randn(1, 226, 16, generator=g)])
    audio = torch.cat([torch.zeros(1, 49, 5, 2, 16), torch.randn(1, 49, 5, 2, 16, generator=g)])
    face = torch.randn(1, 512, generator=g).expand(2, -1)
    banks = [torch.randn(1, 6, 32, generator=g) for _ in range(2)]
    return ClipConditions(image_latents=image, text=text, audio=audio, face=face, banks=banks)


def _v(pipe: Hallo3Pipeline, x: torch.Tensor, t: int, cond: ClipConditions, half: int) -> torch.Tensor:
    """The transformer on one CFG half alone (batch 1)."""
    with torch.no_grad():
        return pipe.transformer(
            hidden_states=torch.cat([x, cond.image_latents], dim=2),
            encoder_hidden_states=cond.text[half : half + 1],
            timestep=torch.tensor([t]),
            audio_embeds=cond.audio[half : half + 1],
            face_embeds=cond.face[half : half + 1],
            ref_banks=cond.banks,
            return_dict=False,
        )[0]


def _with_sampler(pipe: Hallo3Pipeline, sampler: str) -> Hallo3Pipeline:
    return Hallo3Pipeline(**{**pipe.components, "scheduler": make_scheduler(sampler)})


@pytest.mark.parametrize("sampler", [OFFICIAL, DIFFUSERS_DPM])
def test_one_sampler_step_is_the_spec_dpm_solver_2m_sde_update(pipe: Hallo3Pipeline, sampler: str) -> None:
    """Spec §6 / fixture README item 6, in sqrt(alpha_bar) terms, with CFG 3.5 over [uncond ; cond], step 25 of 50.
    official: the sampler's alphas (zero-SNR over the 50 selected steps) and x0 from the denoiser's nearest 1000-step
    alpha (timestep 499's); diffusers-dpm: diffusers' 1000-step table for both."""
    piped = _with_sampler(pipe, sampler)
    piped.scheduler.set_timesteps(50)
    timesteps = piped.scheduler.timesteps
    assert timesteps[0] == 999 and timesteps[25] == 499 and timesteps[-1] == 19
    g = torch.Generator().manual_seed(11)
    x = torch.randn(1, 13, 16, 4, 6, generator=g)
    old_x0 = torch.randn(1, 13, 16, 4, 6, generator=g)
    cond = _random_conditions(pipe, 12)
    with torch.no_grad():
        x_next, x0 = piped.denoise_step(x, old_x0, 25, timesteps, cond, 3.5, torch.Generator().manual_seed(99))

    v = _v(pipe, x, 499, cond, 0) + 3.5 * (_v(pipe, x, 499, cond, 1) - _v(pipe, x, 499, cond, 0))
    table = diffusers_scheduler().alphas_cumprod.double().sqrt()  # the denoiser's (and diffusers') 1000-step table
    if sampler == OFFICIAL:
        alphas = official_alphas(50)
        a, a_next, a_prev = alphas[25], alphas[26], alphas[24]
    else:
        a, a_next, a_prev = (float(table[t]) for t in (499, 479, 519))
    m1, m2, m3, m4, m_noise = coefficients_at(a, a_next, a_prev)
    x0_alpha = float(table[499])
    expected_x0 = x0_alpha * x.double() - math.sqrt(1 - x0_alpha**2) * v.double()
    noise_g = torch.Generator().manual_seed(99)
    torch.randn(x.shape, generator=noise_g)  # the first draw (first-order candidate) is discarded
    noise = torch.randn(x.shape, generator=noise_g).double()
    expected = m1 * x.double() - m2 * (m3 * expected_x0 - m4 * old_x0.double()) + m_noise * noise
    assert (x0.double() - expected_x0).abs().max().item() <= CFG_TWO_PASSES_TOL
    sizes = (x.abs().max().item(), expected_x0.abs().max().item(), old_x0.abs().max().item(), noise.abs().max().item())
    step_tol = abs(m2 * m3) * CFG_TWO_PASSES_TOL + sampler_step_tolerance(a, a_next, a_prev, sizes)
    assert (x_next.double() - expected).abs().max().item() <= step_tol

    # the last step returns the guided x0 prediction itself (alpha_next = 1, no noise)
    with torch.no_grad():
        last, last_x0 = piped.denoise_step(x, old_x0, 49, timesteps, cond, 3.5, torch.Generator().manual_seed(5))
    torch.testing.assert_close(last, last_x0)


def test_diffusers_dpm_sampler_by_name_is_used_and_recorded(pipe: Hallo3Pipeline, portrait: np.ndarray) -> None:
    stock = Hallo3Pipeline(**pipe.components)
    stock.use_sampler(DIFFUSERS_DPM)
    assert stock.sampler == DIFFUSERS_DPM and pipe.sampler == OFFICIAL
    config = tiny_generation(TINY, num_inference_steps=2)
    audio = speech_like(1.0, seed=7)
    out = stock(portrait, audio, RATE, prompt=PROMPT, config=config, seed=1)
    assert out.config["sampler"] == DIFFUSERS_DPM and out.config["scheduler"]["prediction_type"] == "v_prediction"
    official = pipe(portrait, audio, RATE, prompt=PROMPT, config=config, seed=1)
    assert official.config["sampler"] == OFFICIAL
    assert not np.array_equal(out.frames, official.frames)  # another sampler, another video from the same seed
    stock.use_sampler()
    assert stock.sampler == OFFICIAL


def test_timesteps_match_the_official_fixture(pipe: Hallo3Pipeline, official_tiny: Path) -> None:
    from safetensors.torch import load_file

    from generator.sampling import denoiser_alpha

    stored = load_file(str(official_tiny / "io.safetensors"))
    official = stored["sched.timesteps"].flip(0)[:-1].long()  # 999, 979, …, 19
    for sampler in (OFFICIAL, DIFFUSERS_DPM):
        scheduler = make_scheduler(sampler)
        scheduler.set_timesteps(50)
        assert scheduler.timesteps.tolist() == official.tolist()
    default = make_scheduler()
    default.set_timesteps(50)
    # step 25 (t = 499): the sampler's alpha, and the denoiser's 1000-step table entry nearest to it
    assert abs(default.sampler_alpha(499) - float(stored["in.alpha_cumprod_sqrt"])) <= OFFICIAL_VALUE_TOL
    assert (
        abs(denoiser_alpha(default.sampler_alpha(499))[0] - float(stored["den.alpha_quantized"])) <= OFFICIAL_VALUE_TOL
    )


def test_bad_inputs_are_clear_errors(pipe: Hallo3Pipeline, portrait: np.ndarray, tmp_path: Path) -> None:
    audio = speech_like(1.0, seed=5)
    fake = tmp_path / "portrait.jpg"
    fake.write_bytes(b"RIFF....WAVEfmt definitely not an image")
    with pytest.raises(InputError, match="readable image file") as caught:
        pipe(fake, audio, RATE, config=tiny_generation(TINY))
    assert str(fake) in str(caught.value)
    with pytest.raises(InputError, match="must show a face"):
        pipe(np.full((96, 96, 3), 120, np.uint8), audio, RATE, config=tiny_generation(TINY))
    with pytest.raises(InputError, match="silent"):
        pipe(portrait, np.zeros(RATE, np.float32), RATE, config=tiny_generation(TINY))
    with pytest.raises(InputError, match="empty"):
        pipe(portrait, np.zeros(0, np.float32), RATE, config=tiny_generation(TINY))
    short = AudioEncoder(pipe.audio_encoder.wav2vec, None, AudioConfig(max_seconds=0.5))
    limited = Hallo3Pipeline(**{**pipe.components, "audio_encoder": short})
    with pytest.raises(InputError, match=r"at most 0.5 s") as caught:
        limited(portrait, audio, RATE, config=tiny_generation(TINY))
    assert "1.00 s" in str(caught.value)
    with pytest.raises(UsageError, match="guidance"):
        pipe(portrait, audio, RATE, config=tiny_generation(TINY, guidance_scale=0.5))
    with pytest.raises(UsageError, match="multiples of 16"):
        pipe(portrait, audio, RATE, config=tiny_generation(TINY, height=40))
    with pytest.raises(UsageError, match="learned position grid"):
        pipe(portrait, audio, RATE, config=tiny_generation(TINY, height=48))
    with pytest.raises(UsageError, match="clips must have 49 frames"):
        pipe(portrait, audio, RATE, config=tiny_generation(TINY, clip_frames=45))
    with pytest.raises(UsageError, match="accelerator"):
        pipe.apply_memory_config(MemoryConfig(cpu_offload=True))
    with pytest.raises(UsageError, match="official sampler takes 2 to 1000 steps"):
        pipe(portrait, audio, RATE, config=tiny_generation(TINY, num_inference_steps=1))
    with pytest.raises(UsageError, match="official sampler takes 2 to 1000 steps"):
        pipe(portrait, audio, RATE, config=tiny_generation(TINY, num_inference_steps=1001))
    with pytest.raises(UsageError, match="step count must divide 1000"):
        _with_sampler(pipe, DIFFUSERS_DPM)(portrait, audio, RATE, config=tiny_generation(TINY))  # 3 steps
    with pytest.raises(UsageError, match="sampler: must be one of official, diffusers-dpm"):
        pipe.use_sampler("ddim")


def test_long_prompt_is_truncated_with_a_warning(pipe: Hallo3Pipeline) -> None:
    prompt = " ".join(["waves on the beach"] * 120)
    with pytest.warns(PromptTruncatedWarning, match=r"prompt: .*at most 226 tokens.*truncated \(got \d+ tokens\)"):
        embeds = pipe.encode_prompt(prompt, torch.device("cpu"), torch.float32)
    assert embeds.shape == (1, 226, 16)
    ids = pipe.tokenizer(prompt, max_length=226, truncation=True, return_tensors="pt").input_ids
    assert ids.shape == (1, 226)
    torch.testing.assert_close(embeds, pipe.text_encoder(ids)[0])


def test_release_text_encoder_keeps_the_encoded_prompt(tmp_path: Path, analyser: Any) -> None:
    pipe = build_tiny_pipeline(tmp_path, seed=0, face_analyser=analyser, sizes=TINY)
    first = pipe.encode_prompt("a teacher explains the lesson", torch.device("cpu"), torch.float32)
    pipe.release_text_encoder()
    assert pipe.text_encoder is None
    again = pipe.encode_prompt("a teacher explains the lesson", torch.device("cpu"), torch.float32)
    torch.testing.assert_close(first, again)
    with pytest.raises(UsageError, match="text encoder was released"):
        pipe.encode_prompt("another prompt", torch.device("cpu"), torch.float32)


def test_bfloat16_with_vae_slicing_runs_one_clip(tmp_path: Path, analyser: Any, portrait: np.ndarray) -> None:
    pipe = build_tiny_pipeline(tmp_path, seed=0, face_analyser=analyser, sizes=TINY)
    pipe.apply_memory_config(MemoryConfig(dtype="bfloat16", vae_slicing=True, release_text_encoder=True))
    assert pipe.vae.use_slicing
    assert pipe.transformer.dtype == torch.bfloat16 and pipe.vae.dtype == torch.bfloat16
    out = pipe(
        portrait, speech_like(1.0, seed=6), RATE, prompt=PROMPT, config=tiny_generation(TINY, num_inference_steps=2)
    )
    assert out.frames.shape == (25, 32, 32, 3) and out.config["clips"] == 1
    assert out.config["memory"]["dtype"] == "bfloat16" and pipe.text_encoder is None
    assert out.frames.std() > 0
    # a decode of the wrong size (diffusers' tiled decode mis-sizes frames at tiny geometries) is refused, not cropped
    decode = pipe.decode_latents
    pipe.decode_latents = lambda latents: decode(latents)[:, :, :-8]
    with pytest.raises(ValueError, match="the VAE decoded"):
        pipe(
            portrait, speech_like(1.0, seed=6), RATE, prompt=PROMPT, config=tiny_generation(TINY, num_inference_steps=2)
        )


def test_pipeline_step_reproduces_the_official_sampler_step(
    pipe: Hallo3Pipeline, official_tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Golden check: the official tiny networks (converted from the fixture checkpoint), the pipeline's own bank pass,
    CFG and step with its **default** sampler reproduce the official sampler step (fixture README item 6)."""
    import diffusers.schedulers.scheduling_dpm_cogvideox as dpm_module
    from safetensors.torch import load_file

    from generator.convert import CheckpointGeometry, convert_official_checkpoint

    io = load_file(str(official_tiny / "io.safetensors"))
    geometry = CheckpointGeometry(text_len=8, latent_frames=13, latent_height=6, latent_width=8, audio_blocks=3)
    nets = convert_official_checkpoint(official_tiny / "checkpoint.pt", geometry)
    official = Hallo3Pipeline(
        **{
            **pipe.components,
            "transformer": nets.transformer,
            "ref_net": nets.reference_net,
            "scheduler": make_scheduler(),
        }
    )
    assert official.sampler == OFFICIAL
    official.scheduler.set_timesteps(50)
    banks = official.reference_banks(io["in.ref_latent"], cache=False)
    window = io["in.audio_window"][0]
    cond = ClipConditions(
        image_latents=io["in.concat_latent"],
        text=torch.cat([io["in.text_emb_uncond"], io["in.text_emb"]]),
        audio=torch.stack([torch.zeros_like(window), window]),
        face=io["in.face_emb"].expand(2, -1),
        banks=banks,
    )
    timesteps = official.scheduler.timesteps
    assert int(timesteps[25]) == 499 and int(timesteps[24]) == 519
    draws = [io["step.noise_draw0"], io["step.noise_draw1"]]
    monkeypatch.setattr(dpm_module, "randn_tensor", lambda *a, **k: draws.pop(0))
    with torch.no_grad():
        x_next, x0 = official.denoise_step(io["in.noisy_latent"], io["in.old_denoised"], 25, timesteps, cond, 3.5, None)
    assert not draws
    assert (x0 - io["den.x0_cfg"]).abs().max().item() <= CFG_TOL
    # x0's error enters x_next with weight |m2·m3|; the step's own float32 arithmetic on both sides adds the rest
    alphas = [io[f"in.alpha_cumprod_sqrt{k}"].item() for k in ("", "_next", "_prev")]
    _, m2, m3, _, _ = coefficients_at(*alphas)
    sizes = tuple(
        io[k].abs().max().item() for k in ("in.noisy_latent", "den.x0_cfg", "in.old_denoised", "step.noise_draw1")
    )
    step_tol = abs(m2 * m3) * CFG_TOL + 2 * sampler_step_tolerance(*alphas, sizes)
    assert (x_next - io["step.x_next"]).abs().max().item() <= step_tol


def test_full_pipeline_loads_from_a_weights_directory(
    pipe: Hallo3Pipeline, portrait: np.ndarray, analyser: Any, tmp_path: Path
) -> None:
    """The loading code for real weights, run on the tiny components saved in the real on-disk formats."""
    from generator.loading import Hallo3Weights, load_pipeline, save_directory

    root = save_directory(pipe, tmp_path / "converted")
    assert sorted(p.name for p in root.iterdir()) == [
        "audio_encoder", "reference_net", "text_encoder", "transformer", "vae",
    ]  # fmt: skip
    loaded = Hallo3Pipeline.from_directory(root, face_analyser=analyser)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.transformer.dtype == torch.float32  # CPU default
    config = tiny_generation(TINY, num_inference_steps=2)
    audio = speech_like(0.8, seed=9)
    expected = pipe(portrait, audio, RATE, prompt=PROMPT, config=config, seed=2).frames
    np.testing.assert_array_equal(loaded(portrait, audio, RATE, prompt=PROMPT, config=config, seed=2).frames, expected)
    with pytest.raises(UsageError, match="T5 folder must exist"):
        load_pipeline(Hallo3Weights(root, root / "vae", tmp_path / "nope", root / "audio_encoder"))
    with pytest.raises(UsageError, match="neither layout"):
        Hallo3Pipeline.from_directory(tmp_path)
