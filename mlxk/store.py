"""Content-addressed blob store: every file mlxk fetches or builds lands here, keyed by sha256.

Layout: <root>/blobs/sha256/<2 hex>/<64 hex> (read-only files), <root>/tmp/ for partial
downloads (named by the hash they must have, so an interrupted fetch resumes), <root>/locks/.
Blobs enter only after their bytes hash to what the lock or the hub declared.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import DiskError, IntegrityError
from .hashcache import HashCache
from .hashing import CHUNK, StreamHasher, hash_file

if TYPE_CHECKING:
    from .ranged import RangePolicy

_HEX64 = re.compile(r"[0-9a-f]{64}")
_PARTIAL_KEY = re.compile(r"(sha256-[0-9a-f]{64}|gitsha1-[0-9a-f]{40})")
WRITEBACK = 16 << 20  # bytes downloaded between starting their writeback (sync_file_range)
LINK_MODES = ("auto", "copy", "hardlink")
# what each link mode tries, in order, before a plain copy
LINK_ORDER = {
    "auto": ("reflink", "hardlink"),
    "copy": ("reflink",),
    "hardlink": ("hardlink", "reflink"),
}

# opener(offset) -> (start, chunks): the bytes of the file from `start`, which is `offset` when
# the source honoured the request to resume, else 0.
Opener = Callable[[int], tuple[int, Iterator[bytes]]]


def default_store_root() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("mlxk")) / "store"


class Store:
    def __init__(self, root: Path, ranges: RangePolicy | None = None):
        self.root = Path(root)
        self._ranges = ranges
        self._verified: set[str] = set()  # blobs hashed (on entry or on check) by this process
        self._blob_cache: HashCache | None = None
        self._init_lock = threading.Lock()

    @property
    def ranges(self) -> RangePolicy:
        """When and how big files are fetched in pieces (ranged.py: imported on first use,
        not on the start-up of a verify)."""
        if self._ranges is None:
            from .ranged import RangePolicy

            self._ranges = RangePolicy()
        return self._ranges

    def ensure_usable(self) -> None:
        """A store mlxk can write to, or a DiskError naming it (before anything else runs)."""
        problem = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK | os.X_OK):
                problem = "not writable"
        except FileExistsError:
            problem = "a file, not a directory"
        except OSError as e:
            problem = e.strerror or type(e).__name__
        if problem:
            raise DiskError(
                f"the store {self.root} cannot be used: {problem}",
                hint="set MLXK_STORE to a writable directory (the default is the user's cache "
                "directory, $XDG_CACHE_HOME/mlxk/store)",
            )

    # ------------------------------------------------------------ paths
    def blob_path(self, hexdigest: str) -> Path:
        if not _HEX64.fullmatch(hexdigest):  # a name from outside must never leave the store
            raise IntegrityError(f"not a sha256 digest: {hexdigest[:80]!r}")
        return self.root / "blobs" / "sha256" / hexdigest[:2] / hexdigest

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def _lock(self, key: str):
        from filelock import FileLock  # only fetches lock: keep it off the start-up path

        d = self.root / "locks"
        d.mkdir(parents=True, exist_ok=True)
        return FileLock(str(d / f"{key}.lock"))

    # ------------------------------------------------------------ queries
    def has(self, hexdigest: str, size: int | None = None) -> bool:
        try:
            st = self.blob_path(hexdigest).stat()
        except FileNotFoundError:
            return False
        return size is None or st.st_size == size

    @property
    def blob_cache(self) -> HashCache:
        """Hashes of blobs checked before, keyed by stat, ctime included: a write through a
        hardlink that restores the mtime still moves the ctime."""
        with self._init_lock:  # fetch threads race here: one cache, or their entries are lost
            if self._blob_cache is None:
                self._blob_cache = HashCache(self.root / "blobs.sqlite")
        return self._blob_cache

    def _remember(self, hexdigest: str) -> None:
        self._verified.add(hexdigest)
        with contextlib.suppress(OSError):
            self.blob_cache.put(self.blob_path(hexdigest).stat(), "sha256:" + hexdigest)

    def flush(self) -> None:
        if self._blob_cache is not None:
            self._blob_cache.flush()

    def check(self, hexdigest: str, size: int) -> bool:
        """True if the blob is present and its bytes hash right; a corrupt blob is removed.

        A read-only blob with one link whose stat (ctime included) matches the last time it
        was hashed is trusted (the blob cache); anything else is hashed again: a blob with
        another link may have been written through it (a workspace placed with --link
        hardlink; root ignores the read-only mode).
        """
        if hexdigest in self._verified:
            return self.has(hexdigest, size)
        path = self.blob_path(hexdigest)
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        if st.st_size != size:
            return False
        trusted = not st.st_mode & 0o222 and st.st_nlink == 1
        if trusted and self.blob_cache.get(st) == "sha256:" + hexdigest:
            self._verified.add(hexdigest)
            return True
        _, digest, _ = hash_file(path)
        if digest != "sha256:" + hexdigest:
            path.unlink(missing_ok=True)
            return False
        self._remember(hexdigest)
        return True

    # ------------------------------------------------------------ ingest
    def fetch(
        self,
        opener: Opener,
        size: int,
        sha256: str | None,
        gitsha1: str | None = None,
        label: str = "",
        on_bytes: Callable[[int], None] | None = None,
    ) -> str:
        """Stream a file into the store, hashing as it is written; returns "sha256:<hex>".

        At least one of `sha256` ("sha256:<hex>") or `gitsha1` must be given; every given hash
        and the size are checked before the blob enters the store. A partial file left by an
        interrupted fetch is resumed from where it stopped.
        """
        from . import ranged

        if sha256 and self.check(sha256.removeprefix("sha256:"), size):
            return sha256
        key = (sha256 or gitsha1).replace(":", "-")
        if not _PARTIAL_KEY.fullmatch(key):
            raise IntegrityError(f"{label}: not a sha256 or git blob digest: {key[:80]!r}")
        self.tmp.mkdir(parents=True, exist_ok=True)
        partial = self.tmp / f"{key}.partial"
        with self._lock(key):
            if sha256 and self.check(sha256.removeprefix("sha256:"), size):
                return sha256
            try:
                hasher = None
                span = getattr(opener, "span", None)
                if span is not None and size >= self.ranges.min_size:
                    hasher = self._fetch_ranged(partial, span, size, gitsha1, label, on_bytes)
                if hasher is None:
                    hasher = self._fetch_stream(partial, opener, size, gitsha1, on_bytes)
            except OSError as e:
                raise self._disk_error(e, label) from None
            ranged.sidecar_path(partial).unlink(missing_ok=True)
            problem = _mismatch(hasher, size, sha256, gitsha1)
            if problem:
                partial.unlink(missing_ok=True)
                raise IntegrityError(
                    f"{label}: downloaded bytes do not match: {problem}",
                    hint="the source served different bytes than it declared; nothing was "
                    "changed on disk",
                )
            digest = hasher.digest()
            hexdigest = digest.removeprefix("sha256:")
            final = self.blob_path(hexdigest)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(partial, 0o444)
            os.replace(partial, final)
            self._remember(hexdigest)
            return digest

    def _disk_error(self, e: OSError, label: str) -> OSError | DiskError:
        if e.errno == errno.ENOSPC:
            return DiskError(
                f"not enough space in the store ({self.root}) for {label}",
                hint="free some space or set MLXK_STORE to a larger disk",
            )
        return e

    def _fetch_stream(self, partial: Path, opener: Opener, size: int, gitsha1, on_bytes):
        """The file in one stream, appended to what an interrupted fetch left."""
        from . import platform

        hasher, offset = self._resume(partial, size, gitsha1 is not None)
        start, chunks = opener(offset)
        mode = "ab"
        if start != offset:  # the source could not resume: start over
            hasher, mode = StreamHasher(size if gitsha1 else None), "wb"
        with open(partial, mode) as f:
            done = written = f.tell()
            for chunk in chunks:
                f.write(chunk)
                hasher.update(chunk)
                written += len(chunk)
                if written - done >= WRITEBACK:  # to disk while downloading, not all at the end
                    f.flush()
                    platform.start_writeback(f.fileno(), done, written - done)
                    done = written
                if on_bytes:
                    on_bytes(len(chunk))
            f.flush()
            os.fsync(f.fileno())
        return hasher

    def _resume(self, partial: Path, size: int, git: bool) -> tuple[StreamHasher, int]:
        """Hash what an interrupted fetch left, so the rest can be appended (of a ranged
        fetch, the part from the start without a gap)."""
        from . import ranged

        hasher = StreamHasher(size if git else None)
        side = ranged.sidecar_path(partial)
        if side.exists():
            pieces = ranged.load_sidecar(partial, size)
            with contextlib.suppress(FileNotFoundError):
                os.truncate(partial, ranged.prefix(pieces) if pieces else 0)
            side.unlink()
        try:
            have = partial.stat().st_size
        except FileNotFoundError:
            return hasher, 0
        if have >= size:  # nothing left to ask for (a server answers 416): start over
            partial.unlink()
            return hasher, 0
        with open(partial, "rb") as f:
            while chunk := f.read(CHUNK):
                hasher.update(chunk)
        return hasher, have

    def _fetch_ranged(self, partial: Path, span, size: int, gitsha1, label: str, on_bytes):
        """The file in pieces fetched at once (resuming each), or None if the source ignores
        Range (nothing is kept then: the caller streams it whole)."""
        from . import ranged

        pieces = ranged.load_sidecar(partial, size)
        if pieces is None:
            have = self._stream_leftover(partial, size)
            pieces = [(0, have, have)] if have else []
            pieces.append((have, size, 0))  # streamed; cut into more pieces if that pays
            with open(partial, "ab") as f:
                f.truncate(size)  # sparse; each piece is written at its offset
        git = gitsha1 is not None
        job = ranged.RangedDownload(partial, size, span, pieces, git, self.ranges, on_bytes, label)
        try:
            hasher = job.run()
        except ranged.NoRanges:
            partial.unlink(missing_ok=True)
            ranged.sidecar_path(partial).unlink(missing_ok=True)
            return None
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        return hasher

    def _stream_leftover(self, partial: Path, size: int) -> int:
        """Bytes a single-stream fetch left in `partial` (a ranged one's, unreadable, go)."""
        from . import ranged

        side = ranged.sidecar_path(partial)
        try:
            have = partial.stat().st_size
        except FileNotFoundError:
            have = 0
        if side.exists() or have >= size:
            side.unlink(missing_ok=True)
            partial.unlink(missing_ok=True)
            return 0
        return have

    def put_bytes(self, data: bytes) -> str:
        """Store a small blob given in full (e.g. a refs file); returns its digest."""
        hexdigest = hashlib.sha256(data).hexdigest()
        if not self.check(hexdigest, len(data)):
            self.tmp.mkdir(parents=True, exist_ok=True)
            tmp = self.tmp / f"put-{hexdigest}-{os.getpid()}-{threading.get_ident()}"
            tmp.write_bytes(data)
            final = self.blob_path(hexdigest)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o444)
            os.replace(tmp, final)
        self._remember(hexdigest)
        return "sha256:" + hexdigest

    def adopt(self, path: Path) -> tuple[int, str]:
        """Move a file mlxk just built into the store (hashing it); returns (size, digest)."""
        size, digest, _ = hash_file(path)
        hexdigest = digest.removeprefix("sha256:")
        final = self.blob_path(hexdigest)
        if self.has(hexdigest, size):
            path.unlink()
        else:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(path, 0o444)
            os.replace(path, final)
        self._remember(hexdigest)
        return size, digest

    # ------------------------------------------------------------ materialise
    def materialize(self, hexdigest: str, dest: Path, link: str = "copy") -> str:
        """Place a blob at dest (a new path); returns how: "reflink", "hardlink" or "copy".

        `auto`: a reflink where the filesystem can, else a hardlink to the read-only blob, else
        a copy. `copy`: a reflink, else a copy (a writable file of its own either way).
        `hardlink`: a hardlink, else a reflink, else a copy. The bytes are written once
        unless it comes to a copy.
        """
        from . import platform

        src = self.blob_path(hexdigest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        for how in LINK_ORDER[link]:
            if how == "reflink" and platform.clone_file(src, dest):
                os.chmod(dest, 0o644)
                return how
            if how == "hardlink":
                try:
                    os.link(src, dest)
                    return how
                except OSError:  # another volume, too many links, no hardlinks here
                    pass
        try:
            shutil.copyfile(src, dest)
        except OSError as e:
            dest.unlink(missing_ok=True)
            if e.errno == errno.ENOSPC:
                raise DiskError(
                    f"not enough space to write {dest}", hint="free some space and sync again"
                ) from None
            raise
        return "copy"


def _mismatch(hasher: StreamHasher, size: int, sha256, gitsha1) -> str | None:
    """What is wrong with downloaded bytes (hashed by `hasher`), or None."""
    if hasher.size != size:
        return f"size {hasher.size} != expected {size}"
    if sha256 and hasher.digest() != sha256:
        return f"sha256 {hasher.digest()} != expected {sha256}"
    if gitsha1 and hasher.git_digest() != gitsha1:
        return f"git blob sha1 {hasher.git_digest()} != expected {gitsha1}"
    return None
