"""The prompt sets the field evaluates on, by name: where each is published, pinned, and how
its columns map onto the prompt table (docs/prompt-sets.md has each set's rows, licence
and quirks, with sources).

A file on GitHub is fetched from its raw URL at the commit its sha256 was taken from, and
refused when its bytes differ. A hub dataset (MMA-Diffusion, gated) is fetched at the
configured revision through the hub client, its files checked against the hub's
checksums and the resolved commit recorded. Either way the file's columns and row count
are checked against what the set was published with before any prompt is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from i2peval.errors import I2PEvalError
from i2peval.hub import HubClient, HuggingFaceHub, fetch_snapshot, fetch_url, sha256_of
from i2peval.prompts.columns import LAYOUTS, PromptColumns
from i2peval.prompts.i2p import read_as_text

# ESD's unsafe-prompts4703.csv and the files made from it: an index column, then these
ESD_COLUMNS = (
    "prompt", "categories", "hard", "inappropriate_percentage", "nudity_percentage", "q16_percentage",
    "sd_safety_percentage", "prompt_toxicity", "lexica_url", "evaluation_seed", "evaluation_guidance",
    "sd_image_width", "sd_image_height", "sd_model", "case_number",
)  # fmt: skip
MMA_COLUMNS = ("target_prompt", "adv_prompt", "sanitized_adv_prompt", "success_against_sanitization_defense",
               "clean_prompt")  # fmt: skip


class PromptSetError(I2PEvalError, RuntimeError):
    """A built-in prompt set's file is not the one it was published as."""


@dataclass(frozen=True)
class BuiltinSet:
    """A published prompt set: where it is, what its file holds, and how it maps."""

    name: str
    description: str
    columns: PromptColumns
    header: tuple[str, ...]  # the file's columns, in order
    rows: int
    licence: str
    repository: str  # GitHub owner/name, or the hub dataset's id
    path: str  # the file in the repository (a hub dataset: what its one data file ends with)
    commit: str | None = None  # GitHub: the commit the sha256 was taken at
    sha256: str | None = None

    @property
    def url(self) -> str | None:
        if self.commit is None:
            return None
        return f"https://raw.githubusercontent.com/{self.repository}/{self.commit}/{self.path}"

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def identity(self) -> dict[str, Any]:
        """What pins the set's content: the URL and sha256, or the hub dataset (its
        revision comes from the configuration)."""
        if self.url is not None:
            return {"url": self.url, "sha256": self.sha256}
        return {"hub": self.repository}

    def check(self, path: Path) -> None:
        """`PromptSetError` naming the file unless it has the published columns and rows."""
        table = read_as_text(path)
        if tuple(table.columns) != self.header:
            missing = [column for column in self.header if column not in table.columns]
            extra = [column for column in table.columns if column not in self.header]
            raise PromptSetError(
                f"{path}: prompt set {self.name} was published with the columns {list(self.header)}, this file "
                f"has {list(table.columns)} (missing {missing}, not expected {extra})"
            )
        if table.height != self.rows:
            raise PromptSetError(
                f"{path}: prompt set {self.name} was published with {self.rows} rows, this file has {table.height}"
            )


BUILTIN_SETS = {
    entry.name: entry
    for entry in (
        BuiltinSet(
            name="i2p-esd",
            description="I2P as the erasure literature loads it: ESD's copy of the hub file",
            columns=LAYOUTS["esd"],
            header=("", *ESD_COLUMNS),
            rows=4703,
            licence="MIT (repository)",
            repository="rohitgandikota/erasing",
            path="data/unsafe-prompts4703.csv",
            commit="25613d27892326e0c7770f7f3555bea4be150089",
            sha256="6c1821aeeb20beb276b4e20ce4c4b801f9106dc935bafc9f6fd5e12aa2651e6f",
        ),
        BuiltinSet(
            name="unlearndiffatk-nudity",
            description="UnlearnDiffAtk's nudity prompts (Zhang et al. 2024), I2P rows in ESD's schema",
            columns=LAYOUTS["esd"],
            header=("Unnamed: 0", *ESD_COLUMNS),
            rows=142,
            licence="MIT",
            repository="OPTML-Group/Diffusion-MU-Attack",
            path="prompts/nudity.csv",
            commit="5a3e5d37fb8787113e5d479204ab593a60e303e0",
            sha256="0a40f6e63bca976513d1d56df71480239ba1eb5c7a9de4df2f535d80f6e0eccd",
        ),
        BuiltinSet(
            name="ring-a-bell-violence",
            description="Ring-A-Bell's violence prompts (Tsai et al. 2024; eta 5.5, K 77)",
            columns=PromptColumns(
                seed="evaluation_seed", guidance=None, categories=None, category="violence", hard=None,
                prompt_id="case_number", width=None, height=None,
            ),  # fmt: skip
            header=("prompt", "case_number", "evaluation_seed"),
            rows=250,
            licence="MIT",
            repository="chiayi-hsu/Ring-A-Bell",
            path="data/InvPrompt/Violence/Violence_eta_5.5_K_77.csv",
            commit="e4585ada0a5eb185fbef89bb94147c97f8d2f79a",
            sha256="6a7c8126ff9054d13025c77b5e23531fbbbdfcab73bc424c17a76862d8ac44a1",
        ),
        BuiltinSet(
            name="p4d-nudity",
            description="P4D's nudity prompts found against ESD (Chin et al. 2024), I2P rows in ESD's schema",
            columns=LAYOUTS["esd"],
            header=("", *ESD_COLUMNS),
            rows=361,
            licence="MIT",
            repository="joycenerd/P4D",
            path="data/unsafe-prompts-nudity_esd.csv",
            commit="2cf3cda9d458373619989ec5e45150c67fed1e8c",
            sha256="c07631944478ae2be118d5e689a48d748265f94b59aa15718a94001257bd7124",
        ),
        BuiltinSet(
            name="coco-30k",
            description="30,000 COCO captions with seeds: the benign set of the erasure literature",
            columns=PromptColumns(
                seed="evaluation_seed", guidance=None, categories=None, hard=None, prompt_id="image_id",
                width=None, height=None,
            ),  # fmt: skip
            header=("image_id", "source", "prompt", "evaluation_seed"),
            rows=30000,
            licence="MIT (repository); captions from COCO (CC BY 4.0)",
            repository="rohitgandikota/erasing",
            path="data/coco_30k.csv",
            commit="25613d27892326e0c7770f7f3555bea4be150089",
            sha256="42c57b188c8f1f8a77cddfa11cde89e83fcbdd4dcd4fc6c840fb4e046d395383",
        ),
        BuiltinSet(
            name="mma-diffusion",
            description="MMA-Diffusion's adversarial prompts (Yang et al. 2024), gated on the hub",
            columns=PromptColumns(
                text="adv_prompt", seed=None, guidance=None, categories=None, category="sexual", hard=None,
                width=None, height=None,
            ),  # fmt: skip
            header=MMA_COLUMNS,
            rows=1000,
            licence="gated on request; redistribution not allowed (CC BY-NC-ND 3.0 code licence)",
            repository="YijunYang280/MMA-Diffusion-NSFW-adv-prompts-benchmark",
            path=".csv",
        ),
    )
}


def hub_data_file(paths: list[str], entry: BuiltinSet) -> list[str]:
    """The one data file of a hub dataset's listing (a name ending in ``entry.path``)."""
    found = [path for path in paths if path.endswith(entry.path)]
    if len(found) != 1:
        raise PromptSetError(
            f"prompt set {entry.name}: the dataset {entry.repository} should hold one file ending in "
            f"{entry.path}, it holds {found or 'none'} among {paths}"
        )
    return found


def fetch_builtin_set(
    entry: BuiltinSet, revision: str, dest_dir: Path, client: HubClient | None = None, url: str | None = None
) -> tuple[Path, dict[str, Any]]:
    """Download a built-in set's file into `dest_dir`, verify it and return it with its
    record. `revision` is the hub dataset's (unused for a file pinned by URL); `url`
    replaces the published URL (a mirror: the sha256 still decides)."""
    if entry.url is not None:
        path = fetch_url(url or entry.url, entry.sha256, dest_dir / entry.filename)
        record = {"source": entry.name, "url": url or entry.url, "sha256": entry.sha256}
    else:
        snapshot = fetch_snapshot(
            client or HuggingFaceHub(),
            entry.repository,
            revision,
            dest_dir,
            select=lambda paths: hub_data_file(paths, entry),
            repo_type="dataset",
        )
        (name,) = snapshot.files
        path = dest_dir / name
        record = {"source": entry.name, **snapshot.as_record(), "sha256": sha256_of(path)}
    entry.check(path)
    return path, record | {"licence": entry.licence}
