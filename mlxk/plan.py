"""Pure: Lock × disk state × store → Plan. Every action carries the reason it is needed and,
for a file to place, its lock entry and where its bytes come from (uv's planner):

    keep     already on disk and matching
    store    the blob is in the store: only placed
    lock     bytes the lock itself holds (a runtime refs file)
    remote   from the fleet's registry (MLXK_REMOTE / remote:), by digest; sync falls back
             to the source (or the steps) when the registry lacks it
    fetch    from its source (`network` says whether that needs the network)
    build    made again by the workspace's steps (whose missing inputs are fetched: `inputs`)
    missing  none of these can give it now (offline, a source directory gone)

What the store holds and which sources are reachable come in as two functions, so the
planner stays pure; the offline check, the space check, progress totals and `mlxk plan`
all read the plan instead of working it out again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .entries import FileEntry
from .verify import diff_files

ORIGINS = ("keep", "store", "lock", "remote", "fetch", "build", "missing")

# File ops: add / replace / delete / keep. Workspace ops: create / update / remove /
# unchanged / blocked (a directory mlxk does not manage is in the way) / orphan (not in the
# lock, kept unless --prune).
CHANGE_OPS = frozenset({"create", "update", "remove"})


@dataclass(frozen=True)
class FileAction:
    path: str
    op: str
    reason: str
    size: int = 0
    entry: FileEntry | None = None  # the locked file (add, replace, keep)
    origin: str = ""  # one of ORIGINS (add, replace, keep)
    network: bool = False  # fetch: from a source that needs the network
    source: str = ""  # fetch: the source, as the lock describes it

    def to_dict(self) -> dict:
        d = {"path": self.path, "op": self.op, "reason": self.reason, "size": self.size}
        if self.origin:
            d["origin"] = self.origin
        if self.source:
            d["source"] = self.source
        return d


@dataclass(frozen=True)
class WorkspacePlan:
    name: str
    op: str
    reason: str
    files: tuple[FileAction, ...] = ()
    inputs: tuple[FileAction, ...] = ()  # step inputs to fetch before a build

    @property
    def changes(self) -> bool:
        return self.op in CHANGE_OPS

    @property
    def to_write(self) -> tuple[FileAction, ...]:
        """The files sync will place: added or replaced."""
        return tuple(f for f in self.files if f.op in ("add", "replace"))

    def entries_to_write(self, locked=None) -> list[FileEntry]:
        """The locked entries (content and runtime captures) behind `to_write`."""
        return [a.entry for a in self.to_write]

    def bytes_by_origin(self) -> dict[str, int]:
        out = dict.fromkeys(ORIGINS, 0)
        for a in (*self.files, *self.inputs):
            if a.origin:
                out[a.origin] += a.size
        return out

    def missing(self) -> list[FileAction]:
        return [a for a in (*self.to_write, *self.inputs) if a.origin == "missing"]

    @property
    def download_bytes(self) -> int:
        return sum(f.size for f in self.to_write)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "op": self.op,
            "reason": self.reason,
            "files": [f.to_dict() for f in self.files if f.op != "keep"],
            "unchanged_files": sum(1 for f in self.files if f.op == "keep"),
            "inputs": [f.to_dict() for f in self.inputs],
        }


@dataclass(frozen=True)
class Plan:
    workspaces: tuple[WorkspacePlan, ...] = field(default_factory=tuple)

    @property
    def has_changes(self) -> bool:
        return any(w.changes for w in self.workspaces)

    def only(self, names) -> Plan:
        """This plan cut down to the named workspaces."""
        return Plan(tuple(w for w in self.workspaces if w.name in names))

    @property
    def blocked(self) -> list[WorkspacePlan]:
        return [w for w in self.workspaces if w.op == "blocked"]

    def summary(self) -> dict:
        counts = {op: 0 for op in ("create", "update", "remove", "unchanged", "blocked", "orphan")}
        for w in self.workspaces:
            counts[w.op] += 1
        files = {op: 0 for op in ("add", "replace", "delete")}
        for w in self.workspaces:
            for f in w.files:
                if f.op in files:
                    files[f.op] += 1
        by_origin = dict.fromkeys(ORIGINS, 0)
        for w in self.workspaces:
            if w.changes:
                for origin, n in w.bytes_by_origin().items():
                    by_origin[origin] += n
        return {
            "workspaces": counts,
            "files": files,
            "bytes_to_write": sum(w.download_bytes for w in self.workspaces),
            "bytes": {
                "download": self.bytes_fetched(network=True),
                "copy_in": self.bytes_fetched(network=False),
                "build": by_origin["build"],
                "stored": by_origin["store"] + by_origin["lock"],
                "remote": by_origin["remote"],
                "missing": by_origin["missing"],
            },
        }

    def changed(self) -> list[WorkspacePlan]:
        return [w for w in self.workspaces if w.op in ("create", "update")]

    def bytes_fetched(self, network: bool) -> int:
        """Bytes to bring into the store from sources (that need the network, or not)."""
        return sum(
            a.size
            for w in self.changed()
            for a in (*w.to_write, *w.inputs)
            if a.origin == "fetch" and a.network == network
        )

    def bytes_to_store(self) -> int:
        """Bytes that will enter the store: fetched (from the remote or a source) or built."""
        return sum(
            a.size
            for w in self.changed()
            for a in (*w.to_write, *w.inputs)
            if a.origin in ("remote", "fetch", "build")
        )

    def missing(self) -> list[str]:
        """ "workspace/path" of every file to place that nothing can give now."""
        return [f"{w.name}/{a.path}" for w in self.changed() for a in w.missing()]

    def to_dict(self) -> dict:
        return {
            "has_changes": self.has_changes,
            "summary": self.summary(),
            "workspaces": [w.to_dict() for w in self.workspaces],
        }


def _everything(_) -> bool:
    return True


@dataclass(frozen=True)
class Provenance:
    """What the planner may assume about bytes: `have(entry)` the store holds the blob,
    `reachable(pin)` that source can give files now, `remote` the fleet's registry (its
    description) that is asked first for any blob, or "" when there is none."""

    have: object = lambda entry: False
    reachable: object = _everything
    remote: str = ""

    def origin(self, placed) -> tuple[str, bool, str]:
        """(origin, network, source) of one placement of the lock (see lock.Placed)."""
        if placed.data is not None:
            return "lock", False, ""
        if self.have(placed.file):
            return "store", False, ""
        if self.remote:
            return "remote", True, self.remote
        if placed.pin is None:
            return "build", False, ""
        if not self.reachable(placed.pin):
            return "missing", placed.pin.network, placed.pin.describe()
        return "fetch", placed.pin.network, placed.pin.describe()

    def action(self, placed, op: str, reason: str) -> FileAction:
        origin, network, source = self.origin(placed) if op != "keep" else ("keep", False, "")
        f = placed.file
        return FileAction(f.path, op, reason, f.size, f, origin, network, source)

    def inputs(self, locked, actions) -> tuple[FileAction, ...]:
        """A build needs its source files in the store: those it must fetch first."""
        if not any(a.origin == "build" for a in actions):
            return ()
        pin = locked.source
        out = []
        for f in pin.files:
            if self.have(f):
                continue
            origin = "fetch" if self.reachable(pin) else "missing"
            reason = f"input of {locked.name}'s steps"
            out.append(FileAction(f.path, "add", reason, f.size, f, origin, pin.network, ""))
        return tuple(out)


def plan_workspace(
    name: str, locked, state, expected_sentinel: str, prov: Provenance | None = None
) -> WorkspacePlan:
    prov = prov or Provenance()
    placements = {p.file.path: p for p in locked.placements()}
    if not state.exists:
        files = tuple(prov.action(p, "add", "not on disk") for p in placements.values())
        return WorkspacePlan(
            name, "create", "workspace not on disk", files, prov.inputs(locked, files)
        )
    if not state.managed:
        return WorkspacePlan(
            name,
            "blocked",
            f"{state.path} exists and is not an mlxk workspace (no valid .mlxk_workspace.json); "
            "move it away or choose another name",
        )
    diff = diff_files(locked.placed_files, state.files)
    actions = [prov.action(placements[p], "keep", "matches the lock") for p in diff.matching]
    for problem in diff.problems:
        if problem.problem == "extra":
            actions.append(FileAction(problem.path, "delete", problem.detail))
        else:
            op = "add" if problem.problem == "missing" else "replace"
            actions.append(prov.action(placements[problem.path], op, problem.detail))
    actions.sort(key=lambda a: a.path)
    changed = [a for a in actions if a.op != "keep"]
    files = tuple(actions)
    if changed:
        reason = f"{len(changed)} file(s) differ from the lock"
        return WorkspacePlan(name, "update", reason, files, prov.inputs(locked, files))
    if state.sentinel_text != expected_sentinel:
        return WorkspacePlan(name, "update", "sentinel out of date", files)
    return WorkspacePlan(name, "unchanged", "matches the lock", files)


def make_plan(
    lock,
    states: dict,
    sentinels: dict,
    orphans: dict,
    prune: bool = False,
    prov: Provenance | None = None,
) -> Plan:
    """states/sentinels: per locked workspace; orphans: {name: state} of managed dirs under
    home whose workspace is not in the lock; prov: what the store holds, what is reachable."""
    plans = [
        plan_workspace(n, lock.workspaces[n], states[n], sentinels[n], prov)
        for n in sorted(lock.workspaces)
    ]
    for name, state in sorted(orphans.items()):
        if prune:
            files = tuple(
                FileAction(p, "delete", "workspace not in the lock", f.size)
                for p, f in sorted(state.files.items())
            )
            plans.append(WorkspacePlan(name, "remove", "not in the lock (--prune)", files))
        else:
            plans.append(WorkspacePlan(name, "orphan", "not in the lock; kept (--prune removes)"))
    return Plan(tuple(plans))
