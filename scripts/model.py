"""Rule model: a verified hub snapshot of a supported architecture, or a tiny random pipeline."""

from pathlib import Path

from i2peval.logs import to_log_file

to_log_file(snakemake.log[0])

from i2peval.models.spec import obtain_model
from i2peval.storage import write_json, writing_into

snapshot = Path(snakemake.output.snapshot)
with writing_into(snapshot):
    record = obtain_model(snakemake.params.spec, snapshot)
write_json(snakemake.output.record, record)
