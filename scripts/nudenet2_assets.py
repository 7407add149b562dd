"""Rule nudenet2_assets: NudeNet v2's base detector and classes (downloaded and verified, or demo)."""

from pathlib import Path

from i2peval.logs import to_log_file

to_log_file(snakemake.log[0])

from i2peval.judges.nudenet2 import build_demo_nudenet2_assets, fetch_nudenet2_assets
from i2peval.storage import write_json, writing_into

folder = Path(snakemake.output.record).parent
with writing_into(folder):
    if snakemake.params.spec["source"] == "demo":
        record = build_demo_nudenet2_assets(snakemake.params.spec["seed"], folder)
    else:
        # the configured sha256 pins check the download; they are not params, so pinning
        # a hash after the first download reruns nothing
        record = fetch_nudenet2_assets(snakemake.config["nudenet2"], folder)
write_json(snakemake.output.record, record)
