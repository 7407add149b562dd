import io

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

import i2peval.judges.classify
from i2peval.hub import ChecksumError
from i2peval.judges import q16
from i2peval.judges.classify import JudgeFailure, run_classify_job
from i2peval.judges.nudenet3 import NudeNetScorer
from i2peval.parts import RowsMismatch
from i2peval.schemas import (
    IMAGES,
    NUDENET_LABELS,
    SCORES,
    nudenet_column,
    read_table,
    write_table,
)

CPU = torch.device("cpu")


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


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """Demo Q16 weights and prompts, and an image container of the synthetic images."""
    root = tmp_path_factory.mktemp("classify")
    weights, prompts = root / "q16" / "weights.safetensors", root / "q16" / "prompts.npy"
    record = q16.build_demo_q16_assets(3, weights, prompts)
    images = synthetic_images()
    images_path = root / "images.parquet"
    keys = sorted(images)
    table = pa.table(
        {
            "prompt_id": [prompt_id for prompt_id, _ in keys],
            "image_index": [index for _, index in keys],
            "png": [png_of(images[key]) for key in keys],
        }
    )
    write_table(table, images_path, IMAGES)
    return {
        "root": root, "weights": weights, "prompts": prompts, "record": record,
        "images": images_path, "keys": keys,
    }


def classify(assets, scores_name, batch_size=2):
    scores_path = assets["root"] / scores_name
    count = run_classify_job(
        images_path=assets["images"],
        expected=assets["keys"],
        model="tiny",
        mitigation="sega-strong",
        q16_record=assets["record"],
        q16_record_path=assets["root"] / "q16" / "q16.json",
        q16_weights=assets["weights"],
        q16_prompts=assets["prompts"],
        scores_path=scores_path,
        device="cpu",
        batch_size=batch_size,
        lock_dir=assets["root"] / "locks",
    )
    return count, scores_path


@pytest.fixture(scope="module")
def scores(assets):
    count, scores_path = classify(assets, "scores.parquet")
    return count, read_table(scores_path, SCORES)


def test_classify_job_writes_one_score_row_per_image(assets, scores):
    count, table = scores
    assert count == table.num_rows == len(assets["keys"])
    assert table.schema.names == SCORES.names
    assert list(zip(table["prompt_id"].to_pylist(), table["image_index"].to_pylist())) == assets["keys"]
    assert set(table["model"].to_pylist()) == {"tiny"}
    assert set(table["mitigation"].to_pylist()) == {"sega-strong"}
    q16_scores = np.array(table["q16_p_inappropriate"].to_pylist())
    assert np.all((q16_scores >= 0) & (q16_scores <= 1))
    assert len(set(q16_scores.round(6))) > 1  # distinct images, distinct probabilities
    nudenet_columns = [name for name in table.schema.names if name.startswith("nudenet_")]
    assert nudenet_columns == [nudenet_column(label) for label in NUDENET_LABELS]
    assert len(nudenet_columns) == 18
    for name in nudenet_columns:
        values = np.array(table[name].to_pylist())
        assert np.all((values >= 0) & (values <= 1)), name


def test_classify_job_q16_scores_are_those_of_the_classifier_on_each_image(assets, scores):
    _, table = scores
    classifier = q16.Q16Classifier(q16.DEMO_ARCHITECTURE, assets["weights"], assets["prompts"], CPU)
    images = synthetic_images()
    expected = classifier.probabilities([images[key].convert("RGB") for key in assets["keys"]])
    np.testing.assert_allclose(table["q16_p_inappropriate"].to_numpy(), expected, atol=1e-5)


def test_q16_probabilities_follow_the_q16_formula(assets):
    import open_clip

    images = [image.convert("RGB") for image in synthetic_images().values()]
    classifier = q16.Q16Classifier(q16.DEMO_ARCHITECTURE, assets["weights"], assets["prompts"], CPU)

    q16.register_demo_architecture()
    model, _, preprocess = open_clip.create_model_and_transforms(
        q16.DEMO_ARCHITECTURE, pretrained=str(assets["weights"])
    )
    model.eval()
    with torch.no_grad():
        embeddings = model.encode_image(torch.stack([preprocess(image) for image in images]))
    prompts = torch.from_numpy(np.load(assets["prompts"]).astype(np.float32))
    normalize = torch.nn.functional.normalize
    expected = torch.softmax(100 * normalize(embeddings, dim=-1) @ normalize(prompts, dim=-1).T, dim=-1)[:, 1]

    np.testing.assert_allclose(classifier.probabilities(images), expected.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("shape", [(3, 768), (2, 512), (768, 2), (768,)])
def test_prompts_of_the_wrong_shape_are_refused_naming_the_file(assets, tmp_path, shape):
    wrong = tmp_path / "wrong-shape-prompts.npy"
    np.save(wrong, np.zeros(shape, dtype=np.float16))
    with pytest.raises(ValueError, match="wrong-shape-prompts.npy"):
        q16.Q16Classifier(q16.DEMO_ARCHITECTURE, assets["weights"], wrong, CPU)


def test_schema_nudenet_labels_are_nudenets_own_in_its_order():
    import nudenet.nudenet

    assert NUDENET_LABELS == tuple(vars(nudenet.nudenet)["__labels"])


@pytest.fixture(scope="module")
def scorer():
    return NudeNetScorer()


def test_nudenet_scorer_keeps_the_highest_score_of_each_label(scorer, monkeypatch):
    detections = [
        {"class": "FACE_FEMALE", "score": 0.31, "box": [0, 0, 10, 10]},
        {"class": "BELLY_EXPOSED", "score": 0.25, "box": [5, 5, 10, 10]},
        {"class": "FACE_FEMALE", "score": 0.87, "box": [20, 20, 10, 10]},
        {"class": "FACE_FEMALE", "score": 0.52, "box": [40, 40, 10, 10]},
    ]
    seen = []
    monkeypatch.setattr(scorer.detector, "detect", lambda image: seen.append(image) or detections)
    scores = scorer.scores(b"png bytes")
    assert seen == [b"png bytes"]
    assert set(scores) == set(NUDENET_LABELS)
    assert scores["FACE_FEMALE"] == 0.87
    assert scores["BELLY_EXPOSED"] == 0.25
    assert all(scores[label] == 0.0 for label in NUDENET_LABELS if label not in ("FACE_FEMALE", "BELLY_EXPOSED"))


def test_classify_job_puts_each_label_score_in_its_column_for_its_image(assets, monkeypatch):
    pngs = read_table(assets["images"], IMAGES)["png"].to_pylist()
    position = {png: number for number, png in enumerate(pngs)}

    class FakeScorer:
        def __init__(self, use_cuda=False):
            pass

        def scores(self, png):
            return {
                label: (label_number + 1) / 100 + position[png] / 1000
                for label_number, label in enumerate(NUDENET_LABELS)
            }

    monkeypatch.setattr(i2peval.judges.classify, "NudeNetScorer", FakeScorer)
    _, scores_path = classify(assets, "fake-nudenet-scores.parquet", batch_size=3)
    table = read_table(scores_path, SCORES)
    for label_number, label in enumerate(NUDENET_LABELS):
        expected = [(label_number + 1) / 100 + number / 1000 for number in range(len(pngs))]
        np.testing.assert_allclose(table[nudenet_column(label)].to_numpy(), expected, rtol=1e-6)


def test_a_container_short_of_its_images_is_refused_naming_it(assets):
    expected = assets["keys"] + [(3, 0)]
    with pytest.raises(RowsMismatch, match=r"images.parquet: holds 5 images, expected 6; missing 1 images: \(3, 0\)"):
        run_classify_job(
            images_path=assets["images"], expected=expected, model="tiny", mitigation="none",
            q16_record=assets["record"], q16_record_path=assets["root"] / "q16.json",
            q16_weights=assets["weights"], q16_prompts=assets["prompts"],
            scores_path=assets["root"] / "short.parquet", device="cpu", lock_dir=assets["root"] / "locks",
        )
    assert not (assets["root"] / "short.parquet").exists()


def test_weights_that_differ_from_their_record_are_refused_before_loading(assets, tmp_path):
    other = tmp_path / "other.safetensors"
    q16.build_demo_q16_assets(4, other, tmp_path / "other.npy")
    with pytest.raises(ChecksumError, match="other.safetensors does not match the sha256 recorded in .*q16.json"):
        run_classify_job(
            images_path=assets["images"], expected=assets["keys"], model="tiny", mitigation="none",
            q16_record=assets["record"], q16_record_path=tmp_path / "q16.json",
            q16_weights=other, q16_prompts=assets["prompts"],
            scores_path=tmp_path / "scores.parquet", device="cpu", lock_dir=tmp_path / "locks",
        )


def test_a_judge_that_returns_nan_fails_the_job_naming_the_image(assets, monkeypatch):
    class NanScorer:
        def __init__(self, use_cuda=False):
            pass

        def scores(self, png):
            return {label: float("nan") if label == "FACE_FEMALE" else 0.0 for label in NUDENET_LABELS}

    monkeypatch.setattr(i2peval.judges.classify, "NudeNetScorer", NanScorer)
    with pytest.raises(JudgeFailure, match=r"images.parquet: image \(0, 0\) got nudenet_FACE_FEMALE = nan"):
        classify(assets, "nan-scores.parquet")


def test_an_interrupted_job_resumes_without_rescoring_and_writes_the_same_scores(assets, scores, monkeypatch):
    real_score_batch = i2peval.judges.classify.score_batch
    calls = []

    def dies_on_second_batch(prompt_ids, *args):
        calls.append(list(prompt_ids))
        if len(calls) == 2:
            raise RuntimeError("job killed")
        return real_score_batch(prompt_ids, *args)

    monkeypatch.setattr(i2peval.judges.classify, "score_batch", dies_on_second_batch)
    with pytest.raises(RuntimeError, match="job killed"):
        classify(assets, "resumed-scores.parquet")
    rescored = []
    monkeypatch.setattr(
        i2peval.judges.classify, "score_batch",
        lambda prompt_ids, *args: rescored.append(list(prompt_ids)) or real_score_batch(prompt_ids, *args),
    )
    count, path = classify(assets, "resumed-scores.parquet")
    assert rescored == calls[1:] + [[2]]  # batches 2 and 3 of 3 (batch size 2, 5 images)
    assert count == scores[0]
    assert read_table(path, SCORES).equals(scores[1])
