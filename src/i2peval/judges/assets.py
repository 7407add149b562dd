"""Each judge's weights: which settings decide them, the folder they live in, and the record
that stands for them.

Light on purpose (no torch, no polars): the workflow reads this when it plans. Every judge
loads one asset (Q16 and CLIPScore share the CLIP of the Q16 assets). An asset's folder is
named after the settings that decide its content; a sha256 pin does not decide the content
(it only checks it), so pinning a hash after the first download keeps the folder, and the
planner compares the pin with the record instead (`pin_problems`). Every record lists the
sha256 of the files it stands for, and a job checks the files against it before loading
any (`verify_asset_files`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from i2peval import plan
from i2peval.errors import I2PEvalError
from i2peval.hub import ChecksumError, sha256_of
from i2peval.judges.q16 import q16_asset_paths, q16_source_spec, read_q16_record
from i2peval.storage import RecordError, read_json_record

# The asset each judge loads.
JUDGE_ASSET = {
    "q16": "q16",
    "clip_score": "q16",
    "nudenet2": "nudenet2",
    "nudenet3": "nudenet3",
    "safety_checker": "safety_checker",
}
ASSETS = ("q16", "nudenet2", "nudenet3", "safety_checker")
REPAIR = "delete {folder} and run `snakemake --until {asset}_assets` to fetch or build it again"


class PinMismatch(I2PEvalError):
    """A sha256 pinned in the configuration differs from the one recorded for the files on disk."""


def judging(config: dict[str, Any]) -> dict[str, Any]:
    """The judges that run, the judge profiles and the primary one, in a fixed order (so
    that reordering the configuration's lists reruns nothing)."""
    return {
        "judges": [judge for judge in JUDGE_ASSET if judge in config["judges"]],
        "judge_profiles": dict(sorted(config["judge_profiles"].items())),
        "primary_profile": config["primary_profile"],
    }


def assets_of(judges: list[str]) -> list[str]:
    """The assets the `judges` load, each once, in `ASSETS` order."""
    needed = {JUDGE_ASSET[judge] for judge in judges}
    return [asset for asset in ASSETS if asset in needed]


def asset_spec(asset: str, config: dict[str, Any]) -> dict[str, Any]:
    """The configuration's settings that decide an asset's files (its folder's name).

    Pinned sha256 sums are left out: they check the files, they do not choose them.
    """
    if asset == "q16":
        return q16_source_spec(config["q16"])
    if asset == "nudenet3":
        return {"source": "package"}
    settings = config[asset]
    if settings["source"] == "demo":
        return {"source": "demo", "seed": settings["demo_seed"]}
    if asset == "nudenet2":
        return {"source": "url", "checkpoint": settings["checkpoint"]["url"], "classes": settings["classes"]["url"]}
    return {"source": "hub", "repo_id": settings["repo_id"], "revision": settings["revision"]}


def asset_folder(asset: str, config: dict[str, Any]) -> str:
    """Where an asset's files and record live."""
    spec = asset_spec(asset, config)
    if asset == "q16":
        return plan.q16_folder(spec)
    return f"resources/{asset}/{spec['source']}-{plan.settings_id(spec)}"


def record_path(asset: str, folder: str | Path) -> Path:
    return Path(folder) / f"{asset}.json"


def read_asset_record(asset: str, path: str | Path) -> dict[str, Any]:
    """The record an asset job wrote; `RecordError` naming it if unreadable or incomplete."""
    if asset == "q16":
        return read_q16_record(Path(path))
    record = read_json_record(
        path,
        required=("demo", "source", "files"),
        repair=REPAIR.format(folder=Path(path).parent, asset=asset),
    )
    if not isinstance(record["files"], dict) or not record["files"]:
        raise RecordError(f"{path}: 'files' must map every file of the asset to its sha256")
    return record


def asset_files(asset: str, record: dict[str, Any], record_file: str | Path) -> dict[str, str]:
    """{path: sha256} of the files a record stands for. The bundled NudeNet 3 detector lives
    in the installed package, the others beside the record."""
    if asset == "q16":
        weights, prompts = q16_asset_paths(Path(record_file))
        return {str(weights): record["weights_sha256"], str(prompts): record["prompts_sha256"]}
    if asset == "nudenet3":
        from i2peval.judges.nudenet3 import bundled_model_path

        return {str(bundled_model_path().parent / name): sha for name, sha in record["files"].items()}
    folder = Path(record_file).parent
    return {str(folder / name): sha for name, sha in record["files"].items()}


def verify_asset_files(asset: str, record: dict[str, Any], record_file: str | Path) -> None:
    """`ChecksumError` naming the file unless every file matches its record, before loading any."""
    for path, expected in asset_files(asset, record, record_file).items():
        if not Path(path).is_file() or sha256_of(Path(path)) != expected:
            state = "is missing" if not Path(path).is_file() else "does not match the sha256 recorded in"
            if asset == "nudenet3":
                raise ChecksumError(
                    f"{path} {state} {record_file}: the installed nudenet is not the one the scores "
                    f"were recorded with ({record.get('version')}); reinstall it, or delete "
                    f"{Path(record_file).parent} to record the installed one (every image is then scored again)"
                )
            raise ChecksumError(
                f"{path} {state} {record_file}; " + REPAIR.format(folder=Path(record_file).parent, asset=asset)
            )


def configured_pins(asset: str, config: dict[str, Any]) -> dict[str, str]:
    """{file name: sha256} the configuration pins for an asset."""
    settings = config.get(asset, {})
    if asset == "nudenet2" and settings.get("source") == "url":
        from i2peval.judges.nudenet2 import CLASSES_NAME, DETECTOR_NAME

        return {
            name: settings[key]["sha256"]
            for key, name in (("checkpoint", DETECTOR_NAME), ("classes", CLASSES_NAME))
            if "sha256" in settings[key]
        }
    if asset == "safety_checker" and settings.get("source") == "hub" and settings.get("weights_sha256"):
        from i2peval.judges.safety_checker import WEIGHTS_NAME

        return {WEIGHTS_NAME: settings["weights_sha256"]}
    return {}


def pin_problems(asset: str, config: dict[str, Any], record: dict[str, Any], record_file: str | Path) -> None:
    """`PinMismatch` when the configuration pins a sha256 that the recorded files do not have."""
    for name, pinned in configured_pins(asset, config).items():
        recorded = record["files"].get(name)
        if recorded != pinned:
            raise PinMismatch(
                f"{asset}: the configuration pins {name} to sha256 {pinned}, but {record_file} records "
                f"{recorded}: fix the pin, or " + REPAIR.format(folder=Path(record_file).parent, asset=asset)
            )


def unpinned_warnings(config: dict[str, Any], records: dict[str, tuple[Path, dict[str, Any]]]) -> list[str]:
    """Report warnings for judge weights whose content the configuration does not pin.

    `records` maps each asset to its record's path and content.
    """
    from i2peval.judges.nudenet2 import CLASSES_NAME, DETECTOR_NAME

    warnings = []
    if "nudenet2" in records and config["nudenet2"]["source"] == "url":
        path, record = records["nudenet2"]
        pins = configured_pins("nudenet2", config)
        for key, name in (("checkpoint", DETECTOR_NAME), ("classes", CLASSES_NAME)):
            if name not in pins:
                warnings.append(
                    f"NudeNet v2 {key} is not pinned: {config['nudenet2'][key]['url']} has no published "
                    f"checksum, and its first download recorded sha256 {record['files'][name]} in {path}. "
                    f"Pin it: set nudenet2.{key}.sha256: {record['files'][name]} in the configuration "
                    "(this reruns nothing)."
                )
    if "safety_checker" in records and config["safety_checker"]["source"] == "hub":
        from i2peval.judges.safety_checker import WEIGHTS_NAME

        path, record = records["safety_checker"]
        settings = config["safety_checker"]
        if not plan.is_commit(settings["revision"]) and not settings.get("weights_sha256"):
            warnings.append(
                f"safety checker: revision {settings['revision']!r} is not a commit and no weights_sha256 is "
                f"pinned; it resolved to {record.get('commit')} (recorded in {path}): pin "
                f"safety_checker.weights_sha256: {record['files'].get(WEIGHTS_NAME)}"
            )
    return warnings
