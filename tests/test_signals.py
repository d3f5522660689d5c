"""Ctrl-C and SIGTERM during a real `mlxk sync` of big files from a rate-capped hub: the
process exits within a second, with 130 (SIGINT) or 143 (SIGTERM), no traceback however often
the signal comes, the previous workspace untouched, no staging left, and the partial downloads
kept where the next sync resumes them."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.fasthub import FastHub, lfs_file
from tests.support import write_manifest

SHARD = 6 * 1024 * 1024
RATE = 3 * 1024 * 1024  # bytes/s per connection: a 6 MiB shard takes 2 s


def add_repo(hub: FastHub, root: Path, repo: str, shards: int, size: int) -> dict[str, bytes]:
    files, out = [], {}
    for i in range(shards):
        data = hashlib.sha256(f"{repo}{i}".encode()).digest() * (size // 32)
        path = root / f"{repo.replace('/', '_')}-{i}.bin"
        path.write_bytes(data)
        name = f"model-{i}.safetensors"
        files.append(lfs_file(name, path, len(data), hashlib.sha256(data).hexdigest()))
        out[name] = data
    hub.add_repo(repo, files)
    return out


def manifest(root: Path, repo: str) -> str:
    return str(write_manifest(root, f"version: 1\nworkspaces:\n  m:\n    source: hf://{repo}\n"))


@pytest.fixture
def capped(tmp_path, monkeypatch):
    with FastHub(rate=RATE) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        yield hub


def start_sync(m: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mlxk.cli", "sync", "-f", m, "-j", "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_partials(store: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        parts = list((store / "tmp").glob("*.partial")) if (store / "tmp").is_dir() else []
        if parts and all(p.stat().st_size > 0 for p in parts) and len(parts) >= 2:
            return
        time.sleep(0.05)
    raise AssertionError("no download started")


@pytest.mark.parametrize(
    ("signals", "code"),
    [
        ((signal.SIGINT,), 130),
        ((signal.SIGINT, signal.SIGINT, signal.SIGINT), 130),
        ((signal.SIGTERM,), 143),
    ],
    ids=["sigint", "sigint-thrice", "sigterm"],
)
def test_a_signal_stops_sync_at_once_and_loses_nothing(tmp_path, mlxk, capped, signals, code):
    root = tmp_path / "p"
    small = add_repo(capped, tmp_path, "org/small", 1, 64 * 1024)
    big = add_repo(capped, tmp_path, "org/big", 4, SHARD)
    m = manifest(root, "org/small")
    assert mlxk("sync", "-f", m).exit_code == 0
    manifest(root, "org/big")
    proc = start_sync(m)
    wait_for_partials(tmp_path / "store")
    began = time.monotonic()
    for sig in signals:
        proc.send_signal(sig)
        time.sleep(0.05)
    _, err = proc.communicate(timeout=20)
    took = time.monotonic() - began
    print(f"\n{'+'.join(map(str, signals))}: exit {proc.returncode} after {took:.3f} s")
    assert proc.returncode == code, err
    assert took < 1.0 + 0.05 * len(signals), f"exited {took:.2f} s after the signal"
    assert "Traceback" not in err and "interrupted" in err
    ws = root / "models" / "m"
    assert {
        p.name: p.read_bytes() for p in ws.iterdir() if p.is_file() and p.suffix != ".json"
    } == small
    assert not (root / "models" / ".mlxk-staging").exists()
    # the next sync resumes the partial downloads (Range requests from where they stopped)
    kept = sum(p.stat().st_size for p in (tmp_path / "store" / "tmp").glob("*.partial"))
    assert 0 < kept < sum(len(v) for v in big.values())
    assert mlxk("sync", "-f", m).exit_code == 0
    assert capped.ranged >= 2
    assert {p.name: p.read_bytes() for p in ws.iterdir() if p.name.endswith(".safetensors")} == big
    assert mlxk("verify", "-f", m).exit_code == 0


def test_interrupt_exit_codes_are_documented():
    text = (Path(__file__).parent.parent / "docs" / "exit-codes.md").read_text()
    assert "| 130 | SIGINT" in text and "| 143 | SIGTERM" in text


def test_a_signal_stops_a_ranged_download_at_once_and_each_piece_resumes(tmp_path, capped):
    """A file above the ranged threshold comes in pieces, 8 connections at once; Ctrl-C stops
    every one at its next chunk, and the next sync asks only for what no piece has yet."""
    from mlxk.ranged import RangePolicy

    root = tmp_path / "p"
    size = RangePolicy().min_size + 8 * 1024 * 1024
    big = add_repo(capped, tmp_path, "org/one", 1, size)
    m = manifest(root, "org/one")
    proc = start_sync(m)
    store = tmp_path / "store" / "tmp"
    deadline = time.monotonic() + 30
    while not list(store.glob("*.parts")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # every connection is receiving
    began = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    took = time.monotonic() - began
    assert proc.returncode == 130, err
    assert took < 1.0, f"exited {took:.2f} s after the signal"
    assert "Traceback" not in err
    (side,) = store.glob("*.parts")
    import json

    pieces = json.loads(side.read_text())["pieces"]
    done = sum(d for _, _, d in pieces)
    assert len(pieces) > 1 and 0 < done < size
    gets = len(capped.gets)
    proc = subprocess.run(
        [sys.executable, "-m", "mlxk.cli", "sync", "-f", m], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    asked = capped.gets[gets:]
    assert sum(end - start for _, start, end in asked) == size - done
    ws = root / "models" / "m"
    assert (ws / "model-0.safetensors").read_bytes() == big["model-0.safetensors"]
