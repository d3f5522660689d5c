"""Parallel file hashing (plain threads): every file hashed once, right, in the order given;
a failure in any thread reaches the caller."""

from __future__ import annotations

import hashlib
import os

import pytest

from mlxk import hashing
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


@pytest.fixture
def small_windows(monkeypatch):
    """Map windows of two pages, from one page up: the mapped path on tiny files."""
    monkeypatch.setattr(hashing, "MAP_MIN", 4096)
    monkeypatch.setattr(hashing, "WINDOW", 8192)


def git_sha1(data: bytes) -> str:
    return "gitsha1:" + hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.mark.parametrize("size", [0, 4095, 4096, 8192, 8193, 30_000])
def test_mapped_windows_hash_like_hashlib(tmp_path, small_windows, size, monkeypatch):
    import mmap

    mapped = []
    real = mmap.mmap
    monkeypatch.setattr(mmap, "mmap", lambda *a, **k: mapped.append(a[1]) or real(*a, **k))
    p = tmp_path / "f"
    data = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    p.write_bytes(data)
    got = hashing.hash_file(p, git=True)
    assert got == (size, "sha256:" + hashlib.sha256(data).hexdigest(), git_sha1(data))
    assert sum(mapped) == (size if size >= 4096 else 0) and all(n <= 8192 for n in mapped)


def test_a_file_that_cannot_be_mapped_is_read(tmp_path, small_windows, monkeypatch):
    import mmap

    def refuse(*a, **k):
        raise OSError(19, "No such device")  # as a filesystem without mmap answers

    monkeypatch.setattr(mmap, "mmap", refuse)
    p = tmp_path / "f"
    p.write_bytes(b"q" * 20_000)
    assert hashing.hash_file(p)[1] == "sha256:" + hashlib.sha256(b"q" * 20_000).hexdigest()


def test_a_file_cut_short_while_hashed_is_read_to_its_new_end(tmp_path, small_windows, monkeypatch):
    """No window is mapped past the end: the hash is that of what the file holds now."""
    p = tmp_path / "f"
    p.write_bytes(b"a" * 8192 + b"b" * 20_000)
    update = hashing.StreamHasher.update

    def cut_after_first(self, data):
        update(self, data)
        if self.size == 8192:
            os.truncate(p, 10_000)

    monkeypatch.setattr(hashing.StreamHasher, "update", cut_after_first)
    size, digest, _ = hashing.hash_file(p)
    now = p.read_bytes()
    assert size == len(now) == 10_000 and digest == "sha256:" + hashlib.sha256(now).hexdigest()
