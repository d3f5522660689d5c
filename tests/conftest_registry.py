"""Pytest fixtures for real registries; the machinery is in tests/registry.py.

Load with ``pytest_plugins = ["tests.conftest_registry"]`` in a test module. Every registry is
session-scoped (started once, on its own port and storage) and stopped at the end.
"""

from __future__ import annotations

import contextlib

import pytest

from tests.registry import (
    PASSWORD,
    TOKEN_PASSWORD,
    TOKEN_USER,
    USER,
    Server,
    TokenService,
    docker_config,
    htpasswd_file,
    make_ca,
    make_server,
)


@contextlib.contextmanager
def running(server: Server):
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """A plain-http registry without auth."""
    with running(make_server(tmp_path_factory.mktemp("reg-plain"), "plain")) as server:
        yield server


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory):
    """A registry asking for a Basic login (htpasswd); `extra["docker_config"]` logs in."""
    root = tmp_path_factory.mktemp("reg-auth")
    pw = htpasswd_file(root / "htpasswd", USER, PASSWORD)
    server = make_server(root, "auth", auth={"htpasswd": {"realm": "mlxk-test", "path": str(pw)}})
    with running(server):
        server.extra["docker_config"] = docker_config(root / "docker", server.host, USER, PASSWORD)
        yield server


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory):
    """An https registry whose certificate a private CA signed (`ca_file`)."""
    root = tmp_path_factory.mktemp("reg-tls")
    pki = make_ca(root / "pki")
    tls = {"tls": {"certificate": str(pki["cert"]), "key": str(pki["key"])}}
    server = make_server(root, "tls", http=tls)
    server.scheme, server.ca_file = "https", pki["ca"]
    with running(server):
        yield server


@pytest.fixture(scope="session")
def proxy_registry(tmp_path_factory, registry):
    """A pull-through cache in front of `registry` (pushes go to the upstream)."""
    server = make_server(
        tmp_path_factory.mktemp("reg-proxy"), "proxy", proxy={"remoteurl": registry.url}
    )
    server.extra["upstream"] = registry
    with running(server):
        yield server


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory):
    """A registry with `auth: token` (Bearer), and its token service in `extra["tokens"]`."""
    root = tmp_path_factory.mktemp("reg-token")
    tokens = TokenService(root / "token", service="mlxk-test-registry", issuer="mlxk-test-issuer")
    auth = {
        "token": {
            "realm": tokens.realm,
            "service": tokens.service,
            "issuer": tokens.issuer,
            "rootcertbundle": str(tokens.cert),
        }
    }
    server = make_server(root, "token", auth=auth)
    server.extra["tokens"] = tokens
    try:
        with running(server):
            server.extra["docker_config"] = docker_config(
                root / "docker", server.host, TOKEN_USER, TOKEN_PASSWORD
            )
            yield server
    finally:
        tokens.close()
