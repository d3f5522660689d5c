"""`mlxk capture` through the library, with the in-process hub of tests/memsource.py: a real
command (a small Python "loader" that writes what huggingface_hub would into $HF_HOME) runs,
and what it fetched becomes runtime: entries, checked byte for byte against the hub's
declared hashes. No hub server, no mlx."""

from __future__ import annotations

import json
import sys

import pytest

from mlxk import lock as lockfile
from mlxk.capture import capture_command, plan_capture
from mlxk.errors import CommandFailed, IntegrityError, UserError
from mlxk.hfcache import CachedRepo
from mlxk.project import Project
from mlxk.resolve import stale_reasons
from tests.memsource import MemRepos
from tests.support import write_manifest

pytestmark = pytest.mark.unit

TOKENIZER = "{}" * 80
CONFIG = '{"model_type": "llama"}'
FILES = {"config.json": CONFIG.encode(), "model.safetensors": bytes(range(256)) * 8}
BODY = (
    "# the project's models\nversion: 1\nworkspaces:\n  m:\n"
    "    source: hf://org/m@v1  # the model itself\n"
)

# What a loader does to $HF_HOME/hub when it downloads (huggingface_hub's layout, as real
# files): a file already in the snapshot is not fetched again; refs/<rev> is (re)written.
LOADER = r"""
import json, os, sys
from pathlib import Path
hub = Path(os.environ["HF_HOME"]) / "hub"
for d in json.loads(sys.argv[1]):
    repo_dir = hub / ("models--" + d["repo"].replace("/", "--"))
    for path, text in d["files"].items():
        f = repo_dir / "snapshots" / d["commit"] / path
        if not f.exists():
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(text)
    if d.get("rev"):
        ref = repo_dir / "refs" / d["rev"]
        ref.parent.mkdir(parents=True, exist_ok=True)
        if not ref.exists() or ref.read_text() != d["commit"]:
            ref.write_text(d["commit"])
print("loaded", len(json.loads(sys.argv[1])), "repo(s)")
"""


@pytest.fixture
def repos() -> MemRepos:
    r = MemRepos()
    r.commit("org/m", FILES, "main", "v1")
    r.commit("org/tok", {"tokenizer.json": TOKENIZER.encode(), "config.json": CONFIG.encode()})
    return r


def project(tmp_path, repos, body: str = BODY) -> Project:
    path = write_manifest(tmp_path, body)
    return Project.load(path, clients={"hf": repos})


def loader(*fetches: dict) -> list[str]:
    return [sys.executable, "-c", LOADER, json.dumps(list(fetches))]


def tok_fetch(commit: str, files: dict[str, str]) -> dict:
    """What the loader fetches of org/tok@main (at `commit`): files and their text."""
    return {"repo": "org/tok", "rev": "main", "commit": commit, "files": files}


def snapshot_of(tmp_path, repo: str, commit: str):
    return tmp_path / "models" / "m" / ".hf_cache" / "hub" / f"models--{repo.replace('/', '--')}"


def test_capture_records_what_the_command_fetched_and_places_it(tmp_path, repos, capsys):
    p = project(tmp_path, repos)
    p.sync()
    tok = repos.refs["org/tok"]["main"]
    fetch = tok_fetch(tok, {"tokenizer.json": TOKENIZER})
    result = capture_command(p, "m", loader(fetch))
    assert "loaded 1 repo(s)" in capsys.readouterr().out  # the command's output is passed on
    (c,) = result.captured
    assert (c.repo, c.revision, c.commit, c.files, c.action) == (
        "org/tok",
        "main",
        tok,
        ("tokenizer.json",),
        "added",
    )
    assert result.written and result.placed == 2  # the snapshot file and refs/main
    text = (tmp_path / "models.yaml").read_text()
    assert text.startswith("# the project's models\n") and "# the model itself" in text
    assert "- source: hf://org/tok@main\n        include: [tokenizer.json]\n" in text
    q = p.reload()
    lock = q.read_lock()
    assert not stale_reasons(q.manifest, lock)
    (rt,) = lock.workspaces["m"].runtime
    assert (rt.repo, rt.revision, rt.commit) == ("org/tok", "main", tok)
    assert [f.path for f in rt.files] == ["tokenizer.json"]  # declared by sha256 (LFS)
    cache = snapshot_of(tmp_path, "org/tok", tok)
    assert (cache / "snapshots" / tok / "tokenizer.json").read_text() == TOKENIZER
    assert (cache / "refs" / "main").read_text() == tok
    assert not [x for x in (tmp_path / "models").rglob("*") if x.is_symlink()]
    assert q.verify().ok
    # The same command again finds nothing new and changes nothing.
    before = (tmp_path / "models.yaml").read_bytes(), (tmp_path / "mlxk.lock").read_bytes()
    again = capture_command(q, "m", loader(fetch))
    assert again.captured == () and not again.written
    assert ((tmp_path / "models.yaml").read_bytes(), (tmp_path / "mlxk.lock").read_bytes()) == (
        before
    )


def test_more_files_extend_the_entry_and_a_moved_revision_repins_it(tmp_path, repos):
    body = (
        BODY
        + "    runtime:\n      - source: hf://org/tok@main\n        include: [tokenizer.json]\n"
    )
    p = project(tmp_path, repos, body)
    p.sync()
    fetch = tok_fetch(repos.refs["org/tok"]["main"], {"config.json": CONFIG})
    (c,) = capture_command(p, "m", loader(fetch)).captured
    assert (c.action, c.files) == ("extended", ("config.json",))
    assert "include: [tokenizer.json, config.json]" in (tmp_path / "models.yaml").read_text()
    (rt,) = p.reload().read_lock().workspaces["m"].runtime
    assert [f.path for f in rt.files] == ["config.json", "tokenizer.json"]
    assert rt.files[0].hub_hash  # a small git file keeps its git blob id, as `mlxk lock` does
    # main moves on at the hub; the loader gets the new commit: the entry is re-pinned to it
    new = repos.commit("org/tok", {"tokenizer.json": b"[]" * 80, "config.json": CONFIG.encode()})
    fetch = tok_fetch(new, {"tokenizer.json": "[]" * 80})
    (c,) = capture_command(p.reload(), "m", loader(fetch)).captured
    assert (c.action, c.commit) == ("repinned", new)
    q = p.reload()
    (rt,) = q.read_lock().workspaces["m"].runtime
    assert rt.commit == new and [f.path for f in rt.files] == ["config.json", "tokenizer.json"]
    cache = snapshot_of(tmp_path, "org/tok", new)
    assert sorted(x.name for x in (cache / "snapshots").iterdir()) == [new]  # the old one left
    assert q.verify().ok and not stale_reasons(q.manifest, q.read_lock())


def test_a_missing_or_failing_command_changes_nothing(tmp_path, repos, capsys):
    p = project(tmp_path, repos)
    p.sync()
    before = (tmp_path / "models.yaml").read_bytes(), (tmp_path / "mlxk.lock").read_bytes()
    with pytest.raises(UserError) as e:
        capture_command(p, "m", [])
    assert e.value.exit_code == 2 and "no COMMAND" in e.value.message
    with pytest.raises(CommandFailed) as e:
        capture_command(p, "m", ["mlxk-no-such-command"])
    assert e.value.exit_code == 127 and "no such command" in e.value.message
    fetch = tok_fetch(repos.refs["org/tok"]["main"], {"tokenizer.json": TOKENIZER})
    fails = [*loader(fetch)[:2], LOADER + "\nsys.stderr.write('boom\\n'); sys.exit(5)"]
    with pytest.raises(CommandFailed) as e:
        capture_command(p, "m", [*fails, json.dumps([fetch])])
    assert e.value.exit_code == 5 and e.value.to_dict()["type"] == "command_failed"
    assert "boom" in capsys.readouterr().err  # its stderr is passed on
    after = (tmp_path / "models.yaml").read_bytes(), (tmp_path / "mlxk.lock").read_bytes()
    assert after == before and not (tmp_path / "models" / "m" / ".hf_cache").exists()
    assert p.verify().ok


def test_bytes_that_differ_from_the_hubs_hash_are_refused(tmp_path, repos):
    p = project(tmp_path, repos)
    p.sync()
    before = (tmp_path / "models.yaml").read_bytes(), (tmp_path / "mlxk.lock").read_bytes()
    bad = "{}" * 79 + "{]"  # same size, other bytes
    fetch = tok_fetch(repos.refs["org/tok"]["main"], {"tokenizer.json": bad})
    with pytest.raises(IntegrityError) as e:
        capture_command(p, "m", loader(fetch))
    assert e.value.exit_code == 3 and "differ from the hub's" in e.value.message
    assert "tokenizer.json" in e.value.message and "nothing was recorded" in e.value.hint
    after = (tmp_path / "models.yaml").read_bytes(), (tmp_path / "mlxk.lock").read_bytes()
    assert after == before and p.verify().ok
    fetch["files"] = {"not-at-the-hub.json": "{}"}
    with pytest.raises(IntegrityError, match="the hub does not list this file"):
        capture_command(p, "m", loader(fetch))


def test_a_capture_needs_a_synced_workspace_and_a_fresh_lock(tmp_path, repos):
    p = project(tmp_path, repos)
    p.lock()
    with pytest.raises(UserError, match="not synced"):
        capture_command(p, "m", loader())
    p.sync()
    q = project(tmp_path, repos, BODY.replace("@v1", "@main"))
    with pytest.raises(UserError, match="out of date"):
        capture_command(q, "m", loader())
    with pytest.raises(UserError, match="no workspace named 'x'"):
        capture_command(p, "x", loader())


def test_plan_capture_is_pure(tmp_path, repos):
    p = project(tmp_path, repos, BODY + "    runtime: [hf://org/tok@main]\n")
    ws = p.lock().lock.workspaces["m"]
    tok = ws.runtime[0].commit
    held = CachedRepo("org/tok", "main", tok, ("tokenizer.json",))
    assert plan_capture(ws, [held]) == []  # all declared already: nothing new
    by_sha = CachedRepo("org/other", tok, tok, ("a.json",))
    (c,) = plan_capture(ws, [by_sha])
    assert (c.action, c.revision, c.index) == ("added", tok, None)


def test_health_verbose_lists_every_hf_cache_repo_declared_or_not(tmp_path, repos, mlxk):
    p = project(tmp_path, repos, BODY + "    runtime: [hf://org/tok@main]\n")
    p.sync()
    ws = tmp_path / "models" / "m"
    stray = ws / ".hf_cache" / "hub" / "models--org--stray" / "snapshots" / ("f" * 40) / "x.json"
    stray.parent.mkdir(parents=True)
    stray.write_text("{}")
    m = str(tmp_path / "models.yaml")
    res = mlxk("health", "-f", m, "m", "--verbose", "--json")  # exit 1: it has no tokenizer
    listed = {e["repo"]: e for e in res.json["data"]["workspaces"][0]["hf_cache"]}
    assert listed["org/tok"]["declared"] and listed["org/tok"]["refs"] == ["main"]
    assert not listed["org/stray"]["declared"] and listed["org/stray"]["files"] == ["x.json"]
    text = mlxk("health", "-f", m, "m", "--verbose").stdout
    assert "org/stray@ffffffffffff" in text and "NOT declared" in text
    assert "hf_cache" not in mlxk("health", "-f", m, "m", "--json").json["data"]["workspaces"][0]
    assert not p.verify().ok  # verify reports the undeclared file as drift
    assert lockfile.read(tmp_path / "mlxk.lock").workspaces["m"].runtime


def test_a_capture_runs_online_with_the_users_token_and_a_run_offline_without(tmp_path):
    from mlxk.runners import run_env
    from mlxk.settings import Settings

    user = {
        "HF_TOKEN": "hf_SECRETcapture0123456789",
        "HF_HOME": str(tmp_path / "user-hf"),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(tmp_path / "elsewhere"),
        "HF_ENDPOINT": "http://mirror.internal:8090",
        "PATH": "/usr/bin",
    }
    settings = Settings.from_env(user)
    online = run_env(tmp_path / "capture", settings, online=True)
    assert online["HF_HOME"] == str(tmp_path / "capture") and "HF_HUB_CACHE" not in online
    assert "HF_HUB_OFFLINE" not in online and online["HF_ENDPOINT"] == user["HF_ENDPOINT"]
    assert online["HF_TOKEN"] == user["HF_TOKEN"]  # HF_TOKEN as usual, and the login token:
    assert online["HF_TOKEN_PATH"] == str(tmp_path / "user-hf" / "token")
    offline = run_env(tmp_path / "ws" / ".hf_cache", settings)
    assert offline["HF_HUB_OFFLINE"] == "1" and offline["TRANSFORMERS_OFFLINE"] == "1"
    assert not {"HF_TOKEN", "HF_TOKEN_PATH"} & set(offline) and offline["PATH"] == "/usr/bin"
    bare = Settings.from_env({"HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert bare.hf_token_path() == tmp_path / "xdg" / "huggingface" / "token"
