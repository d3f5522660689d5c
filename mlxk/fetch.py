"""Getting bytes: the context every source kind works in, and the one place that fills the
store from sources.

A `Fetcher` holds what a source needs to pin or open files (the store, the manifest's
directory, the settings, whether the sources' network may be used, the clients made so far,
and the fleet's remote registry, if any). Everything fetched is hashed on the way into the
store and checked against what the lock or the source declared.

With a remote, `ensure` asks it first (by digest, at PREFIX/NAME) and falls back to the pin's
source when the registry lacks the blob or cannot be reached; offline, the remote alone must do.
"""

from __future__ import annotations

import threading
from pathlib import Path

from .entries import FileEntry
from .errors import IntegrityError, SourceError
from .settings import Settings
from .sources import Pin
from .store import Store


class Fetcher:
    def __init__(
        self,
        store: Store,
        manifest_root: Path,
        offline: bool = False,
        settings: Settings | None = None,
        clients: dict | None = None,
        remote=None,
    ):
        self.store = store
        self.remote = remote  # a remote.Remote, or None
        self.root = manifest_root
        self.offline = offline
        self.settings = settings or Settings()
        self._clients = dict(clients or {})
        self._lock = threading.Lock()

    def client(self, name: str, make):
        """The client of one source kind, made once; refused when offline."""
        if self.offline:
            raise SourceError(
                "offline: mlxk was asked not to use the network",
                hint="drop --offline, or provide the files with a bundle",
            )
        with self._lock:
            if name not in self._clients:
                self._clients[name] = make()
            return self._clients[name]

    def ensure(self, pin: Pin, entry: FileEntry, on_bytes=None, workspace: str | None = None):
        """Make sure the blob for a locked file is in the store, fetching it if needed: from
        the remote (when there is one and `workspace` names the repository), else the source."""
        if self.store.check(entry.hex, entry.size):
            if on_bytes:
                on_bytes(entry.size)
            return entry.hash
        if workspace is not None and self.remote is not None:
            got = self.from_remote(workspace, entry, on_bytes, fallback=pin.reachable(self))
            if got:
                return got
        opener, label = pin.opener(self, entry)
        return self.store.fetch(
            opener,
            size=entry.size,
            sha256=entry.hash,
            gitsha1=entry.hub_hash,
            label=label,
            on_bytes=on_bytes,
        )

    def from_remote(self, workspace: str, entry: FileEntry, on_bytes=None, fallback=True):
        """The blob from the remote registry into the store (checked against the lock), or
        None when it lacks it or, with a `fallback` to go to, cannot give it (noted)."""
        remote = self.remote
        try:
            if not remote.has(workspace, entry):
                if not fallback:
                    raise SourceError(
                        f"{remote.describe(workspace)}: the registry has no blob {entry.hash} "
                        f"({entry.path}), and its source cannot be asked"
                        + (" (offline)" if self.offline else ""),
                        hint=f"push the workspace there (mlxk push {workspace}), or sync where "
                        "its source is reachable",
                    )
                remote.missed(workspace, entry.path, "the registry lacks it")
                return None
            opener, label = remote.opener(workspace, entry)
            got = self.store.fetch(
                opener, entry.size, entry.hash, entry.hub_hash, label=label, on_bytes=on_bytes
            )
        except IntegrityError:
            raise  # the registry served other bytes: never fall back silently
        except SourceError as e:
            if not fallback:
                raise
            remote.missed(workspace, entry.path, e.message)
            return None
        remote.count(entry.size)
        return got
