"""Rendering: the JSON envelope for --json, rich text and progress for people.

Human text goes to stdout; progress and notes go to stderr, and only when stderr is a terminal
(and never with --json), so piped output stays clean.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from importlib import resources

from .errors import MlxkError


@cache
def output_schema() -> dict:
    return json.loads(resources.files("mlxk").joinpath("schemas/output.schema.json").read_text())


def envelope(command: str, status: str, data=None, error: MlxkError | None = None) -> dict:
    return {
        "status": status,
        "command": command,
        "data": data,
        "error": error.to_dict() if error else None,
    }


def emit_json(doc: dict) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    sys.stdout.flush()


class UI:
    """Progress bars and notes on stderr when it is a terminal; silent otherwise."""

    def __init__(self, json_mode: bool = False, quiet: bool = False):
        self.json_mode = json_mode
        self.interactive = not json_mode and not quiet and sys.stderr.isatty()
        self._progress = None
        self._console = None

    @property
    def console(self):
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True)
        return self._console

    def note(self, message: str) -> None:
        if self.interactive:
            self.console.print(f"[dim]{message}[/dim]")

    def task(self, description: str, total: int):
        if not self.interactive:
            return _Quiet()
        if self._progress is None:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
        task_id = self._progress.add_task(description, total=total)
        return _Task(self._progress, task_id)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class _Quiet:
    def advance(self, n: int) -> None:
        pass


class _Task:
    def __init__(self, progress, task_id):
        self.progress = progress
        self.task_id = task_id

    def advance(self, n: int) -> None:
        self.progress.update(self.task_id, advance=n)


# ---------------------------------------------------------------- human renderers


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


_WS_SIGN = {
    "create": "+",
    "update": "~",
    "remove": "-",
    "unchanged": " ",
    "blocked": "!",
    "orphan": "?",
}
_FILE_SIGN = {"add": "+", "replace": "~", "delete": "-"}


def render_plan(plan) -> str:
    lines = []
    for w in plan.workspaces:
        if w.op == "unchanged":
            continue
        lines.append(f"{_WS_SIGN[w.op]} {w.name}: {w.op} ({w.reason})")
        for f in w.files:
            if f.op in _FILE_SIGN:
                size = f" [{human_size(f.size)}]" if f.op != "delete" else ""
                lines.append(f"    {_FILE_SIGN[f.op]} {f.path}{size}  # {f.reason}")
    s = plan.summary()
    ws, files = s["workspaces"], s["files"]
    if not plan.has_changes:
        lines.append(f"No changes. {ws['unchanged']} workspace(s) match the lock.")
    else:
        lines.append(
            f"Plan: {ws['create']} to create, {ws['update']} to update, {ws['remove']} to remove, "
            f"{ws['unchanged']} unchanged; files: {files['add']} to add, {files['replace']} to "
            f"replace, {files['delete']} to delete ({human_size(s['bytes_to_write'])} to write)."
        )
    return "\n".join(lines)


def render_verify(verification) -> str:
    lines = []
    for w in verification.workspaces:
        mark = "ok" if w.status == "ok" else w.status.upper()
        lines.append(
            f"{mark:9} {w.name} ({w.path}): {w.files_checked} files, {human_size(w.bytes_checked)}"
        )
        for p in w.problems:
            lines.append(f"    {p.problem:10} {p.path}  ({p.detail})")
    n_bad = sum(1 for w in verification.workspaces if w.status != "ok")
    total = len(verification.workspaces)
    lines.append(
        f"Verified: all {total} workspace(s) match the lock."
        if not n_bad
        else f"Drift: {n_bad} of {total} workspace(s) differ from the lock."
    )
    return "\n".join(lines)


def render_lock(result) -> str:
    lines = []
    for name, info in result.to_dict()["workspaces"].items():
        lines.append(
            f"{info['action']:9} {name}: {info['source']}, {info['files']} files, "
            f"{human_size(info['bytes'])}"
        )
    lines.append(f"{'Wrote' if result.written else 'Unchanged:'} mlxk.lock")
    return "\n".join(lines)


def render_sync(report) -> str:
    lines = []
    for r in report.rebuilt:
        same = sum(1 for f in r.files if f["identical"])
        lines.append(
            f"rebuild   {r.name}: {same}/{len(r.files)} outputs byte-identical to the lock"
        )
    if report.locked:
        lines.append(render_lock(report.locked))
    for note in report.notes:
        lines.append(f"note: {note}")
    for w in report.result.workspaces:
        lines.append(
            f"{w.op:9} {w.name}: +{w.added} ~{w.replaced} -{w.deleted} ={w.kept} "
            f"({human_size(w.bytes_written)} written)"
        )
    unchanged = [w.name for w in report.plan.workspaces if w.op == "unchanged"]
    orphans = [w.name for w in report.plan.workspaces if w.op == "orphan"]
    if orphans:
        lines.append(f"kept (not in the lock; --prune removes): {', '.join(orphans)}")
    lines.append(f"Synced: {len(report.result.workspaces)} changed, {len(unchanged)} up to date.")
    return "\n".join(lines)


def render_bundle(report, verb: str) -> str:
    lines = [
        f"{verb} {report.path} ({report.format}): {report.blobs} blobs, "
        f"{human_size(report.bytes)}, workspaces: {', '.join(report.workspaces)}"
    ]
    for p in report.problems:
        lines.append(f"    {p['problem']:10} {p['blob']}  {p.get('detail', '')}".rstrip())
    if report.problems:
        lines.append(f"Bundle does not match its lock: {len(report.problems)} problem(s).")
    return "\n".join(lines)
