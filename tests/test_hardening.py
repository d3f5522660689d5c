"""A newcomer's and an adversary's run (#14): unusable stores, MLXK_DEBUG, stale locks, refs with
slashes, patterns, absolute path sources, -q and the small promises. Each failed before."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlxk import lock as lockfile
from tests.hubserver import unique_repo_id
from tests.support import write_manifest


def path_project(root: Path, extra_ws: str = "") -> str:
    (root / "src").mkdir(parents=True)
    (root / "src" / "notes.txt").write_bytes(b"w" * 4000)
    (root / "src" / "config.json").write_text("{}")
    body = "version: 1\nworkspaces:\n  a:\n    source: path:src\n" + extra_ws
    return str(write_manifest(root, body))


# ---------------------------------------------------------------- unusable store, debug


@pytest.mark.unit
def test_a_store_that_is_a_file_is_a_disk_error_naming_it(tmp_path, mlxk, monkeypatch):
    m = path_project(tmp_path / "p")
    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("MLXK_STORE", str(tmp_path / "afile"))
    res = mlxk("sync", "-f", m, "--json")
    assert res.exit_code == 3, res
    err = res.json["error"]
    assert err["type"] == "disk_error" and str(tmp_path / "afile") in err["message"]
    assert "MLXK_STORE" in err["hint"]


def test_a_read_only_cache_home_is_a_disk_error(tmp_path, mlxk, monkeypatch):
    m = path_project(tmp_path / "p")
    cache = tmp_path / "cache"
    cache.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(cache)], check=True)
    try:
        monkeypatch.delenv("MLXK_STORE")
        monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
        res = mlxk("sync", "-f", m, "--json")
    finally:
        subprocess.run(["umount", str(cache)], check=True)
    assert res.exit_code == 3, res
    assert str(cache) in res.json["error"]["message"]
    assert "MLXK_STORE" in res.json["error"]["hint"]


@pytest.mark.unit
def test_mlxk_debug_prints_the_traceback_of_an_internal_error(tmp_path, monkeypatch):
    """An OSError-typed bug used to vanish: the debug re-raise met `except OSError`."""
    m = path_project(tmp_path / "p")
    script = (
        "import sys, mlxk.project as p\n"
        "def boom(*a, **k): raise OSError(5, 'injected fault')\n"
        "p.Project.plan = boom\n"
        "from mlxk.cli import main\n"
        f"sys.argv = ['mlxk', 'sync', '-f', {m!r}]\n"
        "main()\n"
    )
    env = {"MLXK_DEBUG": "1", "MLXK_STORE": str(tmp_path / "store"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert proc.returncode == 3
    assert "Traceback" in proc.stderr and "injected fault" in proc.stderr
    env.pop("MLXK_DEBUG")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert "internal error: OSError" in proc.stderr


# ---------------------------------------------------------------- stale locks


@pytest.mark.unit
def test_bundle_locks_first_like_sync(tmp_path, mlxk):
    m = path_project(tmp_path / "p")
    assert mlxk("sync", "-f", m).exit_code == 0
    (tmp_path / "p" / "src2").mkdir()
    (tmp_path / "p" / "src2" / "x.bin").write_bytes(b"x" * 100)
    Path(m).write_text(Path(m).read_text() + "  b:\n    source: path:src2\n")
    res = mlxk("bundle", "-f", m, str(tmp_path / "locked.tar"), "--locked", "--json")
    assert res.exit_code == 2 and "out of date" in res.json["error"]["message"]
    res = mlxk("bundle", "-f", m, str(tmp_path / "frozen.tar"), "--frozen", "--json")
    assert res.exit_code == 0 and res.json["data"]["workspaces"] == ["a"]
    res = mlxk("bundle", "-f", m, str(tmp_path / "b.tar"), "--json")
    assert res.exit_code == 0 and res.json["data"]["workspaces"] == ["a", "b"]
    assert "b" in lockfile.read(Path(m).with_name("mlxk.lock")).workspaces


@pytest.mark.unit
def test_verify_and_list_warn_on_a_stale_lock_and_verify_locked_refuses(tmp_path, mlxk):
    m = path_project(tmp_path / "p")
    assert mlxk("sync", "-f", m).exit_code == 0
    assert mlxk("verify", "-f", m).stderr == ""
    Path(m).write_text(Path(m).read_text().replace("path:src", "path:src\n    exclude: [x]"))
    res = mlxk("verify", "-f", m)
    assert res.exit_code == 0
    assert res.stderr.count("\n") == 1 and "a: changed in the manifest" in res.stderr
    assert "run `mlxk lock`" in res.stderr
    res = mlxk("list", "-f", m)
    assert "out of date" in res.stderr
    res = mlxk("verify", "-f", m, "--locked", "--json")
    assert res.exit_code == 2
    assert res.json["error"]["hint"] == (
        "run `mlxk lock` (and commit mlxk.lock), then `mlxk verify` again"
    )


@pytest.mark.unit
def test_plan_on_a_stale_lock_hints_plainly(tmp_path, mlxk):
    m = path_project(tmp_path / "p")
    assert mlxk("lock", "-f", m).exit_code == 0
    Path(m).write_text(Path(m).read_text().replace("path:src", "path:src\n    exclude: [x]"))
    res = mlxk("plan", "-f", m, "--json")
    assert res.exit_code == 2
    assert res.json["error"]["hint"] == (
        "run `mlxk lock` (and commit mlxk.lock), then `mlxk plan` again"
    )


# ---------------------------------------------------------------- refs, patterns, paths


def test_a_branch_with_a_slash_resolves_through_the_refs_listing(hub, hf_env, tmp_path, mlxk):
    repo = unique_repo_id("slash")
    hub.create_repo(repo, {"config.json": b"{}", "README.md": b"main\n"})
    hub.branch(repo, "feature/x")
    commit = hub.commit(repo, {"README.md": b"feature\n"}, branch="feature/x")
    m = write_manifest(
        tmp_path, f"version: 1\nworkspaces:\n  a: {{source: 'hf://{repo}@feature/x'}}\n"
    )
    res = mlxk("sync", "-f", str(m), "--json")
    assert res.exit_code == 0, res
    assert lockfile.read(tmp_path / "mlxk.lock").workspaces["a"].source.commit == commit
    assert (tmp_path / "models" / "a" / "README.md").read_bytes() == b"feature\n"


def test_a_runtime_entrys_missing_revision_names_its_workspace(hub, hf_env, tmp_path, mlxk):
    repo = unique_repo_id("rt")
    hub.create_repo(repo, {"tokenizer.json": b"{}"})
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "config.json").write_text("{}")
    body = (
        "version: 1\nworkspaces:\n  main-model:\n    source: path:src\n"
        f"    runtime: ['hf://{repo}@v9']\n"
    )
    m = write_manifest(tmp_path, body)
    res = mlxk("lock", "-f", str(m), "--json")
    assert res.exit_code == 3, res
    assert "workspaces.main-model.runtime[0]" in res.json["error"]["message"]
    assert "revision not found" in res.json["error"]["message"]


@pytest.mark.unit
def test_include_empty_is_an_error_and_backslashes_are_separators(tmp_path, mlxk):
    m = path_project(tmp_path / "p")
    text = Path(m).read_text()
    Path(m).write_text(text + "    include: []\n")
    res = mlxk("validate", "-f", m, "--json")
    assert res.exit_code == 2
    assert res.json["error"]["message"] == (
        "models.yaml:5:14: workspaces.a.include: an empty list selects no file"
    )
    (tmp_path / "p" / "src" / "sub").mkdir()
    (tmp_path / "p" / "src" / "sub" / "k.bin").write_bytes(b"k")
    Path(m).write_text(text + "    include: ['sub\\*.bin']\n")
    assert mlxk("lock", "-f", m).exit_code == 0
    files = lockfile.read(Path(m).with_name("mlxk.lock")).workspaces["a"].files
    assert [f.path for f in files] == ["sub/k.bin"]


@pytest.mark.unit
def test_an_absolute_path_source_is_accepted_and_said_to_tie_the_lock(tmp_path, mlxk):
    data = tmp_path / "data" / "finetune"
    data.mkdir(parents=True)
    (data / "config.json").write_text("{}")
    m = write_manifest(tmp_path / "p", f"version: 1\nworkspaces:\n  ft:\n    source: path:{data}\n")
    res = mlxk("lock", "-f", str(m))
    assert res.exit_code == 0, res
    assert f"note: ft: the lock records the absolute path {data}" in res.stdout
    assert lockfile.read(tmp_path / "p" / "mlxk.lock").workspaces["ft"].source.path == str(data)
    assert mlxk("sync", "-f", str(m)).exit_code == 0
    assert mlxk("verify", "-f", str(m)).exit_code == 0


# ---------------------------------------------------------------- small promises


@pytest.mark.unit
@pytest.mark.parametrize(
    "args",
    [
        ["lock"],
        ["sync"],
        ["plan"],
        ["verify"],
        ["verify", "--fast"],
        ["list"],
        ["show", "a"],
        ["validate"],
        ["lock", "--check"],
        ["gc", "--dry-run"],
        ["schema", "manifest"],
    ],
)
def test_quiet_prints_nothing_on_success(tmp_path, mlxk, args):
    m = path_project(tmp_path / "p")
    assert mlxk("sync", "-f", m).exit_code == 0
    res = mlxk(*args, "-f", m, "-q")
    assert res.exit_code == 0, res
    assert res.stdout == ""


@pytest.mark.unit
def test_an_endpoint_with_another_scheme_says_so(tmp_path, mlxk, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "htp://host")
    m = write_manifest(tmp_path, "version: 1\nworkspaces:\n  a: {source: 'hf://o/m'}\n")
    res = mlxk("lock", "-f", str(m), "--json")
    assert res.exit_code == 2
    assert (
        res.json["error"]["message"]
        == "HF_ENDPOINT=htp://host: the scheme 'htp' is not http or https"
    )
    assert res.json["error"]["hint"] == "use http://host or https://host"


@pytest.mark.unit
def test_health_with_nothing_to_check_says_so(tmp_path, mlxk, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLXK_WORKSPACE_HOME", str(tmp_path / "empty"))
    res = mlxk("health", "--json")
    assert res.exit_code == 2 and "nothing to check" in res.json["error"]["message"]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 1\nworkspaces:\n\ta: {source: 'path:x'}\n", "YAML does not allow tabs"),
        ("version: '1'\nworkspaces:\n  a: {source: 'path:x'}\n", 'must be the integer 1 (got "1")'),
    ],
)
def test_tabs_and_a_string_version_get_plain_words(tmp_path, mlxk, text, message):
    m = write_manifest(tmp_path, text)
    res = mlxk("validate", "-f", str(m), "--json")
    assert res.exit_code == 2 and message in res.json["error"]["message"]


@pytest.mark.unit
def test_a_failed_sync_and_a_finished_one_leave_no_staging(tmp_path, mlxk, monkeypatch):
    m = path_project(tmp_path / "p")
    assert mlxk("sync", "-f", m).exit_code == 0
    assert sorted(p.name for p in (tmp_path / "p" / "models").iterdir()) == ["a"]
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    q = write_manifest(tmp_path / "q", "version: 1\nworkspaces:\n  a: {source: 'hf://o/m'}\n")
    assert mlxk("sync", "-f", str(q)).exit_code == 3
    assert not (tmp_path / "q" / "models").exists()


@pytest.mark.unit
def test_add_after_init_keeps_the_example_comment_above_the_workspaces(tmp_path, mlxk):
    m = str(tmp_path / "models.yaml")
    assert mlxk("init", "-f", m).exit_code == 0
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "config.json").write_text("{}")
    assert mlxk("add", "path:src", "-f", m, "--name", "a").exit_code == 0
    text = Path(m).read_text()
    assert text.index("# A workspace looks like this") < text.index("workspaces:")
    assert text.rstrip().endswith("source: path:src")


# ---------------------------------------------------------------- docs


DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.mark.unit
def test_the_commands_index_links_every_command():
    from mlxk.cli import cli

    index = (DOCS / "commands.md").read_text().split("Environment:")[0]
    missing = [n for n in cli.commands if f"[`{n}`](#mlxk-{n})" not in index]
    assert missing == []


@pytest.mark.unit
def test_no_doc_points_outside_the_repo_and_the_ws_source_is_explained():
    readme = (DOCS.parent / "README.md").read_text()
    assert "../shared" not in readme and "docs/architecture.md" in readme
    assert "`ws`" in (DOCS / "commands.md").read_text()


@pytest.mark.unit
def test_sizes_use_one_convention():
    from mlxk.output import human_size

    assert [human_size(n) for n in (999, 1000, 120_800, 5_000_000)] == [
        "999 B",
        "1.0 kB",
        "120.8 kB",
        "5.0 MB",
    ]
    for page in [*DOCS.glob("*.md"), DOCS.parent / "README.md"]:
        assert not __import__("re").search(r"\d KB\b", page.read_text()), page.name
