"""Local directory source (`path:DIR`): a snapshot is every regular file under DIR, hashed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..entries import FileEntry
from ..errors import ManifestError, SourceError, UserError
from ..hashing import CHUNK, hash_files
from ..workspace import is_excluded, walk
from . import Pin, SourceFile, SourceKind, Spec, check_relpath, choose, register, select


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


# ---------------------------------------------------------------- the plug-in


@dataclass(frozen=True)
class PathSource(Spec):
    path: str  # as written in the manifest, relative to the manifest's directory
    kind = "path"
    network = False

    def to_dict(self) -> dict:
        return {"kind": "path", "path": self.path}

    def __str__(self) -> str:
        return f"path:{self.path}"

    def pin(self, ctx, include, exclude, label: str, jobs: int) -> PathPin:
        root = source_dir(ctx.root, self.path)
        if not root.is_dir():
            raise UserError(
                f"{label}.source: path:{self.path}: no such directory ({root})",
                hint="a path source is relative to the manifest's directory",
            )
        listing = list_files(root)
        files = choose(listing, include, exclude, label, str(self), None, jobs)
        return PathPin(files=files, path=self.path)


@dataclass(frozen=True)
class PathPin(Pin):
    files: tuple[FileEntry, ...]
    path: str  # as written: relative to the manifest, or absolute (the lock is then tied to it)
    kind = "path"
    network = False

    @property
    def absolute(self) -> bool:
        return self.path.startswith("/")

    def to_dict(self) -> dict:
        return {"kind": "path", "files": [f.to_dict() for f in self.files], "path": self.path}

    def describe(self) -> str:
        return f"path:{self.path}"

    def opener(self, ctx, entry: FileEntry):
        return opener(source_dir(ctx.root, self.path), entry.path), f"path:{self.path}/{entry.path}"

    def reachable(self, ctx) -> bool:
        return source_dir(ctx.root, self.path).is_dir()


class PathKind(SourceKind):
    name = "path"
    prefix = "path:"
    key = "path"
    forms = ("'path:DIR'", "{path: DIR}")
    schema = (
        {"type": "string", "pattern": "^path:.+$"},
        {
            "type": "object",
            "required": ["path"],
            "additionalProperties": False,
            "properties": {"path": {"type": "string", "minLength": 1}},
        },
    )

    def parse(self, raw, where: str) -> PathSource:
        rel = raw.removeprefix("path:") if isinstance(raw, str) else raw["path"]
        if "\0" in rel:
            raise ManifestError(f"{where}: a path cannot hold a NUL byte")
        return PathSource(path=rel)  # absolute paths are fine: recorded as written

    def from_lock(self, reader, raw: dict, where: str, files) -> PathPin:
        return PathPin(files=files, path=reader.get(raw, "path", str, where))

    def origin(self, ident: dict) -> tuple[str, str | None, str | None]:
        return f"path:{ident.get('path')}", None, None


register(PathKind())
