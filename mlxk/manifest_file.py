"""Where the manifest is, and its text: found and read without parsing it (no YAML here), so
that a command can first ask the manifest cache whether it needs parsing at all."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from .errors import ManifestError

MANIFEST_NAME = "models.yaml"
LOCK_NAME = "mlxk.lock"
MAX_MANIFEST_BYTES = 1 << 20  # a manifest is a few KB; refuse huge files early


class InManifestDir:
    """What stands beside a manifest (`path`, its absolute path): shared by the parsed
    Manifest and the facts its cache remembers."""

    path: Path

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(LOCK_NAME)


def find_manifest(file: str | os.PathLike | None = None) -> Path:
    """The manifest named by -f/--file, else models.yaml in the current directory."""
    path = Path(file) if file else Path.cwd() / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(
            f"{path}: no such manifest",
            hint="run mlxk in a directory with models.yaml, pass -f/--file PATH, or create one "
            "with `mlxk init`",
        )
    return path.resolve()


def read_manifest(file: str | os.PathLike | None = None) -> tuple[Path, str]:
    """(absolute path, text) of the manifest at -f/--file (or ./models.yaml)."""
    path = find_manifest(file)
    if path.stat().st_size > MAX_MANIFEST_BYTES:  # before reading it all
        raise ManifestError(f"{path.name}: file is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        return path, path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path.name}: not UTF-8 text ({e.reason})") from None


def stays_inside(rel: str) -> bool:
    """Whether a place the manifest names (`home:`, `store:`, `allowed_signers:`) is a relative
    path that cannot leave its directory by name."""
    p = PurePosixPath(rel)
    return not (p.is_absolute() or ".." in p.parts or "\0" in rel)


def placed(root: Path, given: str | None, default: Path | None = None) -> Path | None:
    """A place the manifest names (`home:`, `store:`, checked to be a relative path inside
    its directory when it was parsed), resolved against that directory; else `default`."""
    return (root / given).resolve() if given is not None else default


def default_home(root: Path, settings) -> Path:
    """Where the workspaces go when the manifest has no `home:`: $MLXK_WORKSPACE_HOME (from
    settings), else ./models."""
    return (settings.workspace_home if settings else None) or (root / "models")
