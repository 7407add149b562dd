"""Where the study's prompts come from: the configured source, the folder named after it,
the prompt count known before running, and the CSV the prompts stage reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from i2peval.hub import HuggingFaceHub, fetch_snapshot, sha256_of
from i2peval.plan import settings_id
from i2peval.prompts.demo import DEMO_PROMPTS, write_demo_prompt_csv
from i2peval.prompts.i2p import read_i2p_csv

# Rows of i2p_benchmark.csv in the AIML-TUDA/i2p dataset (protocol.md).
I2P_HUB_DATASET = ("AIML-TUDA/i2p", "i2p_benchmark.csv")
I2P_HUB_PROMPTS = 4703


def known_prompt_count(prompts: dict[str, Any]) -> int | None:
    """How many prompts the configured source holds, where that can be known before running.

    A local CSV is read in full, so its errors surface when the workflow is planned.
    """
    if prompts["source"] == "demo":
        return len(DEMO_PROMPTS)
    if prompts["source"] == "csv":
        return read_i2p_csv(prompts["csv"]).height
    hub = prompts["hub"]
    return I2P_HUB_PROMPTS if (hub["repo_id"], hub["filename"]) == I2P_HUB_DATASET else None


def prompt_identity(prompts: dict[str, Any]) -> dict[str, Any]:
    """What decides the content of the prompt shards, known before they are made.

    The source settings and the shard count; a local CSV by its sha256, so editing it
    reruns what it feeds and moving it does not.
    """
    identity = {"source": prompts["source"], "shards": prompts["shards"]}
    if prompts["source"] == "hub":
        identity["hub"] = prompts["hub"]
    if prompts["source"] == "csv":
        identity["csv_sha256"] = sha256_of(prompts["csv"])
    return identity


def prompts_folder(prompts: dict[str, Any]) -> str:
    """Where the prompt table and shards of these prompt settings live."""
    return f"results/prompts/{prompts['source']}-{settings_id(prompt_identity(prompts))}"


def prompt_table(config: dict[str, Any]) -> str:
    """Where a validated configuration's normalised prompt table lives."""
    return f"{prompts_folder(config['prompts'])}/prompts.parquet"


def obtain_prompt_csv(
    source: dict, local_csv: str | None, dest_dir: Path, client=None
) -> tuple[Path, dict]:
    """The CSV to read and a record of where it came from.

    ``source["source"]`` is ``hub`` (download at the configured revision, checksum
    verified), ``csv`` (`local_csv`) or ``demo`` (the project's own prompts).
    """
    kind = source["source"]
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
        return path, {"source": "csv", "path": str(path), "sha256": sha256_of(path)}
    path = write_demo_prompt_csv(dest_dir / "demo_prompts.csv")
    return path, {"source": "demo", "path": str(path), "sha256": sha256_of(path)}
