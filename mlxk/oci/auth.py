"""Answering a registry's `WWW-Authenticate` challenge: Basic, or Bearer via its token endpoint.

A Bearer registry (GHCR, Harbor, ECR, Docker Hub, distribution with `auth: token`) names a
realm; mlxk asks it for a token for the scopes a request needs, sending the login (if any) as
Basic credentials, and caches the token per scope. A login is sent only over https or to a
loopback host. Tokens and secrets are never put into a message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..errors import SourceError
from .credentials import Credential

_PARAM = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic" or "bearer" (lowercase)
    realm: str = ""
    service: str = ""
    scope: str = ""


def parse_challenge(header: str | None) -> Challenge | None:
    """`Bearer realm="https://x/token",service="x",scope="repository:a:pull"` -> Challenge."""
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    params = {
        k.lower(): (quoted if quoted is not None else bare)
        for k, quoted, bare in _PARAM.findall(rest)
    }
    params = {k: v.replace('\\"', '"') for k, v in params.items()}
    return Challenge(
        scheme=scheme.lower(),
        realm=params.get("realm", ""),
        service=params.get("service", ""),
        scope=params.get("scope", ""),
    )


def scope_for(repo: str, push: bool = False) -> str:
    return f"repository:{repo}:{'pull,push' if push else 'pull'}"


def _may_send_login(url: str) -> bool:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return parts.scheme == "https" or host in _LOOPBACK_HOSTS or host.startswith("127.")


@dataclass
class Authorizer:
    """What one registry asked for, and the answers obtained: Basic, or tokens per scope set.

    `fetch_token(realm, params, authorization)` GETs the token endpoint and returns its JSON
    (the transport supplies it, so TLS settings and error wording are shared).
    """

    registry: str
    login: Callable[[str], Credential | None]  # repo -> the login for it, if any
    fetch_token: Callable[[str, list, str | None], dict]
    _basic: bool = False
    _tokens: dict = field(default_factory=dict)

    def header(self, repo: str, scopes: tuple[str, ...]) -> str | None:
        """The Authorization value to send with a request needing these scopes, if known."""
        if self._basic:
            cred = self.login(repo)
            return cred.basic() if cred else None
        token = self._tokens.get(scopes)
        return f"Bearer {token}" if token else None

    def answer(self, challenge: Challenge | None, repo: str, scopes: tuple[str, ...], sent) -> bool:
        """Obtain what the challenge asks for; True when a retry would send something new."""
        if challenge is None:
            return False
        cred = self.login(repo)
        if challenge.scheme == "basic":
            self._basic = True
            return cred is not None and cred.basic() != sent
        if challenge.scheme != "bearer" or not challenge.realm:
            return False
        token = self._token(challenge, cred, scopes)
        if not token or f"Bearer {token}" == sent:
            return False
        self._tokens[scopes] = token
        return True

    def _token(self, challenge: Challenge, cred: Credential | None, scopes) -> str | None:
        realm = challenge.realm
        if urlsplit(realm).scheme not in ("http", "https"):
            raise SourceError(f"the registry {self.registry} named an invalid token realm")
        wanted = [s for s in (challenge.scope, *scopes) if s]
        params = [("service", challenge.service)] if challenge.service else []
        params += [("scope", s) for s in dict.fromkeys(wanted)]
        send_login = cred is not None and _may_send_login(realm)
        doc = self.fetch_token(realm, params, cred.basic() if send_login else None)
        token = doc.get("token") or doc.get("access_token")
        return token if isinstance(token, str) and token else None
