"""mlxk gc: drop store blobs that no lock in use names, and say how many bytes that freed.

The locks in use are every lock recorded in the store (each project that locked or synced from
it: `store_locks`), so one project's gc never takes another's blobs; `--only` narrows that to
the locks given. Blobs written in the last `grace` seconds are kept whatever the locks say: a
`mlxk lock` or `sync` running now may have fetched them for a lock it has not written yet.
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
    forgotten: list[dict] = field(default_factory=list)  # records dropped: {lock, reason}
    grace: float = GRACE_SECONDS

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "grace"}


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


def store_locks(store: Store, dry_run: bool = False) -> tuple[dict, list[dict]]:
    """Every lock recorded in the store, read; records whose lock is gone (or whose manifest
    names another store) are forgotten. A recorded lock that cannot be read stops gc: its
    blobs cannot be told apart, and removing them could strand that project."""
    from . import store_locks as records
    from .errors import LockError, MlxkError

    out, forgotten = {}, []
    for rec in records.records(store.root):
        reason = records.why_forget(rec, store.root)
        if reason:
            forgotten.append({"lock": str(rec.lock), "reason": reason})
            if not dry_run:
                records.forget(rec)
            continue
        try:
            out[str(rec.lock)] = read_locks([rec.lock])[str(rec.lock)]
        except MlxkError as e:
            raise LockError(
                f"gc: {rec.lock} (a project using the store {store.root}) cannot be read: "
                f"{e.message}",
                hint="fix or regenerate that lock (`mlxk lock`), or run `mlxk gc --only LOCK` "
                "to keep only the locks you name",
            ) from None
    return out, forgotten


def gc(project, store: Store, locks=(), only=(), dry_run: bool = False, grace=GRACE_SECONDS):
    """`mlxk gc`: keep every blob of the locks recorded in the store, this project's and
    `locks` (or, with `only`, of those alone); remove the rest older than `grace`."""
    if only:
        chosen, forgotten = read_locks(only), []
    else:
        chosen, forgotten = store_locks(store, dry_run=dry_run)
        chosen.update(read_locks(locks))
        if project is not None and not locks:
            chosen[str(project.lock_path)] = project.current_lock(frozen=True, purpose="gc")[0]
    report = collect(store, chosen, dry_run=dry_run, grace=grace)
    report.forgotten = forgotten
    report.grace = grace
    return report
