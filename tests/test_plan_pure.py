"""plan and verify are pure functions of (lock, disk state): driven here without any I/O."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlxk.lock import FileEntry, Lock, LockedWorkspace, workspace_content_hash
from mlxk.plan import make_plan
from mlxk.sources.path import PathPin
from mlxk.verify import diff_files, verify_workspace
from mlxk.workspace import DiskFile, WorkspaceState

pytestmark = pytest.mark.unit

A = FileEntry("a.json", 3, "sha256:" + "a" * 64)
B = FileEntry("w/b.safetensors", 5, "sha256:" + "b" * 64)


def locked(*files) -> LockedWorkspace:
    return LockedWorkspace(
        "m",
        "sha256:" + "0" * 64,
        PathPin(tuple(files), path="src"),
        workspace_content_hash(files),
    )


def state(files: dict, sentinel="S", exists=True) -> WorkspaceState:
    return WorkspaceState(
        Path("/h/m"), exists, sentinel, {"managed": True} if sentinel else None, files
    )


def disk(entry: FileEntry, **over) -> DiskFile:
    return DiskFile(
        size=over.get("size", entry.size),
        hash=over.get("hash", entry.hash),
        kind=over.get("kind", "file"),
    )


def test_diff_reports_each_kind_of_difference_sorted():
    d = diff_files(
        (A, B),
        {"a.json": disk(A, hash="sha256:" + "f" * 64), "zz": DiskFile(1, "sha256:" + "c" * 64)},
    )
    assert [(p.path, p.problem) for p in d.problems] == [
        ("a.json", "modified"),
        ("w/b.safetensors", "missing"),
        ("zz", "extra"),
    ]
    d = diff_files((A,), {"a.json": DiskFile(3, None, "symlink")})
    assert d.problems[0].problem == "not_a_file"
    d = diff_files((A,), {"a.json": disk(A, size=4)})
    assert "size 4, locked 3" in d.problems[0].detail


def test_plan_create_update_unchanged_blocked_orphan():
    lock = Lock(
        "sha256:" + "0" * 64,
        {"new": locked(A), "same": locked(A, B), "drift": locked(A, B), "theirs": locked(A)},
    )
    states = {
        "new": state({}, exists=False),
        "same": state({"a.json": disk(A), "w/b.safetensors": disk(B)}),
        "drift": state({"a.json": disk(A, size=9), "extra": DiskFile(1, "sha256:" + "e" * 64)}),
        "theirs": state({"a.json": disk(A)}, sentinel=None),
    }
    sentinels = dict.fromkeys(states, "S")
    orphan = state({"x": DiskFile(1, "sha256:" + "e" * 64)})
    plan = make_plan(lock, states, sentinels, {"old": orphan})
    ops = {w.name: w.op for w in plan.workspaces}
    assert ops == {
        "new": "create",
        "same": "unchanged",
        "drift": "update",
        "theirs": "blocked",
        "old": "orphan",
    }
    drift = next(w for w in plan.workspaces if w.name == "drift")
    assert {(f.path, f.op) for f in drift.files} == {
        ("a.json", "replace"),
        ("w/b.safetensors", "add"),
        ("extra", "delete"),
    }
    assert plan.has_changes
    assert plan.summary()["bytes_to_write"] == 3 + 3 + 5
    pruned = make_plan(lock, states, sentinels, {"old": orphan}, prune=True)
    assert next(w for w in pruned.workspaces if w.name == "old").op == "remove"


def test_sentinel_change_alone_is_an_update_and_verify_drift():
    st = state({"a.json": disk(A)}, sentinel="edited")
    plan = make_plan(Lock("d", {"m": locked(A)}), {"m": st}, {"m": "S"}, {})
    assert plan.workspaces[0].op == "update" and plan.workspaces[0].reason == "sentinel out of date"
    report = verify_workspace("m", locked(A), st, "S", "models/m")
    assert report.status == "drift"
    assert report.problems[0].path == ".mlxk_workspace.json"


def test_nothing_to_do_when_disk_matches():
    st = state({"a.json": disk(A)})
    plan = make_plan(Lock("d", {"m": locked(A)}), {"m": st}, {"m": "S"}, {})
    assert not plan.has_changes
    assert verify_workspace("m", locked(A), st, "S", "models/m").status == "ok"
