"""Apply a Plan: build each changed workspace in a staging directory, then switch it in.

Each workspace is built beside its target (same volume) from the store and from the files of
the current workspace that already match; only a complete, checked staging directory is
switched in, by an atomic exchange where the kernel offers one. A failure at any point leaves
the previous workspace as it was.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import faults, interrupt, platform
from .errors import DiskError, IntegrityError
from .workspace import SENTINEL, STAGING, walk_all

if TYPE_CHECKING:
    from .plan import Plan
    from .resolve import LockResult

STOP_WAIT = 0.5  # seconds fetch threads get to stop (at their next chunk) after a failure


@dataclass
class SyncReport:
    locked: LockResult | None
    plan: Plan
    result: SyncResult
    notes: list[str] = field(default_factory=list)
    rebuilt: list = field(default_factory=list)
    fetched: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "rebuild": [r.to_dict() for r in self.rebuilt],
            "lock": self.locked.to_dict() if self.locked else None,
            "plan": self.plan.to_dict(),
            "workspaces": self.result.to_dict()["workspaces"],
            "notes": self.notes,
            "fetched": self.fetched,
        }


@dataclass
class WorkspaceResult:
    name: str
    op: str
    added: int = 0
    replaced: int = 0
    deleted: int = 0
    kept: int = 0
    bytes_written: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class SyncResult:
    workspaces: list[WorkspaceResult] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"workspaces": [w.to_dict() for w in self.workspaces]}


def _fsync(path: Path) -> None:
    """Flush a file's data, or a directory's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_space(where: Path, store, plan, what: str, link: str = "copy") -> None:
    """Refuse early when the volume of `where` (and the store's) cannot hold what `plan`
    writes: every blob fetched or built into the store, and every file placed, unless it
    shares the store's bytes (a link mode other than copy, on the store's volume)."""
    from .output import human_size

    need_ws = sum(w.download_bytes for w in plan.changed())
    need_store = plan.bytes_to_store()
    if not need_ws:
        return
    where.mkdir(parents=True, exist_ok=True)
    store.root.mkdir(parents=True, exist_ok=True)
    same = where.stat().st_dev == store.root.stat().st_dev
    if same and link != "copy":
        need_ws = 0  # hardlinks (or reflinks) to the store's blobs
    free = shutil.disk_usage(where).free
    need = need_ws + (need_store if same else 0)
    if need > free:
        raise DiskError(
            f"not enough space for {what}: needs {human_size(need)}, {human_size(free)} free "
            f"under {where}",
            hint="free some space or use another disk; nothing was changed",
        )
    if not same and need_store > shutil.disk_usage(store.root).free:
        raise DiskError(
            f"not enough space in the store {store.root} for {what}",
            hint="free some space or set MLXK_STORE to a larger disk; nothing was changed",
        )


def staging_root(home: Path) -> Path:
    return home / STAGING


def recover(home: Path) -> list[str]:
    """Clean what an interrupted sync left under home: restore a workspace that was moved
    aside but not replaced, and drop half-built staging directories. Call under the sync lock."""
    root = staging_root(home)
    notes = []
    if not root.is_dir():
        return notes
    for entry in sorted(root.iterdir()):
        if entry.name.endswith(".lock"):
            continue
        parts = entry.name.rsplit(".", 2)  # "<workspace>.<new|old|gone>.<hex>"
        name, kind = (parts[0], parts[1]) if len(parts) == 3 else (entry.name, "")
        target = home / name
        if kind == "old" and not target.exists():
            os.replace(entry, target)
            notes.append(f"restored {name} from an interrupted switch")
            continue
        shutil.rmtree(entry, ignore_errors=True)
        if entry.exists():
            entry.unlink(missing_ok=True)
        notes.append(f"removed staging leftover {entry.name}")
    return notes


def switch_in(staging: Path, target: Path) -> None:
    """Put the finished staging dir at target; the old target (if any) is removed after."""
    parent = target.parent
    if target.exists() or target.is_symlink():
        if not faults.no_exchange() and platform.exchange_dirs(staging, target):
            _fsync(parent)
            faults.point("switch-after")
            shutil.rmtree(staging)
            return
        aside = staging.with_name(f"{target.name}.old.{uuid.uuid4().hex[:8]}")
        os.replace(target, aside)
        faults.point("switch-between")
        os.replace(staging, target)
        _fsync(parent)
        faults.point("switch-after")
        shutil.rmtree(aside)
        return
    os.replace(staging, target)
    _fsync(parent)


def build_workspace(
    wplan, locked, target: Path, sentinel: str, store, ensure, link: str, jobs: int, progress=None
) -> WorkspaceResult:
    """Stage one workspace (create or update) and switch it in.

    `ensure(entry, on_bytes)` puts a locked file's blob in the store (fetching or building).
    """
    home = target.parent
    stage_dir = staging_root(home)
    stage_dir.mkdir(parents=True, exist_ok=True)
    staging = stage_dir / f"{target.name}.new.{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    result = WorkspaceResult(wplan.name, wplan.op)
    by_path = {f.path: f for f in locked.placed_files}
    ops = {a.path: a.op for a in wplan.files}
    try:
        _place(wplan, locked, staging, store, ensure, link, jobs, progress, result)
        _keep(ops, target, staging, result)
        (staging / SENTINEL).write_text(sentinel, encoding="utf-8")
        _fsync(staging / SENTINEL)
        faults.point("sentinel")
        _check_staging(staging, by_path)
        _fsync(staging)
        faults.point("switch-before")
        switch_in(staging, target)
    except BaseException as e:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            raise DiskError(
                f"not enough space to build {wplan.name} under {home}",
                hint="free some space; the previous workspace is unchanged",
            ) from None
        raise
    return result


def _place(wplan, locked, staging: Path, store, ensure, link, jobs, progress, result) -> None:
    """Put every file the plan writes into staging: its blob ensured in the store (fetched,
    built, or the lock's own bytes), then placed; in parallel, with progress."""
    todo = wplan.entries_to_write()
    inline = locked.inline_bytes()
    ops = {a.path: a.op for a in wplan.files}
    task = progress.task(f"{wplan.name}", sum(f.size for f in todo)) if progress else None

    stop = threading.Event()  # the first failure (or a signal) stops the other threads

    def on_bytes(n: int) -> None:
        interrupt.check(stop)
        if task:
            task.advance(n)
        faults.point("fetch-mid")

    def fetch_one(entry):
        interrupt.check(stop)
        if entry.path in inline:
            store.put_bytes(inline[entry.path])
        else:
            ensure(entry, on_bytes)
            faults.point("fetch-done")
        interrupt.check(stop)
        dest = staging / entry.path
        if store.materialize(entry.hex, dest, link=link) != "hardlink":
            _fsync(dest)
        return entry

    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    futures = [pool.submit(fetch_one, entry) for entry in todo]
    try:
        for i, future in enumerate(futures):
            entry = future.result()
            if i == len(todo) // 2:
                faults.point("stage-mid")
            result.bytes_written += entry.size
            if ops[entry.path] == "add":
                result.added += 1
            else:
                result.replaced += 1
    except BaseException:
        stop.set()  # the others stop at their next chunk; nothing waits for a whole file
        pool.shutdown(wait=False, cancel_futures=True)
        wait(futures, timeout=STOP_WAIT)
        raise
    pool.shutdown()


def _keep(ops: dict, target: Path, staging: Path, result: WorkspaceResult) -> None:
    """Carry the files that already match from the current workspace into staging."""
    for path, op in ops.items():
        if op == "keep":
            dest = staging / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(target / path, dest)
            except OSError:
                shutil.copyfile(target / path, dest)
            result.kept += 1
        elif op == "delete":
            result.deleted += 1


def _check_staging(staging: Path, by_path: dict) -> None:
    """The staged tree holds exactly the locked files, at their locked sizes."""
    found = walk_all(staging)
    if set(found) != set(by_path):
        diff = sorted(set(found) ^ set(by_path))
        raise IntegrityError(f"staging {staging.name}: file set differs from the lock: {diff[:5]}")
    for path, (kind, st) in found.items():
        if kind != "file" or st.st_size != by_path[path].size:
            raise IntegrityError(f"staging {staging.name}: {path} has the wrong size or type")


def remove_workspace(target: Path) -> None:
    aside = staging_root(target.parent) / f"{target.name}.gone.{uuid.uuid4().hex[:8]}"
    aside.parent.mkdir(parents=True, exist_ok=True)
    os.replace(target, aside)
    _fsync(target.parent)
    shutil.rmtree(aside)
