"""A loop-mounted XFS with reflinks (`mkfs.xfs -m reflink=1` on a sparse file; needs root and
xfsprogs): the one way to run the reflink path on this machine. Used by the reflink tests and
by benchmarks/scale.py."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path


@contextlib.contextmanager
def xfs_mount(parent: Path, size: int):
    """A fresh XFS of `size` bytes mounted at parent/xfs; always unmounted (lazily if busy)
    and its image removed."""
    image, mnt = parent / "xfs.img", parent / "xfs"
    with open(image, "wb") as f:
        f.truncate(size)  # sparse: XFS needs at least 300 MB
    subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], check=True)
    mnt.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    try:
        yield mnt
    finally:
        os.sync()
        if subprocess.run(["umount", str(mnt)]).returncode:  # busy: detach it anyway
            subprocess.run(["umount", "--lazy", str(mnt)], check=True)
        image.unlink()


def used(path: Path) -> int:
    """Bytes in use on the filesystem holding `path` (statvfs)."""
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize
