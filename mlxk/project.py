"""The library API: one Project (a manifest, its lock, its home and store) and its operations.

The CLI is a thin layer over this; tests call it directly.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from . import lock as lockfile
from .errors import IntegrityError, LockError, SourceError, UserError
from .hashcache import HashCache
from .lock import Lock
from .manifest import LOCK_NAME, Manifest, load_manifest
from .resolve import resolve, stale_reasons, steps_outdated
from .settings import Settings
from .store import LINK_MODES, Store, default_store_root
from .verify import Verification, verify_workspace
from .workspace import STAGING, WorkspaceState, prime, scan, sentinel_text

if TYPE_CHECKING:  # what only lock, plan and sync need is imported there (start-up of verify)
    from .build import Builder
    from .fetch import Fetcher
    from .plan import Plan
    from .sync import SyncResult

DEFAULT_JOBS = 4


class NullUI:
    """What the library reports to; the CLI passes one that draws progress and messages."""

    def task(self, description: str, total: int):
        return _NullTask()

    def note(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass


class _NullTask:
    def advance(self, n: int) -> None:
        pass


@dataclass(frozen=True)
class RunRequest:
    """A checked `mlxk run`: the workspace, its kind, the inputs and the runner's options."""

    name: str
    path: Path
    kind: str
    inputs: dict
    options: dict


@dataclass
class LockResult:
    lock: Lock
    actions: dict[str, str]
    written: bool

    def notes(self) -> list[str]:
        """What a reader of the lock should know: a lock tied to an absolute path."""
        return [
            f"{name}: the lock records the absolute path {ws.source.path}; it is tied to that "
            "path on every machine that syncs it"
            for name, ws in sorted(self.lock.workspaces.items())
            if getattr(ws.source, "absolute", False)
        ]

    def to_dict(self) -> dict:
        return {
            "notes": self.notes(),
            "written": self.written,
            "workspaces": {
                name: {
                    "action": self.actions[name],
                    "source": ws.source.describe(),
                    "commit": ws.source.commit,
                    "files": len(ws.files),
                    "steps": len(ws.steps),
                    "bytes": sum(f.size for f in ws.files),
                    "content_hash": ws.content_hash,
                }
                for name, ws in sorted(self.lock.workspaces.items())
            },
        }


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


def choose_link(option: str | None, env: str | None, manifest: str | None) -> str:
    """The link mode from the first of --link, $MLXK_LINK and the manifest that is set."""
    for value, where in ((option, "--link"), (env, "MLXK_LINK"), (manifest, "link")):
        if value is None:
            continue
        if value not in LINK_MODES:
            raise UserError(
                f"{where}: unknown link mode {value!r}", hint=f"use one of {', '.join(LINK_MODES)}"
            )
        return value
    return "auto"


class Project:
    def __init__(
        self,
        manifest: Manifest,
        store: Store | None = None,
        jobs: int = DEFAULT_JOBS,
        offline: bool = False,
        ui=None,
        settings: Settings | None = None,
        clients: dict | None = None,
        use_remote: bool = True,
    ):
        self.manifest = manifest
        self.settings = settings or Settings.from_env()
        if store is not None:
            self.store = store
        self.jobs = jobs
        self.ui = ui or NullUI()
        self._offline, self._use_remote = offline, use_remote
        self._build_lock = threading.Lock()
        self._clients = clients
        self._hash_cache = None
        self.fetched = {"files": 0, "bytes": 0}  # fetched from sources by this process

    @cached_property
    def store(self) -> Store:
        """The blob store: the manifest's `store:`, else $MLXK_STORE, else the user cache's
        (worked out when first used: a full verify never needs it)."""
        return Store(self.manifest.store or self.settings.store or default_store_root())

    @cached_property
    def fetcher(self) -> Fetcher:
        from .fetch import Fetcher

        return Fetcher(
            self.store,
            self.manifest.root,
            offline=self._offline,
            settings=self.settings,
            clients=self._clients,
            remote=self._remote() if self._use_remote else None,
        )

    @cached_property
    def builder(self) -> Builder:
        from .build import Builder

        return Builder(self.store, self.fetcher, ui=self.ui)

    def remote_text(self) -> tuple[str, str] | None:
        """(oci://HOST/PREFIX, where it was set) of the fleet's registry, if one is set:
        $MLXK_REMOTE, else the manifest's `remote:`."""
        if self.settings.remote:
            return self.settings.remote, "MLXK_REMOTE"
        if self.manifest.remote:
            return self.manifest.remote, f"{self.manifest.path.name}: remote"
        return None

    def _remote(self):
        from .remote import Remote, prefix_of

        named = self.remote_text()
        if named is None:
            return None
        return Remote(prefix_of(*named), self.settings.registry)

    @staticmethod
    def default_store(settings: Settings | None = None) -> Store:
        return Store((settings or Settings.from_env()).store or default_store_root())

    @classmethod
    def load(cls, file=None, settings: Settings | None = None, **kwargs) -> Project:
        settings = settings or Settings.from_env()
        return cls(load_manifest(file, settings), settings=settings, **kwargs)

    def reload(self) -> Project:
        """This project again, its manifest read anew (same store, settings, clients, UI)."""
        return Project(
            load_manifest(self.manifest.path, self.settings),
            store=self.store,
            jobs=self.jobs,
            offline=self._offline,
            ui=self.ui,
            settings=self.settings,
            clients=self._clients,
            use_remote=self._use_remote,
        )

    # ------------------------------------------------------------ basics
    @property
    def home(self) -> Path:
        return self.manifest.home

    @property
    def lock_path(self) -> Path:
        return self.manifest.lock_path

    def workspace_path(self, name: str) -> Path:
        path = self.home / name
        if path.parent != self.home or name in ("", ".", ".."):  # never leave home
            raise UserError(f"{name!r} is not a workspace name")
        return path

    def shown(self, path: Path) -> str:
        """A path as the user should see it: relative to the manifest when inside it."""
        try:
            return str(path.relative_to(self.manifest.root))
        except ValueError:
            return str(path)

    def read_lock(self) -> Lock | None:
        return lockfile.read(self.lock_path)

    def register(self) -> None:
        """Record in the store that this project's lock takes blobs from it (for gc)."""
        from . import store_locks

        self.store.ensure_usable()
        store_locks.register(self.store.root, self.lock_path, self.manifest.path)

    def _exclusive(self):
        """One sync at a time per home: a second process waits, and says so."""
        from .homelock import HomeLock

        def on_wait():
            self.ui.warn(f"waiting for another mlxk using {self.shown(self.home)} …")

        return HomeLock(self.home, on_wait).acquire()

    # ------------------------------------------------------------ lock
    def lock(self, upgrade: bool | frozenset[str] = False) -> LockResult:
        self.register()
        old = self.read_lock()
        new, actions = resolve(
            self.manifest,
            old,
            self.fetcher,
            self.builder,
            upgrade=upgrade,
            jobs=self.jobs,
            on_workspace=lambda n: self.ui.note(f"resolving {n}"),
        )
        written = lockfile.write(self.lock_path, new)
        self.store.flush()
        return LockResult(new, actions, written)

    def current_lock(
        self, locked: bool = False, frozen: bool = False, purpose: str | None = None
    ) -> tuple[Lock, LockResult | None]:
        """The lock to act on: as is (--frozen), checked (--locked), else re-locked if stale.

        `purpose` names the command that only reads the lock (plan, verify, run, bundle), for
        messages."""
        lock = self.read_lock()
        name = self.lock_path.name
        if lock is None and (frozen or purpose):
            raise LockError(
                f"{name}: not found next to {self.manifest.path.name}; "
                f"{purpose or 'sync --frozen'} needs a lock",
                hint="run `mlxk lock` (or `mlxk sync`, which locks first)",
            )
        if frozen:
            return lock, None
        reasons = stale_reasons(self.manifest, lock)
        if locked:
            if reasons:
                hint = (
                    f"run `mlxk lock` (and commit {name}), then `mlxk {purpose}` again"
                    if purpose
                    else f"run `mlxk lock` and commit {name}, or drop --locked"
                )
                raise LockError(
                    f"{name}: out of date with {self.manifest.path.name}: " + "; ".join(reasons),
                    hint=hint,
                )
            return lock, None
        if reasons and self.fetcher.offline:
            needs = [
                n
                for n, ws in sorted(self.manifest.workspaces.items())
                if ws.source.network or ws.runtime
            ]
            raise SourceError(
                f"offline: {name} is out of date ({'; '.join(reasons)}) and locking "
                + (f"{', '.join(needs)} needs the network" if needs else "is needed"),
                hint="run `mlxk lock` online and commit mlxk.lock, or import a bundle "
                "(mlxk sync --offline --from BUNDLE)",
            )
        if reasons or steps_outdated(lock):
            result = self.lock()
            return result.lock, result
        return lock, None

    def warn_if_stale(self, lock: Lock | None) -> None:
        """One line on stderr when the lock does not describe the manifest (commands that
        only read the lock act on it as it is)."""
        reasons = stale_reasons(self.manifest, lock) if lock is not None else []
        if reasons:
            self.ui.warn(
                f"warning: {self.lock_path.name} is out of date with {self.manifest.path.name} "
                f"({'; '.join(reasons)}); run `mlxk lock`"
            )

    def check_lock(self, refresh: bool = False) -> dict:
        """Is mlxk.lock up to date with the manifest? Offline unless `refresh`, which asks the
        hub whether any branch or tag a workspace pins has moved."""
        lock = self.read_lock()
        reasons = stale_reasons(self.manifest, lock)
        if refresh and lock is not None:
            for name, ws in sorted(lock.workspaces.items()):
                for pin in (ws.source, *(r.pin for r in ws.runtime)):
                    moved = pin.moved(self.fetcher)
                    if moved:
                        reasons.append(f"{name}: {moved}")
        return {"fresh": not reasons, "reasons": reasons, "refreshed": refresh}

    # ------------------------------------------------------------ state
    @property
    def hash_cache(self) -> HashCache:
        if self._hash_cache is None:
            self._hash_cache = HashCache(self.store.root / "hashcache.sqlite")
        return self._hash_cache

    def scan_workspace(self, name: str, cached: bool = True) -> WorkspaceState:
        """What is on disk; `cached` trusts the stat-keyed hash cache (plain verify does not)."""
        cache = self.hash_cache if cached else None
        return scan(self.workspace_path(name), jobs=self.jobs, cache=cache)

    def orphans(self, lock: Lock) -> dict[str, WorkspaceState]:
        """Managed workspaces under home that the lock does not name."""
        out = {}
        if not self.home.is_dir():
            return out
        for entry in sorted(self.home.iterdir()):
            if entry.name in lock.workspaces or entry.name == STAGING or not entry.is_dir():
                continue
            state = scan(entry, jobs=self.jobs, cache=self.hash_cache)
            if state.managed and state.sentinel.get("name") == entry.name:
                out[entry.name] = state
        return out

    def plan(self, lock: Lock | None = None, prune: bool = False) -> Plan:
        from .plan import Provenance, make_plan

        lock = lock or self.current_lock(frozen=True, purpose="plan")[0]
        states = {n: self.scan_workspace(n) for n in lock.workspaces}
        sentinels = {n: sentinel_text(n, ws) for n, ws in lock.workspaces.items()}
        prov = Provenance(
            have=lambda f: self.store.has(f.hex, f.size),
            reachable=lambda pin: pin.reachable(self.fetcher),
            remote=self.fetcher.remote.describe() if self.fetcher.remote else "",
        )
        plan = make_plan(lock, states, sentinels, self.orphans(lock), prune=prune, prov=prov)
        self.hash_cache.flush()
        return plan

    # ------------------------------------------------------------ sync
    def ensurer(self, ws):
        """For one locked workspace: how to put a placed file's blob in the store (fetching
        it from its source or runtime repo, or rebuilding the steps that make it)."""
        placements = {p.file.path: p for p in ws.placements()}

        def counted(entry, get):
            present = self.store.has(entry.hex, entry.size)
            got = get()
            if not present and got:
                with self._build_lock:
                    self.fetched["files"] += 1
                    self.fetched["bytes"] += entry.size
            return got

        def ensure(entry, on_bytes=None):
            placed = placements[entry.path]
            if placed.pin is not None:
                counted(
                    placed.entry,
                    lambda: self.fetcher.ensure(placed.pin, placed.entry, on_bytes, ws.name),
                )
                return
            if self.store.check(entry.hex, entry.size):
                if on_bytes:
                    on_bytes(entry.size)
                return
            if self.fetcher.remote and counted(entry, lambda: self._built_from_remote(ws, entry)):
                if on_bytes:
                    on_bytes(entry.size)
                return
            with self._build_lock:  # one rebuild serves every missing output
                self.builder.ensure_outputs(ws, ws.files)
            if on_bytes:
                on_bytes(entry.size)

        return ensure

    def gather(self, lock: Lock) -> None:
        """Put every blob the lock names in the store: fetched from its source, or built."""
        for ws in lock.workspaces.values():
            ensure = self.ensurer(ws)
            inline = ws.inline_bytes()
            for entry in ws.placed_files:
                if entry.path in inline:
                    self.store.put_bytes(inline[entry.path])
                elif not self.store.check(entry.hex, entry.size):
                    ensure(entry)
            for step in ws.steps[:-1]:  # intermediate outputs: a bundle carries them too
                self.builder.ensure_outputs(ws, step.files)
        self.store.flush()

    def _built_from_remote(self, ws, entry):
        """A step output from the remote; falling back to a rebuild only where one can run."""
        src = ws.source
        can_build = src.reachable(self.fetcher) or all(self.store.has(f.hex) for f in src.files)
        return self.fetcher.from_remote(ws.name, entry, fallback=can_build)

    def _check_offline(self, plan: Plan) -> None:
        """Offline, name every file sync would need that nothing here can give, up front."""
        missing = plan.missing()
        if missing:
            shown = ", ".join(missing[:6]) + (
                f" and {len(missing) - 6} more" if len(missing) > 6 else ""
            )
            raise SourceError(
                f"offline: {len(missing)} file(s) are not in the store ({self.store.root}): "
                f"{shown}",
                hint="bring them with a bundle (mlxk import BUNDLE, or sync --from BUNDLE), "
                "or sync once online",
            )

    def rebuild(self, names, lock: Lock | None = None) -> list:
        """Rebuild workspaces' steps from their locked sources; compare every output byte."""
        lock = lock or self.current_lock(frozen=True, purpose="sync --rebuild")[0]
        reports = []
        for name in names:
            ws = lock.workspaces.get(name)
            if ws is None or not ws.steps:
                with_steps = sorted(n for n, w in lock.workspaces.items() if w.steps)
                raise UserError(
                    f"--rebuild: {name} is not a workspace with steps in the lock",
                    hint=f"workspaces with steps: {', '.join(with_steps) or 'none'}",
                )
            reports.append(self.builder.rebuild(ws))
        return reports

    def _rebuilt_identical(self, names, lock: Lock) -> list:
        """--rebuild: rebuild these workspaces; any output not byte-identical is exit 3."""
        rebuilt = self.rebuild(names, lock) if names else []
        moved = [f"{r.name}/{f['path']}" for r in rebuilt for f in r.files if not f["identical"]]
        if moved:
            raise IntegrityError(
                f"--rebuild: outputs differ from the lock: {', '.join(moved)}",
                hint="the build is not reproducible with the tools installed here",
            )
        return rebuilt

    def link_mode(self, option: str | None = None) -> str:
        """How sync places files: --link, else $MLXK_LINK, else the manifest's `link`, else
        auto."""
        return choose_link(option, self.settings.link, self.manifest.link)

    def sync(
        self,
        locked: bool = False,
        frozen: bool = False,
        prune: bool = False,
        link: str | None = None,
        rebuild=(),
        only: frozenset[str] | None = None,
    ) -> SyncReport:
        """Make the workspaces on disk match the lock (`only`: just these workspaces)."""
        from .sync import SyncResult, build_workspace, check_space, recover, remove_workspace

        link = self.link_mode(link)
        flock = self._exclusive()
        try:
            notes = recover(self.home)
            self.register()
            lock, lock_result = self.current_lock(locked=locked, frozen=frozen)
            rebuilt = self._rebuilt_identical(rebuild, lock)
            plan = self.plan(lock, prune=prune)
            if only is not None:
                plan = plan.only(only)
            if plan.blocked:
                raise UserError("; ".join(f"{w.name}: {w.reason}" for w in plan.blocked))
            if self.fetcher.offline:
                self._check_offline(plan)
            notes += self.builder.clean_stale()
            check_space(self.home, self.store, plan, self.shown(self.home), link)
            result = SyncResult()
            for wplan in plan.workspaces:
                target = self.workspace_path(wplan.name)
                if wplan.op in ("create", "update"):
                    ws = lock.workspaces[wplan.name]
                    built = build_workspace(
                        wplan,
                        ws,
                        target,
                        sentinel_text(wplan.name, ws),
                        self.store,
                        self.ensurer(ws),
                        link,
                        self.jobs,
                        progress=self.ui,
                    )
                    result.workspaces.append(built)
                    prime(target, ws.placed_files, self.hash_cache)
                    self.hash_cache.flush()
                elif wplan.op == "remove":
                    remove_workspace(target)
                    result.workspaces.append(_removed(wplan))
            notes += self.fetcher.remote.notes() if self.fetcher.remote else []
            return SyncReport(lock_result, plan, result, notes, rebuilt, self._fetched())
        finally:
            self.store.flush()
            flock.release()

    def _fetched(self) -> dict:
        """Files and bytes fetched by this process; of them, from the remote registry."""
        remote = self.fetcher.remote
        return {**self.fetched, **({"remote": dict(remote.served)} if remote else {})}

    # ------------------------------------------------------------ run
    def synced_path(self, name: str, what: str = "run") -> Path:
        """The directory of a workspace that is in the lock and synced (else exit 2)."""
        lock = self.current_lock(frozen=True, purpose=what)[0]
        self.warn_if_stale(lock)
        if name not in lock.workspaces:
            raise UserError(
                f"{what}: no workspace named {name!r} in the lock",
                hint=f"workspaces: {', '.join(sorted(lock.workspaces)) or 'none'}",
            )
        path = self.workspace_path(name)
        state = scan(path, jobs=self.jobs) if path.is_dir() else None
        if state is None or not state.managed:
            raise UserError(
                f"{what}: {name} is not synced at {self.shown(path)}", hint="run `mlxk sync` first"
            )
        return path

    def run_request(self, name: str, options: dict | None = None, **inputs) -> RunRequest:
        """What `run` will do, checked before anything runs: the workspace is synced, its
        kind (from config.json) takes these inputs (else exit 2, naming the kind)."""
        from . import runners
        from .models import TOKENIZER_FILES, has_tokenizer

        path = self.synced_path(name)
        kind = runners.read_kind(path)
        if kind == "text" and not inputs.get("prompt"):
            inputs["prompt"] = "Hello"
        runners.check_inputs(kind, f"run {name}", **inputs)
        options = dict(options or {})
        if kind == "text" and not has_tokenizer(p.name for p in path.iterdir() if p.is_file()):
            # A model that ships without a tokenizer loads one by repo id at run time: take
            # it from the runtime captures, offline, as the upstream library would.
            lock = self.current_lock(frozen=True, purpose="run")[0]
            options["tokenizer_repo"] = next(
                (
                    (r.repo, r.revision)
                    for r in lock.workspaces[name].runtime
                    if any(f.path in TOKENIZER_FILES for f in r.files)
                ),
                None,
            )
        return RunRequest(name, path, kind, inputs, options)

    def run(self, request: RunRequest, env: dict | None = None) -> dict:
        """Run a synced workspace's model by its kind, offline (HF_HOME=<workspace>/.hf_cache,
        HF_HUB_OFFLINE=1), or with `env` (a capture run's online environment)."""
        from .runners import run_isolated

        out = run_isolated(
            request.path,
            env=env,
            kind=request.kind,
            what=f"run {request.name}",
            name=request.name,
            options=request.options,
            settings=self.settings,
            **request.inputs,
        )
        given = {k: request.inputs[k] for k in ("prompt",) if request.inputs.get(k)}
        return {"workspace": request.name, **given, **out}

    # ------------------------------------------------------------ bundles
    def bundle(
        self,
        out: Path,
        locked: bool = False,
        frozen: bool = False,
        sign: Path | None = None,
        interactive: bool = False,
    ):
        """Write the lock, the manifest and every blob the lock names to `out` (dir or .tar),
        signed with the SSH key `sign` when given (a passphrase is asked only if interactive).
        Like sync, it locks first when the lock is missing or stale (`locked`: refuse instead;
        `frozen`: ship the lock as it is)."""
        from .bundle import write_bundle

        if frozen:
            lock = self.current_lock(frozen=True, purpose="bundle")[0]
        else:
            lock = self.current_lock(locked=locked)[0]
            self.gather(lock)
        return write_bundle(Path(out), self.manifest.path, lock, self.store, sign, interactive)

    # ------------------------------------------------------------ verify
    def verify(
        self, names: list[str] | None = None, fast: bool = False, locked: bool = False
    ) -> Verification:
        """Rehash every file (or, `fast`, trust the hash cache) and compare with the lock; a
        stale lock is warned about (`locked`: refused, exit 2)."""
        lock = self.current_lock(locked=locked, frozen=not locked, purpose="verify")[0]
        if not locked:
            self.warn_if_stale(lock)
        unknown = sorted(set(names or ()) - set(lock.workspaces))
        if unknown:
            raise UserError(
                f"--workspace: not in the lock: {', '.join(unknown)}",
                hint=f"workspaces: {', '.join(sorted(lock.workspaces)) or 'none'}",
            )
        reports = []
        for name in sorted(names or lock.workspaces):
            ws = lock.workspaces[name]
            state = self.scan_workspace(name, cached=fast)
            reports.append(
                verify_workspace(
                    name, ws, state, sentinel_text(name, ws), self.shown(self.workspace_path(name))
                )
            )
        if fast:
            self.hash_cache.flush()
        return Verification(tuple(reports))


# ---------------------------------------------------------------- importing bundles


def signers_file(flag, settings: Settings, manifest: Manifest | None = None) -> Path | None:
    """The allowed_signers file that bundles must be signed against: --allowed-signers, else
    $MLXK_ALLOWED_SIGNERS, else the importing site's own manifest (never the bundle's). Every
    line is checked at once (a bad one is exit 2, naming file:line)."""
    from .signing import check_allowed_signers

    path = Path(flag).expanduser() if flag else settings.allowed_signers
    if path is None and manifest is not None:
        path = manifest.allowed_signers
    if path is not None:
        check_allowed_signers(path)
    return path


@dataclass(frozen=True)
class _Local:
    """What the importing directory already holds: its manifest and lock (None: absent)."""

    manifest: Manifest | None
    manifest_bytes: bytes | None
    lock: Lock | None
    lock_exists: bool


def _local_state(dest: Path, settings: Settings, force: bool) -> _Local:
    manifest = load_manifest(dest, settings) if dest.is_file() else None
    lock_path = dest.with_name(LOCK_NAME)
    try:
        lock = lockfile.read(lock_path)
    except LockError:
        if not force:  # with --force an unreadable lock is what gets replaced
            raise
        lock = None
    data = dest.read_bytes() if manifest else None
    return _Local(manifest, data, lock, lock_path.exists())


def _action(local: _Local, manifest_bytes: bytes, dest: Path, force: bool) -> str:
    """kept (the local manifest and lock decide), provisioned (none here: write the bundle's)
    or replaced (--force: the bundle's replace the local ones)."""
    if force:
        return "replaced" if local.manifest or local.lock_exists else "provisioned"
    if local.manifest and local.lock:
        return "kept"
    if not local.manifest and not local.lock_exists:
        return "provisioned"
    if local.manifest_bytes == manifest_bytes and not local.lock_exists:
        return "provisioned"  # the same manifest, not yet locked: the bundle's lock pins it
    if not local.manifest:
        raise UserError(
            f"import: {LOCK_NAME} is here but {dest.name} is not",
            hint="give the manifest that lock belongs to with -f, or --force to write the "
            "bundle's manifest and lock",
        )
    raise UserError(
        f"import: {dest.name} has no {LOCK_NAME} beside it and differs from the bundle's manifest",
        hint="lock it where its sources are reachable and bring mlxk.lock, or --force to "
        "take the bundle's manifest and lock",
    )


def _refuse_bad_bundle(bundle) -> None:
    """A bundle whose members do not match its own lock is refused before any blob enters
    the store (every blob is still hashed, into nothing, so the message names them all)."""
    from .bundle import lock_blobs

    problems = bundle.problems()
    if not problems:
        return
    problems += bundle.take(lock_blobs(bundle.contents.lock), None)[2]
    names = ", ".join(f"{p['blob'][:12]} ({p['problem']})" for p in problems[:8])
    raise IntegrityError(
        f"import: {bundle.path} does not match its own lock: {names}",
        hint="nothing was written; get a good copy of the bundle",
    )


def _take_blobs(bundle, lock: Lock, store: Store, lock_name: str) -> tuple:
    """Check into the store every blob `lock` needs that the bundle carries; returns
    (report, blobs already stored, bundle blobs not needed). Blobs neither the store nor the
    bundle has: exit 3 before any blob is taken."""
    from .bundle import BundleReport, lock_blobs, missing_files, shown_files

    _refuse_bad_bundle(bundle)
    need, carried = lock_blobs(lock), bundle.carried
    elsewhere = {h for h, size in need.items() if carried.get(h) != size}
    absent = {h for h in elsewhere if not store.has(h, need[h])}
    if absent:
        raise SourceError(
            f"import: {lock_name} needs {len(absent)} blob(s) that neither the store "
            f"({store.root}) nor {bundle.path} has: {shown_files(missing_files(lock, absent))}",
            hint="nothing was written; make the bundle from this lock where it is synced "
            "(`mlxk verify --bundle` here shows what a bundle lacks)",
        )
    good, size, corrupt = bundle.take(need, store)
    store.flush()
    if corrupt:
        names = ", ".join(f"{p['blob'][:12]} (corrupt)" for p in corrupt[:8])
        raise IntegrityError(
            f"import: {bundle.path} does not match its own lock: {names}",
            hint="nothing was written but verified blobs; get a good copy of the bundle",
        )
    workspaces = tuple(sorted(lock.workspaces))
    report = BundleReport(
        str(bundle.path), bundle.format, good, size, workspaces, (), bundle.signature
    )
    return report, len(elsewhere), len(set(carried) - set(need))


def _signer_notes(before: Manifest | None, after: Manifest) -> tuple[str, ...]:
    """What a manifest written from a bundle changes about the signatures this site needs."""
    old = before.allowed_signers if before else None
    if after.allowed_signers == old:
        return ()
    if after.allowed_signers is None:
        return (f"{after.path.name} no longer sets allowed_signers (it was {old})",)
    return (f"{after.path.name} now sets allowed_signers: {after.allowed_signers}",)


def _write_from_bundle(dest: Path, contents) -> tuple[str, ...]:
    """Write the bundle's manifest and lock (their exact bytes) where they differ."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for target, data in (
        (dest, contents.manifest_bytes),
        (dest.with_name(LOCK_NAME), contents.lock_bytes),
    ):
        if not target.is_file() or target.read_bytes() != data:
            lockfile.write_atomic(target, data.decode("utf-8"))
            written.append(target.name)
    return tuple(written)


@dataclass(frozen=True)
class ImportResult:
    """What `mlxk import` (and `sync --from`) did: which lock decided, the blobs taken, what
    was written, and how the bundle's lock differs from the one here."""

    report: object  # bundle.BundleReport: the blobs checked in, the signature
    manifest: Path
    action: str  # "kept" | "provisioned" | "replaced"
    written: tuple[str, ...] = ()
    stored: int = 0  # blobs the lock needs that were in the store already
    extra_blobs: int = 0  # blobs in the bundle the lock does not need (ignored)
    changes: tuple = ()  # lock.WorkspaceChange: here → the bundle's
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {
            **self.report.to_dict(),
            "manifest": self.manifest.name,
            "action": self.action,
            "written": list(self.written),
            "stored": self.stored,
            "extra_blobs": self.extra_blobs,
            "changes": [c.to_dict() for c in self.changes],
            "notes": list(self.notes),
        }


def import_bundle(path: Path, file=None, force: bool = False, ui=None, allowed_signers=None):
    """Import a bundle into the directory of -f/--file (else ./<the bundle's manifest name>).

    With a manifest and lock here, the local lock decides (action "kept"): only the blobs it
    names are taken, each checked against its sha256, and neither file changes. With none
    here ("provisioned"), or with `force` ("replaced"), every blob of the bundle is checked
    in and its manifest and lock are written. With an allowed_signers file (the argument,
    $MLXK_ALLOWED_SIGNERS or the local manifest's), an unsigned or untrusted bundle is exit 3
    before any blob is read. Nothing but verified blobs is written on any failure."""
    from .bundle import Bundle
    from .manifest import parse_manifest

    settings = Settings.from_env()
    early = signers_file(allowed_signers, settings)
    with Bundle(Path(path)) as bundle:
        contents = bundle.contents
        dest = Path(file).resolve() if file else (Path.cwd() / contents.manifest_name)
        local = _local_state(dest, settings, force)
        bundle.check_signature(early or signers_file(None, settings, local.manifest))
        action = _action(local, contents.manifest_bytes, dest, force)
        if action == "kept":
            manifest, lock = local.manifest, local.lock
        else:
            text = _manifest_text(bundle)
            manifest, lock = parse_manifest(text, dest, settings), contents.lock
        project = Project(manifest, ui=ui, settings=settings)
        shown = LOCK_NAME if action != "kept" else f"the local {LOCK_NAME}"
        report, stored, extra = _take_blobs(bundle, lock, project.store, shown)
    written = () if action == "kept" else _write_from_bundle(dest, contents)
    project.register()
    changes = () if action == "provisioned" else lockfile.compare(local.lock, contents.lock)
    notes = () if action == "kept" else _signer_notes(local.manifest, manifest)
    return ImportResult(report, dest, action, written, stored, extra, changes, notes)


def _manifest_text(bundle) -> str:
    try:
        return bundle.contents.manifest_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise IntegrityError(
            f"{bundle.path}: {bundle.contents.manifest_name} is not UTF-8 text"
        ) from None


def sync_from(
    bundle, file, ui, jobs, offline, force=False, allowed_signers=None, use_remote=True, **options
):
    """`mlxk sync [--from BUNDLE]`: import the bundle first (the local lock decides unless
    `force`), then sync; returns (the import report or None, the SyncReport)."""
    imported = None
    if bundle:
        imported = import_bundle(bundle, file, force, ui, allowed_signers)
        file = str(imported.manifest)
    elif force or allowed_signers:
        raise UserError("--force and --allowed-signers go with --from BUNDLE")
    project = Project.load(
        file, ui=ui, jobs=jobs or DEFAULT_JOBS, offline=offline, use_remote=use_remote
    )
    return imported, project.sync(**options)


def _removed(wplan):
    from .sync import WorkspaceResult

    return WorkspaceResult(wplan.name, "remove", deleted=len(wplan.files))


def cpu_count() -> int:
    return os.cpu_count() or 2
