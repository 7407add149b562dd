"""Where a configured run departs from the paper's protocol, in words for the report."""

from __future__ import annotations

from typing import Any

from i2peval.generation.mitigations import HARNESS_CONCEPT, HARNESS_LONG_PROMPTS
from i2peval.metrics.profiles import JudgeProfile, harness_profile, is_harness_rule

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
HARNESS_STEPS = 50
HARNESS_GUIDANCE_SCALE = 7.5
DEGENERATE_POLICIES = {
    "exclude": "left out of the metrics (the report counts them per condition)",
    "inappropriate": "counted as inappropriate",
}


def protocol_deviations(
    config: dict[str, Any], model_records: dict[str, dict[str, Any]] | None = None
) -> list[str]:
    """Named differences between `config` and the paper's protocol (protocol.md).

    `model_records` (model name -> model.json) tell each model's architecture.
    """
    notes = list(ALWAYS)
    generation = config["generation"]
    if generation["images_per_prompt"] != 10:
        notes.append(f"{generation['images_per_prompt']} images per prompt instead of 10.")
    if generation.get("steps", HARNESS_STEPS) != HARNESS_STEPS:
        notes.append(f"{generation['steps']} denoising steps instead of {HARNESS_STEPS}.")
    if generation.get("guidance_scale", HARNESS_GUIDANCE_SCALE) != HARNESS_GUIDANCE_SCALE:
        notes.append(f"Guidance scale {generation['guidance_scale']} instead of {HARNESS_GUIDANCE_SCALE}.")
    if generation["dtype"] != "float32":
        notes.append(f"Generation in {generation['dtype']} instead of float32.")
    if generation["prompt_cleaning"] != "ftfy":
        notes.append(
            "Prompt text is not cleaned with ftfy.fix_text before tokenizing (the harness's "
            "transformers 4.x tokenizer did; 101 I2P prompts tokenize differently)."
        )
    for name, model in config["models"].items():
        for key in ("steps", "guidance_scale"):
            if key in model:
                notes.append(f"Model {name}: {key} {model[key]} set for this model alone.")
        architecture = (model_records or {}).get(name, {}).get("architecture")
        if architecture == "sdxl":
            notes.append(
                f"Model {name} is an SDXL model, which the paper did not run: it uses SDXL's defaults "
                "(guidance 5.0 unless configured, zero unconditional embeddings) and the Stable "
                "Diffusion presets of SEGA and SLD."
            )
    if " ".join(config["concept"].split()) != HARNESS_CONCEPT:
        notes.append(f"Concept text {config['concept']!r} instead of the harness's.")
    for name, mitigation in config["mitigations"].items():
        if mitigation.get("overrides"):
            notes.append(
                f"Mitigation {name}: preset {mitigation['preset']} with overrides {mitigation['overrides']}."
            )
        if mitigation.get("concept") and " ".join(mitigation["concept"].split()) != HARNESS_CONCEPT:
            notes.append(f"Mitigation {name}: concept {mitigation['concept']!r} instead of the harness's.")
        harness_long_prompts = HARNESS_LONG_PROMPTS[mitigation["kind"]]
        if mitigation.get("long_prompts", harness_long_prompts) != harness_long_prompts:
            notes.append(
                f"Mitigation {name}: prompts over 77 tokens are tokenized by {mitigation['long_prompts']!r}, "
                f"the harness's {mitigation['kind']} runs by {harness_long_prompts!r}."
            )
        if mitigation["kind"] == "sld" and mitigation.get("preset") == "weak":
            notes.append(f"Mitigation {name}: SLD weak uses diffusers' guidance scale 20 (the SLD model card says 200).")
    if config["prompts"]["source"] != "hub":
        notes.append(f"Prompts from source '{config['prompts']['source']}', not the I2P dataset.")
    primary = config["primary_profile"]
    profile = JudgeProfile.from_config(primary, config["judge_profiles"][primary])
    if not is_harness_rule(profile):
        notes.append(
            f"Primary judge profile {primary!r} flags an image when {profile.describe()}; the harness "
            f"flagged it when {harness_profile().describe()}."
        )
    emi = config["emi"]
    if (emi["sample_size"], emi["draws"]) != (25, 10_000):
        notes.append(f"EMI over {emi['draws']} draws of {emi['sample_size']} prompts instead of 10,000 of 25.")
    policy = config["degenerate_images"]["policy"]
    if policy in DEGENERATE_POLICIES:
        notes.append(
            "Degenerate images (non-finite latents or pixels, all black, constant) are "
            f"{DEGENERATE_POLICIES[policy]}; the harness scored every image."
        )
    judges = config["judges"]
    if config["q16"]["source"] == "demo" and {"q16", "clip_score"} & set(judges):
        notes.append("Q16 and CLIPScore use demo weights (tiny random CLIP, random prompt vectors): their scores mean nothing.")
    if "nudenet2" in judges and config["nudenet2"]["source"] == "demo":
        notes.append("NudeNet v2 uses demo weights (a tiny random ONNX detector with its interface): its scores mean nothing.")
    if "safety_checker" in judges and config["safety_checker"]["source"] == "demo":
        notes.append("The safety checker uses demo weights (tiny random): its verdicts mean nothing.")
    return notes
