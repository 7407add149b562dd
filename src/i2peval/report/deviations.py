"""Where a study departs from the paper's protocol (docs/protocol.md), in words for the report.

Each section of the study says its own departures; how a model or a mitigation differs
from the way the harness ran it is decided by its record (`ModelSpec.harness_differences`,
`Mitigation.harness_differences`), which the published-number matching reads too.
"""

from __future__ import annotations

from typing import Any

from i2peval.generation.mitigations import same_concept
from i2peval.judges.registry import JUDGES
from i2peval.metrics.profiles import harness_profile, is_harness_rule
from i2peval.models.architectures import ARCHITECTURES
from i2peval.study import Study

ALWAYS = (
    "Seeds: image i of a prompt starts from latents seeded by SeedSequence(sd_seed, i) on the "
    "CPU, independent of batching; the official harness drew 2 batches of 5 from one CUDA "
    "generator seeded with sd_seed.",
    "Q16: open_clip's copy of OpenAI's ViT-L/14 weights (timm/vit_large_patch14_clip_224.openai) "
    "with open_clip's preprocessing; the harness loaded openai/clip-vit-large-patch14 with transformers.",
    "EMI: reported exactly (the expectation over every sample of prompts); the harness's Monte Carlo "
    "estimate beside it comes from seeded draws; prompts are not merged by text unless emi.group_by is 'text'.",
    "Generation: this project's denoising loop with guidance terms, not diffusers' pipelines; tests "
    "hold it to StableDiffusionPipeline, SemanticStableDiffusionPipeline and StableDiffusionPipelineSafe "
    "called the harness's way within 1/255 per pixel. Batches mix prompts; each image is decoded alone.",
)
DEGENERATE_POLICIES = {
    "exclude": "left out of the metrics (the report counts them per condition)",
    "inappropriate": "counted as inappropriate",
}


def protocol_deviations(study: Study, model_records: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Named differences between `study` and the paper's protocol; `model_records` (model
    name -> model.json) tell each model's architecture."""
    return [
        *ALWAYS,
        *generation_deviations(study),
        *model_deviations(study, model_records or {}),
        *mitigation_deviations(study),
        *prompt_deviations(study),
        *profile_deviations(study),
        *metric_deviations(study),
        *judge_weight_deviations(study),
        *judge_dtype_deviations(study),
    ]


def generation_deviations(study: Study) -> list[str]:
    """Study-wide generation settings; the harness ran every Stable Diffusion model at the
    pipeline's defaults, which are the ``sd`` architecture's."""
    generation = study.generation
    harness = ARCHITECTURES["sd"]
    notes = []
    if generation.images_per_prompt != 10:
        count = generation.images_per_prompt
        notes.append(f"{count} image{'' if count == 1 else 's'} per prompt instead of 10.")
    if generation.steps not in (None, harness.steps):
        notes.append(f"{generation.steps} denoising steps instead of {harness.steps}.")
    if generation.guidance_scale not in (None, harness.guidance_scale):
        notes.append(f"Guidance scale {generation.guidance_scale} instead of {harness.guidance_scale}.")
    if generation.dtype != "float32":
        notes.append(f"Generation in {generation.dtype} instead of float32.")
    if generation.prompt_cleaning != "ftfy":
        notes.append(
            "Prompt text is not cleaned with ftfy.fix_text before tokenizing (the harness's "
            "transformers 4.x tokenizer did; 101 I2P prompts tokenize differently)."
        )
    return notes


def model_deviations(study: Study, model_records: dict[str, dict[str, Any]]) -> list[str]:
    return [
        note
        for name, model in study.models.items()
        for note in model.harness_differences(model_records.get(name, {}).get("architecture"), study.generation.dtype)
    ]


def mitigation_deviations(study: Study) -> list[str]:
    """Each mitigation's differences from the harness; a concept text shared with the study's
    is named once, for the study."""
    notes = [] if same_concept(study.concept) else [f"Concept text {study.concept!r} instead of the harness's."]
    for name, mitigation in study.mitigations.items():
        notes += [
            f"Mitigation {name}: {difference.deviation}."
            for difference in mitigation.harness_differences()
            if not (difference.kind == "concept" and mitigation.concept == study.concept)
        ]
        if mitigation.caveat():
            notes.append(f"Mitigation {name}: {mitigation.caveat()}.")
    return notes


def prompt_deviations(study: Study) -> list[str]:
    if study.prompts.source == "hub":
        return []
    builtin = study.prompts.builtin
    if builtin is not None:
        pinned = f"{builtin.repository}@{builtin.commit[:7]}" if builtin.commit else builtin.repository
        return [
            f"Prompts from the built-in set {builtin.name} ({builtin.description}; {pinned}, {builtin.path}), "
            f"not the I2P dataset; {builtin.columns.summary()}."
        ]
    if study.prompts.columns == "esd":
        return [
            f"Prompts from the local file {study.prompts.csv} in the erasure literature's layout (ESD's "
            "unsafe-prompts4703.csv: evaluation_seed, evaluation_guidance, case_number), not the I2P dataset's "
            "file; texts as that file spells them (its copy of I2P leaves row 2260 empty, where the hub's says "
            "'Null')."
        ]
    if study.prompts.source == "csv" and study.prompts.columns != "i2p":
        return [
            f"Prompts from the local file {study.prompts.csv}, not the I2P dataset's file; "
            f"{study.prompts.file_columns.summary()}."
        ]
    return [f"Prompts from source '{study.prompts.source}', not the I2P dataset."]


def profile_deviations(study: Study) -> list[str]:
    primary = study.primary_profile
    if is_harness_rule(primary):
        return []
    return [
        f"Primary judge profile {primary.name!r} flags an image when {primary.describe()}; the harness "
        f"flagged it when {harness_profile().describe()}."
    ]


def metric_deviations(study: Study) -> list[str]:
    settings = study.judging.settings
    notes = []
    if (settings.emi.sample_size, settings.emi.draws) != (25, 10_000):
        notes.append(
            f"EMI over {settings.emi.draws} draws of {settings.emi.sample_size} prompts instead of 10,000 of 25."
        )
    if settings.degenerate_policy in DEGENERATE_POLICIES:
        notes.append(
            "Degenerate images (non-finite latents or pixels, all black, constant) are "
            f"{DEGENERATE_POLICIES[settings.degenerate_policy]}; the harness scored every image."
        )
    return notes


def judge_weight_deviations(study: Study) -> list[str]:
    return [asset.asset.demo_note for asset in study.report_assets if asset.demo and asset.asset.demo_note]


def judge_dtype_deviations(study: Study) -> list[str]:
    if study.classify_dtype == "float32":
        return []
    torch_judges = [JUDGES[name].display_name for name in study.judges if JUDGES[name].takes_dtype]
    return [
        f"Judges {', '.join(torch_judges)} computed their CLIP embeddings in {study.classify_dtype} "
        "(judge_dtype); the harness computed them in float32."
    ]
