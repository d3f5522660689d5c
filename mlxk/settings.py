"""Settings from the environment, read once into one frozen value and passed in; the only
module that reads `os.environ` (nothing edits it in place).

A variable that names a place or a credential and is set but empty counts as unset (ADR-022
bug 3: HF_HOME="" became Path(".")). Child processes (converters, `mlxk run`) get
`Settings.child_env()`: the same environment with those empty variables dropped.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the registry's settings are worked out when a registry is used
    from .oci.settings import RegistrySettings

EMPTY_IS_UNSET = (
    "HF_HOME",
    "HF_ENDPOINT",
    "HF_TOKEN",
    "MLXK_WORKSPACE_HOME",
    "MLXK_STORE",
    "MLXK_ALLOWED_SIGNERS",
    "MLXK_REMOTE",
    "SSL_CERT_FILE",
    "DOCKER_CONFIG",
    "REGISTRY_AUTH_FILE",
)


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser().resolve() if value else None


@dataclass(frozen=True)
class Settings:
    store: Path | None = None  # MLXK_STORE
    workspace_home: Path | None = None  # MLXK_WORKSPACE_HOME
    hf_endpoint: str | None = None  # HF_ENDPOINT
    hf_token: str | None = field(default=None, repr=False)  # HF_TOKEN (never shown)
    debug: bool = False  # MLXK_DEBUG
    allowed_signers: Path | None = None  # MLXK_ALLOWED_SIGNERS: who may sign imported bundles
    remote: str | None = None  # MLXK_REMOTE: oci://HOST[:PORT]/PREFIX, the fleet's registry
    link: str | None = None  # MLXK_LINK: how sync places files (checked where it is used)
    environ: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        for var in EMPTY_IS_UNSET:
            if var in env and not env[var].strip():
                del env[var]
        get = env.get
        return cls(
            store=_path(get("MLXK_STORE", "").strip()),
            workspace_home=_path(get("MLXK_WORKSPACE_HOME", "").strip()),
            hf_endpoint=get("HF_ENDPOINT", "").strip() or None,
            hf_token=get("HF_TOKEN", "").strip() or None,
            debug=bool(get("MLXK_DEBUG")),
            allowed_signers=_path(get("MLXK_ALLOWED_SIGNERS", "").strip()),
            remote=get("MLXK_REMOTE", "").strip() or None,
            link=get("MLXK_LINK", "").strip() or None,
            environ=tuple(sorted(env.items())),
        )

    @cached_property
    def registry(self) -> RegistrySettings:
        """MLXK_INSECURE_REGISTRIES, SSL_CERT_FILE, REGISTRY_AUTH_FILE, DOCKER_CONFIG, HOME, ...
        read when a registry is first used (not on the start-up of every command)."""
        from .oci.settings import RegistrySettings

        return RegistrySettings.from_env(dict(self.environ))

    def get(self, name: str) -> str | None:
        """One variable of the environment read at start (empty ones dropped, as above)."""
        return dict(self.environ).get(name)

    def hf_token_path(self) -> Path:
        """Where huggingface_hub keeps the user's login token (`hf auth login`), as it works
        it out: $HF_TOKEN_PATH, else $HF_HOME/token, else $XDG_CACHE_HOME/huggingface/token,
        else ~/.cache/huggingface/token. A child given another HF_HOME is pointed back here."""
        if self.get("HF_TOKEN_PATH"):
            return Path(self.get("HF_TOKEN_PATH")).expanduser()
        cache = self.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
        home = self.get("HF_HOME") or str(Path(cache) / "huggingface")
        return Path(home).expanduser() / "token"

    def child_env(self, drop_prefixes: tuple[str, ...] = (), **extra: str) -> dict[str, str]:
        """The environment for a child process: ours, less `drop_prefixes`, plus `extra`."""
        env = {k: v for k, v in self.environ if not k.startswith(drop_prefixes or ("\0",))}
        env.update(extra)
        return env


def fault_settings() -> tuple[str, str]:
    """(MLXK_FAULT, MLXK_FAULT_SLEEP) for the fault points of the crash tests, read at each
    point: a test sets them for the one process it kills."""
    return os.environ.get("MLXK_FAULT", ""), os.environ.get("MLXK_FAULT_SLEEP", "")
