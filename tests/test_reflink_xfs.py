"""The reflink path for real: an XFS filesystem with reflinks (`mkfs.xfs -m reflink=1` on a
sparse file, loop-mounted; needs root and xfsprogs, which scripts/setup.sh installs). There the
default link mode clones: each workspace file is a writable file of its own (one link) that
shares its blocks with the store's blob, so a sync writes the bytes once and editing a
workspace file never reaches the store. Always unmounted, whatever the test does."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from mlxk.store import Store
from tests.support import write_manifest
from tests.xfs import used, xfs_mount

pytestmark = pytest.mark.unit
MIB = 1 << 20


@pytest.fixture(scope="module")
def xfs(tmp_path_factory) -> Path:
    if os.geteuid() != 0:
        pytest.skip("mounting a loop device needs root")
    assert shutil.which("mkfs.xfs"), "xfsprogs is missing: run scripts/setup.sh"
    with xfs_mount(tmp_path_factory.mktemp("xfs"), 512 * MIB) as mnt:
        yield mnt


def test_the_store_clones_blobs_on_xfs(xfs):
    store = Store(xfs / "store-a")
    data = os.urandom(8 * MIB)
    hexd = store.put_bytes(data).removeprefix("sha256:")
    os.sync()
    before = used(xfs)
    for mode in ("auto", "copy"):
        dest = xfs / "ws" / mode
        assert store.materialize(hexd, dest, link=mode) == "reflink"
        st = dest.stat()
        assert st.st_nlink == 1 and st.st_mode & 0o777 == 0o644
    os.sync()
    assert used(xfs) - before < MIB  # two clones of 8 MiB: no data blocks of their own
    with open(xfs / "ws" / "auto", "r+b") as f:
        f.write(b"edited")
    assert store.blob_path(hexd).read_bytes() == data  # copy-on-write: the blob is intact
    assert store.materialize(hexd, xfs / "ws" / "h", link="hardlink") == "hardlink"


def test_sync_on_xfs_writes_each_byte_once(xfs, mlxk, monkeypatch):
    root = xfs / "project"
    (root / "src").mkdir(parents=True)
    weights = os.urandom(16 * MIB)
    (root / "src" / "model.safetensors").write_bytes(weights)
    (root / "src" / "config.json").write_text("{}")
    monkeypatch.setenv("MLXK_STORE", str(xfs / "store-b"))
    m = str(write_manifest(root, "version: 1\nworkspaces:\n  m:\n    source: path:src\n"))
    assert mlxk("lock", "-f", m).exit_code == 0
    os.sync()
    before = used(xfs)
    assert mlxk("sync", "-f", m).exit_code == 0
    os.sync()
    grew = used(xfs) - before
    assert len(weights) <= grew < len(weights) + 2 * MIB  # the store's copy only
    placed = root / "models" / "m" / "model.safetensors"
    assert placed.stat().st_nlink == 1 and placed.stat().st_mode & 0o200
    assert placed.read_bytes() == weights
    assert mlxk("verify", "-f", m).exit_code == 0
