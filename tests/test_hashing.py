"""Parallel file hashing (plain threads): every file hashed once, right, in the order given;
a failure in any thread reaches the caller."""

from __future__ import annotations

import hashlib

import pytest

from mlxk.hashing import hash_files

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("jobs", [1, 2, 4, 16])
def test_hash_files_matches_hashlib_in_order(tmp_path, jobs):
    paths = []
    for i in range(7):
        p = tmp_path / f"f{6 - i}"
        p.write_bytes(bytes([i]) * (i * 300_000))
        paths.append(p)
    seen = []
    out = hash_files(paths, jobs=jobs, on_done=lambda p, n: seen.append(p))
    assert list(out) == paths and sorted(seen) == sorted(paths)
    for p in paths:
        data = p.read_bytes()
        assert out[p] == (len(data), "sha256:" + hashlib.sha256(data).hexdigest())
    assert hash_files([], jobs=jobs) == {}


def test_a_failure_in_any_thread_reaches_the_caller(tmp_path):
    paths = [tmp_path / f"f{i}" for i in range(6)]
    for p in paths[:-1]:
        p.write_bytes(b"x" * 100_000)
    with pytest.raises(FileNotFoundError):
        hash_files(paths, jobs=3)
