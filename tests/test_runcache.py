"""The run cache: a step built once on this machine is reused by any project whose step has
the same fingerprint, and a damaged or tampered cache entry only means building again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mlxk import lock as lockfile
from tests.test_airgap import demo_project


def sync_forbidding_converts(manifest: str) -> subprocess.CompletedProcess:
    """`mlxk sync` in a process that is killed (SIGKILL) if a converter starts."""
    return subprocess.run(
        [sys.executable, "-m", "mlxk.cli", "sync", "-f", manifest, "--json"],
        env=dict(os.environ, MLXK_FAULT="convert-mid"),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_step_built_by_one_project_is_reused_by_another(tmp_path, mlxk):
    a = demo_project(tmp_path / "a")
    assert mlxk("sync", "-f", a).exit_code == 0
    b = demo_project(tmp_path / "b")  # another project, same model, same step, same store
    proc = sync_forbidding_converts(b)
    assert proc.returncode == 0, proc.stderr
    lock_a = lockfile.read(Path(a).with_name("mlxk.lock"))
    lock_b = lockfile.read(Path(b).with_name("mlxk.lock"))
    assert lock_a.workspaces == lock_b.workspaces
    assert mlxk("verify", "-f", b).exit_code == 0


def test_a_run_cache_entry_is_not_trusted_beyond_the_store(tmp_path, mlxk):
    a = demo_project(tmp_path / "a")
    assert mlxk("sync", "-f", a).exit_code == 0
    runs = list((tmp_path / "store" / "runs").glob("*.json"))
    assert len(runs) == 1
    doc = json.loads(runs[0].read_text())
    doc["files"][0]["path"] = "../../escaped"  # tampered: must never be believed
    runs[0].write_text(json.dumps(doc))
    b = demo_project(tmp_path / "b")
    assert sync_forbidding_converts(b).returncode != 0  # it had to build
    assert mlxk("sync", "-f", b).exit_code == 0
    assert mlxk("verify", "-f", b).exit_code == 0
    assert not (tmp_path / "b" / "escaped").exists()


def test_rebuild_runs_the_step_even_when_the_run_cache_has_it(tmp_path, mlxk):
    a = demo_project(tmp_path / "a")
    assert mlxk("sync", "-f", a).exit_code == 0
    proc = subprocess.run(
        [sys.executable, "-m", "mlxk.cli", "sync", "-f", a, "--rebuild", "demo-4bit"],
        env=dict(os.environ, MLXK_FAULT="convert-mid"),
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == -9  # killed at the converter: --rebuild really builds
