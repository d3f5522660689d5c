"""Real CNCF distribution registries for tests (Debian's `docker-registry`, 2.8), on loopback.

The fixtures are in ``tests/conftest_registry.py``, a plugin a test module loads with
``pytest_plugins = ["tests.conftest_registry"]`` (tests/conftest.py is left as it is).

Each registry is ``docker-registry serve CONFIG`` with its own config and storage under a
pytest tmp dir, on a free 127.0.0.1 port; start waits until ``/v2/`` answers, stop ends the
process (and only it) and waits for it. Kinds:

``registry``        plain http, no auth (the upstream of ``proxy_registry``)
``auth_registry``   htpasswd (bcrypt, made with ``htpasswd -B``): Basic challenge
``tls_registry``    https with a certificate from a private CA made here with ``openssl``
``proxy_registry``  a pull-through cache (``proxy: remoteurl:``) in front of ``registry``
``token_registry``  ``auth: token``: a Bearer challenge naming a small token service run in
                    this process (JWTs signed with ``openssl``; basic login checked)

Missing ``docker-registry``, ``htpasswd`` or ``openssl`` is a failure, never a skip:
``scripts/setup.sh`` installs them.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

USER, PASSWORD = "alice", "pw-Alice-s3cret-9f2"  # the htpasswd registry's login
TOKEN_USER, TOKEN_PASSWORD = "bob", "pw-Bob-t0ken-77c1"  # the token service's login
SECRET = "mlxk-test-upload-state-secret"  # fixed, so upload sessions survive a restart


def tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(
            f"{name} is not installed: run scripts/setup.sh (apt: docker-registry "
            "apache2-utils openssl)"
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """One running registry: `host` is "127.0.0.1:PORT"; `stop()` ends it."""

    name: str
    root: Path
    config: dict
    scheme: str = "http"
    ca_file: Path | None = None
    port: int = 0
    proc: subprocess.Popen | None = None
    extra: dict = field(default_factory=dict)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def log(self) -> Path:
        return self.root / "registry.log"

    def start(self) -> Server:
        self.port = self.port or free_port()
        self.config["http"]["addr"] = self.host
        path = self.root / "config.yml"
        path.write_text(json.dumps(self.config, indent=2))  # YAML is a superset of JSON
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [tool("docker-registry"), "serve", str(path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 15.0) -> None:
        ctx = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                urllib.request.urlopen(f"{self.url}/v2/", timeout=1, context=ctx).close()
                return
            except urllib.error.HTTPError:  # 401 from an auth registry: it is up
                return
            except OSError:
                time.sleep(0.05)
        tail = self.log.read_text(errors="replace")[-2000:]
        self.stop()
        pytest.fail(f"registry {self.name} did not start on {self.host}:\n{tail}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def base_config(root: Path) -> dict:
    return {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(root / "data")},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": "", "secret": SECRET},
    }


def make_server(root: Path, name: str, **sections) -> Server:
    root.mkdir(parents=True, exist_ok=True)
    config = base_config(root)
    for key, value in sections.items():
        if key == "http":
            config["http"].update(value)
        else:
            config[key] = value
    return Server(name=name, root=root, config=config)


# ---------------------------------------------------------------- certificates (openssl)
def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([tool("openssl"), *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _self_signed(d: Path, name: str, subject: str, *extensions: str) -> None:
    """`d/NAME.key` and a self-signed `d/NAME.pem` for `subject`, valid two days."""
    d.mkdir(parents=True, exist_ok=True)
    key, pem = f"{name}.key", f"{name}.pem"
    new = ("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2")
    _openssl(*new, "-keyout", key, "-out", pem, "-subj", subject, *extensions, cwd=d)


def make_ca(d: Path) -> dict[str, Path]:
    """A private CA and a server certificate for 127.0.0.1 / localhost signed by it."""
    _self_signed(
        d,
        "ca",
        "/CN=mlxk test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
        cwd=d,
    )
    (d / "san.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        cwd=d,
    )
    return {"ca": d / "ca.pem", "cert": d / "server.pem", "key": d / "server.key"}


def htpasswd_file(path: Path, user: str, password: str) -> Path:
    out = subprocess.run(
        [tool("htpasswd"), "-Bbn", user, password],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    path.write_text(out.stdout)
    return path


def docker_config(d: Path, host: str, user: str, password: str) -> Path:
    """A $DOCKER_CONFIG directory whose config.json logs in to host."""
    d.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (d / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return d


# ---------------------------------------------------------------- token service (Bearer)
def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenService:
    """Issues registry JWTs (RS256, x5c header) for a checked basic login, like a real one."""

    def __init__(self, d: Path, service: str, issuer: str):
        _self_signed(d, "token", "/CN=mlxk test token signer")
        _openssl("x509", "-in", "token.pem", "-outform", "DER", "-out", "token.der", cwd=d)
        self.dir, self.service, self.issuer = d, service, issuer
        self.cert = d / "token.pem"
        self.requests: list[dict] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/token"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def sign(self, scopes: list[str], subject: str) -> str:
        header = {
            "alg": "RS256",
            "typ": "JWT",
            "x5c": [base64.b64encode((self.dir / "token.der").read_bytes()).decode()],
        }
        now = int(time.time())
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + 600,
            "nbf": now - 60,
            "iat": now,
            "jti": f"{now}-{len(self.requests)}",
            "access": access,
        }
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        sig = subprocess.run(
            [tool("openssl"), "dgst", "-sha256", "-sign", str(self.dir / "token.key")],
            input=signing_input.encode(),
            capture_output=True,
            check=True,
            timeout=60,
        )
        return f"{signing_input}.{_b64url(sig.stdout)}"

    def _handler(self):
        service = self
        good = "Basic " + base64.b64encode(f"{TOKEN_USER}:{TOKEN_PASSWORD}".encode()).decode()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                query = parse_qs(urlsplit(self.path).query)
                auth = self.headers.get("Authorization")
                service.requests.append(
                    {"scopes": query.get("scope", []), "login": auth is not None}
                )
                if auth != good:
                    self.send_response(401)
                    self.end_headers()
                    return
                body = json.dumps({"token": service.sign(query.get("scope", []), TOKEN_USER)})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

        return Handler
