"""mlxk gc: drop store blobs that no lock in use names, and say how many bytes that freed.

Blobs written in the last `grace` seconds are kept whatever the locks say: a `mlxk lock` or
`sync` running now may have fetched them for a lock it has not written yet.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .bundle import lock_blobs
from .store import Store

GRACE_SECONDS = 3600


@dataclass
class GcReport:
    kept: int = 0
    kept_bytes: int = 0
    removed: int = 0
    freed_bytes: int = 0
    young: int = 0  # unreferenced, but too recent to remove
    dry_run: bool = False
    locks: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def collect(store: Store, locks: dict, dry_run: bool = False, grace: float = GRACE_SECONDS):
    """`locks` is {label: Lock}; every blob none of them names (and older than `grace`) goes."""
    keep: set[str] = set()
    for lock in locks.values():
        keep |= set(lock_blobs(lock))
    report = GcReport(dry_run=dry_run, locks=sorted(locks))
    root = store.root / "blobs" / "sha256"
    now = time.time()
    for blob in sorted(root.glob("??/*")) if root.is_dir() else ():
        st = blob.lstat()
        if blob.name in keep:
            report.kept += 1
            report.kept_bytes += st.st_size
        elif now - st.st_mtime < grace:
            report.young += 1
            report.kept_bytes += st.st_size
        else:
            if not dry_run:
                blob.unlink(missing_ok=True)
            report.removed += 1
            report.freed_bytes += st.st_size
    if not dry_run:
        for sub in root.iterdir() if root.is_dir() else ():
            if sub.is_dir() and not any(sub.iterdir()):
                os.rmdir(sub)
    return report


def read_locks(paths) -> dict:
    from . import lock as lockfile
    from .errors import LockError

    out = {}
    for p in paths:
        path = Path(p)
        lock = lockfile.read(path)
        if lock is None:
            raise LockError(f"{path}: no such lock")
        out[str(path)] = lock
    return out
