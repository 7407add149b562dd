"""The classify job: every configured judge on one job's images, raw scores, resumable."""

import io

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

import i2peval.judges.classify
import i2peval.judges.nudenet3
from i2peval.generation.imagestore import DamagedImage
from i2peval.hub import ChecksumError
from i2peval.judges import q16
from i2peval.judges.assets import read_asset_record, record_path
from i2peval.judges.batch import ImageBatch
from i2peval.judges.classify import JudgeFailure, ScoredJob, run_classify_job
from i2peval.judges.clip import ClipModel
from i2peval.judges.nudenet2 import build_demo_nudenet2_assets
from i2peval.judges.nudenet3 import (
    NUDENET3_LABELS,
    NudeNetScorer,
    bundled_model_path,
    nudenet3_column,
    nudenet3_record,
)
from i2peval.judges.onnx import detector_session
from i2peval.judges.registry import JUDGE_COLUMNS, JUDGES, SCORES
from i2peval.judges.safety_checker import SAFETY_CHECKER_VERDICT, SafetyChecker, build_demo_safety_checker_assets
from i2peval.parts import RowsMismatch
from i2peval.schemas import IMAGES, MANIFEST, read_table, write_table
from i2peval.storage import write_json

CPU = torch.device("cpu")
TEXTS = {0: "a red lighthouse", 1: "a navy “ship” at night", 2: "word " * 100}  # 2: over 77 CLIP tokens


def png_of(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def synthetic_images():
    """{(prompt_id, image_index): PIL image}: solid colours, noise, and modes/sizes a generator never makes."""
    rng = np.random.default_rng(0)
    return {
        (0, 0): Image.new("RGB", (64, 64), "red"),
        (0, 1): Image.new("RGB", (64, 64), "navy"),
        (1, 0): Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)),
        (2, 0): Image.fromarray(rng.integers(0, 256, (50, 80), dtype=np.uint8), mode="L"),
        (2, 1): Image.fromarray(rng.integers(0, 256, (96, 64, 4), dtype=np.uint8), mode="RGBA"),
    }


def write_manifest(path, keys, texts=TEXTS, prompt_set="i2p"):
    rows = []
    for prompt_id, image_index in keys:
        row = dict.fromkeys(MANIFEST.names)
        row.update(model="tiny", mitigation="none", prompt_id=prompt_id, image_index=image_index, text=texts[prompt_id])
        row.update(prompt_set=prompt_set)
        rows.append(row)
    write_table(pa.Table.from_pylist(rows, schema=MANIFEST), path, MANIFEST)
    return path


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """Demo weights of every judge with their records, an image container of the synthetic
    images and its manifest."""
    root = tmp_path_factory.mktemp("classify")
    folders = {asset: root / asset for asset in ("q16", "nudenet2", "nudenet3", "safety_checker")}
    for folder in folders.values():
        folder.mkdir()
    weights, prompts = q16.q16_asset_paths(record_path("q16", folders["q16"]))
    records = {
        "q16": q16.build_demo_q16_assets(3, weights, prompts),
        "nudenet2": build_demo_nudenet2_assets(3, folders["nudenet2"]),
        "nudenet3": nudenet3_record(),
        "safety_checker": build_demo_safety_checker_assets(3, folders["safety_checker"]),
    }
    for asset, record in records.items():
        write_json(record_path(asset, folders[asset]), record)
    images = synthetic_images()
    keys = sorted(images)
    table = pa.table(
        {
            "prompt_id": [prompt_id for prompt_id, _ in keys],
            "image_index": [index for _, index in keys],
            "png": [png_of(images[key]) for key in keys],
        }
    )
    images_path = root / "images.parquet"
    write_table(table, images_path, IMAGES)
    return {
        "root": root,
        "records": {asset: (record_path(asset, folder), records[asset]) for asset, folder in folders.items()},
        "weights": weights,
        "prompts": prompts,
        "images": images_path,
        "manifest": write_manifest(root / "manifest.parquet", keys),
        "keys": keys,
    }


def classify(assets, scores_name, batch_size=2, judges=JUDGES, records=None, **changes):
    scores_path = assets["root"] / scores_name
    arguments = {
        "images_path": assets["images"],
        "manifest_path": assets["manifest"],
        "expected": assets["keys"],
        "job": ScoredJob("i2p", "tiny", "sega-strong"),
        "judges": list(judges),
        "assets": records or assets["records"],
        "scores_path": scores_path,
        "device": "cpu",
        "batch_size": batch_size,
        "lock_dir": assets["root"] / "locks",
    }
    count = run_classify_job(**{**arguments, **changes})
    return count, scores_path


@pytest.fixture(scope="module")
def scores(assets):
    count, scores_path = classify(assets, "scores.parquet")
    return count, read_table(scores_path, SCORES)


def test_classify_job_writes_one_row_per_image_with_every_judges_raw_scores(assets, scores):
    count, table = scores
    assert count == table.num_rows == len(assets["keys"])
    assert table.schema.names == SCORES.names
    assert list(zip(table["prompt_id"].to_pylist(), table["image_index"].to_pylist())) == assets["keys"]
    assert set(table["model"].to_pylist()) == {"tiny"}
    assert set(table["mitigation"].to_pylist()) == {"sega-strong"}
    for judge, columns in JUDGE_COLUMNS.items():
        for name in columns:
            values = table[name].to_pylist()
            assert None not in values, name
            if name == SAFETY_CHECKER_VERDICT:
                assert set(values) <= {True, False}
            elif judge == "clip_score":
                assert all(-1 <= value <= 1 for value in values), name
            elif judge == "safety_checker":  # cosine minus a threshold in [0, 1]
                assert all(-2 <= value <= 1 for value in values), name
            else:
                assert all(0 <= value <= 1 for value in values), name
    q16_scores = np.array(table["q16_p_inappropriate"].to_pylist())
    assert len(set(q16_scores.round(6))) > 1  # distinct images, distinct probabilities


def test_judges_not_configured_leave_their_columns_null(assets, scores):
    _, path = classify(assets, "q16-and-nudenet2.parquet", judges=["nudenet2", "q16"])
    table = read_table(path, SCORES)
    for judge, columns in JUDGE_COLUMNS.items():
        for name in columns:
            if judge in ("q16", "nudenet2"):
                assert table[name].equals(scores[1][name]), name
            else:
                assert table[name].null_count == table.num_rows, name


def test_each_image_is_decoded_once_and_each_judges_weights_load_once(assets, monkeypatch):
    decoded, loaded = [], []
    real_decode = ImageBatch.decode.__func__
    monkeypatch.setattr(
        ImageBatch, "decode", classmethod(lambda cls, *args: decoded.append(len(args[2])) or real_decode(cls, *args))
    )
    real_clip_init = ClipModel.__init__
    monkeypatch.setattr(
        ClipModel, "__init__", lambda self, *a, **k: loaded.append("clip") or real_clip_init(self, *a, **k)
    )
    real_nudenet3_init = NudeNetScorer.__init__
    monkeypatch.setattr(
        NudeNetScorer, "__init__", lambda self, *a, **k: loaded.append("nudenet3") or real_nudenet3_init(self, *a, **k)
    )
    classify(assets, "counted.parquet", batch_size=2)
    assert decoded == [2, 2, 1]
    assert sorted(loaded) == ["clip", "nudenet3"]  # Q16 and CLIPScore share one CLIP


def test_classify_job_q16_scores_are_those_of_the_classifier_on_each_image(assets, scores):
    _, table = scores
    clip = ClipModel(q16.DEMO_ARCHITECTURE, assets["weights"], CPU)
    classifier = q16.Q16Classifier(clip, assets["prompts"])
    images = synthetic_images()
    batch = ImageBatch(
        [key[0] for key in assets["keys"]], [key[1] for key in assets["keys"]],
        [images[key].convert("RGB") for key in assets["keys"]], [""] * len(assets["keys"]),
    )
    np.testing.assert_allclose(table["q16_p_inappropriate"].to_numpy(), classifier.probabilities(batch), atol=1e-5)


def open_clip_model(assets):
    import open_clip

    q16.register_demo_architecture()
    model, _, preprocess = open_clip.create_model_and_transforms(
        q16.DEMO_ARCHITECTURE, pretrained=str(assets["weights"])
    )
    return model.eval(), preprocess


def test_q16_probabilities_follow_the_q16_formula(assets, scores):
    model, preprocess = open_clip_model(assets)
    images = synthetic_images()
    with torch.no_grad():
        embeddings = model.encode_image(torch.stack([preprocess(images[key].convert("RGB")) for key in assets["keys"]]))
    prompts = torch.from_numpy(np.load(assets["prompts"]).astype(np.float32))
    normalize = torch.nn.functional.normalize
    expected = torch.softmax(100 * normalize(embeddings, dim=-1) @ normalize(prompts, dim=-1).T, dim=-1)[:, 1]
    np.testing.assert_allclose(scores[1]["q16_p_inappropriate"].to_numpy(), expected.numpy(), rtol=1e-4, atol=1e-6)


def test_clip_score_is_the_cosine_of_each_image_and_the_text_its_manifest_gives(assets, scores):
    import open_clip

    model, preprocess = open_clip_model(assets)
    tokenizer = open_clip.get_tokenizer(q16.DEMO_ARCHITECTURE)
    images = synthetic_images()
    with torch.no_grad():
        image_embeddings = model.encode_image(
            torch.stack([preprocess(images[key].convert("RGB")) for key in assets["keys"]]), normalize=True
        )
        text_embeddings = model.encode_text(
            tokenizer([TEXTS[prompt_id] for prompt_id, _ in assets["keys"]]), normalize=True
        )
    expected = (image_embeddings * text_embeddings).sum(dim=-1).numpy()
    np.testing.assert_allclose(scores[1]["clip_score_cosine"].to_numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("shape", [(3, 768), (2, 512), (768, 2), (768,)])
def test_prompts_of_the_wrong_shape_are_refused_naming_the_file(assets, tmp_path, shape):
    wrong = tmp_path / "wrong-shape-prompts.npy"
    np.save(wrong, np.zeros(shape, dtype=np.float16))
    with pytest.raises(ValueError, match="wrong-shape-prompts.npy"):
        q16.Q16Classifier(ClipModel(q16.DEMO_ARCHITECTURE, assets["weights"], CPU), wrong)


def test_schema_nudenet3_labels_are_nudenets_own_in_its_order():
    import nudenet.nudenet

    assert tuple(vars(nudenet.nudenet)["__labels"]) == NUDENET3_LABELS


def test_nudenet3_scores_from_the_shared_decode_are_those_of_nudenets_own_decoding(assets):
    scorer = NudeNetScorer()
    pngs = read_table(assets["images"], IMAGES)["png"].to_pylist()
    batch = ImageBatch.decode(*zip(*assets["keys"]), pngs, [""] * len(pngs), assets["images"])
    for png, bgr, mode in zip(pngs, batch.bgr(), [Image.open(io.BytesIO(png)).mode for png in pngs]):
        if mode == "RGB":  # what generators write; NudeNet decodes grey and RGBA files its own way
            assert scorer.scores(bgr) == scorer.scores(png)


def test_nudenet3_scorer_keeps_the_highest_score_of_each_label(monkeypatch):
    scorer = NudeNetScorer()
    detections = [
        {"class": "FACE_FEMALE", "score": 0.31, "box": [0, 0, 10, 10]},
        {"class": "BELLY_EXPOSED", "score": 0.25, "box": [5, 5, 10, 10]},
        {"class": "FACE_FEMALE", "score": 0.87, "box": [20, 20, 10, 10]},
        {"class": "FACE_FEMALE", "score": 0.52, "box": [40, 40, 10, 10]},
    ]
    image = np.zeros((4, 4, 3), np.uint8)
    seen = []
    monkeypatch.setattr(scorer.detector, "detect", lambda bgr: seen.append(bgr) or detections)
    scores = scorer.scores(image)
    assert seen == [image]
    assert set(scores) == set(NUDENET3_LABELS)
    assert scores["FACE_FEMALE"] == 0.87
    assert scores["BELLY_EXPOSED"] == 0.25
    assert all(scores[label] == 0.0 for label in NUDENET3_LABELS if label not in ("FACE_FEMALE", "BELLY_EXPOSED"))


def test_classify_job_puts_each_label_score_in_its_column_for_its_image(assets, monkeypatch):
    class FakeScorer(NudeNetScorer):
        def __init__(self, gpu=None):
            self.seen = 0

        def scores(self, bgr):
            self.seen += 1
            return {label: (number + 1) / 100 + (self.seen - 1) / 1000 for number, label in enumerate(NUDENET3_LABELS)}

    monkeypatch.setattr(i2peval.judges.nudenet3, "NudeNetScorer", FakeScorer)
    _, scores_path = classify(assets, "fake-nudenet-scores.parquet", batch_size=3, judges=["nudenet3"])
    table = read_table(scores_path, SCORES)
    for number, label in enumerate(NUDENET3_LABELS):
        expected = [(number + 1) / 100 + image / 1000 for image in range(len(assets["keys"]))]
        np.testing.assert_allclose(table[nudenet3_column(label)].to_numpy(), expected, rtol=1e-6)


def test_a_container_short_of_its_images_is_refused_naming_it(assets):
    with pytest.raises(RowsMismatch, match=r"images.parquet: holds 5 images, expected 6; missing 1 images: \(3, 0\)"):
        classify(assets, "short.parquet", expected=assets["keys"] + [(3, 0)])
    assert not (assets["root"] / "short.parquet").exists()


def test_a_truncated_image_fails_the_job_naming_container_prompt_and_index(assets, tmp_path):
    table = read_table(assets["images"], IMAGES)
    pngs = table["png"].to_pylist()
    pngs[2] = pngs[2][: len(pngs[2]) // 2]
    damaged = tmp_path / "damaged.parquet"
    write_table(table.set_column(2, "png", pa.array(pngs, pa.binary())), damaged, IMAGES)
    prompt_id, image_index = assets["keys"][2]
    named = rf"damaged.parquet: image {image_index} of prompt {prompt_id} cannot be decoded \(.*\): delete"
    with pytest.raises(DamagedImage, match=named):
        classify(assets, "damaged-scores.parquet", images_path=damaged)


def test_a_manifest_for_other_images_is_refused_naming_it(assets, tmp_path):
    manifest = write_manifest(tmp_path / "other-manifest.parquet", assets["keys"][:-1])
    with pytest.raises(RowsMismatch, match=r"other-manifest.parquet: holds 4 images, expected 5"):
        classify(assets, "other.parquet", manifest_path=manifest)
    # the same prompt ids and texts in another set's manifest (the ESD copy's subsets share case numbers)
    manifest = write_manifest(tmp_path / "set-manifest.parquet", assets["keys"], prompt_set="p4d-nudity")
    with pytest.raises(RowsMismatch, match=r"set-manifest.parquet: its images are of the prompt set \['p4d-nudity'\]"):
        classify(assets, "other-set.parquet", manifest_path=manifest)


@pytest.mark.parametrize("asset", ["q16", "nudenet2", "safety_checker"])
def test_weights_that_differ_from_their_record_are_refused_before_loading(assets, tmp_path, asset):
    records = dict(assets["records"])
    path, record = records[asset]
    other = {**record, "files": dict.fromkeys(record.get("files", {}), "0" * 64)}
    if asset == "q16":
        other = {**record, "weights_sha256": "0" * 64}
    records[asset] = (path, other)
    with pytest.raises(ChecksumError, match=f"does not match the sha256 recorded in .*{asset}.json; delete"):
        classify(assets, f"{asset}-tampered.parquet", records=records)


def test_a_nudenet3_other_than_the_recorded_one_is_refused(assets):
    records = dict(assets["records"])
    path, record = records["nudenet3"]
    records["nudenet3"] = (path, {**record, "version": "3.4.0", "files": {"320n.onnx": "0" * 64}})
    with pytest.raises(
        ChecksumError, match=r"the installed nudenet is not the one the scores were recorded with \(3.4.0\)"
    ):
        classify(assets, "other-nudenet.parquet", records=records, judges=["nudenet3"])


def test_records_written_by_the_asset_jobs_read_back(assets):
    for asset, (path, record) in assets["records"].items():
        assert read_asset_record(asset, path) == record


def test_a_judge_that_returns_nan_fails_the_job_naming_the_image(assets, monkeypatch):
    class NanScorer(NudeNetScorer):
        def __init__(self, gpu=None):
            pass

        def scores(self, bgr):
            return {label: float("nan") if label == "FACE_FEMALE" else 0.0 for label in NUDENET3_LABELS}

    monkeypatch.setattr(i2peval.judges.nudenet3, "NudeNetScorer", NanScorer)
    with pytest.raises(JudgeFailure, match=r"images.parquet: image \(0, 0\) got nudenet3_FACE_FEMALE = nan"):
        classify(assets, "nan-scores.parquet", judges=["nudenet3"])


def test_decoding_in_threads_while_judging_gives_the_same_scores(assets, scores):
    # batches of 2 of 5 images: the next batch decodes in 3 threads while one is judged
    _, path = classify(assets, "threaded-scores.parquet", threads=3)
    assert read_table(path, SCORES).equals(scores[1])


def test_an_interrupted_job_resumes_without_rescoring_and_writes_the_same_scores(assets, scores, monkeypatch):
    real_score_batch = i2peval.judges.classify.score_batch
    calls = []

    def dies_on_second_batch(batch, *args):
        calls.append(list(batch.prompt_ids))
        if len(calls) == 2:
            raise RuntimeError("job killed")
        return real_score_batch(batch, *args)

    monkeypatch.setattr(i2peval.judges.classify, "score_batch", dies_on_second_batch)
    with pytest.raises(RuntimeError, match="job killed"):
        classify(assets, "resumed-scores.parquet")
    rescored = []
    monkeypatch.setattr(
        i2peval.judges.classify, "score_batch",
        lambda batch, *args: rescored.append(list(batch.prompt_ids)) or real_score_batch(batch, *args),
    )
    count, path = classify(assets, "resumed-scores.parquet")
    assert rescored == calls[1:] + [[2]]  # batches 2 and 3 of 3 (batch size 2, 5 images)
    assert count == scores[0]
    assert read_table(path, SCORES).equals(scores[1])


def test_scores_of_a_batch_are_those_of_each_image_scored_alone(assets, scores):
    _, path = classify(assets, "one-at-a-time.parquet", batch_size=1)
    alone, batched = read_table(path, SCORES), scores[1]
    for name in SCORES.names:
        if pa.types.is_floating(SCORES.field(name).type):
            np.testing.assert_allclose(alone[name].to_numpy(), batched[name].to_numpy(), atol=1e-6, err_msg=name)
        else:
            assert alone[name].equals(batched[name]), name


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_judges_in_a_lower_precision_move_the_clip_scores_a_little(assets, scores, dtype):
    _, path = classify(assets, f"scores-{dtype}.parquet", dtype=dtype)
    lower, full = read_table(path, SCORES), scores[1]
    for judge in ("q16", "clip_score", "safety_checker"):
        for name in JUDGES[judge].score_columns:
            if name == SAFETY_CHECKER_VERDICT:
                continue
            difference = np.abs(lower[name].to_numpy() - full[name].to_numpy())
            assert 0 < difference.max() < 0.05, (name, difference)


def test_the_clip_towers_compute_in_the_judge_dtype_and_the_scoring_arithmetic_in_float32(assets):
    clip = ClipModel(assets["records"]["q16"][1]["architecture"], assets["weights"], CPU, "bfloat16")
    visual = clip.model.visual
    assert visual.conv1.weight.dtype == visual.proj.dtype == torch.bfloat16
    assert visual.ln_post.weight.dtype == torch.float32  # open_clip's mixed precision: norms in float32
    batch = ImageBatch([0], [0], [synthetic_images()[(0, 0)]], ["a red lighthouse"])
    assert clip.image_embeddings(batch).dtype == torch.float32
    checker = SafetyChecker(assets["records"]["safety_checker"][0].parent, CPU, "bfloat16").model
    assert checker.vision_model.embeddings.patch_embedding.weight.dtype == torch.bfloat16
    assert checker.concept_embeds.dtype == checker.concept_embeds_weights.dtype == torch.float32


def test_a_detector_on_a_job_with_a_gpu_runs_there_when_onnxruntime_can(monkeypatch, caplog):
    import onnxruntime

    opened = []

    class Session:
        def __init__(self, path, providers):
            opened.append(providers)

        def get_providers(self):
            return [provider if isinstance(provider, str) else provider[0] for provider in opened[-1]]

    available = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: available)
    monkeypatch.setattr(onnxruntime, "preload_dlls", lambda: None)
    monkeypatch.setattr(onnxruntime, "InferenceSession", Session)
    with caplog.at_level("WARNING"):
        detector_session(bundled_model_path(), gpu=1)
    assert opened == [[("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]]
    assert not caplog.text


def test_a_detector_on_a_job_with_a_gpu_onnxruntime_cannot_use_runs_on_the_cpu_and_says_so(monkeypatch, caplog):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with caplog.at_level("WARNING"):
        session = detector_session(bundled_model_path(), gpu=0)
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert "320n.onnx runs on the CPU although the job has a GPU" in caplog.text
    assert "make cuda" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        detector_session(bundled_model_path(), gpu=None)
    assert not caplog.text


def test_nudenet3_opens_one_session_on_the_jobs_device_set_up_as_nudenets_own(monkeypatch):
    import nudenet
    import onnxruntime

    real_session = onnxruntime.InferenceSession
    opened = []
    monkeypatch.setattr(
        onnxruntime, "InferenceSession", lambda path, **kwargs: opened.append(kwargs) or real_session(path, **kwargs)
    )
    detector = NudeNetScorer(gpu=None).detector
    assert opened == [{"providers": ["CPUExecutionProvider"]}]
    own = nudenet.NudeDetector()
    assert vars(detector).keys() == vars(own).keys()
    for name in ("input_width", "input_height", "input_name"):
        assert getattr(detector, name) == getattr(own, name), name
