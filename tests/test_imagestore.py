import pytest

from i2peval.generation.imagestore import ShardImageWriter
from i2peval.schemas import IMAGES, MANIFEST, read_table

SETTINGS = {"model": "tiny", "mitigation": {"kind": "none"}, "generation": {"steps": 4}}


def image_row(prompt_id, image_index):
    return {
        "model": "tiny",
        "model_commit": "local:tiny",
        "mitigation": "none",
        "mitigation_settings": "{}",
        "prompt_id": prompt_id,
        "image_index": image_index,
        "seed": 1000 * prompt_id + image_index,
        "text": f"prompt {prompt_id}",
        "steps": 4,
        "guidance_scale": 7.5,
        "width": 64,
        "height": 64,
        "dtype": "float32",
        "device": "cpu",
        "code_version": "test",
        "seconds": 0.1,
        "png": b"png %d %d" % (prompt_id, image_index),
    }


@pytest.fixture
def paths(tmp_path):
    return tmp_path / "job" / "images.parquet", tmp_path / "job" / "manifest.parquet"


def test_writer_with_the_same_settings_resumes_the_saved_parts(paths):
    first = ShardImageWriter(*paths, settings=SETTINGS)
    first.add([image_row(0, 0), image_row(0, 1)])
    first.add([image_row(1, 0)])

    # the same settings, given in another key order
    resumed = ShardImageWriter(*paths, settings=dict(reversed(list(SETTINGS.items()))))
    assert resumed.completed() == {(0, 0), (0, 1), (1, 0)}
    resumed.add([image_row(1, 1)])
    assert resumed.finish() == 4


def test_writer_with_other_settings_discards_the_saved_parts(paths):
    ShardImageWriter(*paths, settings=SETTINGS).add([image_row(0, 0)])
    changed = ShardImageWriter(*paths, settings={**SETTINGS, "generation": {"steps": 50}})
    assert changed.completed() == set()
    changed.add([image_row(1, 0)])
    assert changed.finish() == 1
    assert read_table(paths[0], IMAGES)["prompt_id"].to_pylist() == [1]


def test_finish_writes_sorted_images_and_manifest_and_removes_the_parts(paths):
    images_path, manifest_path = paths
    writer = ShardImageWriter(images_path, manifest_path, settings=SETTINGS)
    writer.add([image_row(2, 1), image_row(0, 1)])
    writer.add([image_row(2, 0), image_row(0, 0), image_row(1, 0)])
    assert writer.finish() == 5

    order = [(0, 0), (0, 1), (1, 0), (2, 0), (2, 1)]
    images = read_table(images_path, IMAGES)
    manifest = read_table(manifest_path, MANIFEST)
    assert list(zip(images["prompt_id"].to_pylist(), images["image_index"].to_pylist())) == order
    assert images["png"].to_pylist() == [b"png %d %d" % key for key in order]
    assert manifest.column_names == MANIFEST.names
    assert list(zip(manifest["prompt_id"].to_pylist(), manifest["image_index"].to_pylist())) == order
    assert manifest["seed"].to_pylist() == [1000 * prompt_id + index for prompt_id, index in order]
    assert not writer.parts_dir.exists()
    assert sorted(path.name for path in images_path.parent.iterdir()) == ["images.parquet", "manifest.parquet"]


def test_finish_without_images_writes_empty_tables(paths):
    assert ShardImageWriter(*paths, settings=SETTINGS).finish() == 0
    assert read_table(paths[0], IMAGES).num_rows == 0
    assert read_table(paths[1], MANIFEST).num_rows == 0
