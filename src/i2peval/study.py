"""The study: the configuration, validated once and read into typed records.

The workflow's rule files, the rule scripts and the command line build a `Study` (or,
in a job, rebuild the part they need from their rule's params); the stages below them
take its records, never the configuration's dict. Its planning checks run when it is
built, so a configuration that cannot work fails before any job: an unknown preset, a
profile reading a judge that does not run, more shards than prompts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from i2peval.config import default_prompt_set, prompt_set_sections
from i2peval.generation.mitigations import Mitigation, baseline_mitigation, resolve_mitigations
from i2peval.judges.assets import ConfiguredAsset, read_asset_record
from i2peval.judges.registry import ASSETS, JUDGES, assets_of
from i2peval.metrics.aggregate import (
    Judging,
    RunFiles,
    ScoreFile,
    check_metrics_memory,
    physical_memory_bytes,
    recorded_score_files,
)
from i2peval.metrics.fid import ASSET as FID_INCEPTION
from i2peval.metrics.manifests import ImageSettings, made_otherwise
from i2peval.metrics.profiles import JudgeProfile
from i2peval.models.snapshots import read_model_record, snapshot_of
from i2peval.models.spec import ModelSpec
from i2peval.plan import (
    FID_REFERENCE_STATISTICS,
    FID_STATISTICS,
    FID_TABLE,
    IMAGES,
    MANIFESTS,
    METRICS_DIR,
    REPORT,
    REPORT_IMAGES,
    SCORES,
    ImageJob,
    PlanError,
    image_jobs,
    metrics_tables,
    set_folder,
    settings_id,
    sorted_keys,
)
from i2peval.prompts.i2p import check_shard_count
from i2peval.prompts.source import PromptSource
from i2peval.storage import RecordError


@dataclass(frozen=True)
class GenerationDefaults:
    """The configuration's ``generation`` section: images per prompt and job, and the
    settings every model gets unless its own entry sets them."""

    images_per_prompt: int
    images_per_job: int
    dtype: str
    prompt_cleaning: str
    steps: int | None = None
    guidance_scale: float | None = None


@dataclass(frozen=True)
class ReportSettings:
    grid_prompts: int
    thumbnail_size: int


@dataclass(frozen=True)
class Study:
    """Everything the configuration says about what to compute, as records: models,
    mitigations and their baseline, judges, judge assets and profiles, the image layout
    and where each stage writes."""

    config: dict[str, Any]  # validated; `settings()` is what the report shows and its rule reruns on
    prompt_set: str  # the name of the prompt set this study of the configuration measures
    prompts: PromptSource
    prompt_count: int | None  # where the source tells before the prompts stage runs
    generation: GenerationDefaults
    models: dict[str, ModelSpec]  # by name
    concept: str
    mitigations: dict[str, Mitigation]  # by name
    baseline: str | None  # the mitigation of kind none
    judging: Judging
    assets: dict[str, ConfiguredAsset]  # every asset, in registry order (each has its rule)
    report: ReportSettings
    fid_reference: Path | None = None  # the set's FID reference images, relative to the run's folder
    judge_dtype: str = "float32"  # what the torch judges' encoders compute in

    @classmethod
    def from_config(cls, config: dict[str, Any], directory: Path = Path("."), prompt_set: str | None = None) -> Study:
        """The study of one prompt set (`prompt_set`; None: `config.default_prompt_set`) of a
        validated configuration (`config.validate_config`: defaults filled in) run in
        `directory`, against which its relative paths are read, as Snakemake reads them
        against its working directory; its ``execution`` section, if any, is not part of
        the study."""
        sections = prompt_set_sections(config)
        prompt_set = default_prompt_set(config) if prompt_set is None else prompt_set
        if prompt_set not in sections:
            raise PlanError(f"prompt set {prompt_set!r} is not configured; the configured sets: {', '.join(sections)}")
        section = sections[prompt_set]
        key = "prompts" if "prompts" in config else f"prompt_sets.{prompt_set}"
        for kind in ("models", "mitigations"):
            unknown = [name for name in section.get(kind, []) if name not in config[kind]]
            if unknown:
                raise PlanError(f"{key}.{kind}: {', '.join(map(repr, unknown))} not among the configured {kind}")
        prompts = PromptSource.from_section(section, directory)
        models = config["models"]
        guided = [name for name in section.get("models", models) if ModelSpec(name, models[name]).prompt_guided]
        if guided and prompts.file_columns.guidance is None:
            raise PlanError(
                f"models {', '.join(map(repr, guided))} take each prompt's guidance scale (guidance: from_prompt), "
                f"but prompt set {prompt_set!r} has no guidance column: give the set one in {key}.columns, or run "
                f"those models on other sets ({key}.models)"
            )
        count = prompts.known_count()
        if count is not None:
            check_shard_count(prompts.shards, count, f"{key}.shards")
        chosen = {kind: section.get(kind, list(config[kind])) for kind in ("models", "mitigations")}
        mitigations = resolve_mitigations(
            {name: config["mitigations"][name] for name in config["mitigations"] if name in chosen["mitigations"]},
            config["concept"],
            directory,
        )
        baseline = baseline_mitigation(mitigations)
        return cls(
            config=config,
            prompt_set=prompt_set,
            prompts=prompts,
            prompt_count=count,
            generation=GenerationDefaults(
                **config["generation"] | {key: section[key] for key in ("images_per_prompt",) if key in section}
            ),
            models={
                name: ModelSpec(name, settings)
                for name, settings in sorted(config["models"].items())
                if name in chosen["models"]
            },
            concept=config["concept"],
            mitigations=mitigations,
            baseline=baseline,
            judging=Judging.from_params(aggregation_params(config, baseline)),
            assets={name: ConfiguredAsset.from_section(asset, config.get(name, {})) for name, asset in ASSETS.items()},
            report=ReportSettings(**config["report"]),
            fid_reference=Path(section["fid_reference"]) if "fid_reference" in section else None,
            judge_dtype=config["judge_dtype"],
        )

    @classmethod
    def of_every_set(cls, config: dict[str, Any], directory: Path = Path(".")) -> dict[str, Study]:
        """The study of each configured prompt set, by name."""
        return {name: cls.from_config(config, directory, name) for name in prompt_set_sections(config)}

    @property
    def setdir(self) -> str:
        """The folder of this prompt set's results below results/ (`plan.set_folder`)."""
        return set_folder(self.prompt_set)

    @property
    def metrics_dir(self) -> str:
        return METRICS_DIR.format(setdir=self.setdir)

    @property
    def metrics_table(self) -> str:
        """The main table the aggregate stage writes for this prompt set."""
        return str(metrics_tables(self.metrics_dir)["metrics"])

    @property
    def report_path(self) -> str:
        return REPORT.format(setdir=self.setdir)

    @property
    def report_image_pattern(self) -> str:
        """Block 0 of a shard of this set, with {model}, {mitigation} and {shard} to fill in."""
        return REPORT_IMAGES.replace("{setdir}", self.setdir)

    @property
    def judges(self) -> tuple[str, ...]:
        """The judges that score every image, in registry order."""
        return self.judging.judges

    @property
    def profiles(self) -> tuple[JudgeProfile, ...]:
        """Every judge profile, the primary one first."""
        return self.judging.profiles

    @property
    def primary_profile(self) -> JudgeProfile:
        return self.judging.profiles[0]

    @property
    def classify_dtype(self) -> str:
        """What the judges that run compute in: `judge_dtype` where one of them takes it, else
        float32 (so that changing it reclassifies no image no judge would score otherwise)."""
        return self.judge_dtype if any(JUDGES[name].takes_dtype for name in self.judges) else "float32"

    @property
    def judge_assets(self) -> list[ConfiguredAsset]:
        """The assets the judges that run load, in registry order."""
        return [self.assets[name] for name in assets_of(list(self.judges))]

    @property
    def report_assets(self) -> list[ConfiguredAsset]:
        """The assets whose records the set's report shows: the judges', and FID's Inception
        where the set has a reference folder."""
        return [*self.judge_assets, *([self.assets[FID_INCEPTION.name]] if self.fid_reference is not None else [])]

    def check_records(self, directory: Path = Path(".")) -> None:
        """Read the files of earlier runs that jobs will read: a damaged record raises
        `storage.RecordError` naming it, as does a sha256 pinned in the configuration that
        the recorded files do not have (`judges.assets.PinMismatch`), and a damaged prompt
        table or shard `PromptFileError` (Snakemake removes a job's outputs before the job
        runs: a bad input found by the job itself would cost the images it made before);
        a local override file that a model stage still has to read, missing, raises
        `models.overrides.OverrideError`."""
        self.prompts.check_outputs(directory)
        for model in self.models.values():
            path = directory / model.record_path
            if path.exists():
                read_model_record(path)
            else:
                model.check_override_files(directory)
        for asset in self.report_assets:
            path = directory / asset.record_path
            if path.exists():
                asset.check_pins(read_asset_record(asset.name, path), path)

    def check_gone_inputs(self, directory: Path = Path(".")) -> None:
        """`RecordError` for a prompt shard or model record deleted from beside the outputs
        its job made with it (the other prompt files; the snapshot), while images exist:
        made in a run that plans those images, Snakemake would make them all again (an
        input made by another job in the same run counts as changed, ancient or not). A
        folder its job left empty (a failed download for new settings) is not this."""
        prompt_files = [self.prompts.table_path, self.prompts.record_path]
        prompts_made = any((directory / path).exists() for path in prompt_files)
        gone: dict[str, tuple[str, str]] = {}
        for job in self.image_jobs():
            if not (directory / job.path(IMAGES)).exists():
                continue
            shard, model = self.prompts.shard_path(job.shard), self.models[job.model]
            if prompts_made and not (directory / shard).exists():
                gone.setdefault(shard, ("prompts", job.path(IMAGES)))
            if (directory / snapshot_of(Path(model.record_path))).exists() and not (
                directory / model.record_path
            ).exists():
                gone.setdefault(model.record_path, ("model", job.path(IMAGES)))
        if gone:
            path, (rule, images) = next(iter(gone.items()))
            others = f"; {len(gone) - 1} more such files" if len(gone) > 1 else ""
            raise RecordError(
                f"{path} is missing, but images made from it exist (e.g. {images}){others}: delete "
                f"{Path(path).parent} and run `snakemake --until {rule}` to make it again alone (the images are "
                "kept when it comes out the same), then run as before"
            )

    def check_memory(self) -> None:
        """`MetricsMemoryError` when the metrics' draws would not fit in this machine's memory
        (where the aggregate rule runs), for a prompt count known before the prompts stage."""
        if self.prompt_count is not None:
            conditions = len(self.models) * len(self.mitigations)
            check_metrics_memory(self.prompt_count, conditions, self.judging.settings, physical_memory_bytes())

    def settings(self) -> dict[str, Any]:
        """What decides the study's results: the configuration without ``execution``, keys
        sorted (so that reordering the configuration reruns nothing)."""
        settings = {key: value for key, value in self.config.items() if key != "execution"}
        return json.loads(json.dumps(settings, sort_keys=True))

    def image_layout(self) -> dict[str, Any]:
        """The arguments of `plan.image_jobs` for this study (the set folder only where there
        is one: the layout of a study with one set is what it was before sets)."""
        layout = {
            "models": list(self.models),
            "mitigations": list(self.mitigations),
            "shards": self.prompts.shards,
            "images_per_prompt": self.generation.images_per_prompt,
            "images_per_job": self.generation.images_per_job,
        }
        return layout | ({"setdir": self.setdir} if self.setdir else {})

    def conditions(self) -> list[tuple[str, str]]:
        """Every (model, mitigation) pair in the order the configuration lists them (the
        report's order): by model, then mitigation, the baseline first."""
        mitigations = [name for name in self.config["mitigations"] if name in self.mitigations]
        mitigations = sorted(mitigations, key=lambda name: name != self.baseline)
        models = [name for name in self.config["models"] if name in self.models]
        return [(model, mitigation) for model in models for mitigation in mitigations]

    def image_jobs(self) -> list[ImageJob]:
        """Every image job, in one fixed order."""
        return image_jobs(**self.image_layout())

    def fid_statistics(self) -> dict[tuple[str, str], str]:
        """Where the FID statistics of each condition's images go (none without a reference)."""
        if self.fid_reference is None:
            return {}
        return {condition: FID_STATISTICS.format(setdir=self.setdir, model=condition[0], mitigation=condition[1])
                for condition in self.conditions()}  # fmt: skip

    @property
    def fid_reference_id(self) -> str:
        """The id of the set's reference folder, named by its path."""
        return settings_id({"folder": str(self.fid_reference)})

    @property
    def fid_reference_statistics(self) -> str:
        """Where the FID statistics of the set's reference folder go."""
        return FID_REFERENCE_STATISTICS.format(reference=self.fid_reference_id)

    @property
    def fid_table(self) -> str:
        return f"{self.metrics_dir}/{FID_TABLE}"

    def generation_params(self, model: str) -> dict[str, Any]:
        """The generate rule's ``generation`` params of `model`."""
        generation = self.generation
        return self.models[model].generation_params(
            generation.steps, generation.guidance_scale, generation.dtype, generation.prompt_cleaning
        )

    def image_settings(self) -> ImageSettings:
        """What every image of the study is made with, as its manifest must record it."""
        return ImageSettings(
            prompt_set=self.prompt_set,
            models={model: self.generation_params(model) for model in self.models},
            mitigations={name: mitigation.settings() for name, mitigation in self.mitigations.items()},
        )

    @cached_property
    def made_with(self) -> ImageSettings:
        return self.image_settings()

    def images_made_otherwise(self, job: ImageJob, directory: Path = Path(".")) -> list[str]:
        """How the finished images of `job` in `directory` were made by other rules of the
        engine than this version's (none when they are not made yet): a rule of the engine
        is in no job's params, so Snakemake would keep them (`manifests.made_otherwise`)."""
        manifest = directory / job.path(MANIFESTS)
        if not manifest.exists():
            return []
        return made_otherwise(manifest, self.made_with)

    def aggregation_params(self) -> dict[str, Any]:
        """The aggregate rule's params: what turns scores into metrics (`Judging.from_params`)."""
        return aggregation_params(self.config, self.baseline)

    def run_files(self, directory: Path = Path(".")) -> RunFiles:
        """Where the workflow stores, under `directory`, what the aggregate stage reads."""
        jobs = self.image_jobs()
        return RunFiles(
            score_files=tuple(ScoreFile.of_job(job, directory / job.path(SCORES)) for job in jobs),
            prompts=directory / self.prompts.table_path,
            manifests=tuple(directory / job.path(MANIFESTS) for job in jobs),
            model_records={name: directory / model.record_path for name, model in self.models.items()},
            made_with=self.image_settings(),
        )

    def stale_result(self, path: str, directory: Path = Path(".")) -> StaleResult | None:
        """Whether the result `path` (the metrics table or the report) exists in `directory`
        while results it was computed from are gone: score files the metrics record having
        read (`metrics.aggregate.SCORE_FILES_KEY`), and still part of the study; the tables
        the report shows. Snakemake remakes a missing file only for a job that runs anyway,
        so it would keep presenting numbers of scores that are gone or being remade. (Images
        gone while their scores are kept are not stale: deleting images to save space keeps
        every number.)"""
        if not (directory / path).exists():
            return None
        tables = [str(table) for table in metrics_tables(self.metrics_dir).values()]
        if path == tables[0]:
            planned = {job.path(SCORES) for job in self.image_jobs()}
            sources = [source for source in recorded_score_files(directory / path) if source in planned]
        elif path == self.report_path:
            sources = tables
        else:
            raise ValueError(f"{path} is not the metrics table or the report")
        missing = [source for source in sources if not (directory / source).exists()]
        return StaleResult(path, missing) if missing else None

    def report_images(self) -> list[str]:
        """Block 0 of every shard of every condition: the report's same-seed grid samples it."""
        return [
            self.report_image_pattern.format(model=model, mitigation=mitigation, shard=shard)
            for model in self.models
            for mitigation in self.mitigations
            for shard in range(self.prompts.shards)
        ]


@dataclass(frozen=True)
class StaleResult:
    """A result file that exists although results it is computed from are missing."""

    path: str
    missing: list[str]

    def describe(self) -> str:
        shown = ", ".join(self.missing[:3]) + (f" and {len(self.missing) - 3} more" if len(self.missing) > 3 else "")
        return f"{self.path} was computed from files that are gone ({len(self.missing)}: {shown})"


def aggregation_params(config: dict[str, Any], baseline: str | None) -> dict[str, Any]:
    """The settings of a validated configuration that decide its metrics, in a fixed order
    (so that reordering the configuration's lists and mappings reruns nothing)."""
    return {
        "judges": [judge for judge in JUDGES if judge in config["judges"]],
        "judge_profiles": sorted_keys(config["judge_profiles"]),
        "primary_profile": config["primary_profile"],
        "emi": sorted_keys(config["emi"]),
        "bootstrap": sorted_keys(config["bootstrap"]),
        "degenerate_images": sorted_keys(config["degenerate_images"]),
        "baseline": baseline,
    }
