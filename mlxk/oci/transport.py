"""One registry's HTTP: scheme (https, or http where allowed), TLS trust, auth retry, errors.

Every failure becomes a one-line `SourceError` naming the registry and what to do. Nothing
here retries beyond answering an auth challenge once: the store's resume and the upload
sessions make running a command again cheap. Requests are counted in `stats` (per method, and
bytes sent/received) so callers and tests can see what a push or pull cost.
"""

from __future__ import annotations

import json
import os
import ssl
from collections import Counter
from urllib.parse import urlsplit

import httpx2

from ..errors import SourceError, UserError
from .auth import Authorizer, parse_challenge
from .credentials import Credential, find
from .settings import RegistrySettings

LOGIN_HINT = (
    "log in with `docker login {host}` or `podman login {host}`: mlxk reads "
    "$DOCKER_CONFIG/config.json (default ~/.docker/config.json) and $REGISTRY_AUTH_FILE"
)
TLS_HINT = "set SSL_CERT_FILE to the PEM file of the CA that signed the registry's certificate"


def ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """Verify against ca_file when given, else the system store (never SSL_* read here)."""
    if ca_file:
        try:
            return ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError):
            raise UserError(
                f"SSL_CERT_FILE={ca_file}: no CA certificates can be read from it",
                hint="point it at a PEM file of CA certificates, or unset it",
            ) from None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    paths = ssl.get_default_verify_paths()
    cafile = paths.openssl_cafile if os.path.isfile(paths.openssl_cafile or "") else None
    capath = paths.openssl_capath if os.path.isdir(paths.openssl_capath or "") else None
    if cafile or capath:
        ctx.load_verify_locations(cafile, capath)
    return ctx


def _cause(e: BaseException, kind: type) -> BaseException | None:
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, kind):
            return e
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


def transport_error(e: Exception, host: str, what: str) -> SourceError:
    """A failed connection -> one line naming the registry (never the request's headers)."""
    cert = _cause(e, ssl.SSLCertVerificationError)
    if cert is not None:
        reason = getattr(cert, "verify_message", None) or "certificate verify failed"
        return SourceError(
            f"{what}: the registry {host} has a TLS certificate mlxk does not trust ({reason})",
            hint=TLS_HINT,
        )
    if isinstance(e, httpx2.TimeoutException):
        return SourceError(f"{what}: the registry {host} did not answer in time")
    return SourceError(
        f"{what}: cannot reach the registry {host} ({type(e).__name__})",
        hint="check the host and port, and that the registry is running and reachable",
    )


def _oci_error(resp: httpx2.Response) -> tuple[str, str]:
    """(code, message) of the first entry of an OCI error body, if there is one."""
    try:
        body = resp.read()[:65536]
        first = json.loads(body)["errors"][0]
        return str(first.get("code", ""))[:40], str(first.get("message", ""))[:120]
    except Exception:
        return "", ""


def status_error(resp: httpx2.Response, what: str, host: str, login: Credential | None):
    """An unexpected HTTP status -> SourceError (401/403 name the login file, never secrets)."""
    status = resp.status_code
    code, message = _oci_error(resp)
    hint = LOGIN_HINT.format(host=host)
    if status == 401 and login is None:
        return SourceError(f"{what}: the registry {host} wants a login (HTTP 401)", hint=hint)
    if status == 401:
        return SourceError(
            f"{what}: the registry {host} refused the login for {login.username!r} from "
            f"{login.origin} (HTTP 401)",
            hint=hint,
        )
    if status == 403:
        return SourceError(f"{what}: access denied by the registry {host} (HTTP 403)", hint=hint)
    if status == 404:
        missing = {
            "NAME_UNKNOWN": "no such repository",
            "MANIFEST_UNKNOWN": "no such tag or manifest",
            "BLOB_UNKNOWN": "no such blob",
        }.get(code, "not found")
        return SourceError(
            f"{what}: {missing} at the registry {host} (HTTP 404)",
            hint="check the repository and tag; `mlxk push` creates them",
        )
    detail = f" ({code}: {message})" if code else ""
    return SourceError(f"{what}: the registry {host} answered HTTP {status}{detail}")


class Transport:
    """HTTP to one registry host, with its logins, tokens and chosen scheme."""

    def __init__(self, host: str, settings: RegistrySettings):
        self.host = host
        self.settings = settings
        self.stats: Counter = Counter()
        self._base: str | None = None
        self._logins: dict[str, Credential | None] = {}
        timeout = httpx2.Timeout(settings.timeout, connect=settings.connect_timeout)
        self._http = httpx2.Client(
            verify=ssl_context(settings.ca_file),
            timeout=timeout,
            trust_env=False,
            headers={"User-Agent": settings.user_agent},
        )
        self.auth = Authorizer(host, self.login, self._fetch_token)

    def close(self) -> None:
        self._http.close()

    def login(self, repo: str) -> Credential | None:
        if repo not in self._logins:
            self._logins[repo] = find(self.host, repo, self.settings.credential_files)
        return self._logins[repo]

    # ------------------------------------------------------------ scheme
    @property
    def base(self) -> str:
        if self._base is None:
            self._base = self._pick_scheme()
        return self._base

    def _pick_scheme(self) -> str:
        """https; where http is allowed, http when the host does not speak TLS at all."""
        https = f"https://{self.host}"
        if not self.settings.allows_http(self.host):
            return https
        try:
            self._http.get(f"{https}/v2/").close()
            return https
        except httpx2.HTTPError as e:
            tls = _cause(e, ssl.SSLError)
            if tls is None or isinstance(tls, ssl.SSLCertVerificationError):
                raise transport_error(e, self.host, f"oci://{self.host}") from None
            return f"http://{self.host}"

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def same_origin(self, url: str) -> bool:
        a, b = urlsplit(url), urlsplit(self.base)
        return (a.scheme, a.netloc) == (b.scheme, b.netloc)

    # ------------------------------------------------------------ requests
    def _send(self, method, url, headers, content, stream, follow, what) -> httpx2.Response:
        try:
            request = self._http.build_request(method, url, headers=headers, content=content)
            response = self._http.send(request, stream=stream, follow_redirects=follow)
        except httpx2.HTTPError as e:
            raise transport_error(e, self.host, what) from None
        self.stats[method] += 1
        if isinstance(content, bytes):
            self.stats["bytes_sent"] += len(content)
        return response

    def request(
        self,
        method: str,
        url: str,
        *,
        repo: str,
        scopes: tuple[str, ...],
        what: str,
        headers: dict | None = None,
        content: bytes | None = None,
        stream: bool = False,
        follow: bool = False,
    ) -> httpx2.Response:
        """Send once; on a 401 challenge obtain credentials or a token and send once more."""
        for attempt in (0, 1):
            sent = self.auth.header(repo, scopes) if self.same_origin(url) else None
            full = {**(headers or {}), **({"Authorization": sent} if sent else {})}
            response = self._send(method, url, full, content, stream, follow, what)
            if response.status_code != 401 or attempt or not self.same_origin(url):
                return response
            challenge = parse_challenge(response.headers.get("www-authenticate"))
            if not self.auth.answer(challenge, repo, scopes, sent):
                return response
            response.close()
        return response  # pragma: no cover - the loop always returns

    def fail(self, response: httpx2.Response, what: str, repo: str) -> SourceError:
        """The SourceError for a response with an unexpected status (and close it)."""
        error = status_error(response, what, self.host, self.login(repo))
        response.close()
        return error

    def _fetch_token(self, realm: str, params: list, authorization: str | None) -> dict:
        what = f"oci://{self.host}"
        headers = {"Authorization": authorization} if authorization else {}
        try:
            response = self._http.get(realm, params=params, headers=headers)
        except httpx2.HTTPError as e:
            raise transport_error(e, urlsplit(realm).netloc or self.host, what) from None
        self.stats["token"] += 1
        if response.status_code in (401, 403):
            raise SourceError(
                f"{what}: the token service of the registry {self.host} refused "
                f"{'the login' if authorization else 'an anonymous request'} "
                f"(HTTP {response.status_code})",
                hint=LOGIN_HINT.format(host=self.host),
            )
        try:
            doc = response.json()
        except ValueError:
            doc = None
        if response.status_code != 200 or not isinstance(doc, dict):
            raise SourceError(
                f"{what}: the token service of the registry {self.host} answered "
                f"HTTP {response.status_code} without a token"
            )
        return doc
