"""Big files in pieces: several Range requests at once against a real HTTP hub (the fast hub of
benchmarks/, optionally rate-capped per connection or ignoring Range as olah does), written at
their offsets, hashed in order, each piece resumed where it stopped; and one stream when the
server ignores Range."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import pytest

from benchmarks.fasthub import FastHub, lfs_file
from mlxk import interrupt
from mlxk.errors import IntegrityError
from mlxk.ranged import RangePolicy, sidecar_path
from mlxk.sources.hf_client import HfClient
from mlxk.store import Store

KIB = 1024
SIZE = 5 * 1024 * KIB + 123  # 21 pieces, the last one short
SMALL = RangePolicy(
    min_size=1024 * KIB, piece=256 * KIB, min_piece=256 * KIB, connections=4, buffer=512 * KIB
)
REPO, NAME = "org/big", "model.safetensors"


def data_of(size: int, seed: str = "x") -> bytes:
    block = b"".join(hashlib.sha256(f"{seed}{i}".encode()).digest() for i in range(256))
    return (block * (size // len(block) + 1))[:size]


@pytest.fixture
def blob_file(tmp_path) -> tuple[Path, bytes, str]:
    data = data_of(SIZE)
    path = tmp_path / "served.bin"
    path.write_bytes(data)
    return path, data, hashlib.sha256(data).hexdigest()


def serve(hub: FastHub, blob_file, sha: str | None = None) -> FastHub:
    path, data, real = blob_file
    hub.add_repo(REPO, [lfs_file(NAME, path, len(data), sha or real)])
    return hub


def fetch(hub: FastHub, store: Store, blob_file, on_bytes=None) -> str:
    _, data, sha = blob_file
    opener = HfClient(hub.endpoint, token="").opener(REPO, "main", NAME)
    return store.fetch(opener, len(data), "sha256:" + sha, label=NAME, on_bytes=on_bytes)


def partial_of(store: Store, sha: str) -> Path:
    return store.tmp / f"sha256-{sha}.partial"


def stop_after(limit: int):
    """An on_bytes that stops the download (as Ctrl-C does) once `limit` bytes came."""
    seen = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def on_bytes(n: int) -> None:
        with lock:
            seen[0] += n
            if seen[0] >= limit:
                stop.set()
        interrupt.check(stop)

    return on_bytes


def test_a_capped_server_gets_every_connection_and_no_byte_twice(tmp_path, blob_file):
    """Each connection capped at 1 MiB/s: the stream alone, then a helper on the last piece,
    which doubles the rate, so the rest of the stream is cut into pieces for 4 connections at
    once (the speed-up itself is a benchmark figure, not a timed test). Every byte is received
    and written once (the stream's request is cut short where the pieces begin)."""
    store = Store(tmp_path / "store", ranges=SMALL)
    got = []
    with serve(FastHub(rate=1024 * KIB), blob_file) as hub:
        digest = fetch(hub, store, blob_file, on_bytes=got.append)
    _, data, sha = blob_file
    assert digest == "sha256:" + sha and store.blob_path(sha).read_bytes() == data
    assert hub.peak >= 2, hub.peak
    assert sum(got) == SIZE
    stream, *pieces = [(start, end) for _, start, end in hub.gets]
    assert stream == (0, SIZE) and len(pieces) > SMALL.connections and hub.ranged == len(hub.gets)
    pieces.sort()
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:], strict=False))  # no overlap
    assert pieces[-1][1] == SIZE
    assert list(store.tmp.iterdir()) == []  # no partial, no sidecar


def test_a_fast_server_gets_one_stream(tmp_path, blob_file):
    """Uncapped, the stream is done before a helper could pay off, or the helper on the last
    piece does not double the rate: at most two requests, each byte received once."""
    store = Store(tmp_path / "store", ranges=SMALL)
    got = []
    with serve(FastHub(), blob_file) as hub:
        fetch(hub, store, blob_file, on_bytes=got.append)
    assert len(hub.gets) <= 2 and sum(got) == SIZE


def test_small_files_and_other_sources_come_in_one_stream(tmp_path, blob_file):
    store = Store(tmp_path / "store", ranges=RangePolicy(min_size=SIZE + 1))
    with serve(FastHub(), blob_file) as hub:
        fetch(hub, store, blob_file)
    assert hub.gets == [(NAME, 0, SIZE)] and hub.ranged == 0


def test_a_server_that_ignores_range_gets_one_stream(tmp_path, blob_file):
    """olah answers a Range request with the whole file (200): the first piece's answer says
    so, and the file comes in one plain GET."""
    store = Store(tmp_path / "store", ranges=SMALL)
    with serve(FastHub(ranges=False), blob_file) as hub:
        digest = fetch(hub, store, blob_file)
    _, data, sha = blob_file
    assert digest == "sha256:" + sha and store.blob_path(sha).read_bytes() == data
    assert hub.ranged == 0 and len(hub.gets) <= SMALL.connections + 1
    assert list(store.tmp.iterdir()) == []


def test_each_piece_resumes_where_it_stopped(tmp_path, blob_file):
    _, data, sha = blob_file
    store = Store(tmp_path / "store", ranges=SMALL)
    with serve(FastHub(rate=2048 * KIB), blob_file) as hub:
        with pytest.raises(interrupt.Stopped):
            fetch(hub, store, blob_file, on_bytes=stop_after(SIZE // 3))
        side = json.loads(sidecar_path(partial_of(store, sha)).read_text())
        pieces = side["pieces"]
        done = sum(d for _, _, d in pieces)
        begun = [(a, d) for a, b, d in pieces if 0 < d < b - a]
        assert side["size"] == SIZE and SIZE // 3 <= done < SIZE and begun
        # what the sidecar claims is really in the partial file
        part = partial_of(store, sha).read_bytes()
        assert all(part[a : a + d] == data[a : a + d] for a, _, d in pieces)
        gets, got = len(hub.gets), []
        assert fetch(hub, store, blob_file, on_bytes=got.append) == "sha256:" + sha
        assert sum(got) == SIZE - done  # none of what was kept came again
        starts = {start for _, start, _ in hub.gets[gets:]}
        assert {a + d for a, d in begun} <= starts  # each begun piece resumed where it stopped
        assert not any(a <= s < a + d for s in starts for a, _, d in pieces)
    assert store.blob_path(sha).read_bytes() == data
    assert list(store.tmp.iterdir()) == []


def test_stopping_a_ranged_download_is_prompt(tmp_path, blob_file):
    """Ctrl-C reaches every connection at its next chunk: the fetch ends within a second on a
    slow server (1 MiB/s per connection)."""
    store = Store(tmp_path / "store", ranges=SMALL)
    stop = threading.Event()

    def on_bytes(n: int) -> None:
        interrupt.check(stop)

    with serve(FastHub(rate=1024 * KIB), blob_file) as hub:
        threading.Timer(0.5, stop.set).start()
        began = time.monotonic()
        with pytest.raises(interrupt.Stopped):
            fetch(hub, store, blob_file, on_bytes=on_bytes)
        took = time.monotonic() - began
    assert took < 0.5 + 1.0, took
    _, _, sha = blob_file
    assert sidecar_path(partial_of(store, sha)).exists()


def test_a_single_stream_partial_is_carried_into_pieces(tmp_path, blob_file):
    """What an interrupted single-stream fetch left is kept: the pieces start after it."""
    _, data, sha = blob_file
    store = Store(tmp_path / "store", ranges=SMALL)
    store.tmp.mkdir(parents=True)
    kept = 1000 * KIB + 7
    partial_of(store, sha).write_bytes(data[:kept])
    with serve(FastHub(), blob_file) as hub:
        assert fetch(hub, store, blob_file) == "sha256:" + sha
    assert sum(e - s for _, s, e in hub.gets) == SIZE - kept
    assert min(s for _, s, _ in hub.gets) == kept


def test_a_ranged_partial_is_carried_into_one_stream(tmp_path, blob_file):
    """A ranged download stopped, and the file is then asked for by an opener that streams
    only: the part from the start without a gap is kept, the rest comes in one stream."""
    _, data, sha = blob_file
    store = Store(tmp_path / "store", ranges=SMALL)
    with serve(FastHub(rate=2048 * KIB), blob_file) as hub, pytest.raises(interrupt.Stopped):
        fetch(hub, store, blob_file, on_bytes=stop_after(SIZE // 2))
    pieces = json.loads(sidecar_path(partial_of(store, sha)).read_text())["pieces"]
    gapless = 0
    for a, b, d in pieces:
        gapless = a + d
        if d < b - a:
            break
    with serve(FastHub(), blob_file) as hub:
        opener = HfClient(hub.endpoint, token="").opener(REPO, "main", NAME)
        digest = store.fetch(lambda offset: opener(offset), SIZE, "sha256:" + sha, label=NAME)
    assert digest == "sha256:" + sha and store.blob_path(sha).read_bytes() == data
    assert hub.gets == [(NAME, gapless, SIZE)]
    assert list(store.tmp.iterdir()) == []


def test_wrong_bytes_in_pieces_change_nothing(tmp_path, blob_file):
    store = Store(tmp_path / "store", ranges=SMALL)
    lie = hashlib.sha256(b"something else").hexdigest()
    path, data, _ = blob_file
    with serve(FastHub(), blob_file, sha=lie) as hub:
        opener = HfClient(hub.endpoint, token="").opener(REPO, "main", NAME)
        with pytest.raises(IntegrityError):
            store.fetch(opener, len(data), "sha256:" + lie, label=NAME)
    assert list(store.tmp.iterdir()) == [] and not store.has(lie)
