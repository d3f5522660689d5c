"""Getting bytes: the context every source kind works in, and the one place that fills the
store from sources.

A `Fetcher` holds what a source needs to pin or open files (the store, the manifest's
directory, the settings, whether the network may be used, and the clients made so far).
Everything fetched is hashed on the way into the store and checked against what the lock or
the source declared.
"""

from __future__ import annotations

import threading
from pathlib import Path

from .entries import FileEntry
from .errors import SourceError
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
    ):
        self.store = store
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

    def ensure(self, pin: Pin, entry: FileEntry, on_bytes=None) -> str:
        """Make sure the blob for a locked file is in the store, fetching it if needed."""
        if self.store.check(entry.hex, entry.size):
            if on_bytes:
                on_bytes(entry.size)
            return entry.hash
        opener, label = pin.opener(self, entry)
        return self.store.fetch(
            opener,
            size=entry.size,
            sha256=entry.hash,
            gitsha1=entry.hub_hash,
            label=label,
            on_bytes=on_bytes,
        )
