"""The run cache (DVC's): the outputs of every step built on this machine, keyed by its
fingerprint (step kind, params, runner, tool versions, input digest), kept in the store. A step
built once is reused by any project (and any later lock) whose step has the same fingerprint,
as long as every output blob is still in the store and hashes right.

Layout: <store>/runs/<fingerprint hex>.json = {"fingerprint", "files": [{path, size, hash}]}.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

from .entries import FileEntry
from .errors import MlxkError

_FP = re.compile(r"sha256:([0-9a-f]{64})")
_HASH = re.compile(r"sha256:[0-9a-f]{64}")


def _entry(raw: dict) -> FileEntry:
    """One recorded output, checked as strictly as the lock checks it."""
    from .sources import check_relpath

    path, size, digest = raw["path"], raw["size"], raw["hash"]
    if type(size) is not int or size < 0 or not _HASH.fullmatch(str(digest)):
        raise ValueError("bad entry")
    return FileEntry(check_relpath(str(path), "run cache"), size, digest)


class RunCache:
    def __init__(self, store_root: Path):
        self.root = Path(store_root) / "runs"

    def _path(self, fingerprint: str) -> Path | None:
        m = _FP.fullmatch(fingerprint)
        return self.root / f"{m.group(1)}.json" if m else None

    def get(self, fingerprint: str) -> tuple[FileEntry, ...] | None:
        path = self._path(fingerprint)
        try:
            doc = json.loads(path.read_text(encoding="utf-8")) if path else None
            if not doc or doc.get("fingerprint") != fingerprint:
                return None
            return tuple(_entry(f) for f in doc["files"])
        except (OSError, ValueError, KeyError, TypeError, MlxkError):
            return None  # a damaged entry only means running the step again

    def put(self, fingerprint: str, files) -> None:
        path = self._path(fingerprint)
        if path is None:
            return
        body = {"fingerprint": fingerprint, "files": [f.to_dict() for f in files]}
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(json.dumps(body, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
