"""The manifest cache: sync leaves a parsed manifest's facts beside it, verify starts from them
without YAML, and every change that could make them wrong is a miss (a parse), never a wrong
home, a missed staleness warning or an error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlxk.manifest import load_manifest
from mlxk.manifest_cache import CACHE_DIR, ManifestFacts, entry_path, recall, remember
from mlxk.project import Project
from mlxk.settings import Settings
from tests.support import run_mlxk, write_manifest

pytestmark = pytest.mark.unit

BODY = "version: 1\nworkspaces:\n  a:\n    source: path:src\n"


def synced(root: Path, body: str = BODY) -> Path:
    """A project with a local source, synced (which writes the cache entry)."""
    (root / "src").mkdir(parents=True)
    (root / "src" / "config.json").write_text('{"model_type": "llama"}')
    (root / "src" / "model.safetensors").write_bytes(os.urandom(4096))
    path = write_manifest(root, body)
    Project.load(path).sync()
    return path


def verify(path: Path, *extra: str):
    res = run_mlxk("verify", "-f", str(path), "--json", *extra)
    return res, res.json["data"]


def test_sync_writes_one_git_ignored_entry_and_verify_recalls_it(tmp_path):
    path = synced(tmp_path / "p")
    cache = path.parent / CACHE_DIR
    assert sorted(p.name for p in cache.iterdir()) == [".gitignore", "models.yaml.json"]
    assert (cache / ".gitignore").read_text().splitlines()[-1] == "*"
    facts = recall(path, path.read_text(), Settings.from_env())
    manifest = load_manifest(path)
    assert isinstance(facts, ManifestFacts)
    assert (facts.home, facts.store, facts.digest()) == (
        manifest.home,
        manifest.store,
        manifest.digest(),
    )
    project = Project.load(path)
    assert project.facts == facts and "manifest" not in project.__dict__  # not parsed
    assert project.verify().ok and "manifest" not in project.__dict__


def test_verify_from_the_cache_imports_no_yaml_and_a_miss_does(tmp_path):
    path = synced(tmp_path / "p")
    probe = (
        "import sys; from mlxk.cli import main\n"
        f"sys.argv = ['mlxk', 'verify', '-q', '-f', {str(path)!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "print('yaml' in sys.modules, 'mlxk.manifest' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}

    def loaded() -> str:
        out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    assert loaded() == "False False"
    shutil.rmtree(path.parent / CACHE_DIR)
    assert loaded() == "True True"
    assert not (path.parent / CACHE_DIR).exists()  # verify never writes it


def test_a_comment_edit_is_a_miss_and_still_fresh(tmp_path):
    path = synced(tmp_path / "p")
    path.write_text("# the same workspaces\n" + BODY)
    assert recall(path, path.read_text(), Settings.from_env()) is None
    res, data = verify(path)
    assert res.exit_code == 0 and "out of date" not in res.stderr


def test_a_changed_workspace_is_warned_about_though_the_old_entry_is_there(tmp_path):
    path = synced(tmp_path / "p")
    path.write_text(BODY + "    exclude: ['*.md']\n")
    res = run_mlxk("verify", "-f", str(path))
    assert res.exit_code == 0
    assert "out of date" in res.stderr and "a: changed in the manifest" in res.stderr
    res = run_mlxk("verify", "-f", str(path), "--locked")
    assert res.exit_code == 2 and "out of date" in res.stderr


def test_a_copied_project_verifies_its_own_workspaces_not_the_originals(tmp_path):
    path = synced(tmp_path / "p")
    shutil.copytree(path.parent, tmp_path / "copy", symlinks=True)
    copy = tmp_path / "copy" / "models.yaml"
    (tmp_path / "copy" / "models" / "a" / "model.safetensors").write_bytes(b"tampered")
    assert recall(copy, copy.read_text(), Settings.from_env()) is None  # keyed by its path
    res, data = verify(copy)
    problems = data["workspaces"][0]["problems"]
    assert res.exit_code == 1 and [p["path"] for p in problems] == ["model.safetensors"]
    assert verify(path)[0].exit_code == 0


def test_another_workspace_home_is_a_miss(tmp_path, monkeypatch):
    path = synced(tmp_path / "p")
    monkeypatch.setenv("MLXK_WORKSPACE_HOME", str(tmp_path / "elsewhere"))
    assert recall(path, path.read_text(), Settings.from_env()) is None
    res, _ = verify(path)
    assert res.exit_code == 1  # the workspace is not synced there


def test_home_is_resolved_again_so_a_repointed_symlink_is_followed(tmp_path):
    root = tmp_path / "p"
    root.mkdir()
    (tmp_path / "disk1").mkdir()
    (tmp_path / "disk2").mkdir()
    (root / "ws").symlink_to(tmp_path / "disk1")
    path = synced(root, BODY + "home: ws\n")
    assert (tmp_path / "disk1" / "a" / "model.safetensors").is_file()
    assert json.loads(entry_path(path).read_text())["home"] == "ws"  # as written
    (root / "ws").unlink()
    (root / "ws").symlink_to(tmp_path / "disk2")
    facts = recall(path, path.read_text(), Settings.from_env())
    assert facts is not None and facts.home == (tmp_path / "disk2").resolve()
    res, data = verify(path)
    assert res.exit_code == 1 and data["workspaces"][0]["status"] == "missing"


def _with(**fields):
    def edit(text: str) -> str:
        return json.dumps({**json.loads(text), **fields})

    return edit


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: "not json",
        lambda text: "[]",
        lambda text: '{"format": 1}',
        _with(format=2),
        _with(home=7),  # the right key, with a home that is not a path
        _with(home="../elsewhere"),  # or one the parse would refuse
        _with(store="/abs/store"),
        _with(digest=None),
    ],
)
def test_a_damaged_or_foreign_entry_is_a_miss_never_an_error(tmp_path, damage):
    path = synced(tmp_path / "p")
    target = entry_path(path)
    target.write_text(damage(target.read_text()))
    assert recall(path, path.read_text(), Settings.from_env()) is None
    assert verify(path)[0].exit_code == 0


def test_a_cache_directory_that_cannot_be_made_costs_only_the_entry(tmp_path):
    root = tmp_path / "p"
    path = write_manifest(root, BODY)
    manifest = load_manifest(path)
    (root / CACHE_DIR).write_text("a file where the directory would go")
    remember(manifest, Settings.from_env())  # no error
    assert not entry_path(path).exists()
    assert [p.name for p in root.iterdir()] == [CACHE_DIR, "models.yaml"]  # no temp file left
