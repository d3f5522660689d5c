"""Where a workspace's input files come from: a hub repo (hf.py) or a local directory (path.py)."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import PurePosixPath

from ..errors import SourceError


@dataclass(frozen=True)
class SourceFile:
    """One input file as its source declares it (before mlxk has seen its bytes)."""

    path: str
    size: int
    sha256: str | None  # "sha256:<hex>" when known (LFS files, local files)
    gitsha1: str | None = None  # "gitsha1:<hex>" (hub git blob id)


def _match(path: str, pattern: str) -> bool:
    if pattern.endswith("/"):
        pattern += "*"
    return fnmatch.fnmatchcase(path, pattern)


def select(paths, include=(), exclude=()) -> list[str]:
    """huggingface_hub's allow/ignore semantics: fnmatch on the whole path, '*' crosses '/'."""
    out = []
    for p in paths:
        if include and not any(_match(p, pat) for pat in include):
            continue
        if any(_match(p, pat) for pat in exclude):
            continue
        out.append(p)
    return out


def check_relpath(path: str, origin: str) -> str:
    """Refuse any path from a source that could land outside the workspace."""
    pp = PurePosixPath(path)
    bad = (
        not path
        or pp.is_absolute()
        or "\\" in path
        or "\0" in path
        or any(part in ("", ".", "..") for part in path.split("/"))
        or len(path.encode("utf-8")) > 1024
        or any(len(part.encode("utf-8")) > 255 for part in pp.parts)
    )
    if bad:
        raise SourceError(
            f"{origin}: refusing unsafe file name {path!r}",
            hint="a file name must be a relative path that stays inside the workspace",
        )
    return path
