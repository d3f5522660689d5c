"""mlxk clone ORG/REPO[@REV] [DIR]: one workspace without a manifest (ADR-005, done right).

Real files pinned to the commit actually downloaded, nothing written to the user's HF cache,
built through the same store → staging → rename path as sync (a complete workspace or
nothing), after checking there is room for it.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

from .entries import workspace_content_hash
from .errors import UserError
from .fetch import Fetcher
from .hashing import canonical_json, sha256_text
from .lock import LockedWorkspace
from .plan import Plan, Provenance, plan_workspace
from .settings import Settings
from .sources.hf import HfSource
from .store import Store
from .sync import build_workspace, check_space
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
        raise UserError(
            f"{ref!r} is not ORG/REPO[@REVISION]", hint="e.g. mlx-community/whisper-tiny-mlx@main"
        )
    return repo, revision or "main"


def default_dir(repo: str, settings: Settings) -> Path:
    home = settings.workspace_home or (Path.cwd() / "models")
    return home / repo.split("/")[-1]


def clone(
    ref: str,
    dest: Path | None,
    store: Store,
    include=(),
    exclude=(),
    jobs: int = 4,
    link: str = "copy",
    ui=None,
    settings: Settings | None = None,
) -> CloneResult:
    settings = settings or Settings.from_env()
    repo, revision = parse_ref(ref)
    target = Path(dest).resolve() if dest else default_dir(repo, settings)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UserError(f"clone: {target} exists and is not empty", hint="give a new directory")
    fetcher = Fetcher(store, Path.cwd(), settings=settings)
    label = f"clone hf://{repo}@{revision}"
    pin = HfSource(repo, revision).pin(fetcher, tuple(include), tuple(exclude), label, jobs)
    files, commit = pin.files, pin.commit
    name = target.name
    spec = {"clone": repo, "revision": revision, "include": list(include), "exclude": list(exclude)}
    locked = LockedWorkspace(
        name=name,
        spec_digest=sha256_text(canonical_json(spec)),
        source=pin,
        content_hash=workspace_content_hash(files),
    )
    sentinel = sentinel_text(name, locked, operation="clone")
    prov = Provenance(have=lambda f: store.has(f.hex, f.size))
    wplan = plan_workspace(name, locked, WorkspaceState(target, exists=False), sentinel, prov)
    check_space(target.parent, store, Plan((wplan,)), target.name, link)
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
    store.flush()
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
