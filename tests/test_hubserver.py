"""Proves that tests/hubserver.py gives a real, hub-compatible server (olah).

Every test talks to olah over HTTP, either through huggingface_hub's HfApi or
with plain urllib requests against ``/{repo_id}/resolve/{rev}/{path}``.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import RepositoryNotFoundError

from tests.hubserver import Hub, unique_repo_id

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

WEIGHTS = bytes(range(256)) * 12  # 3 KiB, LFS
CONFIG = b'{"model_type": "llama", "hidden_size": 8}\n'
TOKENIZER = b'{"version": "1.0"}\n'


def http(
    method: str, url: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with _OPENER.open(req, timeout=10) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def git_blob_id(data: bytes) -> str:
    return (
        subprocess.run(
            ["git", "hash-object", "--stdin"], input=data, capture_output=True, check=True
        )
        .stdout.decode()
        .strip()
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def api(hub: Hub) -> HfApi:
    return HfApi(endpoint=hub.endpoint, token=False)


@pytest.fixture
def repo(hub: Hub) -> tuple[str, str]:
    repo_id = unique_repo_id()
    files = {
        "model.safetensors": WEIGHTS,
        "config.json": CONFIG,
        "tok/tokenizer.json": TOKENIZER,
    }
    return repo_id, hub.create_repo(repo_id, files)


def test_server_is_up(hub: Hub) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", hub.endpoint)
    assert hub.running
    assert hub.startup_seconds < 30
    assert (hub.root / "models").is_dir()


def test_create_repo_layout_and_determinism(hub: Hub, repo: tuple[str, str]) -> None:
    repo_id, sha = repo
    assert re.fullmatch(r"[0-9a-f]{40}", sha)
    d = hub.repo_dir(repo_id)
    assert d == hub.root / "models" / repo_id
    assert (d / ".git").is_dir()  # non-bare
    assert hub.lfs_object_path(repo_id, sha256(WEIGHTS)).read_bytes() == WEIGHTS
    assert hub.rev_parse(repo_id, "main") == sha
    # Same content, message and position -> same sha, in any repo.
    other = unique_repo_id()
    assert other != repo_id
    files = {"model.safetensors": WEIGHTS, "config.json": CONFIG, "tok/tokenizer.json": TOKENIZER}
    assert hub.create_repo(other, files) == sha
    with pytest.raises(FileExistsError):
        hub.create_repo(other, files)


def test_repo_info_resolves_branch_tag_and_commit(
    hub: Hub, api: HfApi, repo: tuple[str, str]
) -> None:
    repo_id, sha = repo
    hub.tag(repo_id, "v1")
    hub.branch(repo_id, "dev")
    for rev in ("main", "v1", "dev", sha):
        info = api.repo_info(repo_id, revision=rev)
        assert info.sha == sha, rev
        assert sorted(s.rfilename for s in info.siblings) == [
            ".gitattributes",
            "config.json",
            "model.safetensors",
            "tok/tokenizer.json",
        ]
    refs = api.list_repo_refs(repo_id)
    assert {(b.name, b.target_commit) for b in refs.branches} == {("main", sha), ("dev", sha)}
    assert [(t.name, t.target_commit) for t in refs.tags] == [("v1", sha)]
    # olah answers only requests naming a revision.
    with pytest.raises(RepositoryNotFoundError):
        api.repo_info(repo_id)


def test_list_repo_tree_has_sizes_and_hashes(hub: Hub, api: HfApi, repo: tuple[str, str]) -> None:
    repo_id, sha = repo
    entries = {e.path: e for e in api.list_repo_tree(repo_id, revision=sha, recursive=True)}
    assert set(entries) == {
        ".gitattributes",
        "config.json",
        "model.safetensors",
        "tok",
        "tok/tokenizer.json",
    }
    weights = entries["model.safetensors"]
    assert weights.size == len(WEIGHTS)
    assert weights.lfs is not None
    assert weights.lfs.sha256 == sha256(WEIGHTS)
    assert weights.lfs.size == len(WEIGHTS)
    for path, data in (("config.json", CONFIG), ("tok/tokenizer.json", TOKENIZER)):
        assert entries[path].lfs is None
        assert entries[path].size == len(data)
        assert entries[path].blob_id == git_blob_id(data)
    # model_info(files_metadata=True) gives names only for local repos.
    info = api.model_info(repo_id, revision=sha, files_metadata=True)
    assert all(s.lfs is None and s.blob_id is None for s in info.siblings)


def test_resolve_url_serves_exact_bytes(hub: Hub, repo: tuple[str, str]) -> None:
    repo_id, sha = repo
    for path, data in (
        ("model.safetensors", WEIGHTS),
        ("config.json", CONFIG),
        ("tok/tokenizer.json", TOKENIZER),
    ):
        for rev in (sha, "main"):
            status, _, body = http("GET", f"{hub.endpoint}/{repo_id}/resolve/{rev}/{path}")
            assert (status, body) == (200, data), (path, rev)
    # GET carries no metadata headers; HEAD does.
    status, headers, _ = http("GET", hub.url(repo_id, "main", "config.json"))
    assert status == 200 and "x-repo-commit" not in headers and "etag" not in headers
    status, headers, _ = http("HEAD", hub.url(repo_id, "main", "model.safetensors"))
    assert status == 200
    assert headers["x-repo-commit"] == sha
    assert headers["etag"] == sha256(WEIGHTS)
    assert int(headers["content-length"]) == len(WEIGHTS)
    status, headers, _ = http("HEAD", hub.url(repo_id, "main", "config.json"))
    assert headers["etag"] == git_blob_id(CONFIG)
    # The /models/ prefixed form works too.
    status, _, body = http("GET", f"{hub.endpoint}/models/{repo_id}/resolve/{sha}/config.json")
    assert (status, body) == (200, CONFIG)


def test_second_commit_moves_branch_but_not_tag(
    hub: Hub, api: HfApi, repo: tuple[str, str]
) -> None:
    repo_id, first = repo
    hub.tag(repo_id, "v1")
    new_config = b'{"model_type": "llama", "hidden_size": 16}\n'
    second = hub.commit(repo_id, {"config.json": new_config, "tok/tokenizer.json": None})
    assert second != first
    assert api.repo_info(repo_id, revision="main").sha == second
    assert api.repo_info(repo_id, revision="v1").sha == first
    assert http("GET", hub.url(repo_id, "main", "config.json"))[2] == new_config
    assert http("GET", hub.url(repo_id, "v1", "config.json"))[2] == CONFIG
    assert http("GET", hub.url(repo_id, first, "tok/tokenizer.json"))[2] == TOKENIZER
    paths = {e.path for e in api.list_repo_tree(repo_id, revision="main", recursive=True)}
    assert paths == {".gitattributes", "config.json", "model.safetensors"}
    # Commits on another branch leave main alone.
    hub.branch(repo_id, "dev", rev=first)
    third = hub.commit(repo_id, {"extra.bin": b"\x00" * 200}, branch="dev")
    assert api.repo_info(repo_id, revision="dev").sha == third
    assert api.repo_info(repo_id, revision="main").sha == second
    tree = {e.path: e for e in api.list_repo_tree(repo_id, revision=third, recursive=True)}
    assert tree["extra.bin"].lfs.sha256 == sha256(b"\x00" * 200)
    assert tree["config.json"].blob_id == git_blob_id(CONFIG)
    with pytest.raises(ValueError):
        hub.commit(repo_id, {"x": b"x"}, branch="nope")


def test_range_header_is_ignored(hub: Hub, repo: tuple[str, str]) -> None:
    """olah 0.5.4 ignores Range for local repos: 200, whole body, no Content-Range."""
    repo_id, sha = repo
    url = hub.url(repo_id, sha, "model.safetensors")
    status, headers, body = http("GET", url, {"Range": "bytes=10-"})
    assert status == 200
    assert "content-range" not in headers
    assert body == WEIGHTS


def test_corrupted_lfs_object_is_served_uncached(hub: Hub, repo: tuple[str, str]) -> None:
    repo_id, sha = repo
    url = hub.url(repo_id, sha, "model.safetensors")
    assert http("GET", url)[2] == WEIGHTS  # served once before corruption
    obj = hub.lfs_object_path(repo_id, sha256(WEIGHTS))
    obj.chmod(0o644)
    corrupted = b"\xff" * 4 + WEIGHTS[4:]
    obj.write_bytes(corrupted)
    status, _, body = http("GET", url)
    assert status == 200 and body == corrupted
    assert sha256(body) != sha256(WEIGHTS)  # a client-side sha256 check catches it
    assert http("HEAD", url)[1]["etag"] == sha256(corrupted)  # etag hashes the disk file
    obj.write_bytes(WEIGHTS)
    assert http("GET", url)[2] == WEIGHTS


def test_error_statuses(hub: Hub, repo: tuple[str, str]) -> None:
    repo_id, sha = repo
    e = hub.endpoint
    missing_sha = "0" * 40
    cases = {
        # (method, url): status
        ("GET", f"{e}/org/does-not-exist/resolve/main/config.json"): 401,
        ("HEAD", f"{e}/org/does-not-exist/resolve/main/config.json"): 401,
        ("GET", f"{e}/org/does-not-exist/resolve/{sha}/config.json"): 404,
        ("GET", f"{e}/{repo_id}/resolve/no-such-branch/config.json"): 401,
        ("HEAD", f"{e}/{repo_id}/resolve/no-such-branch/config.json"): 401,
        ("GET", f"{e}/{repo_id}/resolve/{missing_sha}/config.json"): 500,
        ("HEAD", f"{e}/{repo_id}/resolve/{missing_sha}/config.json"): 500,
        ("GET", f"{e}/{repo_id}/resolve/main/missing.json"): 500,
        ("HEAD", f"{e}/{repo_id}/resolve/main/missing.json"): 401,
        ("GET", f"{e}/api/models/{repo_id}"): 401,  # no revision
        ("GET", f"{e}/api/models/{repo_id}/revision/no-such-branch"): 401,
        ("GET", f"{e}/api/models/org/does-not-exist/revision/main"): 401,
        ("GET", f"{e}/api/models/{repo_id}/tree/no-such-branch/"): 401,
    }
    got = {key: http(*key)[0] for key in cases}
    assert got == cases
    status, headers, _ = http("GET", f"{e}/{repo_id}/resolve/no-such-branch/config.json")
    assert headers["x-error-code"] == "RepoNotFound"


def test_hf_env_isolates_and_downloads(hub: Hub, hf_env, repo: tuple[str, str]) -> None:
    from huggingface_hub import constants

    repo_id, sha = repo
    assert os.environ["HF_ENDPOINT"] == hub.endpoint
    assert os.environ["HF_HOME"] == str(hf_env)
    assert "HF_TOKEN" not in os.environ
    endpoint, hub_cache = constants.ENDPOINT, constants.HF_HUB_CACHE
    assert endpoint == hub.endpoint
    assert hub_cache == str(hf_env / "hub")
    assert list(hf_env.iterdir()) == []
    started = time.monotonic()
    path = hf_hub_download(repo_id, "model.safetensors", revision=sha)
    elapsed = time.monotonic() - started
    assert Path(path).read_bytes() == WEIGHTS
    assert str(path).startswith(str(hf_env))
    assert elapsed < 5
    assert HfApi().repo_info(repo_id, revision="main").sha == sha  # default endpoint


def test_restart_keeps_serving(hub: Hub, api: HfApi, repo: tuple[str, str]) -> None:
    repo_id, sha = repo
    endpoint = hub.endpoint
    hub.restart()
    assert hub.endpoint == endpoint and hub.running
    assert api.repo_info(repo_id, revision="main").sha == sha
