"""Getting bytes: the one place that talks to sources and fills the store.

Resolution asks it for commits and listings; sync asks it for blobs. Everything fetched is
hashed on the way into the store and checked against what the lock or hub declared.
"""

from __future__ import annotations

from pathlib import Path

from .errors import SourceError
from .lock import FileEntry, LockedSource
from .sources import SourceFile
from .sources import path as path_source
from .store import Store


class Fetcher:
    def __init__(self, store: Store, manifest_root: Path, offline: bool = False, hf=None):
        self.store = store
        self.root = manifest_root
        self.offline = offline
        self._hf = hf

    @property
    def hf(self):
        if self.offline:
            raise SourceError(
                "offline: mlxk was asked not to use the network",
                hint="drop --offline, or provide the files with a bundle",
            )
        if self._hf is None:
            from .sources.hf import HfClient

            self._hf = HfClient()
        return self._hf

    # ------------------------------------------------------------ resolution
    def hf_resolve(self, repo: str, revision: str) -> str:
        return self.hf.resolve(repo, revision)

    def hf_files(self, repo: str, commit: str) -> list[SourceFile]:
        return self.hf.list_files(repo, commit)

    def path_dir(self, rel: str) -> Path:
        return path_source.source_dir(self.root, rel)

    def path_files(self, rel: str, include=(), exclude=()) -> list[SourceFile]:
        return path_source.list_files(self.path_dir(rel), include, exclude)

    def hf_blob(self, repo: str, commit: str, f: SourceFile, on_bytes=None) -> str:
        """Fetch one hub file into the store (checking its hub hash); returns its sha256."""
        return self.store.fetch(
            self.hf.opener(repo, commit, f.path),
            size=f.size,
            sha256=f.sha256,
            gitsha1=f.gitsha1,
            label=f"hf://{repo}@{commit[:12]}/{f.path}",
            on_bytes=on_bytes,
        )

    # ------------------------------------------------------------ sync
    def ensure(self, source: LockedSource, entry: FileEntry, on_bytes=None) -> str:
        """Make sure the blob for a locked file is in the store, fetching it if needed."""
        if self.store.check(entry.hex, entry.size):
            if on_bytes:
                on_bytes(entry.size)
            return entry.hash
        if source.kind == "hf":
            if self.offline:
                raise SourceError(
                    f"offline: {entry.path} of hf://{source.repo}@{source.commit[:12]} is not "
                    f"in the store ({self.store.root})",
                    hint="import a bundle that holds it (mlxk import), or sync once online",
                )
            declared = SourceFile(entry.path, entry.size, entry.hash, entry.hub_hash)
            return self.hf_blob(source.repo, source.commit, declared, on_bytes)
        return self.store.fetch(
            path_source.opener(self.path_dir(source.path), entry.path),
            size=entry.size,
            sha256=entry.hash,
            label=f"path:{source.path}/{entry.path}",
            on_bytes=on_bytes,
        )
