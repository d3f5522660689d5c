"""Pure: Lock × disk state → Plan. Every action carries the reason it is needed."""

from __future__ import annotations

from dataclasses import dataclass, field

from .verify import diff_files

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

    def to_dict(self) -> dict:
        return {"path": self.path, "op": self.op, "reason": self.reason, "size": self.size}


@dataclass(frozen=True)
class WorkspacePlan:
    name: str
    op: str
    reason: str
    files: tuple[FileAction, ...] = ()

    @property
    def changes(self) -> bool:
        return self.op in CHANGE_OPS

    @property
    def to_write(self) -> tuple[FileAction, ...]:
        """The files sync will place: added or replaced."""
        return tuple(f for f in self.files if f.op in ("add", "replace"))

    def entries_to_write(self, locked) -> list:
        """The locked entries (content and runtime captures) behind `to_write`."""
        wanted = {a.path for a in self.to_write}
        return [f for f in locked.placed_files if f.path in wanted]

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
        }


@dataclass(frozen=True)
class Plan:
    workspaces: tuple[WorkspacePlan, ...] = field(default_factory=tuple)

    @property
    def has_changes(self) -> bool:
        return any(w.changes for w in self.workspaces)

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
        return {
            "workspaces": counts,
            "files": files,
            "bytes_to_write": sum(w.download_bytes for w in self.workspaces),
        }

    def to_dict(self) -> dict:
        return {
            "has_changes": self.has_changes,
            "summary": self.summary(),
            "workspaces": [w.to_dict() for w in self.workspaces],
        }


def plan_workspace(name: str, locked, state, expected_sentinel: str) -> WorkspacePlan:
    if not state.exists:
        files = tuple(FileAction(f.path, "add", "not on disk", f.size) for f in locked.placed_files)
        return WorkspacePlan(name, "create", "workspace not on disk", files)
    if not state.managed:
        return WorkspacePlan(
            name,
            "blocked",
            f"{state.path} exists and is not an mlxk workspace (no valid .mlxk_workspace.json); "
            "move it away or choose another name",
        )
    diff = diff_files(locked.placed_files, state.files)
    by_path = {f.path: f for f in locked.placed_files}
    actions = [FileAction(p, "keep", "matches the lock", by_path[p].size) for p in diff.matching]
    for problem in diff.problems:
        if problem.problem == "missing":
            actions.append(
                FileAction(problem.path, "add", problem.detail, by_path[problem.path].size)
            )
        elif problem.problem == "extra":
            actions.append(FileAction(problem.path, "delete", problem.detail))
        else:
            actions.append(
                FileAction(problem.path, "replace", problem.detail, by_path[problem.path].size)
            )
    actions.sort(key=lambda a: a.path)
    changed = [a for a in actions if a.op != "keep"]
    if changed:
        return WorkspacePlan(
            name, "update", f"{len(changed)} file(s) differ from the lock", tuple(actions)
        )
    if state.sentinel_text != expected_sentinel:
        return WorkspacePlan(name, "update", "sentinel out of date", tuple(actions))
    return WorkspacePlan(name, "unchanged", "matches the lock", tuple(actions))


def make_plan(lock, states: dict, sentinels: dict, orphans: dict, prune: bool = False) -> Plan:
    """states/sentinels: per locked workspace; orphans: {name: state} of managed dirs under
    home whose workspace is not in the lock."""
    plans = [
        plan_workspace(n, lock.workspaces[n], states[n], sentinels[n])
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
