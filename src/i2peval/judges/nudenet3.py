"""NudeNet 3.4 scores: the highest detection score of each of its 18 labels per image.

The detector is the ``320n.onnx`` bundled in the nudenet wheel. Images go in as PNG
bytes, which NudeNet decodes to BGR itself (an RGB array would change the scores).
NudeNet drops detections below 0.2 before non-maximum suppression, so a label it did
not detect at 0.2 or more scores 0 here.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime

from i2peval.schemas import NUDENET_LABELS


class NudeNetScorer:
    """Max score per NudeNet label for an image, on CUDA when onnxruntime offers it."""

    def __init__(self, use_cuda: bool = False):
        import nudenet

        self.detector = nudenet.NudeDetector()
        if use_cuda and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            # NudeDetector ignores its providers= argument, so the session is rebuilt here.
            self.detector.onnx_session = onnxruntime.InferenceSession(
                Path(nudenet.__file__).parent / "320n.onnx",
                providers=["CUDAExecutionProvider", "CPUExecutionProvider"],
            )

    def scores(self, png: bytes) -> dict[str, float]:
        """{label: highest score among its detections, 0.0 if none}."""
        best = dict.fromkeys(NUDENET_LABELS, 0.0)
        for detection in self.detector.detect(png):
            best[detection["class"]] = max(best[detection["class"]], detection["score"])
        return best
