"""Running a workspace's steps: locked source snapshot → convert → outputs into the store.

A step runs on a local snapshot of its exact input files (hardlinked from the store), into a
fresh directory, through steps/convert.py's hermetic worker; every output is hashed into the
store and recorded. A step whose fingerprint (params, converter, tool versions, input digest)
is unchanged is not rerun.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass

from .entries import FileEntry, workspace_content_hash
from .errors import IntegrityError
from .lock import LockedStep, LockedWorkspace
from .sources import Pin
from .workspace import walk


def _convert():
    """steps.convert, imported on first use (it reads package metadata)."""
    from .steps import convert

    return convert


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
    convert = _convert()
    try:
        tools = convert.tool_versions(step.converter)
    except convert.ConverterMissing:
        return False
    return convert.fingerprint(step.params, step.converter, tools, step.input_digest) == (
        step.fingerprint
    )


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

    # ------------------------------------------------------------ pieces
    def _config(self, files: tuple[FileEntry, ...], what: str) -> dict:
        entry = next((f for f in files if f.path == "config.json"), None)
        if entry is None:
            raise _convert().ConvertFailed(f"{what}: no config.json in the step's input")
        return json.loads(self.store.blob_path(entry.hex).read_text(encoding="utf-8"))

    def run_step(self, kind: str, params: dict, inputs, what: str) -> LockedStep:
        convert = _convert()
        converter, options = convert.detect(self._config(inputs, what))
        tools = convert.tool_versions(converter)
        fp = convert.fingerprint(params, converter, tools, workspace_content_hash(inputs))
        if self.ui:
            self.ui.note(
                f"{what}: converting with {converter} {tools[convert.CONVERTERS[converter][0]]}"
            )
        work = self.store.tmp / f"build-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        in_dir, out_dir = work / "in", work / "out"
        try:
            for f in inputs:
                self.store.materialize(f.hex, in_dir / f.path, link="hardlink")
            log = self.store.root / "logs" / f"convert-{fp.removeprefix('sha256:')[:16]}.log"
            convert.run_convert(
                in_dir, out_dir, params, converter, what, options, log, self.fetcher.settings
            )
            outputs = []
            for rel, (kind_, _) in sorted(walk(out_dir).items()):
                if kind_ != "file":
                    raise convert.ConvertFailed(f"{what}: converter wrote a {kind_} at {rel}")
                size, digest = self.store.adopt(out_dir / rel)
                outputs.append(FileEntry(path=rel, size=size, hash=digest))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        files = tuple(outputs)
        return LockedStep(
            kind=kind,
            params=params,
            converter=converter,
            tools=tools,
            input_digest=workspace_content_hash(inputs),
            fingerprint=fp,
            files=files,
            output_digest=workspace_content_hash(files),
        )

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
            built = self.run_step(step.kind, step.params, inputs, f"{ws.name} step {i + 1}")
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
