"""mlxk clone ORG/REPO[@REV] [DIR]: one workspace without a manifest (ADR-005, done right).

Real files pinned to the commit actually downloaded, nothing written to the user's HF cache,
built through the same store → staging → rename path as sync (a complete workspace or
nothing), after checking there is room for it.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import DiskError, UserError
from .fetch import Fetcher
from .hashing import canonical_json, sha256_text
from .lock import LockedSource, LockedWorkspace, workspace_content_hash
from .manifest import env_path
from .plan import plan_workspace
from .resolve import pin_hf
from .store import Store
from .sync import build_workspace
from .workspace import WorkspaceState, sentinel_text

_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class CloneResult:
    name: str
    path: Path
    repo: str
    revision: str
    commit: str
    files: int
    bytes: int
    content_hash: str

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "path": str(self.path),
            "repo": self.repo,
            "revision": self.revision,
            "commit": self.commit,
            "files": self.files,
            "bytes": self.bytes,
            "content_hash": self.content_hash,
        }


def parse_ref(ref: str) -> tuple[str, str]:
    repo, _, revision = ref.removeprefix("hf://").partition("@")
    if not _REPO.match(repo) or ".." in repo:
        raise UserError(f"clone: {ref!r} is not ORG/REPO[@REVISION]")
    return repo, revision or "main"


def default_dir(repo: str) -> Path:
    home = env_path("MLXK_WORKSPACE_HOME") or (Path.cwd() / "models")
    return home / repo.split("/")[-1]


def check_space(target: Path, store: Store, files) -> None:
    """Refuse early when the workspace and the store cannot hold the files."""
    need_ws = sum(f.size for f in files)
    need_store = sum(f.size for f in files if not store.has(f.hex, f.size))
    target.parent.mkdir(parents=True, exist_ok=True)
    store.root.mkdir(parents=True, exist_ok=True)
    ws_dev, store_dev = target.parent.stat().st_dev, store.root.stat().st_dev
    free = shutil.disk_usage(target.parent).free
    need = need_ws + (need_store if ws_dev == store_dev else 0)
    if need > free:
        raise DiskError(
            f"not enough space for {target.name}: needs {need} bytes, {free} free under "
            f"{target.parent}",
            hint="free some space or clone to another disk",
        )
    if ws_dev != store_dev and need_store > shutil.disk_usage(store.root).free:
        raise DiskError(f"not enough space in the store {store.root} for {target.name}")


def clone(
    ref: str,
    dest: Path | None,
    store: Store,
    include=(),
    exclude=(),
    jobs: int = 4,
    link: str = "copy",
    ui=None,
) -> CloneResult:
    repo, revision = parse_ref(ref)
    target = Path(dest).resolve() if dest else default_dir(repo)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UserError(f"clone: {target} exists and is not empty", hint="give a new directory")
    fetcher = Fetcher(store, Path.cwd())
    commit, files = pin_hf(
        repo,
        revision,
        tuple(include),
        tuple(exclude),
        fetcher,
        f"clone hf://{repo}@{revision}",
        jobs,
    )
    check_space(target, store, files)
    name = target.name
    spec = {"clone": repo, "revision": revision, "include": list(include), "exclude": list(exclude)}
    locked = LockedWorkspace(
        name=name,
        spec_digest=sha256_text(canonical_json(spec)),
        source=LockedSource("hf", files, repo=repo, revision=revision, commit=commit),
        content_hash=workspace_content_hash(files),
    )
    sentinel = sentinel_text(name, locked, operation="clone")
    wplan = plan_workspace(name, locked, WorkspaceState(target, exists=False), sentinel)
    build_workspace(
        wplan,
        locked,
        target,
        sentinel,
        store,
        lambda e, on_bytes=None: fetcher.ensure(locked.source, e, on_bytes),
        link,
        jobs,
        progress=ui,
    )
    with contextlib.suppress(OSError):
        (target.parent / ".mlxk-staging").rmdir()  # only when empty
    return CloneResult(
        name,
        target,
        repo,
        revision,
        commit,
        len(files),
        sum(f.size for f in files),
        locked.content_hash,
    )
