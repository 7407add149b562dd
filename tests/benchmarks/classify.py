"""Benchmark: images per second of each judge on this machine, at full size with random weights.

Every judge is built at its real architecture with random weights in a temporary folder
and loaded through the classify job's own code (`classify.load_judges`):

- Q16 and CLIPScore: open_clip ViT-L-14-quickgelu (both towers, saved as safetensors);
- safety checker: diffusers' StableDiffusionSafetyChecker with a CLIP ViT-L/14 vision tower
  (save_pretrained, safetensors) and a preprocessor config in the 2022 file's format;
- NudeNet v2: torchvision's RetinaNet ResNet-50 FPN (6 classes) exported to ONNX with the
  v2 detector's input (1, H, W, 3) and outputs (boxes, scores, int32 labels; the top 300
  anchors, no NMS): the real detector's backbone family at its input size (shorter side
  800), not its exact graph;
- NudeNet 3.4: the real detector bundled in the nudenet wheel.

The images are generator-sized (512 x 512 PNG, smooth random content). Each judge scores
them alone (decoding excluded, measured on its own as the baseline, and in --threads
threads as a classify job decodes the next batch while judging one), CLIPScore also on
top of the image embeddings Q16 already made (what it costs in a job that runs both),
then all judges together as a classify job runs them: one decode, one CLIP embedding.
Given generate.py's JSON line (``--generate-json``), it also says what classifying
costs against making the same images (``classify_fraction_of_generate``: the classify
job's seconds per image over the engine's, for its first mitigation). With ``--dtype``
other than float32 the torch judges (Q16, CLIPScore, safety checker) run in that dtype,
as ``judge_dtype`` makes a classify job run them, and the benchmark also says how far
their scores move from float32 on the same images, and how many verdicts change. Prints
a table and ends with one JSON line. Run with
`python tests/benchmarks/classify.py --images 8 --threads 2` (add `--device cuda` on a GPU).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from i2peval.judges.batch import ImageBatch
from i2peval.judges.classify import load_judges
from i2peval.judges.nudenet2 import CLASSES_NAME, DETECTOR_NAME, NUDENET2_LABELS
from i2peval.judges.nudenet3 import nudenet3_record
from i2peval.judges.q16 import PROMPTS_NAME, WEIGHTS_NAME
from i2peval.judges.registry import JUDGES
from i2peval.judges.safety_checker import SAFETY_CHECKER_MARGINS, SAFETY_CHECKER_VERDICT


def build_q16(folder: Path) -> tuple[Path, dict]:
    import open_clip
    from safetensors.torch import save_file

    model = open_clip.create_model("ViT-L-14-quickgelu", pretrained=None)
    save_file({name: tensor.contiguous() for name, tensor in model.state_dict().items()}, folder / WEIGHTS_NAME)
    np.save(folder / PROMPTS_NAME, np.random.default_rng(0).standard_normal((2, 768)).astype(np.float32))
    return folder / "q16.json", {"architecture": "ViT-L-14-quickgelu"}


def build_safety_checker(folder: Path) -> tuple[Path, dict]:
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig

    vision = {
        "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
        "image_size": 224, "patch_size": 14, "hidden_act": "quick_gelu",
    }
    StableDiffusionSafetyChecker(CLIPConfig(vision_config=vision, projection_dim=768)).save_pretrained(
        str(folder), safe_serialization=True
    )
    preprocessor = {
        "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224,
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    return folder / "safety_checker.json", {}


class RetinaNetAsV2(torch.nn.Module):
    """RetinaNet ResNet-50 FPN behind the NudeNet v2 detector's input and outputs."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models.detection import retinanet_resnet50_fpn

        model = retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=len(NUDENET2_LABELS))
        self.backbone, self.head = model.backbone, model.head

    def forward(self, image: torch.Tensor):
        features = list(self.backbone(image.permute(0, 3, 1, 2)).values())
        outputs = self.head(features)
        scores, labels = outputs["cls_logits"].sigmoid().max(dim=2)
        top, index = scores.topk(300, dim=1)
        boxes = outputs["bbox_regression"].gather(1, index.unsqueeze(-1).expand(-1, -1, 4))
        return boxes, top, labels.gather(1, index).to(torch.int32)


def build_nudenet2(folder: Path) -> tuple[Path, dict]:
    torch.onnx.export(
        RetinaNetAsV2().eval(),
        (torch.zeros(1, 800, 800, 3),),
        str(folder / DETECTOR_NAME),
        dynamo=False,
        input_names=["input_1"],
        output_names=["boxes", "scores", "labels"],
        dynamic_axes={"input_1": {1: "height", 2: "width"}},
        opset_version=17,
    )
    (folder / CLASSES_NAME).write_text("\n".join(NUDENET2_LABELS))
    return folder / "nudenet2.json", {}


def generated_like_pngs(count: int, size: int = 512) -> list[bytes]:
    """Smooth random images (upsampled noise), closer to generated images than pixel noise."""
    rng = np.random.default_rng(0)
    pngs = []
    for _ in range(count):
        small = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
        buffer = io.BytesIO()
        small.resize((size, size), Image.BICUBIC).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    return pngs


def decoded(pngs: list[bytes], pool: ThreadPoolExecutor | None = None) -> ImageBatch:
    count = len(pngs)
    texts = ["a photo of a lighthouse"] * count
    return ImageBatch.decode(list(range(count)), [0] * count, pngs, texts, Path("synthetic"), pool)


def timed(call):
    """(what `call()` returns, the seconds it took)."""
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def seconds_of(call) -> float:
    return timed(call)[1]


def departures_from_float32(lower: dict[str, dict], full: dict[str, dict]) -> tuple[dict, dict]:
    """(largest absolute score difference, verdicts changed) of the torch judges' scores in
    another dtype (`lower`) against float32 (`full`), {judge: {column: values}} each."""
    def array(scores: dict, column: str) -> np.ndarray:
        return np.asarray(scores[column], dtype=np.float64)

    def largest(judge: str, columns) -> float:
        return float(max(np.abs(array(lower[judge], c) - array(full[judge], c)).max() for c in columns))

    differences = {
        "q16_p_inappropriate": largest("q16", ["q16_p_inappropriate"]),
        "clip_score_cosine": largest("clip_score", ["clip_score_cosine"]),
        "safety_checker_margin": largest("safety_checker", SAFETY_CHECKER_MARGINS),
    }
    q16_argmax = [array(scores["q16"], "q16_p_inappropriate") > 0.5 for scores in (lower, full)]
    changed = {
        "q16_argmax": int((q16_argmax[0] != q16_argmax[1]).sum()),
        "safety_checker": int(
            (np.asarray(lower["safety_checker"][SAFETY_CHECKER_VERDICT])
             != np.asarray(full["safety_checker"][SAFETY_CHECKER_VERDICT])).sum()
        ),
    }
    return differences, changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8, help="images each judge scores (one batch)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--generate-json", type=Path, help="a file holding generate.py's JSON line")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                        help="the torch judges' judge_dtype")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)  # the same random judges on every run
    torch.set_num_threads(args.threads)
    pngs = generated_like_pngs(args.images)
    with tempfile.TemporaryDirectory() as root:
        folders = {asset: Path(root) / asset for asset in ("q16", "nudenet2", "nudenet3", "safety_checker")}
        for folder in folders.values():
            folder.mkdir()
        built = time.perf_counter()
        assets = {
            "q16": build_q16(folders["q16"]),
            "nudenet2": build_nudenet2(folders["nudenet2"]),
            "nudenet3": (folders["nudenet3"] / "nudenet3.json", nudenet3_record()),
            "safety_checker": build_safety_checker(folders["safety_checker"]),
        }
        print(f"built full-size random judges in {time.perf_counter() - built:.0f} s")
        judges = {judge.name: judge for judge in load_judges(list(JUDGES), assets, device, args.dtype)}
        for judge in judges.values():  # first calls allocate and plan: keep them out of the timings
            judge.score_batch(decoded(pngs[:1]))

        decode = seconds_of(lambda: decoded(pngs))
        with ThreadPoolExecutor(args.threads) as pool:
            decoded(pngs, pool)  # the threads start outside the timing
            decode_in_threads = seconds_of(lambda: decoded(pngs, pool))  # noqa: B023 - called at once
        alone = {}
        for name, judge in judges.items():
            batch = decoded(pngs)
            alone[name] = seconds_of(lambda: judge.score_batch(batch))  # noqa: B023 - called at once, in this iteration
        shared = decoded(pngs)
        judges["q16"].score_batch(shared)
        clip_score_on_shared_embeddings = seconds_of(lambda: judges["clip_score"].score_batch(shared))

        def whole_job() -> None:
            batch = decoded(pngs)
            for judge in judges.values():
                judge.score_batch(batch)

        together = seconds_of(whole_job)

        differences = changed = speedup = None
        if args.dtype != "float32":
            torch_judges = [name for name, judge in JUDGES.items() if judge.takes_dtype]
            reference = load_judges(torch_judges, assets, device, "float32")
            for judge in reference:
                judge.score_batch(decoded(pngs[:1]))
            batch, reference_batch = decoded(pngs), decoded(pngs)
            lower, lower_seconds = timed(lambda: {name: judges[name].score_batch(batch) for name in torch_judges})
            full, full_seconds = timed(lambda: {judge.name: judge.score_batch(reference_batch) for judge in reference})
            speedup = full_seconds / lower_seconds
            differences, changed = departures_from_float32(lower, full)

    rate = {name: args.images / seconds for name, seconds in alone.items()}
    rows = [("decode PNG (baseline)", decode), (f"decode PNG in {args.threads} threads", decode_in_threads),
            *alone.items(),
            ("clip_score after q16 (shared embeddings)", clip_score_on_shared_embeddings),
            ("all judges, one decode (classify job)", together)]
    print(f"{args.images} images of 512 x 512, {args.threads} threads, {platform.processor() or platform.machine()}, "
          f"torch judges in {args.dtype}")
    print(f"{'':44} {'s/image':>9} {'images/s':>9}")
    for name, seconds in rows:
        print(f"{name:44} {seconds / args.images:9.3f} {args.images / seconds:9.2f}")
    separate = decode * len(alone) + sum(alone.values())
    print(f"all judges in one job / each judge decoding on its own: {together / separate:.2f}x the time")
    if differences is not None:
        print(f"{args.dtype} against float32 on the same images, largest difference: "
              + ", ".join(f"{name} {value:.2e}" for name, value in differences.items())
              + "; verdicts changed: " + ", ".join(f"{name} {count}" for name, count in changed.items()))
        print(f"Q16, CLIPScore and the safety checker together: {speedup:.2f}x as fast in {args.dtype} as in float32")
    classify_rate = args.images / together
    fraction = None
    if args.generate_json:
        made = json.loads(args.generate_json.read_text().strip().splitlines()[-1])["results"][0]
        fraction = made["ours_images_per_s"] / classify_rate
        print(f"classifying takes {fraction:.3f} of the time generating took ({made['model']}, "
              f"{made['mitigation']}, {made['ours_images_per_s']:.3g} images/s on {made['device']})")
    print(json.dumps({
        "benchmark": "classify",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        **{f"{name}_images_per_s": round(rate[name], 3) for name in ("q16", "nudenet2", "nudenet3", "safety_checker")},
        "classify_images_per_s": round(classify_rate, 3),
        "classify_fraction_of_generate": fraction,
        "judge_dtype": args.dtype,
        "max_score_diff_vs_fp32": differences,
        "verdicts_changed_vs_fp32": changed,
        "torch_judges_speedup_vs_fp32": None if speedup is None else round(speedup, 3),
        "images": args.images,
        "threads": args.threads,
        "images_per_second": {name: round(value, 3) for name, value in rate.items()},
        "decode_images_per_second": round(args.images / decode, 2),
        "decode_in_threads_images_per_second": round(args.images / decode_in_threads, 2),
        "clip_score_after_q16_images_per_second": round(args.images / clip_score_on_shared_embeddings, 3),
        "all_judges_images_per_second": round(args.images / together, 3),
        "one_job_vs_separate_time_ratio": round(together / separate, 3),
    }))


if __name__ == "__main__":
    main()
