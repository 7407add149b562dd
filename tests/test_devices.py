import pytest
import torch

from i2peval.devices import DeviceError, claim_gpu, torch_dtype


def test_scheduler_chosen_gpu_is_used_without_locking(tmp_path):
    lock_dir = tmp_path / "locks"
    with claim_gpu(2, lock_dir, environ={"CUDA_VISIBLE_DEVICES": "3"}) as index:
        assert index == 0
    assert not lock_dir.exists()


def test_nested_claims_get_different_gpus(tmp_path):
    with claim_gpu(2, tmp_path, environ={}) as first:
        with claim_gpu(2, tmp_path, environ={}) as second:
            assert (first, second) == (0, 1)


def test_released_gpu_can_be_claimed_again(tmp_path):
    with claim_gpu(2, tmp_path, environ={}) as first:
        pass
    with claim_gpu(2, tmp_path, environ={}) as again:
        assert first == again == 0


def test_claim_without_any_gpu_is_an_error(tmp_path):
    with pytest.raises(DeviceError, match="no CUDA device to claim"):
        with claim_gpu(0, tmp_path, environ={}):
            pass


@pytest.mark.parametrize(
    "name, dtype", [("float32", torch.float32), ("bfloat16", torch.bfloat16), ("float16", torch.float16)]
)
def test_torch_dtype_by_name(name, dtype):
    assert torch_dtype(name) is dtype


@pytest.mark.parametrize("name", ["fp16", "float64", "Float32", ""])
def test_torch_dtype_rejects_other_names(name):
    with pytest.raises(ValueError, match=repr(name)):
        torch_dtype(name)
