"""The pure parts of mlxk.oci: ModelPack build/parse, references, logins, challenges, settings."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from mlxk.errors import SourceError, UserError
from mlxk.oci import mediatypes as mt
from mlxk.oci import modelpack as mp
from mlxk.oci.auth import Authorizer, parse_challenge
from mlxk.oci.credentials import Credential, default_files, find
from mlxk.oci.reference import parse
from mlxk.oci.settings import RegistrySettings

pytestmark = pytest.mark.unit


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def mf(path: str, data: bytes = b"x") -> mp.ModelFile:
    return mp.ModelFile(path, len(data), sha(data))


def manifest(layers, **top) -> dict:
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": mt.ARTIFACT_TYPE,
        "config": {"mediaType": mt.CONFIG, "digest": sha(b"{}"), "size": 2},
        "layers": layers,
    }
    doc.update(top)
    return doc


def layer(path, kind="weight", packing="raw", data=b"x") -> dict:
    return {
        "mediaType": mt.layer_type(kind, packing),
        "digest": sha(data),
        "size": len(data),
        "annotations": {mt.ANNOTATION_FILEPATH: path},
    }


# ---------------------------------------------------------------- media types (from the spec)
def test_media_types_are_the_specs():
    assert mt.ARTIFACT_TYPE == "application/vnd.cncf.model.manifest.v1+json"
    assert mt.CONFIG == "application/vnd.cncf.model.config.v1+json"
    assert mt.layer_type("weight") == "application/vnd.cncf.model.weight.v1.raw"
    assert mt.layer_type("weight.config") == "application/vnd.cncf.model.weight.config.v1.raw"
    assert mt.layer_type("doc", "tar+zstd") == "application/vnd.cncf.model.doc.v1.tar+zstd"
    assert mt.layer_type("code", "tar+gzip") == "application/vnd.cncf.model.code.v1.tar+gzip"
    assert mt.ANNOTATION_FILEPATH == "org.cncf.model.filepath"
    assert len(mt.RAW_LAYERS) == 5 and len(mt.TAR_LAYERS) == 15


@pytest.mark.parametrize(
    "path,kind",
    [
        ("model.safetensors", "weight"),
        ("sub/model-00001-of-00002.safetensors", "weight"),
        ("weights.npz", "weight"),
        ("model.safetensors.index.json", "weight.config"),
        ("config.json", "weight.config"),
        ("tokenizer.model", "weight.config"),
        ("merges.txt", "weight.config"),
        ("chat_template.jinja", "weight.config"),
        ("README.md", "doc"),
        ("LICENSE", "doc"),
        ("notes.txt", "doc"),
        ("modeling_x.py", "code"),
    ],
)
def test_file_kind(path, kind):
    assert mp.file_kind(path) == (kind, False)


def test_unknown_file_kind_is_marked_untested():
    art = mp.build([mf("odd.xyz")])
    (only,) = json.loads(art.manifest)["layers"]
    assert only["annotations"][mt.ANNOTATION_MEDIATYPE_UNTESTED] == "true"


# ---------------------------------------------------------------- build
def test_build_is_deterministic_and_spec_shaped():
    files = [mf("model.safetensors", b"w" * 10), mf("config.json", b"{}"), mf("a/b/README.md")]
    a = mp.build(files, provenance={"lock": "sha256:" + "0" * 64}, descriptor={"name": "demo"})
    b = mp.build(
        list(reversed(files)),
        provenance={"lock": "sha256:" + "0" * 64},
        descriptor={"name": "demo"},
    )
    assert a == b and a.manifest_digest == sha(a.manifest) and a.config_digest == sha(a.config)
    doc = json.loads(a.manifest)
    assert doc["mediaType"] == mt.OCI_MANIFEST and doc["artifactType"] == mt.ARTIFACT_TYPE
    assert doc["config"] == {
        "mediaType": mt.CONFIG,
        "digest": a.config_digest,
        "size": len(a.config),
    }
    assert [x["annotations"][mt.ANNOTATION_FILEPATH] for x in doc["layers"]] == [
        "a/b/README.md",
        "config.json",
        "model.safetensors",
    ]
    assert doc["annotations"] == {"org.mlxk.lock": "sha256:" + "0" * 64}
    config = json.loads(a.config)
    assert set(config) == {"descriptor", "config", "modelfs"}
    assert config["modelfs"] == {"type": "layers", "diffIds": [x["digest"] for x in doc["layers"]]}
    assert config["config"] == {"format": "safetensors"}
    assert a.manifest == mp.canonical_bytes(doc)


def test_build_round_trips_through_parse():
    files = [mf("model.safetensors", b"w"), mf("tok/vocab.json", b"{}"), mf("e", b"")]
    art = mp.build(files, provenance={"workspace": "demo"})
    parsed = mp.parse(art.manifest, "t")
    assert [(f.path, f.size, f.sha256) for f in parsed.files] == sorted(
        (f.path, f.size, f.sha256) for f in files
    )
    assert parsed.provenance == {"workspace": "demo"}
    assert parsed.config["digest"] == art.config_digest


@pytest.mark.parametrize(
    "files,words",
    [
        ([], "at least one file"),
        ([mf("../x")], "unsafe file name"),
        ([mf("a"), mf("a")], "listed twice"),
        ([mf("a"), mf("a/b")], "both a file and a folder"),
        ([mp.ModelFile("a", 1, "md5:00")], "sha256"),
        ([mp.ModelFile("a", 1, sha(b"x"), "text/plain")], "not a raw layer type"),
    ],
)
def test_build_refuses_bad_files(files, words):
    with pytest.raises((UserError, SourceError)) as e:
        mp.build(files)
    assert words in e.value.message


def test_build_refuses_config_fields_outside_the_schema():
    with pytest.raises(UserError) as e:
        mp.build([mf("a")], descriptor={"name": "x", "mlxk": "no"})
    assert "mlxk" in e.value.message


# ---------------------------------------------------------------- parse
def test_parse_accepts_a_foreign_artifact_without_artifact_type():
    doc = manifest([layer("w/model.safetensors"), layer("t/tokenizer.json", "weight.config")])
    del doc["artifactType"]
    assert [f.path for f in mp.parse(doc, "t").files] == ["t/tokenizer.json", "w/model.safetensors"]


def test_parse_accepts_model_layers_under_an_unknown_config():
    doc = manifest(
        [layer("m.gguf")], config={"mediaType": mt.OCI_EMPTY, "digest": sha(b"{}"), "size": 2}
    )
    del doc["artifactType"]
    assert mp.parse(doc, "t").files[0].path == "m.gguf"


def test_parse_refuses_an_image_naming_every_type():
    doc = manifest(
        [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": sha(b"l"),
                "size": 1,
            }
        ],
        config={"mediaType": mt.OCI_IMAGE_CONFIG, "digest": sha(b"c"), "size": 1},
    )
    del doc["artifactType"]
    with pytest.raises(SourceError) as e:
        mp.parse(json.dumps(doc).encode(), "oci://h/r:t")
    msg = e.value.message
    assert msg.startswith("oci://h/r:t: not a model artifact")
    assert mt.OCI_IMAGE_CONFIG in msg and "image.layer.v1.tar+gzip" in msg
    assert "artifactType none" in msg and mt.ARTIFACT_TYPE in e.value.hint


@pytest.mark.parametrize("index_type", [mt.OCI_INDEX, mt.DOCKER_LIST])
def test_parse_refuses_an_index(index_type):
    doc = {"schemaVersion": 2, "mediaType": index_type, "manifests": []}
    with pytest.raises(SourceError) as e:
        mp.parse(doc, "t")
    assert "image index" in e.value.message and index_type in e.value.message


def test_parse_refuses_a_docker_v2_image():
    doc = manifest([layer("a")], mediaType=mt.DOCKER_MANIFEST)
    with pytest.raises(SourceError) as e:
        mp.parse(doc, "t")
    assert mt.DOCKER_MANIFEST in e.value.message


@pytest.mark.parametrize("packing", ["tar", "tar+gzip", "tar+zstd"])
def test_parse_refuses_tar_layers_clearly(packing):
    with pytest.raises(SourceError) as e:
        mp.parse(manifest([layer("weights", packing=packing)]), "t")
    assert "is a tar archive" in e.value.message and "raw layers only" in e.value.message
    assert "--raw" in e.value.hint


@pytest.mark.parametrize(
    "path,words",
    [
        ("../evil", "unsafe file name"),
        ("/etc/passwd", "an absolute path"),
        ("a/../../b", "unsafe file name"),
        ("bad\x1bname", "a control character"),
        ("a\\b", "a backslash"),
        ("", "an empty name"),
    ],
)
def test_parse_refuses_escaping_filepaths(path, words):
    with pytest.raises(SourceError) as e:
        mp.parse(manifest([layer(path)]), "t")
    assert words in e.value.message


def test_parse_refuses_duplicates_and_file_folder_clashes():
    with pytest.raises(SourceError, match="listed twice"):
        mp.parse(manifest([layer("a"), layer("a", "doc")]), "t")
    with pytest.raises(SourceError, match="both a file and a folder"):
        mp.parse(manifest([layer("a"), layer("a/b")]), "t")


@pytest.mark.parametrize(
    "bad,words",
    [
        ({"annotations": {}}, "no org.cncf.model.filepath annotation"),
        ({"digest": "sha256:../../x"}, "not a sha256 digest"),
        ({"size": -1}, "invalid size"),
        ({"size": "12"}, "invalid size"),
        ({"mediaType": "application/octet-stream"}, "not a ModelPack layer"),
    ],
)
def test_parse_refuses_malformed_layers(bad, words):
    with pytest.raises(SourceError) as e:
        mp.parse(manifest([layer("ok"), {**layer("x"), **bad}]), "t")
    assert words in e.value.message


def test_parse_refuses_non_json_and_empty():
    with pytest.raises(SourceError, match="not JSON"):
        mp.parse(b"\xff<html>", "t")
    with pytest.raises(SourceError, match="no layers"):
        mp.parse(manifest([]), "t")


# ---------------------------------------------------------------- references
@pytest.mark.parametrize(
    "text",
    [
        "oci://registry.example.com/org/model:v1",
        "oci://127.0.0.1:5000/a/b/c@sha256:" + "a" * 64,
        "oci://[::1]:5000/x:t@sha256:" + "b" * 64,
        "oci://localhost/prefix",
        "oci://ghcr.io/o-r_g/m.o__d-el:V1.0_rc-2",
    ],
)
def test_reference_round_trips(text):
    assert parse(text).describe() == text and parse(parse(text).describe()) == parse(text)


def test_reference_parts_and_loopback():
    ref = parse("oci://127.0.0.1:5000/org/model:v1")
    assert (ref.host, ref.hostname, ref.repo, ref.tag, ref.digest) == (
        "127.0.0.1:5000",
        "127.0.0.1",
        "org/model",
        "v1",
        None,
    )
    assert ref.is_loopback and parse("oci://[::1]/a").is_loopback
    assert parse("oci://localhost:1/a").is_loopback
    assert not parse("oci://ghcr.io/a").is_loopback and not parse("oci://10.0.0.1/a").is_loopback
    assert ref.target == "v1" and ref.pinned("sha256:" + "c" * 64).target == "sha256:" + "c" * 64
    assert parse("oci://h/prefix").child("demo", tag="v2").describe() == "oci://h/prefix/demo:v2"


@pytest.mark.parametrize(
    "text,words",
    [
        ("https://h/a", "does not start with oci://"),
        ("oci://h", "needs a host and a repository"),
        ("oci://h/Upper", "not a repository name"),
        ("oci://h/a//b", "not a repository name"),
        ("oci://h/a:-x", "a tag is"),
        ("oci://h/a@sha256:abc", "a digest is sha256:"),
        ("oci://h/a@md5:" + "a" * 32, "a digest is sha256:"),
        ("oci://h:0/a", "port"),
        ("oci://h:x/a", "port"),
        ("oci://h_x/a", "not a host name"),
        ("oci://h/a b", "space or control"),
        ("oci://[zz]/a", "not a host"),
    ],
)
def test_reference_errors_are_one_line_with_a_hint(text, words):
    with pytest.raises(UserError) as e:
        parse(text)
    assert words in e.value.message and "\n" not in e.value.message
    assert "oci://HOST[:PORT]/REPO:TAG" in e.value.hint


def test_a_bare_prefix_has_no_target():
    with pytest.raises(UserError, match="no tag or digest"):
        parse("oci://h/prefix").target  # noqa: B018


# ---------------------------------------------------------------- logins
def write_auths(path: Path, auths: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"auths": auths}))
    return path


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_login_lookup_matches_docker_key_forms(tmp_path):
    f = write_auths(
        tmp_path / "config.json",
        {
            "https://reg.example.com/v1/": {"auth": b64("legacy:pw1")},
            "http://127.0.0.1:5000": {"auth": b64("loop:pw2")},
            "ghcr.io": {"auth": b64("gh:pw3")},
            "ghcr.io/team": {"auth": b64("team:pw4")},
            "broken.io": {"auth": "%%%"},
        },
    )
    assert find("reg.example.com", "a", [f]).username == "legacy"
    assert find("127.0.0.1:5000", "a", [f]).username == "loop"
    assert find("ghcr.io", "other/x", [f]).username == "gh"
    assert find("ghcr.io", "team/model", [f]).username == "team"  # the more specific key
    assert find("broken.io", "a", [f]) is None and find("nowhere", "a", [f]) is None
    assert find("ghcr.io", "a", [tmp_path / "missing.json"]) is None


def test_podman_auth_file_comes_before_docker_config(tmp_path):
    podman = write_auths(tmp_path / "auth.json", {"h:1": {"auth": b64("podman:pw")}})
    docker = write_auths(tmp_path / "docker" / "config.json", {"h:1": {"auth": b64("docker:pw")}})
    env = {"REGISTRY_AUTH_FILE": str(podman), "DOCKER_CONFIG": str(docker.parent), "HOME": "/x"}
    assert default_files(env) == (podman, docker)
    assert find("h:1", "r", default_files(env)).username == "podman"
    assert default_files({"HOME": "/home/u"}) == (Path("/home/u/.docker/config.json"),)


def test_a_credential_hides_its_secret():
    cred = Credential("u", "hunter2-secret", "/f")
    assert "hunter2" not in repr(cred) and "hunter2" not in str(cred)
    assert cred.basic() == "Basic " + b64("u:hunter2-secret")


# ---------------------------------------------------------------- challenges and settings
def test_parse_challenge():
    c = parse_challenge(
        'Bearer realm="https://auth.io/token",service="reg.io",scope="repository:a/b:pull,push"'
    )
    assert (c.scheme, c.realm, c.service, c.scope) == (
        "bearer",
        "https://auth.io/token",
        "reg.io",
        "repository:a/b:pull,push",
    )
    assert parse_challenge('Basic realm="Registry Realm"').scheme == "basic"
    assert parse_challenge(None) is None


def test_a_login_is_never_sent_to_a_plain_http_token_realm_off_loopback():
    seen = []
    auth = Authorizer(
        "reg.io",
        lambda repo: Credential("u", "pw", "/f"),
        lambda realm, params, header: seen.append(header) or {"token": "t"},
    )
    for realm in (
        "http://auth.example.com/token",
        "https://auth.example.com/token",
        "http://127.0.0.1:9/token",
    ):
        auth._tokens.clear()
        assert auth.answer(parse_challenge(f'Bearer realm="{realm}"'), "a", ("s",), None)
    assert seen == [None, Credential("u", "pw").basic(), Credential("u", "pw").basic()]


def test_settings_from_env():
    s = RegistrySettings.from_env(
        {
            "MLXK_INSECURE_REGISTRIES": "reg.lan:5000, other.lan",
            "SSL_CERT_FILE": "/ca.pem",
            "HOME": "/h",
        }
    )
    assert s.insecure == {"reg.lan:5000", "other.lan"} and s.ca_file == "/ca.pem"
    assert s.allows_http("reg.lan:5000") and s.allows_http("other.lan:443")
    assert s.allows_http("127.0.0.1:5000") and s.allows_http("localhost")
    assert not s.allows_http("reg.lan:5001") and not s.allows_http("ghcr.io")
    assert RegistrySettings.from_env({}).credential_files == ()
