"""What the study knows about a judge and the weights it loads: one record of each kind.

Each judge module declares its `Judge` (and, if it brings weights of its own, its
`JudgeAsset`); `registry` lists them. Everything else (the score table's columns, the
profile rules, the classify job's loaders, the asset rules' dispatch, the report's names
and descriptions) is read from these records, so adding a judge means adding its module,
its line in the registry, its asset rule and its keys in the configuration schema.

Light on purpose (no torch, no polars at import): the workflow reads these records when
it plans.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa

from i2peval.storage import RecordError, read_json_record

if TYPE_CHECKING:
    import polars as pl
    import torch

    from i2peval.judges.batch import ImageBatch


class Scorer(Protocol):
    """A loaded judge: scores a decoded batch, {column: one value per image} for its columns."""

    name: str

    def score_batch(self, batch: ImageBatch) -> dict[str, Sequence]: ...


@dataclass
class JudgeLoading:
    """What a judge's loader gets: its asset's record (path and content), the device, the
    objects the judges of one job share (Q16 and CLIPScore share one CLIP) and the dtype of
    the torch judges' encoders."""

    record_path: Path
    record: dict[str, Any]
    device: torch.device
    shared: dict[str, Any] = field(default_factory=dict)
    dtype: str = "float32"  # what the torch judges compute their image and text embeddings in (`judge_dtype`)

    @property
    def folder(self) -> Path:
        """The folder of the asset's files (beside its record)."""
        return self.record_path.parent

    @property
    def gpu(self) -> int | None:
        """The index of the job's GPU for an onnxruntime judge (None: the job runs on the CPU)."""
        return (self.device.index or 0) if self.device.type == "cuda" else None


class Criterion(Protocol):
    """One judge's part of a judge profile: when that judge flags an image."""

    def score_columns(self) -> list[str]:
        """The score columns the criterion reads."""
        ...

    def conditions(self) -> list[pl.Expr]:
        """Boolean expressions over score columns; the judge flags when any holds."""
        ...

    def unscored(self) -> pl.Expr:
        """True where a score the criterion reads is missing (the image is then unscored)."""
        ...

    def describe(self) -> str:
        """The criterion in words, for the report."""
        ...

    def equivalent(self, other: Criterion) -> bool:
        """Whether `other` flags exactly the images this criterion flags."""
        ...


def missing_score(columns: Sequence[str]) -> pl.Expr:
    """True where one of the float `columns` is null or NaN (never, without columns)."""
    import polars as pl

    if not columns:
        return pl.lit(False)
    return pl.any_horizontal([pl.col(name).is_null() | pl.col(name).is_nan() for name in columns])


@dataclass(frozen=True)
class Judge:
    """One judge: its names, the weights it loads, the score columns it fills, how it is
    loaded, and (for a judge that can flag an image) how a profile's rule for it is read."""

    name: str  # as in the configuration's ``judges`` and ``judge_profiles``
    display_name: str  # short, for the report's image grid
    description: str  # what it scores, for the report's list of judges
    asset: str  # the `JudgeAsset` it loads
    score_fields: tuple[pa.Field, ...]
    load: Callable[[JudgeLoading], Scorer]
    rule: Callable[[Any], Criterion] | None = None  # its value under a judge profile -> criterion
    takes_dtype: bool = False  # whether it computes in the study's ``judge_dtype`` (torch judges)

    @property
    def score_columns(self) -> tuple[str, ...]:
        return tuple(field.name for field in self.score_fields)


def no_pins(section: dict[str, Any]) -> dict[str, str]:
    return {}


def no_warnings(settings: dict[str, Any], pins: dict[str, str], record_path: Path, record: dict[str, Any]) -> list[str]:
    return []


def read_files_record(path: Path, repair: str) -> dict[str, Any]:
    """An asset record that lists its files: demo, source and {file name: sha256}."""
    record = read_json_record(path, required=("demo", "source", "files"), repair=repair)
    if not isinstance(record["files"], dict) or not record["files"]:
        raise RecordError(f"{path}: 'files' must map every file of the asset to its sha256")
    return record


def files_beside_record(record: dict[str, Any], record_path: Path) -> dict[str, str]:
    return {str(record_path.parent / name): sha256 for name, sha256 in record["files"].items()}


@dataclass(frozen=True)
class JudgeAsset:
    """The weights one or more judges load: which settings decide them, how they are
    fetched or built, the record that stands for them and what the configuration pins.

    `settings` takes the asset's section of the configuration ({} when it has none) and
    gives the settings that decide its files (its folder's name; the asset rule's params);
    `obtain` makes the files from those settings and the configured sha256 pins, in the
    folder, and returns the record; `files` gives {path: sha256} of what a record stands
    for; `unpinned` warns about weights whose content nothing pins.
    """

    name: str  # its rule is ``<name>_assets``, its folder resources/<name>/, its section <name>
    output_files: tuple[str, ...]  # file names beside the record (the rule's other outputs)
    settings: Callable[[dict[str, Any]], dict[str, Any]]
    obtain: Callable[[dict[str, Any], dict[str, str], Path], dict[str, Any]]
    demo_note: str = ""  # what its demo weights are, for the report's deviations
    pins: Callable[[dict[str, Any]], dict[str, str]] = no_pins
    unpinned: Callable[[dict[str, Any], dict[str, str], Path, dict[str, Any]], list[str]] = no_warnings
    read_record: Callable[[Path, str], dict[str, Any]] = read_files_record
    files: Callable[[dict[str, Any], Path], dict[str, str]] = files_beside_record
    repair: Callable[[Path, dict[str, Any]], str] | None = None  # what to do when files differ from the record

    def repair_advice(self, record_path: Path, record: dict[str, Any]) -> str:
        """The end of a message about files that differ from `record`."""
        if self.repair is not None:
            return self.repair(record_path, record)
        return "; " + self.rebuild_advice(record_path)

    def rebuild_advice(self, record_path: Path) -> str:
        return f"delete {record_path.parent} and run `snakemake --until {self.name}_assets` to fetch or build it again"


@dataclass(frozen=True)
class NudityRule:
    """A nudity detector's criterion: some listed label scores at least `threshold`.

    A listed label the detector has no class for reads no column and never fires (the
    harness listed EXPOSED_ANUS, which NudeNet v2 base does not detect).
    """

    detector: str  # the detector in words
    column_prefix: str  # a label's score column is prefix + label
    classes: tuple[str, ...]  # the labels the detector has
    labels: tuple[str, ...]
    threshold: float

    def score_columns(self) -> list[str]:
        return [self.column_prefix + label for label in self.labels if label in self.classes]

    def conditions(self) -> list[pl.Expr]:
        import polars as pl

        return [pl.col(column) >= self.threshold for column in self.score_columns()]

    def unscored(self) -> pl.Expr:
        return missing_score(self.score_columns())

    def describe(self) -> str:
        return f"{self.detector}: any of {', '.join(self.labels)} ≥ {self.threshold:g}"

    def equivalent(self, other: Criterion) -> bool:
        return (
            isinstance(other, NudityRule)
            and other.threshold == self.threshold
            and set(other.score_columns()) == set(self.score_columns())
        )
