from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support import DEMO_MODEL, run_mlxk

pytest_plugins = ["tests.hubserver"]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """Every test gets its own store and HF_HOME; nothing from the user's environment leaks."""
    monkeypatch.setenv("MLXK_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "user_hf_home"))
    for var in (
        "MLXK_WORKSPACE_HOME",
        "HF_TOKEN",
        "HF_HUB_OFFLINE",
        "MLXK_DEBUG",
        "MLXK_ALLOWED_SIGNERS",
    ):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def mlxk():
    """Run the real CLI in-process: mlxk("sync", "-f", path) → Result (JSON validated)."""
    return run_mlxk


@pytest.fixture
def demo_dir(tmp_path) -> Path:
    """A project directory holding a copy of the tiny demo model as a path source."""
    project = tmp_path / "project"
    shutil.copytree(DEMO_MODEL, project / "demo-model")
    return project


@pytest.fixture
def demo_files() -> dict[str, bytes]:
    """The tiny real model's files, to serve from a hub repo."""
    return {p.name: p.read_bytes() for p in sorted(DEMO_MODEL.iterdir()) if p.is_file()}


@pytest.fixture
def no_reflinks(monkeypatch):
    """This process's platform clones no file (as on ext4), whatever the test disk can do: the
    default link mode then hardlinks."""
    from mlxk import platform

    class NoClone(platform.Platform):
        def clone_file(self, src, dest) -> bool:
            return False

    real = platform.current()
    fake = NoClone(real.system, real.lookup)
    monkeypatch.setattr(platform, "current", lambda: fake)
