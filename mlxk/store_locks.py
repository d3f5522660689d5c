"""The locks a store serves: every project that locked or synced from a store is recorded in it,
so `mlxk gc` keeps the blobs of all of them, not only of the project it runs in.

A record is `<store>/projects/<sha256 of the lock's absolute path>.json` holding the lock's and
the manifest's absolute paths. One file a project, written atomically, so concurrent syncs of
different projects never contend. A record is forgotten when its lock file is gone, or when its
manifest now names another store (`store:`); anything unclear keeps the record (and its blobs).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

RECORDS = "projects"


@dataclass(frozen=True)
class LockRecord:
    lock: Path
    manifest: Path
    record: Path  # the record file itself


def register(store_root: Path, lock_path: Path, manifest_path: Path) -> None:
    """Record (idempotently) that the lock at `lock_path` takes blobs from this store."""
    lock_path, manifest_path = Path(lock_path).resolve(), Path(manifest_path).resolve()
    folder = Path(store_root) / RECORDS
    name = hashlib.sha256(os.fsencode(lock_path)).hexdigest() + ".json"
    body = json.dumps({"lock": str(lock_path), "manifest": str(manifest_path)}, sort_keys=True)
    target = folder / name
    with contextlib.suppress(OSError):
        if target.read_text(encoding="utf-8") == body:
            return
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    tmp.write_text(body, encoding="utf-8")
    os.replace(tmp, target)


def records(store_root: Path) -> list[LockRecord]:
    """Every readable record, sorted by lock path (an unreadable record is skipped)."""
    out = []
    folder = Path(store_root) / RECORDS
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            out.append(LockRecord(Path(doc["lock"]), Path(doc["manifest"]), path))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(out, key=lambda r: str(r.lock))


def why_forget(record: LockRecord, store_root: Path) -> str | None:
    """Why this record no longer holds blobs in the store, or None to keep it."""
    if not record.lock.exists():
        return "its lock is gone"
    named = _manifest_store(record.manifest)
    if named is not None and named != Path(store_root).resolve():
        return f"its manifest now names the store {named}"
    return None


def _manifest_store(manifest: Path) -> Path | None:
    """The `store:` a manifest sets, resolved; None when unset or unreadable (keep it)."""
    import yaml

    try:
        doc = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    value = doc.get("store") if isinstance(doc, dict) else None
    if not isinstance(value, str) or not value.strip():
        return None
    return (manifest.parent / value).resolve()


def forget(record: LockRecord) -> None:
    record.record.unlink(missing_ok=True)
