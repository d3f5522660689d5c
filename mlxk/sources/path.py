"""Local directory source (`path:DIR`): a snapshot is every regular file under DIR, hashed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..errors import SourceError
from ..hashing import CHUNK, hash_files
from ..workspace import is_excluded, walk
from . import SourceFile, check_relpath, select


def source_dir(manifest_root: Path, rel: str) -> Path:
    path = (manifest_root / rel).resolve()
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        pass  # the caller says "no such directory"
    except OSError as e:  # a name too long, a loop, no permission: a path no one can use
        raise SourceError(f"path:{rel}: cannot read it ({e.strerror})") from None
    return path


def list_files(root: Path, include=(), exclude=(), jobs=None) -> list[SourceFile]:
    """Hash every selected regular file under root; a symlink or special file is refused."""
    origin = f"path:{root}"
    try:
        if not root.is_dir():
            raise SourceError(f"{origin}: no such directory")
        entries = walk(root)
    except OSError as e:  # a name too long, a directory it may not read
        raise SourceError(f"{origin}: cannot read it ({e.strerror})") from None
    for rel, (kind, _) in entries.items():
        if kind != "file" and select([rel], include, exclude):
            raise SourceError(
                f"{origin}: {rel} is a {kind}, not a regular file",
                hint="a path source holds real files only; copy the target in instead",
            )
    chosen = [check_relpath(r, origin) for r in select(sorted(entries), include, exclude)]
    chosen = [r for r in chosen if not is_excluded(r)]
    try:
        hashes = hash_files([root / r for r in chosen], jobs=jobs)
    except OSError as e:  # removed or made unreadable while being hashed
        raise SourceError(f"{origin}: cannot read {e.filename}: {e.strerror}") from None
    return [
        SourceFile(path=r, size=hashes[root / r][0], sha256=hashes[root / r][1]) for r in chosen
    ]


def opener(root: Path, rel: str):
    path = root / rel

    def open_at(offset: int) -> tuple[int, Iterator[bytes]]:
        try:
            f = open(path, "rb")  # noqa: SIM115 (closed by the generator)
        except OSError as e:
            raise SourceError(f"path:{root}: cannot read {rel}: {e.strerror}") from None
        f.seek(offset)

        def chunks() -> Iterator[bytes]:
            with f:
                while chunk := f.read(CHUNK):
                    yield chunk

        return offset, chunks()

    return open_at
