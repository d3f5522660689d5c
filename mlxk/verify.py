"""Pure comparison of what the lock says with what a scan found. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field

from .lock import FileEntry


@dataclass(frozen=True)
class FileProblem:
    path: str
    problem: str  # "missing" | "extra" | "modified" | "not_a_file"
    detail: str

    def to_dict(self) -> dict:
        return {"path": self.path, "problem": self.problem, "detail": self.detail}


@dataclass(frozen=True)
class FileDiff:
    matching: tuple[str, ...] = ()
    problems: tuple[FileProblem, ...] = ()

    def of(self, kind: str) -> list[FileProblem]:
        return [p for p in self.problems if p.problem == kind]


def diff_files(expected: tuple[FileEntry, ...], actual: dict) -> FileDiff:
    """Locked files vs scanned files ({path: DiskFile}): per-file problems, sorted by path."""
    matching = []
    problems = []
    want = {f.path: f for f in expected}
    for path in sorted(set(want) | set(actual)):
        exp, got = want.get(path), actual.get(path)
        if got is None:
            problems.append(FileProblem(path, "missing", f"not on disk ({exp.size} bytes locked)"))
        elif exp is None:
            problems.append(FileProblem(path, "extra", f"not in the lock ({got.size} bytes)"))
        elif got.kind != "file":
            problems.append(FileProblem(path, "not_a_file", f"is a {got.kind}, locked a file"))
        elif got.size != exp.size:
            problems.append(FileProblem(path, "modified", f"size {got.size}, locked {exp.size}"))
        elif got.hash != exp.hash:
            problems.append(
                FileProblem(path, "modified", f"sha256 {got.hash[7:19]}…, locked {exp.hex[:12]}…")
            )
        else:
            matching.append(path)
    return FileDiff(matching=tuple(matching), problems=tuple(problems))


@dataclass(frozen=True)
class WorkspaceReport:
    name: str
    path: str
    status: str  # "ok" | "drift" | "missing" | "unmanaged"
    problems: tuple[FileProblem, ...] = ()
    files_checked: int = 0
    bytes_checked: int = 0

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "path": self.path,
            "status": self.status,
            "files_checked": self.files_checked,
            "bytes_checked": self.bytes_checked,
            "problems": [p.to_dict() for p in self.problems],
        }


@dataclass(frozen=True)
class Verification:
    workspaces: tuple[WorkspaceReport, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(w.status == "ok" for w in self.workspaces)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "workspaces": [w.to_dict() for w in self.workspaces],
            "summary": {
                s: sum(1 for w in self.workspaces if w.status == s)
                for s in ("ok", "drift", "missing", "unmanaged")
            },
        }


def verify_workspace(name: str, locked, state, expected_sentinel: str, shown_path: str):
    """One workspace's report: every file problem, and a sentinel that is not what sync wrote."""
    if not state.exists:
        return WorkspaceReport(name, shown_path, "missing")
    if not state.managed:
        return WorkspaceReport(
            name,
            shown_path,
            "unmanaged",
            (FileProblem(".mlxk_workspace.json", "missing", "no valid mlxk sentinel"),),
        )
    diff = diff_files(locked.placed_files, state.files)
    problems = list(diff.problems)
    if state.sentinel_text != expected_sentinel:
        problems.append(
            FileProblem(".mlxk_workspace.json", "modified", "sentinel differs from the lock")
        )
    return WorkspaceReport(
        name,
        shown_path,
        "drift" if problems else "ok",
        tuple(problems),
        files_checked=len(state.files),
        bytes_checked=sum(f.size for f in state.files.values()),
    )
