import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from i2peval.diskspace import (
    NotEnoughDiskSpace,
    PlannedImages,
    check_free_space,
    image_bytes,
    prompts_in_shard,
    required_bytes,
    size,
)


def test_bytes_grow_with_pixels_and_images():
    assert image_bytes(2, 64) == 2 * image_bytes(1, 64)
    assert image_bytes(1, 128) > 3.5 * image_bytes(1, 64)


def test_required_bytes_hold_the_largest_job_twice():
    jobs = [PlannedImages(10, 64), PlannedImages(10, 128)]
    assert required_bytes(jobs) == image_bytes(10, 64) + 2 * image_bytes(10, 128)
    assert required_bytes([]) == 0


def test_shard_size_comes_from_the_shard_file_when_there_is_one(tmp_path):
    shard = tmp_path / "shard-0.parquet"
    assert prompts_in_shard(shard, shards=24, prompt_count=4703) == 196
    pq.write_table(pa.table({"prompt_id": list(range(7))}), shard)
    assert prompts_in_shard(shard, shards=24, prompt_count=4703) == 7


def test_shard_of_an_unknown_hub_file_counts_as_the_i2p_benchmark(tmp_path):
    assert prompts_in_shard(tmp_path / "shard-0.parquet", shards=1, prompt_count=None) == 4703


def test_refuses_naming_what_is_needed_and_what_is_free(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    too_many = PlannedImages(images=free // image_bytes(1, 512) + 1, resolution=512)
    with pytest.raises(NotEnoughDiskSpace, match=r"1 planned generate jobs will write about .* GB free"):
        check_free_space([too_many], tmp_path / "results" / "images")


def test_accepts_what_fits_in_a_folder_not_made_yet(tmp_path):
    needed = check_free_space([PlannedImages(20, 64)], tmp_path / "results" / "images")
    assert needed == required_bytes([PlannedImages(20, 64)])


def test_sizes_are_written_in_a_unit_that_keeps_them_apart():
    assert [size(count) for count in (3_345_900_000_000, 460_000, 250_000, 12)] == [
        "3,345.9 GB", "460.0 kB", "250.0 kB", "12 bytes",
    ]
