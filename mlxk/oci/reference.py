"""`oci://HOST[:PORT]/REPO[:TAG][@sha256:DIGEST]`: where an artifact (or a prefix of them) lives.

Names follow the OCI distribution spec: a repository is lowercase path components
(`[a-z0-9]+([._]|__|-+)[a-z0-9]+...`), a tag is `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`, and the
only digest mlxk accepts is sha256 (it is what the lock records).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from ..errors import UserError

SCHEME = "oci://"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_HOSTNAME = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
)
_HINT = "write it as oci://HOST[:PORT]/REPO:TAG or oci://HOST[:PORT]/REPO@sha256:DIGEST"


def _bad(text: str, why: str) -> UserError:
    shown = text if len(text) <= 120 else text[:100] + "..."
    return UserError(f"{shown!r} is not an OCI reference: {why}", hint=_HINT)


@dataclass(frozen=True)
class Reference:
    host: str  # "registry.example.com", "127.0.0.1:5000", "[::1]:5000"
    repo: str  # "org/model"; for a prefix (MLXK_REMOTE) the part before NAME
    tag: str | None = None
    digest: str | None = None  # "sha256:<64 hex>"

    @property
    def hostname(self) -> str:
        """The host without port or IPv6 brackets."""
        if self.host.startswith("["):
            return self.host[1 : self.host.index("]")]
        return self.host.rsplit(":", 1)[0] if ":" in self.host else self.host

    @property
    def is_loopback(self) -> bool:
        if self.hostname.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.hostname).is_loopback
        except ValueError:
            return False

    @property
    def target(self) -> str:
        """What the manifest URL names: the digest when there is one, else the tag."""
        if self.digest is None and self.tag is None:
            raise _bad(self.describe(), "it names no tag or digest")
        return self.digest or self.tag  # type: ignore[return-value]

    def describe(self) -> str:
        """The text form; `parse(ref.describe()) == ref`."""
        text = f"{SCHEME}{self.host}/{self.repo}"
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    def __str__(self) -> str:
        return self.describe()

    def child(self, name: str, tag: str | None = None, digest: str | None = None) -> Reference:
        """PREFIX/NAME[:TAG][@DIGEST]: an artifact under this reference taken as a prefix."""
        text = f"{SCHEME}{self.host}/{self.repo}/{name}"
        return parse(text + (f":{tag}" if tag else "") + (f"@{digest}" if digest else ""))

    def pinned(self, digest: str) -> Reference:
        """The same artifact, pinned to a manifest digest."""
        if not _DIGEST.fullmatch(digest):
            raise _bad(digest, "a digest is sha256: and 64 lowercase hex digits")
        return replace(self, digest=digest)


def _tag(tag: str | None, text: str) -> str | None:
    if tag is not None and not _TAG.fullmatch(tag):
        raise _bad(text, "a tag is 1-128 of A-Z a-z 0-9 _ . - and does not start with . or -")
    return tag


def _check_host(text: str, host: str) -> None:
    if host.startswith("["):
        inner, _, rest = host[1:].partition("]")
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            raise _bad(text, f"{host!r} is not a host") from None
        if rest and not rest.startswith(":"):
            raise _bad(text, f"{host!r} is not a host")
        port = rest[1:] if rest else None
    else:
        name, sep, port = host.partition(":")
        port = port if sep else None
        if len(name) > 253 or not _HOSTNAME.fullmatch(name):
            raise _bad(text, f"{name!r} is not a host name")
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        raise _bad(text, f"the port in {host!r} is not a number from 1 to 65535")


def _split_name(text: str, rest: str) -> tuple[str, str | None, str | None]:
    digest = None
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        if not _DIGEST.fullmatch(digest):
            raise _bad(text, "a digest is sha256: and 64 lowercase hex digits")
    repo, tag = rest, None
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        repo, _, tag = rest.rpartition(":")
        _tag(tag, text)
    if not _REPO.fullmatch(repo) or len(repo) > 255:
        raise _bad(text, f"{repo!r} is not a repository name (lowercase a-z 0-9, . _ - and /)")
    return repo, tag, digest


def parse(text: str) -> Reference:
    """`oci://HOST[:PORT]/REPO[:TAG][@sha256:HEX]` -> Reference, or a one-line UserError."""
    if not isinstance(text, str) or not text.startswith(SCHEME):
        raise _bad(str(text), f"it does not start with {SCHEME}")
    if any(ord(c) < 33 or ord(c) == 127 for c in text):
        raise _bad(text, "it has a space or control character")
    host, slash, rest = text[len(SCHEME) :].partition("/")
    if not host or not slash or not rest:
        raise _bad(text, "it needs a host and a repository")
    _check_host(text, host)
    repo, tag, digest = _split_name(text, rest)
    return Reference(host=host, repo=repo, tag=tag, digest=digest)
