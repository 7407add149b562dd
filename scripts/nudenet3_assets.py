"""Rule nudenet3_assets: the record (version, sha256) of the detector bundled in nudenet."""

from i2peval.logs import to_log_file

to_log_file(snakemake.log[0])

from i2peval.judges.nudenet3 import nudenet3_record
from i2peval.storage import write_json

write_json(snakemake.output.record, nudenet3_record())
