"""The model architectures the engine runs, as one table, and how a snapshot names its own.

A diffusers snapshot says what it is in ``model_index.json`` (``_class_name``). The
engine supports the pipeline classes of `ARCHITECTURES`; any other class is refused
at the model stage, before its weights are downloaded, with a message that names it
and the supported ones. Each row holds what differs between architectures outside the
denoising loop: the snapshot folders to fetch, and the generation defaults a model
of that architecture gets unless the configuration sets them (the official harness
ran Stable Diffusion at the pipeline defaults, docs/protocol.md#stable-diffusion-family;
SDXL was not in the study, so it runs at diffusers' own SDXL defaults), and the two
rules of the mitigations' maths that differ by architecture: whether a mitigation's
``long_prompts`` applies (the harness's Stable Diffusion pipelines tokenized long
prompts by mitigation; every other architecture truncates, which keeps the end token
its pooled embedding is read at) and how SEGA masks its edit (`guidance.SEGA_MASKS`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from i2peval.errors import I2PEvalError


class ArchitectureError(I2PEvalError):
    """A snapshot is not a pipeline the engine supports, or does not say what it is."""


@dataclass(frozen=True)
class Architecture:
    """One supported family of text-to-image pipelines."""

    name: str
    pipeline_class: str  # model_index.json "_class_name"
    description: str
    text_folders: tuple[tuple[str, str], ...]  # (tokenizer folder, text encoder folder) per encoder
    steps: int
    guidance_scale: float
    upcast_vae: bool  # decode in float32 when the VAE is float16 and its config says force_upcast
    mitigation_long_prompts: bool  # a mitigation's long_prompts applies; False: long prompts are truncated
    sega_mask: str  # guidance.SEGA_MASKS: as the SEGA authors' pipeline for the architecture
    clip_text: bool = True  # CLIP tokenizers, which the harness's transformers 4.x cleaned with ftfy
    prompt_guidance: tuple[str, ...] = ()  # mitigation kinds the harness guided by each prompt's sd_guidance_scale
    denoiser: str = "unet"  # the denoiser's snapshot folder and pipeline attribute
    # diffusers can fuse the denoiser's query/key/value projections (`SpeedOptions.fuse_qkv`)
    fusable_qkv: bool = True
    vae: bool = True  # False: the denoiser works on pixels
    schedulers: tuple[str, ...] = ("scheduler",)  # the scheduler folders, the sampler's first
    # a cascade's later stages: (folder inside the first stage's snapshot, the stage's architecture)
    cascade: tuple[tuple[str, Architecture], ...] = ()
    harness_dtype: str = "float32"  # the dtype the harness ran the architecture in

    @property
    def weight_folders(self) -> tuple[str, ...]:
        vae = ("vae",) if self.vae else ()
        return (self.denoiser, *vae, *(encoder for _, encoder in self.text_folders))

    @property
    def folders(self) -> tuple[str, ...]:
        """Snapshot folders the engine reads."""
        tokenizers = tuple(tokenizer for tokenizer, _ in self.text_folders)
        return (*self.weight_folders, *tokenizers, *self.schedulers)

    def defaults(self) -> dict[str, Any]:
        """Generation settings a model of this architecture gets unless configured."""
        return {"steps": self.steps, "guidance_scale": self.guidance_scale}

    def prompt_cleaning(self, configured: str) -> str:
        """The text cleaning its prompts get under the configured ``prompt_cleaning``: ftfy
        is what the harness's CLIP tokenizers did, so a model without one gets none."""
        return configured if self.clip_text else "none"


# DeepFloyd IF as the harness ran it (docs/protocol.md#deepfloyd-if): a cascade whose later
# stages run at their pipelines' defaults (generation/cascade.py). Their rows name what the
# model stage fetches of them; only the first stage is an architecture a snapshot can be.
IF_SUPER_RESOLUTION = Architecture(
    name="if-ii",
    pipeline_class="IFSuperResolutionPipeline",
    description="DeepFloyd IF stage II (256 px pixel diffusion on stage I's T5 embeddings)",
    text_folders=(),
    steps=50,  # IFSuperResolutionPipeline's default, which the harness kept
    guidance_scale=8.0,  # unused: stage II takes stage I's scale
    upcast_vae=False,
    mitigation_long_prompts=False,
    sega_mask="per_channel",
    vae=False,
    schedulers=("scheduler", "image_noising_scheduler"),
)
X4_UPSCALER = Architecture(
    name="x4-upscaler",
    pipeline_class="StableDiffusionUpscalePipeline",
    description="Stable Diffusion x4 upscaler (latent diffusion on a noised low-resolution image and CLIP text)",
    text_folders=(("tokenizer", "text_encoder"),),
    steps=75,  # StableDiffusionUpscalePipeline's defaults, which the harness kept
    guidance_scale=9.0,
    upcast_vae=True,
    mitigation_long_prompts=False,
    sega_mask="per_channel",
    schedulers=("scheduler", "low_res_scheduler"),
)
# Every mitigation guided by each prompt's sd_guidance_scale, as the harness's IF wrappers were.
DEEPFLOYD_IF = Architecture(
    name="if",
    pipeline_class="IFPipeline",
    description="DeepFloyd IF (a cascade: 64 px and 256 px pixel diffusion on T5 embeddings, then a x4 upscaler)",
    text_folders=(("tokenizer", "text_encoder"),),
    steps=100,  # IFPipeline's default, which the harness kept
    guidance_scale=8.0,  # the harness's IF wrapper default, used only without a prompt scale
    upcast_vae=False,
    mitigation_long_prompts=False,
    sega_mask="per_channel",  # the harness's SemanticIFPipeline
    clip_text=True,  # the upscaler's tokenizer; T5's text is lowercased, never cleaned (generation/cascade.py)
    prompt_guidance=("none", "negative_prompt", "sega", "sld", "custom"),
    vae=False,
    cascade=(("stage_2", IF_SUPER_RESOLUTION), ("stage_3", X4_UPSCALER)),
    harness_dtype="float16",  # the fp16 weights, as models/vision/df_if.py loaded them
)

ARCHITECTURES: dict[str, Architecture] = {
    architecture.name: architecture
    for architecture in (
        Architecture(
            name="sd",
            pipeline_class="StableDiffusionPipeline",
            description="Stable Diffusion 1.x/2.x (epsilon or v-prediction)",
            text_folders=(("tokenizer", "text_encoder"),),
            steps=50,
            guidance_scale=7.5,
            upcast_vae=False,
            mitigation_long_prompts=True,
            sega_mask="per_channel",  # SemanticStableDiffusionPipeline
        ),
        Architecture(
            name="sdxl",
            pipeline_class="StableDiffusionXLPipeline",
            description="Stable Diffusion XL (two text encoders, pooled embeddings, size conditioning)",
            text_folders=(("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2")),
            steps=50,
            guidance_scale=5.0,
            upcast_vae=True,
            mitigation_long_prompts=False,
            sega_mask="summed_channels",  # the SEGA authors' SemanticStableDiffusionXLPipeline
        ),
        Architecture(
            name="alt",
            pipeline_class="AltDiffusionPipeline",
            description="AltDiffusion (the SD 1.x UNet with a multilingual XLM-R text encoder)",
            text_folders=(("tokenizer", "text_encoder"),),
            steps=50,
            guidance_scale=7.5,
            upcast_vae=False,
            mitigation_long_prompts=False,  # the harness's AltDiffusion pipelines, its SEGA port too, truncate
            sega_mask="per_channel",  # the harness's SemanticAltDiffusionPipeline
            clip_text=False,
            prompt_guidance=("sega",),  # mitigation/safe_alt.py passes the CSV's scale; altdiffusion.py does not
        ),
        Architecture(
            name="sd3",
            pipeline_class="StableDiffusion3Pipeline",
            description="Stable Diffusion 3/3.5 (MMDiT, flow matching; CLIP-L, CLIP-G and T5 text encoders)",
            text_folders=(
                ("tokenizer", "text_encoder"),
                ("tokenizer_2", "text_encoder_2"),
                ("tokenizer_3", "text_encoder_3"),
            ),
            steps=28,  # StableDiffusion3Pipeline's defaults; not in the paper
            guidance_scale=7.0,
            upcast_vae=False,
            mitigation_long_prompts=False,
            sega_mask="per_channel",  # no SEGA pipeline for SD3 exists: the SEGA paper's own rule
            denoiser="transformer",
            fusable_qkv=False,  # diffusers' fused processor fails on SD 3.5's self-attention-only layers
        ),
        DEEPFLOYD_IF,
    )
}


def supported_classes() -> list[str]:
    return [architecture.pipeline_class for architecture in ARCHITECTURES.values()]


def architecture_named(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise ArchitectureError(f"architecture {name!r} is not one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name]


def architecture_of_class(pipeline_class: str, source: str) -> Architecture:
    """The architecture of a diffusers pipeline class; `ArchitectureError` when unsupported."""
    for architecture in ARCHITECTURES.values():
        if architecture.pipeline_class == pipeline_class:
            return architecture
    raise ArchitectureError(
        f"{source}: pipeline class {pipeline_class!r} is not supported; this project runs "
        f"{', '.join(supported_classes())}"
    )


def read_model_index(path: Path, source: str) -> dict[str, Any]:
    try:
        index = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ArchitectureError(f"{source}: cannot read model_index.json: {error}") from error
    if not isinstance(index, dict) or not isinstance(index.get("_class_name"), str):
        raise ArchitectureError(f"{source}: model_index.json has no _class_name")
    return index


def snapshot_architecture(snapshot: Path) -> Architecture:
    """The architecture of a local snapshot, read from its model_index.json."""
    index = read_model_index(Path(snapshot) / "model_index.json", str(snapshot))
    return architecture_of_class(index["_class_name"], str(snapshot))


def describe_snapshot(snapshot: Path) -> dict[str, Any]:
    """What the model record says about a snapshot's architecture and scheduler."""
    snapshot = Path(snapshot)
    architecture = snapshot_architecture(snapshot)
    scheduler_path = snapshot / "scheduler" / "scheduler_config.json"
    try:
        scheduler = json.loads(scheduler_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ArchitectureError(f"{scheduler_path}: cannot read the scheduler config: {error}") from error
    return {
        "architecture": architecture.name,
        "pipeline_class": architecture.pipeline_class,
        "scheduler": scheduler.get("_class_name"),
        # a flow matching scheduler has no prediction type: its denoiser predicts the velocity
        "prediction_type": scheduler.get(
            "prediction_type", "flow" if str(scheduler.get("_class_name")).startswith("FlowMatch") else "epsilon"
        ),
    }


def load_alt_diffusion(snapshot: Path, dtype):
    """AltDiffusionPipeline from a snapshot's components, loaded one by one: diffusers 0.42
    keeps the pipeline and its text encoder class under pipelines/deprecated, where
    ``from_pretrained`` does not find the class model_index.json names."""
    import diffusers
    from diffusers.pipelines.deprecated.alt_diffusion.modeling_roberta_series import (
        RobertaSeriesModelWithTransformation,
    )
    from transformers import XLMRobertaTokenizer

    weights = {"dtype": dtype, "use_safetensors": True, "local_files_only": True}
    scheduler_class = json.loads((snapshot / "scheduler" / "scheduler_config.json").read_text())["_class_name"]
    return diffusers.AltDiffusionPipeline(
        unet=diffusers.UNet2DConditionModel.from_pretrained(snapshot / "unet", **weights),
        vae=diffusers.AutoencoderKL.from_pretrained(snapshot / "vae", **weights),
        text_encoder=RobertaSeriesModelWithTransformation.from_pretrained(snapshot / "text_encoder", **weights),
        tokenizer=XLMRobertaTokenizer.from_pretrained(snapshot / "tokenizer", local_files_only=True),
        scheduler=getattr(diffusers, scheduler_class).from_pretrained(snapshot / "scheduler"),
        **PIPELINE_OPTIONS["alt"],
    )


PIPELINE_OPTIONS = {
    "sd": {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False},
    "sdxl": {"add_watermarker": False, "image_encoder": None, "feature_extractor": None},
    "alt": {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False},
    "sd3": {"image_encoder": None, "feature_extractor": None},
}


def load_pipeline(snapshot: Path, dtype) -> tuple[Any, Architecture]:
    """The diffusers pipeline of a local snapshot in `dtype` on the CPU (safetensors only,
    no safety checker or watermarker), and its architecture."""
    import diffusers

    architecture = snapshot_architecture(snapshot)
    if architecture.name == "alt":
        pipeline = load_alt_diffusion(Path(snapshot), dtype)
    else:
        pipeline = getattr(diffusers, architecture.pipeline_class).from_pretrained(
            snapshot, dtype=dtype, use_safetensors=True, local_files_only=True, **PIPELINE_OPTIONS[architecture.name]
        )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline, architecture
