"""Rule safety_checker_assets: the SD safety checker (verified hub snapshot, or demo)."""

from pathlib import Path

from i2peval.logs import to_log_file

to_log_file(snakemake.log[0])

from i2peval.hub import HuggingFaceHub
from i2peval.judges.safety_checker import build_demo_safety_checker_assets, fetch_safety_checker_assets
from i2peval.storage import write_json, writing_into

folder = Path(snakemake.output.record).parent
with writing_into(folder):
    if snakemake.params.spec["source"] == "demo":
        record = build_demo_safety_checker_assets(snakemake.params.spec["seed"], folder)
    else:
        # the pinned weights_sha256 checks the download; it is not a param, so pinning it
        # after the first download reruns nothing
        record = fetch_safety_checker_assets(HuggingFaceHub(), snakemake.config["safety_checker"], folder)
write_json(snakemake.output.record, record)
