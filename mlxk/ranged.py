"""One big file as several Range requests at once, into the store's partial file.

The file is cut into pieces (`RangePolicy.piece_for`); up to `connections` threads each take
the lowest piece nobody has taken, GET it with `Range`, and write it at its offset. The number
of connections ramps: one, measured for a moment, then two; if two were clearly faster the
server caps each connection (as CDNs do) and all of them start, else it goes back to one (one
connection already gets what this machine can hash and write; more would only cost CPU). The
calling
thread hashes meanwhile, in file order, as the contiguous prefix grows: bytes that arrive near
the hash position (within `buffer` bytes of it) are hashed from memory as they come; the rest
are read back from the page cache once the prefix reaches them. So the hasher trails the
download by about `connections` pieces and every byte is hashed exactly once.

What has been written is recorded beside the partial file (`<key>.parts`, JSON: the size and
each piece's start, end and bytes done), at most once a second and whenever the download
stops, so an interrupted download resumes each piece where it stopped. A server that ignores
`Range` (answers 200 with the whole file, as olah does) raises `NoRanges`: the store then
streams the file in one request.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import platform
from .errors import SourceError
from .hashing import CHUNK, StreamHasher

MIB = 1 << 20
SAVE_EVERY = 1.0  # seconds between sidecar updates while downloading
JOIN_WAIT = 1.0  # seconds the stopped threads get to finish their chunk
WRITEBACK = 16 * MIB  # bytes written between starting their writeback (sync_file_range)
PROBE = 0.3  # seconds one and then two connections are measured for
SCALES = 1.7  # two connections at least this much faster than one: the server caps each

# span(start, end) -> the bytes [start, end) of the file, or None if the server ignored Range
Span = Callable[[int, int], Iterator[bytes] | None]


@dataclass(frozen=True)
class RangePolicy:
    min_size: int = 64 * MIB  # files at least this big are fetched in pieces
    piece: int = 32 * MIB  # bytes per Range request, at most
    min_piece: int = 8 * MIB  # and at least: a smaller file gets smaller pieces, for every
    connections: int = 8  # parallel requests per file (connection to have some)
    buffer: int = 8 * MIB  # bytes held in memory for the hasher, ahead of its position

    def piece_for(self, size: int) -> int:
        """Pieces small enough for two per connection, within [min_piece, piece]."""
        return max(1, min(self.piece, max(self.min_piece, size // (2 * self.connections))))


class NoRanges(Exception):
    """The server answered a Range request with the whole file."""


class _Piece:
    __slots__ = ("start", "end", "done", "taken", "chunks", "mem_from")

    def __init__(self, start: int, end: int, done: int = 0):
        self.start, self.end, self.done = start, end, done
        self.taken = False
        self.chunks: deque[bytes] | None = deque()  # bytes [mem_from, start + done), in memory
        self.mem_from = start + done

    @property
    def top(self) -> int:
        return self.start + self.done


def sidecar_path(partial: Path) -> Path:
    return partial.with_suffix(".parts")


def cut(start: int, end: int, piece: int) -> list[tuple[int, int, int]]:
    return [(a, min(a + piece, end), 0) for a in range(start, end, piece)]


def load_sidecar(partial: Path, size: int) -> list[tuple[int, int, int]] | None:
    """The pieces an interrupted ranged download recorded, if they describe this file."""
    try:
        data = json.loads(sidecar_path(partial).read_text())
        pieces = [(int(a), int(b), int(d)) for a, b, d in data["pieces"]]
        ok = data["size"] == size and partial.stat().st_size == size
    except (OSError, ValueError, KeyError, TypeError):
        return None
    edge = 0
    for a, b, d in pieces:
        ok = ok and a == edge and a < b and 0 <= d <= b - a
        edge = b
    return pieces if ok and edge == size else None


def prefix(pieces: list[tuple[int, int, int]]) -> int:
    """How many bytes from the start are written, without a gap."""
    n = 0
    for a, b, d in pieces:
        n = a + d
        if d < b - a:
            break
    return n


class _Ramp:
    """How many connections to use: one, then two; all of them if the second made the download
    at least SCALES times faster (the server caps each connection), else one again (a single
    connection already gets what this machine can hash and write: more only cost CPU)."""

    def __init__(self, most: int):
        self.most, self.limit = most, 1
        self.stage = 0 if most > 1 else 2  # 0: measuring one, 1: measuring two, 2: decided
        self.mark: tuple[float, int] | None = None
        self.rate = 0.0

    def step(self, now: float, got: int) -> int:
        if self.stage == 2 or not got:
            return self.limit
        if self.mark is None:  # the window starts at the first byte
            self.mark = (now, got)
            return self.limit
        began, had = self.mark
        if now - began < PROBE:
            return self.limit
        rate = (got - had) / (now - began)
        if self.stage == 0:
            self.rate, self.limit, self.stage, self.mark = rate, 2, 1, (now, got)
        else:
            self.limit, self.stage = (self.most if rate >= SCALES * self.rate else 1), 2
        return self.limit


class RangedDownload:
    """One ranged download into `partial` (preallocated to `size`); `run()` returns the
    hasher of the whole file, or raises (the sidecar then says what is done)."""

    def __init__(self, partial: Path, size: int, span: Span, pieces, git, policy, on_bytes, label):
        self.partial, self.size, self.span, self.policy = partial, size, span, policy
        self.on_bytes, self.label = on_bytes, label
        self.pieces = [_Piece(*p) for p in pieces]
        self.hasher = StreamHasher(size if git else None)
        self.hashed = 0
        self.cond = threading.Condition()
        self.error: BaseException | None = None
        self.waiting: _Piece | None = None  # the piece the hasher waits on, if it waits
        self.saved = time.monotonic()
        self.got = 0  # bytes received by this run
        self.limit = 1  # connections that may take another piece
        self.threads: list[threading.Thread] = []

    # ------------------------------------------------------------ the connections
    def _take(self, i: int) -> _Piece | None:
        with self.cond:
            for p in self.pieces:
                if i >= self.limit or self.error is not None:
                    break
                if not p.taken and p.done < p.end - p.start:
                    p.taken = True
                    return p
        return None

    def _grow(self, limit: int) -> None:
        """Allow `limit` connections, starting the threads that are missing."""
        left = sum(1 for p in self.pieces if not p.taken and p.top < p.end)
        with self.cond:
            self.limit = limit
        while len(self.threads) < limit and left > 0:
            i = len(self.threads)
            t = threading.Thread(target=self._connection, args=(i,), name=f"mlxk-range-{i}")
            t.daemon = True  # never holds the exit (a silent socket waits for its timeout)
            self.threads.append(t)
            t.start()
            left -= 1

    def _connection(self, i: int) -> None:
        try:
            with open(self.partial, "r+b", buffering=0) as f:
                while (p := self._take(i)) is not None:
                    self._fetch_piece(f.fileno(), p)
        except BaseException as e:  # noqa: BLE001 (handed to the hashing thread, re-raised there)
            with self.cond:
                self.error = self.error or e
                self.cond.notify_all()

    def _fetch_piece(self, fd: int, p: _Piece) -> None:
        chunks = self.span(p.top, p.end)
        if chunks is None:
            raise NoRanges
        try:
            self._write_piece(fd, p, chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()  # the response, also when stopping mid-piece
        if p.top < p.end and self.error is None:
            raise SourceError(
                f"{self.label}: download interrupted at byte {p.top} (of {p.start}-{p.end - 1})",
                hint="run the command again: the download resumes where it stopped",
            )

    def _write_piece(self, fd: int, p: _Piece, chunks: Iterator[bytes]) -> None:
        flushed = p.top
        for chunk in chunks:
            if self.error is not None:
                return
            n = len(chunk)
            if p.top + n > p.end:
                raise SourceError(f"{self.label}: more than bytes {p.start}-{p.end - 1} came")
            view = memoryview(chunk)
            while view:
                view = view[os.pwrite(fd, view, p.top + len(chunk) - len(view)) :]
            self._advance(p, chunk)
            if p.top - flushed >= WRITEBACK or p.top == p.end:
                platform.start_writeback(fd, flushed, p.top - flushed)
                flushed = p.top
            if self.on_bytes:
                self.on_bytes(n)

    def _advance(self, p: _Piece, chunk: bytes) -> None:
        with self.cond:
            if p.chunks is not None:
                if p.top + len(chunk) - self.hashed <= self.policy.buffer:
                    p.chunks.append(chunk)
                else:  # too far ahead of the hasher: it reads these back later
                    p.chunks = None
            p.done += len(chunk)
            self.got += len(chunk)
            if self.waiting is p and (p.top - self.hashed >= CHUNK or p.top == p.end):
                self.cond.notify_all()  # the hasher waits for this piece: wake it for a batch
            if time.monotonic() - self.saved >= SAVE_EVERY:
                self.save()

    # ------------------------------------------------------------ the hashing thread
    def run(self) -> StreamHasher:
        with self.cond:
            self.save()  # from now on the partial file is this download's
        ramp = _Ramp(self.policy.connections)
        self._grow(1)
        try:
            with open(self.partial, "rb", buffering=0) as f:
                for p in self.pieces:
                    while self.hashed < p.end:
                        if ramp.step(time.monotonic(), self.got) != self.limit:
                            self._grow(ramp.limit)
                        self._hash_some(f.fileno(), p)
        except BaseException as e:
            with self.cond:
                self.error = self.error or e
                self.cond.notify_all()
            raise
        finally:
            deadline = time.monotonic() + JOIN_WAIT
            for t in self.threads:
                t.join(max(0.0, deadline - time.monotonic()))
            with self.cond:
                self.save()
        return self.hasher

    def _hash_some(self, fd: int, p: _Piece) -> None:
        """Hash the next bytes of piece p that are there: from memory, or read back."""
        with self.cond:
            while p.top == self.hashed and self.error is None:
                self.waiting = p
                self.cond.wait(0.1)  # also the pace of the ramp's decisions
                self.waiting = None
            if self.error is not None:
                raise self.error
            if p.chunks is not None and p.mem_from == self.hashed:
                taken, p.mem_from = list(p.chunks), p.top
                p.chunks.clear()
                upto = None
            else:
                upto = p.mem_from if p.chunks is not None else p.top
                if p.chunks is None:  # caught up with it: hash what comes next from memory
                    p.chunks, p.mem_from = deque(), p.top
        if upto is None:
            for chunk in taken:
                self.hasher.update(chunk)
                self.hashed += len(chunk)
            return
        while self.hashed < upto:
            data = os.pread(fd, min(CHUNK, upto - self.hashed), self.hashed)
            if not data:
                raise OSError(f"{self.partial}: shorter than {upto} bytes")
            self.hasher.update(data)
            self.hashed += len(data)

    def save(self) -> None:
        """Record each piece's progress beside the partial file (call holding `cond`)."""
        self.saved = time.monotonic()
        pieces = [[p.start, p.end, p.done] for p in self.pieces]
        side = sidecar_path(self.partial)
        tmp = side.with_suffix(".parts-tmp")
        tmp.write_text(json.dumps({"size": self.size, "pieces": pieces}))
        os.replace(tmp, side)
