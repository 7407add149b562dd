import hashlib
import pickle
import re

import numpy as np
import pytest
from fakes import COMMIT, FolderHub
from safetensors.numpy import save_file

from i2peval.hub import ChecksumError
from i2peval.judges.q16 import fetch_q16_assets

WEIGHTS_FILE = "open_clip_model.safetensors"


@pytest.fixture
def remote(tmp_path):
    """A hub folder with CLIP weights (plus files that must not be fetched) and a prompt pickle."""
    repo = tmp_path / "remote-repo"
    repo.mkdir()
    save_file({"visual.proj": np.arange(12, dtype=np.float32).reshape(3, 4)}, str(repo / WEIGHTS_FILE))
    (repo / "open_clip_pytorch_model.bin").write_bytes(b"pickled weights")
    (repo / "README.md").write_bytes(b"# CLIP\n")
    prompts = np.random.default_rng(0).standard_normal((2, 768)).astype(np.float16)
    pickle_path = tmp_path / "web" / "prompts.p"
    pickle_path.parent.mkdir()
    pickle_path.write_bytes(pickle.dumps(prompts, protocol=4))
    return repo, pickle_path, prompts


def spec_for(pickle_path, sha256=None):
    return {
        "clip": {
            "repo_id": "timm/x",
            "revision": "main",
            "filename": WEIGHTS_FILE,
            "architecture": "ViT-L-14-quickgelu",
        },
        "prompts": {
            "url": pickle_path.as_uri(),
            "sha256": sha256 or hashlib.sha256(pickle_path.read_bytes()).hexdigest(),
        },
    }


def outputs(tmp_path):
    dest_dir = tmp_path / "resources" / "q16"
    return dest_dir, dest_dir / "clip.safetensors", dest_dir / "prompts.npy"


def test_fetch_writes_verified_weights_and_float32_prompts_with_their_record(remote, tmp_path):
    repo, pickle_path, prompts = remote
    hub = FolderHub(repo)
    dest_dir, weights_path, prompts_path = outputs(tmp_path)
    spec = spec_for(pickle_path)

    record = fetch_q16_assets(hub, spec, dest_dir, weights_path, prompts_path)

    assert hub.resolved == [("timm/x", "model", "main")]
    assert hub.downloaded == [WEIGHTS_FILE]
    weights_sha256 = hashlib.sha256((repo / WEIGHTS_FILE).read_bytes()).hexdigest()
    assert weights_path.read_bytes() == (repo / WEIGHTS_FILE).read_bytes()
    saved = np.load(prompts_path)
    assert saved.dtype == np.float32
    np.testing.assert_array_equal(saved, prompts.astype(np.float32))
    assert record == {
        "demo": False,
        "architecture": "ViT-L-14-quickgelu",
        "clip": {
            "repo_id": "timm/x",
            "revision": "main",
            "commit": COMMIT,
            "files": {WEIGHTS_FILE: weights_sha256},
        },
        "prompts": spec["prompts"],
        "weights_sha256": weights_sha256,
        "prompts_sha256": hashlib.sha256(prompts_path.read_bytes()).hexdigest(),
    }


def test_prompt_pickle_with_another_sha256_is_refused(remote, tmp_path):
    repo, pickle_path, _ = remote
    dest_dir, weights_path, prompts_path = outputs(tmp_path)
    spec = spec_for(pickle_path, sha256=hashlib.sha256(b"the published pickle").hexdigest())
    with pytest.raises(ChecksumError, match="sha256"):
        fetch_q16_assets(FolderHub(repo), spec, dest_dir, weights_path, prompts_path)
    assert not prompts_path.exists()
    assert not (dest_dir / "prompts.p").exists()


def test_corrupted_weights_download_is_refused(remote, tmp_path):
    repo, pickle_path, _ = remote
    dest_dir, weights_path, prompts_path = outputs(tmp_path)
    with pytest.raises(ChecksumError, match=WEIGHTS_FILE):
        fetch_q16_assets(
            FolderHub(repo, corrupt=frozenset({WEIGHTS_FILE})),
            spec_for(pickle_path),
            dest_dir,
            weights_path,
            prompts_path,
        )
    assert not prompts_path.exists()


@pytest.mark.parametrize("shape", [(3, 768), (2, 512), (1536,)])
def test_prompt_pickle_of_the_wrong_shape_is_refused_naming_the_url(remote, tmp_path, shape):
    repo, pickle_path, _ = remote
    pickle_path.write_bytes(pickle.dumps(np.zeros(shape, dtype=np.float16), protocol=4))
    dest_dir, weights_path, prompts_path = outputs(tmp_path)
    spec = spec_for(pickle_path)
    with pytest.raises(ValueError, match=re.escape(spec["prompts"]["url"]) + ".*shape"):
        fetch_q16_assets(FolderHub(repo), spec, dest_dir, weights_path, prompts_path)
    assert not prompts_path.exists()
