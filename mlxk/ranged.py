"""One big file as several Range requests at once, into the store's partial file.

The calling thread streams the file (one Range request to its end) and hashes it as it comes,
as a plain download does. After PROBE seconds a helper connection takes the file's last piece;
if the two together were SCALES times faster than the stream alone, the server caps each
connection (as CDNs do): what the stream has not reached is cut into pieces (`piece_for`) and
up to `connections` threads each take the lowest piece nobody has taken, GET it and write it
at its offset, while the calling thread, its own piece done, hashes on in file order as the
contiguous prefix grows (bytes within `buffer` of the hash position from memory, the rest read
back from the page cache). Otherwise one connection already gets what this machine can hash
and write: the helper ends with its piece and the stream goes on alone, at a plain download's
cost. Every byte is hashed once, and none is asked for twice.

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
SCALES = 1.7  # two connections at least this much faster than one: the server caps each one

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
    __slots__ = ("start", "end", "done", "taken", "helper", "chunks", "mem_from")

    def __init__(self, start: int, end: int, done: int = 0):
        self.start, self.end, self.done = start, end, done
        self.taken = self.helper = False  # taken by someone; by a helper connection
        self.chunks: deque[bytes] | None = deque()  # bytes [mem_from, start + done), in memory
        self.mem_from = start + done

    @property
    def top(self) -> int:
        return self.start + self.done


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    n = os.pwrite(fd, data, offset)
    if n < len(data):  # a short write (rare): the rest, in as many calls as it takes
        view = memoryview(data)
        while n < len(data):
            n += os.pwrite(fd, view[n:], offset + n)


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
        self.limit = 0  # helper connections that may take another piece
        self.threads: list[threading.Thread] = []
        self.stage, self.mark, self.rate = 0, None, 0.0  # the probe (see `_tick`)
        self.helped = 0  # bytes received by helper connections

    # ------------------------------------------------------------ helper connections
    def _take(self, i: int) -> _Piece | None:
        with self.cond:
            for p in self.pieces:
                if i >= self.limit or self.error is not None:
                    break
                if not p.taken and p.top < p.end:
                    p.taken = p.helper = True
                    return p
        return None

    def _grow(self, limit: int) -> None:
        """Allow `limit` helper connections, starting the threads that are missing."""
        with self.cond:
            self.limit = limit
            left = sum(1 for p in self.pieces if not p.taken and p.top < p.end)
        while len(self.threads) < min(limit, len(self.threads) + left):
            i = len(self.threads)
            t = threading.Thread(target=self._helper, args=(i,), name=f"mlxk-range-{i}")
            t.daemon = True  # never holds the exit (a silent socket waits for its timeout)
            self.threads.append(t)
            t.start()

    def _helper(self, i: int) -> None:
        try:
            with open(self.partial, "r+b", buffering=0) as f:
                while (p := self._take(i)) is not None:
                    self._fetch_piece(f.fileno(), p, inband=False)
        except BaseException as e:  # noqa: BLE001 (handed to the hashing thread, re-raised there)
            with self.cond:
                self.error = self.error or e
                self.cond.notify_all()

    def _fetch_piece(self, fd: int, p: _Piece, inband: bool) -> None:
        chunks = self.span(p.top, p.end)
        if chunks is None:
            raise NoRanges
        try:
            self._write_piece(fd, p, chunks, inband)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()  # the response, also when stopping mid-piece or at a new end
        if p.top < p.end and self.error is None:
            raise SourceError(
                f"{self.label}: download interrupted at byte {p.top} (of {p.start}-{p.end - 1})",
                hint="run the command again: the download resumes where it stopped",
            )

    def _write_piece(self, fd: int, p: _Piece, chunks: Iterator[bytes], inband: bool) -> None:
        """Write a piece's bytes at their offsets; `inband`: this is the hashing thread, at
        the hash position, so it hashes them as they come (and drives the probe)."""
        flushed = p.top
        for chunk in chunks:
            if self.error is not None:
                return
            if p.top + len(chunk) > p.end:
                if not inband:
                    raise SourceError(f"{self.label}: more than bytes {p.start}-{p.end - 1} came")
                chunk = chunk[: p.end - p.top]  # the piece was cut shorter meanwhile
            _pwrite_all(fd, chunk, p.top)
            if inband:
                self.hasher.update(chunk)
                self.hashed += len(chunk)
            self._advance(p, chunk, inband)
            if p.top - flushed >= WRITEBACK or p.top == p.end:
                platform.start_writeback(fd, flushed, p.top - flushed)
                flushed = p.top
            if self.on_bytes:
                self.on_bytes(len(chunk))
            if inband:
                self._tick(p)
            if p.top >= p.end:
                return

    def _advance(self, p: _Piece, chunk: bytes, inband: bool) -> None:
        with self.cond:
            if inband:
                p.chunks = None  # hashed already, by this thread
            elif p.chunks is not None:
                if p.top + len(chunk) - self.hashed <= self.policy.buffer:
                    p.chunks.append(chunk)
                else:  # too far ahead of the hasher: it reads these back later
                    p.chunks = None
            p.done += len(chunk)
            self.got += len(chunk)
            self.helped += 0 if inband else len(chunk)
            if self.waiting is p and (p.top - self.hashed >= CHUNK or p.top == p.end):
                self.cond.notify_all()  # the hasher waits for this piece: wake it for a batch
            if time.monotonic() - self.saved >= SAVE_EVERY:
                self.save()

    # ------------------------------------------------------------ the probe
    def _tick(self, stream: _Piece) -> None:
        """While the hashing thread streams: after PROBE seconds alone, a helper takes the
        file's last piece; after PROBE more, if the two were SCALES times faster than one (the
        server caps each connection), the rest of the stream is cut into pieces for every
        connection; else the helper stops after its piece and the stream goes on alone."""
        if self.stage == 2 or self.policy.connections < 2:
            return
        now = time.monotonic()
        if self.mark is None:  # a window starts at the first byte (of the helper, in stage 1)
            if self.stage == 0 or self.helped:
                self.mark = (now, self.got)
            return
        began, had = self.mark
        if now - began < PROBE and (self.stage == 0 or self._helper_busy()):
            return  # (in stage 1 the window also ends when the helper's piece is done)
        rate = (self.got - had) / (now - began)
        self.mark = (now, self.got)
        if self.stage == 0:
            self.stage, self.rate, self.mark = 1, rate, None
            self._split_tail(stream)
            self._grow(1)
        elif rate >= SCALES * self.rate:
            self.stage = 2
            self._split_rest(stream)
            self._grow(self.policy.connections)  # the stream ends one piece on
        else:
            self.stage = 2
            self._grow(0)  # the helper ends with its piece

    def _helper_busy(self) -> bool:
        return any(p.helper and p.top < p.end for p in self.pieces)

    def _split_tail(self, stream: _Piece) -> None:
        """Give the end of the stream's piece to a helper (enough for a probe window at the
        stream's rate), unless there is a piece to take already."""
        piece = self.policy.piece_for(self.size)
        tail = min(max(piece, int(2 * PROBE * self.rate)), 2 * piece)
        with self.cond:
            if any(not p.taken and p.top < p.end for p in self.pieces):
                return
            if stream.end - stream.top >= 3 * tail:
                self._insert(stream, stream.end - tail, stream.end)

    def _split_rest(self, stream: _Piece) -> None:
        """Cut what the stream has not reached into pieces for the helpers."""
        piece = self.policy.piece_for(self.size)
        with self.cond:
            cut_at = stream.top + piece
            if stream.end - cut_at >= piece:
                for a, b, _ in reversed(cut(cut_at, stream.end, piece)):
                    self._insert(stream, a, b)

    def _insert(self, stream: _Piece, a: int, b: int) -> None:
        """A new piece [a, b) from the end of the stream's piece (holding `cond`)."""
        stream.end = a
        self.pieces.insert(self.pieces.index(stream) + 1, _Piece(a, b))
        self.save()

    # ------------------------------------------------------------ the hashing thread
    def run(self) -> StreamHasher:
        with self.cond:
            self.save()  # from now on the partial file is this download's
        try:
            with open(self.partial, "r+b", buffering=0) as f:
                i = 0
                while i < len(self.pieces):
                    self._next(f.fileno(), self.pieces[i])
                    i += 1
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

    def _next(self, fd: int, p: _Piece) -> None:
        """Hash piece p; if nobody has taken it, stream it here first (hashing as it comes)."""
        with self.cond:
            mine = not p.taken and p.top < p.end and (self.stage == 0 or self.limit == 0)
            p.taken = p.taken or mine
        if mine:
            while self.hashed < p.top:  # what an earlier run left of it
                self._hash_some(fd, p)
            self._fetch_piece(fd, p, inband=True)
        while self.hashed < p.end:
            self._hash_some(fd, p)

    def _hash_some(self, fd: int, p: _Piece) -> None:
        """Hash the next bytes of piece p that are there: from memory, or read back."""
        with self.cond:
            while p.top == self.hashed and self.error is None:
                self.waiting = p
                self.cond.wait(0.5)
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
