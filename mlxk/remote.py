"""The fleet's registry (`MLXK_REMOTE` / `remote:`): workspace NAME's files, by digest, at
`PREFIX/NAME`, where `mlxk push` put them.

`sync` asks it for each blob the store lacks before asking the workspace's own source; what it
serves is hashed into the store and checked against the lock like any other fetch, so the
lock never changes: a fleet machine syncs the same hub-pinned lock from the registry. With
`--offline` the sources are not asked, but the remote still is: it is the fleet's own server
(`--no-remote` leaves it out too).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from .entries import FileEntry
from .errors import SourceError, UserError
from .oci.reference import Reference, parse
from .oci.settings import RegistrySettings

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")


def repo_name(name: str) -> str:
    """The repository component a workspace name becomes: lowercased, checked."""
    lower = name.lower()
    if not _COMPONENT.fullmatch(lower):
        raise UserError(
            f"the workspace name {name!r} cannot be an OCI repository name",
            hint="a registry wants lowercase letters and digits, separated by one '.', '_' "
            "or '-'s; rename the workspace",
        )
    return lower


def prefix_of(text: str, origin: str) -> Reference:
    """An `oci://HOST[:PORT]/PREFIX` (no tag or digest); UserError naming where it came from."""
    try:
        ref = parse(text)
    except UserError as e:
        raise UserError(f"{origin}: {e.message}", hint=e.hint) from None
    if ref.tag or ref.digest:
        raise UserError(
            f"{origin}: {ref.describe()} names a tag or digest",
            hint="a remote is a prefix, oci://HOST[:PORT]/PREFIX; workspace NAME is PREFIX/NAME",
        )
    return ref


@dataclass(frozen=True)
class Miss:
    """A file the remote could not give, and why (it lacks it, or an error)."""

    workspace: str
    path: str
    why: str


class Remote:
    def __init__(self, prefix: Reference, settings: RegistrySettings | None = None):
        from .oci.pool import Registries

        self.prefix = prefix
        self._pool = Registries(settings)
        self._lock = threading.Lock()
        self.misses: list[Miss] = []
        self.served = {"files": 0, "bytes": 0}
        self.down: SourceError | None = None  # why the registry could not be asked at all

    @property
    def registry(self):
        return self._pool.get(self.prefix.host)

    def repo(self, workspace: str) -> str:
        return f"{self.prefix.repo}/{repo_name(workspace)}"

    def describe(self, workspace: str | None = None) -> str:
        base = self.prefix.describe()
        return f"{base}/{repo_name(workspace)}" if workspace else base

    def has(self, workspace: str, entry: FileEntry) -> bool:
        """Whether PREFIX/NAME has the blob (HEAD). A failure to ask (unreachable, no login,
        TLS) is the same for every blob: it is kept and given again without asking."""
        if self.down is not None:
            raise SourceError(self.down.message, hint=self.down.hint)
        try:
            return self.registry.blob_exists(self.repo(workspace), entry.hash)
        except SourceError as e:
            self.down = e
            raise

    def opener(self, workspace: str, entry: FileEntry):
        label = f"{self.describe(workspace)}@{entry.hash[:19]} ({entry.path})"
        return self.registry.opener(self.repo(workspace), entry.hash), label

    def missed(self, workspace: str, path: str, why: str) -> None:
        with self._lock:
            self.misses.append(Miss(workspace, path, why))

    def count(self, size: int) -> None:
        with self._lock:
            self.served["files"] += 1
            self.served["bytes"] += size

    def notes(self) -> list[str]:
        """One line per workspace the remote could not fully serve (the source did instead)."""
        by_ws: dict[str, list[Miss]] = {}
        for m in self.misses:
            by_ws.setdefault(m.workspace, []).append(m)
        out = []
        for name, misses in sorted(by_ws.items()):
            shown = ", ".join(sorted(m.path for m in misses)[:4])
            more = f" and {len(misses) - 4} more" if len(misses) > 4 else ""
            out.append(
                f"remote {self.describe(name)}: {len(misses)} file(s) not from the registry "
                f"({shown}{more}: {misses[0].why}); fetched from the workspace's source instead"
            )
        return out
