"""Where the study's prompts come from: the configured source, the folder named after it,
the prompt count known before running, and the CSV the prompts stage reads."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from i2peval.hub import HuggingFaceHub, fetch_snapshot, sha256_of
from i2peval.plan import settings_id
from i2peval.prompts.builtin import BUILTIN_SETS, BuiltinSet, fetch_builtin_set
from i2peval.prompts.columns import LAYOUTS, PromptColumns
from i2peval.prompts.demo import DEMO_ESD_PROMPTS, DEMO_PROMPTS, write_demo_esd_csv, write_demo_prompt_csv
from i2peval.prompts.i2p import PromptFileError, read_prompt_file
from i2peval.schemas import PROMPTS, SchemaMismatch, read_table
from i2peval.storage import read_json_record

# Rows of i2p_benchmark.csv in the AIML-TUDA/i2p dataset (docs/protocol.md#rows-and-texts).
I2P_HUB_DATASET = ("AIML-TUDA/i2p", "i2p_benchmark.csv")
I2P_HUB_PROMPTS = 4703


@dataclass(frozen=True)
class PromptSource:
    """The configuration's ``prompts`` section: where the prompts come from and how many
    shards they are split into."""

    source: str  # hub, csv, demo, demo-esd or a built-in set's name (builtin.BUILTIN_SETS)
    shards: int
    hub: dict[str, str]  # repo_id, filename, revision (source hub)
    csv: str | None = None  # the local file (source csv), as configured
    root: Path = Path(".")  # what a relative `csv` is relative to: the run's folder
    columns: str | dict[str, Any] = "i2p"  # the local file's columns (columns.PromptColumns.from_config)
    revision: str = "main"  # a built-in set kept on the hub: the dataset's revision

    @classmethod
    def from_section(cls, section: dict[str, Any], root: Path = Path(".")) -> PromptSource:
        return cls(
            section["source"],
            section["shards"],
            section["hub"],
            section.get("csv"),
            root,
            section.get("columns", "i2p"),
            section.get("revision", "main"),
        )

    @property
    def builtin(self) -> BuiltinSet | None:
        """The built-in set named by `source`, or None."""
        return BUILTIN_SETS.get(self.source)

    @property
    def holds_other_prompts(self) -> bool:
        """Whether the source's prompts are not I2P's (a published adversarial or benign
        set): the paper's numbers are not theirs."""
        return self.builtin is not None and self.builtin.name != "i2p-esd"

    def describe(self) -> str:
        """Where the prompts come from, in words, for the report."""
        if self.builtin is not None:
            pin = f"{self.builtin.repository}@{self.builtin.commit}" if self.builtin.commit else self.builtin.repository
            checked = f" (sha256 {self.builtin.sha256})" if self.builtin.sha256 else ""
            return f"{self.builtin.description}: {pin}, {self.builtin.path}{checked}"
        if self.source == "hub":
            return f"the hub dataset {self.hub['repo_id']}, {self.hub['filename']} at {self.hub['revision']}"
        if self.source == "csv":
            return f"the local file {self.csv}"
        return {"demo": "the demo's own prompts (I2P's schema)", "demo-esd": "the demo's own prompts (ESD's schema)"}[
            self.source
        ]

    @property
    def file_columns(self) -> PromptColumns:
        """Where the prompts' fields are in the file the prompts stage reads."""
        return columns_of(self.params())

    @property
    def csv_file(self) -> Path:
        """The local CSV, found from the run's folder as Snakemake finds it."""
        return self.root / self.csv

    def known_count(self) -> int | None:
        """How many prompts the source holds, where that can be known before running.

        A local CSV is read in full, so its errors surface when the workflow is planned.
        """
        if self.source == "demo":
            return len(DEMO_PROMPTS)
        if self.source == "demo-esd":
            return len(DEMO_ESD_PROMPTS)
        if self.source == "csv":
            return read_prompt_file(self.csv_file, self.file_columns).height
        if self.builtin is not None:
            return self.builtin.rows
        return I2P_HUB_PROMPTS if (self.hub["repo_id"], self.hub["filename"]) == I2P_HUB_DATASET else None

    def identity(self) -> dict[str, Any]:
        """What decides the content of the prompt shards, known before they are made.

        The source settings and the shard count; a local CSV by its sha256, so editing it
        reruns what it feeds and moving it does not; a built-in set by what pins it.
        """
        identity = {"source": self.source, "shards": self.shards}
        if self.source == "hub":
            identity["hub"] = self.hub
        if self.source == "csv":
            identity["csv_sha256"] = sha256_of(self.csv_file)
            if self.columns != "i2p":  # the I2P layout named nowhere: folders of earlier runs keep their names
                identity["columns"] = self.columns
        if self.builtin is not None:
            identity |= self.builtin.identity() | self.hub_revision()
        return identity

    def hub_revision(self) -> dict[str, str]:
        """The configured revision of a built-in set kept on the hub."""
        return {"revision": self.revision} if self.builtin.url is None else {}

    @cached_property
    def folder(self) -> str:
        """Where the prompt table, the shards and the source record of these settings live
        (computed once: a local CSV is hashed for it)."""
        return f"results/prompts/{self.source}-{settings_id(self.identity())}"

    @property
    def table_path(self) -> str:
        return f"{self.folder}/prompts.parquet"

    @property
    def shard_pattern(self) -> str:
        return f"{self.folder}/shard-{{shard}}.parquet"

    @property
    def record_path(self) -> str:
        return f"{self.folder}/source.json"

    def shard_path(self, shard: int) -> str:
        return self.shard_pattern.format(shard=shard)

    def check_outputs(self, directory: Path = Path(".")) -> None:
        """`PromptFileError` naming the first prompt table or shard of an earlier run in
        `directory` that cannot be read as a prompt table, `RecordError` naming a damaged
        source record; each says how to write them again."""
        repair = (
            f"Delete {self.folder} and run `snakemake --until prompts` to write it again: "
            "images made from the same prompts are kept"
        )
        for path in [self.table_path, *(self.shard_path(shard) for shard in range(self.shards))]:
            if (directory / path).exists():
                try:
                    read_table(directory / path, PROMPTS)
                except SchemaMismatch as error:
                    raise PromptFileError(f"{error}. {repair}") from None
        if (directory / self.record_path).exists():
            read_source_record(directory / self.record_path, repair)

    def params(self) -> dict[str, Any]:
        """The prompt rule's params: what `obtain_prompt_file` reads besides the local CSV."""
        params = {"source": self.source, **({"hub": self.hub} if self.source == "hub" else {})}
        if self.builtin is not None:
            params |= self.builtin.identity() | self.hub_revision()
        return params | ({"columns": self.columns} if self.source == "csv" and self.columns != "i2p" else {})


def obtain_prompt_file(
    source: dict, local_csv: str | None, dest_dir: Path, client=None
) -> tuple[Path, dict]:
    """The prompt file to read and a record of where it came from.

    ``source["source"]`` is ``hub`` (download at the configured revision, checksum
    verified), ``csv`` (`local_csv`, with the columns ``source["columns"]`` names, I2P's
    when it names none), a built-in set's name (downloaded and verified,
    `builtin.fetch_builtin_set`), ``demo`` or ``demo-esd`` (the project's own prompts, in
    I2P's and in ESD's schema).
    """
    kind = source["source"]
    if kind in BUILTIN_SETS:
        return fetch_builtin_set(BUILTIN_SETS[kind], source.get("revision", "main"), dest_dir, client)
    if kind == "hub":
        hub = source["hub"]
        snapshot = fetch_snapshot(
            client or HuggingFaceHub(),
            hub["repo_id"],
            hub["revision"],
            dest_dir,
            select=lambda paths: [hub["filename"]],
            repo_type="dataset",
        )
        return dest_dir / hub["filename"], {"source": "hub", **snapshot.as_record()}
    if kind == "csv":
        path = Path(local_csv)
        layout = {"columns": source["columns"]} if "columns" in source else {}
        return path, {"source": "csv", "path": str(path), "sha256": sha256_of(path), **layout}
    if kind == "demo-esd":
        path = write_demo_esd_csv(dest_dir / "demo_esd_prompts.csv")
    else:
        path = write_demo_prompt_csv(dest_dir / "demo_prompts.csv")
    return path, {"source": kind, "path": str(path), "sha256": sha256_of(path)}


def columns_of(params: dict[str, Any]) -> PromptColumns:
    """The columns of the file that the prompt rule with `params` (`PromptSource.params`) reads."""
    if params["source"] in BUILTIN_SETS:
        return BUILTIN_SETS[params["source"]].columns
    if params["source"] == "demo-esd":
        return LAYOUTS["esd"]
    return PromptColumns.from_config(params.get("columns", "i2p"))


def read_source_record(path: Path, repair: str = "delete it and rerun to rebuild it") -> dict[str, Any]:
    """The record of where a run's prompts came from (`obtain_prompt_file`)."""
    return read_json_record(path, required=("source", "prompts"), repair=repair)
