"""What a parsed manifest told mlxk, remembered beside it so that a read-only command (verify)
starts without parsing YAML: where the workspaces go and the digest the lock is checked
against. The cheapest check first, as DVC does: the manifest's text is hashed (microseconds)
and looked up; only a miss parses it.

One JSON file per manifest in `.mlxk_cache/` beside it (git-ignored by its own `.gitignore`,
as pytest's and ruff's caches are), keyed by the manifest's absolute path and text, mlxk's
version and $MLXK_WORKSPACE_HOME. It holds `home:` and `store:` as the manifest wrote them
(resolved again on each use, so a re-pointed symlink is followed as a fresh parse would). The
commands that parse the manifest to write a lock or workspaces (lock, sync) write it; verify
only reads it. A missing, unreadable, foreign or mismatched entry is a miss, never an error.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .hashing import canonical_json, sha256_text
from .manifest_file import InManifestDir, default_home, placed, stays_inside

CACHE_DIR = ".mlxk_cache"
FORMAT = 1


@dataclass(frozen=True)
class ManifestFacts(InManifestDir):
    """The parts of a manifest that verify needs, as its parse would give them."""

    path: Path  # absolute path of models.yaml
    home: Path
    store: Path | None
    manifest_digest: str  # Manifest.digest(): what the lock's manifest_digest must equal
    text: str = field(default="", repr=False)  # what it was recalled for: parsed when needed

    def digest(self) -> str:
        return self.manifest_digest


def entry_path(manifest_path: Path) -> Path:
    return manifest_path.parent / CACHE_DIR / f"{manifest_path.name}.json"


def _key(path: Path, text_sha256: str, settings) -> str:
    home = settings.workspace_home if settings else None
    parts = {"mlxk": __version__, "path": str(path), "text": text_sha256, "home": str(home or "")}
    return sha256_text(canonical_json(parts))


def recall(path: Path, text: str, settings) -> ManifestFacts | None:
    """The facts remembered for this manifest text, or None (a miss: parse it)."""
    try:
        entry = json.loads(entry_path(path).read_text("utf-8"))
        if entry["format"] != FORMAT or entry["key"] != _key(path, sha256_text(text), settings):
            return None
        home, store, digest = entry["home"], entry["store"], entry["digest"]
        if not isinstance(digest, str) or not all(_place(v) for v in (home, store)):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    root = path.parent
    home_path = placed(root, home, default_home(root, settings))
    return ManifestFacts(path, home_path, placed(root, store), digest, text)


def _place(value) -> bool:
    """A `home:` or `store:` as the parse accepted it: absent, or a path inside the project
    (an entry written by hand cannot send verify elsewhere)."""
    return value is None or (isinstance(value, str) and stays_inside(value))


def remember(manifest, settings) -> None:
    """Write the cache entry of a parsed Manifest (best effort: a read-only directory or a
    full disk only costs the next verify a parse)."""
    if not manifest.text_sha256:
        return
    home, store = manifest.given
    entry = {
        "format": FORMAT,
        "key": _key(manifest.path, manifest.text_sha256, settings),
        "home": home,
        "store": store,
        "digest": manifest.digest(),
    }
    target = entry_path(manifest.path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        _ensure_dir(target.parent)
        tmp.write_text(canonical_json(entry), "utf-8")
        os.replace(tmp, target)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _ensure_dir(path: Path) -> None:
    if path.is_dir():
        return
    path.mkdir(exist_ok=True)
    (path / ".gitignore").write_text("# written by mlxk: a cache, never committed\n*\n", "utf-8")
