"""The library API: one Project (a manifest, its lock, its home and store) and its operations.

The CLI is a thin layer over this; tests call it directly.
"""

from __future__ import annotations

import os
import threading
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from . import lock as lockfile
from .errors import IntegrityError, LockError, SourceError, UserError
from .hashcache import HashCache
from .lock import Lock
from .manifest_cache import ManifestFacts, recall, remember
from .manifest_file import read_manifest
from .settings import Settings
from .verify import Verification, verify_workspace
from .workspace import STAGING, WorkspaceState, prime, scan, sentinel_text

if TYPE_CHECKING:  # what only lock, plan and sync need is imported there (start-up of verify)
    from .build import Builder
    from .fetch import Fetcher
    from .manifest import Manifest
    from .plan import Plan
    from .resolve import LockResult
    from .runners import RunRequest
    from .store import Store
    from .sync import SyncReport

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


def choose_link(option: str | None, env: str | None, manifest: str | None) -> str:
    """The link mode from the first of --link, $MLXK_LINK and the manifest that is set."""
    from .store import LINK_MODES

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
    """A manifest's project. `manifest` is a parsed Manifest, or the ManifestFacts its cache
    remembered (then the YAML is parsed only when something beyond the facts is needed)."""

    def __init__(
        self,
        manifest: Manifest | ManifestFacts,
        store: Store | None = None,
        jobs: int = DEFAULT_JOBS,
        offline: bool = False,
        ui=None,
        settings: Settings | None = None,
        clients: dict | None = None,
        use_remote: bool = True,
    ):
        self.facts = manifest  # path, root, home, store, lock_path and digest(), either way
        if not isinstance(manifest, ManifestFacts):
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
    def manifest(self) -> Manifest:
        """The parsed manifest: given, or parsed from the text its facts were recalled for."""
        from .manifest import parse_manifest

        return parse_manifest(self.facts.text, self.facts.path, self.settings)

    @cached_property
    def store(self) -> Store:
        """The blob store: the manifest's `store:`, else $MLXK_STORE, else the user cache's
        (worked out when first used: a full verify never needs it)."""
        from .store import Store, default_store_root

        return Store(self.facts.store or self.settings.store or default_store_root())

    @cached_property
    def fetcher(self) -> Fetcher:
        from .fetch import Fetcher

        return Fetcher(
            self.store,
            self.facts.root,
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
        from .store import Store, default_store_root

        return Store((settings or Settings.from_env()).store or default_store_root())

    @classmethod
    def load(cls, file=None, settings: Settings | None = None, **kwargs) -> Project:
        """The project of the manifest at `file` (or ./models.yaml): its facts from the
        manifest cache when it remembers this text, else the manifest parsed."""
        settings = settings or Settings.from_env()
        path, text = read_manifest(file)
        facts = recall(path, text, settings)
        if facts is None:
            from .manifest import parse_manifest

            return cls(parse_manifest(text, path, settings), settings=settings, **kwargs)
        return cls(facts, settings=settings, **kwargs)

    def reload(self) -> Project:
        """This project again, its manifest read anew (same store, settings, clients, UI)."""
        from .manifest import load_manifest

        return Project(
            load_manifest(self.facts.path, self.settings),
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
        return self.facts.home

    @property
    def lock_path(self) -> Path:
        return self.facts.lock_path

    def workspace_path(self, name: str) -> Path:
        path = self.home / name
        if path.parent != self.home or name in ("", ".", ".."):  # never leave home
            raise UserError(f"{name!r} is not a workspace name")
        return path

    def shown(self, path: Path) -> str:
        """A path as the user should see it: relative to the manifest when inside it."""
        try:
            return str(path.relative_to(self.facts.root))
        except ValueError:
            return str(path)

    def read_lock(self) -> Lock | None:
        return lockfile.read(self.lock_path)

    def register(self) -> None:
        """Record in the store that this project's lock takes blobs from it (for gc)."""
        from . import store_locks

        self.store.ensure_usable()
        store_locks.register(self.store.root, self.lock_path, self.facts.path)

    def _exclusive(self):
        """One sync at a time per home: a second process waits, and says so."""
        from .homelock import HomeLock

        def on_wait():
            self.ui.warn(f"waiting for another mlxk using {self.shown(self.home)} …")

        return HomeLock(self.home, on_wait).acquire()

    # ------------------------------------------------------------ lock
    def lock(self, upgrade: bool | frozenset[str] = False) -> LockResult:
        from .resolve import LockResult, resolve

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
        self.remember()
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
                f"{name}: not found next to {self.facts.path.name}; "
                f"{purpose or 'sync --frozen'} needs a lock",
                hint="run `mlxk lock` (or `mlxk sync`, which locks first)",
            )
        if frozen:
            return lock, None
        reasons = self.stale_reasons(lock)
        if locked:
            if reasons:
                hint = (
                    f"run `mlxk lock` (and commit {name}), then `mlxk {purpose}` again"
                    if purpose
                    else f"run `mlxk lock` and commit {name}, or drop --locked"
                )
                raise LockError(
                    f"{name}: out of date with {self.facts.path.name}: " + "; ".join(reasons),
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
        from .resolve import steps_outdated

        if reasons or steps_outdated(lock):
            result = self.lock()
            return result.lock, result
        return lock, None

    def stale_reasons(self, lock: Lock | None) -> list[str]:
        """Why the lock does not describe the manifest (empty when it does). The digests
        first: when they match, the manifest need not be parsed."""
        if lock is not None and lock.manifest_digest == self.facts.digest():
            return []
        from .resolve import stale_reasons

        return stale_reasons(self.manifest, lock)

    def remember(self) -> None:
        """Leave the parsed manifest's facts in its cache (commands that write, never verify)."""
        if "manifest" in self.__dict__:  # parsed (loaded from the cache: the entry is there)
            remember(self.manifest, self.settings)

    def warn_if_stale(self, lock: Lock | None) -> None:
        """One line on stderr when the lock does not describe the manifest (commands that
        only read the lock act on it as it is)."""
        reasons = self.stale_reasons(lock) if lock is not None else []
        if reasons:
            self.ui.warn(
                f"warning: {self.lock_path.name} is out of date with {self.facts.path.name} "
                f"({'; '.join(reasons)}); run `mlxk lock`"
            )

    def check_lock(self, refresh: bool = False) -> dict:
        """Is mlxk.lock up to date with the manifest? Offline unless `refresh`, which asks the
        hub whether any branch or tag a workspace pins has moved."""
        lock = self.read_lock()
        reasons = self.stale_reasons(lock)
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
        from . import sync as syncing
        from .sync import SyncResult, build_workspace, check_space, recover

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
                    syncing.remove_workspace(target)
                    result.workspaces.append(_removed(wplan))
            notes += self.fetcher.remote.notes() if self.fetcher.remote else []
            if lock_result is None:  # (a re-lock has remembered it already)
                self.remember()  # for verify, which never writes it
            return syncing.SyncReport(lock_result, plan, result, notes, rebuilt, self._fetched())
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
        return runners.RunRequest(name, path, kind, inputs, options)

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
        return write_bundle(Path(out), self.facts.path, lock, self.store, sign, interactive)

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


def _removed(wplan):
    from .sync import WorkspaceResult

    return WorkspaceResult(wplan.name, "remove", deleted=len(wplan.files))


def cpu_count() -> int:
    return os.cpu_count() or 2
