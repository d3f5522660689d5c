"""sync / plan / verify on a local path source through the CLI: every verify outcome, exit
codes, safety of unmanaged directories, pruning, and the shipped demo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.support import ROOT, validate_output, write_manifest

BODY = "version: 1\nworkspaces:\n  demo:\n    source: path:demo-model\n"


@pytest.fixture
def synced(demo_dir, mlxk):
    m = str(write_manifest(demo_dir, BODY))
    res = mlxk("sync", "-f", m, "--json")
    assert res.exit_code == 0, res
    return m, demo_dir / "models" / "demo"


def problems(res):
    ws = res.json["data"]["workspaces"]
    return {(p["path"], p["problem"]) for w in ws for p in w["problems"]}


@pytest.mark.parametrize(
    "tamper, expected",
    [
        (
            lambda ws: ws.joinpath("config.json").write_bytes(
                bytes([ws.joinpath("config.json").read_bytes()[0] ^ 1])
                + ws.joinpath("config.json").read_bytes()[1:]
            ),
            {("config.json", "modified")},
        ),
        (
            lambda ws: os.truncate(ws / "model.safetensors", 100),
            {("model.safetensors", "modified")},
        ),
        (lambda ws: (ws / "tokenizer.json").unlink(), {("tokenizer.json", "missing")}),
        (lambda ws: (ws / "notes.txt").write_text("mine"), {("notes.txt", "extra")}),
        (
            lambda ws: os.rename(ws / "README.md", ws / "README.txt"),
            {("README.md", "missing"), ("README.txt", "extra")},
        ),
        (
            lambda ws: (
                (ws / "config.json").unlink(),
                (ws / "config.json").symlink_to(ws / "tokenizer_config.json"),
            ),
            {("config.json", "not_a_file")},
        ),
        (
            lambda ws: (ws / ".mlxk_workspace.json").write_text(
                (ws / ".mlxk_workspace.json").read_text().replace('"sync"', '"clone"')
            ),
            {(".mlxk_workspace.json", "modified")},
        ),
    ],
    ids=["flipped-byte", "truncated", "deleted", "added", "renamed", "symlink", "sentinel"],
)
def test_verify_reports_each_tampering_and_never_repairs(synced, mlxk, tamper, expected):
    m, ws = synced
    tamper(ws)
    snapshot = {
        p: (p.read_bytes() if p.is_file() and not p.is_symlink() else None) for p in ws.rglob("*")
    }
    res = mlxk("verify", "-f", m, "--json")
    assert res.exit_code == 1 and res.json["status"] == "drift"
    assert problems(res) == expected
    assert {
        p: (p.read_bytes() if p.is_file() and not p.is_symlink() else None) for p in ws.rglob("*")
    } == snapshot  # read-only
    human = mlxk("verify", "-f", m)
    assert human.exit_code == 1 and "DRIFT" in human.stdout
    for path, _ in expected:
        assert path in human.stdout
    # sync repairs (that is its job), and verify is then clean
    assert mlxk("sync", "-f", m).exit_code == 0
    assert mlxk("verify", "-f", m).exit_code == 0


def test_verify_missing_workspace_and_workspace_filter(synced, mlxk, demo_dir):
    m, ws = synced
    body = BODY + "  other:\n    source: path:demo-model\n    include: ['*.json']\n"
    write_manifest(demo_dir, body)
    assert mlxk("lock", "-f", m).exit_code == 0
    res = mlxk("verify", "-f", m, "--json")
    assert res.exit_code == 1
    status = {w["name"]: w["status"] for w in res.json["data"]["workspaces"]}
    assert status == {"demo": "ok", "other": "missing"}
    res = mlxk("verify", "-f", m, "--workspace", "demo", "--json")
    assert res.exit_code == 0 and [w["name"] for w in res.json["data"]["workspaces"]] == ["demo"]
    res = mlxk("verify", "-f", m, "-w", "nope", "--json")
    assert res.exit_code == 2 and "not in the lock: nope" in res.json["error"]["message"]


def test_verify_without_lock_is_a_user_error(demo_dir, mlxk):
    m = str(write_manifest(demo_dir, BODY))
    res = mlxk("verify", "-f", m, "--json")
    assert res.exit_code == 2 and res.json["error"]["type"] == "lock_error"


def test_sync_refuses_to_overwrite_a_directory_it_does_not_manage(demo_dir, mlxk):
    m = str(write_manifest(demo_dir, BODY))
    mine = demo_dir / "models" / "demo"
    mine.mkdir(parents=True)
    (mine / "precious.txt").write_text("my work")
    res = mlxk("sync", "-f", m, "--json")
    assert res.exit_code == 2 and "is not an mlxk workspace" in res.json["error"]["message"]
    assert (mine / "precious.txt").read_text() == "my work"
    res = mlxk("plan", "-f", m, "--json")  # plan refuses the same way sync does
    assert res.exit_code == 2 and "is not an mlxk workspace" in res.json["error"]["message"]


def test_removed_workspace_is_kept_until_prune(synced, mlxk, demo_dir):
    m, ws = synced
    write_manifest(demo_dir, BODY.replace("demo:", "renamed:"))
    res = mlxk("sync", "-f", m, "--json")
    assert res.exit_code == 0
    assert ws.is_dir() and (demo_dir / "models" / "renamed").is_dir()
    ops = {w["name"]: w["op"] for w in res.json["data"]["plan"]["workspaces"]}
    assert ops["demo"] == "orphan"
    plan = mlxk("plan", "-f", m, "--prune", "--json")
    assert plan.exit_code == 1
    res = mlxk("sync", "-f", m, "--prune", "--json")
    assert res.exit_code == 0 and not ws.exists()


def test_changed_path_source_is_caught_not_silently_accepted(synced, mlxk, demo_dir):
    m, ws = synced
    shutil.rmtree(ws)
    shutil.rmtree(os.environ["MLXK_STORE"])
    (demo_dir / "demo-model" / "config.json").write_text("{}")
    res = mlxk("sync", "-f", m, "--frozen", "--json")
    assert res.exit_code == 3 and res.json["error"]["type"] == "integrity_error"
    assert "config.json" in res.json["error"]["message"]
    assert mlxk("lock", "-f", m, "--upgrade").exit_code == 0
    assert mlxk("sync", "-f", m).exit_code == 0
    assert (ws / "config.json").read_text() == "{}"


def test_interrupted_switch_is_recovered(synced, mlxk, demo_dir):
    """A crash between moving the old workspace aside and moving the new one in."""
    m, ws = synced
    aside = demo_dir / "models" / ".mlxk-staging" / "demo.old.deadbeef"
    aside.parent.mkdir(exist_ok=True)  # a finished sync leaves no staging directory
    os.replace(ws, aside)
    half = demo_dir / "models" / ".mlxk-staging" / "demo.new.cafebabe"
    half.mkdir()
    (half / "partial").write_text("x")
    res = mlxk("sync", "-f", m, "--json")
    assert res.exit_code == 0
    assert "restored demo from an interrupted switch" in res.json["data"]["notes"]
    assert not half.exists() and not aside.exists()
    assert mlxk("verify", "-f", m).exit_code == 0


def test_plan_exit_codes_and_text(demo_dir, mlxk):
    m = str(write_manifest(demo_dir, BODY))
    assert mlxk("lock", "-f", m).exit_code == 0
    res = mlxk("plan", "-f", m)
    assert res.exit_code == 1
    assert "+ demo: create" in res.stdout and "+ model.safetensors" in res.stdout
    assert "Plan: 1 to create" in res.stdout
    assert mlxk("sync", "-f", m).exit_code == 0
    res = mlxk("plan", "-f", m)
    assert res.exit_code == 0 and "No changes." in res.stdout


def test_errors_are_one_line_with_exit_2(tmp_path, mlxk):
    m = write_manifest(
        tmp_path,
        "version: 1\nworkspaces:\n  a:\n    source: hf://o/m\n"
        "    steps:\n      - quantise: {bits: 4}\n",
    )
    res = mlxk("lock", "-f", str(m))
    assert res.exit_code == 2
    first = res.stderr.splitlines()[0]
    assert first == (
        "error: models.yaml:6:9: workspaces.a.steps[0]: unknown step 'quantise' "
        "(did you mean 'convert'?)"
    )
    res = mlxk("lock", "-f", str(m), "--json")
    assert res.json["status"] == "error" and res.json["error"]["exit_code"] == 2


def run(*args, cwd=None, env=None):
    return subprocess.run(
        [sys.executable, "-m", "mlxk.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_imports_neither_mlx_nor_huggingface_hub():
    code = (
        "import sys\nfrom mlxk.cli import cli\n"
        "try:\n    cli(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('mlx', 'mlx_lm', 'huggingface_hub', 'transformers', 'jsonschema')]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("[]"), out.stdout


def test_real_process_exit_codes_and_json(demo_dir):
    m = str(write_manifest(demo_dir, BODY))
    env = dict(os.environ)
    assert run("sync", "-f", m, env=env).returncode == 0
    p = run("verify", "-f", m, "--json", env=env)
    assert p.returncode == 0 and json.loads(p.stdout)["status"] == "ok"
    assert p.stderr == ""  # quiet when piped
    assert run("verify", "--bogus", env=env).returncode == 2
    p = run("schema", "nope", "--json", env=env)  # --json: an envelope even for bad arguments
    assert p.returncode == 2
    doc = validate_output(json.loads(p.stdout))
    assert doc["command"] == "schema" and doc["error"]["message"].startswith("usage: ")
    (demo_dir / "models" / "demo" / "README.md").write_text("changed")
    p = run("verify", "-f", m, env=env)
    assert p.returncode == 1 and "README.md" in p.stdout


def test_demo_manifest_locks_to_the_committed_example(tmp_path, mlxk):
    project = tmp_path / "manifests"
    shutil.copytree(ROOT / "manifests" / "demo-model", project / "demo-model")
    shutil.copy(ROOT / "manifests" / "demo.yaml", project / "demo.yaml")
    m = str(project / "demo.yaml")
    assert mlxk("lock", "-f", m).exit_code == 0
    assert (project / "mlxk.lock").read_text() == (ROOT / "mlxk.lock.example").read_text()
    assert mlxk("sync", "-f", m).exit_code == 0
    assert mlxk("verify", "-f", m).exit_code == 0
