"""Manifest + old lock + sources → new Lock. Pure but for the source calls (via a Fetcher).

Like pip-tools: existing pins are kept unless the workspace's spec changed or an upgrade is
asked for; only then is a revision re-resolved against the hub.
"""

from __future__ import annotations

from dataclasses import dataclass

from .entries import workspace_content_hash
from .errors import SourceError, UserError
from .lock import Lock, LockedRuntime, LockedWorkspace
from .manifest import Manifest, WorkspaceSpec
from .sources import Pin


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


def stale_reasons(manifest: Manifest, lock: Lock | None) -> list[str]:
    """Why the lock does not describe the manifest (empty when it does)."""
    if lock is None:
        return ["no lock file"]
    if lock.manifest_digest == manifest.digest():
        return []
    reasons = []
    for name, spec in sorted(manifest.workspaces.items()):
        locked = lock.workspaces.get(name)
        if locked is None:
            reasons.append(f"{name}: not in the lock")
        elif locked.spec_digest != spec.digest():
            reasons.append(f"{name}: changed in the manifest since it was locked")
    reasons += [
        f"{n}: in the lock but not in the manifest"
        for n in sorted(lock.workspaces)
        if n not in manifest.workspaces
    ]
    return reasons or ["manifest digest differs"]


def resolve_runtime(spec: WorkspaceSpec, fetcher, jobs: int) -> tuple[LockedRuntime, ...]:
    out = []
    for i, dep in enumerate(spec.runtime):
        label = f"{spec.where}: workspaces.{spec.name}.runtime[{i}]"
        try:
            pin = dep.source.pin(fetcher, dep.include, dep.exclude, label, jobs)
        except SourceError as e:
            if e.message.startswith(label):
                raise
            raise SourceError(f"{label}: {e.message}", hint=e.hint) from None
        out.append(LockedRuntime(pin))
    return tuple(out)


def resolve_workspace(spec: WorkspaceSpec, fetcher, builder, jobs: int = 4) -> LockedWorkspace:
    label = f"{spec.where}: workspaces.{spec.name}"
    source = spec.source.pin(fetcher, spec.include, spec.exclude, label, jobs)
    return with_steps(spec, source, builder, runtime=resolve_runtime(spec, fetcher, jobs))


def with_steps(spec: WorkspaceSpec, source: Pin, builder, reuse=(), runtime=()):
    """The locked workspace: its source, then its steps run (or reused) on it."""
    steps = builder.build(spec.steps, source, spec.name, reuse=reuse) if spec.steps else ()
    final = steps[-1].files if steps else source.files
    return LockedWorkspace(
        name=spec.name,
        spec_digest=spec.digest(),
        source=source,
        content_hash=workspace_content_hash(final),
        steps=steps,
        runtime=runtime,
    )


def steps_outdated(lock: Lock) -> list[str]:
    """Workspaces whose locked steps were made by other tool versions than installed now."""
    from .build import is_current

    return [
        f"{name}: step {i + 1} was built with {step.tools}; installed tools differ"
        for name, ws in sorted(lock.workspaces.items())
        for i, step in enumerate(ws.steps)
        if not is_current(step)
    ]


def resolve(
    manifest: Manifest,
    old: Lock | None,
    fetcher,
    builder,
    upgrade: bool | frozenset[str] = False,
    jobs: int = 4,
    on_workspace=None,
) -> tuple[Lock, dict[str, str]]:
    """Return the new lock and, per workspace, what happened: kept / resolved / upgraded."""
    unknown = set(upgrade) - set(manifest.workspaces) if isinstance(upgrade, frozenset) else ()
    if unknown:
        raise UserError(
            f"--upgrade: no workspace named {', '.join(sorted(unknown))} in the manifest",
            hint=f"workspaces: {', '.join(sorted(manifest.workspaces)) or 'none'}",
        )
    workspaces = {}
    actions = {}
    for name, spec in sorted(manifest.workspaces.items()):
        wanted = upgrade is True or (isinstance(upgrade, frozenset) and name in upgrade)
        prev = old.workspaces.get(name) if old else None
        if prev is not None and prev.spec_digest == spec.digest() and not wanted:
            ws = prev
            if spec.steps:
                ws = with_steps(spec, prev.source, builder, prev.steps, prev.runtime)
            workspaces[name] = ws
            actions[name] = "kept" if ws == prev else "rebuilt"
            continue
        if on_workspace:
            on_workspace(name)
        ws = resolve_workspace(spec, fetcher, builder, jobs=jobs)
        workspaces[name] = ws
        if prev is None or prev.spec_digest != spec.digest():
            actions[name] = "resolved"
        else:
            actions[name] = "upgraded" if ws.to_dict() != prev.to_dict() else "unchanged"
    return Lock(manifest_digest=manifest.digest(), workspaces=workspaces), actions
