"""The OS seam (`mlxk/platform.py`): which call each OS gets, with which arguments, and what
the callers (placing a blob, switching a workspace in) do when it is missing or refuses.

The Linux calls run for real here (renameat2 on this disk; FICLONE where the disk has
reflinks: `tests/test_reflink_xfs.py`). The macOS calls (clonefile, renamex_np) cannot run on
Linux, so they are injected: fakes that do what the real call does, or fail as it would.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path

import pytest

from mlxk import platform
from mlxk.platform import CLONE_NOFOLLOW, RENAME_EXCHANGE, RENAME_SWAP, Platform
from mlxk.store import Store
from mlxk.sync import switch_in

pytestmark = pytest.mark.unit


class FakeLibc:
    """The C functions of a libc by name: each records its calls and answers (rc, errno)."""

    def __init__(self, **behaviour):
        self.calls: list[tuple] = []
        self.behaviour = behaviour  # name -> function(*args) -> (rc, errno), or absent

    def lookup(self, name: str):
        if name not in self.behaviour:
            return None

        def call(*args):
            self.calls.append((name, *args))
            return self.behaviour[name](*args)

        return call


def apfs_clonefile(src: bytes, dest: bytes, flags: int) -> tuple[int, int]:
    """What clonefile(2) does on APFS: a new file with src's bytes and mode (here: a copy)."""
    if os.path.exists(dest):
        return -1, errno.EEXIST
    shutil.copy2(src, dest)
    return 0, 0


def swap(a: bytes, b: bytes, *_flags) -> tuple[int, int]:
    """What renamex_np(RENAME_SWAP) / renameat2(RENAME_EXCHANGE) do (here: three renames)."""
    tmp = a + b".swap"
    os.rename(a, tmp)
    os.rename(b, a)
    os.rename(tmp, b)
    return 0, 0


def refuse(code: int):
    return lambda *args: (-1, code)


def blob(store: Store, data: bytes) -> str:
    return store.put_bytes(data).removeprefix("sha256:")


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "store")


# ---------------------------------------------------------------- which call, which arguments


def test_macos_clones_with_clonefile_and_swaps_with_renamex_np(tmp_path):
    libc = FakeLibc(clonefile=apfs_clonefile, renamex_np=swap)
    mac = Platform("darwin", libc.lookup)
    (tmp_path / "src").write_bytes(b"weights")
    assert mac.clone_file(tmp_path / "src", tmp_path / "dest")
    assert (tmp_path / "dest").read_bytes() == b"weights"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "in-a").touch()
    assert mac.exchange_dirs(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b" / "in-a").exists() and not (tmp_path / "a" / "in-a").exists()
    src, dest, a, b = (os.fsencode(tmp_path / n) for n in ("src", "dest", "a", "b"))
    assert libc.calls == [
        ("clonefile", src, dest, CLONE_NOFOLLOW),
        ("renamex_np", a, b, RENAME_SWAP),
    ]


def test_linux_swaps_with_renameat2_exchange(tmp_path):
    libc = FakeLibc(renameat2=lambda *args: (0, 0))
    assert Platform("linux", libc.lookup).exchange_dirs(tmp_path / "a", tmp_path / "b")
    a, b = os.fsencode(tmp_path / "a"), os.fsencode(tmp_path / "b")
    assert libc.calls == [("renameat2", -100, a, -100, b, RENAME_EXCHANGE)]


def test_no_call_means_no_clone_and_no_swap(tmp_path):
    """An OS without the calls (or a libc without the function): False, nothing touched."""
    (tmp_path / "src").write_bytes(b"x")
    for p in (Platform("darwin", FakeLibc().lookup), Platform("win32", FakeLibc().lookup)):
        assert not p.clone_file(tmp_path / "src", tmp_path / "dest")
        assert not p.exchange_dirs(tmp_path / "a", tmp_path / "b")
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize("code", [errno.ENOTSUP, errno.EINVAL, errno.ENOSYS, errno.EXDEV])
def test_a_refused_swap_is_false_and_a_failed_one_an_error(tmp_path, code):
    for system, name in (("darwin", "renamex_np"), ("linux", "renameat2")):
        p = Platform(system, FakeLibc(**{name: refuse(code)}).lookup)
        assert not p.exchange_dirs(tmp_path / "a", tmp_path / "b")
        p = Platform(system, FakeLibc(**{name: refuse(errno.EACCES)}).lookup)
        with pytest.raises(PermissionError):
            p.exchange_dirs(tmp_path / "a", tmp_path / "b")


def test_the_real_linux_calls_here(tmp_path):
    """This machine: renameat2 swaps; FICLONE on a disk without reflinks is False, leaves no
    file behind and never removes one it did not make."""
    here = platform.current()
    assert here.system == "linux"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x").touch()
    assert platform.exchange_dirs(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b" / "x").exists()
    (tmp_path / "src").write_bytes(b"data")
    (tmp_path / "taken").write_bytes(b"mine")
    assert not platform.clone_file(tmp_path / "src", tmp_path / "taken")
    assert (tmp_path / "taken").read_bytes() == b"mine"
    if not platform.clone_file(tmp_path / "src", tmp_path / "dest"):  # ext4, tmpfs
        assert not (tmp_path / "dest").exists()


# ---------------------------------------------------------------- the callers' fallbacks


def on(monkeypatch, p: Platform) -> None:
    monkeypatch.setattr(platform, "current", lambda: p)


def test_placing_on_apfs_clones_for_every_mode(tmp_path, store, monkeypatch):
    """Where clonefile works, every mode clones: a writable file of its own (the blob stays
    read-only and intact when the clone is written)."""
    on(monkeypatch, Platform("darwin", FakeLibc(clonefile=apfs_clonefile).lookup))
    hexd = blob(store, b"weights")
    for mode in ("auto", "copy"):
        dest = tmp_path / "ws" / mode
        assert store.materialize(hexd, dest, link=mode) == "reflink"
        assert dest.stat().st_mode & 0o777 == 0o644 and dest.stat().st_nlink == 1
        dest.write_bytes(b"edited")
    assert store.materialize(hexd, tmp_path / "ws" / "h", link="hardlink") == "hardlink"
    assert store.check(hexd, len(b"weights"))
    assert store.blob_path(hexd).read_bytes() == b"weights"


def test_placing_where_clonefile_refuses_falls_back(tmp_path, store, monkeypatch):
    """clonefile refused (not APFS: ENOTSUP; another volume: EXDEV): auto hardlinks the
    read-only blob, copy copies, and no half-made file is left either way."""
    libc = FakeLibc(clonefile=refuse(errno.ENOTSUP))
    on(monkeypatch, Platform("darwin", libc.lookup))
    hexd = blob(store, b"weights")
    auto, copy = tmp_path / "ws" / "auto", tmp_path / "ws" / "copy"
    assert store.materialize(hexd, auto, link="auto") == "hardlink"
    assert auto.stat().st_ino == store.blob_path(hexd).stat().st_ino
    assert not auto.stat().st_mode & 0o222  # read-only: it is the store's blob
    assert store.materialize(hexd, copy, link="copy") == "copy"
    assert copy.stat().st_nlink == 1 and copy.stat().st_mode & 0o200
    assert [c[0] for c in libc.calls] == ["clonefile", "clonefile"]


def test_no_hardlink_across_volumes_means_a_copy(tmp_path, monkeypatch):
    """A store on another filesystem than the workspace (here /dev/shm, a tmpfs): no reflink,
    no hardlink (EXDEV), so even auto and hardlink copy."""
    shm = Path("/dev/shm")
    assert shm.is_dir() and shm.stat().st_dev != tmp_path.stat().st_dev
    root = shm / f"mlxk-test-{os.getpid()}-{hashlib.sha256(str(tmp_path).encode()).hexdigest()[:8]}"
    try:
        store = Store(root)
        hexd = blob(store, b"weights")
        for mode in ("auto", "hardlink", "copy"):
            dest = tmp_path / mode
            assert store.materialize(hexd, dest, link=mode) == "copy"
            assert dest.read_bytes() == b"weights" and dest.stat().st_nlink == 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


def staged(tmp_path: Path) -> tuple[Path, Path]:
    target, staging = tmp_path / "ws", tmp_path / "ws.new"
    target.mkdir()
    (target / "old").write_text("old")
    staging.mkdir()
    (staging / "new").write_text("new")
    return staging, target


@pytest.mark.parametrize("answer", ["swap", "refuse"])
def test_switching_in_on_macos_swaps_or_falls_back_to_two_renames(tmp_path, monkeypatch, answer):
    libc = FakeLibc(renamex_np=swap if answer == "swap" else refuse(errno.ENOTSUP))
    on(monkeypatch, Platform("darwin", libc.lookup))
    staging, target = staged(tmp_path)
    switch_in(staging, target)
    assert sorted(p.name for p in target.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ws"]  # nothing left aside
    assert [c[0] for c in libc.calls] == ["renamex_np"]


def test_switching_in_where_the_swap_fails_changes_nothing(tmp_path, monkeypatch):
    on(monkeypatch, Platform("darwin", FakeLibc(renamex_np=refuse(errno.EACCES)).lookup))
    staging, target = staged(tmp_path)
    with pytest.raises(PermissionError):
        switch_in(staging, target)
    assert (target / "old").exists() and (staging / "new").exists()


def test_writeback_starts_with_sync_file_range_on_linux_only(tmp_path):
    libc = FakeLibc(sync_file_range=lambda *args: (0, 0))
    Platform("linux", libc.lookup).start_writeback(7, 4096, 1 << 20)
    Platform("darwin", libc.lookup).start_writeback(7, 4096, 1 << 20)
    Platform("linux", FakeLibc().lookup).start_writeback(7, 0, 1)  # no such call: nothing
    assert libc.calls == [("sync_file_range", 7, 4096, 1 << 20, platform.SYNC_FILE_RANGE_WRITE)]
    with open(tmp_path / "f", "wb") as f:  # and the real one here
        f.write(b"x" * 8192)
        f.flush()
        platform.start_writeback(f.fileno(), 0, 8192)
