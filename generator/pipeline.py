"""Hallo3 long-video generation on diffusers: a reference portrait + driving speech (+ prompt) → talking video.

One clip = 49 pixel frames = 13 latent frames; its first 2 frame slots are the motion frames, so each clip adds 47 new
frames (spec §5). Per clip: noise → 50 DPM-Solver++(2M) SDE steps with CFG 3.5 over ``[uncond ; cond]`` → VAE decode →
keep frames 2…48. The conditioning ("concat") latent is VAE([reference ; m1 ; m2]) — one latent frame — plus 12 zero
frames; the motion frames are the previous clip's last two decoded frames (the reference for clip 0) with 10 % of
pixel positions zeroed. Reference banks are computed once per portrait and reused by every clip.

Deviations from the official script, on purpose: the frame count is the true audio length N, not the 49-padded
``N_pad`` (no wasted extra clip); vocal separation is an optional hook (``generator.audio``); the face box comes from
insightface instead of MediaPipe (``generator.face``); an image without a face is refused instead of animated with a
zero identity.
"""

from __future__ import annotations

import gc
import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDPMScheduler, DiffusionPipeline
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image
from transformers import T5EncoderModel, T5Tokenizer

from generator.audio import (
    AudioEncoder,
    AudioFeatures,
    clip_audio_windows,
    num_clips,
    official_num_clips,
    to_mono_float32,
)
from generator.face import FaceAnalyser, ReferenceInputs, prepare_reference
from generator.output import GenerationOutput
from generator.reference import bank_cache_key, compute_banks
from generator.sampling import (
    DEFAULT_SAMPLER,
    SAMPLERS,
    OfficialDPMScheduler,
    denoiser_alpha,
    make_scheduler,
    sampler_name,
    step_count_rule,
    x0_from_v,
)
from generator.transformer import Hallo3Transformer
from reports.errors import UsageError

DEVIATIONS = (
    "frame count is the audio length N at 25 fps; the official 49-padding (which can cost one extra clip) is not applied",
    "vocal separation (official: audio-separator Kim_Vocal_2) is an optional hook, off unless a separator is passed",
    "face-mask box from insightface detection/landmarks instead of MediaPipe face-oval landmarks",
    "a reference image without a detectable face is refused (official: zero identity embedding)",
    "reference banks computed once per portrait and reused across clips (official: recomputed per clip, same values)",
)


class PromptTruncatedWarning(UserWarning):
    """The prompt was longer than the text encoder's token budget and was cut."""


@dataclass(frozen=True)
class GenerationConfig:
    """Everything that shapes a Hallo3 generation (defaults = the official inference settings)."""

    num_inference_steps: int = 50
    guidance_scale: float = 3.5
    height: int = 480
    width: int = 720
    fps: int = 25
    clip_frames: int = 49  # pixel frames per clip (13 latent frames; hard-coded in the official denoiser)
    motion_frames: int = 2  # leading frame slots of each clip taken by the motion frames
    motion_mask_rate: float = 0.1  # share of pixel positions zeroed in the motion frames
    cache_reference_banks: bool = True  # False recomputes the banks every clip, as the official code does
    crop_square_output: bool = True  # square portraits: crop the frames back to height×height (official)

    @property
    def new_frames(self) -> int:
        return self.clip_frames - self.motion_frames

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MemoryConfig:
    """Memory/precision options. CPU offload needs an accelerator (diffusers' ``enable_model_cpu_offload``)."""

    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    release_text_encoder: bool = False  # drop T5 once the prompt is encoded (later prompts must be cached/given)
    cpu_offload: bool = False  # keep each model on the CPU until its forward runs
    vae_tiling: bool = False  # tiled VAE decode (encodes are 1–3 frames and run untiled)
    vae_slicing: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ClipConditions:
    """The per-clip inputs of the denoiser, batched ``[uncond ; cond]``."""

    image_latents: torch.Tensor  # [1, T, 16, h, w] concat latent (same for both halves)
    text: torch.Tensor  # [2, L, D]: zeros ; prompt embedding
    audio: torch.Tensor  # [2, F, window, blocks, channels]: zeros ; clip audio windows
    face: torch.Tensor  # [2, 512]: same identity in both halves
    banks: list[torch.Tensor]  # per layer [1, N_ref, C], shared by both halves


@dataclass
class Hallo3PipelineOutput:
    """Decoded video plus what it took to make it (``to_generation_output`` gives the backend contract)."""

    frames: np.ndarray  # uint8 [N, H, W, 3]
    fps: float
    audio: np.ndarray  # float32 mono, the driving audio as given (mono mix)
    sample_rate: int
    config: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def to_generation_output(self) -> GenerationOutput:
        return GenerationOutput(
            frames=self.frames,
            fps=self.fps,
            audio=self.audio,
            sample_rate=self.sample_rate,
            config=self.config,
            seed=self.seed,
            backend="hallo3",
        )


def _plain(value: Any) -> Any:
    """Config values → JSON-friendly Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


class Hallo3Pipeline(DiffusionPipeline):
    """Audio-driven portrait animation (Hallo3) on diffusers components.

    Components: ``transformer`` (``Hallo3Transformer``), ``ref_net`` (the identity reference network),
    ``vae`` (``AutoencoderKLCogVideoX``, scaling factor 0.7), ``text_encoder`` (``T5EncoderModel``), ``tokenizer``
    (T5), ``scheduler`` (``generator.sampling.make_scheduler(name)``: the official sampler by default, or
    ``"diffusers-dpm"``; ``use_sampler`` swaps it), ``audio_encoder`` (``AudioEncoder``),
    ``face_analyser`` (insightface ``FaceAnalysis`` or anything with its ``get``; may be passed per call instead).
    """

    model_cpu_offload_seq = "text_encoder->audio_encoder->ref_net->transformer->vae"
    _optional_components: ClassVar[list[str]] = ["face_analyser"]
    _exclude_from_cpu_offload: ClassVar[list[str]] = ["face_analyser"]

    def __init__(
        self,
        transformer: Hallo3Transformer,
        ref_net: torch.nn.Module,
        vae: AutoencoderKLCogVideoX,
        text_encoder: T5EncoderModel | None,
        tokenizer: T5Tokenizer,
        scheduler: CogVideoXDPMScheduler,
        audio_encoder: AudioEncoder,
        face_analyser: FaceAnalyser | None = None,
    ) -> None:
        super().__init__()
        self.register_modules(
            transformer=transformer,
            ref_net=ref_net,
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            scheduler=scheduler,
            audio_encoder=audio_encoder,
            face_analyser=face_analyser,
        )
        self.vae_scale_factor_spatial = 2 ** (len(vae.config.block_out_channels) - 1)
        self.vae_scale_factor_temporal = int(vae.config.temporal_compression_ratio)
        self._prompt_cache: dict[str, torch.Tensor] = {}
        self._banks: dict[str, list[torch.Tensor]] = {}
        self.bank_stats = {"computed": 0, "reused": 0}
        self.memory = MemoryConfig()
        self._text_encoder_config = _plain(text_encoder.config.to_dict()) if text_encoder is not None else None
        self.transformer_calls: list[Callable[[dict[str, Any]], None]] = []  # observers (tests, profiling)

    @classmethod
    def from_directory(
        cls,
        root: str | Path,
        dtype: torch.dtype | None = None,
        face_analyser: FaceAnalyser | None = None,
        **kwargs: Any,
    ) -> Hallo3Pipeline:
        """Load every component from a weights directory: converted (``generator.loading.save_directory``) or the
        official release layout. ``dtype`` defaults to bf16 on a GPU, float32 on a CPU."""
        from generator.loading import load_directory

        return load_directory(root, dtype, face_analyser, **kwargs)

    # ------------------------------------------------------------------ memory modes
    def apply_memory_config(self, memory: MemoryConfig, device: str | torch.device | None = None) -> None:
        """Cast to ``memory.dtype``, then VAE tiling/slicing, then model CPU offload (accelerator only) or ``.to``."""
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[memory.dtype]
        self.to(dtype=dtype)
        if memory.vae_tiling:
            self.vae.enable_tiling()
        if memory.vae_slicing:
            self.vae.enable_slicing()
        if memory.cpu_offload:
            if device is None or torch.device(device).type == "cpu":
                raise UsageError("memory.cpu_offload", "model CPU offload needs an accelerator device", device or "cpu")
            self.enable_model_cpu_offload(device=device)
        elif device is not None:
            self.to(device)
        self.memory = memory

    def release_text_encoder(self) -> None:
        """Free T5 (≈9.5 GB in bf16); prompts encoded before stay available from the prompt cache."""
        if self.text_encoder is not None:
            self.register_modules(text_encoder=None)
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def use_sampler(self, sampler: str = DEFAULT_SAMPLER) -> None:
        """Sample with ``sampler`` (``generator.sampling.SAMPLERS``): ``official`` or ``diffusers-dpm``."""
        if sampler not in SAMPLERS:
            raise UsageError("sampler", f"must be one of {', '.join(SAMPLERS)}", repr(sampler))
        self.register_modules(scheduler=make_scheduler(sampler))

    @property
    def sampler(self) -> str:
        return sampler_name(self.scheduler)

    # ------------------------------------------------------------------ checks
    def check_inputs(
        self,
        prompt: str | None,
        prompt_embeds: torch.Tensor | None,
        config: GenerationConfig,
        sample_rate: int,
    ) -> None:
        """Argument checks (content checks of image and audio happen where they are read)."""
        if prompt is not None and not isinstance(prompt, str):
            raise UsageError("prompt", "prompt must be a string", type(prompt).__name__)
        if prompt is not None and prompt_embeds is not None:
            raise UsageError("prompt_embeds", "give either prompt or prompt_embeds, not both", "both")
        if prompt_embeds is not None:
            expected = (self.transformer.config.max_text_seq_length, self.transformer.config.text_embed_dim)
            if prompt_embeds.ndim != 3 or tuple(prompt_embeds.shape[1:]) != expected:
                raise UsageError(
                    "prompt_embeds",
                    f"prompt_embeds must be [1, {expected[0]}, {expected[1]}]",
                    tuple(prompt_embeds.shape),
                )
        multiple = self.vae_scale_factor_spatial * self.transformer.config.patch_size
        if config.height % multiple or config.width % multiple:
            raise UsageError(
                "height/width", f"height and width must be multiples of {multiple}", f"{config.height}×{config.width}"
            )
        grid = (config.height // self.vae_scale_factor_spatial, config.width // self.vae_scale_factor_spatial)
        trained = (self.transformer.config.sample_height, self.transformer.config.sample_width)
        if grid != trained:
            raise UsageError(
                "height/width",
                "the size must match the transformer's learned position grid "
                f"({trained[0] * self.vae_scale_factor_spatial}×{trained[1] * self.vae_scale_factor_spatial})",
                f"{config.height}×{config.width}",
            )
        steps = config.num_inference_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise UsageError("num_inference_steps", "at least 1 denoising step (an integer)", steps)
        rule = step_count_rule(self.sampler, steps)
        if rule is not None:
            raise UsageError("num_inference_steps", rule, steps)
        if not math.isfinite(config.guidance_scale) or config.guidance_scale < 1.0:
            raise UsageError("guidance_scale", "guidance scale must be a finite number >= 1", config.guidance_scale)
        if (config.clip_frames - 1) % self.vae_scale_factor_temporal:
            raise UsageError(
                "clip_frames",
                f"clip_frames - 1 must be a multiple of {self.vae_scale_factor_temporal}",
                config.clip_frames,
            )
        latent_frames = (config.clip_frames - 1) // self.vae_scale_factor_temporal + 1
        trained_frames = (self.transformer.config.sample_frames - 1) // self.vae_scale_factor_temporal + 1
        if latent_frames != trained_frames:
            raise UsageError(
                "clip_frames",
                f"clips must have {self.transformer.config.sample_frames} frames (the denoiser's frame count)",
                config.clip_frames,
            )
        if not 0 < config.motion_frames < config.clip_frames:
            raise UsageError(
                "motion_frames", "motion frames must be between 1 and clip_frames - 1", config.motion_frames
            )
        if not 0.0 <= config.motion_mask_rate < 1.0:
            raise UsageError("motion_mask_rate", "mask rate must be in [0, 1)", config.motion_mask_rate)
        if config.fps != self.audio_encoder.audio_config.fps:
            raise UsageError(
                "fps",
                "video fps must equal the audio feature rate",
                f"{config.fps} vs {self.audio_encoder.audio_config.fps}",
            )
        if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
            raise UsageError("sample_rate", "sample rate must be a positive integer (Hz)", sample_rate)

    # ------------------------------------------------------------------ text
    @property
    def max_sequence_length(self) -> int:
        return int(self.transformer.config.max_text_seq_length)

    def encode_prompt(self, prompt: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """T5 last hidden state ``[1, L, D]``, padded/truncated to L = 226 tokens; longer prompts warn."""
        if prompt in self._prompt_cache:
            return self._prompt_cache[prompt].to(device=device, dtype=dtype)
        if self.text_encoder is None:
            raise UsageError(
                "prompt", "the text encoder was released; use a prompt encoded before or prompt_embeds", prompt[:60]
            )
        length = self.max_sequence_length
        token_count = len(self.tokenizer(prompt, add_special_tokens=True).input_ids)
        if token_count > length:
            warnings.warn(
                f"prompt: the T5 text encoder reads at most {length} tokens; the prompt was truncated "
                f"(got {token_count} tokens)",
                PromptTruncatedWarning,
                stacklevel=3,
            )
        ids = self.tokenizer(
            prompt,
            padding="max_length",
            max_length=length,
            truncation=True,
            add_special_tokens=True,
            return_tensors="pt",
        ).input_ids
        with torch.no_grad():
            embeds = self.text_encoder(ids.to(device))[0]
        embeds = embeds.to(dtype=dtype)
        self._prompt_cache = {prompt: embeds.detach().cpu()}
        return embeds

    # ------------------------------------------------------------------ VAE
    def _vae_encode(self, frames: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Pixel frames ``[F, 3, H, W]`` in [−1, 1] → sampled, scaled latent ``[1, f, 16, h, w]``."""
        pixels = frames.permute(1, 0, 2, 3)[None].to(device=self._execution_device, dtype=self.vae.dtype)
        tiling, self.vae.use_tiling = self.vae.use_tiling, False  # 1–3 frames: tiling is for the 49-frame decode
        try:
            posterior = self.vae.encode(pixels).latent_dist
        finally:
            self.vae.use_tiling = tiling
        latent = posterior.sample(generator=generator) * self.vae.config.scaling_factor
        return latent.permute(0, 2, 1, 3, 4).float()

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """``[1, T, 16, h, w]`` → pixel frames ``[F, 3, H, W]`` float32 in [−1, 1] (not clamped)."""
        z = latents.permute(0, 2, 1, 3, 4) / self.vae.config.scaling_factor
        pixels = self.vae.decode(z.to(dtype=self.vae.dtype)).sample
        return pixels[0].permute(1, 0, 2, 3).float()

    def mask_motion_frames(self, motion: torch.Tensor, rate: float, generator: torch.Generator | None) -> torch.Tensor:
        """Zero ``rate`` of the pixel positions, the same positions in every motion frame and channel."""
        if rate <= 0:
            return motion
        keep = torch.rand(motion.shape[-2:], generator=generator, device=generator.device if generator else "cpu")
        return motion * (keep >= rate).to(motion.device, motion.dtype)

    def prepare_image_latents(
        self, reference: torch.Tensor, motion: torch.Tensor, latent_frames: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Concat latent: VAE([reference ; motion…]) → 1 latent frame, zero-padded to ``latent_frames``."""
        first = self._vae_encode(torch.cat([reference[None], motion], dim=0), generator)
        if first.shape[1] != 1:
            raise ValueError(f"the VAE turned {1 + motion.shape[0]} frames into {first.shape[1]} latent frames, not 1")
        padding = first.new_zeros(1, latent_frames - 1, *first.shape[2:])
        return torch.cat([first, padding], dim=1)

    # ------------------------------------------------------------------ reference banks
    def reference_banks(self, face_latent: torch.Tensor, cache: bool) -> list[torch.Tensor]:
        """Banks for the face-masked reference latent: computed once per (portrait latent, network) and reused,
        unless ``cache`` is False (the official behaviour: one reference pass per clip)."""
        ref_net = self.ref_net
        key = f"{id(ref_net)}:{bank_cache_key(face_latent)}"
        if cache and key in self._banks:
            self.bank_stats["reused"] += 1
            return self._banks[key]
        hook = getattr(ref_net, "_hf_hook", None)
        if hook is not None:  # the bank runner calls the blocks directly: run the CPU-offload hook by hand
            hook.pre_forward(ref_net)
        param = next(ref_net.parameters())
        banks = compute_banks(ref_net, face_latent.to(device=param.device, dtype=param.dtype))
        self.bank_stats["computed"] += 1
        self._banks = {key: banks}  # one portrait at a time
        return banks

    # ------------------------------------------------------------------ denoising
    def predict_v(
        self, latents: torch.Tensor, t: torch.Tensor, cond: ClipConditions, guidance_scale: float
    ) -> torch.Tensor:
        """One transformer call on ``[uncond ; cond]`` and the CFG combination ``v_u + g·(v_c − v_u)``."""
        dtype = self.transformer.dtype
        noisy = torch.cat([latents, latents], dim=0)
        image = torch.cat([cond.image_latents, cond.image_latents], dim=0)
        kwargs: dict[str, Any] = {
            "hidden_states": torch.cat([noisy, image], dim=2).to(dtype),
            "encoder_hidden_states": cond.text.to(dtype),
            "timestep": t.expand(2),
            "audio_embeds": cond.audio.to(dtype),
            "face_embeds": cond.face.to(dtype),
            "ref_banks": [bank.to(dtype) for bank in cond.banks],
            "return_dict": False,
        }
        for observer in self.transformer_calls:
            observer(kwargs)
        v = self.transformer(**kwargs)[0].float()
        v_uncond, v_cond = v.chunk(2)
        return v_uncond + guidance_scale * (v_cond - v_uncond)

    def denoise_step(
        self,
        latents: torch.Tensor,
        old_x0: torch.Tensor | None,
        index: int,
        timesteps: torch.Tensor,
        cond: ClipConditions,
        guidance_scale: float,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One sampler step: CFG v-prediction → DPM-Solver++(2M) SDE update. Returns (next latents, x0 prediction).

        With the official sampler (``OfficialDPMScheduler``, the default) this is the official step: the guided x0,
        computed with the denoiser's own 1000-step alpha nearest to the sampler's; with ``diffusers-dpm``
        (v-prediction) it is diffusers' CogVideoX loop.
        """
        t = timesteps[index]
        v = self.predict_v(latents, t, cond, guidance_scale)
        model_output = v
        if isinstance(self.scheduler, OfficialDPMScheduler):
            # CFG on v = CFG on x0: x0 is an affine map of v at a fixed alpha
            alpha, _ = denoiser_alpha(self.scheduler.sampler_alpha(t))
            model_output = x0_from_v(latents, v, alpha)
        back = timesteps[index - 1] if index > 0 else None
        latents, x0 = self.scheduler.step(
            model_output, old_x0, t, back, latents, generator=generator, return_dict=False
        )
        return latents, x0

    def denoise_clip(
        self,
        cond: ClipConditions,
        latent_frames: int,
        config: GenerationConfig,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """Start from standard-normal noise and run all steps; returns the clip's latent ``[1, T, 16, h, w]``."""
        shape = (1, latent_frames, cond.image_latents.shape[2], *cond.image_latents.shape[-2:])
        latents = randn_tensor(shape, generator=generator, device=self._execution_device, dtype=torch.float32)
        timesteps = self.scheduler.timesteps
        old_x0: torch.Tensor | None = None
        for index in self.progress_bar(range(len(timesteps))):
            latents, old_x0 = self.denoise_step(
                latents, old_x0, index, timesteps, cond, config.guidance_scale, generator
            )
        return latents

    # ------------------------------------------------------------------ main entry
    @torch.no_grad()
    def __call__(
        self,
        image: str | Path | Image.Image | np.ndarray,
        audio: np.ndarray,
        sample_rate: int,
        prompt: str | None = "",
        prompt_embeds: torch.Tensor | None = None,
        config: GenerationConfig | None = None,
        seed: int = 0,
        face_analyser: FaceAnalyser | None = None,
    ) -> Hallo3PipelineOutput:
        config = config or GenerationConfig()
        device = self._execution_device

        # 1. check arguments
        self.check_inputs(prompt, prompt_embeds, config, sample_rate)
        analyser = face_analyser or self.face_analyser
        if analyser is None:
            raise UsageError("face_analyser", "a face analyser (insightface pack) is required", "none configured")
        generator = torch.Generator(device="cpu").manual_seed(int(seed))

        # 2. reference portrait: identity embedding, face-masked and full 480×720 images
        reference: ReferenceInputs = prepare_reference(image, analyser, config.height, config.width)

        # 3. driving audio → windowed wav2vec2 features at 25 fps
        features: AudioFeatures = self.audio_encoder.encode(audio, int(sample_rate))
        total_frames = features.num_frames
        clips = num_clips(total_frames, config.new_frames)

        # 4. text: prompt embedding (cond) and zeros (uncond, as officially)
        if prompt_embeds is None:
            text = self.encode_prompt(prompt or "", device, torch.float32)
            if self.memory.release_text_encoder:
                self.release_text_encoder()
        else:
            text = prompt_embeds.to(device=device, dtype=torch.float32)
        text_batch = torch.cat([torch.zeros_like(text), text], dim=0)

        # 5. reference latent (face-masked, sampled posterior) and the per-layer banks
        face_latent = self._vae_encode(reference.face_image[None], generator)

        # 6. timesteps
        self.scheduler.set_timesteps(config.num_inference_steps, device=device)
        latent_frames = (config.clip_frames - 1) // self.vae_scale_factor_temporal + 1

        # 7. clips: condition → denoise → decode, 47 new frames each
        face = reference.face_embedding[None].to(device)
        face_batch = torch.cat([face, face], dim=0)
        full_image = reference.image.to(device)
        motion = torch.stack([full_image] * config.motion_frames)
        kept: list[torch.Tensor] = []
        for clip in range(clips):
            banks = self.reference_banks(face_latent, config.cache_reference_banks)
            masked_motion = self.mask_motion_frames(motion, config.motion_mask_rate, generator)
            image_latents = self.prepare_image_latents(full_image, masked_motion, latent_frames, generator)
            windows = clip_audio_windows(features.windows, clip, config.new_frames, config.motion_frames).to(device)
            cond = ClipConditions(
                image_latents=image_latents,
                text=text_batch,
                audio=torch.stack([torch.zeros_like(windows), windows]),
                face=face_batch,
                banks=banks,
            )
            latents = self.denoise_clip(cond, latent_frames, config, generator)
            decoded = self.decode_latents(latents)
            expected_shape = (config.clip_frames, 3, config.height, config.width)
            if tuple(decoded.shape) != expected_shape:  # e.g. diffusers' tiled decode at a size it does not tile
                raise ValueError(f"the VAE decoded {tuple(decoded.shape)}, expected {expected_shape}")
            kept.append(decoded[config.motion_frames :].cpu())
            motion = decoded[-config.motion_frames :].clamp(-1.0, 1.0)

        # 8. frames: trim to the audio length, [−1, 1] → uint8, square portraits cropped back
        video = torch.cat(kept, dim=0)[:total_frames]
        frames = ((video.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        if reference.square and config.crop_square_output:
            left = (config.width - config.height) // 2
            frames = frames[:, :, left : left + config.height]
        self.maybe_free_model_hooks()

        record = self.record(config, seed, reference, features, prompt, prompt_embeds is not None, clips)
        mono = to_mono_float32(audio)  # the driving audio as given (mono mix, integer PCM scaled to [-1, 1))
        return Hallo3PipelineOutput(
            frames=np.ascontiguousarray(frames),
            fps=float(config.fps),
            audio=mono,
            sample_rate=int(sample_rate),
            config=record,
            seed=int(seed),
        )

    def generate(
        self, image: Any, audio: np.ndarray, sample_rate: int, prompt: str = "", seed: int = 0, **kwargs: Any
    ) -> GenerationOutput:
        """The backend contract (``generator.output.Backend``)."""
        return self(image, audio, sample_rate, prompt=prompt, seed=seed, **kwargs).to_generation_output()

    name = "hallo3"

    # ------------------------------------------------------------------ audit record
    def record(
        self,
        config: GenerationConfig,
        seed: int,
        reference: ReferenceInputs,
        features: AudioFeatures,
        prompt: str | None,
        used_prompt_embeds: bool,
        clips: int,
    ) -> dict[str, Any]:
        """Every setting that shaped the output, JSON-friendly, for the audit record."""
        return {
            "backend": "hallo3",
            "seed": int(seed),
            "generation": config.to_dict(),
            "memory": self.memory.to_dict(),
            "audio": {
                **self.audio_encoder.audio_config.to_dict(),
                "num_frames": features.num_frames,
                "vocal_separator": getattr(self.audio_encoder.separator, "__name__", None)
                if self.audio_encoder.separator is not None
                else None,
                "wav2vec2": _plain(self.audio_encoder.wav2vec.config.to_dict()),
            },
            "reference": {
                "face_box": list(reference.face_box),
                "square": reference.square,
                "source_size": list(reference.source_size),
            },
            "prompt": None if used_prompt_embeds else (prompt or ""),
            "max_sequence_length": self.max_sequence_length,
            "clips": clips,
            "official_clips": official_num_clips(features.num_frames, config.clip_frames, config.new_frames),
            "sampler": self.sampler,
            "scheduler": _plain(dict(self.scheduler.config)),
            "transformer": _plain(dict(self.transformer.config)),
            "ref_net": _plain(dict(self.ref_net.config)),
            "vae": _plain(dict(self.vae.config)),
            "text_encoder": self._text_encoder_config,
            "deviations_from_official": list(DEVIATIONS),
        }
