"""Rendering: the JSON envelope for --json, rich text and progress for people.

Human text goes to stdout; progress and notes go to stderr, and only when stderr is a terminal
(and never with --json), so piped output stays clean.
"""

from __future__ import annotations

import json
import sys
from functools import cache

from .errors import MlxkError


@cache
def output_schema() -> dict:
    from importlib import resources  # only for the schema: keep it off the start-up path

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

    def warn(self, message: str) -> None:
        """Something a person must see even when output is piped (never with --json)."""
        if not self.json_mode:
            sys.stderr.write(message + "\n")
            sys.stderr.flush()

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
    """Sizes in text output: SI units (1 kB = 1000 bytes), as the progress bars show them;
    `--json` always gives bytes."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
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
                size = f" [{human_size(f.size)}, {f.origin}]" if f.op != "delete" else ""
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
        lines.append(_bytes_line(s["bytes"]))
    return "\n".join(lines)


def _bytes_line(b: dict) -> str:
    """Where the bytes to write come from, as `mlxk plan` shows it."""
    parts = [
        f"{human_size(b['download'])} to download",
        f"{human_size(b['build'])} to build",
        f"{human_size(b['stored'])} already stored",
    ]
    if b["copy_in"]:
        parts.insert(1, f"{human_size(b['copy_in'])} to copy in from local sources")
    if b.get("remote"):
        parts.insert(0, f"{human_size(b['remote'])} from the remote registry")
    if b["missing"]:
        parts.append(f"{human_size(b['missing'])} not to be had now")
    return "Bytes: " + ", ".join(parts) + "."


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
    lines += [f"note: {n}" for n in result.notes()]
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


def render_push(report) -> str:
    lines = []
    for w in report.workspaces:
        b = w.blobs
        tags = ", ".join(w.tags) or "(by digest only)"
        lines.append(f"pushed    {w.name}: {w.repository}@{w.digest}")
        lines.append(
            f"    tags {tags}; {w.files} files, {human_size(w.bytes)}; blobs: {b['uploaded']} "
            f"uploaded ({human_size(b['bytes_sent'])} sent), {b['existing']} already there, "
            f"{b['mounted']} mounted"
            + (f", {human_size(b['resumed_bytes'])} resumed" if b["resumed_bytes"] else "")
        )
        for tag in w.kept_tags:
            lines.append(f"    kept {tag}: it names another artifact with the same content")
    lines.append(f"Pushed {len(report.workspaces)} workspace(s) to {report.registry}.")
    return "\n".join(lines)


def render_bundle(report, verb: str) -> str:
    verb = verb if not report.problems else "FAILED"
    lines = [
        f"{verb} {report.path} ({report.format}): {report.blobs} blobs, "
        f"{human_size(report.bytes)}, workspaces: {', '.join(report.workspaces)}"
    ]
    written = verb == "wrote"
    lines.append(report.signature.describe(written) if report.signature else "not signed")
    for p in report.problems:
        lines.append(f"    {p['problem']:10} {p['blob']}  {p.get('detail', '')}".rstrip())
    if report.problems:
        lines.append(f"Bundle does not match its lock: {len(report.problems)} problem(s).")
    if report.coverage is not None:
        lines += _coverage_lines(report.coverage)
    return "\n".join(lines)


def _coverage_lines(cov) -> list[str]:
    if cov.complete:
        return [f"carries every blob {cov.lock} needs ({cov.needed})"]
    lines = [f"MISSING for {cov.lock}: {len(cov.missing)} of the {cov.needed} blobs it needs"]
    for m in cov.missing:
        lines.append(
            f"    missing    {m['workspace']}/{m['path']}  ({m['sha256'][:12]}, {m['size']} B)"
        )
    return lines


def _short(value) -> str:
    text = str(value)
    if text.startswith("sha256:"):
        return text[:19] + "…"
    return text[:12] if len(text) == 40 else text


def change_line(c, kept: bool = False) -> str:
    """One workspace that differs between two locks (lock.WorkspaceChange), before → after;
    `kept`: the before side (the local lock) stayed."""
    if c.change == "added":
        how = "only in the bundle's lock" if kept else "added"
        return f"    + {c.workspace}: {c.after['source']} ({how})"
    if c.change == "removed":
        how = "not in the bundle's lock" if kept else "removed"
        return f"    - {c.workspace}: {c.before['source']} ({how})"
    parts = [
        f"{key.replace('_', ' ')} {_short(c.before[key])} → {_short(c.after[key])}"
        for key in c.differs
        if key != "spec"
    ]
    return f"    ~ {c.workspace}: " + ("; ".join(parts) or "steps or filters differ")


def render_import(result) -> str:
    """`mlxk import` (and the first lines of `sync --from`)."""
    lines = [render_bundle(result.report, "imported")]
    name = result.manifest.name
    if result.action == "kept":
        lines.append(
            f"kept {name} and mlxk.lock: the local lock decides; {result.report.blobs} blob(s) "
            f"it needs checked in from the bundle, {result.stored} already in the store, "
            f"{result.extra_blobs} other blob(s) in the bundle ignored"
        )
        if result.changes:
            lines.append(
                f"the bundle's lock differs from the local mlxk.lock in "
                f"{len(result.changes)} workspace(s) (local → bundle); the local lock was kept:"
            )
    elif result.action == "replaced":
        what = " and ".join(result.written) or "nothing (the files were the same)"
        lines.append(f"replaced with the bundle's (--force): {what}")
        if result.changes:
            lines.append(f"the lock changed in {len(result.changes)} workspace(s):")
    else:
        lines.append(f"Wrote {' and '.join(result.written) or 'nothing'} from the bundle")
    lines += [change_line(c, result.action == "kept") for c in result.changes]
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def render_list(infos, full_paths: bool) -> str:
    if not infos:
        return "No workspaces (none in the manifest, none under $MLXK_WORKSPACE_HOME)."
    rows = [["NAME", "SOURCE", "ORIGIN", "SIZE", "TYPE", "STATE"]]
    for i in infos:
        rows.append(
            [
                str(i.path) if full_paths else i.name,
                i.source,
                i.origin or "-",
                human_size(i.size) if i.state != "missing" else "-",
                i.type or "-",
                i.state,
            ]
        )
    return _table(rows)


def render_show(info, with_files: bool) -> str:
    lines = [
        f"Workspace: {info.name}",
        f"  Path: {info.path}",
        f"  Source: {info.source} ({info.origin or '-'})",
        f"  Operation: {info.operation or '-'}",
        f"  Revision: {info.revision or '-'}",
        f"  Commit: {info.commit or '-'}",
        f"  Type: {info.type or '-'}",
        f"  Size: {human_size(info.size)}",
        f"  Content Hash: {info.content_hash or '-'}",
        f"  State: {info.state}",
        f"  Modified: {'yes' if info.state == 'modified' else 'no'}",
    ]
    for n, st in enumerate(info.steps, 1):
        lines.append(
            f"  Step {n}: {st.get('kind')} {json.dumps(st.get('params'))} via "
            f"{st.get('converter')} (fingerprint {str(st.get('fingerprint'))[:19]}…)"
        )
    for r in info.runtime:
        size = f", {r['files']} files, {human_size(r['size'])}" if "size" in r else ""
        lines.append(f"  Runtime: hf://{r['repo']}@{r['revision']} ({r['commit'][:12]}){size}")
    lines += _provenance_lines(info.provenance)
    if with_files:
        rows = [["STATUS", "SIZE", "SHA256", "PATH"]]
        for f in info.files:
            rows.append([f["status"], str(f["size"]), (f["hash"] or "-")[7:19], f["path"]])
        lines.append(_table(rows))
    return "\n".join(lines)


def _provenance_lines(prov: dict | None) -> list[str]:
    """`show` for a workspace pulled from an artifact `mlxk push` made: how it was made."""
    if not prov:
        return []
    src = prov.get("source") if isinstance(prov.get("source"), dict) else {}
    lines = [f"  Pushed from: workspace {prov.get('workspace', '-')}, {prov.get('origin', '-')}"]
    if src.get("commit"):
        lines.append(f"  Pushed source commit: {src['commit']}")
    lines.append(f"  Pushed content hash: {prov.get('content_hash', '-')}")
    for n, st in enumerate(prov.get("steps") or [], 1):
        if isinstance(st, dict):
            tools = ", ".join(f"{k} {v}" for k, v in sorted((st.get("tools") or {}).items()))
            lines.append(
                f"  Pushed step {n}: {st.get('kind')} {json.dumps(st.get('params'))} via "
                f"{st.get('converter')} (fingerprint {str(st.get('fingerprint'))[:19]}…; {tools})"
            )
    for r in prov.get("runtime") or []:
        if isinstance(r, dict):
            lines.append(f"  Pushed runtime: hf://{r.get('repo')}@{r.get('revision')}")
    return lines


def render_health(reports) -> str:
    lines = []
    for name, r in reports:
        lines.append(
            f"{'ok' if r.ok else 'PROBLEMS':9} {name} ({r.path}): {r.kind or '?'}"
            f" {r.model_type or ''}".rstrip()
        )
        for p in r.problems:
            lines.append(f"    {p.check:12} {p.message}")
        if r.hf_cache is not None:
            lines += render_hf_cache(r.hf_cache)
    bad = sum(1 for _, r in reports if not r.ok)
    lines.append("Healthy." if not bad else f"{bad} of {len(reports)} workspace(s) have problems.")
    if any(p.check == "exists" for _, r in reports for p in r.problems):
        lines.append("hint: a workspace that does not exist yet is made by `mlxk sync`")
    return "\n".join(lines)


def render_gc(report) -> str:
    verb = "would free" if report.dry_run else "freed"
    young = ""
    if report.young:
        young = f" ({report.young} unreferenced but younger than {report.grace:g} s)"
    lines = [
        f"{verb} {human_size(report.freed_bytes)} ({report.removed} blobs); kept "
        f"{report.kept + report.young} blobs, {human_size(report.kept_bytes)}, for "
        f"{len(report.locks)} lock(s){young}"
    ]
    lines += [f"forgot {f['lock']}: {f['reason']}" for f in report.forgotten]
    return "\n".join(lines)


def render_clone(result) -> str:
    return (
        f"cloned hf://{result.repo}@{result.revision} ({result.commit[:12]}) into "
        f"{result.path}: {result.files} files, {human_size(result.bytes)}\n"
        f"content hash {result.content_hash}"
    )


def render_run(out: dict) -> str:
    """What a run produced: the text, the transcript, or where the speech went."""
    if out["kind"] == "tts":
        return (
            f"wrote {out['output']}: {out['duration_seconds']} s of audio at "
            f"{out['sample_rate']} Hz ({out['samples']} samples)"
        )
    return out["text"]


def render_capture(result) -> str:
    lines = [render_run(result.run)] if result.run else []
    if not result.captured:
        lines.append(
            f"capture {result.workspace}: nothing new: {result.command[0]} downloaded no hub "
            "file that runtime: does not hold already; nothing changed"
        )
        return "\n".join(lines)
    for c in result.captured:
        lines.append(
            f"{c.action:9} {result.workspace}: hf://{c.repo}@{c.revision} ({c.commit[:12]}): "
            + (", ".join(c.files) or "no new files")
        )
    lines.append(
        f"Wrote {result.manifest} and mlxk.lock; placed {result.placed} file(s) from the store in "
        f"{result.workspace}/.hf_cache"
    )
    return "\n".join(lines)


def render_hf_cache(entries) -> list[str]:
    """`health --verbose`: a workspace's .hf_cache, one line per repo snapshot."""
    if not entries:
        return ["    .hf_cache    (empty)"]
    return [
        f"    .hf_cache    {e['repo']}@{','.join(e['refs']) or e['commit'][:12]} "
        f"({e['commit'][:12]}): {len(e['files'])} file(s), "
        + ("declared" if e["declared"] else "NOT declared in runtime:")
        for e in entries
    ]
