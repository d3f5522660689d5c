"""Running a workspace's steps: locked source snapshot → step kind → outputs into the store.

A step runs on a local snapshot of its exact input files (hardlinked from the store), into a
fresh directory, through its kind's hermetic runner (steps/); every output is hashed into the
store and recorded. A step whose fingerprint (kind, params, runner, tool versions, input
digest) is unchanged is not rerun: reused from the previous lock, or from the store's run
cache when any project on this machine built it before.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass

from . import steps
from .entries import FileEntry, workspace_content_hash
from .errors import IntegrityError
from .lock import LockedStep, LockedWorkspace
from .runcache import RunCache
from .sources import Pin
from .steps import ConvertFailed
from .workspace import walk


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_current(step: LockedStep) -> bool:
    """Whether a locked step would get the same fingerprint with the tools installed now."""
    return steps.kind(step.kind).is_current(step)


@dataclass(frozen=True)
class RebuildReport:
    name: str
    files: tuple[dict, ...]  # {path, locked, built, identical}

    @property
    def identical(self) -> bool:
        return all(f["identical"] for f in self.files)

    def to_dict(self) -> dict:
        return {"name": self.name, "identical": self.identical, "files": list(self.files)}


class Builder:
    def __init__(self, store, fetcher, ui=None):
        self.store = store
        self.fetcher = fetcher
        self.ui = ui
        self.runs = RunCache(store.root)

    # ------------------------------------------------------------ pieces
    def _config(self, files: tuple[FileEntry, ...], what: str) -> dict:
        entry = next((f for f in files if f.path == "config.json"), None)
        if entry is None:
            raise ConvertFailed(f"{what}: no config.json in the step's input")
        return json.loads(self.store.blob_path(entry.hex).read_text(encoding="utf-8"))

    def run_step(self, kind: str, params: dict, inputs, what: str, reuse: bool = True):
        """One step on `inputs`: reused from the run cache when this machine built the same
        fingerprint before (and its outputs are all in the store), else run."""
        step_kind = steps.kind(kind)
        recipe = step_kind.prepare(params, self._config(inputs, what), what)
        digest = workspace_content_hash(inputs)
        fp = step_kind.fingerprint(params, recipe.runner, recipe.tools, digest)
        files = self.runs.get(fp) if reuse else None
        if files is None or not all(self.store.check(f.hex, f.size) for f in files):
            if self.ui:
                self.ui.note(f"{what}: {step_kind.describe(recipe)}")
            files = self._run(step_kind, params, recipe, inputs, what, fp)
            self.runs.put(fp, files)
        elif self.ui:
            self.ui.note(f"{what}: reused from the run cache")
        return LockedStep(
            kind=kind,
            params=params,
            converter=recipe.runner,
            tools=recipe.tools,
            input_digest=digest,
            fingerprint=fp,
            files=files,
            output_digest=workspace_content_hash(files),
        )

    def _run(self, step_kind, params, recipe, inputs, what: str, fp: str):
        """Run the step on a snapshot of its inputs; every output is hashed into the store."""
        work = self.store.tmp / f"build-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        in_dir, out_dir = work / "in", work / "out"
        try:
            for f in inputs:
                self.store.materialize(f.hex, in_dir / f.path, link="hardlink")
            log = self.store.root / "logs" / f"{step_kind.name}-{fp[7:23]}.log"
            step_kind.run(in_dir, out_dir, params, recipe, what, log, self.fetcher.settings)
            outputs = []
            for rel, (kind_, _) in sorted(walk(out_dir).items()):
                if kind_ != "file":
                    raise ConvertFailed(f"{what}: the step wrote a {kind_} at {rel}")
                size, digest = self.store.adopt(out_dir / rel)
                outputs.append(FileEntry(path=rel, size=size, hash=digest))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return tuple(outputs)

    def _ensure_inputs(self, source: Pin) -> None:
        for entry in source.files:
            self.fetcher.ensure(source, entry)

    def clean_stale(self) -> list[str]:
        """Remove build directories left by processes that died (kill -9 mid-convert)."""
        notes = []
        for work in self.store.tmp.glob("build-*") if self.store.tmp.is_dir() else ():
            pid = work.name.split("-")[1]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(work, ignore_errors=True)
                notes.append(f"removed a build left by process {pid}")
        return notes

    # ------------------------------------------------------------ whole workspaces
    def build(self, steps, source: Pin, what: str, reuse=()) -> tuple[LockedStep, ...]:
        """Run (or reuse, when its fingerprint is unchanged) every step; returns them locked.

        `steps` are manifest Steps; `reuse` the previously locked steps of this workspace.
        Source files are fetched only if a step has to run.
        """
        inputs = source.files
        fetched = False
        out = []
        for i, step in enumerate(steps):
            prev = reuse[i] if i < len(reuse) else None
            if (
                prev is not None
                and prev.params == step.params
                and prev.input_digest == workspace_content_hash(inputs)
                and is_current(prev)
            ):
                out.append(prev)
                inputs = prev.files
                continue
            if not fetched:
                self._ensure_inputs(source)
                fetched = True
            if i > 0:
                self.ensure_files(out[-1].files, f"{what} step {i}")
            locked = self.run_step(step.kind, step.params, inputs, f"{what} step {i + 1}")
            out.append(locked)
            inputs = locked.files
        return tuple(out)

    def ensure_files(self, files, what: str) -> None:
        missing = [f.path for f in files if not self.store.check(f.hex, f.size)]
        if missing:
            raise IntegrityError(
                f"{what}: outputs missing from the store: {', '.join(missing)}",
                hint="rebuild with `mlxk lock --upgrade NAME`",
            )

    def rebuild(self, ws: LockedWorkspace) -> RebuildReport:
        """Run every step again from the locked source and compare each output with the lock."""
        self._ensure_inputs(ws.source)
        inputs = ws.source.files
        rows = []
        for i, step in enumerate(ws.steps):
            what = f"{ws.name} step {i + 1}"
            built = self.run_step(step.kind, step.params, inputs, what, reuse=False)
            got = {f.path: f for f in built.files}
            for path in sorted(set(got) | {f.path for f in step.files}):
                want = next((f for f in step.files if f.path == path), None)
                have = got.get(path)
                rows.append(
                    {
                        "step": i,
                        "path": path,
                        "locked": want.hash if want else None,
                        "built": have.hash if have else None,
                        "identical": bool(want and have and want.hash == have.hash),
                    }
                )
            inputs = step.files  # later steps run on the locked bytes, as sync would
        return RebuildReport(ws.name, tuple(rows))

    def ensure_outputs(self, ws: LockedWorkspace, entries) -> None:
        """Make the locked outputs present in the store, rebuilding if any is missing; a
        rebuilt output whose bytes differ from the lock is an error naming each file."""
        if all(self.store.check(e.hex, e.size) for e in entries):
            return
        report = self.rebuild(ws)
        moved = [r for r in report.files if not r["identical"]]
        if moved:
            names = ", ".join(
                f"{r['path']} (locked {str(r['locked'])[7:19]}…, built {str(r['built'])[7:19]}…)"
                for r in moved
            )
            raise IntegrityError(
                f"{ws.name}: rebuilt outputs differ from the lock: {names}",
                hint="the converter or its inputs changed; run `mlxk lock` to accept new "
                "bytes, or install the tool versions the lock names",
            )
