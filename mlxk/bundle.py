"""Bundles: a lock, its manifest and every blob the lock names, to carry across an air gap.

A bundle is a directory, or one uncompressed .tar with the same members (deterministic: sorted
members, zero mtimes and owners, so the same lock and store give byte-identical bundles):

    bundle.json                      {"bundle_version", "manifest_name", "lock_sha256", "blobs"}
    <manifest name, e.g. models.yaml>
    mlxk.lock
    blobs/sha256/<2 hex>/<64 hex>

Nothing is trusted on the way in: `import` hashes every blob before it enters the store, and
only a bundle whose every blob matches its lock is accepted.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import lock as lockfile
from .errors import DiskError, IntegrityError, UserError
from .hashing import CHUNK, canonical_json
from .lock import Lock
from .manifest import LOCK_NAME
from .store import Store

BUNDLE_VERSION = 1
INDEX = "bundle.json"
_BLOB = re.compile(r"^blobs/sha256/([0-9a-f]{2})/([0-9a-f]{64})$")
BUNDLE_HINT = "a bundle is a directory or .tar written by `mlxk bundle`; check the path"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.ya?ml$")


def lock_blobs(lock: Lock) -> dict[str, int]:
    """{sha256 hex: size} of every file the lock names: sources, step outputs, runtime."""
    out: dict[str, int] = {}
    for ws in lock.workspaces.values():
        entries = list(ws.source.files)
        for step in ws.steps:
            entries += step.files
        entries += ws.placed_files
        for f in entries:
            out[f.hex] = f.size
    return dict(sorted(out.items()))


def _blob_name(hexdigest: str) -> str:
    return f"blobs/sha256/{hexdigest[:2]}/{hexdigest}"


@dataclass
class BundleReport:
    path: str
    format: str  # "dir" | "tar"
    blobs: int = 0
    bytes: int = 0
    workspaces: list[str] = field(default_factory=list)
    problems: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "format": self.format,
            "ok": self.ok,
            "blobs": self.blobs,
            "bytes": self.bytes,
            "workspaces": self.workspaces,
            "problems": self.problems,
        }


# ---------------------------------------------------------------- writing


def write_bundle(out: Path, manifest_path: Path, lock: Lock, store: Store) -> BundleReport:
    """Write a bundle of `lock` (every blob checked in the store first) to a dir or a .tar."""
    blobs = lock_blobs(lock)
    missing = [h for h, size in blobs.items() if not store.check(h, size)]
    if missing:
        raise UserError(
            f"bundle: {len(missing)} blob(s) the lock names are not in the store "
            f"({store.root}): {', '.join(h[:12] for h in missing[:5])}",
            hint="run `mlxk sync` first so every file is fetched and built",
        )
    lock_text = lockfile.dumps(lock)
    index = {
        "bundle_version": BUNDLE_VERSION,
        "manifest_name": manifest_path.name,
        "lock_sha256": hashlib.sha256(lock_text.encode()).hexdigest(),
        "blobs": [{"sha256": h, "size": s} for h, s in blobs.items()],
    }
    members = {
        INDEX: canonical_json(index).encode(),
        manifest_path.name: manifest_path.read_bytes(),
        LOCK_NAME: lock_text.encode(),
    }
    is_tar = out.suffix == ".tar"
    if out.exists() and (is_tar or any(out.iterdir())):
        raise UserError(f"bundle: {out} exists; give a new path")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        if is_tar:
            _write_tar(out, members, blobs, store)
        else:
            _write_dir(out, members, blobs, store)
    except OSError as e:
        raise DiskError(f"bundle: cannot write {out}: {e.strerror}") from None
    return BundleReport(
        str(out),
        "tar" if is_tar else "dir",
        len(blobs),
        sum(blobs.values()),
        sorted(lock.workspaces),
    )


def _write_dir(out: Path, members: dict, blobs: dict, store: Store) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, data in members.items():
            (tmp / name).write_bytes(data)
        for h in blobs:
            store.materialize(h, tmp / _blob_name(h))
        for path in [tmp / name for name in members] + [tmp / _blob_name(h) for h in blobs]:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.chmod(tmp, 0o755)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _write_tar(out: Path, members: dict, blobs: dict, store: Store) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for name, data in members.items():
                tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))
            for h, size in blobs.items():
                with open(store.blob_path(h), "rb") as f:
                    tar.addfile(_tarinfo(_blob_name(h), size), f)
            tar.close()
            raw.flush()
            os.fsync(raw.fileno())  # on removable media: really written before it is carried
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- reading


class _Reader:
    """Members of a bundle, dir or tar, by name; blobs streamed, never extracted by path."""

    def __init__(self, path: Path):
        self.path = path
        if not path.exists():
            raise UserError(f"{path}: no such bundle")
        self.is_tar = path.is_file()
        self._tar = None
        if self.is_tar:
            try:
                self._tar = tarfile.open(path, mode="r:")  # noqa: SIM115 (see close())
            except tarfile.TarError as e:
                raise IntegrityError(f"{path}: not a bundle tar ({e})") from None

    def close(self):
        if self._tar:
            self._tar.close()

    def read(self, name: str) -> bytes:
        if self._tar:
            try:
                member = self._tar.getmember(name)
            except KeyError:
                raise IntegrityError(
                    f"{self.path}: bundle has no {name}", hint=BUNDLE_HINT
                ) from None
            if not member.isfile():
                raise IntegrityError(f"{self.path}: {name} is not a regular file")
            return self._tar.extractfile(member).read()
        file = self.path / name
        if file.is_symlink() or not file.is_file():
            raise IntegrityError(f"{self.path}: bundle has no {name}", hint=BUNDLE_HINT)
        return file.read_bytes()

    def blobs(self) -> Iterator[tuple[str, int, object]]:
        """(sha256 hex, size, opener) for every blob member; other names are ignored."""
        if self._tar:
            for member in self._tar:
                m = _BLOB.match(member.name)
                if m and member.isfile() and m.group(1) == m.group(2)[:2]:
                    yield m.group(2), member.size, self._tar_opener(member)
            return
        root = self.path / "blobs" / "sha256"
        if not root.is_dir():
            return
        for sub in sorted(root.iterdir()):
            for file in sorted(sub.iterdir()) if sub.is_dir() else ():
                m = _BLOB.match(f"blobs/sha256/{sub.name}/{file.name}")
                if m and m.group(1) == m.group(2)[:2] and file.is_file() and not file.is_symlink():
                    yield m.group(2), file.stat().st_size, self._file_opener(file)

    def _tar_opener(self, member):
        def open_at(offset: int):
            f = self._tar.extractfile(member)

            def chunks():
                while chunk := f.read(CHUNK):
                    yield chunk

            return 0, chunks()

        return open_at

    @staticmethod
    def _file_opener(file: Path):
        def open_at(offset: int):
            def chunks():
                with open(file, "rb") as f:
                    while chunk := f.read(CHUNK):
                        yield chunk

            return 0, chunks()

        return open_at


def _load_index(reader: _Reader) -> tuple[dict, str, bytes, Lock]:
    try:
        index = json.loads(reader.read(INDEX))
    except json.JSONDecodeError:
        raise IntegrityError(f"{reader.path}: {INDEX} is not valid JSON") from None
    if not isinstance(index, dict) or index.get("bundle_version") != BUNDLE_VERSION:
        raise IntegrityError(f"{reader.path}: unsupported bundle (bundle_version != 1)")
    name = index.get("manifest_name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise IntegrityError(f"{reader.path}: bad manifest_name {name!r}")
    lock_bytes = reader.read(LOCK_NAME)
    if hashlib.sha256(lock_bytes).hexdigest() != index.get("lock_sha256"):
        raise IntegrityError(f"{reader.path}: {LOCK_NAME} does not match {INDEX} (tampered?)")
    lock = lockfile.loads(lock_bytes.decode("utf-8"), f"{reader.path.name}/{LOCK_NAME}")
    return index, name, reader.read(name), lock


def _take(opener, hexdigest: str, size: int, store: Store | None) -> str | None:
    """Hash one blob stream (into the store when given); returns a problem or None."""
    if store is not None:
        try:
            store.fetch(
                opener,
                size=size,
                sha256="sha256:" + hexdigest,
                label=f"bundle blob {hexdigest[:12]}",
            )
        except IntegrityError as e:
            return e.message.split(": downloaded bytes do not match: ", 1)[-1]
        return None
    h, n = hashlib.sha256(), 0
    for chunk in opener(0)[1]:
        h.update(chunk)
        n += len(chunk)
    if n != size:
        return f"size {n} != expected {size}"
    if h.hexdigest() != hexdigest:
        return f"sha256 {h.hexdigest()} != expected {hexdigest}"
    return None


def check_bundle(path: Path, store: Store | None = None) -> tuple[BundleReport, str, bytes, Lock]:
    """Hash every blob of a bundle against its lock; with a store, each good blob enters it.

    Returns the report (problems name each missing, corrupt or unexpected blob), the manifest
    name and bytes, and the lock.
    """
    reader = _Reader(path)
    try:
        index, name, manifest_bytes, lock = _load_index(reader)
        want = lock_blobs(lock)
        report = BundleReport(
            str(path), "tar" if reader.is_tar else "dir", workspaces=sorted(lock.workspaces)
        )
        seen = set()
        for hexdigest, size, opener in reader.blobs():
            if hexdigest not in want:
                report.problems.append({"blob": hexdigest, "problem": "unexpected"})
                continue
            seen.add(hexdigest)
            problem = _take(opener, hexdigest, want[hexdigest], store)
            if problem:
                report.problems.append({"blob": hexdigest, "problem": "corrupt", "detail": problem})
            else:
                report.blobs += 1
                report.bytes += size
        for hexdigest in want:
            if hexdigest not in seen:
                report.problems.append({"blob": hexdigest, "problem": "missing"})
        listed = {b.get("sha256") for b in index.get("blobs", []) if isinstance(b, dict)}
        if listed != set(want):
            report.problems.append({"blob": "bundle.json", "problem": "index differs from lock"})
        return report, name, manifest_bytes, lock
    finally:
        reader.close()


def verify_bundle(path: Path):
    """Hash every blob of a bundle against its own lock; nothing is written anywhere."""
    return check_bundle(Path(path))[0]


def read_bundle(path: Path) -> tuple[str, bytes, Lock]:
    """A bundle's manifest name, manifest bytes and lock (its blobs are not read)."""
    reader = _Reader(Path(path))
    try:
        _, name, manifest_bytes, lock = _load_index(reader)
    finally:
        reader.close()
    return name, manifest_bytes, lock
