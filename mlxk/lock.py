"""mlxk.lock: dataclasses, canonical text form, strict loading, atomic writing.

The lock is canonical JSON (sorted keys, 2-space indent, trailing newline): byte-identical for
the same inputs, diffable, with no timestamps, absolute paths or tokens.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from . import faults, sources
from .entries import FileEntry, workspace_content_hash
from .errors import LockError
from .hashing import canonical_json
from .sources import Pin

if TYPE_CHECKING:
    from .sources.hf import HfPin

__all__ = ["FileEntry", "Lock", "LockedRuntime", "LockedStep", "LockedWorkspace", "Pin"]

LOCK_VERSION = 1
_SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")
_GITSHA1 = re.compile(r"^gitsha1:[0-9a-f]{40}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # as in the manifest schema


@dataclass(frozen=True)
class LockedStep:
    """One build step as it ran: what went in, what ran it, and every byte that came out."""

    kind: str  # "convert"
    params: dict
    converter: str  # "mlx_lm" | "mlx_vlm" | "mlx_audio"
    tools: dict  # {package: version} of everything that decides the output bytes
    input_digest: str  # content hash of the input file set
    fingerprint: str  # sha256 over kind, params, converter, tools, input_digest
    files: tuple[FileEntry, ...]
    output_digest: str  # content hash of `files`

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "params": self.params,
            "converter": self.converter,
            "tools": self.tools,
            "input_digest": self.input_digest,
            "fingerprint": self.fingerprint,
            "files": [f.to_dict() for f in self.files],
            "output_digest": self.output_digest,
        }


@dataclass(frozen=True)
class Placed:
    """One file sync puts in a workspace, and where its bytes come from: `pin`'s file
    `entry` (fetched into the store), or `data` the lock itself holds (a refs file)."""

    file: FileEntry  # as placed: its path in the workspace
    pin: Pin | None = None
    entry: FileEntry | None = None  # the same bytes, by their path at the source
    data: bytes | None = None


@dataclass(frozen=True)
class LockedRuntime:
    """A repo the model loads at run time, captured into <workspace>/.hf_cache/ (ADR-022): an
    ordinary hub pin, placed under a path prefix in the Hugging Face cache layout."""

    pin: HfPin

    @property
    def repo(self) -> str:
        return self.pin.repo

    @property
    def revision(self) -> str:
        return self.pin.revision

    @property
    def commit(self) -> str:
        return self.pin.commit

    @property
    def files(self) -> tuple[FileEntry, ...]:
        return self.pin.files

    def to_dict(self) -> dict:
        return {k: v for k, v in self.pin.to_dict().items() if k != "kind"}

    @property
    def cache_dir(self) -> str:
        """Its folder in the Hugging Face cache layout, relative to the workspace."""
        return f".hf_cache/hub/models--{self.repo.replace('/', '--')}"

    def snapshot(self) -> list[Placed]:
        """Its files in `snapshots/<commit>/`, as real files (no symlinks into blobs/)."""
        snap = f"{self.cache_dir}/snapshots/{self.commit}"
        return [
            Placed(FileEntry(f"{snap}/{f.path}", f.size, f.hash, f.hub_hash), self.pin, f)
            for f in self.files
        ]


DEFAULT_REF = "main"  # what a loader that names no revision asks the cache for


def runtime_refs(runtime) -> dict[tuple[str, str], str]:
    """{(cache dir, ref name): commit}: the refs files the runtime captures place.

    Derived, never stored in the lock: each capture's own revision (a branch or tag) points
    at its locked commit, and `main`, which loaders that name no revision ask for, points
    at the commit of the repo's entry pinned to main, else of its first entry. A capture
    pinned to a commit needs no ref of its own (loaders look that snapshot up directly).
    """
    refs: dict[tuple[str, str], str] = {}
    for r in runtime:
        if r.revision != r.commit:
            refs.setdefault((r.cache_dir, r.revision), r.commit)
    for r in runtime:
        refs.setdefault((r.cache_dir, DEFAULT_REF), r.commit)
    return refs


def runtime_placements(runtime) -> list[Placed]:
    """Every file the runtime captures put in the workspace: each snapshot's files (once per
    path), then the refs files of `runtime_refs`, whose bytes (the commit) the lock holds."""
    out: dict[str, Placed] = {}
    for r in runtime:
        for p in r.snapshot():
            out.setdefault(p.file.path, p)
    for (cache_dir, name), commit in runtime_refs(runtime).items():
        data = commit.encode()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        ref = FileEntry(f"{cache_dir}/refs/{name}", len(data), digest)
        out.setdefault(ref.path, Placed(ref, data=data))
    return list(out.values())


@dataclass(frozen=True)
class LockedWorkspace:
    name: str
    spec_digest: str
    source: Pin
    content_hash: str
    steps: tuple[LockedStep, ...] = ()
    runtime: tuple[LockedRuntime, ...] = ()

    @property
    def files(self) -> tuple[FileEntry, ...]:
        """The final file set: the last step's outputs, else the source files."""
        return self.steps[-1].files if self.steps else self.source.files

    def placements(self) -> list[Placed]:
        """Everything sync puts on disk, each with where its bytes come from: the content
        files (from the source, or built by the steps), then runtime captures (which the
        content hash leaves out)."""
        content = [Placed(f, None if self.steps else self.source, f) for f in self.files]
        return content + runtime_placements(self.runtime)

    @property
    def placed_files(self) -> tuple[FileEntry, ...]:
        """Everything sync puts on disk, as locked entries (paths in the workspace)."""
        return tuple(p.file for p in self.placements())

    def inline_bytes(self) -> dict[str, bytes]:
        """Placed files whose bytes the lock itself holds (refs files)."""
        return {p.file.path: p.data for p in self.placements() if p.data is not None}

    @property
    def operation(self) -> str:
        return "convert" if self.steps else "sync"

    def to_dict(self) -> dict:
        d = {
            "spec_digest": self.spec_digest,
            "source": self.source.to_dict(),
            "content_hash": self.content_hash,
        }
        if self.steps:
            d["steps"] = [s.to_dict() for s in self.steps]
        if self.runtime:
            d["runtime"] = [r.to_dict() for r in self.runtime]
        return d


@dataclass(frozen=True)
class Lock:
    manifest_digest: str
    workspaces: dict[str, LockedWorkspace] = field(default_factory=dict)
    lock_version: int = LOCK_VERSION

    def to_dict(self) -> dict:
        return {
            "lock_version": self.lock_version,
            "manifest_digest": self.manifest_digest,
            "workspaces": {n: w.to_dict() for n, w in sorted(self.workspaces.items())},
        }


def dumps(lock: Lock) -> str:
    return canonical_json(lock.to_dict())


# ---------------------------------------------------------------- strict loading


class _Reader:
    """Reads one lock, raising LockError with the JSON path of whatever is wrong."""

    def __init__(self, label: str):
        self.label = label

    def fail(self, where: str, msg: str):
        raise LockError(
            f"{self.label}: {where}: {msg}",
            hint="the lock is written by `mlxk lock`; regenerate it rather than editing by hand",
        )

    def get(self, obj: dict, key: str, kind, where: str, optional=False):
        if not isinstance(obj, dict):
            self.fail(where, "expected an object")
        if key not in obj:
            if optional:
                return None
            self.fail(where, f"missing '{key}'")
        value = obj[key]
        if kind is int and isinstance(value, bool) or not isinstance(value, kind):
            self.fail(f"{where}.{key}", f"expected {getattr(kind, '__name__', kind)}")
        return value

    def file(self, raw, where: str) -> FileEntry:
        path = self.get(raw, "path", str, where)
        pp = PurePosixPath(path)
        if not path or pp.is_absolute() or ".." in pp.parts or "\\" in path or "\0" in path:
            self.fail(f"{where}.path", f"unsafe path {path!r}")
        size = self.get(raw, "size", int, where)
        if size < 0:
            self.fail(f"{where}.size", "negative size")
        digest = self.get(raw, "hash", str, where)
        if not _SHA256.match(digest):
            self.fail(f"{where}.hash", f"not a sha256:<64 hex> digest: {digest!r}")
        hub = self.get(raw, "hub_hash", str, where, optional=True)
        if hub is not None and not _GITSHA1.match(hub):
            self.fail(f"{where}.hub_hash", f"not a gitsha1:<40 hex> digest: {hub!r}")
        return FileEntry(path=path, size=size, hash=digest, hub_hash=hub)

    def files(self, raw, where: str) -> tuple[FileEntry, ...]:
        if not isinstance(raw, list):
            self.fail(where, "expected a list")
        out = tuple(self.file(f, f"{where}[{i}]") for i, f in enumerate(raw))
        paths = [f.path for f in out]
        if len(set(paths)) != len(paths):
            self.fail(where, "duplicate paths")
        return out

    def source(self, raw, where: str) -> Pin:
        name = self.get(raw, "kind", str, where)
        files = self.files(self.get(raw, "files", list, where), f"{where}.files")
        kind = sources.kind(name)
        if kind is None:
            self.fail(f"{where}.kind", f"unknown source kind {name!r}")
        return kind.from_lock(self, raw, where, files)

    def runtime(self, raw, where: str) -> LockedRuntime:
        files = self.files(self.get(raw, "files", list, where), f"{where}.files")
        pin = sources.kind("hf").from_lock(self, raw, where, files)
        for value, key in ((pin.repo, "repo"), (pin.revision, "revision")):
            pp = PurePosixPath(value)
            if pp.is_absolute() or ".." in pp.parts or "\\" in value or not value:
                self.fail(f"{where}.{key}", f"unsafe value {value!r}")
        return LockedRuntime(pin)

    def step(self, raw, where: str) -> LockedStep:
        files = self.files(self.get(raw, "files", list, where), f"{where}.files")
        step = LockedStep(
            kind=self.get(raw, "kind", str, where),
            params=self.get(raw, "params", dict, where),
            converter=self.get(raw, "converter", str, where),
            tools=self.get(raw, "tools", dict, where),
            input_digest=self.get(raw, "input_digest", str, where),
            fingerprint=self.get(raw, "fingerprint", str, where),
            files=files,
            output_digest=self.get(raw, "output_digest", str, where),
        )
        if workspace_content_hash(files) != step.output_digest:
            self.fail(f"{where}.output_digest", "does not match the file hashes listed")
        return step

    def workspace(self, name: str, raw) -> LockedWorkspace:
        where = f"workspaces.{name}"
        source = self.source(self.get(raw, "source", dict, where), f"{where}.source")
        steps = self.get(raw, "steps", list, where, optional=True) or []
        ws = LockedWorkspace(
            name=name,
            spec_digest=self.get(raw, "spec_digest", str, where),
            source=source,
            content_hash=self.get(raw, "content_hash", str, where),
            steps=tuple(self.step(st, f"{where}.steps[{i}]") for i, st in enumerate(steps)),
            runtime=tuple(
                self.runtime(r, f"{where}.runtime[{i}]")
                for i, r in enumerate(self.get(raw, "runtime", list, where, optional=True) or ())
            ),
        )
        inputs = source.files
        for i, st in enumerate(ws.steps):
            if st.input_digest != workspace_content_hash(inputs):
                self.fail(f"{where}.steps[{i}].input_digest", "is not the digest of its input")
            inputs = st.files
        if workspace_content_hash(ws.files) != ws.content_hash:
            self.fail(
                f"{where}.content_hash", "does not match the file hashes listed (edited by hand?)"
            )
        return ws


def loads(text: str, label: str = "mlxk.lock") -> Lock:
    reader = _Reader(label)
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise LockError(
            f"{label}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}",
            hint="restore it from version control, or delete it and run `mlxk lock`",
        ) from None
    version = reader.get(raw, "lock_version", int, "(top level)")
    if version != LOCK_VERSION:
        raise LockError(
            f"{label}: lock_version: unsupported version {version} (this mlxk reads "
            f"{LOCK_VERSION})",
            hint="written by a newer mlxk? upgrade mlxk"
            if version > LOCK_VERSION
            else "regenerate it with `mlxk lock`",
        )
    workspaces = reader.get(raw, "workspaces", dict, "(top level)")
    for name in workspaces:
        if not _NAME.match(name) or name in (".", ".."):
            reader.fail(f"workspaces.{name!r}", "not a workspace name (it would leave home)")
    return Lock(
        manifest_digest=reader.get(raw, "manifest_digest", str, "(top level)"),
        workspaces={n: reader.workspace(n, w) for n, w in workspaces.items()},
    )


def read(path: Path) -> Lock | None:
    """The lock at `path`, or None when there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return loads(text, path.name)


def _mode_for(path: Path) -> int:
    """The file's current mode, or what a plain open() would give it (mkstemp makes 0600)."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_atomic(path: Path, text: str) -> None:
    """Write via a temp file in the same directory, fsync, then rename over the target."""
    import tempfile  # only writers need it: keep it off verify's start-up

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _mode_for(path))
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        faults.point("lock-write")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write(path: Path, lock: Lock) -> bool:
    """Write the lock if its text changed; returns whether it did."""
    text = dumps(lock)
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except FileNotFoundError:
        pass
    write_atomic(path, text)
    return True


# ---------------------------------------------------------------- comparing


@dataclass(frozen=True)
class WorkspaceChange:
    """How one workspace differs between two locks (`before` None: added; `after` None:
    removed), each side as {source, commit, content_hash}."""

    workspace: str
    change: str  # "added" | "removed" | "changed"
    before: dict | None
    after: dict | None
    differs: tuple[str, ...] = ()  # for "changed": source, commit, content_hash, spec

    def to_dict(self) -> dict:
        return {
            "workspace": self.workspace,
            "change": self.change,
            "before": self.before,
            "after": self.after,
            "differs": list(self.differs),
        }


def _identity(ws: LockedWorkspace) -> dict:
    return {
        "source": ws.source.describe(),
        "commit": ws.source.commit,
        "content_hash": ws.content_hash,
    }


def compare(before: Lock | None, after: Lock) -> tuple[WorkspaceChange, ...]:
    """The workspaces that differ from `before` (None: an empty lock) to `after`, by name."""
    old = before.workspaces if before else {}
    out = []
    for name in sorted(set(old) | set(after.workspaces)):
        a, b = old.get(name), after.workspaces.get(name)
        if a is None or b is None:
            change = "added" if a is None else "removed"
            out.append(WorkspaceChange(name, change, a and _identity(a), b and _identity(b)))
            continue
        ia, ib = _identity(a), _identity(b)
        differs = tuple(k for k in ia if ia[k] != ib[k])
        if a.to_dict() != b.to_dict():
            differs = differs or ("spec",)
            out.append(WorkspaceChange(name, "changed", ia, ib, differs))
    return tuple(out)
