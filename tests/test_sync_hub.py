"""lock → plan → sync → verify against a real hub (olah) serving real git + LFS repos."""

from __future__ import annotations

import json
import os

from mlxk import lock as lockfile
from tests.hubserver import unique_repo_id
from tests.support import write_manifest


def manifest_for(project, body):
    return str(write_manifest(project, "version: 1\nworkspaces:\n" + body))


def test_lock_resolves_branch_and_tag_to_commits_with_every_hash(
    hub, hf_env, tmp_path, mlxk, demo_files
):
    repo = unique_repo_id()
    first = hub.create_repo(repo, demo_files)
    hub.tag(repo, "v1")
    second = hub.commit(repo, {"config.json": demo_files["config.json"] + b"\n"})
    m = manifest_for(
        tmp_path,
        f"  at-main:\n    source: hf://{repo}@main\n"
        f"  at-tag:\n    source: {{hf: {repo}, revision: v1}}\n",
    )
    res = mlxk("lock", "-f", m, "--json")
    assert res.exit_code == 0, res
    lock = lockfile.read(tmp_path / "mlxk.lock")
    assert lock.workspaces["at-main"].source.commit == second
    assert lock.workspaces["at-tag"].source.commit == first
    files = {f.path: f for f in lock.workspaces["at-tag"].files}
    assert set(files) == set(demo_files) | {".gitattributes"}
    st = files["model.safetensors"]
    assert st.hub_hash is None and st.size == len(demo_files["model.safetensors"])  # LFS: sha256
    cfg = files["config.json"]
    assert cfg.hub_hash.startswith("gitsha1:") and cfg.hash.startswith("sha256:")  # git blob
    assert res.json["data"]["workspaces"]["at-main"]["commit"] == second


def test_lock_twice_is_byte_identical(hub, hf_env, tmp_path, mlxk, demo_files):
    repo = unique_repo_id()
    hub.create_repo(repo, demo_files)
    texts = []
    for i in range(2):
        project = tmp_path / f"p{i}"
        m = manifest_for(project, f"  m:\n    source: hf://{repo}@main\n")
        assert mlxk("lock", "-f", m).exit_code == 0
        texts.append((project / "mlxk.lock").read_bytes())
    assert texts[0] == texts[1]
    assert b"127.0.0.1" not in texts[0]  # no endpoint, no absolute paths
    assert str(tmp_path).encode() not in texts[0]


def test_sync_writes_real_files_only_never_the_hf_cache(hub, hf_env, tmp_path, mlxk, demo_files):
    repo = unique_repo_id()
    hub.create_repo(repo, demo_files)
    m = manifest_for(tmp_path, f"  m:\n    source: hf://{repo}@main\n")
    res = mlxk("sync", "-f", m, "--json")  # no lock yet: sync locks first
    assert res.exit_code == 0, res
    assert res.json["data"]["lock"]["workspaces"]["m"]["action"] == "resolved"
    ws = tmp_path / "models" / "m"
    for name, data in demo_files.items():
        assert (ws / name).read_bytes() == data
    for root, dirs, files in os.walk(ws):
        for n in dirs + files:
            assert not os.path.islink(os.path.join(root, n))
    assert not (hf_env / "hub").exists()  # the user's HF cache is never written
    assert [p for p in hf_env.rglob("*")] == []
    sentinel = json.loads((ws / ".mlxk_workspace.json").read_text())
    lock = lockfile.read(tmp_path / "mlxk.lock")
    assert sentinel["source"]["commit"] == lock.workspaces["m"].source.commit
    assert sentinel["content_hash"] == lock.workspaces["m"].content_hash
    assert mlxk("verify", "-f", m).exit_code == 0
    assert mlxk("plan", "-f", m).exit_code == 0


def test_include_exclude_select_files(hub, hf_env, tmp_path, mlxk, demo_files):
    repo = unique_repo_id()
    hub.create_repo(repo, demo_files)
    m = manifest_for(
        tmp_path,
        f"  m:\n    source: hf://{repo}@main\n    include: ['*.json', '*.safetensors']\n"
        "    exclude: ['special_tokens_map.json', '*.index.json']\n",
    )
    assert mlxk("sync", "-f", m).exit_code == 0
    got = sorted(p.name for p in (tmp_path / "models" / "m").iterdir())
    assert got == [
        ".mlxk_workspace.json",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    bad = manifest_for(
        tmp_path / "b", f"  m:\n    source: hf://{repo}@main\n    include: ['*.gguf']\n"
    )
    res = mlxk("lock", "-f", bad)
    assert res.exit_code == 2 and "include/exclude select no files" in res.stderr


def test_moved_branch_is_kept_until_upgrade(hub, hf_env, tmp_path, mlxk, demo_files):
    repo = unique_repo_id()
    first = hub.create_repo(repo, demo_files)
    other = unique_repo_id()
    hub.create_repo(other, demo_files)
    m = manifest_for(
        tmp_path, f"  a:\n    source: hf://{repo}@main\n  b:\n    source: hf://{other}@main\n"
    )
    assert mlxk("sync", "-f", m).exit_code == 0
    second = hub.commit(repo, {"README.md": b"new readme\n"})
    hub.commit(other, {"README.md": b"moved too\n"})
    res = mlxk("lock", "-f", m, "--json")
    assert res.json["data"]["workspaces"]["a"]["action"] == "kept"
    assert lockfile.read(tmp_path / "mlxk.lock").workspaces["a"].source.commit == first
    res = mlxk("lock", "-f", m, "--upgrade", "a", "--json")
    assert res.exit_code == 0, res
    assert res.json["data"]["workspaces"]["a"]["action"] == "upgraded"
    assert res.json["data"]["workspaces"]["b"]["action"] == "kept"
    assert lockfile.read(tmp_path / "mlxk.lock").workspaces["a"].source.commit == second
    plan = mlxk("plan", "-f", m, "--json")
    assert plan.exit_code == 1 and plan.json["status"] == "changes"
    a = next(w for w in plan.json["data"]["workspaces"] if w["name"] == "a")
    assert [(f["path"], f["op"]) for f in a["files"]] == [("README.md", "replace")]
    res = mlxk("sync", "-f", m, "--json")
    assert res.json["data"]["workspaces"] == [
        {
            "name": "a",
            "op": "update",
            "added": 0,
            "replaced": 1,
            "deleted": 0,
            "kept": len(demo_files),
            "bytes_written": len(b"new readme\n"),
        }
    ]
    assert (tmp_path / "models" / "a" / "README.md").read_bytes() == b"new readme\n"
    res = mlxk("lock", "-f", m, "--upgrade", "--json")
    assert res.json["data"]["workspaces"]["b"]["action"] == "upgraded"


def test_corrupted_download_stops_sync_and_keeps_the_old_workspace(
    hub, hf_env, tmp_path, mlxk, demo_files
):
    repo = unique_repo_id()
    hub.create_repo(repo, demo_files)
    m = manifest_for(tmp_path, f"  m:\n    source: hf://{repo}@main\n")
    assert mlxk("sync", "-f", m).exit_code == 0
    ws = tmp_path / "models" / "m"
    before = {p.name: p.read_bytes() for p in ws.iterdir()}
    # New weights on the server, then the server-side LFS object is corrupted after locking.
    weights = bytearray(demo_files["model.safetensors"])
    weights[-1] ^= 0xFF
    hub.commit(repo, {"model.safetensors": bytes(weights)})
    assert mlxk("lock", "-f", m, "--upgrade").exit_code == 0
    import hashlib

    obj = hub.lfs_object_path(repo, hashlib.sha256(weights).hexdigest())
    obj.chmod(0o644)
    obj.write_bytes(bytes(weights[:-10]) + b"X" * 10)
    res = mlxk("sync", "-f", m, "--json")
    assert res.exit_code == 3, res
    assert res.json["error"]["type"] == "integrity_error"
    assert "model.safetensors" in res.json["error"]["message"]
    assert {p.name: p.read_bytes() for p in ws.iterdir()} == before  # nothing switched
    assert not list((tmp_path / "models" / ".mlxk-staging").glob("m.*"))  # staging cleaned


def test_locked_fails_on_stale_lock_and_frozen_never_contacts_the_hub(
    hub, hf_env, tmp_path, mlxk, demo_files, monkeypatch
):
    repo = unique_repo_id()
    hub.create_repo(repo, demo_files)
    m = manifest_for(tmp_path, f"  m:\n    source: hf://{repo}@main\n")
    res = mlxk("sync", "-f", m, "--locked", "--json")
    assert res.exit_code == 2 and "no lock file" in res.json["error"]["message"]
    assert mlxk("lock", "-f", m).exit_code == 0
    assert mlxk("sync", "-f", m, "--locked").exit_code == 0
    manifest_for(tmp_path, f"  m:\n    source: hf://{repo}@main\n    exclude: ['README.md']\n")
    res = mlxk("sync", "-f", m, "--locked")
    assert res.exit_code == 2
    assert "m: changed in the manifest since it was locked" in res.stderr
    # --frozen: the lock as is, from the store, with the hub unreachable.
    import shutil

    shutil.rmtree(tmp_path / "models" / "m")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    res = mlxk("sync", "-f", m, "--frozen", "--json")
    assert res.exit_code == 0, res
    assert mlxk("verify", "-f", m).exit_code == 0


def test_hub_errors_are_clear_exit_3(hub, hf_env, tmp_path, mlxk, demo_files, monkeypatch):
    repo = unique_repo_id()
    hub.create_repo(repo, demo_files)
    cases = {
        "org/does-not-exist@main": "repository not found",
        f"{repo}@no-such-branch": "not found",
    }
    for i, (src, expected) in enumerate(cases.items()):
        m = manifest_for(tmp_path / str(i), f"  m:\n    source: hf://{src}\n")
        res = mlxk("lock", "-f", m, "--json")
        assert res.exit_code == 3, res
        assert expected in res.json["error"]["message"]
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    m = manifest_for(tmp_path / "down", f"  m:\n    source: hf://{repo}@main\n")
    res = mlxk("sync", "-f", m)
    assert res.exit_code == 3 and "cannot reach the hub" in res.stderr
    assert "Traceback" not in res.stderr
    monkeypatch.setenv("HF_ENDPOINT", "127.0.0.1:9")
    res = mlxk("sync", "-f", m)
    assert res.exit_code == 2 and "HF_ENDPOINT=127.0.0.1:9 has no scheme" in res.stderr


def test_token_never_written_anywhere(hub, hf_env, tmp_path, mlxk, demo_files, monkeypatch):
    secret = "hf_SECRETtoken0123456789abcdefXYZ"
    monkeypatch.setenv("HF_TOKEN", secret)
    repo = unique_repo_id()
    hub.create_repo(repo, demo_files)
    m = manifest_for(tmp_path, f"  m:\n    source: hf://{repo}@main\n")
    outputs = [mlxk(cmd, "-f", m, "--json").stdout for cmd in ("lock", "sync", "plan", "verify")]
    bad = manifest_for(tmp_path / "bad", "  m:\n    source: hf://org/missing@main\n")
    outputs.append(mlxk("sync", "-f", bad, "--json").stdout)
    outputs.append(mlxk("sync", "-f", bad).stderr)
    for text in outputs:
        assert secret not in text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
