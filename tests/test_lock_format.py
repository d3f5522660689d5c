"""The lock's text form: canonical, strict on load, written atomically."""

from __future__ import annotations

import json

import pytest

from mlxk import lock as lockfile
from mlxk.errors import LockError
from mlxk.lock import FileEntry, Lock, LockedWorkspace, workspace_content_hash
from mlxk.sources.hf import HfPin

pytestmark = pytest.mark.unit

H1 = "sha256:" + "1" * 64
H2 = "sha256:" + "2" * 64


def sample() -> Lock:
    files = (
        FileEntry("config.json", 10, H1, "gitsha1:" + "a" * 40),
        FileEntry("model.safetensors", 20, H2),
    )
    ws = LockedWorkspace(
        name="m",
        spec_digest="sha256:" + "3" * 64,
        source=HfPin(files, repo="o/m", revision="main", commit="c" * 40),
        content_hash=workspace_content_hash(files),
    )
    return Lock(manifest_digest="sha256:" + "4" * 64, workspaces={"m": ws})


def test_round_trip_is_byte_identical_and_canonical():
    text = lockfile.dumps(sample())
    assert lockfile.dumps(lockfile.loads(text)) == text
    assert text.endswith("}\n") and "\r" not in text
    assert json.loads(text)["lock_version"] == 1
    # sorted keys, fixed indentation
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"


def test_content_hash_is_sha256sum_of_a_sorted_listing():
    import hashlib

    listing = f"{'1' * 64}  config.json\n{'2' * 64}  model.safetensors\n"
    expected = "sha256:" + hashlib.sha256(listing.encode()).hexdigest()
    assert sample().workspaces["m"].content_hash == expected


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda d: d["workspaces"]["m"]["source"]["files"][0].update(hash="sha256:" + "9" * 64),
            "content_hash: does not match the file hashes listed",
        ),
        (
            lambda d: d["workspaces"]["m"]["source"]["files"][0].update(hash="md5:abc"),
            "files[0].hash: not a sha256",
        ),
        (
            lambda d: d["workspaces"]["m"]["source"]["files"][0].update(path="../../etc/passwd"),
            "files[0].path: unsafe path",
        ),
        (
            lambda d: d["workspaces"]["m"]["source"]["files"][1].update(path="/abs"),
            "files[1].path: unsafe path",
        ),
        (
            lambda d: d["workspaces"]["m"]["source"].update(commit="main"),
            "source.commit: not a 40-hex commit",
        ),
        (lambda d: d.update(lock_version=99), "unsupported version 99"),
        (
            lambda d: d["workspaces"].update({"../../escaped": d["workspaces"]["m"]}),
            "not a workspace name",
        ),
        (lambda d: d["workspaces"]["m"].pop("content_hash"), "missing 'content_hash'"),
        (
            lambda d: d["workspaces"]["m"]["source"]["files"][0].update(size="10"),
            "files[0].size: expected int",
        ),
    ],
)
def test_hand_edited_locks_are_refused_with_the_field(edit, message):
    doc = json.loads(lockfile.dumps(sample()))
    edit(doc)
    with pytest.raises(LockError) as e:
        lockfile.loads(json.dumps(doc))
    assert message in e.value.message
    assert e.value.exit_code == 2


def test_not_json_names_line_and_column():
    with pytest.raises(LockError) as e:
        lockfile.loads('{\n  "lock_version": 1,\n  oops\n}')
    assert e.value.message.startswith("mlxk.lock:3:3: not valid JSON")


def test_write_is_atomic_and_skips_identical_text(tmp_path):
    path = tmp_path / "mlxk.lock"
    assert lockfile.write(path, sample()) is True
    before = path.stat().st_mtime_ns
    assert lockfile.write(path, sample()) is False
    assert path.stat().st_mtime_ns == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlxk.lock"]  # no temp left over
