"""Everything a registry client takes from outside, as one value.

`mlxk.settings.Settings.from_env()` (the only reader of `os.environ`) builds it with
`RegistrySettings.from_env(environ)` from these variables of the mapping it read:

    MLXK_INSECURE_REGISTRIES  hosts (host or host:port, comma or space separated) that may be
                              spoken to over plain http; loopback hosts always may
    SSL_CERT_FILE             a PEM bundle of the CAs to trust (replaces the system store)
    REGISTRY_AUTH_FILE, XDG_RUNTIME_DIR, DOCKER_CONFIG, HOME   where logins are read from
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .credentials import default_files
from .reference import SCHEME, parse


@dataclass(frozen=True)
class RegistrySettings:
    insecure: frozenset[str] = frozenset()  # hosts allowed plain http besides loopback ones
    ca_file: str | None = None  # PEM bundle to verify TLS with, instead of the system store
    credential_files: tuple[Path, ...] = ()  # docker/podman auth files, first match wins
    timeout: float = 60.0  # seconds without a byte before a request fails
    connect_timeout: float = 10.0
    user_agent: str = "mlxk"

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides) -> RegistrySettings:
        """The settings a given environment mapping names (never `os.environ` itself)."""
        env = environ
        hosts = re.split(r"[,\s]+", env.get("MLXK_INSECURE_REGISTRIES", "").strip())
        values = {
            "insecure": frozenset(h for h in hosts if h),
            "ca_file": env.get("SSL_CERT_FILE", "").strip() or None,
            "credential_files": default_files(env),
        }
        values.update(overrides)
        return cls(**values)

    def allows_http(self, host: str) -> bool:
        """Plain http is allowed for loopback hosts and for hosts the user listed."""
        ref = parse(f"{SCHEME}{host}/x")
        return host in self.insecure or ref.hostname in self.insecure or ref.is_loopback
