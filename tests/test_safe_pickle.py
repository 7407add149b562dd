import os
import pickle

import numpy as np
import pytest

from i2peval.safe_pickle import ForbiddenPickle, load_numpy_pickle


class RunsShellCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"echo pwned > {self.marker}",)


@pytest.mark.parametrize("protocol", [3, pickle.DEFAULT_PROTOCOL])
def test_float16_prompt_array_loads_back_equal(tmp_path, protocol):
    array = np.random.default_rng(0).standard_normal((2, 768)).astype(np.float16)
    path = tmp_path / "prompts.p"
    path.write_bytes(pickle.dumps(array, protocol=protocol))
    loaded = load_numpy_pickle(path)
    assert loaded.dtype == np.float16
    assert loaded.shape == (2, 768)
    np.testing.assert_array_equal(loaded, array)


def test_pickle_that_calls_os_system_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "prompts.p"
    path.write_bytes(pickle.dumps(RunsShellCommand(marker)))
    with pytest.raises(ForbiddenPickle, match="system"):
        load_numpy_pickle(path)
    assert not marker.exists()
    # control: the same bytes through the plain unpickler do run the command
    pickle.loads(path.read_bytes())
    assert marker.read_text().strip() == "pwned"


def test_pickled_dict_is_refused(tmp_path):
    path = tmp_path / "prompts.p"
    path.write_bytes(pickle.dumps({"appropriate": [0.1], "inappropriate": [0.9]}))
    with pytest.raises(ForbiddenPickle, match="dict"):
        load_numpy_pickle(path)
