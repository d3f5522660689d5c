"""The library API driven directly, with the in-process source (tests/memsource.py): lock,
plan (with provenance), sync, verify, bundle, gc and offline, no hub server and no mlx."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from mlxk import lock as lockfile
from mlxk import sources
from mlxk.errors import IntegrityError, LockError, SourceError, UserError
from mlxk.gc import collect, store_locks
from mlxk.manifest import manifest_schema
from mlxk.project import Project
from tests.memsource import MemKind, MemRepos
from tests.support import write_manifest

pytestmark = pytest.mark.unit

WEIGHTS = bytes(range(256)) * 8  # over lfs_over: declared by sha256
FILES = {
    "config.json": b'{"model_type": "llama"}',
    "model.safetensors": WEIGHTS,
    "README.md": b"hi",
}


@pytest.fixture
def repos() -> MemRepos:
    r = MemRepos()
    r.commit("org/m", FILES, "main", "v1")
    r.commit("org/tok", {"tokenizer.json": b"{}" * 80}, "main")
    return r


@pytest.fixture
def mem_kind():
    sources.register(MemKind())
    yield
    sources.unregister("mem")


def project(tmp_path, repos, body: str, offline: bool = False, name: str = "p") -> Project:
    path = write_manifest(tmp_path / name, body)
    return Project.load(path, clients={"hf": repos, "mem": repos}, offline=offline)


HF = "version: 1\nworkspaces:\n  m:\n    source: hf://org/m@v1\n"
TWO = HF + "  t:\n    source: hf://org/tok\n"
RUNTIME = HF + "    runtime: [hf://org/tok]\n"


def ws_dir(p: Project, name: str = "m") -> Path:
    return p.home / name


# ---------------------------------------------------------------- lock


def test_lock_pins_the_commit_and_every_files_sha256(tmp_path, repos):
    p = project(tmp_path, repos, HF)
    result = p.lock()
    ws = result.lock.workspaces["m"]
    assert ws.source.commit == repos.refs["org/m"]["v1"]
    want = {k: "sha256:" + hashlib.sha256(v).hexdigest() for k, v in FILES.items()}
    assert {f.path: f.hash for f in ws.files} == want
    assert result.actions == {"m": "resolved"} and result.written


def test_small_git_files_keep_their_hub_hash_and_large_ones_do_not(tmp_path, repos):
    ws = project(tmp_path, repos, HF).lock().lock.workspaces["m"]
    hub = {f.path: f.hub_hash for f in ws.files}
    assert hub["config.json"].startswith("gitsha1:") and hub["model.safetensors"] is None


def test_lock_is_byte_identical_and_not_rewritten(tmp_path, repos):
    p = project(tmp_path, repos, HF)
    p.lock()
    first = p.lock_path.read_bytes()
    assert not p.lock().written
    assert p.lock_path.read_bytes() == first


def test_lock_never_holds_an_absolute_path_or_token(tmp_path, repos, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_value")
    p = project(tmp_path, repos, HF)
    p.lock()
    text = p.lock_path.read_text()
    assert "hf_secret_token_value" not in text and str(tmp_path) not in text


def test_a_moved_branch_keeps_its_pin_until_upgrade(tmp_path, repos):
    p = project(tmp_path, repos, TWO)
    old = p.lock().lock.workspaces["t"].source.commit
    new = repos.commit("org/tok", {"tokenizer.json": b"[]" * 80}, "main")
    assert p.lock().lock.workspaces["t"].source.commit == old
    assert p.check_lock(refresh=True)["reasons"] == [
        f"t: hf://org/tok@main moved {old[:12]} → {new[:12]}"
    ]
    result = p.lock(upgrade=frozenset({"t"}))
    assert result.lock.workspaces["t"].source.commit == new
    assert result.actions == {"m": "kept", "t": "upgraded"}


def test_upgrade_of_an_unknown_workspace_is_a_user_error(tmp_path, repos):
    with pytest.raises(UserError) as e:
        project(tmp_path, repos, HF).lock(upgrade=frozenset({"nope"}))
    assert e.value.exit_code == 2 and "nope" in e.value.message


@pytest.mark.parametrize(
    ("include", "exclude", "want"),
    [
        ("['*.json']", "[]", {"config.json"}),
        ("[]", "['*.md']", {"config.json", "model.safetensors"}),
        ("['*.json', '*.safetensors']", "['config.json']", {"model.safetensors"}),
        ("['model.*']", "[]", {"model.safetensors"}),
    ],
)
def test_include_and_exclude_select_files(tmp_path, repos, include, exclude, want):
    body = HF + f"    include: {include}\n    exclude: {exclude}\n"
    if include == "[]":
        body = HF + f"    exclude: {exclude}\n"
    ws = project(tmp_path, repos, body).lock().lock.workspaces["m"]
    assert {f.path for f in ws.files} == want


def test_patterns_that_select_nothing_are_an_error_naming_the_source(tmp_path, repos):
    with pytest.raises(UserError) as e:
        project(tmp_path, repos, HF + "    include: ['*.gguf']\n").lock()
    assert "select no files of hf://org/m@v1" in e.value.message


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("version: 1\nworkspaces:\n  m: {source: 'hf://org/none'}\n", "repository not found"),
        ("version: 1\nworkspaces:\n  m: {source: 'hf://org/m@v9'}\n", "revision not found"),
    ],
)
def test_unknown_repos_and_revisions_are_source_errors(tmp_path, repos, body, fragment):
    with pytest.raises(SourceError) as e:
        project(tmp_path, repos, body).lock()
    assert fragment in e.value.message and e.value.exit_code == 3


def test_a_hub_that_is_down_fails_lock_and_writes_nothing(tmp_path, repos):
    repos.down = True
    p = project(tmp_path, repos, HF)
    with pytest.raises(SourceError):
        p.lock()
    assert not p.lock_path.exists()


def test_current_lock_locked_refuses_a_stale_lock(tmp_path, repos):
    p = project(tmp_path, repos, HF)
    p.lock()
    q = project(tmp_path, repos, TWO)
    with pytest.raises(LockError) as e:
        q.current_lock(locked=True)
    assert "t: not in the lock" in e.value.message


def test_check_lock_is_offline_and_names_each_reason(tmp_path, repos):
    p = project(tmp_path, repos, HF)
    assert p.check_lock()["reasons"] == ["no lock file"]
    p.lock()
    assert p.check_lock() == {"fresh": True, "reasons": [], "refreshed": False}
    repos.down = True
    assert project(tmp_path, repos, TWO).check_lock()["fresh"] is False


# ---------------------------------------------------------------- plan and provenance


def test_plan_of_a_fresh_machine_fetches_everything(tmp_path, repos):
    p = project(tmp_path, repos, HF)
    p.lock()
    plan = p.plan()
    ws = plan.workspaces[0]
    assert ws.op == "create"
    origins = {a.path: a.origin for a in ws.files}
    # config.json and README.md entered the store when lock learnt their sha256
    assert origins == {"config.json": "store", "README.md": "store", "model.safetensors": "fetch"}
    assert plan.summary()["bytes"]["download"] == len(WEIGHTS)
    assert {a.source for a in ws.files if a.origin == "fetch"} == {ws_source(p)}


def ws_source(p: Project) -> str:
    return p.read_lock().workspaces["m"].source.describe()


def test_plan_after_sync_has_no_changes_and_every_file_kept(tmp_path, repos):
    p = project(tmp_path, repos, HF)
    p.sync()
    plan = p.plan()
    assert not plan.has_changes
    assert {a.origin for a in plan.workspaces[0].files} == {"keep"}


def test_plan_of_a_damaged_workspace_places_from_the_store(tmp_path, repos):
    p = project(tmp_path, repos, HF)
    p.sync(link="copy")  # a copy of its own: damaging it leaves the store's blob intact
    (ws_dir(p) / "model.safetensors").write_bytes(b"x")
    ws = p.plan().workspaces[0]
    assert ws.op == "update"
    assert [(a.path, a.op, a.origin) for a in ws.to_write] == [
        ("model.safetensors", "replace", "store")
    ]


def test_offline_plan_marks_what_nothing_can_give(tmp_path, repos):
    p = project(tmp_path, repos, HF)
    p.lock()
    q = project(tmp_path, repos, HF, offline=True)
    q.store.root.joinpath("blobs").rename(tmp_path / "elsewhere")
    plan = q.plan()
    assert plan.missing() == [f"m/{f}" for f in sorted(FILES)]
    assert plan.summary()["bytes"]["missing"] == sum(len(v) for v in FILES.values())


def test_plan_json_is_valid_against_the_output_schema(tmp_path, repos):
    from tests.support import validate_output

    p = project(tmp_path, repos, RUNTIME)
    p.lock()
    doc = {"status": "changes", "command": "plan", "data": p.plan().to_dict(), "error": None}
    validate_output(doc)


# ---------------------------------------------------------------- sync and verify


@pytest.mark.parametrize("link", ["auto", "copy", "hardlink"])
def test_sync_places_exactly_the_locked_bytes(tmp_path, repos, link):
    p = project(tmp_path, repos, HF)
    report = p.sync(link=link)
    assert report.result.workspaces[0].added == len(FILES)
    for name, data in FILES.items():
        assert (ws_dir(p) / name).read_bytes() == data
    assert p.verify().ok


@pytest.mark.parametrize("link", ["auto", "copy", "hardlink"])
def test_a_second_sync_fetches_nothing(tmp_path, repos, link):
    p = project(tmp_path, repos, HF)
    p.sync(link=link)
    served = len(repos.served)
    report = project(tmp_path, repos, HF).sync(link=link)
    assert len(repos.served) == served and report.fetched == {"files": 0, "bytes": 0}


def test_sync_never_leaves_a_symlink(tmp_path, repos):
    p = project(tmp_path, repos, RUNTIME)
    p.sync()
    assert not [q for q in ws_dir(p).rglob("*") if q.is_symlink()]


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda d: (d / "model.safetensors").write_bytes(WEIGHTS[::-1]), "modified"),
        (lambda d: (d / "model.safetensors").write_bytes(WEIGHTS[:-1]), "modified"),
        (lambda d: (d / "README.md").unlink(), "missing"),
        (lambda d: (d / "extra.bin").write_bytes(b"x"), "extra"),
    ],
)
def test_verify_reports_drift_and_never_repairs(tmp_path, repos, damage, problem):
    p = project(tmp_path, repos, HF)
    p.sync()
    damage(ws_dir(p))
    before = {q.name: q.read_bytes() for q in ws_dir(p).iterdir() if q.is_file()}
    v = p.verify()
    assert not v.ok and [x.problem for x in v.workspaces[0].problems] == [problem]
    assert {q.name: q.read_bytes() for q in ws_dir(p).iterdir() if q.is_file()} == before


@pytest.mark.parametrize("fast", [False, True])
def test_verify_sees_an_edit_that_keeps_size_and_mtime(tmp_path, repos, fast):
    p = project(tmp_path, repos, HF)
    p.sync()
    assert p.verify(fast=True).ok  # primes the hash cache
    target = ws_dir(p) / "model.safetensors"
    st = target.stat()
    os.chmod(target, 0o644)
    target.write_bytes(WEIGHTS[::-1])
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert not project(tmp_path, repos, HF).verify(fast=fast).ok


def test_sync_repairs_from_the_store_without_fetching(tmp_path, repos):
    p = project(tmp_path, repos, HF)
    p.sync(link="copy")
    (ws_dir(p) / "model.safetensors").write_bytes(b"broken")
    served = len(repos.served)
    p.sync(link="copy")
    assert len(repos.served) == served
    assert p.verify().ok


def test_a_write_through_a_default_hardlink_is_repaired_by_fetching_again(
    tmp_path, repos, no_reflinks
):
    """No reflinks here, so the default links the read-only blob; root writes through it
    anyway: the blob is found corrupt (rehashed: it has two links) and fetched again."""
    p = project(tmp_path, repos, HF)
    p.sync()
    placed = ws_dir(p) / "model.safetensors"
    assert placed.stat().st_nlink == 2 and not placed.stat().st_mode & 0o222
    placed.write_bytes(b"broken")
    served = len(repos.served)
    p.sync()
    assert len(repos.served) == served + 1
    assert p.verify().ok and placed.read_bytes() == FILES["model.safetensors"]


def test_tampered_bytes_from_the_source_change_nothing_on_disk(tmp_path, repos):
    p = project(tmp_path, repos, HF)
    p.sync()
    new = repos.commit("org/m", {**FILES, "model.safetensors": WEIGHTS[::-1]}, "v1")
    repos.tamper["model.safetensors"] = WEIGHTS  # serves the old bytes for the new commit
    assert p.lock(upgrade=True).lock.workspaces["m"].source.commit == new
    with pytest.raises(IntegrityError):
        p.sync()
    assert (ws_dir(p) / "model.safetensors").read_bytes() == WEIGHTS
    assert not p.store.has(hashlib.sha256(WEIGHTS[::-1]).hexdigest())
    assert not list((p.home / ".mlxk-staging").glob("m.new.*"))


def test_verify_of_named_workspaces_and_unknown_names(tmp_path, repos):
    p = project(tmp_path, repos, TWO)
    p.sync()
    assert [w.name for w in p.verify(["t"]).workspaces] == ["t"]
    with pytest.raises(UserError):
        p.verify(["nope"])


def test_orphans_are_kept_unless_pruned(tmp_path, repos):
    p = project(tmp_path, repos, TWO)
    p.sync()
    q = project(tmp_path, repos, HF)
    q.sync()
    assert ws_dir(q, "t").is_dir()
    assert [w.op for w in q.plan().workspaces] == ["unchanged", "orphan"]
    q.sync(prune=True)
    assert not ws_dir(q, "t").exists()


def test_a_directory_mlxk_does_not_manage_blocks_sync(tmp_path, repos):
    p = project(tmp_path, repos, HF)
    ws_dir(p).mkdir(parents=True)
    (ws_dir(p) / "mine.txt").write_text("keep me")
    with pytest.raises(UserError):
        p.sync()
    assert (ws_dir(p) / "mine.txt").read_text() == "keep me"


def test_an_unknown_link_mode_is_a_user_error(tmp_path, repos):
    with pytest.raises(UserError):
        project(tmp_path, repos, HF).sync(link="symlink")


# ---------------------------------------------------------------- runtime captures


def test_runtime_repos_are_placed_in_hf_cache_layout_outside_the_content_hash(tmp_path, repos):
    p = project(tmp_path, repos, RUNTIME)
    p.sync()
    lock = p.read_lock()
    ws = lock.workspaces["m"]
    commit = repos.refs["org/tok"]["main"]
    cache = ws_dir(p) / ".hf_cache" / "hub" / "models--org--tok"
    assert (cache / "snapshots" / commit / "tokenizer.json").read_bytes() == b"{}" * 80
    assert (cache / "refs" / "main").read_text() == commit
    assert ws.content_hash == lockfile.workspace_content_hash(ws.files)
    assert p.verify().ok


def test_runtime_placements_say_where_each_file_comes_from(tmp_path, repos):
    p = project(tmp_path, repos, RUNTIME)
    ws = p.lock().lock.workspaces["m"]
    placed = {x.file.path: x for x in ws.placements()}
    ref = next(x for path, x in placed.items() if path.endswith("refs/main"))
    snap = next(x for path, x in placed.items() if path.endswith("tokenizer.json"))
    assert ref.data == repos.refs["org/tok"]["main"].encode() and ref.pin is None
    assert snap.pin.repo == "org/tok" and snap.entry.path == "tokenizer.json"


def test_every_capture_is_found_by_main_by_its_revision_and_by_its_commit(tmp_path, repos):
    """refs/main and refs/<revision> point at the locked commit; a commit pin needs none."""
    v1 = repos.commit("org/tok", {"tokenizer.json": b"[]" * 80}, "v1")
    body = HF + "    runtime: [hf://org/tok@v1]\n"
    p = project(tmp_path, repos, body)
    p.sync()
    cache = ws_dir(p) / ".hf_cache" / "hub" / "models--org--tok"
    assert {r.name: r.read_text() for r in (cache / "refs").iterdir()} == {"main": v1, "v1": v1}
    assert (cache / "snapshots" / v1 / "tokenizer.json").read_bytes() == b"[]" * 80
    assert p.verify().ok
    main = repos.refs["org/tok"]["main"]
    both = HF + f"    runtime: [hf://org/tok@v1, hf://org/tok@main, hf://org/tok@{main}]\n"
    p = project(tmp_path, repos, both)
    p.sync()
    assert {r.name: r.read_text() for r in (cache / "refs").iterdir()} == {"main": main, "v1": v1}
    assert sorted(q.name for q in (cache / "snapshots").iterdir()) == sorted([v1, main])
    assert p.verify().ok


def test_runtime_refs_are_derived_and_never_in_the_lock(tmp_path, repos):
    p = project(
        tmp_path, repos, HF + f"    runtime: [hf://org/tok@{repos.refs['org/tok']['main']}]\n"
    )
    ws = p.lock().lock.workspaces["m"]
    (rt,) = ws.runtime
    assert set(rt.to_dict()) == {"files", "repo", "revision", "commit"}
    refs = lockfile.runtime_refs(ws.runtime)
    assert refs == {(rt.cache_dir, "main"): rt.commit}


# ---------------------------------------------------------------- offline


def test_offline_sync_from_a_full_store_uses_no_network(tmp_path, repos):
    p = project(tmp_path, repos, HF)
    p.sync()
    import shutil

    shutil.rmtree(ws_dir(p))
    repos.down = True
    report = project(tmp_path, repos, HF, offline=True).sync(frozen=True)
    assert report.fetched["files"] == 0 and p.verify().ok


def test_offline_sync_names_every_missing_file_and_changes_nothing(tmp_path, repos):
    project(tmp_path, repos, HF).lock()
    q = project(tmp_path, repos, HF, offline=True)
    import shutil

    shutil.rmtree(q.store.root / "blobs")
    with pytest.raises(SourceError) as e:
        q.sync(frozen=True)
    assert e.value.message.startswith("offline: 3 file(s) are not in the store")
    assert not ws_dir(q).exists()


def test_offline_stale_lock_says_locking_needs_the_network(tmp_path, repos):
    project(tmp_path, repos, HF).lock()
    with pytest.raises(SourceError) as e:
        project(tmp_path, repos, TWO, offline=True).sync()
    assert "needs the network" in e.value.message


# ---------------------------------------------------------------- bundles and gc


def test_a_bundle_carries_everything_an_isolated_project_needs(tmp_path, repos, monkeypatch):
    from mlxk.importing import import_bundle

    p = project(tmp_path, repos, RUNTIME)
    p.sync()
    report = p.bundle(tmp_path / "b.tar")
    assert report.ok and report.format == "tar"
    monkeypatch.setenv("MLXK_STORE", str(tmp_path / "isolated-store"))
    dest = tmp_path / "isolated" / "models.yaml"
    dest.parent.mkdir()
    import_bundle(tmp_path / "b.tar", dest)
    repos.down = True
    q = Project.load(dest, offline=True)
    q.sync(frozen=True)
    assert q.verify().ok


def test_bundles_are_byte_identical(tmp_path, repos):
    p = project(tmp_path, repos, HF)
    p.sync()
    p.bundle(tmp_path / "a.tar")
    p.bundle(tmp_path / "b.tar")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_gc_keeps_every_recorded_projects_blobs(tmp_path, repos):
    a = project(tmp_path, repos, HF, name="a")
    a.sync()
    b = project(
        tmp_path, repos, "version: 1\nworkspaces:\n  t: {source: 'hf://org/tok'}\n", name="b"
    )
    b.sync()
    locks, forgotten = store_locks(a.store)
    assert len(locks) == 2 and not forgotten
    report = collect(a.store, locks, grace=0)
    assert report.removed == 0
    b.lock_path.unlink()
    locks, forgotten = store_locks(a.store)
    assert [f["reason"] for f in forgotten] == ["its lock is gone"]
    assert collect(a.store, locks, grace=0).removed == 1


# ---------------------------------------------------------------- a source kind of its own


MEM = "version: 1\nworkspaces:\n  m:\n    source: mem://org-m@v1\n"


def test_a_new_source_kind_adds_its_schema_fragment(mem_kind):
    source = manifest_schema()["$defs"]["source"]
    assert "'mem://NAME[@revision]'" in source["x-message"]
    assert any(b.get("pattern", "").startswith("^mem://") for b in source["oneOf"])


def test_without_the_kind_its_form_is_a_manifest_error(tmp_path, repos):
    from mlxk.errors import ManifestError

    with pytest.raises(ManifestError) as e:
        project(tmp_path, repos, MEM)
    assert "a source is" in e.value.message


def test_a_new_source_kind_locks_syncs_and_verifies(tmp_path, repos, mem_kind):
    repos.commit("org-m", FILES, "v1")
    p = project(tmp_path, repos, MEM)
    p.sync()
    lock = p.read_lock()
    assert lock.workspaces["m"].source.to_dict()["kind"] == "mem"
    assert lockfile.loads(p.lock_path.read_text()) == lock
    assert p.verify().ok
    assert (ws_dir(p) / "model.safetensors").read_bytes() == WEIGHTS


def test_a_new_source_kind_reports_a_moved_revision(tmp_path, repos, mem_kind):
    repos.commit("org-m", FILES, "v1")
    p = project(tmp_path, repos, MEM)
    p.lock()
    repos.commit("org-m", {"x": b"y"}, "v1")
    assert p.check_lock(refresh=True)["reasons"] == ["m: mem://org-m@v1 moved"]


def test_a_lock_naming_an_unknown_kind_is_refused_naming_the_field(tmp_path, repos, mem_kind):
    repos.commit("org-m", FILES, "v1")
    p = project(tmp_path, repos, MEM)
    p.lock()
    sources.unregister("mem")
    with pytest.raises(LockError) as e:
        p.read_lock()
    assert "workspaces.m.source.kind: unknown source kind 'mem'" in e.value.message
    sources.register(MemKind())
