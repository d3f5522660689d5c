"""Air-gapped provisioning: bundles, import, --offline, runtime captures in .hf_cache, and a
proof inside a network namespace with no interfaces (unshare -rn)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlxk import lock as lockfile
from mlxk.lock import workspace_content_hash
from tests.hubserver import unique_repo_id
from tests.support import DEMO_MODEL, ROOT, write_manifest

TOKENIZER = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def demo_project(path):
    path.mkdir(parents=True)
    shutil.copytree(DEMO_MODEL, path / "demo-model")
    shutil.copy(ROOT / "manifests" / "demo.yaml", path / "models.yaml")
    return str(path / "models.yaml")


def tree(path):
    return {
        p.relative_to(path).as_posix(): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def connected(tmp_path, mlxk, monkeypatch):
    """A connected machine: the demo synced (4-bit build) and bundled as a dir and a tar."""
    monkeypatch.setenv("MLXK_STORE", str(tmp_path / "store-a"))
    m = demo_project(tmp_path / "a")
    assert mlxk("sync", "-f", m).exit_code == 0
    for out in ("models.bundle", "models.tar"):
        res = mlxk("bundle", "-f", m, str(tmp_path / "transfer" / out), "--json")
        assert res.exit_code == 0, res
    return tmp_path / "transfer"


def test_bundle_import_offline_sync_verify_run(connected, tmp_path, mlxk, monkeypatch):
    for name in ("models.bundle", "models.tar"):
        res = mlxk("verify", "--bundle", str(connected / name), "--json")
        assert res.exit_code == 0 and res.json["data"]["ok"], res
        assert res.json["data"]["blobs"] == 13
    # the other side: an empty store, no source directory, the hub unreachable
    monkeypatch.setenv("MLXK_STORE", str(tmp_path / "store-b"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    dest = tmp_path / "b"
    dest.mkdir()
    monkeypatch.chdir(dest)
    res = mlxk("import", str(connected / "models.tar"), "--json")
    assert res.exit_code == 0, res
    assert res.json["data"]["manifest"] == "models.yaml"
    m = str(dest / "models.yaml")
    assert (dest / "mlxk.lock").read_bytes() == (tmp_path / "a" / "mlxk.lock").read_bytes()
    res = mlxk("sync", "-f", m, "--offline", "--frozen", "--json")
    assert res.exit_code == 0, res
    assert mlxk("verify", "-f", m).exit_code == 0
    assert tree(dest / "models") == tree(tmp_path / "a" / "models")
    res = mlxk("run", "-f", m, "demo-4bit", "hello", "--max-tokens", "4", "--json")
    assert res.exit_code == 0 and res.json["data"]["text"]
    assert mlxk("import", str(connected / "models.tar")).exit_code == 0  # same again: fine


def test_tar_bundles_are_byte_identical(connected, tmp_path, mlxk, monkeypatch):
    monkeypatch.setenv("MLXK_STORE", str(tmp_path / "store-a"))
    res = mlxk("bundle", "-f", str(tmp_path / "a" / "models.yaml"), str(tmp_path / "again.tar"))
    assert res.exit_code == 0
    assert (tmp_path / "again.tar").read_bytes() == (connected / "models.tar").read_bytes()
    res = mlxk("bundle", "-f", str(tmp_path / "a" / "models.yaml"), str(tmp_path / "again.tar"))
    assert res.exit_code == 2  # never overwrites


def test_corrupt_missing_and_tampered_bundles_are_refused(connected, tmp_path, mlxk, monkeypatch):
    bundle = connected / "models.bundle"
    blobs = sorted((bundle / "blobs").rglob("*"))
    blobs = [b for b in blobs if b.is_file()]
    victim, gone = blobs[0], blobs[1]
    victim.chmod(0o644)
    data = bytearray(victim.read_bytes())
    data[0] ^= 1
    victim.write_bytes(bytes(data))
    gone.unlink()
    res = mlxk("verify", "--bundle", str(bundle), "--json")
    assert res.exit_code == 1 and res.json["status"] == "drift"
    problems = {(p["blob"], p["problem"]) for p in res.json["data"]["problems"]}
    assert problems == {(victim.name, "corrupt"), (gone.name, "missing")}
    monkeypatch.setenv("MLXK_STORE", str(tmp_path / "store-b"))
    dest = tmp_path / "b"
    dest.mkdir()
    monkeypatch.chdir(dest)
    res = mlxk("import", str(bundle), "--json")
    assert res.exit_code == 3 and res.json["error"]["type"] == "integrity_error"
    assert victim.name[:12] in res.json["error"]["message"]
    assert gone.name[:12] in res.json["error"]["message"]
    assert list(dest.iterdir()) == []  # no manifest, no lock
    # a lock edited inside the bundle no longer matches bundle.json
    good = connected / "models.tar"
    shutil.copytree(bundle, tmp_path / "edited")
    lock = tmp_path / "edited" / "mlxk.lock"
    lock.write_text(lock.read_text().replace('"demo-4bit"', '"demo-5bit"'))
    res = mlxk("verify", "--bundle", str(tmp_path / "edited"), "--json")
    assert res.exit_code == 3 and "does not match bundle.json" in res.json["error"]["message"]
    assert good.exists()


def test_offline_names_what_is_missing(hub, hf_env, tmp_path, mlxk, demo_files):
    repo = unique_repo_id()
    hub.create_repo(repo, demo_files)
    m = str(write_manifest(tmp_path, f"version: 1\nworkspaces:\n  m:\n    source: hf://{repo}\n"))
    res = mlxk("sync", "-f", m, "--offline", "--json")  # no lock: cannot resolve offline
    assert res.exit_code == 3 and res.json["error"]["message"].startswith("offline:")
    assert mlxk("lock", "-f", m).exit_code == 0
    shutil.rmtree(os.environ["MLXK_STORE"])
    res = mlxk("sync", "-f", m, "--offline", "--json")
    assert res.exit_code == 3
    err = res.json["error"]
    assert err["message"].startswith("offline: 8 file(s) are not in the store")
    assert "m/config.json" in err["message"]
    assert "bundle" in err["hint"]
    assert not (tmp_path / "models" / "m").exists()


def runtime_project(hub, tmp_path, demo_files):
    """A model repo without a tokenizer, and a second repo holding it (loaded at run time)."""
    model = unique_repo_id("model")
    tok = unique_repo_id("tok")
    hub.create_repo(model, {k: v for k, v in demo_files.items() if k not in TOKENIZER})
    hub.create_repo(tok, {k: demo_files[k] for k in TOKENIZER})
    hub.tag(tok, "v1")
    body = (
        f"version: 1\nworkspaces:\n  m:\n    source: hf://{model}@main\n"
        f"    runtime:\n      - {{source: 'hf://{tok}@v1', include: ['tokenizer*', "
        "'special_tokens_map.json']}\n"
    )
    return str(write_manifest(tmp_path, body)), tok


def test_runtime_dependency_is_captured_and_runs_offline(
    hub, hf_env, tmp_path, mlxk, demo_files, monkeypatch
):
    m, tok = runtime_project(hub, tmp_path, demo_files)
    # copies: the file damaged below is the workspace's own, the store's blob stays good
    res = mlxk("sync", "-f", m, "--json", "--link", "copy")
    assert res.exit_code == 0, res
    ws = tmp_path / "models" / "m"
    lock = lockfile.read(tmp_path / "mlxk.lock").workspaces["m"]
    (rt,) = lock.runtime
    cache = ws / ".hf_cache" / "hub" / f"models--{tok.replace('/', '--')}"
    assert (cache / "refs" / "v1").read_text() == rt.commit
    assert (cache / "refs" / "main").read_text() == rt.commit  # for loaders naming no revision
    snap = cache / "snapshots" / rt.commit
    assert sorted(p.name for p in snap.iterdir()) == sorted(TOKENIZER)
    assert not any(p.is_symlink() for p in ws.rglob("*"))
    assert lock.content_hash == workspace_content_hash(lock.source.files)  # runtime left out
    sentinel = json.loads((ws / ".mlxk_workspace.json").read_text())
    assert sentinel["runtime"][0]["commit"] == rt.commit
    # offline: the hub gone, HF_HOME=<ws>/.hf_cache; the tokenizer comes from the capture
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    res = mlxk("run", "-f", m, "m", "hello", "--max-tokens", "4", "--json")
    assert res.exit_code == 0, res
    assert mlxk("verify", "-f", m).exit_code == 0  # running wrote nothing into the workspace
    assert not (hf_env / "hub").exists()
    (snap / "tokenizer.json").write_text("{}")
    res = mlxk("verify", "-f", m, "--json")
    assert res.exit_code == 1
    (problem,) = res.json["data"]["workspaces"][0]["problems"]
    assert problem["path"].endswith(f"snapshots/{rt.commit}/tokenizer.json")
    # the bundle carries the runtime capture too
    assert mlxk("sync", "-f", m).exit_code == 0
    assert mlxk("bundle", "-f", m, str(tmp_path / "rt.tar")).exit_code == 0
    assert mlxk("verify", "--bundle", str(tmp_path / "rt.tar")).exit_code == 0


LOADERS = """
import sys
from huggingface_hub import hf_hub_download, snapshot_download
from transformers import AutoTokenizer
repo, commit = sys.argv[1:]
for rev in (None, "v1", commit):
    kw = {"revision": rev} if rev else {}
    print(hf_hub_download(repo, "tokenizer.json", **kw))
    print(snapshot_download(repo, local_files_only=True, **kw))
    print(type(AutoTokenizer.from_pretrained(repo, **kw)).__name__)
"""


def test_loaders_find_a_capture_pinned_at_a_tag_by_no_revision_the_tag_or_the_commit(
    hub, hf_env, tmp_path, mlxk, demo_files
):
    """A runtime repo pinned at v1: refs/main and refs/v1 point at its commit, so a loader
    that names no revision finds it offline as well as one that names v1 or the commit."""
    model, tok = unique_repo_id("model"), unique_repo_id("tok")
    hub.create_repo(model, {k: v for k, v in demo_files.items() if k not in TOKENIZER})
    hub.create_repo(tok, {k: demo_files[k] for k in (*TOKENIZER, "config.json")})
    hub.tag(tok, "v1")
    hub.commit(tok, {"README.md": b"main moved on"})  # main is no longer v1
    body = (
        f"version: 1\nworkspaces:\n  m:\n    source: hf://{model}@main\n"
        f"    runtime: [hf://{tok}@v1]\n"
    )
    m = str(write_manifest(tmp_path, body))
    assert mlxk("sync", "-f", m).exit_code == 0
    (rt,) = lockfile.read(tmp_path / "mlxk.lock").workspaces["m"].runtime
    ws = tmp_path / "models" / "m"
    env = dict(os.environ, HF_HOME=str(ws / ".hf_cache"), HF_HUB_OFFLINE="1")
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"
    p = subprocess.run(
        [sys.executable, "-c", LOADERS, tok, rt.commit], env=env, capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 9 and all(f"snapshots/{rt.commit}" in x for x in lines[0::3])
    assert mlxk("verify", "-f", m).exit_code == 0  # the loaders wrote nothing


def cli(args, env, cwd=None, netns=False):
    cmd = [sys.executable, "-m", "mlxk.cli", *args]
    if netns:
        cmd = ["unshare", "-rn", *cmd]
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_inside_a_network_namespace_with_no_network(hub, hf_env, tmp_path, demo_files):
    """Connected side: sync from the hub and bundle. Isolated side (unshare -rn): sync
    --offline --from the bundle, verify and run pass; a plain sync fails cleanly."""
    m, _ = runtime_project(hub, tmp_path / "a", demo_files)
    env = dict(os.environ, MLXK_STORE=str(tmp_path / "store-a"))
    assert cli(["sync", "-f", m], env).returncode == 0
    assert cli(["bundle", "-f", m, str(tmp_path / "models.tar")], env).returncode == 0
    iso = dict(env, MLXK_STORE=str(tmp_path / "store-b"), HF_HOME=str(tmp_path / "hf-b"))
    dest = tmp_path / "b"
    dest.mkdir()
    probe = subprocess.run(
        [
            "unshare",
            "-rn",
            sys.executable,
            "-c",
            "import socket,sys; s=socket.socket(); s.settimeout(2); "
            f"sys.exit(s.connect_ex(('127.0.0.1', {hub.port})))",
        ]
    )
    assert probe.returncode != 0  # the hub really is out of reach in there
    plain = cli(["sync", "-f", str(dest / "models.yaml")], iso, netns=True)
    assert plain.returncode == 2 and "no such manifest" in plain.stderr  # nothing imported yet
    shutil.copy(m, dest / "models.yaml")
    plain = cli(["sync", "-f", str(dest / "models.yaml")], iso, netns=True)
    assert plain.returncode == 3, plain.stderr
    assert "cannot reach the hub" in plain.stderr and "Traceback" not in plain.stderr
    offline = cli(["sync", "-f", str(dest / "models.yaml"), "--offline"], iso, netns=True)
    assert offline.returncode == 3 and offline.stderr.startswith("error: offline:")
    p = cli(
        [
            "sync",
            "--offline",
            "--from",
            str(tmp_path / "models.tar"),
            "-f",
            str(dest / "models.yaml"),
            "--json",
        ],
        iso,
        netns=True,
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["status"] == "ok"
    p = cli(["verify", "-f", str(dest / "models.yaml")], iso, netns=True)
    assert p.returncode == 0, p.stdout + p.stderr
    p = cli(
        ["run", "-f", str(dest / "models.yaml"), "m", "hello", "--max-tokens", "4"], iso, netns=True
    )
    assert p.returncode == 0 and p.stdout.strip(), p.stderr


def test_offline_builds_a_local_source_and_files_get_normal_modes(tmp_path, mlxk, monkeypatch):
    """--offline needs no network, not a full store: a path source and its convert step are
    local. And what mlxk writes for people (bundle tar, manifest, lock) is not 0600."""
    m = demo_project(tmp_path / "p")
    assert mlxk("lock", "-f", m).exit_code == 0
    monkeypatch.setenv("MLXK_STORE", str(tmp_path / "empty-store"))
    res = mlxk("sync", "-f", m, "--offline", "--json")
    assert res.exit_code == 0, res
    assert mlxk("verify", "-f", m).exit_code == 0
    assert mlxk("bundle", "-f", m, str(tmp_path / "b.tar")).exit_code == 0
    assert (tmp_path / "b.tar").stat().st_mode & 0o644 == 0o644
    assert (tmp_path / "p" / "mlxk.lock").stat().st_mode & 0o644 == 0o644


def test_gc_drops_only_blobs_no_lock_names(tmp_path, mlxk, monkeypatch):
    m = demo_project(tmp_path / "p")
    assert mlxk("sync", "-f", m).exit_code == 0
    store = tmp_path / "store" / "blobs" / "sha256"
    blobs = {p.name for p in store.rglob("*") if p.is_file()}
    res = mlxk("gc", "-f", m, "--grace", "0", "--json")
    assert res.exit_code == 0 and res.json["data"]["removed"] == 0, res
    # change the step: the old outputs are no longer named by the lock
    text = Path(m).read_text().replace("bits: 4, group_size: 32", "bits: 8, group_size: 32")
    Path(m).write_text(text)
    assert mlxk("sync", "-f", m).exit_code == 0
    res = mlxk("gc", "-f", m, "--json")  # default grace: everything is too young to go
    assert res.json["data"]["removed"] == 0 and res.json["data"]["young"] > 0
    res = mlxk("gc", "-f", m, "--grace", "0", "--dry-run", "--json")
    stale = res.json["data"]["removed"]
    assert stale > 0 and {p.name for p in store.rglob("*") if p.is_file()} >= blobs
    res = mlxk("gc", "-f", m, "--grace", "0", "--json")
    assert res.json["data"]["removed"] == stale and res.json["data"]["freed_bytes"] > 0
    assert mlxk("verify", "-f", m).exit_code == 0
    ws = tmp_path / "p" / "models"
    shutil.rmtree(ws)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    res = mlxk("sync", "-f", m, "--offline", "--json")  # what the lock names is all still here
    assert res.exit_code == 0 and res.json["data"]["fetched"]["files"] == 0, res
