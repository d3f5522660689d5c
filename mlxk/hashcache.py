"""A stat-keyed cache of file hashes, kept in the store directory (machine-local state,
never in the lock; DVC's lesson).

Key: (device, inode, size, mtime_ns, ctime_ns). A file that is touched, rewritten, renamed
over or re-linked changes one of them and is hashed again. ctime cannot be set from user
space, so restoring an old mtime after an edit does not fool it. Plain `mlxk verify` never
uses it (CI should not trust a cache); `plan`, `sync` and `verify --fast` do.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from pathlib import Path

from . import faults

SCHEMA = """CREATE TABLE IF NOT EXISTS hashes (
  dev INTEGER, ino INTEGER, size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, sha256 TEXT,
  PRIMARY KEY (dev, ino))"""


def stat_key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class HashCache:
    """Loaded once, consulted in memory, new entries written back in one transaction.

    `readonly` caches (list, show) read it if it exists and never write anything.
    """

    def __init__(self, path: Path, readonly: bool = False, use_ctime: bool = True):
        self.path = path
        self.readonly = readonly
        self.use_ctime = use_ctime  # off for the store's read-only blobs: hardlinks move ctime
        self._known: dict[tuple[int, int], tuple[int, int, int, str]] = {}
        self._new: dict[tuple[int, int], tuple[int, int, int, str]] = {}
        self._lock = threading.Lock()
        if path.is_file():
            try:
                db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                with contextlib.closing(db), db:  # closed now, not when collected
                    for dev, ino, size, mt, ct, h in db.execute("SELECT * FROM hashes"):
                        self._known[(dev, ino)] = (size, mt, ct, h)
            except sqlite3.Error:
                self._known = {}  # a damaged cache is only a slower run

    def get(self, st: os.stat_result) -> str | None:
        dev, ino, size, mt, ct = stat_key(st)
        ct = ct if self.use_ctime else 0
        hit = self._new.get((dev, ino)) or self._known.get((dev, ino))
        if hit and hit[:3] == (size, mt, ct):
            return hit[3]
        return None

    def put(self, st: os.stat_result, digest: str) -> None:
        if self.readonly:
            return
        dev, ino, size, mt, ct = stat_key(st)
        ct = ct if self.use_ctime else 0
        with self._lock:
            self._new[(dev, ino)] = (size, mt, ct, digest)

    def flush(self) -> None:
        if self.readonly or not self._new:
            return
        faults.point("cache-flush")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            return  # an unusable store is reported by the commands that need it, not here
        with self._lock:
            rows = [(d, i, *v) for (d, i), v in self._new.items()]
            try:
                db = sqlite3.connect(self.path, timeout=30)
                with contextlib.closing(db), db:
                    db.execute(SCHEMA)
                    db.executemany("INSERT OR REPLACE INTO hashes VALUES (?,?,?,?,?,?)", rows)
            except sqlite3.Error:
                return  # the cache is an optimisation; never fail a command over it
            self._known.update(self._new)
            self._new.clear()
