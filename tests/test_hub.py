import hashlib
import subprocess
from types import SimpleNamespace

import pytest
from fakes import COMMIT, FolderHub

from i2peval.hub import (
    ChecksumError,
    RemoteFile,
    fetch_snapshot,
    fetch_url,
    git_blob_id_of,
    sha256_of,
)

REPO_FILES = {
    "model_index.json": b'{"_class_name": "StableDiffusionPipeline"}',
    "unet/config.json": b'{"in_channels": 4}',
    "unet/diffusion_pytorch_model.safetensors": bytes(range(256)) * 64,
    "unet/diffusion_pytorch_model.bin": b"pickled weights",
    "README.md": b"# a model\n",
}


@pytest.fixture
def repo_folder(tmp_path):
    folder = tmp_path / "remote"
    for name, content in REPO_FILES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    return folder


def select_json_and_safetensors(paths):
    return [path for path in paths if path.endswith((".json", ".safetensors"))]


@pytest.mark.parametrize("downloads_to_cache", [False, True])
def test_fetch_snapshot_downloads_only_selected_files_and_records_the_commit(
    repo_folder, tmp_path, downloads_to_cache
):
    hub = FolderHub(repo_folder, cache=tmp_path / "cache" if downloads_to_cache else None)
    dest = tmp_path / "snapshot"
    snapshot = fetch_snapshot(hub, "org/model", "main", dest, select_json_and_safetensors)

    wanted = ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors"]
    assert sorted(hub.downloaded) == wanted
    assert snapshot.commit == COMMIT
    assert snapshot.revision == "main"
    assert snapshot.as_record()["commit"] == COMMIT
    assert snapshot.files == {path: hashlib.sha256(REPO_FILES[path]).hexdigest() for path in wanted}
    for path in wanted:
        assert (dest / path).read_bytes() == REPO_FILES[path]
    assert not (dest / "unet/diffusion_pytorch_model.bin").exists()
    assert not (dest / "README.md").exists()


@pytest.mark.parametrize(
    "corrupted", ["unet/diffusion_pytorch_model.safetensors", "unet/config.json"]
)
def test_corrupted_download_raises_checksum_error_naming_the_file(repo_folder, tmp_path, corrupted):
    hub = FolderHub(repo_folder, corrupt=frozenset({corrupted}))
    with pytest.raises(ChecksumError, match=corrupted):
        fetch_snapshot(hub, "org/model", "main", tmp_path / "snapshot", select_json_and_safetensors)


def test_file_without_published_checksum_is_refused(tmp_path):
    class UncheckedHub(FolderHub):
        def list_files(self, repo_id, repo_type, commit):
            return [RemoteFile(remote.path, remote.size) for remote in super().list_files(repo_id, repo_type, commit)]

    folder = tmp_path / "remote"
    folder.mkdir()
    (folder / "model_index.json").write_bytes(b"{}")
    with pytest.raises(ChecksumError, match="model_index.json"):
        fetch_snapshot(UncheckedHub(folder), "org/model", "main", tmp_path / "snapshot", lambda paths: paths)


@pytest.mark.parametrize("content", [b"", b"hello\n", bytes(range(256)) * 5000])
def test_git_blob_id_matches_git_hash_object(tmp_path, content):
    path = tmp_path / "file"
    path.write_bytes(content)
    expected = subprocess.run(
        ["git", "hash-object", str(path)], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert git_blob_id_of(path) == expected


def test_fetch_url_keeps_a_file_with_the_right_sha256(tmp_path):
    source = tmp_path / "prompts.p"
    source.write_bytes(b"array bytes")
    dest = tmp_path / "assets" / "prompts.p"
    result = fetch_url(source.as_uri(), hashlib.sha256(b"array bytes").hexdigest(), dest)
    assert result == dest
    assert dest.read_bytes() == b"array bytes"
    assert sha256_of(dest) == hashlib.sha256(b"array bytes").hexdigest()
    assert list(dest.parent.iterdir()) == [dest]


def test_fetch_url_with_wrong_sha256_raises_and_leaves_no_file(tmp_path):
    source = tmp_path / "prompts.p"
    source.write_bytes(b"tampered bytes")
    dest = tmp_path / "assets" / "prompts.p"
    with pytest.raises(ChecksumError, match="sha256"):
        fetch_url(source.as_uri(), hashlib.sha256(b"array bytes").hexdigest(), dest)
    assert list(dest.parent.iterdir()) == []


class RecordedHfApi:
    """Stands in for huggingface_hub.HfApi with the dataclasses the real one returns."""

    def repo_info(self, repo_id, repo_type, revision, files_metadata=False):
        from huggingface_hub.hf_api import BlobLfsInfo, RepoSibling

        siblings = [
            RepoSibling(rfilename="model_index.json", size=40, blob_id="a" * 40),
            RepoSibling(
                rfilename="unet/diffusion_pytorch_model.safetensors",
                size=3,
                blob_id="b" * 40,
                lfs=BlobLfsInfo(size=3, sha256="c" * 64, pointer_size=130),
            ),
        ]
        return SimpleNamespace(sha=COMMIT, siblings=siblings if files_metadata else None)


def test_hugging_face_client_reads_commit_and_published_checksums():
    from i2peval.hub import HuggingFaceHub

    client = HuggingFaceHub()
    client._api = RecordedHfApi()
    assert client.resolve("org/model", "model", "main") == COMMIT
    assert client.list_files("org/model", "model", COMMIT) == [
        RemoteFile("model_index.json", 40, sha256=None, git_blob_id="a" * 40),
        RemoteFile("unet/diffusion_pytorch_model.safetensors", 3, sha256="c" * 64, git_blob_id="b" * 40),
    ]


def test_a_gated_repository_says_to_accept_its_conditions_and_set_hf_token():
    import httpx2
    from huggingface_hub.errors import GatedRepoError

    from i2peval.hub import HubError, HuggingFaceHub

    url = "https://huggingface.co/api/models/DeepFloyd/IF-I-XL-v1.0/revision/main"

    class GatedApi:
        def repo_info(self, repo_id, **arguments):
            response = httpx2.Response(401, request=httpx2.Request("GET", url))
            raise GatedRepoError(f"401 Client Error. Cannot access gated repo for url {url}.", response=response)

    client = HuggingFaceHub()
    client._api = GatedApi()
    with pytest.raises(HubError) as raised:
        client.resolve("DeepFloyd/IF-I-XL-v1.0", "model", "main")
    message = str(raised.value)
    assert message.startswith("model DeepFloyd/IF-I-XL-v1.0@main: the repository is gated: accept its conditions")
    assert "set HF_TOKEN" in message and "\n" not in message
