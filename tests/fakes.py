"""Test doubles shared by several test files."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from i2peval.hub import RemoteFile

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FolderHub:
    """A HubClient serving one repository from a local folder, at one commit.

    Files ending in .safetensors are published with their sha256 (like LFS files on the
    hub), all others with their git blob id. `corrupt` names files whose download is
    altered after the checksums were published; `cache` makes downloads land outside
    `dest`, as a client with its own cache would. Calls are recorded in `resolved` and
    `downloaded`.
    """

    def __init__(self, folder: Path, corrupt: frozenset[str] = frozenset(), cache: Path | None = None):
        self.folder = folder
        self.corrupt = corrupt
        self.cache = cache
        self.resolved: list[tuple[str, str, str]] = []
        self.downloaded: list[str] = []

    def resolve(self, repo_id, repo_type, revision):
        self.resolved.append((repo_id, repo_type, revision))
        assert revision in ("main", COMMIT)
        return COMMIT

    def list_files(self, repo_id, repo_type, commit):
        assert commit == COMMIT
        listing = []
        for path in sorted(self.folder.rglob("*")):
            if not path.is_file():
                continue
            content = path.read_bytes()
            name = path.relative_to(self.folder).as_posix()
            if name.endswith(".safetensors"):
                listing.append(RemoteFile(name, len(content), sha256=hashlib.sha256(content).hexdigest()))
            else:
                blob = hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
                listing.append(RemoteFile(name, len(content), git_blob_id=blob))
        return listing

    def download(self, repo_id, repo_type, commit, path, dest):
        assert commit == COMMIT
        self.downloaded.append(path)
        target = (self.cache or dest) / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.folder / path, target)
        if path in self.corrupt:
            with open(target, "ab") as handle:
                handle.write(b"!")
        return target


class CpuBackedGpus:
    """`count` pretend GPUs for `i2peval.devices`, each of which computes on the CPU."""

    def __init__(self, count: int):
        self._count = count

    def count(self) -> int:
        return self._count

    def device(self, index: int):
        import torch

        assert 0 <= index < self._count
        return torch.device("cpu")
