"""One store, many projects: gc keeps every project's blobs, and a write through a hardlink
never reaches the store's bytes (nor a workspace built from them later)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import write_manifest

pytestmark = pytest.mark.unit


def project(root: Path, files: dict[str, bytes], extra: str = "") -> str:
    """A project whose one workspace `w` is a local directory of `files`."""
    src = root / "src"
    src.mkdir(parents=True)
    for name, data in files.items():
        (src / name).write_bytes(data)
    body = f"version: 1\n{extra}workspaces:\n  w:\n    source: path:src\n"
    return str(write_manifest(root, body))


def blobs(store: Path) -> set[str]:
    return {p.name for p in (store / "blobs" / "sha256").rglob("*") if p.is_file()}


def test_gc_in_one_project_keeps_every_other_projects_blobs(tmp_path, mlxk):
    store = tmp_path / "store"
    a = project(tmp_path / "a", {"a.bin": b"A" * 5000})
    b = project(tmp_path / "b", {"b.bin": b"B" * 7000})
    assert mlxk("sync", "-f", a).exit_code == 0
    assert mlxk("sync", "-f", b).exit_code == 0
    both = blobs(store)
    res = mlxk("gc", "-f", b, "--grace", "0", "--json")
    assert res.exit_code == 0 and res.json["data"]["removed"] == 0, res
    assert blobs(store) == both
    assert set(res.json["data"]["locks"]) == {
        str(Path(a).with_name("mlxk.lock")),
        str(Path(b).with_name("mlxk.lock")),
    }
    # a's workspace is gone; its lock still names the blob, so an offline sync restores it
    (tmp_path / "a" / "models" / "w" / "a.bin").unlink()
    (tmp_path / "a" / "src" / "a.bin").unlink()
    res = mlxk("sync", "-f", a, "--offline", "--frozen", "--json")
    assert res.exit_code == 0, res
    assert (tmp_path / "a" / "models" / "w" / "a.bin").read_bytes() == b"A" * 5000


def test_gc_forgets_a_project_whose_lock_is_gone_or_moved_stores(tmp_path, mlxk):
    store = tmp_path / "store"
    a = project(tmp_path / "a", {"a.bin": b"A" * 5000})
    b = project(tmp_path / "b", {"b.bin": b"B" * 7000})
    c = project(tmp_path / "c", {"c.bin": b"C" * 3000})
    for m in (a, b, c):
        assert mlxk("sync", "-f", m).exit_code == 0
    Path(a).with_name("mlxk.lock").unlink()
    text = Path(c).read_text().replace("version: 1\n", "version: 1\nstore: ./own-store\n")
    Path(c).write_text(text)
    res = mlxk("gc", "-f", b, "--grace", "0", "--dry-run", "--json")
    assert res.json["data"]["removed"] == 2, res
    res = mlxk("gc", "-f", b, "--grace", "0", "--json")
    assert res.exit_code == 0, res
    gone = {f["lock"]: f["reason"] for f in res.json["data"]["forgotten"]}
    assert gone[str(Path(a).with_name("mlxk.lock"))] == "its lock is gone"
    assert "names the store" in gone[str(Path(c).with_name("mlxk.lock"))]
    assert res.json["data"]["removed"] == 2 and len(blobs(store)) == 1
    res = mlxk("gc", "-f", b, "--grace", "0", "--json")  # forgotten for good
    assert res.json["data"]["forgotten"] == [] and res.json["data"]["removed"] == 0


def test_gc_only_keeps_just_the_locks_named(tmp_path, mlxk):
    store = tmp_path / "store"
    a = project(tmp_path / "a", {"a.bin": b"A" * 5000})
    b = project(tmp_path / "b", {"b.bin": b"B" * 7000})
    for m in (a, b):
        assert mlxk("sync", "-f", m).exit_code == 0
    lock_b = str(Path(b).with_name("mlxk.lock"))
    res = mlxk("gc", "-f", b, "--only", lock_b, "--grace", "0", "--json")
    assert res.exit_code == 0 and res.json["data"]["removed"] == 1, res
    assert res.json["data"]["locks"] == [lock_b] and len(blobs(store)) == 1


def test_gc_stops_on_a_recorded_lock_it_cannot_read(tmp_path, mlxk):
    store = tmp_path / "store"
    a = project(tmp_path / "a", {"a.bin": b"A" * 5000})
    b = project(tmp_path / "b", {"b.bin": b"B" * 7000})
    for m in (a, b):
        assert mlxk("sync", "-f", m).exit_code == 0
    Path(a).with_name("mlxk.lock").write_text("{ not a lock")
    before = blobs(store)
    res = mlxk("gc", "-f", b, "--grace", "0", "--json")
    assert res.exit_code == 2, res
    assert str(Path(a).with_name("mlxk.lock")) in res.json["error"]["message"]
    assert "--only" in res.json["error"]["hint"]
    assert blobs(store) == before


def _write_keeping_mtime(path: Path, data: bytes) -> None:
    st = path.stat()
    with open(path, "r+b") as f:  # root ignores the 0444 mode, as many tools running as root do
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_write_through_a_hardlink_never_spreads(tmp_path, mlxk):
    good = b"G" * 9000
    a = project(tmp_path / "a", {"weights.bin": good, "config.json": b"{}"})
    assert mlxk("sync", "-f", a, "--link", "hardlink").exit_code == 0
    placed = tmp_path / "a" / "models" / "w" / "weights.bin"
    _write_keeping_mtime(placed, b"EVIL")
    res = mlxk("verify", "-f", a, "--json")
    assert res.exit_code == 1, res  # reported, not repaired
    assert placed.read_bytes().startswith(b"EVIL")
    # the next sync really repairs it: the store blob was rehashed, dropped and fetched again
    res = mlxk("sync", "-f", a, "--link", "hardlink", "--json")
    assert res.exit_code == 0, res
    assert placed.read_bytes() == good
    assert mlxk("verify", "-f", a).exit_code == 0
    # and a new workspace built from the store (another project) gets the good bytes
    b = project(tmp_path / "b", {"weights.bin": good, "config.json": b"{}"})
    (tmp_path / "b" / "src" / "weights.bin").unlink()  # only the store can give it now
    text = Path(a).with_name("mlxk.lock").read_text()
    Path(b).with_name("mlxk.lock").write_text(text)
    res = mlxk("sync", "-f", b, "--offline", "--frozen", "--link", "copy", "--json")
    assert res.exit_code == 0, res
    assert (tmp_path / "b" / "models" / "w" / "weights.bin").read_bytes() == good


def test_a_corrupted_hardlinked_blob_is_never_placed_offline(tmp_path, mlxk):
    """Offline, the corrupted blob cannot be fetched again: sync fails, it does not place it."""
    good = b"G" * 9000
    a = project(tmp_path / "a", {"weights.bin": good})
    assert mlxk("sync", "-f", a, "--link", "hardlink").exit_code == 0
    placed = tmp_path / "a" / "models" / "w" / "weights.bin"
    _write_keeping_mtime(placed, b"EVIL")
    (tmp_path / "a" / "src" / "weights.bin").unlink()
    b = project(tmp_path / "b", {"x": b""})
    Path(b).with_name("mlxk.lock").write_text(Path(a).with_name("mlxk.lock").read_text())
    res = mlxk("sync", "-f", b, "--offline", "--frozen", "--json")
    assert res.exit_code == 3, res
    assert not (tmp_path / "b" / "models" / "w").exists()
