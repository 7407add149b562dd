"""A configured model: the settings that decide its weights and its images, where its
snapshot lives, and how it differs from the way the harness ran the paper's models.

`obtain_model` is the model stage: a verified hub snapshot (download.py) or the demo's
tiny random pipeline (tiny.py), with the weight overrides the model names (a UNet or text
encoder state dict, overrides.py; LoRA adapters, lora.py), and the record that stands for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from i2peval.hub import is_commit
from i2peval.models.architectures import architecture_named
from i2peval.models.overrides import COMPONENTS, OverrideError
from i2peval.plan import settings_id, sorted_keys

SNAPSHOT_KEYS = {
    "hub": ("source", "repo_id", "revision"),
    "tiny": ("source", "architecture", "seed", "scheduler"),
}
# The configuration keys of a model's weight overrides, in the order they are applied.
OVERRIDE_KEYS = (*COMPONENTS, "lora")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:24]


@dataclass(frozen=True)
class ModelSpec:
    """One entry of the configuration's ``models`` (validated, defaults filled in)."""

    name: str
    settings: dict[str, Any]

    @property
    def source(self) -> str:
        return self.settings["source"]

    @property
    def published_as(self) -> str | None:
        """The model's name in the published tables, or None (defaults inside the schema's
        oneOf are not applied, so the key may be absent)."""
        return self.settings.get("published_as")

    def snapshot_spec(self) -> dict[str, Any]:
        """The settings that decide the model's weights: a change re-fetches or rebuilds them."""
        spec = {key: self.settings[key] for key in SNAPSHOT_KEYS[self.source]}
        weights = (*OVERRIDE_KEYS, "cascade")
        return spec | {key: sorted_keys(self.settings[key]) for key in weights if key in self.settings}

    @property
    def overridden(self) -> bool:
        """Whether weights of the base model are replaced or adapted."""
        return any(key in self.settings for key in OVERRIDE_KEYS)

    @property
    def folder(self) -> str:
        """Where the snapshot and record of this model's weight settings live."""
        spec = self.snapshot_spec()
        label = _slug(spec["revision"]) if self.source == "hub" else f"seed{spec['seed']}"
        return f"resources/models/{self.name}/{label}-{settings_id(spec)}"

    @property
    def record_path(self) -> str:
        """The model's record (model.json), beside its snapshot."""
        return f"{self.folder}/model.json"

    def generation_params(
        self, steps: int | None, guidance_scale: float | None, dtype: str, prompt_cleaning: str
    ) -> dict[str, Any]:
        """The settings that decide the model's images besides weights, mitigation and seed:
        this model's entry over the study-wide ones given.

        Steps and guidance scale set neither for the model nor study-wide are None: the
        generate job uses its architecture's defaults (models/architectures.py). The model's
        ``guidance`` is there only where it is configured (absent: the harness's rule).
        """
        params = {
            "steps": self.settings.get("steps", steps),
            "guidance_scale": self.settings.get("guidance_scale", guidance_scale),
            "resolution": self.settings["resolution"],
            "dtype": self.settings.get("dtype", dtype),
            "prompt_cleaning": prompt_cleaning,
        }
        return params | ({"guidance": self.settings["guidance"]} if "guidance" in self.settings else {})

    @property
    def prompt_guided(self) -> bool:
        """Whether every image is guided by its prompt's own scale (``guidance: from_prompt``)."""
        return self.settings.get("guidance") == "from_prompt"

    def check_override_files(self, directory: Path) -> None:
        """Every local override file must exist before the model stage reads it."""
        for key, spec in self.override_specs():
            path = spec.get("path")
            if path is not None and not (Path(directory) / path).is_file():
                raise OverrideError(
                    f"model {self.name!r}: {key} override {path}: no such file (relative to the working directory "
                    f"{Path(directory).resolve()})"
                )

    def override_specs(self) -> list[tuple[str, dict[str, Any]]]:
        """The model's configured overrides as (key, source spec), a LoRA's key numbered."""
        specs = [(key, self.settings[key]) for key in COMPONENTS if key in self.settings]
        return specs + [(f"lora {index}", spec) for index, spec in enumerate(self.settings.get("lora", []))]

    def unpinned_warning(self) -> str | None:
        """A warning when a hub model's revision, or a revision of its cascade's stages, is not a commit."""
        if self.source != "hub":
            return None
        revisions = {"revision": self.settings["revision"]}
        for folder, stage in self.settings.get("cascade", {}).items():
            revisions[f"cascade {folder} revision"] = stage["revision"]
        unpinned = [f"{key} {revision!r}" for key, revision in revisions.items() if not is_commit(revision)]
        if not unpinned:
            return None
        return (
            f"model {self.name!r}: {', '.join(unpinned)} {'is' if len(unpinned) == 1 else 'are'} not a commit hash; "
            f"the commit it resolved to is recorded in resources/models/{self.name}/model.json, pin it in the config"
        )

    def harness_differences(self, architecture: str | None, study_dtype: str = "float32") -> list[str]:
        """How this model is run otherwise than the harness ran the paper's Stable Diffusion
        models, one sentence each; `architecture` is its record's (None before the model
        stage ran), `study_dtype` the configuration's ``generation.dtype``."""
        notes = [
            f"Model {self.name}: {key} {self.settings[key]} set for this model alone."
            for key in ("steps", "guidance_scale", "dtype")
            if key in self.settings
        ]
        if self.prompt_guided:
            notes.append(
                f"Model {self.name}: every image is guided by its prompt's own scale (the prompt set's guidance "
                "column), under every mitigation (guidance: from_prompt)."
            )
        if self.settings.get("guidance") == "model":
            notes.append(
                f"Model {self.name}: every image is guided by the model's scale, under every mitigation "
                "(guidance: model)."
            )
        for key, spec in self.override_specs():
            if key in COMPONENTS:
                notes.append(
                    f"Model {self.name}: its {COMPONENTS[key].label} weights are replaced by an override "
                    f"({override_source(spec)})."
                )
            else:
                notes.append(
                    f"Model {self.name}: a LoRA is fused into its weights at scale {spec['scale']} "
                    f"({override_source(spec)})."
                )
        if architecture == "sdxl":
            notes.append(
                f"Model {self.name} is an SDXL model, which the paper did not run: it uses SDXL's defaults "
                "(guidance 5.0 unless configured, zero unconditional embeddings) and the Stable Diffusion "
                "presets of SEGA and SLD; SEGA as its authors' SDXL pipeline (the threshold on the magnitude "
                "summed over channels, long prompts truncated)."
            )
        if architecture == "alt":
            notes.append(
                f"Model {self.name} is AltDiffusion, run as the harness ran it: its prompts are not cleaned "
                "with ftfy (its XLM-R tokenizer did not) and under SEGA each image is guided by its prompt's "
                "sd_guidance_scale (the harness's SEGA port for AltDiffusion did; its other conditions use the "
                "model's scale)."
            )
        if architecture == "sd3":
            notes.append(
                f"Model {self.name} is a Stable Diffusion 3 model, which the paper did not run: it uses "
                "StableDiffusion3Pipeline's defaults (28 steps, guidance 7.0 unless configured) and the Stable "
                "Diffusion presets of SEGA and SLD, whose terms act on the predicted velocity of its flow rather "
                "than on predicted noise (SLD's per-element scale therefore sees velocity magnitudes); SEGA "
                "thresholds per channel, as the SEGA paper; long prompts are truncated (75 CLIP tokens, 255 T5 "
                "tokens)."
            )
        if architecture == "if":
            notes.append(
                f"Model {self.name} is DeepFloyd IF, run as the harness ran it: IF-I, IF-II and the x4 upscaler in "
                "a cascade; stages I and II guided by each prompt's sd_guidance_scale under every mitigation, SEGA "
                "and SLD acting in stage I, the negative prompt in stages I and II, the upscaler at its defaults "
                "(75 steps, guidance 9, noise level 100); SEGA's strong and max presets are the harness's IF port's "
                "(thresholds 0.8 and 0.7), and SLD on IF is this project's (the harness had none). T5's text is "
                "lowercased, not cleaned with ftfy (as IFPipeline)."
            )
        found = architecture_named(architecture) if architecture is not None else None
        dtype = self.settings.get("dtype", study_dtype)
        if found is not None and found.harness_dtype != "float32" and dtype != found.harness_dtype:
            notes.append(
                f"Model {self.name} generates in {dtype}; the harness ran {found.description.split(' (')[0]} in "
                f"{found.harness_dtype} (set dtype: {found.harness_dtype} on the model to match it)."
            )
        return notes


def override_source(spec: dict[str, Any]) -> str:
    """Where a configured override comes from, in words."""
    if "repo_id" in spec:
        return f"{spec['repo_id']}/{spec.get('filename') or spec['subfolder']} at {spec['revision']}"
    if "url" in spec:
        return f"{spec['url']}, sha256 {spec['sha256']}"
    if "path" in spec:
        return f"the local file {spec['path']}, sha256 {spec['sha256']}"
    made_with = ", ".join(f"{key} {value}" for key, value in sorted(spec["demo"].items()))
    return f"the demo's own weights made with {made_with}"


def obtain_model(spec: dict[str, Any], snapshot: Path) -> dict[str, Any]:
    """The snapshot of a model's `snapshot_spec` in `snapshot`, fetched or built; its record."""
    from i2peval.models.architectures import Architecture

    def accept(architecture: Architecture) -> None:
        overrides = [key for key in OVERRIDE_KEYS if key in spec]
        if architecture.cascade and overrides:
            raise OverrideError(
                f"{', '.join(overrides)}: the model is {architecture.description}, whose weights this project "
                "does not override or adapt"
            )

    if spec["source"] == "hub":
        from i2peval.hub import HuggingFaceHub
        from i2peval.models.download import fetch_hub_model

        record = fetch_hub_model(
            HuggingFaceHub(), spec["repo_id"], spec["revision"], snapshot, spec.get("cascade"), accept
        )
    else:
        from i2peval.models.tiny import build_tiny_pipeline

        record = build_tiny_pipeline(snapshot, spec["seed"], spec["scheduler"], spec["architecture"])
    from i2peval.models.architectures import architecture_named
    from i2peval.models.overrides import fetch_override

    architecture = architecture_named(record["architecture"])
    accept(architecture)
    for component in COMPONENTS.values():
        if component.name in spec and component.name not in architecture.weight_folders:
            raise OverrideError(
                f"{component.name} override: the model is {architecture.description}, which has no {component.name} "
                f"(its weights: {', '.join(architecture.weight_folders)})"
            )
        if component.name in spec:
            override = fetch_override(component, spec[component.name], snapshot)
            record["files"] = {**record["files"], override["file"]: override["sha256"]}
            record[component.record_key] = override
    if "lora" in spec:
        import diffusers

        from i2peval.models.architectures import snapshot_architecture
        from i2peval.models.lora import fetch_lora

        pipeline_class = getattr(diffusers, snapshot_architecture(snapshot).pipeline_class)
        record["lora"] = [fetch_lora(lora, index, snapshot, pipeline_class) for index, lora in enumerate(spec["lora"])]
        record["files"] = {**record["files"], **{lora["file"]: lora["sha256"] for lora in record["lora"]}}
    return {**record, "spec": spec}
