"""Rule model: a verified hub snapshot of a supported architecture, or a tiny random pipeline."""

from pathlib import Path

from i2peval.logs import to_log_file

to_log_file(snakemake.log[0])

from i2peval.models.download import fetch_hub_model
from i2peval.models.tiny import build_tiny_pipeline
from i2peval.hub import HuggingFaceHub
from i2peval.storage import write_json, writing_into

spec = snakemake.params.spec
snapshot = Path(snakemake.output.snapshot)
with writing_into(snapshot):
    if spec["source"] == "hub":
        record = fetch_hub_model(HuggingFaceHub(), spec["repo_id"], spec["revision"], snapshot)
    else:
        record = build_tiny_pipeline(snapshot, spec["seed"], spec["scheduler"], spec["architecture"])
write_json(snakemake.output.record, {**record, "spec": spec})
