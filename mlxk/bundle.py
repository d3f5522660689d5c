"""Bundles: a lock, its manifest and every blob the lock names, to carry across an air gap.

A bundle is a directory, or one uncompressed .tar with the same members (deterministic: sorted
members, zero mtimes and owners, so the same lock and store give byte-identical bundles):

    bundle.json                      {"bundle_version", "manifest_name", "lock_sha256", "blobs"}
    <manifest name, e.g. models.yaml>
    mlxk.lock
    bundle.sig                       optional: an SSH signature over the three above (signing.py)
    blobs/sha256/<2 hex>/<64 hex>

Nothing is trusted on the way in: the index, lock and signature are checked before any blob
is read, and a blob enters the store only once it hashes to the sha256 the lock names. Which
lock that is (the site's own, or the bundle's) is decided by `project.import_bundle`.
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
from dataclasses import dataclass
from pathlib import Path

from . import lock as lockfile
from . import signing
from .entries import FileEntry
from .errors import DiskError, IntegrityError, UserError
from .hashing import CHUNK, canonical_json
from .lock import Lock
from .manifest import LOCK_NAME
from .store import Store

BUNDLE_VERSION = 1
INDEX = "bundle.json"
SIGNATURE = signing.SIGNATURE_NAME  # the member holding the SSH signature (not in the index)
_BLOB = re.compile(r"^blobs/sha256/([0-9a-f]{2})/([0-9a-f]{64})$")
BUNDLE_HINT = "a bundle is a directory or .tar written by `mlxk bundle`; check the path"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.ya?ml$")


def _entries(lock: Lock) -> Iterator[tuple[str, FileEntry]]:
    """(workspace, entry) for every file the lock names: placed files first (content and
    runtime captures, by their path in the workspace), then step inputs and intermediates."""
    for name, ws in sorted(lock.workspaces.items()):
        for f in ws.placed_files:
            yield name, f
        for f in [*ws.source.files, *(f for step in ws.steps for f in step.files)]:
            yield name, f


def lock_blobs(lock: Lock) -> dict[str, int]:
    """{sha256 hex: size} of every file the lock names: sources, step outputs, runtime."""
    return dict(sorted({f.hex: f.size for _, f in _entries(lock)}.items()))


def blob_files(lock: Lock) -> dict[str, tuple[str, str]]:
    """{sha256 hex: (workspace, path)}: where a blob the lock names goes (its first use)."""
    out: dict[str, tuple[str, str]] = {}
    for name, f in _entries(lock):
        out.setdefault(f.hex, (name, f.path))
    return out


def _blob_name(hexdigest: str) -> str:
    return f"blobs/sha256/{hexdigest[:2]}/{hexdigest}"


@dataclass(frozen=True)
class SignatureInfo:
    """Who signed a bundle; `allowed_signers` is the file that vouched (None: not checked)."""

    signer: signing.Signer
    allowed_signers: str | None = None

    def to_dict(self) -> dict:
        return {
            "member": SIGNATURE,
            **self.signer.to_dict(),
            "allowed_signers": self.allowed_signers,
        }

    def describe(self, written: bool = False) -> str:
        key = f"{self.signer.key_type} key {self.signer.fingerprint}"
        if written:
            return f"signed with {key} ({SIGNATURE})"
        if self.signer.identity is None:
            return f"signed with {key}; not checked (no allowed_signers file)"
        return f"signed by {self.signer.identity} ({key}), allowed by {self.allowed_signers}"


@dataclass(frozen=True)
class Coverage:
    """Does a bundle carry every blob a (local) lock needs? `missing`: by workspace and file."""

    lock: str
    needed: int
    carried: int
    missing: tuple[dict, ...] = ()

    @property
    def complete(self) -> bool:
        return not self.missing

    def to_dict(self) -> dict:
        return {
            "lock": self.lock,
            "needed": self.needed,
            "carried": self.carried,
            "complete": self.complete,
            "missing": list(self.missing),
        }


def missing_files(lock: Lock, missing) -> tuple[dict, ...]:
    """{workspace, path, sha256, size} of each blob hex in `missing`, in the lock's order."""
    files, sizes = blob_files(lock), lock_blobs(lock)
    return tuple(
        {"workspace": files[h][0], "path": files[h][1], "sha256": h, "size": sizes[h]}
        for h in files
        if h in missing
    )


def shown_files(missing: tuple[dict, ...], limit: int = 6) -> str:
    """`ws/path (sha256 12 hex)` of the first few missing files, then a count."""
    shown = ", ".join(f"{m['workspace']}/{m['path']} ({m['sha256'][:12]})" for m in missing[:limit])
    return shown + (f" and {len(missing) - limit} more" if len(missing) > limit else "")


@dataclass(frozen=True)
class BundleReport:
    path: str
    format: str  # "dir" | "tar"
    blobs: int = 0
    bytes: int = 0
    workspaces: tuple[str, ...] = ()
    problems: tuple[dict, ...] = ()
    signature: SignatureInfo | None = None
    coverage: Coverage | None = None  # verify --bundle next to a lock

    @property
    def ok(self) -> bool:
        return not self.problems and (self.coverage is None or self.coverage.complete)

    def to_dict(self) -> dict:
        out = {
            "path": self.path,
            "format": self.format,
            "ok": self.ok,
            "blobs": self.blobs,
            "bytes": self.bytes,
            "workspaces": list(self.workspaces),
            "problems": list(self.problems),
            "signature": self.signature.to_dict() if self.signature else None,
        }
        if self.coverage is not None:
            out["local_lock"] = self.coverage.to_dict()
        return out


# ---------------------------------------------------------------- writing


def _members(manifest_path: Path, lock: Lock) -> dict[str, bytes]:
    """The index, manifest and lock members of a bundle of `lock`."""
    lock_text = lockfile.dumps(lock)
    index = {
        "bundle_version": BUNDLE_VERSION,
        "manifest_name": manifest_path.name,
        "lock_sha256": hashlib.sha256(lock_text.encode()).hexdigest(),
        "blobs": [{"sha256": h, "size": s} for h, s in lock_blobs(lock).items()],
    }
    return {
        INDEX: canonical_json(index).encode(),
        manifest_path.name: manifest_path.read_bytes(),
        LOCK_NAME: lock_text.encode(),
    }


def _sign(members: dict[str, bytes], key: Path, interactive: bool) -> tuple[bytes, SignatureInfo]:
    """bundle.sig over the index, lock and manifest (signing.signed_payload), and its signer."""
    payload = signing.signed_payload(members)
    signature = signing.sign(payload, Path(key), interactive=interactive)
    return signature, SignatureInfo(signing.inspect(payload, signature, label=SIGNATURE))


def write_bundle(
    out: Path,
    manifest_path: Path,
    lock: Lock,
    store: Store,
    sign: Path | None = None,
    interactive: bool = False,
) -> BundleReport:
    """Write a bundle of `lock` (every blob checked in the store first) to a dir or a .tar;
    with `sign`, an SSH key, it carries bundle.sig over its index, lock and manifest."""
    blobs = lock_blobs(lock)
    missing = [h for h, size in blobs.items() if not store.check(h, size)]
    if missing:
        raise UserError(
            f"bundle: {len(missing)} blob(s) the lock names are not in the store "
            f"({store.root}): {', '.join(h[:12] for h in missing[:5])}",
            hint="run `mlxk sync` first so every file is fetched and built",
        )
    members = _members(manifest_path, lock)
    is_tar = out.suffix == ".tar"
    if out.exists() and (is_tar or any(out.iterdir())):
        raise UserError(f"bundle: {out} exists; give a new path")
    signed = None
    if sign is not None:  # before anything is written: a bad key leaves nothing behind
        members[SIGNATURE], signed = _sign(members, sign, interactive)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        (_write_tar if is_tar else _write_dir)(out, members, blobs, store)
    except OSError as e:
        raise DiskError(f"bundle: cannot write {out}: {e.strerror}") from None
    return BundleReport(
        str(out),
        "tar" if is_tar else "dir",
        len(blobs),
        sum(blobs.values()),
        tuple(sorted(lock.workspaces)),
        signature=signed,
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
        data = self.read_optional(name)
        if data is None:
            raise IntegrityError(f"{self.path}: bundle has no {name}", hint=BUNDLE_HINT)
        return data

    def read_optional(self, name: str) -> bytes | None:
        """A member's bytes, or None when the bundle has no member of that name."""
        if self._tar:
            try:
                member = self._tar.getmember(name)
            except KeyError:
                return None
            if not member.isfile():
                raise IntegrityError(f"{self.path}: {name} is not a regular file")
            return self._tar.extractfile(member).read()
        file = self.path / name
        if not file.exists() and not file.is_symlink():
            return None
        if file.is_symlink() or not file.is_file():
            raise IntegrityError(f"{self.path}: {name} is not a regular file")
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


@dataclass(frozen=True)
class Contents:
    """A bundle's index, manifest and lock, as read (the raw bytes are what is signed)."""

    index: dict
    index_bytes: bytes
    manifest_name: str
    manifest_bytes: bytes
    lock_bytes: bytes
    lock: Lock

    def payload(self) -> bytes:
        """What bundle.sig signs (docs/signing.md)."""
        return signing.signed_payload(
            {
                INDEX: self.index_bytes,
                LOCK_NAME: self.lock_bytes,
                self.manifest_name: self.manifest_bytes,
            }
        )


def _load_index(reader: _Reader) -> Contents:
    index_bytes = reader.read(INDEX)
    try:
        index = json.loads(index_bytes)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise IntegrityError(f"{reader.path}: {INDEX} is not valid JSON") from None
    if not isinstance(index, dict) or index.get("bundle_version") != BUNDLE_VERSION:
        raise IntegrityError(f"{reader.path}: unsupported bundle (bundle_version != 1)")
    name = index.get("manifest_name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise IntegrityError(f"{reader.path}: bad manifest_name {name!r}")
    lock_bytes = reader.read(LOCK_NAME)
    if hashlib.sha256(lock_bytes).hexdigest() != index.get("lock_sha256"):
        raise IntegrityError(f"{reader.path}: {LOCK_NAME} does not match {INDEX} (tampered?)")
    try:
        text = lock_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise IntegrityError(f"{reader.path}: {LOCK_NAME} is not UTF-8 text") from None
    lock = lockfile.loads(text, f"{reader.path.name}/{LOCK_NAME}")
    return Contents(index, index_bytes, name, reader.read(name), lock_bytes, lock)


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


class Bundle:
    """An open bundle (dir or tar): its index, manifest and lock are read and checked at once;
    the signature is checked next (`check_signature`), on the same reader, before any blob is
    read; then `problems` (what the members say, no blob read) and `take` (hash blobs)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._reader = _Reader(self.path)
        try:
            self.contents = _load_index(self._reader)
        except BaseException:
            self._reader.close()
            raise
        self.signature: SignatureInfo | None = None
        self._carried: dict | None = None

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *exc) -> None:
        self._reader.close()

    @property
    def format(self) -> str:
        return "tar" if self._reader.is_tar else "dir"

    @property
    def label(self) -> str:
        """bundle.sig as named in messages: models.tar:bundle.sig, or models.bundle/bundle.sig."""
        return f"{self.path}{':' if self._reader.is_tar else '/'}{SIGNATURE}"

    def check_signature(self, allowed_signers: Path | None) -> SignatureInfo | None:
        """With an allowed_signers file: the signer it accepts, else exit 3 (unsigned, unknown
        key, changed after signing). Without: who signed it (not trusted), or None: unsigned.
        A bundle.sig that is not a valid signature over this bundle is exit 3 either way."""
        raw = self._reader.read_optional(SIGNATURE)
        payload = self.contents.payload()
        if allowed_signers is not None:
            signer = signing.verify(payload, raw, allowed_signers, label=self.label)
            self.signature = SignatureInfo(signer, str(allowed_signers))
        elif raw is not None:
            self.signature = SignatureInfo(signing.inspect(payload, raw, label=self.label))
        return self.signature

    @property
    def carried(self) -> dict[str, int]:
        """{sha256 hex: size} of every blob member (listed, not read)."""
        if self._carried is None:
            self._carried = {h: (size, op) for h, size, op in self._reader.blobs()}
        return {h: size for h, (size, _) in self._carried.items()}

    def problems(self) -> list[dict]:
        """What the members say against the bundle's own lock: blobs missing, unexpected or of
        the wrong size, and an index listing other blobs than the lock. No blob is read."""
        want, carried = lock_blobs(self.contents.lock), self.carried
        out = [{"blob": h, "problem": "unexpected"} for h in carried if h not in want]
        for h, size in want.items():
            if h not in carried:
                out.append({"blob": h, "problem": "missing"})
            elif carried[h] != size:
                detail = f"size {carried[h]} != expected {size}"
                out.append({"blob": h, "problem": "corrupt", "detail": detail})
        blobs = self.contents.index.get("blobs")
        blobs = blobs if isinstance(blobs, list) else []
        listed = {b.get("sha256") for b in blobs if isinstance(b, dict)}
        if listed != set(want):
            out.append({"blob": INDEX, "problem": "index differs from lock"})
        return out

    def take(self, want: dict[str, int], store: Store | None) -> tuple[int, int, list[dict]]:
        """Hash every carried blob in `want` ({hex: size}) against its size and sha256, into
        the store when given; returns (good blobs, their bytes, problems)."""
        self.carried  # noqa: B018 (lists the members)
        good, size_sum, problems = 0, 0, []
        for h, (size, opener) in self._carried.items():
            if h not in want or size != want[h]:
                continue
            problem = _take(opener, h, size, store)
            if problem:
                problems.append({"blob": h, "problem": "corrupt", "detail": problem})
            else:
                good, size_sum = good + 1, size_sum + size
        return good, size_sum, problems


def coverage(bundle: Bundle, lock: Lock, name: str, bad=()) -> Coverage:
    """Which blobs `lock` needs the bundle does not carry (or carries corrupt: `bad`)."""
    need, carried = lock_blobs(lock), bundle.carried
    missing = {h for h, size in need.items() if carried.get(h) != size or h in bad}
    return Coverage(name, len(need), len(need) - len(missing), missing_files(lock, missing))


def verify_bundle(
    path: Path, allowed_signers: Path | None = None, local: tuple[str, Lock] | None = None
) -> BundleReport:
    """Hash every blob of a bundle against its own lock; with `local` ((name, lock)), also say
    which blobs that lock needs the bundle does not carry. Nothing is written anywhere."""
    with Bundle(path) as bundle:
        signature = bundle.check_signature(allowed_signers)
        problems = bundle.problems()
        good, size, corrupt = bundle.take(lock_blobs(bundle.contents.lock), None)
        bad = {p["blob"] for p in problems + corrupt if p["problem"] == "corrupt"}
        covered = coverage(bundle, local[1], local[0], bad) if local else None
        return BundleReport(
            str(path),
            bundle.format,
            good,
            size,
            tuple(sorted(bundle.contents.lock.workspaces)),
            tuple(problems + corrupt),
            signature,
            covered,
        )
