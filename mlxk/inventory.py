"""list and show: what workspaces exist, where they came from, and whether they still hold
what they were made with. Read-only: nothing here writes a file (ADR-022's system rewrote
its sentinels on every list; this never does)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .hashing import content_hash
from .models import model_kind
from .sources import origin_of
from .workspace import HF_CACHE, SENTINEL, STAGING, scan


@dataclass
class WorkspaceInfo:
    name: str
    path: Path
    source: str  # "manifest" | "ws" (a workspace under $MLXK_WORKSPACE_HOME, e.g. a clone)
    origin: str | None  # "org/repo@<commit12>" or "path:dir"
    operation: str | None  # sync | convert | clone
    size: int
    type: str | None  # chat | vision | audio | embedding
    state: str  # clean | modified | missing | unlocked | unmanaged
    content_hash: str | None  # recorded (lock or sentinel)
    actual_hash: str | None  # recomputed now
    commit: str | None = None
    revision: str | None = None
    steps: list = field(default_factory=list)
    runtime: list = field(default_factory=list)
    files: list = field(default_factory=list)
    provenance: dict | None = None  # what an artifact it was pulled from says made it

    def to_dict(self, full_paths: bool = True, with_files: bool = False) -> dict:
        d = {
            "name": self.name,
            "path": str(self.path) if full_paths else self.path.name,
            "source": self.source,
            "origin": self.origin,
            "operation": self.operation,
            "size": self.size,
            "type": self.type,
            "state": self.state,
            "content_hash": self.content_hash,
            "actual_hash": self.actual_hash,
            "modified": self.state == "modified",
            "commit": self.commit,
            "revision": self.revision,
            "steps": self.steps,
            "runtime": self.runtime,
            "provenance": self.provenance,
        }
        if with_files:
            d["files"] = self.files
        return d


def inspect(path: Path, name: str, source: str, locked=None, with_files: bool = False, cache=None):
    """One workspace's info, from its sentinel, the lock entry (if any) and a fresh scan
    (a read-only hash cache spares unchanged files)."""
    state = scan(path, cache=cache)
    recorded = locked.content_hash if locked else (state.sentinel or {}).get("content_hash")
    src = (state.sentinel or {}).get("source")
    if locked is not None:
        src = locked.source.identity()
    origin, commit, revision = origin_of(src)
    info = WorkspaceInfo(
        name=name,
        path=path,
        source=source,
        origin=origin,
        operation=(state.sentinel or {}).get("operation"),
        size=0,
        type=None,
        state="missing",
        content_hash=recorded,
        actual_hash=None,
        commit=commit,
        revision=revision,
    )
    info.steps, info.runtime = _history(locked, state.sentinel)
    if isinstance(src, dict) and isinstance(src.get("provenance"), dict):
        info.provenance = src["provenance"]
    if not state.exists:
        info.state = "unlocked" if source == "manifest" and locked is None else "missing"
        return info
    content = {p: f for p, f in state.files.items() if not p.startswith(HF_CACHE + "/")}
    info.size = sum(f.size for f in state.files.values())
    info.actual_hash = content_hash((p, f.hash or "") for p, f in content.items())
    try:
        info.type = model_kind(json.loads((path / "config.json").read_text(encoding="utf-8")))
    except (OSError, ValueError):
        info.type = None
    if not state.managed:
        info.state = "unmanaged"
    elif source == "manifest" and locked is None:
        info.state = "unlocked"
    else:
        info.state = "clean" if info.actual_hash == recorded else "modified"
    if with_files:
        info.files = _file_rows(state.files, locked)
    return info


def _history(locked, sentinel: dict | None) -> tuple[list, list]:
    """Steps and runtime repos, from the lock entry (or, without one, the sentinel)."""
    if locked is None:
        return (sentinel or {}).get("steps", []), (sentinel or {}).get("runtime", [])
    steps = [
        {
            "kind": s.kind,
            "params": s.params,
            "converter": s.converter,
            "fingerprint": s.fingerprint,
            "tools": s.tools,
        }
        for s in locked.steps
    ]
    runtime = [
        {
            "repo": r.repo,
            "revision": r.revision,
            "commit": r.commit,
            "files": len(r.files),
            "size": sum(f.size for f in r.files),
        }
        for r in locked.runtime
    ]
    return steps, runtime


def _file_rows(found: dict, locked) -> list[dict]:
    """`show --files`: every file on disk with its status against the lock, then the missing."""
    want = {f.path: f for f in locked.placed_files} if locked else {}

    def status(p, f) -> str:
        if want and p not in want:
            return "extra"
        return "modified" if want and want[p].hash != f.hash else "ok"

    rows = [
        {"path": p, "size": f.size, "hash": f.hash, "status": status(p, f)}
        for p, f in sorted(found.items())
    ]
    return rows + [
        {"path": p, "size": f.size, "hash": f.hash, "status": "missing"}
        for p, f in sorted(want.items())
        if p not in found
    ]


def home_workspaces(home: Path | None) -> dict[str, Path]:
    """Managed workspaces (dirs with a sentinel) directly under a workspace home."""
    out = {}
    if home is None or not home.is_dir():
        return out
    for entry in sorted(home.iterdir()):
        if entry.name == STAGING or entry.name.startswith(".") or not entry.is_dir():
            continue
        if (entry / SENTINEL).is_file():
            out[entry.name] = entry
    return out


def targets(project, ws_home: Path | None) -> list[tuple[str, Path, str, object]]:
    """(name, path, source, locked entry) of every workspace in the manifest and under home."""
    out = []
    seen = set()
    if project is not None:
        lock = project.read_lock()
        for name in sorted(project.manifest.workspaces):
            path = project.workspace_path(name)
            locked = lock.workspaces.get(name) if lock else None
            out.append((name, path, "manifest", locked))
            seen.add(path.resolve())
    for name, path in home_workspaces(ws_home).items():
        if path.resolve() not in seen:
            out.append((name, path, "ws", None))
    return out


def find(arg: str, project, ws_home: Path | None) -> tuple[str, Path, str, object]:
    """A workspace named on the command line: a manifest name, a name under the workspace
    home, or a path."""
    for name, path, source, locked in targets(project, ws_home):
        if arg == name:
            return name, path, source, locked
    path = Path(arg).expanduser()
    if path.is_dir():
        path = path.resolve()
        for name, p, source, locked in targets(project, ws_home):
            if p.resolve() == path:
                return name, p, source, locked
        return path.name, path, "ws", None
    from .errors import UserError

    raise UserError(
        f"no workspace named {arg!r} (in the manifest or under the workspace "
        "home) and no such directory"
    )


def list_workspaces(project, home: Path | None, cache=None) -> list[WorkspaceInfo]:
    """`mlxk list`: every workspace of the manifest and under `home`, inspected."""
    return [
        inspect(path, name, source, locked, cache=cache)
        for name, path, source, locked in targets(project, home)
    ]


def show_workspace(target: str, project, home: Path | None, cache=None, with_files=False):
    """`mlxk show`: one workspace (a name of the manifest or under `home`, or a path)."""
    name, path, source, locked = find(target, project, home)
    return inspect(path, name, source, locked, with_files=with_files, cache=cache)
