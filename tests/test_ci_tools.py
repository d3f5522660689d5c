"""Lockfile checks for CI (lock --check, --refresh), validate, schema, init/add, shell
completion, and the pre-commit hook run for real."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import jsonschema

from mlxk.manifest import manifest_schema
from tests.hubserver import unique_repo_id
from tests.support import DEMO_MODEL, ROOT, write_manifest

BODY = "version: 1\nworkspaces:\n  a:\n    source: path:demo-model\n"


def project(tmp_path, body=BODY):
    shutil.copytree(DEMO_MODEL, tmp_path / "demo-model")
    return str(write_manifest(tmp_path, body))


def test_lock_check_offline(tmp_path, mlxk, monkeypatch):
    m = project(tmp_path)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    res = mlxk("lock", "-f", m, "--check", "--json")
    assert res.exit_code == 1 and res.json["data"]["reasons"] == ["no lock file"]
    assert not (tmp_path / "mlxk.lock").exists()  # --check never writes
    assert mlxk("lock", "-f", m).exit_code == 0
    res = mlxk("lock", "-f", m, "--check", "--json")
    assert res.exit_code == 0 and res.json["data"]["fresh"], res
    write_manifest(
        tmp_path, BODY + "    exclude: ['README.md']\n  b:\n    source: path:demo-model\n"
    )
    res = mlxk("lock", "-f", m, "--check")
    assert res.exit_code == 1
    assert "a: changed in the manifest since it was locked" in res.stdout
    assert "b: not in the lock" in res.stdout
    assert mlxk("lock", "-f", m, "--refresh").exit_code == 2


def test_lock_check_refresh_sees_a_moved_branch(hub, hf_env, tmp_path, mlxk, demo_files):
    repo = unique_repo_id()
    hub.create_repo(repo, demo_files)
    hub.tag(repo, "v1")
    m = str(
        write_manifest(
            tmp_path,
            f"version: 1\nworkspaces:\n  a:\n    source: hf://{repo}@main\n"
            f"  b:\n    source: hf://{repo}@v1\n",
        )
    )
    assert mlxk("lock", "-f", m).exit_code == 0
    assert mlxk("lock", "-f", m, "--check", "--refresh").exit_code == 0
    hub.commit(repo, {"README.md": b"moved\n"})
    assert mlxk("lock", "-f", m, "--check").exit_code == 0  # offline: cannot know
    res = mlxk("lock", "-f", m, "--check", "--refresh", "--json")
    assert res.exit_code == 1
    (reason,) = res.json["data"]["reasons"]
    assert reason.startswith(f"a: hf://{repo}@main moved ")


def test_validate_and_schema(tmp_path, mlxk):
    m = project(tmp_path)
    res = mlxk("validate", "-f", m, "--json")
    assert res.exit_code == 0 and res.json["data"]["workspaces"] == ["a"]
    bad = write_manifest(tmp_path / "bad", "version: 1\nworkspaces:\n  a: {sorce: x}\n")
    res = mlxk("validate", "-f", str(bad))
    assert res.exit_code == 2 and "unknown key 'sorce'" in res.stderr
    schema = json.loads(mlxk("schema", "manifest").stdout)
    assert schema == manifest_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    out = json.loads(mlxk("schema", "json-output").stdout)
    assert out["properties"]["command"]["enum"]


def test_every_shipped_example_manifest_is_valid(mlxk):
    examples = sorted((ROOT / "manifests").glob("*.yaml"))
    assert len(examples) >= 4
    for path in examples:
        res = mlxk("validate", "-f", str(path))
        assert res.exit_code == 0, (path, res)


def test_init_and_add_keep_comments(tmp_path, mlxk, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert mlxk("init").exit_code == 0
    assert mlxk("init").exit_code == 2  # never overwrites
    text = (tmp_path / "models.yaml").read_text()
    assert "# yaml-language-server: $schema=" in text
    res = mlxk("add", "hf://org/tiny@v1", "--quantize", "4", "--group-size", "32", "--json")
    assert res.exit_code == 0, res
    res = mlxk("add", "org/other", "--name", "other", "--include", "*.json")
    assert res.exit_code == 0, res
    assert mlxk("add", "org/other", "--name", "other").exit_code == 2
    new = (tmp_path / "models.yaml").read_text()
    assert new.startswith(text.split("workspaces:")[0])  # comments and order kept
    assert mlxk("validate").exit_code == 0
    from mlxk.manifest import load_manifest

    ws = load_manifest(tmp_path / "models.yaml").workspaces
    assert ws["tiny"].steps[0].params == {"quantize": {"bits": 4, "group_size": 32}}
    assert str(ws["other"].source) == "hf://org/other@main" and ws["other"].include == ("*.json",)


def test_shell_completion_offers_workspace_names(tmp_path):
    m = project(tmp_path, BODY + "  alpha:\n    source: path:demo-model\n")
    env = dict(os.environ, _MLXK_COMPLETE="bash_complete", COMP_WORDS="mlxk run a", COMP_CWORD="2")
    out = subprocess.run(
        [sys.executable, "-m", "mlxk.cli"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert out.stdout.split() == ["plain,a", "plain,alpha"]
    env.update(COMP_WORDS=f"mlxk verify -f {m} --workspace al", COMP_CWORD="5")
    out = subprocess.run(
        [sys.executable, "-m", "mlxk.cli"], env=env, cwd="/", capture_output=True, text=True
    )
    assert out.stdout.split() == ["plain,alpha"]
    env.update(_MLXK_COMPLETE="bash_source")
    script = subprocess.run(
        [sys.executable, "-m", "mlxk.cli"], env=env, capture_output=True, text=True
    ).stdout
    assert "_mlxk_completion" in script


def git(*args, cwd):
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )


def test_pre_commit_hook_for_real(tmp_path, mlxk):
    """pre-commit installs this repository's hook (at HEAD) and runs it on a project."""
    head = git("rev-parse", "HEAD", cwd=ROOT).stdout.strip()
    proj = tmp_path / "proj"
    m = project(proj)
    assert mlxk("lock", "-f", m).exit_code == 0
    (proj / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {ROOT}\n    rev: {head}\n    hooks:\n      - id: mlxk-lock-check\n"
    )
    git("init", "-q", cwd=proj)
    git("add", "-A", cwd=proj)
    env = dict(os.environ, PRE_COMMIT_HOME=str(tmp_path / "pc-home"))
    env.pop("MLXK_STORE", None)
    pc = [sys.executable, "-m", "pre_commit", "run", "--all-files"]
    ok = subprocess.run(pc, cwd=proj, env=env, capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "mlxk.lock is up to date with models.yaml" in ok.stdout
    write_manifest(proj, BODY + "    exclude: ['README.md']\n")
    git("add", "-A", cwd=proj)
    stale = subprocess.run(pc, cwd=proj, env=env, capture_output=True, text=True, timeout=600)
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert "changed in the manifest since it was locked" in stale.stdout
