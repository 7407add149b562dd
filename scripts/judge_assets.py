"""Rules <asset>_assets: a judge asset's files (fetched and verified, or built for the demo) and its record."""

from pathlib import Path

from i2peval.logs import to_log_file

to_log_file(snakemake.log[0])

from i2peval.judges.registry import ASSETS
from i2peval.storage import write_json, writing_into

record_path = Path(snakemake.output.record)
asset = ASSETS[record_path.stem]
# The configured sha256 pins check the files; they are not params, so pinning a hash after
# the first download reruns nothing.
pins = asset.pins(snakemake.config.get(asset.name, {}))
with writing_into(record_path.parent):
    record = asset.obtain(snakemake.params.get("settings", {}), pins, record_path.parent)
write_json(record_path, record)
