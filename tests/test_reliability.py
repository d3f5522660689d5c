"""A provisioning tool must never lose a working model: kill -9 at ten points of a sync,
two syncs at once, and a disk that fills up. Real processes, real files, a real hub."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from mlxk import faults
from mlxk import lock as lockfile
from tests.hubserver import unique_repo_id
from tests.support import DEMO_MODEL, validate_output, write_manifest


def tree(path):
    """{relpath: sha256} of every file under a workspace (sentinel and .hf_cache included)."""
    if not path.exists():
        return None
    return {
        p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def mlxk_proc(*args, env=None, **kw):
    return subprocess.run(
        [sys.executable, "-m", "mlxk.cli", *args],
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
        **kw,
    )


def manifest(repo, rev, bits):
    return (
        f"version: 1\nhome: models\nworkspaces:\n  a:\n    source: hf://{repo}@{rev}\n"
        f"  q:\n    source: path:demo-model\n    steps:\n"
        f"      - convert: {{quantize: {{bits: {bits}, group_size: 64}}}}\n"
    )


@pytest.fixture
def versions(hub, hf_env, demo_files):
    """A repo at v1, and v2 with new weights (so v2's sync downloads an LFS file)."""
    repo = unique_repo_id("crash")
    hub.create_repo(repo, demo_files)
    hub.tag(repo, "v1")
    weights = bytearray(demo_files["model.safetensors"])
    weights[-64:] = bytes(64)
    hub.commit(repo, {"model.safetensors": bytes(weights), "README.md": b"v2\n"})
    hub.tag(repo, "v2")
    return repo


def project(path, repo, rev, bits):
    path.mkdir(parents=True, exist_ok=True)
    if not (path / "demo-model").exists():
        shutil.copytree(DEMO_MODEL, path / "demo-model")
    return str(write_manifest(path, manifest(repo, rev, bits)))


@pytest.fixture
def expected(versions, tmp_path_factory):
    """The lock and trees of v1 and of v2, from a clean control project (locks are
    byte-identical across projects: no absolute paths, no timestamps)."""
    out = {}
    base = tmp_path_factory.mktemp("control")
    env = dict(os.environ, MLXK_STORE=str(base / "store"))
    for rev, bits in (("v1", 4), ("v2", 8)):
        m = project(base / rev, versions, rev, bits)
        assert mlxk_proc("sync", "-f", m, env=env).returncode == 0
        out[rev] = {
            "lock": (base / rev / "mlxk.lock").read_text(),
            "a": tree(base / rev / "models" / "a"),
            "q": tree(base / rev / "models" / "q"),
        }
    return out


@pytest.mark.parametrize("point", faults.POINTS)
def test_kill_9_at_every_point_loses_nothing(point, versions, expected, tmp_path):
    m = project(tmp_path, versions, "v1", 4)
    assert mlxk_proc("sync", "-f", m).returncode == 0
    project(tmp_path, versions, "v2", 8)  # manifest changed: sync re-locks, rebuilds, switches
    killed = mlxk_proc("sync", "-f", m, env=dict(os.environ, MLXK_FAULT=point))
    assert killed.returncode == -9, (point, killed.stderr)
    # Whole: the lock is the old one or the new one; each workspace is v1 or v2, never a mix.
    lock = (tmp_path / "mlxk.lock").read_text()
    assert lock in (expected["v1"]["lock"], expected["v2"]["lock"]), point
    for ws in ("a", "q"):
        got = tree(tmp_path / "models" / ws)
        if got is None and point == "switch-between":
            # Without RENAME_EXCHANGE the switch is two renames; killed between them, the old
            # workspace is whole beside it, and the next sync puts it back first.
            (aside,) = (tmp_path / "models" / ".mlxk-staging").glob(f"{ws}.old.*")
            got = tree(aside)
        assert got in (expected["v1"][ws], expected["v2"][ws]), (point, ws)
    # The next sync cleans up, completes, and fetches only what had not reached the store.
    stored = {p.name for p in (tmp_path / "store" / "blobs").rglob("*") if p.is_file()}
    v2 = lockfile.loads(expected["v2"]["lock"]).workspaces["a"].files
    unfinished = [f.path for f in v2 if f.hex not in stored]
    again = mlxk_proc("sync", "-f", m, "--json")
    assert again.returncode == 0, again.stderr
    report = validate_output(json.loads(again.stdout))["data"]
    assert report["fetched"]["files"] == len(unfinished), (point, unfinished, report["fetched"])
    assert (tmp_path / "mlxk.lock").read_text() == expected["v2"]["lock"]
    for ws in ("a", "q"):
        assert tree(tmp_path / "models" / ws) == expected["v2"][ws]
    assert mlxk_proc("verify", "-f", m).returncode == 0
    staging = tmp_path / "models" / ".mlxk-staging"
    assert not staging.exists()  # a finished sync leaves no staging directory
    store_tmp = tmp_path / "store" / "tmp"
    assert not list(store_tmp.glob("build-*")) if store_tmp.exists() else True


def test_two_syncs_run_one_after_the_other(versions, tmp_path):
    m = project(tmp_path, versions, "v1", 4)
    assert mlxk_proc("lock", "-f", m).returncode == 0
    first = subprocess.Popen(
        [sys.executable, "-m", "mlxk.cli", "sync", "-f", m],
        env=dict(os.environ, MLXK_FAULT_SLEEP="switch-before:3"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    staging = tmp_path / "models" / ".mlxk-staging"
    deadline = time.monotonic() + 60
    while not any(p.name.startswith("a.new.") for p in staging.glob("*")):  # holds the lock
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.05)
    t0 = time.monotonic()
    second = mlxk_proc("sync", "-f", m)
    waited = time.monotonic() - t0
    assert first.wait(60) == 0
    assert second.returncode == 0, second.stderr
    assert "waiting for another mlxk using models" in second.stderr
    assert waited > 1.0
    assert mlxk_proc("verify", "-f", m).returncode == 0


def test_two_projects_sharing_a_store_at_once(versions, tmp_path):
    procs = []
    for name in ("p1", "p2"):
        m = project(tmp_path / name, versions, "v2", 4)
        procs.append(
            (
                m,
                subprocess.Popen(
                    [sys.executable, "-m", "mlxk.cli", "sync", "-f", m],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                ),
            )
        )
    for m, p in procs:
        assert p.wait(120) == 0, p.stderr.read()
        assert mlxk_proc("verify", "-f", m).returncode == 0
    assert tree(tmp_path / "p1" / "models" / "a") == tree(tmp_path / "p2" / "models" / "a")


def test_full_disk_is_refused_and_the_old_workspace_kept(hub, hf_env, tmp_path, demo_files):
    repo = unique_repo_id("disk")
    small = {k: v for k, v in demo_files.items() if k != "model.safetensors"}
    hub.create_repo(repo, small)
    hub.tag(repo, "v1")
    hub.commit(repo, {"big.safetensors": os.urandom(300_000)})
    hub.tag(repo, "v2")
    home = tmp_path / "models"
    home.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(home)], check=True)
    try:
        m = str(
            write_manifest(tmp_path, f"version: 1\nworkspaces:\n  a:\n    source: hf://{repo}@v1\n")
        )
        assert mlxk_proc("sync", "-f", m).returncode == 0
        before = tree(home / "a")
        write_manifest(tmp_path, f"version: 1\nworkspaces:\n  a:\n    source: hf://{repo}@v2\n")
        assert mlxk_proc("lock", "-f", m).returncode == 0
        res = mlxk_proc("sync", "-f", m, "--frozen", "--json")
        assert res.returncode == 3
        err = validate_output(json.loads(res.stdout))["error"]
        assert err["type"] == "disk_error" and "not enough space" in err["message"]
        assert tree(home / "a") == before
    finally:
        subprocess.run(["umount", str(home)], check=True)
