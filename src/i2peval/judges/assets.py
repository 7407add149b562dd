"""Each judge asset as the study configures it: the folder named after the settings that
decide its files, the record that stands for them, and the checks of both.

Light on purpose (no torch, no polars): the workflow reads this when it plans. An asset's
folder is named after the settings that decide its content (`JudgeAsset.settings`); a
sha256 pin does not decide the content (it only checks it), so pinning a hash after the
first download keeps the folder, and the planner compares the pin with the record instead
(`ConfiguredAsset.check_pins`). Every record lists the sha256 of the files it stands for,
and a job checks the files against it before loading any (`verify_asset_files`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from i2peval.errors import I2PEvalError
from i2peval.hub import ChecksumError, sha256_of
from i2peval.judges.judge import JudgeAsset
from i2peval.judges.registry import ASSETS
from i2peval.plan import settings_id


class PinMismatch(I2PEvalError):
    """A sha256 pinned in the configuration differs from the one recorded for the files on disk."""


def record_path(asset: str, folder: str | Path) -> Path:
    return Path(folder) / f"{asset}.json"


def read_asset_record(asset: str, path: str | Path) -> dict[str, Any]:
    """The record an asset job wrote; `RecordError` naming it if unreadable or incomplete."""
    judge_asset = ASSETS[asset]
    return judge_asset.read_record(Path(path), judge_asset.rebuild_advice(Path(path)))


def asset_files(asset: str, record: dict[str, Any], record_file: str | Path) -> dict[str, str]:
    """{path: sha256} of the files a record stands for."""
    return ASSETS[asset].files(record, Path(record_file))


def verify_asset_files(asset: str, record: dict[str, Any], record_file: str | Path) -> None:
    """`ChecksumError` naming the file unless every file matches its record, before loading any."""
    for path, expected in asset_files(asset, record, record_file).items():
        if not Path(path).is_file() or sha256_of(Path(path)) != expected:
            state = "is missing" if not Path(path).is_file() else "does not match the sha256 recorded in"
            raise ChecksumError(f"{path} {state} {record_file}{ASSETS[asset].repair_advice(Path(record_file), record)}")


@dataclass(frozen=True)
class ConfiguredAsset:
    """A judge asset with the configuration's settings for it: what decides its files, and
    the sha256 the configuration pins."""

    asset: JudgeAsset
    settings: dict[str, Any]
    pins: dict[str, str]

    @classmethod
    def from_section(cls, asset: JudgeAsset, section: dict[str, Any]) -> ConfiguredAsset:
        """`asset` under its (validated) section of the configuration, {} when it has none."""
        return cls(asset, asset.settings(section), asset.pins(section))

    @property
    def name(self) -> str:
        return self.asset.name

    @property
    def demo(self) -> bool:
        return self.settings["source"] == "demo"

    @property
    def folder(self) -> str:
        """Where the asset's files and record live."""
        return f"resources/{self.name}/{self.settings['source']}-{settings_id(self.settings)}"

    @property
    def record_path(self) -> str:
        return str(record_path(self.name, self.folder))

    def file_paths(self) -> list[str]:
        """The files the asset rule writes beside the record."""
        return [f"{self.folder}/{name}" for name in self.asset.output_files]

    def check_pins(self, record: dict[str, Any], record_file: str | Path) -> None:
        """`PinMismatch` when the configuration pins a sha256 that the recorded files do not have."""
        for name, pinned in self.pins.items():
            recorded = record["files"].get(name)
            if recorded != pinned:
                raise PinMismatch(
                    f"{self.name}: the configuration pins {name} to sha256 {pinned}, but {record_file} records "
                    f"{recorded}: fix the pin, or {self.asset.rebuild_advice(Path(record_file))}"
                )

    def unpinned_warnings(self, record_file: str | Path, record: dict[str, Any]) -> list[str]:
        """Report warnings for weights whose content the configuration does not pin."""
        return self.asset.unpinned(self.settings, self.pins, Path(record_file), record)
