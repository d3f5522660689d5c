"""A real, local Hugging Face-compatible hub for tests, backed by olah.

This module is a pytest plugin (loaded from ``tests/conftest.py``).  It starts
one olah (https://github.com/vtuber-plan/olah) server per test session on
127.0.0.1, in offline mode, serving git repositories that tests create with
:class:`Hub`.

Fixtures
--------
``hub`` (session)
    The running :class:`Hub`.
``hf_env`` (function)
    Points huggingface_hub at the hub (``HF_ENDPOINT``), gives it a fresh,
    empty ``HF_HOME`` under ``tmp_path`` and returns that path.

Locating olah
-------------
``$MLXK_OLAH_CLI``, else ``<repo root>/.venv-olah/bin/olah-cli``, else
``olah-cli`` on ``PATH``.  Missing olah is a test failure, never a skip.

What olah 0.5.4 does with local repos (verified by ``tests/test_hubserver.py``)
-------------------------------------------------------------------------------
* Layout: ``<mirrors-path>/models/<org>/<name>`` is a NON-bare git repo; LFS
  content is read from ``.git/lfs/objects/<aa>/<bb>/<sha256>``.  A blob is
  treated as an LFS pointer only if it is 121..149 bytes long and matches the
  pointer format (git-lfs pointers are always in that range).
* Only requests that name a revision are answered.  ``GET /api/models/<id>``
  (what ``HfApi.repo_info(revision=None)`` calls) is 401 RepoNotFound: in
  offline mode olah looks for "the newest commit" in its own cache only.
* Routes used by huggingface_hub that work, for a branch, tag or full sha:
  ``/api/models/<id>/revision/<rev>`` (repo_info/model_info: ``sha``,
  ``siblings`` with names only, no sizes or hashes even with
  ``files_metadata=True``), ``/api/models/<id>/tree/<rev>/<path>?recursive=``
  (list_repo_tree: sizes, git blob ids, and ``lfs.sha256``/``size`` for LFS
  files), ``/api/models/<id>/refs`` (list_repo_refs), ``/<id>/resolve/<rev>/<path>``
  (also ``/models/<id>/resolve/...``).
* Nothing is cached for local repos: every request opens the git repo anew,
  re-resolves the revision and re-reads the blob / LFS object from disk.  A
  moved branch is visible to the very next request and a corrupted LFS object
  is served corrupted at once.  ``metadata-cache-ttl`` only affects upstream
  (online) lookups; it is set to 0 anyway, so :meth:`Hub.restart` is never
  needed for freshness (it exists for tests of client behaviour across a
  server restart).
* resolve GET: status 200, chunked, *no* Content-Length/ETag/X-Repo-Commit
  headers, and ``Range`` is ignored (200 with the whole body, no
  Content-Range).  resolve HEAD: 200 with ``content-length``,
  ``x-repo-commit`` and ``etag`` (git blob id for regular files; sha256 of
  the LFS object *as currently on disk* for LFS files).
* Errors: unknown repo, unknown branch/tag, and unknown file (HEAD) are all
  401 with ``x-error-code: RepoNotFound`` (huggingface_hub raises
  RepositoryNotFoundError).  Unknown file on GET, and an unknown full 40-hex
  sha in an existing repo (GET and HEAD), are 500.  A full sha in an unknown
  repo is 404 EntryNotFound.  Metadata routes with an unknown revision: 401.
  A resolve URL naming a directory returns the raw git tree object (200).
* ``tree?expand=true`` computes ``lastCommit`` from the repo's checked-out
  HEAD, not from the requested revision.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
OLAH_ENV_VAR = "MLXK_OLAH_CLI"
STARTUP_TIMEOUT = 30.0
INSTALL_HINT = (
    "olah (a self-hosted Hugging Face mirror) is required for the hub tests but was not "
    "found. Install it into its own venv:\n"
    "    python3 -m venv .venv-olah && .venv-olah/bin/pip install olah==0.5.4\n"
    f"or set {OLAH_ENV_VAR}=/path/to/olah-cli, or put olah-cli on PATH."
)

# Fixed identity and clock for every git commit so commit shas depend only on
# the content, the message, the parent and the commit's position in the repo.
GIT_EPOCH = 1_700_000_000
_GIT_BASE_ENV = {
    "GIT_AUTHOR_NAME": "mlxk-tests",
    "GIT_AUTHOR_EMAIL": "tests@mlxk.invalid",
    "GIT_COMMITTER_NAME": "mlxk-tests",
    "GIT_COMMITTER_EMAIL": "tests@mlxk.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
    # Branch switches keep pointer files in the work tree: olah never reads the
    # work tree, and a test may have corrupted an LFS object on purpose.
    "GIT_LFS_SKIP_SMUDGE": "1",
}

_repo_counter = itertools.count(1)
_counter_lock = threading.Lock()


def unique_repo_id(prefix: str = "t") -> str:
    """A repo id unique within this process, e.g. ``org/t-3``."""
    with _counter_lock:
        n = next(_repo_counter)
    return f"org/{prefix}-{n}"


def find_olah_cli() -> str:
    """Path of olah-cli, or ``pytest.fail`` with install instructions."""
    env = os.environ.get(OLAH_ENV_VAR)
    if env:
        if Path(env).is_file() and os.access(env, os.X_OK):
            return env
        pytest.fail(f"{OLAH_ENV_VAR}={env!r} is not an executable file.\n{INSTALL_HINT}")
    local = REPO_ROOT / ".venv-olah" / "bin" / "olah-cli"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which("olah-cli")
    if found:
        return found
    pytest.fail(INSTALL_HINT)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _split_repo_id(repo_id: str) -> tuple[str, str]:
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts) or any(p in (".", "..") for p in parts):
        raise ValueError(f"repo_id must look like 'org/name', got {repo_id!r}")
    return parts[0], parts[1]


class Hub:
    """A running olah server plus helpers to create and change its git repos.

    ``endpoint`` is ``http://127.0.0.1:<port>``; ``root`` is the mirrors dir, so
    repo ``org/name`` lives in ``root / "models" / "org" / "name"``.
    """

    def __init__(self, olah_cli: str, workdir: Path) -> None:
        self.olah_cli = olah_cli
        self.workdir = workdir
        self.root = workdir / "mirrors"
        self.cache_dir = workdir / "cache"
        self.log_dir = workdir / "logs"
        self.config_path = workdir / "olah.toml"
        self.stdout_path = workdir / "olah.stdout.log"
        for d in (self.root / "models", self.cache_dir, self.log_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.port = 0
        self.endpoint = ""
        self.startup_seconds = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stdout = None

    # ------------------------------------------------------------------ server
    def _write_config(self) -> None:
        netloc = f"127.0.0.1:{self.port}"
        self.config_path.write_text(
            "[basic]\n"
            'host = "127.0.0.1"\n'
            f"port = {self.port}\n"
            f'repos-path = "{self.cache_dir.as_posix()}"\n'
            f'mirrors-path = ["{self.root.as_posix()}"]\n'
            "metadata-cache-ttl = 0\n"
            'mirror-scheme = "http"\n'
            f'mirror-netloc = "{netloc}"\n'
            f'mirror-lfs-netloc = "{netloc}"\n'
            "\n[accessibility]\n"
            "offline = true\n"
        )

    def start(self, port: int | None = None) -> None:
        """Start olah (on ``port`` or a free one) and wait until it answers."""
        if self._proc is not None:
            raise RuntimeError("hub already running")
        attempts = 1 if port else 3
        for attempt in range(attempts):
            self.port = port or _free_port()
            self.endpoint = f"http://127.0.0.1:{self.port}"
            self._write_config()
            started = time.monotonic()
            self._stdout = open(self.stdout_path, "ab")  # noqa: SIM115 - closed in stop()
            env = dict(os.environ)
            for var in ("HF_ENDPOINT", "HF_TOKEN", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
                env.pop(var, None)
            self._proc = subprocess.Popen(
                [self.olah_cli, "-c", str(self.config_path), "--log-path", str(self.log_dir)],
                cwd=self.workdir,
                stdout=self._stdout,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
            if self._wait_ready(started + STARTUP_TIMEOUT):
                self.startup_seconds = time.monotonic() - started
                return
            exited = self._proc.poll() is not None
            self.stop()
            if not exited or attempt == attempts - 1:
                break  # a timeout is not a port race: do not retry
        pytest.fail(
            f"olah did not start serving on {self.endpoint} within {STARTUP_TIMEOUT:.0f}s "
            f"(cli: {self.olah_cli}).\n--- log tail ---\n{self.log_tail()}"
        )

    def _wait_ready(self, deadline: float) -> bool:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        probe = f"{self.endpoint}/api/models/hubserver/probe/revision/main"
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                return False
            try:
                with opener.open(probe, timeout=2):
                    return True
            except urllib.error.HTTPError:
                return True  # any HTTP answer (401 here) means it is serving
            except OSError:
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._stdout is not None:
            self._stdout.close()
            self._stdout = None

    def restart(self) -> None:
        """Stop and start olah on the same port (olah keeps no state for local repos)."""
        port = self.port
        self.stop()
        self.start(port=port)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for path in (self.stdout_path, self.log_dir / "olah.log"):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"[{path}]\n" + "\n".join(text))
        return "\n".join(out) or "(no log output)"

    def url(self, repo_id: str, revision: str, path: str) -> str:
        """The resolve URL of ``path`` at ``revision``."""
        return f"{self.endpoint}/{repo_id}/resolve/{revision}/{path}"

    # ------------------------------------------------------------------- repos
    def repo_dir(self, repo_id: str) -> Path:
        org, name = _split_repo_id(repo_id)
        return self.root / "models" / org / name

    def lfs_object_path(self, repo_id: str, sha256_hex: str) -> Path:
        """The server-side file olah serves for the LFS object ``sha256_hex``."""
        h = sha256_hex.lower()
        return self.repo_dir(repo_id) / ".git" / "lfs" / "objects" / h[:2] / h[2:4] / h

    def _git(self, repo_id: str, *args: str, env: Mapping[str, str] | None = None) -> str:
        full_env = {**os.environ, **_GIT_BASE_ENV, **(env or {})}
        res = subprocess.run(
            ["git", *args],
            cwd=self.repo_dir(repo_id),
            env=full_env,
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            raise RuntimeError(
                f"git {' '.join(args)} failed in {repo_id} ({res.returncode}):\n"
                f"{res.stdout}{res.stderr}"
            )
        return res.stdout.strip()

    def rev_parse(self, repo_id: str, rev: str) -> str:
        """40-hex commit sha of ``rev`` (branch, tag or sha) in the server-side repo."""
        return self._git(repo_id, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")

    def _write_files(self, repo_id: str, files: Mapping[str, bytes | None]) -> None:
        base = self.repo_dir(repo_id)
        for rel, data in files.items():
            if rel.startswith("/") or ".." in Path(rel).parts or rel.startswith(".git/"):
                raise ValueError(f"bad repo path {rel!r}")
            target = base / rel
            if data is None:
                if not target.exists():
                    raise FileNotFoundError(f"{rel!r} does not exist in {repo_id}")
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)

    def _commit_all(self, repo_id: str, message: str) -> str:
        self._git(repo_id, "add", "-A")
        n = int(self._git(repo_id, "rev-list", "--count", "--all") or "0")
        stamp = f"@{GIT_EPOCH + 60 * n} +0000"
        self._git(
            repo_id,
            "commit",
            "-q",
            "--allow-empty",
            "--no-verify",
            "-m",
            message,
            env={"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp},
        )
        return self._git(repo_id, "rev-parse", "HEAD")

    def create_repo(
        self,
        repo_id: str,
        files: Mapping[str, bytes],
        message: str = "init",
        lfs_patterns: tuple[str, ...] | list[str] = ("*.safetensors", "*.bin"),
    ) -> str:
        """Create repo ``models/<org>/<name>`` with one commit on ``main``; return its sha.

        Files matching ``lfs_patterns`` are stored with git-lfs, tracked via a
        committed ``.gitattributes`` (as on huggingface.co), unless ``files``
        has its own ``.gitattributes`` or ``lfs_patterns`` is empty.  Commit
        identity and dates are fixed, so equal content gives equal shas.
        """
        d = self.repo_dir(repo_id)
        if d.exists():
            raise FileExistsError(f"repo {repo_id} already exists at {d}")
        d.mkdir(parents=True)
        try:
            self._git(repo_id, "init", "-q", "-b", "main")
            self._git(repo_id, "lfs", "install", "--local", "--skip-repo")
            files = dict(files)
            if lfs_patterns and ".gitattributes" not in files:
                files[".gitattributes"] = "".join(
                    f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in lfs_patterns
                ).encode()
            self._write_files(repo_id, files)
            return self._commit_all(repo_id, message)
        except BaseException:
            shutil.rmtree(d, ignore_errors=True)
            raise

    def commit(
        self,
        repo_id: str,
        files: Mapping[str, bytes | None],
        message: str = "update",
        branch: str = "main",
    ) -> str:
        """Add/overwrite (bytes) or delete (None) files on existing ``branch``; return the sha.

        The branch moves immediately for clients (olah caches nothing).
        """
        if not self._git(repo_id, "branch", "--list", branch):
            raise ValueError(f"no branch {branch!r} in {repo_id}; create it with Hub.branch()")
        self._git(repo_id, "checkout", "-q", "-f", branch, "--")
        self._git(repo_id, "clean", "-q", "-f", "-d")
        self._write_files(repo_id, files)
        return self._commit_all(repo_id, message)

    def tag(self, repo_id: str, tag: str, rev: str = "main") -> str:
        """Point lightweight tag ``tag`` at ``rev`` (moving it if it exists); return the sha."""
        self._git(repo_id, "check-ref-format", f"refs/tags/{tag}")
        sha = self.rev_parse(repo_id, rev)
        self._git(repo_id, "update-ref", f"refs/tags/{tag}", sha)
        return sha

    def branch(self, repo_id: str, name: str, rev: str = "main") -> str:
        """Point branch ``name`` at ``rev`` (creating or moving it); return the sha."""
        self._git(repo_id, "check-ref-format", "--branch", name)
        sha = self.rev_parse(repo_id, rev)
        self._git(repo_id, "update-ref", f"refs/heads/{name}", sha)
        return sha

    def delete_ref(self, repo_id: str, ref: str) -> None:
        """Delete a full ref, e.g. ``refs/tags/v1`` or ``refs/heads/dev``."""
        self._git(repo_id, "update-ref", "-d", ref)


# Variables that would move huggingface_hub's caches or token away from HF_HOME, or force it
# offline: unset wherever a test (or benchmark) points clients at the test hub.
HF_VARS = (
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_TOKEN_PATH",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "HF_ASSETS_CACHE",
    "HUGGINGFACE_ASSETS_CACHE",
    "HF_XET_CACHE",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HUGGINGFACE_CO_STAGING",
)


def _hf_constants_for_env() -> dict[str, object]:
    """Values ``huggingface_hub.constants`` would have under the current env."""
    spec = importlib.util.find_spec("huggingface_hub.constants")
    assert spec is not None and spec.loader is not None
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)
    return {k: v for k, v in vars(fresh).items() if not k.startswith("__")}


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """One olah server for the whole session (one per xdist worker)."""
    olah_cli = find_olah_cli()
    h = Hub(olah_cli, tmp_path_factory.mktemp("hub"))
    h.start()
    try:
        yield h
    finally:
        h.stop()


@pytest.fixture
def hf_env(hub: Hub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point huggingface_hub at ``hub`` with a fresh HF_HOME; return the HF_HOME path.

    Sets ``HF_ENDPOINT``, ``HF_HOME``, ``HF_HUB_DISABLE_TELEMETRY=1``; removes
    ``HF_TOKEN`` and every variable that would move caches/tokens out of
    HF_HOME or force offline mode.  huggingface_hub reads its env only at
    import, so the already-imported ``huggingface_hub.constants`` (and the
    module-level ``HfApi`` behind ``huggingface_hub.model_info`` & co.) are
    patched too, for in-process callers.  Everything is undone after the test.
    """
    hf_home = tmp_path / "hf_home"
    hf_home.mkdir()
    try:
        import huggingface_hub.constants as hf_constants
        import huggingface_hub.hf_api as hf_api
    except ImportError:  # pragma: no cover - huggingface_hub is a hard dependency
        hf_constants = hf_api = None

    for var in HF_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    no_proxy = ",".join(
        filter(None, [os.environ.get("NO_PROXY") or os.environ.get("no_proxy"), "127.0.0.1"])
    )
    monkeypatch.setenv("NO_PROXY", no_proxy)
    monkeypatch.setenv("no_proxy", no_proxy)

    if hf_constants is not None:
        for name, value in _hf_constants_for_env().items():
            current = getattr(hf_constants, name, None)
            with contextlib.suppress(Exception):
                if type(value) is type(current) and value == current:
                    continue
            if value is None or isinstance(value, str | bool | int | float | Path):
                monkeypatch.setattr(hf_constants, name, value, raising=False)
        module_api = getattr(hf_api, "api", None)
        if module_api is not None:
            monkeypatch.setattr(module_api, "endpoint", hub.endpoint)
    return hf_home
