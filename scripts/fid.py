"""Rule fid: the FID of each condition's images of a prompt set against its reference images."""

from pathlib import Path

from i2peval.logs import to_log_file

to_log_file(snakemake.log[0])

from i2peval.metrics.fid import fid_table
from i2peval.schemas import FID, write_table

conditions = {
    tuple(condition): Path(path) for condition, path in zip(snakemake.params.conditions, snakemake.input.conditions)
}
table = fid_table(snakemake.params.prompt_set, conditions, Path(snakemake.input.reference))
write_table(table, snakemake.output.table, FID)
