"""Checksum-verified downloads: files of a Hugging Face hub repository, or one URL.

Every file is checked after download: LFS files against the sha256 the hub records
for the resolved commit, small git files against their git blob id (sha1 of
``b"blob <size>\\0" + content``), URLs against a sha256 from the configuration.
The hub is reached through the `HubClient` protocol so that tests can serve a local
folder in its place.
"""

from __future__ import annotations

import hashlib
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from i2peval.errors import I2PEvalError

T = TypeVar("T")


class ChecksumError(I2PEvalError, RuntimeError):
    """A downloaded file does not match its published checksum."""


@dataclass(frozen=True)
class RemoteFile:
    """A file of a repository at one commit, with the checksum the hub publishes."""

    path: str
    size: int
    sha256: str | None = None
    git_blob_id: str | None = None


class HubClient(Protocol):
    """What the project needs of a model/dataset hub."""

    def resolve(self, repo_id: str, repo_type: str, revision: str) -> str:
        """Commit hash that `revision` (branch, tag or commit) points to."""

    def list_files(self, repo_id: str, repo_type: str, commit: str) -> list[RemoteFile]:
        """Every file of the repository at `commit`, with checksums."""

    def download(self, repo_id: str, repo_type: str, commit: str, path: str, dest: Path) -> Path:
        """Download one file to ``dest / path`` and return that path."""


class HubError(I2PEvalError):
    """The hub cannot be reached, or has no such repository, revision or file."""


NETWORK_ERROR_MODULES = ("httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3")


def hub_call(what: str, call: Callable[[], T]) -> T:
    """``call()``, with hub and network failures turned into `HubError` naming `what`."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return call()
    except GatedRepoError as error:  # a RepositoryNotFoundError too: first
        reason = str(error).splitlines()[0]
        raise HubError(
            f"{what}: the repository is gated: accept its conditions on its page on huggingface.co while logged "
            f"in, and set HF_TOKEN to an access token of that account where the workflow runs ({reason})"
        ) from None
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as error:
        reason = str(error).splitlines()[0]
        raise HubError(f"{what}: the Hugging Face hub has no such repository, revision or file ({reason})") from None
    except HfHubHTTPError as error:
        reason = str(error).splitlines()[0]
        raise HubError(f"{what}: the Hugging Face hub refused the request ({reason})") from None
    except Exception as error:
        network = isinstance(error, (ConnectionError, TimeoutError)) or (
            type(error).__module__.split(".")[0] in NETWORK_ERROR_MODULES
        )
        if not network:
            raise
        raise HubError(
            f"{what}: the Hugging Face hub is unreachable ({type(error).__name__}: {error}). "
            "Run where huggingface.co can be reached (and HF_HUB_OFFLINE is unset), or use "
            "a local source"
        ) from None


class HuggingFaceHub:
    """`HubClient` backed by huggingface_hub (needs network access)."""

    def __init__(self) -> None:
        from huggingface_hub import HfApi

        self._api = HfApi()

    def resolve(self, repo_id: str, repo_type: str, revision: str) -> str:
        return hub_call(
            f"{repo_type} {repo_id}@{revision}",
            lambda: self._api.repo_info(repo_id, repo_type=repo_type, revision=revision).sha,
        )

    def list_files(self, repo_id: str, repo_type: str, commit: str) -> list[RemoteFile]:
        info = hub_call(
            f"{repo_type} {repo_id}@{commit}",
            lambda: self._api.repo_info(repo_id, repo_type=repo_type, revision=commit, files_metadata=True),
        )
        return [
            RemoteFile(
                path=sibling.rfilename,
                size=sibling.size or 0,
                sha256=sibling.lfs.sha256 if sibling.lfs else None,
                git_blob_id=sibling.blob_id,
            )
            for sibling in info.siblings
        ]

    def download(self, repo_id: str, repo_type: str, commit: str, path: str, dest: Path) -> Path:
        from huggingface_hub import hf_hub_download

        return Path(
            hub_call(
                f"{repo_type} {repo_id}@{commit}, file {path}",
                lambda: hf_hub_download(repo_id, path, repo_type=repo_type, revision=commit, local_dir=dest),
            )
        )


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def git_blob_id_of(path: Path) -> str:
    """Git's object id of a file's content (what the hub reports for non-LFS files)."""
    digest = hashlib.sha1()
    digest.update(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, remote: RemoteFile, source: str) -> None:
    """Raise `ChecksumError` unless `path` matches the checksum published for `remote`."""
    if remote.sha256:
        actual, expected, kind = sha256_of(path), remote.sha256, "sha256"
    elif remote.git_blob_id:
        actual, expected, kind = git_blob_id_of(path), remote.git_blob_id, "git blob id"
    else:
        raise ChecksumError(f"{source}: the hub published no checksum for {remote.path}")
    if actual != expected:
        raise ChecksumError(
            f"{source}: {remote.path} has {kind} {actual}, the hub says {expected}; "
            "the download is corrupt or the file changed"
        )


@dataclass(frozen=True)
class Snapshot:
    """Files of one repository at one commit, downloaded and verified."""

    repo_id: str
    revision: str
    commit: str
    files: dict[str, str]  # path in repository -> sha256 of the local copy

    def as_record(self) -> dict:
        return {
            "repo_id": self.repo_id,
            "revision": self.revision,
            "commit": self.commit,
            "files": self.files,
        }


def fetch_snapshot(
    client: HubClient,
    repo_id: str,
    revision: str,
    dest: Path,
    select: Callable[[list[str]], list[str]],
    repo_type: str = "model",
) -> Snapshot:
    """Download the files that `select` picks from the repository's file list, verify each.

    `revision` is resolved to a commit first and every file is fetched at that commit,
    so the snapshot is consistent even if the branch moves during the download.
    """
    commit = client.resolve(repo_id, repo_type, revision)
    remote_files = {remote.path: remote for remote in client.list_files(repo_id, repo_type, commit)}
    wanted = select(sorted(remote_files))
    dest.mkdir(parents=True, exist_ok=True)
    hashes = {}
    for path in wanted:
        local = client.download(repo_id, repo_type, commit, path, dest)
        verify(local, remote_files[path], f"{repo_id}@{commit}")
        if local != dest / path:
            (dest / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, dest / path)
        hashes[path] = sha256_of(dest / path)
    return Snapshot(repo_id=repo_id, revision=revision, commit=commit, files=hashes)


def fetch_url(url: str, sha256: str | None, dest: Path, timeout: float = 60.0) -> Path:
    """Download `url` to `dest` and check its sha256; a mismatch removes the file and raises.

    `sha256` None: nothing to check against (the caller records the file's own).
    """
    partial = dest.with_name(dest.name + ".partial")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        partial.unlink(missing_ok=True)
        raise HubError(f"cannot download {url}: {getattr(error, 'reason', error)}") from None
    actual = sha256_of(partial)
    if sha256 is not None and actual != sha256:
        partial.unlink()
        raise ChecksumError(f"{url} has sha256 {actual}, the configuration says {sha256}")
    partial.replace(dest)
    return dest


def is_commit(revision: str) -> bool:
    """Whether a revision names a commit (40 hex digits) rather than a branch or tag."""
    return len(revision) == 40 and all(char in "0123456789abcdef" for char in revision)
