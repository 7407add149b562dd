import numpy as np
import pytest
from PIL import Image

from i2peval.generation.imagestore import BackgroundSaver, ShardImageWriter, check_image_container, decode_png
from i2peval.parts import IncompleteJob, RowsMismatch
from i2peval.schemas import IMAGES, MANIFEST, read_table, write_table

SETTINGS = {"model": "tiny", "mitigation": {"kind": "none"}, "generation": {"steps": 4}}
EXPECTED = [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]


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


def writer(paths, expected=EXPECTED, settings=SETTINGS):
    return ShardImageWriter(*paths, expected=expected, settings=settings)


def test_writer_with_the_same_settings_resumes_the_saved_parts(paths):
    first = writer(paths, expected=[(0, 0), (0, 1), (1, 0), (1, 1)])
    first.add([image_row(0, 0), image_row(0, 1)])
    first.add([image_row(1, 0)])

    # the same settings, given in another key order
    resumed = writer(paths, expected=[(0, 0), (0, 1), (1, 0), (1, 1)], settings=dict(reversed(list(SETTINGS.items()))))
    assert resumed.completed() == {(0, 0), (0, 1), (1, 0)}
    resumed.add([image_row(1, 1)])
    assert resumed.finish() == 4


def test_writer_with_other_settings_discards_the_saved_parts(paths):
    writer(paths, expected=[(0, 0)]).add([image_row(0, 0)])
    changed = writer(paths, expected=[(0, 0)], settings={**SETTINGS, "generation": {"steps": 50}})
    assert changed.completed() == set()
    changed.add([image_row(0, 0)])
    assert changed.finish() == 1
    assert read_table(paths[0], IMAGES)["prompt_id"].to_pylist() == [0]


def test_finish_writes_sorted_images_and_manifest_and_removes_the_parts(paths):
    images_path, manifest_path = paths
    order = [(0, 0), (0, 1), (1, 0), (2, 0), (2, 1)]
    job = writer(paths, expected=order)
    job.add([image_row(2, 1), image_row(0, 1)])
    job.add([image_row(2, 0), image_row(0, 0), image_row(1, 0)])
    assert job.finish() == 5

    images = read_table(images_path, IMAGES)
    manifest = read_table(manifest_path, MANIFEST)
    assert list(zip(images["prompt_id"].to_pylist(), images["image_index"].to_pylist())) == order
    assert images["png"].to_pylist() == [b"png %d %d" % key for key in order]
    assert manifest.column_names == MANIFEST.names
    assert list(zip(manifest["prompt_id"].to_pylist(), manifest["image_index"].to_pylist())) == order
    assert manifest["seed"].to_pylist() == [1000 * prompt_id + index for prompt_id, index in order]
    assert not job.parts_dir.exists()
    assert sorted(path.name for path in images_path.parent.iterdir()) == ["images.parquet", "manifest.parquet"]


def test_finish_refuses_a_container_without_every_requested_image(paths):
    job = writer(paths)
    job.add([image_row(0, 0), image_row(0, 1)])
    with pytest.raises(IncompleteJob, match=r"images.parquet: 4 of 6 rows were never saved: \(1, 0\)"):
        job.finish()
    assert not paths[0].exists() and not paths[1].exists()


def test_a_job_without_images_writes_empty_tables(paths):
    assert writer(paths, expected=[]).finish() == 0
    assert read_table(paths[0], IMAGES).num_rows == 0
    assert read_table(paths[1], MANIFEST).num_rows == 0


def container(path, keys):
    import pyarrow as pa

    rows = [{"prompt_id": p, "image_index": i, "png": b"x"} for p, i in keys]
    write_table(pa.Table.from_pylist(rows, schema=IMAGES), path, IMAGES)
    return path


def test_check_image_container_accepts_exactly_the_expected_images(tmp_path):
    check_image_container(container(tmp_path / "c.parquet", reversed(EXPECTED)), EXPECTED)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (EXPECTED[:5], r"holds 5 images, expected 6; missing 1 images: \(2, 1\)"),
        (EXPECTED + [(9, 0)], r"1 images nobody asked for: \(9, 0\)"),
        (EXPECTED + [(0, 0)], "1 duplicate images"),
    ],
)
def test_check_image_container_names_the_file_and_what_is_wrong(tmp_path, keys, message):
    path = container(tmp_path / "short.parquet", keys)
    with pytest.raises(RowsMismatch, match="short.parquet: .*" + message):
        check_image_container(path, EXPECTED)


def test_check_image_container_names_an_unreadable_file(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(Exception, match="broken.parquet: not a readable Parquet file"):
        check_image_container(path, EXPECTED)


def pictures(count):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for _ in range(count)]


def manifest_row(prompt_id, image_index):
    row = image_row(prompt_id, image_index)
    del row["png"]
    return row


def test_batches_saved_in_the_background_keep_their_order_and_decode_to_the_images_made(paths):
    images = pictures(len(EXPECTED))
    job = writer(paths)
    with BackgroundSaver(job) as saver:
        for start in range(0, len(EXPECTED), 2):
            keys = EXPECTED[start:start + 2]
            saver.save([manifest_row(*key) for key in keys], images[start:start + 2])
    assert job.finish() == len(EXPECTED)
    stored = read_table(paths[0], IMAGES)
    assert list(zip(stored["prompt_id"].to_pylist(), stored["image_index"].to_pylist())) == EXPECTED
    for png, image, key in zip(stored["png"].to_pylist(), images, EXPECTED):
        assert np.array_equal(np.asarray(decode_png(png, paths[0], *key)), np.asarray(image))


def test_work_done_before_an_error_is_saved_and_a_failed_save_is_raised(paths):
    job = writer(paths)
    with pytest.raises(RuntimeError, match="the engine failed"), BackgroundSaver(job) as saver:
        saver.save([manifest_row(0, 0), manifest_row(0, 1)], pictures(2))
        raise RuntimeError("the engine failed")
    assert job.completed() == {(0, 0), (0, 1)}

    class FullDisk(ShardImageWriter):
        def add(self, rows):
            raise OSError(28, "No space left on device")

    failing = FullDisk(*paths, expected=EXPECTED, settings=SETTINGS)
    with pytest.raises(OSError, match="No space left"), BackgroundSaver(failing) as saver:
        saver.save([manifest_row(1, 0)], pictures(1))
    saver = BackgroundSaver(failing)
    saver.save([manifest_row(1, 0)], pictures(1))
    with pytest.raises(OSError, match="No space left"):
        saver.wait()
    with pytest.raises(OSError, match="No space left"):
        saver.save([manifest_row(1, 1)], pictures(1))  # the next batch is refused, not lost silently
