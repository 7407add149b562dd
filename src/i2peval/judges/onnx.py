"""The onnxruntime sessions of the NudeNet detectors: on the GPU when the job has one and
onnxruntime can use it, and a warning in the job's log when it has one and cannot.

onnxruntime's CPU build (what nudenet depends on) has no CUDA provider; its CUDA build,
onnxruntime-gpu, is the same Python package (`make cuda`, or the classify environment's
post-deploy script, puts it in place). A CUDA provider whose libraries fail to load is
dropped by onnxruntime itself: the session's providers say what it really runs on.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnxruntime

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def detector_session(path: Path, gpu: int | None) -> onnxruntime.InferenceSession:
    """An inference session of the ONNX graph at `path` on the job's GPU (`gpu`, its index)
    where there is one and onnxruntime can use it, else on the CPU."""
    import onnxruntime

    wanted = gpu is not None and CUDA in onnxruntime.get_available_providers()
    if wanted:
        # CUDA's and cuDNN's libraries from the nvidia wheels torch brings: onnxruntime does
        # not find them on its own, and torch loads only some of them.
        onnxruntime.preload_dlls()
    providers = [(CUDA, {"device_id": gpu}), CPU] if wanted else [CPU]
    session = onnxruntime.InferenceSession(str(path), providers=providers)
    log.info("%s runs on %s", Path(path).name, ", ".join(session.get_providers()))
    if gpu is not None and CUDA not in session.get_providers():
        why = "its CUDA provider did not load" if wanted else f"onnxruntime {onnxruntime.__version__} has none"
        log.warning(
            "%s runs on the CPU although the job has a GPU (%s); for onnxruntime's CUDA build, run `make cuda` "
            "(the classify conda environment's post-deploy script installs it too)",
            Path(path).name,
            why,
        )
    return session
