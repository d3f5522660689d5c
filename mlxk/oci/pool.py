"""One `Registry` client per registry host, made on first use and shared by threads."""

from __future__ import annotations

import threading

from .client import Registry
from .settings import RegistrySettings


class Registries:
    def __init__(self, settings: RegistrySettings | None = None):
        self.settings = settings or RegistrySettings()
        self._clients: dict[str, Registry] = {}
        self._lock = threading.Lock()

    def get(self, host: str) -> Registry:
        with self._lock:
            if host not in self._clients:
                self._clients[host] = Registry(host, self.settings)
            return self._clients[host]

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
