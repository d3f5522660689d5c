"""One sync (or lock) at a time per workspace home: an flock on the home directory itself, so
no lock file is left behind; a second process waits and says so. On release, an empty staging
directory is removed, and so is a home this command created and left empty (a failed first
sync leaves nothing)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from .workspace import STAGING


class HomeLock:
    def __init__(self, home: Path, on_wait=None):
        self.home = Path(home)
        self.on_wait = on_wait
        self._fd: int | None = None
        self._created = False

    def acquire(self) -> HomeLock:
        self._created = not self.home.exists()
        self.home.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.home, os.O_RDONLY)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if self.on_wait:
                self.on_wait()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            (self.home / STAGING / "sync.lock").unlink(missing_ok=True)  # older mlxk's
            (self.home / STAGING).rmdir()  # only when empty
        if self._created:
            with contextlib.suppress(OSError):
                self.home.rmdir()  # only when empty
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> HomeLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
