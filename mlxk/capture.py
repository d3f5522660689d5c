"""`mlxk capture NAME -- COMMAND` and `mlxk run --capture NAME`: learn a model's runtime repos
by running it once online, and turn what it downloaded into `runtime:` declarations.

The command runs with HF_HOME set to a fresh directory seeded with a copy of the workspace's
`.hf_cache` (so it sees what is captured already, and a failing command leaves the workspace
untouched), online (HF_ENDPOINT and HF_TOKEN as usual). Afterwards every repo snapshot file
it added is a capture: per repo and revision the loader asked for, pinned to the commit it
got. Each captured file's bytes are checked against the hash the hub declares for that commit
and go into the store; models.yaml gets the entries (ruamel round trip, comments kept), the
lock is rewritten with them, and sync places them in the workspace from the store as real
files. Nothing is written unless the command succeeded and every byte checked out.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from . import hfcache
from . import lock as lockfile
from .errors import CommandFailed, IntegrityError, SourceError, UserError, scrub
from .lock import Lock, LockedRuntime
from .workspace import HF_CACHE


@dataclass(frozen=True)
class Captured:
    """One repo a capture recorded, and what it did to the workspace's `runtime:`."""

    repo: str
    revision: str
    commit: str
    files: tuple[str, ...]  # the files the command fetched (new to the entry)
    action: str  # "added" (a new entry) | "extended" (more files) | "repinned" (a new commit)
    index: int | None = None  # the runtime entry it changes; None: a new one

    def to_dict(self) -> dict:
        return {
            "repo": self.repo,
            "revision": self.revision,
            "commit": self.commit,
            "files": list(self.files),
            "action": self.action,
        }


@dataclass(frozen=True)
class CaptureResult:
    workspace: str
    command: tuple[str, ...]
    captured: tuple[Captured, ...] = ()
    written: bool = False  # models.yaml and mlxk.lock
    placed: int = 0  # files sync placed in the workspace afterwards
    run: dict | None = None  # `mlxk run --capture`: what the run produced
    manifest: str = "models.yaml"

    def to_dict(self) -> dict:
        out = {
            "workspace": self.workspace,
            "manifest": self.manifest,
            "command": list(self.command),
            "captured": [c.to_dict() for c in self.captured],
            "written": self.written,
            "placed": self.placed,
        }
        if self.run is not None:
            out["run"] = self.run
        return out


# ---------------------------------------------------------------- entry points


def capture_command(project, name: str, argv, ui=None, json_mode: bool = False) -> CaptureResult:
    """`mlxk capture NAME -- COMMAND [ARGS...]`."""
    if not argv:
        raise UserError(
            f"capture {name}: no COMMAND given", hint="mlxk capture NAME -- COMMAND [ARGS...]"
        )
    run = functools.partial(_execute, argv, what=f"capture {name}", json_mode=json_mode)
    return _capture(project, name, tuple(argv), run, ui)


def capture_run(project, request, ui=None) -> CaptureResult:
    """`mlxk run --capture NAME ...`: mlxk's own run is the command."""
    argv = ("mlxk", "run", request.name)
    return _capture(project, request.name, argv, lambda env: project.run(request, env=env), ui)


def _capture(project, name: str, argv: tuple[str, ...], execute, ui=None) -> CaptureResult:
    path = project.synced_path(name, "capture")
    lock = project.current_lock(locked=True, purpose="capture")[0]
    from .runners import run_env

    with tempfile.TemporaryDirectory(prefix="mlxk-capture-") as tmp:
        home = Path(tmp) / "hf_home"
        if (path / HF_CACHE).is_dir():
            shutil.copytree(path / HF_CACHE, home, symlinks=True)
        home.mkdir(exist_ok=True)
        before = hfcache.state(home)
        if ui is not None:
            ui.note(f"capture {name}: running {argv[0]} online, HF_HOME={home}")
        ran = execute(run_env(home, project.settings, online=True))
        changes = plan_capture(lock.workspaces[name], hfcache.fetched_since(home, before))
        shown = project.manifest.path.name
        if not changes:
            return CaptureResult(name, argv, run=ran, manifest=shown)
        text, new_lock = record(project, name, lock, changes, home)
    lockfile.write_atomic(project.manifest.path, text)
    lockfile.write(project.lock_path, new_lock)
    placed = replace_captures(project, name)
    return CaptureResult(name, argv, tuple(changes), True, placed, ran, shown)


# ---------------------------------------------------------------- the command


# How huggingface_hub words a 401/403 ("401 Client Error.", "403 Forbidden: ...").
_REFUSED = re.compile(r"\b40[13] (?:Client Error|Unauthorized|Forbidden)\b")
_TRACE = ("Traceback", "During handling", "The above exception")


def _execute(argv, env: dict, what: str, json_mode: bool) -> None:
    """Run COMMAND, its output passed on (stdout to stderr with --json); a failure passes
    on its exit code, and a hub that refused it a download is exit 3 with the hub's word."""
    try:
        proc = subprocess.Popen(
            list(argv), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, errors="replace"
        )
    except FileNotFoundError:
        raise CommandFailed(f"{what}: no such command: {argv[0]}", 127) from None
    except PermissionError:
        raise CommandFailed(f"{what}: cannot run {argv[0]}: permission denied", 126) from None
    tail: collections.deque[str] = collections.deque(maxlen=400)
    pumps = [
        threading.Thread(target=_pump, args=(proc.stdout, sys.stderr if json_mode else sys.stdout)),
        threading.Thread(target=_pump, args=(proc.stderr, sys.stderr, tail)),
    ]
    for t in pumps:
        t.start()
    code = proc.wait()
    for t in pumps:
        t.join()
    if code == 0:
        return
    said = _hub_refusal("".join(tail))
    if said:
        said = scrub(said, env.get("HF_TOKEN"))
        raise SourceError(
            f"{what}: the hub refused {argv[0]} a download: {said}",
            hint="set HF_TOKEN to a token with access to it (or `hf auth login`); "
            "nothing was recorded",
        )
    code = code if code > 0 else 128 - code
    raise CommandFailed(
        f"{what}: {argv[0]} exited with {code}; nothing was recorded",
        code,
        hint="its own output above says why",
    )


def _pump(src, dst, keep=None) -> None:
    for line in src:
        dst.write(line)
        dst.flush()
        if keep is not None:
            keep.append(line)


def _hub_refusal(text: str) -> str | None:
    """The hub's refusal (HTTP 401/403: a gated or private repo, a bad token) in a
    command's stderr, as huggingface_hub printed it: its status line and the hub's message."""
    hub = re.compile(r"^huggingface_hub\.errors\.\w+: (?=.*" + _REFUSED.pattern + ")", re.M)
    hit = hub.search(text) or _REFUSED.search(text)  # huggingface_hub's own words first
    if not hit:
        return None
    said = []
    for line in text[hit.end() :].splitlines():
        if line.startswith(_TRACE):
            break
        said += [line.strip()] if line.strip() else []
    return " ".join(said)[:500]


# ---------------------------------------------------------------- what it found


def plan_capture(ws, fetched) -> list[Captured]:
    """Pure: what the repos a command fetched change in a locked workspace's runtime.

    A repo and revision no entry names is a new entry; files an entry pinned at the same
    commit lacks extend it; a revision the loader got another commit for re-pins it.
    Nothing new, nothing changed: an empty list.
    """
    out = []
    for f in fetched:
        i = next(
            (i for i, r in enumerate(ws.runtime) if (r.repo, r.revision) == (f.repo, f.revision)),
            None,
        )
        if i is None:
            out.append(Captured(f.repo, f.revision, f.commit, f.files, "added"))
            continue
        locked = ws.runtime[i]
        have = {x.path for x in locked.files} if locked.commit == f.commit else set()
        new = tuple(p for p in f.files if p not in have)
        if locked.commit != f.commit:
            out.append(Captured(f.repo, f.revision, f.commit, new, "repinned", i))
        elif new:
            out.append(Captured(f.repo, f.revision, f.commit, new, "extended", i))
    return out


def _pattern(name: str) -> str:
    """A file name as an include pattern that matches only itself."""
    return re.sub(r"([*?\[])", r"[\1]", name)


# ---------------------------------------------------------------- recording it


def record(project, name: str, lock: Lock, changes, home: Path) -> tuple[str, Lock]:
    """The new models.yaml text and the new lock: every captured file checked against the
    hub and in the store. Nothing is written here."""
    from .edit import with_runtime
    from .manifest import parse_manifest
    from .resolve import stale_reasons

    spec = project.manifest.workspaces[name]
    add = [
        {"source": f"hf://{c.repo}@{c.revision}", "include": [_pattern(p) for p in c.files]}
        for c in changes
        if c.index is None
    ]
    extend = {
        c.index: [_pattern(p) for p in c.files]
        for c in changes
        if c.index is not None and spec.runtime[c.index].include
    }
    text = with_runtime(project.manifest.path, name, add, extend)
    manifest = parse_manifest(text, project.manifest.path, project.settings)
    new_spec = manifest.workspaces[name]
    runtime = list(lock.workspaces[name].runtime)
    for c in changes:
        i = c.index if c.index is not None else len(runtime)
        label = f"{new_spec.where}: workspaces.{name}.runtime[{i}]"
        pin = pin_captured(project, new_spec.runtime[i], c, home, label)
        runtime[i : i + 1] = [LockedRuntime(pin)]
    ws = dataclasses.replace(
        lock.workspaces[name], spec_digest=new_spec.digest(), runtime=tuple(runtime)
    )
    new_lock = Lock(manifest.digest(), {**lock.workspaces, name: ws})
    assert not stale_reasons(manifest, new_lock), stale_reasons(manifest, new_lock)
    return text, new_lock


def pin_captured(project, dep, c: Captured, home: Path, label: str):
    """The runtime entry's pin at the commit the command got: its files as the hub lists them
    at that commit, chosen by the entry's include/exclude; every file the command left in the
    snapshot checked against the hub's declared hash and taken into the store from there."""
    from .sources import choose
    from .sources.hf import HfPin, client
    from .sources.path import opener as local_opener

    hub = client(project.fetcher)
    declared = {f.path: f for f in hub.list_files(c.repo, c.commit)}
    snap = home / "hub" / f"models--{c.repo.replace('/', '--')}" / "snapshots" / c.commit
    for rel in c.files:
        check_captured(snap / rel, declared.get(rel), f"hf://{c.repo}@{c.commit[:12]}/{rel}")
    local = {p for p in declared if (snap / p).is_file()}

    def opener(rel: str):
        return local_opener(snap, rel) if rel in local else hub.opener(c.repo, c.commit, rel)

    def fetch_sha(f) -> str:
        return project.store.fetch(opener(f.path), f.size, None, f.gitsha1, label=f.path)

    origin = f"hf://{c.repo}@{c.revision}"
    files = choose(list(declared.values()), dep.include, dep.exclude, label, origin, fetch_sha, 4)
    for f in files:
        if f.hub_hash is None and f.path in local:  # declared by sha256 (LFS): take it in
            project.store.fetch(opener(f.path), f.size, f.hash, None, label=f.path)
    return HfPin(files=files, repo=c.repo, revision=c.revision, commit=c.commit)


def check_captured(path: Path, declared, what: str) -> None:
    """A file the command downloaded must be the hub's file at that commit, byte for byte."""
    from .hashing import hash_file

    hint = "nothing was recorded; run the capture again (a corrupted download or a hub that "
    hint += "serves other bytes than it declares)"
    if declared is None:
        raise IntegrityError(f"capture: {what}: the hub does not list this file", hint=hint)
    size, sha256, gitsha1 = hash_file(path, git=declared.sha256 is None)
    want, got, kind = (
        (declared.sha256, sha256, "sha256")
        if declared.sha256
        else (declared.gitsha1, gitsha1, "git blob sha1")
    )
    if size != declared.size or got != want:
        shown = f"size {size}, declared {declared.size}" if size != declared.size else ""
        shown = shown or f"{kind} {got.split(':')[1][:12]}…, declared {want.split(':')[1][:12]}…"
        raise IntegrityError(
            f"capture: {what}: the bytes the command downloaded differ from the hub's ({shown})",
            hint=hint,
        )


# ---------------------------------------------------------------- placing it


def replace_captures(project, name: str) -> int:
    """Sync the workspace from the new lock: the captures come from the store, as real
    files, and whatever the command left behind is gone. Returns the files placed."""
    report = project.reload().sync(frozen=True, only=frozenset({name}))
    return sum(w.added + w.replaced for w in report.result.workspaces)
