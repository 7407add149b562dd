"""Rules fid_reference and fid_statistics: the FID statistics of a reference folder's images or
of one condition's images of a prompt set (i2peval.metrics.fid)."""

from pathlib import Path

from i2peval.logs import to_log_file

to_log_file(snakemake.log[0])

import torch

from i2peval.devices import compute_device
from i2peval.execution import ExecutionSettings
from i2peval.metrics import fid

# How the job runs, not what it computes: not a param, so changing it reruns nothing.
execution = ExecutionSettings(**snakemake.config["execution"])
torch.set_num_threads(snakemake.threads)
if snakemake.rule == "fid_reference":
    images = (fid.read_rgb(path) for path in fid.reference_images(Path(snakemake.params.folder)))
else:
    images = fid.condition_images(Path(path) for path in snakemake.input.images)
with compute_device(execution.device, Path(execution.gpu_lock_dir)) as device:
    fid.statistics_job(images, Path(snakemake.input.inception), Path(snakemake.output.statistics), str(device.torch))
