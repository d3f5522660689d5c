"""Names that come from outside (a repo, a manifest, an artifact, a bundle): refused unless
they are relative paths that stay inside the workspace, and shown safely in messages."""

from __future__ import annotations

from pathlib import PurePosixPath

from .errors import SourceError


def shown_name(path: str) -> str:
    """A file name for a one-line message: quoted, escaped, and cut short when huge."""
    text = repr(path)
    return text if len(text) <= 120 else f"{text[:100]}...' ({len(path.encode())} bytes)"


def _unsafe(path: str) -> str | None:
    pp = PurePosixPath(path)
    if not path:
        return "an empty name"
    if pp.is_absolute():
        return "an absolute path"
    if "\\" in path:
        return "a backslash"
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        return "a control character"
    if any(part.strip(".") == "" for part in path.split("/")):
        return "a '.', '..', empty or dots-only component"
    if len(path.encode("utf-8")) > 1024:
        return "longer than 1024 bytes"
    if any(len(part.encode("utf-8")) > 255 for part in pp.parts):
        return "a component longer than 255 bytes"
    return None


def check_relpath(path: str, origin: str) -> str:
    """Refuse any path from a source that could land outside the workspace."""
    reason = _unsafe(path)
    if reason:
        raise SourceError(
            f"{origin}: refusing unsafe file name {shown_name(path)} ({reason})",
            hint="a file name must be a relative path that stays inside the workspace",
        )
    return path


def check_tree(paths, origin: str) -> None:
    """Refuse a listing no directory can hold: a path twice, or a file that is also a folder."""
    seen: set[str] = set()
    for p in paths:
        if p in seen:
            raise SourceError(f"{origin}: the file {shown_name(p)} is listed twice")
        seen.add(p)
    for p in sorted(seen):
        parts = p.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in seen:
                raise SourceError(
                    f"{origin}: {shown_name('/'.join(parts[:i]))} is both a file and a folder "
                    f"(of {shown_name(p)})"
                )
