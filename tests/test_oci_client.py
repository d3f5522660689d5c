"""mlxk.oci.Registry against real CNCF distribution registries (docker-registry 2.8) on loopback."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import time
import urllib.request

import pytest

from mlxk.errors import SourceError
from mlxk.oci import mediatypes as mt
from mlxk.oci import modelpack as mp
from mlxk.oci.client import Registry
from mlxk.oci.reference import parse
from mlxk.oci.sessions import DirSessions, MemorySessions
from mlxk.oci.settings import RegistrySettings
from mlxk.store import Store
from tests.registry import PASSWORD, TOKEN_PASSWORD, USER, docker_config, free_port

pytest_plugins = ["tests.conftest_registry"]

NO_LOGIN = RegistrySettings()  # no credential files, no CA bundle, nothing from os.environ


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_files(reg: Registry, repo: str, tag: str, files: dict[str, bytes], **kw) -> mp.Artifact:
    """What `mlxk push` will do: every file a raw layer, then config, then the manifest."""
    art = mp.build([mp.ModelFile(p, len(b), sha(b)) for p, b in files.items()], **kw)
    for data in files.values():
        reg.push_blob(repo, sha(data), len(data), lambda d=data: io.BytesIO(d))
    reg.push_blob(repo, art.config_digest, len(art.config), lambda: io.BytesIO(art.config))
    assert reg.put_manifest(repo, tag, art.manifest, art.media_type) == art.manifest_digest
    return art


def pull_files(reg: Registry, text: str) -> dict[str, bytes]:
    ref = parse(text)
    _, raw, _ = reg.get_manifest(ref)
    parsed = mp.parse(raw, text)
    out = {}
    for f in parsed.files:
        start, chunks = reg.open_blob(ref.repo, f.sha256)
        out[f.path] = b"".join(chunks)
        assert start == 0 and sha(out[f.path]) == f.sha256
    return out


FILES = {
    "config.json": b'{"model_type": "llama"}\n',
    "model.safetensors": os.urandom(300_000),
    "tokenizer/tokenizer.json": b'{"version": "1.0"}',
    "README.md": b"# demo\n",
    "empty.txt": b"",
}


# ---------------------------------------------------------------- push / pull
def test_push_then_pull_by_tag_and_by_digest(registry):
    with Registry(registry.host, NO_LOGIN) as reg:
        art = push_files(reg, "mlxk/demo", "v1", FILES, provenance={"lock": "sha256:" + "1" * 64})
        assert pull_files(reg, f"oci://{registry.host}/mlxk/demo:v1") == FILES
        digest, raw, doc = reg.get_manifest(parse(f"oci://{registry.host}/mlxk/demo:v1"))
        assert (digest, raw) == (art.manifest_digest, art.manifest)
        assert doc["artifactType"] == mt.ARTIFACT_TYPE
        by_digest = parse(f"oci://{registry.host}/mlxk/demo@{digest}")
        assert reg.get_manifest(by_digest)[1] == art.manifest
        assert mp.parse(raw, "t").provenance == {"lock": "sha256:" + "1" * 64}
        assert reg.read_blob("mlxk/demo", art.config_digest) == art.config


def test_second_push_sends_no_blob_bytes(registry):
    files = {"model.safetensors": os.urandom(200_000), "config.json": b"{}"}
    with Registry(registry.host, NO_LOGIN) as reg:
        push_files(reg, "mlxk/twice", "a", files)
    with Registry(registry.host, NO_LOGIN) as reg:
        data = files["model.safetensors"]
        res = reg.push_blob("mlxk/twice", sha(data), len(data), lambda: io.BytesIO(data))
        assert res.how == "exists" and res.sent == 0
        push_files(reg, "mlxk/twice", "b", files)
        assert reg.stats["PATCH"] == 0 and reg.stats["POST"] == 0
        assert reg.stats["bytes_sent"] < 2_000  # only the manifest


def test_cross_repo_mount_uploads_nothing(registry):
    data = os.urandom(150_000)
    with Registry(registry.host, NO_LOGIN) as reg:
        reg.push_blob("mlxk/src", sha(data), len(data), lambda: io.BytesIO(data))
        before = reg.stats["bytes_sent"]
        res = reg.push_blob(
            "mlxk/dst", sha(data), len(data), lambda: io.BytesIO(data), mount_from="mlxk/src"
        )
        assert res.how == "mounted"
        assert reg.stats["bytes_sent"] == before
        assert reg.blob_exists("mlxk/dst", sha(data))


def test_chunked_upload_of_a_few_megabytes(registry):
    data = os.urandom(5 * 1024 * 1024 + 123)
    with Registry(registry.host, NO_LOGIN) as reg:
        res = reg.push_blob(
            "mlxk/big", sha(data), len(data), lambda: io.BytesIO(data), chunk_size=1 << 20
        )
        assert (res.how, res.sent) == ("uploaded", len(data))
        assert reg.stats["PATCH"] == 6
        start, chunks = reg.open_blob("mlxk/big", sha(data))
        assert start == 0 and sha(b"".join(chunks)) == sha(data)


class Flaky(io.BytesIO):
    """A file whose reads fail once `fail_after` bytes have been read (a cut-off push)."""

    def __init__(self, data: bytes, fail_after: int):
        super().__init__(data)
        self.fail_after = fail_after

    def read(self, n=-1):
        if self.tell() >= self.fail_after:
            raise OSError(5, "Input/output error")
        return super().read(n)


def test_interrupted_upload_resumes_from_what_the_registry_holds(registry, tmp_path):
    data = os.urandom(4 * 1024 * 1024 + 7)
    chunk = 1 << 20
    sessions = DirSessions(tmp_path / "sessions")
    with Registry(registry.host, NO_LOGIN) as reg:
        with pytest.raises(SourceError) as e:
            reg.push_blob(
                "mlxk/resume",
                sha(data),
                len(data),
                lambda: Flaky(data, 2 * chunk),
                chunk_size=chunk,
                sessions=sessions,
            )
        assert f"interrupted after {2 * chunk} bytes" in e.value.message
        assert "resumes" in e.value.hint
    with Registry(registry.host, NO_LOGIN) as reg:  # a later run, a new client
        res = reg.push_blob(
            "mlxk/resume",
            sha(data),
            len(data),
            lambda: io.BytesIO(data),
            chunk_size=chunk,
            sessions=sessions,
        )
        assert (res.how, res.resumed_from, res.sent) == (
            "uploaded",
            2 * chunk,
            len(data) - 2 * chunk,
        )
        assert reg.stats["bytes_sent"] == len(data) - 2 * chunk
        assert sha(b"".join(reg.open_blob("mlxk/resume", sha(data))[1])) == sha(data)
    assert not list((tmp_path / "sessions").iterdir())  # the finished session is forgotten


def test_an_upload_cut_off_before_its_first_chunk_resumes_from_zero(registry):
    data = os.urandom(3 * 1024 * 1024)
    sessions = MemorySessions()
    with Registry(registry.host, NO_LOGIN) as reg:
        with pytest.raises(SourceError, match="interrupted after 0 bytes"):
            reg.push_blob(
                "mlxk/zero",
                sha(data),
                len(data),
                lambda: Flaky(data, 0),
                chunk_size=1 << 20,
                sessions=sessions,
            )
        res = reg.push_blob(
            "mlxk/zero",
            sha(data),
            len(data),
            lambda: io.BytesIO(data),
            chunk_size=1 << 20,
            sessions=sessions,
        )
        assert (res.how, res.resumed_from, res.sent) == ("uploaded", 0, len(data))


def test_a_stale_upload_session_starts_over(registry):
    data = os.urandom(100_000)
    sessions = MemorySessions()
    with Registry(registry.host, NO_LOGIN) as reg:
        key = f"{registry.host}/mlxk/stale@{sha(data)}"
        sessions.put(key, f"http://{registry.host}/v2/mlxk/stale/blobs/uploads/0000-gone?_state=x")
        res = reg.push_blob(
            "mlxk/stale", sha(data), len(data), lambda: io.BytesIO(data), sessions=sessions
        )
        assert (res.how, res.resumed_from) == ("uploaded", 0)
        assert sessions.get(key) is None


def test_download_resumes_with_range_through_the_store(registry, tmp_path):
    data = os.urandom(3 * 1024 * 1024)
    with Registry(registry.host, NO_LOGIN) as reg:
        reg.push_blob("mlxk/range", sha(data), len(data), lambda: io.BytesIO(data))
        start, chunks = reg.open_blob("mlxk/range", sha(data), 1_000_000)
        assert start == 1_000_000 and b"".join(chunks) == data[1_000_000:]

        offsets, opener = [], reg.opener("mlxk/range", sha(data))

        def dies_after_first_chunk(offset):
            offsets.append(offset)
            start, chunks = opener(offset)

            def cut():
                yield next(chunks)
                chunks.close()
                raise SourceError("cut off for the test")

            return start, (cut() if len(offsets) == 1 else chunks)

        store = Store(tmp_path / "store")
        with pytest.raises(SourceError):
            store.fetch(dies_after_first_chunk, len(data), sha(data), label="t")
        assert store.fetch(dies_after_first_chunk, len(data), sha(data), label="t") == sha(data)
        assert offsets[0] == 0 and 0 < offsets[1] < len(data)
        assert store.blob_path(sha(data)[7:]).read_bytes() == data


def test_missing_repository_and_tag_are_one_line_source_errors(registry):
    with Registry(registry.host, NO_LOGIN) as reg:
        push_files(reg, "mlxk/there", "v1", {"a.json": b"{}"})
        with pytest.raises(SourceError) as e:
            reg.get_manifest(parse(f"oci://{registry.host}/mlxk/nowhere:v1"))
        assert "no such repository" in e.value.message and registry.host in e.value.message
        with pytest.raises(SourceError) as e:
            reg.get_manifest(parse(f"oci://{registry.host}/mlxk/there:v9"))
        assert "no such tag" in e.value.message and "\n" not in e.value.message
        assert e.value.hint == "tags there: v1"


def test_unreachable_registry_fails_fast():
    host = f"127.0.0.1:{free_port()}"
    t = time.monotonic()
    with Registry(host, NO_LOGIN) as reg, pytest.raises(SourceError) as e:
        reg.get_manifest(parse(f"oci://{host}/mlxk/x:v1"))
    assert time.monotonic() - t < 5
    assert f"cannot reach the registry {host}" in e.value.message
    assert e.value.exit_code == 3


def test_https_unless_loopback_or_opted_in():
    with Registry("registry.example.com", NO_LOGIN) as reg:
        assert reg._t.base == "https://registry.example.com"  # decided without a request
        with pytest.raises(ValueError, match="another registry"):
            reg.get_manifest(parse("oci://other.example.com/a:v1"))
    assert RegistrySettings(insecure=frozenset({"reg.lan"})).allows_http("reg.lan:5000")


# ---------------------------------------------------------------- foreign artifacts
def raw_put(base: str, path: str, data: bytes, content_type: str, method="PUT") -> str:
    req = urllib.request.Request(
        base + path, data=data, method=method, headers={"Content-Type": content_type}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.headers.get("Location", "")


def raw_blob(base: str, repo: str, data: bytes) -> str:
    """A monolithic upload (POST, PUT ?digest=) by hand, as another tool would."""
    location = raw_put(
        base, f"/v2/{repo}/blobs/uploads/", b"", "application/octet-stream", method="POST"
    )
    if location.startswith("/"):
        location = base + location
    sep = "&" if "?" in location else "?"
    raw_put(location, f"{sep}digest={sha(data)}", data, "application/octet-stream")
    return sha(data)


def test_foreign_modelpack_artifact_with_nested_paths(registry):
    """A modctl-style artifact (Go field order, file metadata annotations, no mlxk provenance)."""
    base, repo = registry.url, "other/tool-made"
    files = {
        "weights/part-00001.safetensors": os.urandom(5000),
        "tokenizer/vocab.json": b"{}",
        "docs/deep/LICENSE": b"MIT\n",
    }
    kinds = {"weights": "weight", "tokenizer": "weight.config", "docs": "doc"}
    config = json.dumps(
        {
            "descriptor": {"name": "x"},
            "config": {},
            "modelfs": {"type": "layers", "diffIds": [sha(b) for b in files.values()]},
        }
    ).encode()
    layers = [
        {
            "mediaType": mt.layer_type(kinds[p.split("/")[0]]),
            "digest": raw_blob(base, repo, b),
            "size": len(b),
            "annotations": {
                mt.ANNOTATION_FILEPATH: p,
                mt.ANNOTATION_FILE_METADATA: json.dumps(
                    {"name": p.rsplit("/", 1)[-1], "mode": 420}
                ),
            },
        }
        for p, b in files.items()
    ]
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": mt.ARTIFACT_TYPE,
            "config": {
                "mediaType": mt.CONFIG,
                "digest": raw_blob(base, repo, config),
                "size": len(config),
            },
            "layers": layers,
        },
        indent=1,
    ).encode()
    raw_put(base, f"/v2/{repo}/manifests/v1", manifest, mt.OCI_MANIFEST)
    with Registry(registry.host, NO_LOGIN) as reg:
        assert pull_files(reg, f"oci://{registry.host}/{repo}:v1") == files
        digest, raw, _ = reg.get_manifest(parse(f"oci://{registry.host}/{repo}:v1"))
        assert raw == manifest and digest == sha(manifest)
        assert mp.parse(raw, "t").provenance == {}


def test_container_image_is_refused_naming_its_media_types(registry):
    base, repo = registry.url, "other/image"
    layer = raw_blob(base, repo, b"\x1f\x8b not really a tarball")
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {
                "mediaType": mt.OCI_IMAGE_CONFIG,
                "digest": raw_blob(base, repo, config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer,
                    "size": 28,
                }
            ],
        }
    ).encode()
    raw_put(base, f"/v2/{repo}/manifests/latest", manifest, mt.OCI_MANIFEST)
    text = f"oci://{registry.host}/{repo}:latest"
    with Registry(registry.host, NO_LOGIN) as reg:
        _, raw, _ = reg.get_manifest(parse(text))
    with pytest.raises(SourceError) as e:
        mp.parse(raw, text)
    assert "not a model artifact" in e.value.message
    assert mt.OCI_IMAGE_CONFIG in e.value.message
    assert "application/vnd.oci.image.layer.v1.tar+gzip" in e.value.message
    assert e.value.exit_code == 3


def test_escaping_filepath_is_refused_before_anything_is_written(registry, tmp_path):
    base, repo = registry.url, "other/evil"
    blob = raw_blob(base, repo, b"owned")
    config = raw_blob(base, repo, b"{}")
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": mt.ARTIFACT_TYPE,
            "config": {"mediaType": mt.CONFIG, "digest": config, "size": 2},
            "layers": [
                {
                    "mediaType": mt.layer_type("doc"),
                    "digest": blob,
                    "size": 5,
                    "annotations": {mt.ANNOTATION_FILEPATH: "../../evil.sh"},
                }
            ],
        }
    )
    raw_put(base, f"/v2/{repo}/manifests/v1", manifest.encode(), mt.OCI_MANIFEST)
    with Registry(registry.host, NO_LOGIN) as reg:
        _, raw, _ = reg.get_manifest(parse(f"oci://{registry.host}/{repo}:v1"))
    with pytest.raises(SourceError) as e:
        mp.parse(raw, "oci://t")
    assert "refusing unsafe file name '../../evil.sh'" in e.value.message


# ---------------------------------------------------------------- auth
def no_secret_anywhere(err: SourceError, *secrets: str, captured: str = "") -> None:
    texts = [err.message, err.hint or "", str(err), repr(err), json.dumps(err.to_dict()), captured]
    for secret in secrets:
        for form in (secret, base64.b64encode(f"{USER}:{secret}".encode()).decode()):
            assert all(form not in t for t in texts)


def test_basic_login_from_docker_config(auth_registry):
    env = {"DOCKER_CONFIG": str(auth_registry.extra["docker_config"]), "HOME": "/nonexistent"}
    with Registry(auth_registry.host, RegistrySettings.from_env(env)) as reg:
        push_files(reg, "mlxk/private", "v1", {"config.json": b"{}", "m.safetensors": b"x" * 999})
        assert (
            pull_files(reg, f"oci://{auth_registry.host}/mlxk/private:v1")["config.json"] == b"{}"
        )


def test_no_login_says_where_to_put_one(auth_registry):
    with Registry(auth_registry.host, NO_LOGIN) as reg, pytest.raises(SourceError) as e:
        reg.get_manifest(parse(f"oci://{auth_registry.host}/mlxk/private:v1"))
    assert auth_registry.host in e.value.message and "HTTP 401" in e.value.message
    assert "DOCKER_CONFIG" in e.value.hint and e.value.exit_code == 3


def test_wrong_password_names_the_file_never_the_password(auth_registry, tmp_path, capsys, caplog):
    wrong = "pw-wrong-0d9e1"
    d = docker_config(tmp_path / "docker", auth_registry.host, USER, wrong)
    settings = RegistrySettings.from_env({"DOCKER_CONFIG": str(d)})
    with Registry(auth_registry.host, settings) as reg, pytest.raises(SourceError) as e:
        reg.get_manifest(parse(f"oci://{auth_registry.host}/mlxk/private:v1"))
    assert "refused the login for 'alice'" in e.value.message
    assert str(d / "config.json") in e.value.message and "DOCKER_CONFIG" in e.value.hint
    out = capsys.readouterr()
    no_secret_anywhere(e.value, wrong, PASSWORD, captured=out.out + out.err + caplog.text)
    assert wrong not in repr(settings) + repr(reg._t.login("mlxk/private"))


def test_bearer_token_registry(token_registry):
    tokens = token_registry.extra["tokens"]
    env = {"DOCKER_CONFIG": str(token_registry.extra["docker_config"])}
    with Registry(token_registry.host, RegistrySettings.from_env(env)) as reg:
        push_files(reg, "mlxk/bearer", "v1", {"config.json": b"{}", "m.safetensors": b"w" * 5000})
        assert pull_files(reg, f"oci://{token_registry.host}/mlxk/bearer:v1")["m.safetensors"]
        assert reg.stats["token"] >= 1
    assert any("repository:mlxk/bearer:pull,push" in r["scopes"] for r in tokens.requests)
    assert all(r["login"] for r in tokens.requests)
    with Registry(token_registry.host, NO_LOGIN) as reg, pytest.raises(SourceError) as e:
        reg.get_manifest(parse(f"oci://{token_registry.host}/mlxk/bearer:v1"))
    assert "token service" in e.value.message and "DOCKER_CONFIG" in e.value.hint
    no_secret_anywhere(e.value, TOKEN_PASSWORD)


# ---------------------------------------------------------------- TLS
def test_tls_with_a_private_ca_given_by_ssl_cert_file(tls_registry):
    settings = RegistrySettings.from_env({"SSL_CERT_FILE": str(tls_registry.ca_file)})
    with Registry(tls_registry.host, settings) as reg:
        push_files(reg, "mlxk/tls", "v1", {"config.json": b"{}"})
        assert pull_files(reg, f"oci://{tls_registry.host}/mlxk/tls:v1") == {"config.json": b"{}"}
        assert reg._t.base.startswith("https://")


def test_tls_without_the_ca_fails_and_never_falls_back_to_http(tls_registry):
    with Registry(tls_registry.host, NO_LOGIN) as reg, pytest.raises(SourceError) as e:
        reg.get_manifest(parse(f"oci://{tls_registry.host}/mlxk/tls:v1"))
    assert "TLS certificate" in e.value.message and tls_registry.host in e.value.message
    assert "SSL_CERT_FILE" in e.value.hint


# ---------------------------------------------------------------- pull-through cache
def test_pull_through_cache_serves_what_was_pushed_upstream(proxy_registry):
    upstream = proxy_registry.extra["upstream"]
    files = {"config.json": b'{"a": 1}', "model.safetensors": os.urandom(64_000)}
    with Registry(upstream.host, NO_LOGIN) as reg:
        art = push_files(reg, "mlxk/cached", "v1", files)
    with Registry(proxy_registry.host, NO_LOGIN) as reg:
        assert pull_files(reg, f"oci://{proxy_registry.host}/mlxk/cached:v1") == files
        digest, _, _ = reg.get_manifest(parse(f"oci://{proxy_registry.host}/mlxk/cached:v1"))
        assert digest == art.manifest_digest
        start, chunks = reg.open_blob("mlxk/cached", sha(files["model.safetensors"]), 1000)
        assert start in (0, 1000)
        assert b"".join(chunks) == files["model.safetensors"][start:]
