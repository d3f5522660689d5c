"""Where an unfinished blob upload is remembered, so the next push resumes it.

A registry names an upload session by the URL it answered the upload's POST (and each PATCH)
with. Keeping that URL per (registry, repo, digest) lets a push that was cut off ask the
registry how many bytes it holds and send only the rest. The URL carries no login.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Protocol


def session_key(host: str, repo: str, digest: str) -> str:
    return f"{host}/{repo}@{digest}"


class UploadSessions(Protocol):
    def get(self, key: str) -> str | None: ...
    def put(self, key: str, location: str) -> None: ...
    def drop(self, key: str) -> None: ...


class MemorySessions:
    """Sessions kept for the life of one process (resumes a retry within one run)."""

    def __init__(self) -> None:
        self._urls: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self._urls.get(key)

    def put(self, key: str, location: str) -> None:
        self._urls[key] = location

    def drop(self, key: str) -> None:
        self._urls.pop(key, None)


class DirSessions:
    """Sessions kept as small files in a directory (e.g. under the store's tmp/), 0600."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _file(self, key: str) -> Path:
        return self.root / f"oci-upload-{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"

    def get(self, key: str) -> str | None:
        try:
            doc = json.loads(self._file(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        ok = isinstance(doc, dict) and doc.get("key") == key
        return doc.get("location") if ok and isinstance(doc.get("location"), str) else None

    def put(self, key: str, location: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self._file(key)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"key": key, "location": location}, f)
        os.replace(tmp, path)

    def drop(self, key: str) -> None:
        with contextlib.suppress(OSError):
            self._file(key).unlink()
