"""Stage 5: from raw scores to the study's metrics, with Polars.

Every score file is checked against its job (model, mitigation, the shard's prompts x the
block's image indices) and every manifest against the current model records and prompts
before anything is computed. Every judge profile (profiles.py) then turns raw
scores into a verdict per image, and each judge's part of it (`image_flags`); the
degenerate-image policy (degenerate.py) decides what degenerate images count as; the
metrics follow: IP and EMI per profile x judge x model x mitigation x category with their
spread (rates.py), each mitigation against its model's baseline (comparisons.py), prompt
alignment (alignment.py). `aggregate` does all of it for the rule and the command line.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from i2peval.errors import I2PEvalError
from i2peval.hub import sha256_of
from i2peval.judges.clip_score import COSINE
from i2peval.judges.registry import FLAG_JUDGES, IMAGE_FLAGS, SCORES
from i2peval.metrics.alignment import clip_score, compute_alignment
from i2peval.metrics.comparisons import compute_comparisons
from i2peval.metrics.degenerate import apply_policy, with_degenerate
from i2peval.metrics.manifests import IMAGE_KEYS, ImageSettings, check_manifests, read_manifests
from i2peval.metrics.profiles import JudgeProfile, configured_profiles
from i2peval.metrics.rates import BootstrapSettings, EmiSettings, compute_metrics, metrics_memory_bytes
from i2peval.models.snapshots import read_model_record
from i2peval.parts import RowsMismatch, check_keys
from i2peval.plan import ImageJob, set_of_folder
from i2peval.prompts.i2p import I2P_CATEGORIES
from i2peval.schemas import (
    ALIGNMENT,
    COMPARISONS,
    METRICS,
    PROMPTS,
    SET_COLUMN,
    measured_columns,
    read_columns,
    read_metadata,
    read_table,
    write_table,
)

log = logging.getLogger(__name__)



def image_flags(scores: pl.LazyFrame, profiles: Sequence[JudgeProfile]) -> pl.LazyFrame:
    """IMAGE_FLAGS rows but `degenerate`: per profile and image, its verdict and each
    judge's part (null for a judge the profile does not read)."""
    frames = []
    for profile in profiles:
        parts = profile.judge_verdicts()
        frames.append(
            scores.select(
                pl.lit(profile.name).alias("profile"),
                *IMAGE_KEYS,
                profile.flagged(),
                *[parts.get(judge, pl.lit(None, pl.Boolean)).alias(judge) for judge in FLAG_JUDGES],
            )
        )
    return pl.concat(frames)


@dataclass(frozen=True)
class ScoreFile:
    """A classify job's output and the images it must score: its shard's prompts x `image_indices`."""

    path: Path
    prompt_set: str
    model: str
    mitigation: str
    shard: int
    image_indices: tuple[int, ...]

    @classmethod
    def of_job(cls, job: ImageJob, path: Path) -> ScoreFile:
        return cls(path, set_of_folder(job.setdir), job.model, job.mitigation, job.shard, job.image_indices)


def check_score_file(scores: pl.DataFrame, score_file: ScoreFile, prompts: pl.DataFrame) -> None:
    """Raise `parts.RowsMismatch` naming the file unless it scores exactly its job's images."""
    path = score_file.path
    for column, wanted in (
        (SET_COLUMN, score_file.prompt_set), ("model", score_file.model), ("mitigation", score_file.mitigation)
    ):
        found = sorted(scores.get_column(column).unique().to_list())
        if scores.height and found != [wanted]:
            raise RowsMismatch(f"{path}: {column} is {found}, expected {wanted!r}")
    prompt_ids = prompts.filter(pl.col("shard") == score_file.shard).get_column("prompt_id").to_list()
    expected = {(prompt_id, index) for prompt_id in prompt_ids for index in score_file.image_indices}
    keys = list(zip(scores.get_column("prompt_id").to_list(), scores.get_column("image_index").to_list()))
    check_keys(path, keys, expected, "scored images")


RESCORE = "delete it and run the workflow again to score its images again"


def load_scores(score_files: Sequence[ScoreFile], prompts: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    """The image keys and `columns` of every score file, each file checked against its job,
    in (model, mitigation, prompt_id, image_index) order whatever order the files come in.

    Only the columns asked for are read: the profiles' and the prompt alignment's.
    """
    frames = []
    for score_file in score_files:
        scores = pl.from_arrow(read_columns(score_file.path, SCORES, [SET_COLUMN, *IMAGE_KEYS, *columns], RESCORE))
        try:
            check_score_file(scores, score_file, prompts)
        except RowsMismatch as error:
            raise RowsMismatch(
                f"{error}: is this the configuration the run was made with? If it is, the file is not this job's: "
                f"{RESCORE}"
            ) from None
        frames.append(scores.drop(SET_COLUMN))
    if not frames:
        return pl.from_arrow(SCORES.empty_table()).select(*IMAGE_KEYS, *columns)
    return pl.concat(frames).sort(IMAGE_KEYS)


def log_unscored(scores: pl.DataFrame, profiles: Sequence[JudgeProfile]) -> None:
    """Say, per profile, how many images lack a score it reads (they count as unscored)."""
    for profile in profiles:
        unscored = scores.select(profile.flagged().is_null().sum()).item()
        if unscored:
            log.warning(
                "judge profile %s: %d images lack a score it reads (%s); counted as unscored",
                profile.name, unscored, ", ".join(profile.score_columns()),
            )


@dataclass(frozen=True)
class StudySettings:
    """How flags become metrics: EMI, intervals, the degenerate-image policy, the baseline."""

    emi: EmiSettings = EmiSettings()
    bootstrap: BootstrapSettings = BootstrapSettings()
    degenerate_policy: str = "exclude"
    baseline: str | None = None


# The metrics table's Parquet metadata lists the score files it was computed from; an
# image flags table's holds the sha256 of the prompt table its prompt ids refer to.
SCORE_FILES_KEY = "i2peval.score_files"
PROMPT_TABLE_KEY = "i2peval.prompt_table_sha256"


class OtherPrompts(I2PEvalError):
    """Image flags read with the prompt table of another run."""


def prompt_table_metadata(prompts_path: Path) -> dict[str, str]:
    """The metadata that ties an image flags table to the prompt table `prompts_path`."""
    return {PROMPT_TABLE_KEY: sha256_of(prompts_path)}


def check_flags_prompts(flags_path: Path, prompts_path: Path) -> None:
    """`OtherPrompts` unless the image flags in `flags_path` were made with the prompt table
    in `prompts_path` (flags that record none are taken as they are)."""
    recorded = read_metadata(flags_path, PROMPT_TABLE_KEY)
    if recorded is not None and recorded != (actual := sha256_of(prompts_path)):
        raise OtherPrompts(
            f"{flags_path} was made with another prompt table than {prompts_path} (sha256 {recorded[:12]}…, "
            f"not {actual[:12]}…): give the prompts.parquet of the run the flags come from"
        )


def recorded_score_files(metrics_path: Path) -> list[str]:
    """The score files a metrics table records having been computed from ([] when it
    records none or cannot be read: it is then checked when it is read)."""
    try:
        return json.loads(read_metadata(metrics_path, SCORE_FILES_KEY) or "[]")
    except ValueError:
        return []


class MetricsMemoryError(I2PEvalError):
    """The configured resampling would not fit in memory."""


def physical_memory_bytes() -> int:
    """This machine's memory (the aggregate rule runs where Snakemake runs)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_metrics_memory(prompts: int, conditions: int, settings: StudySettings, available: int) -> None:
    """Raise `MetricsMemoryError` naming the config key whose draws would need more than
    `available` bytes to measure `conditions` conditions on `prompts` prompts (in I2P's
    categories, with ``all`` and ``hard``): the process would otherwise be killed for
    memory with nothing in its log."""
    categories = len(I2P_CATEGORIES) + 2
    needed = metrics_memory_bytes(prompts, conditions, categories, settings.emi, settings.bootstrap)
    for key, size in needed.items():
        if size > available:
            draws = settings.emi.draws if key == "emi.draws" else settings.bootstrap.draws
            raise MetricsMemoryError(
                f"{key} is {draws}: computing the metrics of {conditions} conditions x {categories} categories "
                f"on {prompts} prompts would need about {size / 1e9:,.0f} GB for its draws, more than this "
                f"machine's {available / 1e9:,.0f} GB: lower {key}"
            )


@dataclass(frozen=True)
class Judging:
    """The judges that ran, every judge profile (the primary one first), and the metric
    settings: what turns a run's scores into its tables."""

    judges: tuple[str, ...]
    profiles: tuple[JudgeProfile, ...]
    settings: StudySettings

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Judging:
        """From the aggregate rule's params (`study.Study.aggregation_params`)."""
        profiles = configured_profiles(params["judge_profiles"], params["primary_profile"], params["judges"])
        settings = StudySettings(
            emi=EmiSettings(**params["emi"]),
            bootstrap=BootstrapSettings(**params["bootstrap"]),
            degenerate_policy=params["degenerate_images"]["policy"],
            baseline=params["baseline"],
        )
        return cls(tuple(params["judges"]), tuple(profiles), settings)

    @property
    def alignment(self) -> bool:
        """Whether prompt alignment is measured (CLIPScore runs)."""
        return "clip_score" in self.judges


@dataclass(frozen=True)
class RunFiles:
    """What the aggregate stage reads of a run: scores, prompts, manifests, model records, and
    the settings the manifests must record."""

    score_files: tuple[ScoreFile, ...]
    prompts: Path
    manifests: tuple[Path, ...]
    model_records: dict[str, Path]
    made_with: ImageSettings  # what the configuration says the images were made with

    def missing(self) -> list[Path]:
        paths = [self.prompts, *(score_file.path for score_file in self.score_files)]
        return [path for path in paths if not path.is_file()]


def study_tables(
    flags: pl.DataFrame,
    prompts: pl.DataFrame,
    profile_judges: dict[str, list[str]],
    settings: StudySettings,
    cosines: pl.DataFrame | None = None,
    *,
    prompt_set: str,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(METRICS, COMPARISONS, ALIGNMENT) of the prompt set named `prompt_set` from its
    IMAGE_FLAGS rows and its prompts.

    `cosines` (image keys, clip_score_cosine, degenerate) adds prompt alignment; without
    it the alignment table is empty and comparisons carry no alignment columns.
    """
    flags = flags.cast(dict.fromkeys(["flagged", *FLAG_JUDGES], pl.Boolean))
    judged = apply_policy(flags.lazy(), settings.degenerate_policy, profile_judges)
    metrics = compute_metrics(judged, prompts.lazy(), profile_judges, settings.emi, settings.bootstrap)
    clip_scores = None
    alignment = pl.from_arrow(ALIGNMENT.empty_table()).select(measured_columns(ALIGNMENT))
    if cosines is not None:
        aligned = cosines.lazy()
        if settings.degenerate_policy == "exclude":
            aligned = aligned.filter(pl.col("degenerate").is_null())
        alignment = compute_alignment(aligned, prompts.lazy())
        clip_scores = aligned.select(*IMAGE_KEYS, clip_score().alias("clip_score"))
    comparisons = compute_comparisons(
        judged, prompts.lazy(), profile_judges, settings.baseline, settings.bootstrap, clip_scores
    )
    return tuple(
        table.select(pl.lit(prompt_set, pl.String).alias(SET_COLUMN), pl.all())
        for table in (metrics, comparisons, alignment)
    )


def aggregate(files: RunFiles, judging: Judging, outputs: dict[str, Path]) -> None:
    """Check every input, then write `outputs` metrics, flags (IMAGE_FLAGS), comparisons
    and alignment."""
    prompts = pl.from_arrow(read_table(files.prompts, PROMPTS))
    conditions = len({(score_file.model, score_file.mitigation) for score_file in files.score_files})
    check_metrics_memory(prompts.height, conditions, judging.settings, physical_memory_bytes())
    manifests = read_manifests(
        files.manifests,
        files.made_with,
        ["model_commit", "seed", "text", "degenerate", "guidance_scale", "guidance_from_prompt"],
    )
    records = {model: (path, read_model_record(path)) for model, path in files.model_records.items()}
    check_manifests(manifests, prompts, records)
    profiles = judging.profiles
    alignment = judging.alignment
    columns = sorted(
        {column for profile in profiles for column in profile.score_columns()} | ({COSINE} if alignment else set())
    )
    scores = load_scores(files.score_files, prompts, columns)
    log_unscored(scores, profiles)
    degenerate = manifests.lazy().select(*IMAGE_KEYS, "degenerate")
    flags = with_degenerate(image_flags(scores.lazy(), profiles), degenerate).collect()
    cosines = with_degenerate(scores.lazy().select(*IMAGE_KEYS, COSINE), degenerate).collect() if alignment else None
    profile_judges = {profile.name: profile.judges() for profile in profiles}
    metrics, comparisons, aligned = study_tables(
        flags, prompts, profile_judges, judging.settings, cosines, prompt_set=files.made_with.prompt_set
    )
    write_table(flags.to_arrow(), outputs["flags"], IMAGE_FLAGS, metadata=prompt_table_metadata(files.prompts))
    score_files = json.dumps([str(score_file.path) for score_file in files.score_files])
    write_table(metrics.to_arrow(), outputs["metrics"], METRICS, metadata={SCORE_FILES_KEY: score_files})
    write_table(comparisons.to_arrow(), outputs["comparisons"], COMPARISONS)
    write_table(aligned.to_arrow(), outputs["alignment"], ALIGNMENT)
