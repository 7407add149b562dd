"""Rule q16_assets: CLIP weights and Q16 prompt vectors (real and verified, or demo)."""

from pathlib import Path

from i2peval.logs import to_log_file

to_log_file(snakemake.log[0])

from i2peval.hub import HuggingFaceHub
from i2peval.judges.q16 import build_demo_q16_assets, fetch_q16_assets
from i2peval.storage import write_json, writing_into

spec = snakemake.params.spec
weights, prompts = Path(snakemake.output.weights), Path(snakemake.output.prompts)
with writing_into(weights.parent):
    if spec["source"] == "demo":
        record = build_demo_q16_assets(spec["seed"], weights, prompts)
    else:
        record = fetch_q16_assets(HuggingFaceHub(), spec, weights.parent, weights, prompts)
write_json(snakemake.output.record, record)
