"""Registry logins, read from the files `docker login` and `podman login` write.

Looked up in order: podman's `REGISTRY_AUTH_FILE` (or `$XDG_RUNTIME_DIR/containers/auth.json`),
then `$DOCKER_CONFIG/config.json` (else `~/.docker/config.json`). In each, `auths` maps a
registry (`host[:port]`, optionally with a scheme, or a `host/namespace` prefix as podman allows)
to `{"auth": base64("user:secret")}`. The secret never leaves this object: it is kept out of
repr, logs and every message, which name only the file it came from.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Credential:
    username: str
    secret: str = field(repr=False)
    origin: str = ""  # the file it came from, for messages

    def basic(self) -> str:
        """The value of an `Authorization: Basic` header."""
        raw = f"{self.username}:{self.secret}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def default_files(environ: Mapping[str, str]) -> tuple[Path, ...]:
    """The credential files to read, most specific first, as the environment names them."""
    files: list[Path] = []
    if environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(environ["REGISTRY_AUTH_FILE"]))
    elif environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    if environ.get("DOCKER_CONFIG"):
        files.append(Path(environ["DOCKER_CONFIG"]) / "config.json")
    elif environ.get("HOME"):
        files.append(Path(environ["HOME"]) / ".docker" / "config.json")
    return tuple(files)


def _key_matches(key: str, host: str, repo: str) -> int:
    """How specifically an `auths` key names host/repo: 0 not at all, else its length."""
    bare = key.split("://", 1)[-1].rstrip("/")
    if bare.endswith("/v1") or bare.endswith("/v2"):  # docker's legacy "https://host/v1/"
        bare = bare[:-3]
    name, _, namespace = bare.partition("/")
    if name != host:
        return 0
    if namespace and not (repo == namespace or repo.startswith(namespace + "/")):
        return 0
    return len(bare) + 1


def _decode(entry, origin: str) -> Credential | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("auth"), str):
        return None
    try:
        user, sep, secret = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return Credential(user, secret, origin) if sep and user else None


def _read(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing or unreadable: as if it held no logins
        return {}
    auths = doc.get("auths") if isinstance(doc, dict) else None
    return auths if isinstance(auths, dict) else {}


def find(host: str, repo: str, files: Iterable[Path]) -> Credential | None:
    """The login for host (and repo, for namespaced keys) from the first file that has one."""
    for path in files:
        auths = _read(Path(path))
        ranked = sorted(
            ((_key_matches(k, host, repo), k) for k in auths if isinstance(k, str)),
            reverse=True,
        )
        for score, key in ranked:
            if score and (cred := _decode(auths[key], str(path))):
                return cred
    return None
