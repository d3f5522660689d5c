"""A locked file (path, size, sha256, the hub's git blob id) and the content hash of a set of
them: the values every other layer (sources, lock, plan, store, verify) passes around."""

from __future__ import annotations

from dataclasses import dataclass

from .hashing import content_hash


@dataclass(frozen=True)
class FileEntry:
    path: str  # posix, relative to the workspace
    size: int
    hash: str  # "sha256:<hex>"
    hub_hash: str | None = None  # "gitsha1:<hex>" where the hub declares a git blob id

    def to_dict(self) -> dict:
        d = {"path": self.path, "size": self.size, "hash": self.hash}
        if self.hub_hash:
            d["hub_hash"] = self.hub_hash
        return d

    @property
    def hex(self) -> str:
        return self.hash.removeprefix("sha256:")


def workspace_content_hash(files) -> str:
    return content_hash((f.path, f.hash) for f in files)
