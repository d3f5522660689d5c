"""What a workspace is on disk: its sentinel, what its content hash leaves out, its scan.

One exclude list serves the content hash, verify, plan, list, show and bundle.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .hashing import canonical_json, hash_files

SENTINEL = ".mlxk_workspace.json"
HF_CACHE = ".hf_cache"
STAGING = ".mlxk-staging"  # under home: workspaces being built, switched in by rename
# Top-level directories and names anywhere that are never part of a workspace's content.
EXCLUDED_DIRS = frozenset({HF_CACHE, ".git", "__pycache__"})
EXCLUDED_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})


def is_excluded(relpath: str) -> bool:
    """Whether a posix relative path is outside a workspace's content (sentinel, caches, cruft)."""
    parts = relpath.split("/")
    if relpath == SENTINEL or parts[0] in EXCLUDED_DIRS:
        return True
    return any(p in EXCLUDED_NAMES or p == "__pycache__" for p in parts)


def sentinel_for(name: str, locked, operation: str | None = None) -> dict:
    """The sentinel written into a synced workspace. No timestamps: rebuilds are byte-identical."""
    source = locked.source.identity()
    out = {
        "managed": True,
        "mlxk_version": __version__,
        "name": name,
        "operation": operation or locked.operation,
        "source": source,
        "content_hash": locked.content_hash,
        "hash_excludes": sorted([SENTINEL, *(d + "/" for d in EXCLUDED_DIRS), *EXCLUDED_NAMES]),
    }
    if locked.runtime:
        out["runtime"] = [
            {"repo": r.repo, "revision": r.revision, "commit": r.commit, "path": r.cache_dir}
            for r in locked.runtime
        ]
    if locked.steps:
        out["steps"] = [
            {
                "kind": st.kind,
                "params": st.params,
                "converter": st.converter,
                "fingerprint": st.fingerprint,
            }
            for st in locked.steps
        ]
    return out


def sentinel_text(name: str, locked, operation: str | None = None) -> str:
    return canonical_json(sentinel_for(name, locked, operation))


@dataclass(frozen=True)
class DiskFile:
    size: int
    hash: str | None  # "sha256:<hex>"; None for what is not a regular file
    kind: str = "file"  # "file" | "symlink" | "other"


@dataclass
class WorkspaceState:
    path: Path
    exists: bool
    sentinel_text: str | None = None
    sentinel: dict | None = None
    files: dict[str, DiskFile] = field(default_factory=dict)

    @property
    def managed(self) -> bool:
        return bool(self.sentinel and self.sentinel.get("managed"))


def walk(root: Path) -> dict[str, tuple[str, os.stat_result]]:
    """Every entry under root that is not excluded: {posix relpath: (kind, lstat)}.

    Symlinks are never followed; they are reported as kind "symlink".
    """
    out: dict[str, tuple[str, os.stat_result]] = {}
    stack = [("", root)]
    while stack:
        prefix, d = stack.pop()
        with os.scandir(d) as it:
            for entry in it:
                rel = prefix + entry.name
                if is_excluded(rel):
                    continue
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    stack.append((rel + "/", Path(entry.path)))
                elif stat.S_ISREG(st.st_mode):
                    out[rel] = ("file", st)
                elif stat.S_ISLNK(st.st_mode):
                    out[rel] = ("symlink", st)
                else:
                    out[rel] = ("other", st)
    return out


def walk_all(root: Path) -> dict[str, tuple[str, os.stat_result]]:
    """walk(), plus the runtime cache (.hf_cache/), whose files sync places and verify checks
    but the content hash leaves out."""
    out = walk(root)
    cache = root / HF_CACHE
    if cache.is_dir() and not cache.is_symlink():
        out.update({f"{HF_CACHE}/{rel}": v for rel, v in walk(cache).items()})
    elif cache.is_symlink():
        out[HF_CACHE] = ("symlink", cache.lstat())
    return out


def scan(path: Path, jobs: int | None = None, on_hashed=None, cache=None) -> WorkspaceState:
    """Read a workspace: its sentinel and every content file with its sha256 (read-only).

    With a HashCache, files whose stat key is known are not read again.
    """
    if not path.is_dir() or path.is_symlink():
        return WorkspaceState(path=path, exists=path.exists() or path.is_symlink())
    state = WorkspaceState(path=path, exists=True)
    try:
        state.sentinel_text = (path / SENTINEL).read_text(encoding="utf-8")
        parsed = json.loads(state.sentinel_text)
        state.sentinel = parsed if isinstance(parsed, dict) else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        state.sentinel = None
    entries = walk_all(path)
    known = {}
    if cache is not None:
        for rel, (kind, st) in entries.items():
            if kind == "file" and (digest := cache.get(st)):
                known[rel] = (st.st_size, digest)
    todo = [rel for rel, (kind, _) in entries.items() if kind == "file" and rel not in known]
    hashes = hash_files([path / rel for rel in todo], jobs=jobs, on_done=on_hashed)
    for rel, (kind, st) in entries.items():
        if kind != "file":
            state.files[rel] = DiskFile(size=st.st_size, hash=None, kind=kind)
            continue
        if rel in known:
            size, digest = known[rel]
        else:
            size, digest = hashes[path / rel]
            if cache is not None and size == st.st_size:
                cache.put(st, digest)
        state.files[rel] = DiskFile(size=size, hash=digest)
    return state


def prime(path: Path, files, cache) -> None:
    """After sync wrote verified files: record their hashes under their final stat keys."""
    if cache is None:
        return
    for f in files:
        try:
            st = os.lstat(path / f.path)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_size == f.size:
            cache.put(st, f.hash)
