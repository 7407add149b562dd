"""FID (metrics/fid.py): the Fréchet distance as torch-fidelity computes it, the FID Inception
weights downloaded and checked (or the demo's), statistics of generated and reference images,
and bad inputs named."""

from __future__ import annotations

import copy
import io
import json
import pickle

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from i2peval.hub import ChecksumError
from i2peval.metrics import fid
from i2peval.schemas import FID, IMAGES, write_table


def random_images(count, seed, sizes=((64, 64),)):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*sizes[index % len(sizes)], 3), dtype=np.uint8) for index in range(count)]


@pytest.fixture(scope="module")
def inception(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fid_inception")
    record = fid.obtain_inception({"source": "demo", "seed": 0}, {}, folder)
    (folder / "fid_inception.json").write_text(json.dumps(record))
    return folder


def test_the_frechet_distance_is_torch_fidelitys_and_the_closed_form_for_diagonal_gaussians():
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    rng = np.random.default_rng(0)
    mean_1, mean_2 = rng.normal(size=4), rng.normal(size=4)
    var_1, var_2 = rng.uniform(0.5, 2, 4), rng.uniform(0.5, 2, 4)
    closed = np.sum((mean_1 - mean_2) ** 2) + np.sum(var_1 + var_2 - 2 * np.sqrt(var_1 * var_2))
    assert fid.frechet_distance(mean_1, np.diag(var_1), mean_2, np.diag(var_2)) == pytest.approx(closed, rel=1e-12)
    for dimensions, samples in ((4, 50), (64, 40)):  # the second covariance singular, as with few images
        mean_1, mean_2 = rng.normal(size=dimensions), rng.normal(size=dimensions)
        cov_1 = np.cov(rng.normal(size=(samples, dimensions)), rowvar=False)
        cov_2 = np.cov(rng.normal(size=(samples, dimensions)) * 2, rowvar=False)
        theirs = fid_statistics_to_metric({"mu": mean_1, "sigma": cov_1}, {"mu": mean_2, "sigma": cov_2}, False)
        ours = fid.frechet_distance(mean_1, cov_1, mean_2, cov_2)
        assert ours == pytest.approx(theirs["frechet_inception_distance"], rel=1e-8)


def test_statistics_of_images_of_any_size_and_their_distance(inception, tmp_path):
    images = random_images(3, 0, sizes=((64, 64), (48, 80)))
    model = fid.load_inception(inception)
    alone = fid.inception_features(model, images[2:])
    together = fid.inception_features(model, images)  # the 64 x 64 ones in one batch
    assert np.allclose(alone[0], together[2], rtol=1e-4, atol=1e-4)
    count = fid.statistics_job(iter(images), inception / "fid_inception.json", tmp_path / "a.npz")
    mean, cov, stored = fid.read_statistics(tmp_path / "a.npz")
    assert (count, stored, mean.shape, cov.shape) == (3, 3, (2048,), (2048, 2048))
    assert np.allclose(mean, together.mean(axis=0))
    fid.statistics_job(iter(random_images(3, 1)), inception / "fid_inception.json", tmp_path / "b.npz")
    table = fid.fid_table("coco", {("m", "sld"): tmp_path / "b.npz"}, tmp_path / "a.npz")
    write_table(table, tmp_path / "fid.parquet", FID)
    (row,) = table.to_pylist()
    assert (row["prompt_set"], row["model"], row["mitigation"], row["images"], row["reference_images"]) == (
        "coco", "m", "sld", 3, 3
    )
    assert row["fid"] > 0


def test_a_conditions_images_are_read_from_its_generate_jobs_containers(tmp_path):
    pngs = []
    for image in random_images(3, 2):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    import pyarrow as pa

    table = pa.table({"prompt_id": [0, 1, 2], "image_index": [0, 0, 0], "png": pngs})
    write_table(table, tmp_path / "block-0.parquet", IMAGES)
    read = list(fid.condition_images([tmp_path / "block-0.parquet"]))
    assert all(np.array_equal(a, b) for a, b in zip(read, random_images(3, 2)))


def published_weights(tmp_path, name, state_dict):
    path = tmp_path / "release" / name
    path.parent.mkdir(exist_ok=True)
    torch.save(state_dict, path)
    return path


def test_downloaded_weights_are_checked_against_their_names_digits_and_the_pin(tmp_path):
    from i2peval.hub import sha256_of

    state_dict = {"weight": torch.ones(2)}
    good = published_weights(tmp_path, "weights.pth", state_dict)
    digits = sha256_of(good)[:8]
    named = good.rename(good.with_name(f"weights-inception-2015-12-05-{digits}.pth"))
    folder = tmp_path / "asset"
    folder.mkdir()
    record = fid.obtain_inception({"source": "url", "url": named.as_uri()}, {}, folder)
    assert record["files"] == {fid.WEIGHTS_NAME: sha256_of(named)} and not record["pinned"]
    warning = fid.inception_unpinned({"source": "url", "url": named.as_uri()}, {}, folder / "r.json", record)
    assert f"set fid_inception.sha256: {sha256_of(named)}" in warning[0]
    with pytest.raises(ChecksumError, match="the configuration says"):
        fid.obtain_inception({"source": "url", "url": named.as_uri()}, {fid.WEIGHTS_NAME: "0" * 64}, folder)
    wrong = published_weights(tmp_path, "weights-inception-2015-12-05-00000000.pth", state_dict)
    with pytest.raises(ChecksumError, match="whose first digits its name gives as 00000000"):
        fid.obtain_inception({"source": "url", "url": wrong.as_uri()}, {}, folder)


class RunsCode:
    def __reduce__(self):
        return (print, ("this pickle runs code",))


def test_weights_that_would_run_code_are_refused(tmp_path):
    path = tmp_path / "weights.pth"
    path.write_bytes(pickle.dumps({"weight": RunsCode()}))
    with pytest.raises(fid.FIDError, match="refused: not plain weights"):
        fid.read_weights(path)


def test_a_reference_folder_without_images_or_with_a_bad_image_is_named(tmp_path):
    with pytest.raises(fid.FIDError, match=f"FID reference folder {tmp_path / 'missing'}: no such folder"):
        fid.listing_digest(tmp_path / "missing")
    (tmp_path / "ref").mkdir()
    (tmp_path / "ref" / "notes.txt").write_text("not an image")
    with pytest.raises(fid.FIDError, match=r"ref: 0 image files"):
        fid.listing_digest(tmp_path / "ref")
    (tmp_path / "ref" / "a.png").write_bytes(b"not a png")
    Image.fromarray(random_images(1, 0)[0]).save(tmp_path / "ref" / "b.png")
    before = fid.listing_digest(tmp_path / "ref")
    with pytest.raises(fid.FIDError, match="a.png: cannot read it"):
        [fid.read_rgb(path) for path in fid.reference_images(tmp_path / "ref")]
    Image.fromarray(random_images(1, 1)[0]).save(tmp_path / "ref" / "c.png")
    assert fid.listing_digest(tmp_path / "ref") != before


def test_statistics_that_are_not_finite_are_refused(tmp_path):
    with pytest.raises(fid.FIDError, match="not all finite"):
        fid.statistics(np.array([[1.0, np.nan], [2.0, 3.0]]))
    fid.write_statistics(tmp_path / "s.npz", np.zeros(3), np.eye(3), 2)
    with pytest.raises(fid.FIDError, match=r"s.npz: FID statistics of shapes \(3,\)"):
        fid.read_statistics(tmp_path / "s.npz")


def test_a_set_with_a_reference_folder_plans_fid_per_condition_and_a_missing_folder_stops_planning(tmp_path):
    from workflow_runs import MAKE_DEMO_CONFIG, planned_jobs, snakemake, write_config

    from i2peval.config import validate_config
    from i2peval.study import Study

    reference = tmp_path / "coco"
    reference.mkdir()
    for index, image in enumerate(random_images(3, 5)):
        Image.fromarray(image).save(reference / f"{index:012d}.jpg")
    config = yaml.safe_load(MAKE_DEMO_CONFIG.read_text())
    config["prompt_sets"]["erasure-copy"] |= {"fid_reference": str(reference), "images_per_prompt": 1}
    config["fid_inception"] = {"source": "demo"}
    study = Study.from_config(validate_config(copy.deepcopy(config)), prompt_set="erasure-copy")
    assert {job.image_indices for job in study.image_jobs()} == {(0,)}
    result = snakemake(tmp_path / "run", write_config(tmp_path / "config.yaml", config), "--dry-run")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    planned = [(rule, found.get("model"), found.get("mitigation")) for rule, found in planned_jobs(result.stdout)]
    assert sorted(job for job in planned if job[0].startswith("fid")) == [
        ("fid", None, None), ("fid_inception_assets", None, None), ("fid_reference", None, None),
        ("fid_statistics", "tiny-a", "none"), ("fid_statistics", "tiny-a", "sld-strong"),
    ]  # fmt: skip

    config["prompt_sets"]["erasure-copy"]["fid_reference"] = str(tmp_path / "missing")
    result = snakemake(tmp_path / "run", write_config(tmp_path / "config.yaml", config), "--dry-run")
    assert result.returncode != 0
    assert f"FID reference folder {tmp_path / 'missing'}: no such folder" in result.stdout + result.stderr
