"""Rule prompts: fetch or write the prompt file, normalise it, split it into shards."""

from pathlib import Path

from i2peval.logs import to_log_file

to_log_file(snakemake.log[0])

from i2peval.prompts.i2p import read_prompt_file, write_prompt_tables
from i2peval.prompts.source import columns_of, obtain_prompt_file
from i2peval.storage import write_json

source_record_path = Path(snakemake.output.source)
prompt_file, record = obtain_prompt_file(
    snakemake.params.source,
    snakemake.input.csv[0] if snakemake.input.csv else None,
    source_record_path.parent,
)
prompts = read_prompt_file(prompt_file, columns_of(snakemake.params.source))
write_prompt_tables(
    prompts, Path(snakemake.output.table), [Path(path) for path in snakemake.output.shards]
)
write_json(source_record_path, {**record, "prompts": prompts.height})
