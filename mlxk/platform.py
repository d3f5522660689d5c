"""The things mlxk needs from the OS beyond POSIX, behind one seam: clone a file
copy-on-write, swap two directories atomically, and start writeback early.

| OS | `clone_file` | `exchange_dirs` |
| --- | --- | --- |
| Linux | `ioctl(FICLONE)` (btrfs, XFS, bcachefs) | `renameat2(RENAME_EXCHANGE)` |
| macOS | `clonefile(2)` (APFS) | `renamex_np(RENAME_SWAP)` |
| others | never | never |

`start_writeback` is Linux's `sync_file_range(WRITE)` and nothing elsewhere.

Each answers False where the OS or the filesystem cannot do it, and the caller falls back (a
hardlink or a copy; two renames). The C functions are reached through `Platform.lookup`, so
tests inject them: the macOS calls cannot run on this repo's CI (Linux), only their wiring.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)
RENAME_EXCHANGE = 2  # linux/fs.h
RENAME_SWAP = 2  # macOS sys/stdio.h
AT_FDCWD = -100
CLONE_NOFOLLOW = 1  # macOS sys/clonefile.h
SYNC_FILE_RANGE_WRITE = 2  # linux/fs.h
# errnos that mean "this kernel or filesystem cannot": fall back, nothing failed
NOT_SUPPORTED = frozenset(
    {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.ENOTTY}
)

# A C call as the seam sees it: arguments -> (return value, errno after the call).
CCall = Callable[..., tuple[int, int]]


@dataclass(frozen=True)
class Platform:
    system: str  # sys.platform: "linux", "darwin", ...
    lookup: Callable[[str], CCall | None]  # a libc function by name, None if it has none

    def clone_file(self, src: Path, dest: Path) -> bool:
        """Make dest (a new path) a copy-on-write clone of src; False where not possible (dest
        is then absent)."""
        if self.system == "linux":
            return _ficlone(src, dest)
        if self.system == "darwin":
            fn = self.lookup("clonefile")
            if fn is None:
                return False
            return fn(os.fsencode(src), os.fsencode(dest), CLONE_NOFOLLOW)[0] == 0
        return False

    def exchange_dirs(self, a: Path, b: Path) -> bool:
        """Swap two paths atomically; False where the OS or filesystem cannot (nothing moved).
        Any other failure is an OSError."""
        if self.system == "linux":
            fn, flag = self.lookup("renameat2"), RENAME_EXCHANGE
            args = (AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), flag)
        elif self.system == "darwin":
            fn = self.lookup("renamex_np")
            args = (os.fsencode(a), os.fsencode(b), RENAME_SWAP)
        else:
            return False
        if fn is None:
            return False
        rc, err = fn(*args)
        if rc == 0:
            return True
        if err in NOT_SUPPORTED:
            return False
        raise OSError(err, os.strerror(err), str(a))

    def start_writeback(self, fd: int, offset: int, nbytes: int) -> None:
        """Start writing a range of a file to disk now, without waiting for it (Linux
        `sync_file_range(WRITE)`), so the fsync at the end has little left to wait for.
        Elsewhere, or if it fails, nothing: it only changes when the writing happens."""
        if self.system != "linux":
            return
        fn = self.lookup("sync_file_range")
        if fn is not None:
            fn(fd, offset, nbytes, SYNC_FILE_RANGE_WRITE)


def _ficlone(src: Path, dest: Path) -> bool:
    import fcntl

    created = False
    try:
        with open(src, "rb") as s, open(dest, "xb") as d:
            created = True
            fcntl.ioctl(d.fileno(), FICLONE, s.fileno())
        return True
    except OSError:  # unsupported here, or a real failure the fallback will report
        if created:  # never remove a file this call did not make
            with contextlib.suppress(FileNotFoundError):
                os.unlink(dest)
        return False


_ARGTYPES = {  # filled with ctypes types on first use (ctypes stays off the start-up path)
    "renameat2": ("int", "char_p", "int", "char_p", "uint"),
    "renamex_np": ("char_p", "char_p", "uint"),
    "clonefile": ("char_p", "char_p", "uint32"),
    "sync_file_range": ("int", "int64", "int64", "uint"),
}


def libc_lookup(name: str) -> CCall | None:
    """The C library's function `name` through ctypes, or None."""
    import ctypes

    try:
        fn = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    fn.argtypes = [getattr(ctypes, f"c_{t}") for t in _ARGTYPES[name]]
    fn.restype = ctypes.c_int

    def call(*args) -> tuple[int, int]:
        rc = fn(*args)
        return rc, ctypes.get_errno() if rc != 0 else 0

    return call


@cache
def current() -> Platform:
    return Platform(sys.platform, cache(libc_lookup))


def clone_file(src: Path, dest: Path) -> bool:
    return current().clone_file(src, dest)


def exchange_dirs(a: Path, b: Path) -> bool:
    return current().exchange_dirs(a, b)


def start_writeback(fd: int, offset: int, nbytes: int) -> None:
    current().start_writeback(fd, offset, nbytes)
