"""Where a workspace's files come from. Each kind of source is a plug-in module of this package
(hf.py: a hub repo, path.py: a local directory) that registers one `SourceKind`:

- its manifest forms (a string with its prefix, a mapping with its key) and their JSON Schema
  fragment, parsed into a frozen `Spec`;
- `Spec.pin`: resolve against the source to a frozen `Pin` (commit and every file's hash),
  which is what the lock records (`Pin.to_dict`, read back by `SourceKind.from_lock`);
- `Pin.opener`: how the store gets one file's bytes; `Pin.reachable`: whether it can now;
  `Pin.moved`: whether what it pins has moved at the source.

Nothing outside this package compares kind names: manifest, lock, resolve, fetch, sentinel,
inventory and the plan look kinds up here. Adding a kind is one module plus its schema fragment.
"""

from __future__ import annotations

import fnmatch
from abc import ABC, abstractmethod
from dataclasses import dataclass
from importlib import import_module
from typing import ClassVar

from ..entries import FileEntry
from ..errors import UserError
from ..paths import check_relpath as check_relpath  # re-exported for the kinds
from ..paths import check_tree as check_tree
from ..paths import shown_name as shown_name


class Spec(ABC):
    """A source as the manifest names it (frozen dataclass subclasses)."""

    kind: ClassVar[str]
    network: ClassVar[bool]  # pinning it asks a server

    @abstractmethod
    def to_dict(self) -> dict:
        """The normalised form the manifest digest is computed over."""

    @abstractmethod
    def pin(self, ctx, include, exclude, label: str, jobs: int) -> Pin:
        """Resolve to a Pin: the exact files (with sha256) the source gives now."""


class Pin(ABC):
    """A source as the lock records it (frozen dataclass subclasses with a `files` field)."""

    kind: ClassVar[str]
    network: ClassVar[bool]  # fetching from it needs the network
    files: tuple[FileEntry, ...]
    commit: str | None = None
    revision: str | None = None

    @abstractmethod
    def to_dict(self) -> dict:
        """The lock's form: {"kind", "files", ...what it pins}."""

    @abstractmethod
    def describe(self) -> str: ...

    @abstractmethod
    def opener(self, ctx, entry: FileEntry):
        """(Opener, label) for one file's bytes; SourceError when it cannot be reached."""

    def reachable(self, ctx) -> bool:
        """Whether `opener` can give bytes now (offline, a missing directory: False)."""
        return not (self.network and ctx.offline)

    def moved(self, ctx) -> str | None:
        """A one-line note when what this pins has moved at the source (lock --check)."""
        return None

    def registry_repo(self) -> tuple[str, str] | None:
        """(registry host, repository) that already holds this pin's blobs by digest, if any:
        `mlxk push` mounts blobs from there instead of uploading them."""
        return None

    def identity(self) -> dict:
        """What it pins, without its files: for sentinels, list and show."""
        return {k: v for k, v in self.to_dict().items() if k != "files"}


class SourceKind(ABC):
    """One kind of source: its manifest forms, schema fragment and lock reader."""

    name: ClassVar[str]
    prefix: ClassVar[str]  # the string form starts with it, e.g. "hf://"
    key: ClassVar[str]  # the mapping form's key, e.g. "hf"
    forms: ClassVar[tuple[str, str]]  # (string form, mapping form), for messages
    schema: ClassVar[tuple[dict, dict]]  # (string, mapping) branches of $defs.source

    @abstractmethod
    def parse(self, raw, where: str) -> Spec:
        """A schema-valid manifest form → Spec; ManifestError (naming `where`) otherwise."""

    @abstractmethod
    def from_lock(self, reader, raw: dict, where: str, files) -> Pin:
        """The lock's form → Pin; `reader.get/fail` report bad fields."""

    def origin(self, ident: dict) -> tuple[str, str | None, str | None]:
        """(origin, commit, revision) shown by list and show, from `Pin.identity()`."""
        return self.name, ident.get("commit"), ident.get("revision")


_KINDS: dict[str, SourceKind] = {}


def register(kind: SourceKind) -> SourceKind:
    _KINDS[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    _KINDS.pop(name, None)


def kinds() -> dict[str, SourceKind]:
    _load_builtin()
    return dict(_KINDS)


def kind(name: str) -> SourceKind | None:
    """The kind called `name` (a built-in one is imported on first use: reading a lock loads
    only the kinds it records)."""
    if name not in _KINDS and name in BUILTIN:
        import_module(f"{__name__}.{name}")
    return _KINDS.get(name)


BUILTIN = ("hf", "path", "oci")


def _load_builtin() -> None:
    if any(name not in _KINDS for name in BUILTIN):
        from . import hf, oci, path  # noqa: F401 (each registers itself)


def source_schema(base: dict) -> dict:
    """The manifest's $defs.source, composed from every registered kind's fragment."""
    strings = [k.forms[0] for k in kinds().values()]
    maps = [k.forms[1] for k in kinds().values()]
    listed = ", ".join(strings + maps[:-1]) + " or " + maps[-1]
    return {
        **base,
        "description": f"Where the workspace's files come from: {listed}.",
        "x-message": f"a source is {listed}",
        "oneOf": [k.schema[0] for k in kinds().values()] + [k.schema[1] for k in kinds().values()],
    }


def parse_source(raw, where: str) -> Spec:
    """The Spec of a manifest source form (a string by prefix, a mapping by key)."""
    for k in kinds().values():
        if isinstance(raw, str) and raw.startswith(k.prefix):
            return k.parse(raw, where)
        if isinstance(raw, dict) and k.key in raw:
            return k.parse(raw, where)
    raise UserError(f"{where}: not a source: {str(raw)[:80]!r}")


def origin_of(ident: dict | None) -> tuple[str | None, str | None, str | None]:
    """(origin, commit, revision) from a pin's identity (a lock's or a sentinel's)."""
    k = kind(str((ident or {}).get("kind")))
    return k.origin(ident) if k else (None, None, None)


def choose(listing, include, exclude, label: str, origin: str, fetch_sha, jobs: int):
    """Select files from a source listing and give each its sha256: declared, else learnt
    by `fetch_sha(f)` (e.g. a hub's small git files, fetched into the store)."""
    from ..workspace import is_excluded

    by_path = {f.path: f for f in listing}
    chosen = [by_path[p] for p in select(sorted(by_path), include, exclude)]
    chosen = [f for f in chosen if not is_excluded(f.path)]
    if not chosen:
        raise UserError(
            f"{label}: include/exclude select no files of {origin}",
            hint=f"{origin} has {len(listing)} files; check the patterns",
        )

    def entry(f) -> FileEntry:
        if f.sha256:
            return FileEntry(path=f.path, size=f.size, hash=f.sha256)
        return FileEntry(path=f.path, size=f.size, hash=fetch_sha(f), hub_hash=f.gitsha1)

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return tuple(pool.map(entry, chosen))


@dataclass(frozen=True)
class SourceFile:
    """One input file as its source declares it (before mlxk has seen its bytes)."""

    path: str
    size: int
    sha256: str | None  # "sha256:<hex>" when known (LFS files, local files)
    gitsha1: str | None = None  # "gitsha1:<hex>" (hub git blob id)


def _match(path: str, pattern: str) -> bool:
    if pattern.endswith("/"):
        pattern += "*"
    return fnmatch.fnmatchcase(path, pattern)


def select(paths, include=(), exclude=()) -> list[str]:
    """huggingface_hub's allow/ignore semantics: fnmatch on the whole path, '*' crosses '/'."""
    out = []
    for p in paths:
        if include and not any(_match(p, pat) for pat in include):
            continue
        if any(_match(p, pat) for pat in exclude):
            continue
        out.append(p)
    return out
