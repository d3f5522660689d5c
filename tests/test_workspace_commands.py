"""clone, list, show, health and the workspace home, against olah-served repos (ADR-005 and
ADR-022 done right)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from mlxk.lock import workspace_content_hash
from tests.hubserver import unique_repo_id
from tests.support import DEMO_MODEL, write_manifest


@pytest.fixture
def repo(hub, hf_env, demo_files):
    repo_id = unique_repo_id("clone")
    hub.create_repo(repo_id, demo_files)
    hub.tag(repo_id, "v1")
    return repo_id


def snapshot(path):
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(path.rglob("*"))}


def test_clone_real_files_pinned_commit_no_hf_cache(repo, hub, hf_env, tmp_path, mlxk):
    dest = tmp_path / "ws" / "tiny"
    res = mlxk("clone", f"{repo}@v1", str(dest), "--json")
    assert res.exit_code == 0, res
    data = res.json["data"]
    assert data["commit"] == hub.rev_parse(repo, "v1")
    files = sorted(p.name for p in dest.iterdir())
    assert "model.safetensors" in files and ".mlxk_workspace.json" in files
    assert not any(p.is_symlink() for p in dest.rglob("*"))
    assert list(hf_env.rglob("*")) == []  # the user's HF cache is untouched
    sentinel = json.loads((dest / ".mlxk_workspace.json").read_text())
    assert sentinel["operation"] == "clone"
    assert sentinel["source"]["commit"] == data["commit"]  # the ADR's system left it empty
    assert sentinel["content_hash"] == data["content_hash"]
    assert not (tmp_path / "ws" / ".mlxk-staging").exists()
    res = mlxk("clone", f"{repo}@v1", str(dest), "--json")  # non-empty: refused
    assert res.exit_code == 2 and "exists and is not empty" in res.json["error"]["message"]


def test_clone_default_dir_filters_and_errors(repo, hf_env, tmp_path, mlxk, monkeypatch):
    monkeypatch.setenv("MLXK_WORKSPACE_HOME", str(tmp_path / "home"))
    res = mlxk("clone", repo, "--include", "*.json", "--exclude", "*.index.json", "--json")
    assert res.exit_code == 0, res
    ws = tmp_path / "home" / repo.split("/")[1]
    assert sorted(p.name for p in ws.iterdir() if p.name != ".mlxk_workspace.json") == [
        "config.json",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    res = mlxk("clone", "org/does-not-exist", str(tmp_path / "x"), "--json")
    assert res.exit_code == 3 and not (tmp_path / "x").exists()  # nothing half-made
    assert mlxk("clone", "not a repo", "--json").exit_code == 2


def test_clone_refuses_when_the_disk_is_too_small(repo, hf_env, tmp_path, mlxk):
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], check=True)
    try:
        res = mlxk("clone", repo, str(small / "tiny"), "--json")
        assert res.exit_code == 3 and res.json["error"]["type"] == "disk_error"
        assert "not enough space" in res.json["error"]["message"]
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_clone_add_appends_to_the_manifest_keeping_comments(repo, hf_env, tmp_path, mlxk):
    m = write_manifest(
        tmp_path,
        "# my models\nversion: 1\nworkspaces:\n  # the demo\n"
        "  demo:\n    source: path:demo-model  # local\n",
    )
    shutil.copytree(DEMO_MODEL, tmp_path / "demo-model")
    res = mlxk("clone", f"{repo}@v1", "--add", "-f", str(m), "--json")
    assert res.exit_code == 0, res
    text = m.read_text()
    assert "# my models" in text and "# the demo" in text and "# local" in text
    assert f"source: hf://{repo}@v1" in text
    name = repo.split("/")[1]
    assert (tmp_path / "models" / name / "config.json").is_file()
    assert mlxk("verify", "-f", str(m)).exit_code == 0
    res = mlxk("clone", f"{repo}@v1", "--add", "-f", str(m), "--json")
    assert res.exit_code == 2 and "exists already" in res.json["error"]["message"]


@pytest.fixture
def listed(repo, hf_env, tmp_path, mlxk, monkeypatch):
    """A manifest with a synced, an unsynced and an unlocked workspace, and a clone under
    $MLXK_WORKSPACE_HOME."""
    shutil.copytree(DEMO_MODEL, tmp_path / "demo-model")
    m = write_manifest(
        tmp_path,
        "version: 1\nhome: models\nworkspaces:\n  synced:\n    source: path:demo-model\n"
        "  later:\n    source: path:demo-model\n    include: ['*.json']\n",
    )
    assert mlxk("lock", "-f", str(m)).exit_code == 0
    assert mlxk("sync", "-f", str(m), "--frozen").exit_code == 0
    shutil.rmtree(tmp_path / "models" / "later")
    write_manifest(tmp_path, m.read_text() + "  new:\n    source: path:demo-model\n")
    monkeypatch.setenv("MLXK_WORKSPACE_HOME", str(tmp_path / "home"))
    assert mlxk("clone", f"{repo}@v1").exit_code == 0
    return str(m), tmp_path


def test_list_states_columns_and_read_only(listed, mlxk, repo):
    m, root = listed
    before = snapshot(root)
    res = mlxk("list", "-f", m, "--json")
    assert res.exit_code == 0, res
    assert res.stderr == ""  # no upstream import warnings
    rows = {w["name"]: w for w in res.json["data"]["workspaces"]}
    name = repo.split("/")[1]
    assert {n: (w["source"], w["state"]) for n, w in rows.items()} == {
        "synced": ("manifest", "clean"),
        "later": ("manifest", "missing"),
        "new": ("manifest", "unlocked"),
        name: ("ws", "clean"),
    }
    assert rows["synced"]["type"] == "chat" and rows["synced"]["origin"] == "path:demo-model"
    assert rows[name]["origin"].startswith(f"{repo}@")
    (root / "models" / "synced" / "README.md").write_text("edited")
    (root / "home" / name / "config.json").write_text("{}")
    after_edit = snapshot(root)
    rows = {w["name"]: w for w in mlxk("list", "-f", m, "--json").json["data"]["workspaces"]}
    assert rows["synced"]["state"] == "modified" and rows[name]["state"] == "modified"
    assert snapshot(root) == after_edit  # list never writes a file
    assert set(before) == set(after_edit)
    text = mlxk("list", "-f", m).stdout
    assert text.splitlines()[0].split() == ["NAME", "SOURCE", "ORIGIN", "SIZE", "TYPE", "STATE"]
    assert str(root / "models" / "synced") in mlxk("list", "-f", m, "--full-paths").stdout


def test_show_by_name_and_path_with_files(listed, mlxk, repo):
    m, root = listed
    res = mlxk("show", "-f", m, "synced", "--files", "--json")
    assert res.exit_code == 0, res
    d = res.json["data"]
    assert d["state"] == "clean" and d["modified"] is False and d["operation"] == "sync"
    assert {f["status"] for f in d["files"]} == {"ok"}
    (root / "models" / "synced" / "config.json").write_text("{}")
    d = mlxk("show", "-f", m, str(root / "models" / "synced"), "--files", "--json").json["data"]
    assert d["name"] == "synced" and d["modified"] is True
    assert {f["path"]: f["status"] for f in d["files"]}["config.json"] == "modified"
    name = repo.split("/")[1]
    text = mlxk("show", "-f", m, name).stdout
    assert "Operation: clone" in text and "Modified: no" in text
    (root / "home" / name / "README.md").write_text("edited")
    assert "Modified: yes" in mlxk("show", "-f", m, name).stdout
    assert mlxk("show", "-f", m, "nope", "--json").exit_code == 2


def test_health_good_broken_and_pickle(tmp_path, mlxk):
    shutil.copytree(DEMO_MODEL, tmp_path / "demo-model")
    m = write_manifest(
        tmp_path,
        "version: 1\nworkspaces:\n  a:\n    source: path:demo-model\n"
        "  b:\n    source: path:demo-model\n    allow_pickle: true\n",
    )
    assert mlxk("sync", "-f", str(m)).exit_code == 0
    res = mlxk("health", "-f", str(m), "--json")
    assert res.exit_code == 0 and res.json["data"]["ok"], res
    for ws in ("a", "b"):
        (tmp_path / "models" / ws / "extra.bin").write_bytes(b"\x80\x04pickle")
    res = mlxk("health", "-f", str(m), "--json")
    assert res.exit_code == 1 and res.json["status"] == "drift"
    bad = {w["name"]: [p["check"] for p in w["problems"]] for w in res.json["data"]["workspaces"]}
    assert bad == {"a": ["pickle"], "b": []}
    os.remove(tmp_path / "models" / "a" / "tokenizer.json")
    res = mlxk("health", "-f", str(m), "a")
    assert res.exit_code == 1 and "tokenizer" in res.stdout
    res = mlxk("health", str(DEMO_MODEL), "--json")  # any directory, no manifest needed
    assert res.exit_code == 0


def test_empty_env_vars_count_as_unset(tmp_path, mlxk, monkeypatch):
    shutil.copytree(DEMO_MODEL, tmp_path / "demo-model")
    m = write_manifest(tmp_path, "version: 1\nworkspaces:\n  a:\n    source: path:demo-model\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HOME", "")
    monkeypatch.setenv("MLXK_WORKSPACE_HOME", "")
    assert mlxk("sync", "-f", str(m)).exit_code == 0
    assert (tmp_path / "models" / "a" / "config.json").is_file()
    assert not (tmp_path / "hub").exists() and not (tmp_path / "token").exists()


def test_workspace_on_another_volume_than_the_hf_cache(repo, tmp_path, mlxk, monkeypatch):
    shm = tmp_path / "shm"
    shm.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(shm)], check=True)
    try:
        monkeypatch.setenv("HF_HOME", str(shm / "hf"))
        assert os.stat(shm).st_dev != os.stat(tmp_path).st_dev
        res = mlxk("clone", repo, str(tmp_path / "ws"), "--json")
        assert res.exit_code == 0, res
        assert not (shm / "hf").exists()
    finally:
        subprocess.run(["umount", str(shm)], check=True)


def test_content_hash_recomputes_with_sha256sum(tmp_path, mlxk):
    """docs/workspace.md: another tool recomputes the content hash with coreutils."""
    shutil.copytree(DEMO_MODEL, tmp_path / "demo-model")
    m = write_manifest(tmp_path, "version: 1\nworkspaces:\n  a:\n    source: path:demo-model\n")
    assert mlxk("sync", "-f", str(m)).exit_code == 0
    ws = tmp_path / "models" / "a"
    script = (
        "find . -type f ! -name .mlxk_workspace.json ! -path './.hf_cache/*' "
        "-printf '%P\\n' | LC_ALL=C sort | xargs -d '\\n' sha256sum | sha256sum"
    )
    out = subprocess.run(["sh", "-c", script], cwd=ws, capture_output=True, text=True, check=True)
    sentinel = json.loads((ws / ".mlxk_workspace.json").read_text())
    assert sentinel["content_hash"] == "sha256:" + out.stdout.split()[0]
    files = [
        (p.name, "sha256:" + __import__("hashlib").sha256(p.read_bytes()).hexdigest())
        for p in ws.iterdir()
        if p.name != ".mlxk_workspace.json"
    ]
    from mlxk.lock import FileEntry

    assert sentinel["content_hash"] == workspace_content_hash(
        [FileEntry(n, 0, h) for n, h in files]
    )
