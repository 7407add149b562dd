"""A model snapshot's record: where the snapshot came from and the sha256 of every file.

The model stage writes the record beside the snapshot; generate jobs check the snapshot
against it before loading anything, and aggregation checks every image's manifest against
it. Nothing here imports torch, so planning and aggregation stay light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from i2peval.errors import I2PEvalError
from i2peval.hub import sha256_of
from i2peval.models.overrides import COMPONENTS
from i2peval.storage import RecordError, read_json_record

SNAPSHOT_NAME = "snapshot"
# Written into a snapshot folder by others: Snakemake's stamp of a directory output, and
# huggingface_hub's download metadata.
NOT_SNAPSHOT_FILES = frozenset({".snakemake_timestamp", ".cache"})


REPAIR = (
    "delete the folder it is in and run `snakemake --until model` to rebuild it alone; the next run "
    "keeps every image made from the same snapshot"
)


class SnapshotMismatch(I2PEvalError):
    """A snapshot's files are not the ones its record lists."""


def read_model_record(path: Path) -> dict[str, Any]:
    """The provenance record the model stage wrote next to a snapshot."""
    record = read_json_record(path, required=("source", "architecture", "files"), repair=REPAIR)
    if not isinstance(record["files"], dict) or not record["files"]:
        raise RecordError(f"{path}: 'files' must map every snapshot file to its sha256")
    return record


def snapshot_of(record_path: Path) -> Path:
    """The snapshot folder a model record describes (its sibling)."""
    return Path(record_path).parent / SNAPSHOT_NAME


def model_commit_label(record: dict[str, Any]) -> str:
    """What manifests record as the model's commit: the hub commit, or ``local:<source>``;
    then ``+stage_2:<commit>`` for each later stage of a cascade, ``+unet:<sha256>`` and
    ``+text_encoder:<sha256>`` of the override files, and ``+lora:<sha256>*<scale>`` of each
    LoRA, where the model has them."""
    label = record.get("commit") or "local:" + record["source"]
    label += "".join(f"+{folder}:{stage['commit']}" for folder, stage in sorted(record.get("cascade", {}).items()))
    for component in COMPONENTS.values():
        if component.record_key in record:
            label += f"+{component.name}:{record[component.record_key]['sha256']}"
    return label + "".join(f"+lora:{lora['sha256']}*{lora['scale']}" for lora in record.get("lora", []))


def verify_snapshot(snapshot: Path, record: dict[str, Any], record_path: Path) -> None:
    """Check every file of `snapshot` against the sha256 its record lists, before anything loads.

    A changed, missing or unlisted file (weights of another model copied in, a truncated
    download) raises `SnapshotMismatch` naming the files.
    """
    snapshot = Path(snapshot)
    listed: dict[str, str] = record["files"]
    present = {
        path.relative_to(snapshot).as_posix()
        for path in snapshot.rglob("*")
        if path.is_file() and not NOT_SNAPSHOT_FILES.intersection(path.relative_to(snapshot).parts)
    }
    problems = []
    missing = sorted(set(listed) - present)
    if missing:
        problems.append(f"missing {missing}")
    unlisted = sorted(present - set(listed))
    if unlisted:
        problems.append(f"not in the record {unlisted}")
    changed = [path for path in sorted(set(listed) & present) if sha256_of(snapshot / path) != listed[path]]
    if changed:
        problems.append(f"sha256 differs from the record for {changed}")
    if problems:
        raise SnapshotMismatch(
            f"{snapshot} does not match {record_path}: {'; '.join(problems)}. Delete "
            f"{snapshot.parent} and run `snakemake --until model` to fetch or build it again; "
            "the next run keeps every image made from the same snapshot"
        )
