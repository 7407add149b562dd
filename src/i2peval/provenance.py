"""What made an artifact: package version and a hash of the package's source."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import i2peval


@lru_cache(maxsize=1)
def code_version() -> str:
    """``<version>+<12 hex of sha256 over the package's .py files>``."""
    digest = hashlib.sha256()
    package_dir = Path(i2peval.__file__).parent
    for path in sorted(package_dir.rglob("*.py")):
        digest.update(path.relative_to(package_dir).as_posix().encode())
        digest.update(path.read_bytes())
    return f"{i2peval.__version__}+{digest.hexdigest()[:12]}"


def summarise_manifests(paths: list[Path]) -> dict:
    """What the generate manifests say about how the images were made, in a few numbers."""
    import polars as pl

    manifests = pl.concat([pl.read_parquet(path) for path in paths], how="vertical")
    return {
        "images": manifests.height,
        "generation_seconds": round(float(manifests["seconds"].sum()), 1),
        "devices": sorted(manifests["device"].unique().to_list()),
        "dtypes": sorted(manifests["dtype"].unique().to_list()),
        "code_versions": sorted(manifests["code_version"].unique().to_list()),
    }
