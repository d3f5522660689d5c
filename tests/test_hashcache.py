"""The stat-keyed hash cache: plan and verify --fast skip unchanged files; anything touched,
rewritten or re-dated is hashed again; plain verify never trusts it; list never writes it."""

from __future__ import annotations

import os
import shutil

import pytest

from mlxk import workspace
from tests.support import DEMO_MODEL, write_manifest

pytestmark = pytest.mark.unit


@pytest.fixture
def hashed(monkeypatch):
    """Counts the files each command actually reads to hash."""
    seen: list[str] = []
    real = workspace.hash_files

    def spy(paths, *a, **k):
        paths = list(paths)
        seen.extend(p.name for p in paths)
        return real(paths, *a, **k)

    monkeypatch.setattr(workspace, "hash_files", spy)
    return seen


@pytest.fixture
def synced(tmp_path, mlxk):
    shutil.copytree(DEMO_MODEL, tmp_path / "demo-model")
    m = str(
        write_manifest(tmp_path, "version: 1\nworkspaces:\n  a:\n    source: path:demo-model\n")
    )
    assert mlxk("sync", "-f", m).exit_code == 0
    return m, tmp_path / "models" / "a"


def test_plan_and_fast_verify_read_nothing_after_sync(synced, mlxk, hashed):
    m, _ = synced
    assert mlxk("plan", "-f", m).exit_code == 0
    assert mlxk("verify", "-f", m, "--fast").exit_code == 0
    assert mlxk("sync", "-f", m).exit_code == 0
    assert hashed == []
    assert mlxk("verify", "-f", m).exit_code == 0  # plain verify: every byte, every time
    assert sorted(hashed) == sorted(p.name for p in DEMO_MODEL.iterdir())


def test_touched_or_redated_files_are_hashed_again(synced, mlxk, hashed):
    m, ws = synced
    cfg = ws / "config.json"
    st = cfg.stat()
    data = bytearray(cfg.read_bytes())
    data[2] ^= 1  # same size
    cfg.write_bytes(bytes(data))
    os.utime(cfg, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime restored; ctime moved on
    res = mlxk("verify", "-f", m, "--fast", "--json")
    assert res.exit_code == 1
    assert res.json["data"]["workspaces"][0]["problems"][0]["path"] == "config.json"
    assert hashed == ["config.json"]
    hashed.clear()
    os.utime(ws / "README.md")  # touched, unchanged
    assert mlxk("plan", "-f", m, "--json").json["data"]["workspaces"][0]["op"] == "update"
    assert hashed == ["README.md"]  # config.json: its new hash is cached under its new key


def test_list_and_show_never_create_the_cache(tmp_path, mlxk, monkeypatch):
    shutil.copytree(DEMO_MODEL, tmp_path / "demo-model")
    m = str(
        write_manifest(tmp_path, "version: 1\nworkspaces:\n  a:\n    source: path:demo-model\n")
    )
    assert mlxk("lock", "-f", m).exit_code == 0
    assert mlxk("sync", "-f", m, "--frozen").exit_code == 0
    cache = tmp_path / "store" / "hashcache.sqlite"
    before = cache.stat().st_mtime_ns
    (tmp_path / "models" / "a" / "README.md").write_text("edited")
    assert mlxk("list", "-f", m).exit_code == 0
    assert mlxk("show", "-f", m, "a").exit_code == 0
    assert cache.stat().st_mtime_ns == before
    cache.unlink()
    assert mlxk("list", "-f", m).exit_code == 0
    assert not cache.exists()


def test_store_blobs_are_not_hashed_again_by_the_next_process(synced, mlxk, monkeypatch):
    """Blobs enter the store hashed; a later sync trusts them while their stat is unchanged
    (read-only, same inode/size/mtime/ctime) and rehashes one that was touched. With copies
    (--link copy) nothing else touches a blob."""
    from mlxk import store

    m, ws = synced
    shutil.rmtree(ws)
    assert mlxk("sync", "-f", m, "--link", "copy").exit_code == 0
    calls = []
    real = store.hash_file
    monkeypatch.setattr(store, "hash_file", lambda p, *a, **k: (calls.append(p), real(p))[1])
    shutil.rmtree(ws)
    assert mlxk("sync", "-f", m, "--link", "copy").exit_code == 0
    assert calls == []
    blob = next(p for p in (ws.parent.parent / "store" / "blobs").rglob("*") if p.is_file())
    os.utime(blob)  # a blob whose stat moved is hashed again before use
    shutil.rmtree(ws)
    assert mlxk("sync", "-f", m, "--link", "copy").exit_code == 0
    assert [p.name for p in calls] == [blob.name]
    assert mlxk("verify", "-f", m).exit_code == 0


def test_blobs_a_removed_hardlinked_workspace_shared_are_hashed_again(
    tmp_path, mlxk, monkeypatch, no_reflinks
):
    """The price of hardlinks (the default without reflinks): once a workspace sharing a blob's
    inode is gone, nothing tells whether it was written through, so the blob's next use
    rehashes it (its ctime moved); a no-op sync with the workspace in place reads nothing."""
    from mlxk import store

    shutil.copytree(DEMO_MODEL, tmp_path / "demo-model")
    m = str(
        write_manifest(tmp_path, "version: 1\nworkspaces:\n  a:\n    source: path:demo-model\n")
    )
    assert mlxk("sync", "-f", m).exit_code == 0
    ws = tmp_path / "models" / "a"
    assert (ws / "config.json").stat().st_nlink == 2
    calls = []
    real = store.hash_file
    monkeypatch.setattr(store, "hash_file", lambda p, *a, **k: (calls.append(p), real(p))[1])
    assert mlxk("sync", "-f", m).exit_code == 0
    assert calls == []
    shutil.rmtree(ws)
    assert mlxk("sync", "-f", m).exit_code == 0
    assert len(calls) == len([p for p in DEMO_MODEL.iterdir() if p.is_file()])
