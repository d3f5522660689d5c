"""`mlxk import` and `sync --from`: a bundle's blobs checked into the store, and its manifest
and lock written where the local ones do not decide. Nothing but verified blobs is written on
any failure."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import lock as lockfile
from .errors import IntegrityError, LockError, SourceError, UserError
from .lock import Lock
from .manifest_file import LOCK_NAME
from .project import DEFAULT_JOBS, Project
from .settings import Settings

if TYPE_CHECKING:
    from .manifest import Manifest
    from .store import Store


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
    from .manifest import load_manifest

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
