"""The registry as mlxk's distribution engine, against real CNCF distribution registries
(docker-registry 2.8 on loopback): `mlxk push`, a fleet machine syncing from the remote
(MLXK_REMOTE / remote:) with its source gone or the hub down, `oci://` sources (mlxk's own
artifacts and one made by plain OCI calls), basic and bearer auth, TLS from a private CA, a
pull-through site cache, tampering, and the bad inputs."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from mlxk import lock as lockfile
from mlxk.errors import IntegrityError, SourceError
from mlxk.oci import mediatypes as mt
from mlxk.oci import modelpack as mp
from mlxk.oci.client import Registry
from mlxk.oci.reference import parse
from mlxk.oci.settings import RegistrySettings
from mlxk.project import Project
from mlxk.push import push
from mlxk.settings import Settings
from tests.memsource import MemRepos
from tests.registry import PASSWORD, TOKEN_PASSWORD, free_port, make_server
from tests.support import ROOT, write_manifest

pytest_plugins = ["tests.conftest_registry"]

NO_LOGIN = RegistrySettings()
WEIGHTS = os.urandom(300_000)
FILES = {
    "config.json": b'{"model_type": "llama"}\n',
    "model.safetensors": WEIGHTS,
    "tokenizer/tokenizer.json": b'{"version": "1.0"}',
    "README.md": b"# demo\n",
}
MANIFEST = "version: 1\nworkspaces:\n  demo:\n    source: path:weights\n"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(autouse=True)
def _no_logins(monkeypatch, tmp_path):
    """No login or CA from the user's machine: an empty DOCKER_CONFIG, nothing else."""
    (tmp_path / "no-docker").mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker"))
    for var in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "SSL_CERT_FILE", "MLXK_REMOTE"):
        monkeypatch.delenv(var, raising=False)


def prefix(server) -> str:
    """A fresh prefix on a registry, so tests sharing one never see each other's repos."""
    return f"oci://{server.host}/t{uuid.uuid4().hex[:10]}"


def make_project(root: Path, files: dict[str, bytes] = FILES, body: str = MANIFEST) -> Path:
    for rel, data in files.items():
        (root / "weights" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "weights" / rel).write_bytes(data)
    return write_manifest(root, body)


def machine(monkeypatch, root: Path, manifest: Path | None = None) -> Path:
    """A fleet machine: its own store, and a copy of the project's manifest and lock only
    (the path source is not there), or a fresh directory."""
    root.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("MLXK_STORE", str(root / "store"))
    if manifest is None:
        return root / "models.yaml"
    for name in (manifest.name, "mlxk.lock"):
        shutil.copy(manifest.parent / name, root / name)
    return root / manifest.name


@pytest.fixture
def pushed(tmp_path, registry, mlxk, monkeypatch):
    """A project synced and pushed to a fresh prefix: (manifest, prefix, push JSON data)."""
    m = make_project(tmp_path / "a")
    assert mlxk("sync", "-f", str(m)).exit_code == 0
    to = prefix(registry)
    res = mlxk("push", "-f", str(m), "--to", to, "--json")
    assert res.exit_code == 0, res
    return m, to, res.json["data"]


# ---------------------------------------------------------------- push
def test_push_makes_a_modelpack_artifact_in_lock_order(pushed, registry):
    m, to, data = pushed
    (ws,) = data["workspaces"]
    lock = lockfile.read(m.with_name("mlxk.lock")).workspaces["demo"]
    assert ws["repository"] == f"{to}/demo" and ws["tags"] == ["sha256-" + lock.content_hash[7:]]
    assert ws["blobs"]["uploaded"] == len(FILES) and ws["blobs"]["bytes_sent"] == sum(
        len(b) for b in FILES.values()
    )
    with Registry(registry.host, NO_LOGIN) as reg:
        digest, raw, doc = reg.get_manifest(parse(f"{to}/demo:{ws['tags'][0]}"))
    assert digest == ws["digest"] and doc["artifactType"] == mt.ARTIFACT_TYPE
    layers = [(x["annotations"][mt.ANNOTATION_FILEPATH], x["digest"]) for x in doc["layers"]]
    assert layers == [(f.path, f.hash) for f in lock.files]
    assert all(x["mediaType"].endswith(".v1.raw") for x in doc["layers"])
    prov = mp.parse(raw, "t").provenance
    assert json.loads(prov["source"]) == {"kind": "path", "path": "weights"}
    assert prov["content_hash"] == lock.content_hash and json.loads(prov["steps"]) == []


def test_second_push_uploads_nothing_and_gives_the_same_digest(pushed, mlxk):
    m, to, first = pushed
    res = mlxk("push", "-f", str(m), "--to", to, "--tag", "v1", "--json")
    assert res.exit_code == 0, res
    (ws,) = res.json["data"]["workspaces"]
    assert ws["digest"] == first["workspaces"][0]["digest"]
    assert ws["blobs"] == {
        "uploaded": 0,
        "mounted": 0,
        "existing": len(FILES),
        "bytes_sent": 0,
        "resumed_bytes": 0,
    }
    assert ws["tags"] == [first["workspaces"][0]["tags"][0], "v1"]
    text = mlxk("push", "-f", str(m), "--to", to).stdout
    assert ws["digest"] in text and "0 uploaded" in text


def test_push_mounts_a_blob_another_repository_of_the_registry_has(tmp_path, registry, mlxk):
    body = MANIFEST + "  copy:\n    source: path:weights\n    include: ['*.safetensors']\n"
    m = make_project(tmp_path / "a", body=body)
    assert mlxk("lock", "-f", str(m)).exit_code == 0
    res = mlxk("push", "-f", str(m), "--to", prefix(registry), "--json")
    assert res.exit_code == 0, res
    copy, demo = res.json["data"]["workspaces"]  # sorted: copy first, then demo mounts
    assert copy["name"] == "copy" and copy["blobs"]["uploaded"] == 1
    assert demo["blobs"]["mounted"] == 1 and demo["blobs"]["uploaded"] == len(FILES) - 1


def test_push_takes_remote_from_the_manifest_or_the_environment(
    tmp_path, registry, mlxk, monkeypatch
):
    to = prefix(registry)
    m = make_project(tmp_path / "a", body=f"version: 1\nremote: {to}\n" + MANIFEST[11:])
    assert mlxk("lock", "-f", str(m)).exit_code == 0
    res = mlxk("push", "-f", str(m), "--json")
    assert res.exit_code == 0 and res.json["data"]["registry"] == to
    other = prefix(registry)
    monkeypatch.setenv("MLXK_REMOTE", other)
    assert mlxk("push", "-f", str(m), "--json").json["data"]["registry"] == other


def test_push_bad_inputs_exit_2(tmp_path, mlxk):
    m = make_project(tmp_path / "a")
    res = mlxk("push", "-f", str(m))
    assert res.exit_code == 2 and "needs a lock" in res.stderr
    assert mlxk("lock", "-f", str(m)).exit_code == 0
    res = mlxk("push", "-f", str(m))
    assert res.exit_code == 2 and "no registry to push to" in res.stderr
    assert "MLXK_REMOTE" in res.stderr
    res = mlxk("push", "-f", str(m), "--to", "oci://127.0.0.1:9/x:v1")
    assert res.exit_code == 2 and "names a tag or digest" in res.stderr
    res = mlxk("push", "-f", str(m), "--to", "oci://127.0.0.1:9/x", "nope")
    assert res.exit_code == 2 and "not in the lock: nope" in res.stderr
    res = mlxk("push", "-f", str(m), "--to", "oci://127.0.0.1:9/x", "--tag", "-bad")
    assert res.exit_code == 2


def test_push_to_an_unreachable_registry_is_one_line_exit_3(tmp_path, mlxk):
    m = make_project(tmp_path / "a")
    assert mlxk("sync", "-f", str(m)).exit_code == 0
    host = f"127.0.0.1:{free_port()}"
    res = mlxk("push", "-f", str(m), "--to", f"oci://{host}/models", "--json")
    assert res.exit_code == 3
    assert f"cannot reach the registry {host}" in res.json["error"]["message"]


def test_an_interrupted_push_resumes(tmp_path, registry):
    """kill -9 after the first chunk of a big blob; the next push sends only the rest."""
    big = os.urandom(600_000)
    m = make_project(tmp_path / "a", files={"model.safetensors": big, "config.json": b"{}"})
    to = prefix(registry)
    env = {**os.environ, "MLXK_STORE": str(tmp_path / "store")}
    cmd = [sys.executable, "-m", "mlxk.cli", "push", "-f", str(m), "--to", to]
    cmd += ["--chunk-size", "131072", "--json"]
    subprocess.run([*cmd[:3], "sync", "-f", str(m)], env=env, check=True, cwd=ROOT)
    cut = subprocess.run(cmd, env={**env, "MLXK_FAULT": "push-chunk"}, cwd=ROOT)
    assert cut.returncode == -9
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    blobs = json.loads(out.stdout)["data"]["workspaces"][0]["blobs"]
    assert blobs["resumed_bytes"] >= 131072
    assert blobs["bytes_sent"] == len(big) - blobs["resumed_bytes"]  # config.json was sent
    with Registry(registry.host, NO_LOGIN) as reg:
        assert sha(b"".join(reg.open_blob(parse(to).repo + "/demo", sha(big))[1])) == sha(big)


# ---------------------------------------------------------------- remote
def test_a_fleet_machine_syncs_from_the_remote_with_the_source_gone(
    pushed, tmp_path, mlxk, monkeypatch
):
    m, to, _ = pushed
    fleet = machine(monkeypatch, tmp_path / "fleet", m)
    monkeypatch.setenv("MLXK_REMOTE", to)
    plan = mlxk("plan", "-f", str(fleet), "--json")
    assert plan.json["data"]["summary"]["bytes"]["remote"] == sum(len(b) for b in FILES.values())
    res = mlxk("sync", "-f", str(fleet), "--frozen", "--json")
    assert res.exit_code == 0, res
    total = sum(len(b) for b in FILES.values())
    assert res.json["data"]["fetched"]["remote"] == {"files": len(FILES), "bytes": total}
    assert (fleet.parent / "mlxk.lock").read_bytes() == m.with_name("mlxk.lock").read_bytes()
    assert mlxk("verify", "-f", str(fleet)).exit_code == 0
    assert (tmp_path / "fleet/models/demo/tokenizer/tokenizer.json").read_bytes() == FILES[
        "tokenizer/tokenizer.json"
    ]


def test_offline_the_remote_alone_must_do(pushed, tmp_path, mlxk, monkeypatch):
    m, to, _ = pushed
    fleet = machine(monkeypatch, tmp_path / "fleet", m)
    (fleet.parent / "weights").mkdir()  # the source is there, but --offline never asks it
    monkeypatch.setenv("MLXK_REMOTE", to)
    res = mlxk("sync", "-f", str(fleet), "--frozen", "--offline", "--json")
    assert res.exit_code == 0, res
    assert res.json["data"]["fetched"]["remote"]["files"] == len(FILES)


def test_no_remote_offline_needs_the_store(pushed, tmp_path, mlxk, monkeypatch):
    m, to, _ = pushed
    fleet = machine(monkeypatch, tmp_path / "fleet", m)
    monkeypatch.setenv("MLXK_REMOTE", to)
    res = mlxk("sync", "-f", str(fleet), "--frozen", "--offline", "--no-remote")
    assert res.exit_code == 3 and "not in the store" in res.stderr


def test_the_registry_lacking_a_workspace_falls_back_to_the_source_saying_so(
    tmp_path, registry, mlxk, monkeypatch
):
    m = make_project(tmp_path / "a")
    assert mlxk("lock", "-f", str(m)).exit_code == 0
    monkeypatch.setenv("MLXK_REMOTE", prefix(registry))  # nothing pushed there
    res = mlxk("sync", "-f", str(m), "--json")
    assert res.exit_code == 0, res
    (note,) = [n for n in res.json["data"]["notes"] if n.startswith("remote ")]
    assert f"{len(FILES)} file(s) not from the registry" in note and "source instead" in note
    assert res.json["data"]["fetched"]["remote"]["files"] == 0
    assert mlxk("verify", "-f", str(m)).exit_code == 0


def test_offline_and_the_registry_lacks_it_exit_3_naming_registry_and_push(
    tmp_path, registry, mlxk, monkeypatch
):
    m = make_project(tmp_path / "a")
    assert mlxk("lock", "-f", str(m)).exit_code == 0
    fleet = machine(monkeypatch, tmp_path / "fleet", m)
    to = prefix(registry)
    monkeypatch.setenv("MLXK_REMOTE", to)
    res = mlxk("sync", "-f", str(fleet), "--frozen", "--json")
    assert res.exit_code == 3
    err = res.json["error"]
    assert f"{to}/demo: the registry has no blob" in err["message"]
    assert "mlxk push demo" in err["hint"]
    assert not (fleet.parent / "models" / "demo").exists()


def test_an_unreachable_remote_offline_is_exit_3_one_line(pushed, tmp_path, mlxk, monkeypatch):
    m, _, _ = pushed
    fleet = machine(monkeypatch, tmp_path / "fleet", m)
    host = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLXK_REMOTE", f"oci://{host}/models")
    res = mlxk("sync", "-f", str(fleet), "--frozen", "--offline")
    assert res.exit_code == 3
    error = res.stderr.splitlines()[0]
    assert f"cannot reach the registry {host}" in error and error.startswith("error: ")


def test_an_unreachable_remote_falls_back_to_the_source_asking_once(tmp_path, mlxk, monkeypatch):
    m = make_project(tmp_path / "a")
    host = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLXK_REMOTE", f"oci://{host}/models")
    res = mlxk("sync", "-f", str(m), "--json")
    assert res.exit_code == 0, res
    (note,) = [n for n in res.json["data"]["notes"] if n.startswith("remote ")]
    assert f"{len(FILES)} file(s) not from the registry" in note
    assert f"cannot reach the registry {host}" in note and "source instead" in note


def test_a_bad_remote_is_a_user_error(tmp_path, mlxk, monkeypatch):
    m = make_project(tmp_path / "a")
    monkeypatch.setenv("MLXK_REMOTE", "registry.internal/models")
    res = mlxk("sync", "-f", str(m))
    assert res.exit_code == 2 and "MLXK_REMOTE" in res.stderr
    monkeypatch.delenv("MLXK_REMOTE")
    bad = make_project(tmp_path / "b", body="version: 1\nremote: oci://h/m:v1\nworkspaces: {}\n")
    res = mlxk("validate", "-f", str(bad))
    assert res.exit_code == 2 and "models.yaml:2:9: remote:" in res.stderr


def test_tampered_blob_in_the_registry_exit_3_nothing_placed_nothing_kept(
    tmp_path, registry, mlxk, monkeypatch
):
    files = {"model.safetensors": os.urandom(200_000), "config.json": b'{"a": 1}'}
    m = make_project(tmp_path / "a", files=files)
    assert mlxk("sync", "-f", str(m)).exit_code == 0
    to = prefix(registry)
    assert mlxk("push", "-f", str(m), "--to", to).exit_code == 0
    hexd = sha(files["model.safetensors"])[7:]
    blob = registry.root / "data/docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"
    blob.write_bytes(os.urandom(200_000))  # the registry's disk is changed under it
    fleet = machine(monkeypatch, tmp_path / "fleet", m)
    monkeypatch.setenv("MLXK_REMOTE", to)
    res = mlxk("sync", "-f", str(fleet), "--frozen", "--json")
    assert res.exit_code == 3 and res.json["error"]["type"] == "integrity_error"
    assert "do not match" in res.json["error"]["message"]
    assert not (fleet.parent / "models" / "demo").exists()
    store = tmp_path / "fleet" / "store"
    assert not list(store.glob(f"blobs/sha256/*/{hexd}")) and not list(store.glob("tmp/*"))


def test_the_hub_down_a_fleet_machine_syncs_a_hub_pinned_lock_from_the_registry(tmp_path, registry):
    """Library level, with the in-process hub: a runtime capture travels too, the lock is
    the hub-pinned one, and the hub is never asked."""
    repos = MemRepos()
    repos.commit("org/m", FILES, "main")
    repos.commit("org/tok", {"tokenizer.json": b"{}" * 80}, "main")
    body = "version: 1\nworkspaces:\n  m:\n    source: hf://org/m\n    runtime: [hf://org/tok]\n"
    m = write_manifest(tmp_path / "a", body)
    a = Project.load(m, clients={"hf": repos}, settings=Settings(store=tmp_path / "sa"))
    a.sync()
    report = push(a, to=prefix(registry))
    down = MemRepos(down=True)
    fleet = machine_copy(tmp_path / "fleet", m)
    settings = Settings(store=tmp_path / "sb", remote=report.registry)
    b = Project.load(fleet, clients={"hf": down}, settings=settings)
    result = b.sync(frozen=True)
    assert result.fetched["remote"]["files"] == len(FILES) + 1 and not down.served
    assert b.verify().ok and fleet.with_name("mlxk.lock").read_bytes() == a.lock_path.read_bytes()


def test_step_outputs_come_from_the_remote_no_converter_no_inputs(
    tmp_path, registry, mlxk, monkeypatch
):
    """A converted workspace: the fleet machine gets the step outputs from the registry, with
    neither the converter's inputs nor the network to its source; show names the step."""
    from mlxk.entries import FileEntry, workspace_content_hash
    from mlxk.lock import Lock, LockedStep, LockedWorkspace
    from mlxk.sources.path import PathPin

    body = MANIFEST + "    steps:\n      - convert: {quantize: {bits: 4}}\n"
    m = make_project(tmp_path / "a", body=body)
    a = Project.load(m, settings=Settings(store=tmp_path / "sa"))
    spec = a.manifest.workspaces["demo"]
    inputs = tuple(FileEntry(p, len(b), sha(b)) for p, b in sorted(FILES.items()))
    outputs = {"model.safetensors": os.urandom(1000), "config.json": b'{"quantized": 4}'}
    out = tuple(FileEntry(p, len(b), a.store.put_bytes(b)) for p, b in sorted(outputs.items()))
    step = LockedStep(
        "convert",
        {"quantize": {"bits": 4}},
        "mlx_lm",
        {"mlx": "0.0-test", "mlx-lm": "0.0-test"},
        workspace_content_hash(inputs),
        "sha256:" + "5" * 64,
        out,
        workspace_content_hash(out),
    )
    ws = LockedWorkspace(
        "demo", spec.digest(), PathPin(inputs, "weights"), workspace_content_hash(out), (step,)
    )
    lockfile.write(a.lock_path, Lock(a.manifest.digest(), {"demo": ws}))
    report = push(a, to=prefix(registry))
    fleet = machine_copy(tmp_path / "fleet", m)
    settings = Settings(store=tmp_path / "sb", remote=report.registry)
    b = Project.load(fleet, settings=settings, offline=True)
    assert b.plan().summary()["bytes"]["remote"] == sum(len(x) for x in outputs.values())
    result = b.sync(frozen=True)
    assert result.fetched["remote"] == {"files": 2, "bytes": 1016}
    assert (fleet.parent / "models/demo/config.json").read_bytes() == outputs["config.json"]
    assert b.verify().ok
    ref = f"{report.registry}/demo:{report.workspaces[0].tags[0]}"
    pulled = write_manifest(tmp_path / "c", f"version: 1\nworkspaces:\n  q:\n    source: {ref}\n")
    monkeypatch.setenv("MLXK_STORE", str(tmp_path / "sc"))
    assert mlxk("sync", "-f", str(pulled)).exit_code == 0
    shown = mlxk("show", "-f", str(pulled), "q").stdout
    assert 'Pushed step 1: convert {"quantize": {"bits": 4}} via mlx_lm' in shown
    assert "mlx 0.0-test, mlx-lm 0.0-test" in shown


def machine_copy(root: Path, manifest: Path) -> Path:
    root.mkdir(parents=True)
    for name in (manifest.name, "mlxk.lock"):
        shutil.copy(manifest.parent / name, root / name)
    return root / manifest.name


# ---------------------------------------------------------------- oci:// sources
def test_an_oci_source_pins_the_manifest_and_every_layer(pushed, tmp_path, mlxk, monkeypatch):
    _, to, data = pushed
    (ws,) = data["workspaces"]
    ref = f"{to}/demo:{ws['tags'][0]}"
    m = machine(monkeypatch, tmp_path / "b")
    write_manifest(m.parent, f"version: 1\nworkspaces:\n  pulled:\n    source: {ref}\n")
    res = mlxk("sync", "-f", str(m), "--json")
    assert res.exit_code == 0, res
    lock = json.loads(m.with_name("mlxk.lock").read_text())["workspaces"]["pulled"]["source"]
    assert lock["manifest"] == ws["digest"] and lock["ref"] == f"{to}/demo"
    assert {f["path"]: f["hash"] for f in lock["files"]} == {p: sha(b) for p, b in FILES.items()}
    assert lock["provenance"]["source"] == {"kind": "path", "path": "weights"}
    show = mlxk("show", "-f", str(m), "pulled")
    assert "Pushed from: workspace demo, path:weights" in show.stdout
    assert mlxk("show", "-f", str(m), "pulled", "--json").json["data"]["provenance"]["workspace"]
    assert mlxk("verify", "-f", str(m)).exit_code == 0


def test_an_oci_source_by_digest_and_its_mapping_form(pushed, tmp_path, mlxk, monkeypatch):
    _, to, data = pushed
    digest = data["workspaces"][0]["digest"]
    host, repo = to.removeprefix("oci://").split("/", 1)
    m = machine(monkeypatch, tmp_path / "b")
    body = (
        f"version: 1\nworkspaces:\n  a:\n    source: {to}/demo@{digest}\n"
        f"  b:\n    source: {{oci: {host}/{repo}/demo, digest: '{digest}'}}\n"
        "    include: [config.json]\n"
    )
    write_manifest(m.parent, body)
    assert mlxk("sync", "-f", str(m)).exit_code == 0
    assert sorted(p.name for p in (m.parent / "models/b").iterdir()) == [
        ".mlxk_workspace.json",
        "config.json",
    ]
    res = mlxk("lock", "-f", str(m), "--check", "--refresh")
    assert res.exit_code == 0, res  # a digest cannot move


def test_a_moved_tag_is_reported_like_a_moved_branch(tmp_path, registry, mlxk, monkeypatch):
    to = prefix(registry)
    a = make_project(tmp_path / "a")
    assert mlxk("sync", "-f", str(a)).exit_code == 0
    assert mlxk("push", "-f", str(a), "--to", to, "--tag", "v3").exit_code == 0
    m = machine(monkeypatch, tmp_path / "b")
    write_manifest(m.parent, f"version: 1\nworkspaces:\n  q:\n    source: {to}/demo:v3\n")
    assert mlxk("lock", "-f", str(m)).exit_code == 0
    assert mlxk("lock", "-f", str(m), "--check", "--refresh").exit_code == 0
    (tmp_path / "a/weights/README.md").write_bytes(b"# changed\n")
    assert mlxk("lock", "-f", str(a), "--upgrade").exit_code == 0
    assert mlxk("push", "-f", str(a), "--to", to, "--tag", "v3").exit_code == 0
    res = mlxk("lock", "-f", str(m), "--check", "--refresh", "--json")
    assert res.exit_code == 1
    (reason,) = res.json["data"]["reasons"]
    assert reason.startswith(f"q: {to}/demo:v3 moved sha256:")


def foreign_push(reg: Registry, repo: str, tag: str, layers: list[dict], blobs: dict, **extra):
    """Push blobs and a manifest with plain OCI calls: no mlxk code builds it."""
    config = b"{}"
    for data in [*blobs.values(), config]:
        reg.push_blob(repo, sha(data), len(data), lambda d=data: io.BytesIO(d))
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {
            "mediaType": extra.get("config_type", mt.OCI_EMPTY),
            "digest": sha(config),
            "size": len(config),
        },
        "layers": layers,
    }
    data = json.dumps(manifest, indent=3).encode()  # not canonical: someone else's bytes
    return reg.put_manifest(repo, tag, data, mt.OCI_MANIFEST)


def raw_layer(path: str, data: bytes, kind: str = "weight") -> dict:
    return {
        "mediaType": f"application/vnd.cncf.model.{kind}.v1.raw",
        "digest": sha(data),
        "size": len(data),
        "annotations": {mt.ANNOTATION_FILEPATH: path, "org.example.note": "made elsewhere"},
    }


def test_a_foreign_modelpack_artifact_with_nested_paths(tmp_path, registry, mlxk, monkeypatch):
    blobs = {"w/deep/model.safetensors": os.urandom(50_000), "cfg/config.json": b'{"x": 2}'}
    repo = parse(prefix(registry)).repo + "/foreign"
    layers = [
        raw_layer(p, b, "weight" if p.endswith("tensors") else "weight.config")
        for p, b in blobs.items()
    ]
    with Registry(registry.host, NO_LOGIN) as reg:
        digest = foreign_push(reg, repo, "v1", layers, blobs)
    m = machine(monkeypatch, tmp_path / "b")
    write_manifest(
        m.parent, f"version: 1\nworkspaces:\n  f:\n    source: oci://{registry.host}/{repo}:v1\n"
    )
    res = mlxk("sync", "-f", str(m), "--json")
    assert res.exit_code == 0, res
    for path, data in blobs.items():
        assert (m.parent / "models/f" / path).read_bytes() == data
    pin = lockfile.read(m.with_name("mlxk.lock")).workspaces["f"].source
    assert pin.manifest == digest and pin.provenance == {}
    show = mlxk("show", "-f", str(m), "f", "--json").json["data"]
    assert (
        show["origin"] == f"oci://{registry.host}/{repo}@{digest[:19]}" and not show["provenance"]
    )


def test_not_a_model_artifact_names_the_media_types(tmp_path, registry, mlxk, monkeypatch):
    layer = b"not a model"
    image = [
        {
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": sha(layer),
            "size": len(layer),
        }
    ]
    repo = parse(prefix(registry)).repo + "/image"
    with Registry(registry.host, NO_LOGIN) as reg:
        foreign_push(reg, repo, "v1", image, {"l": layer}, config_type=mt.OCI_IMAGE_CONFIG)
    m = machine(monkeypatch, tmp_path / "b")
    write_manifest(
        m.parent, f"version: 1\nworkspaces:\n  i:\n    source: oci://{registry.host}/{repo}:v1\n"
    )
    res = mlxk("sync", "-f", str(m), "--json")
    assert res.exit_code == 3
    message = res.json["error"]["message"]
    assert "not a model artifact" in message and mt.OCI_IMAGE_CONFIG in message
    assert "application/vnd.oci.image.layer.v1.tar+gzip" in message


def test_a_filepath_that_escapes_the_workspace_is_refused_before_anything_is_written(
    tmp_path, registry, mlxk, monkeypatch
):
    evil = b"#!/bin/sh\necho owned\n"
    repo = parse(prefix(registry)).repo + "/evil"
    layers = [
        raw_layer("ok.json", b"{}", "weight.config"),
        raw_layer("../../evil.sh", evil, "code"),
    ]
    with Registry(registry.host, NO_LOGIN) as reg:
        foreign_push(reg, repo, "v1", layers, {"ok.json": b"{}", "evil": evil})
    m = machine(monkeypatch, tmp_path / "b")
    write_manifest(
        m.parent, f"version: 1\nworkspaces:\n  e:\n    source: oci://{registry.host}/{repo}:v1\n"
    )
    res = mlxk("sync", "-f", str(m))
    assert res.exit_code == 3 and "refusing unsafe file name '../../evil.sh'" in res.stderr
    assert not m.with_name("mlxk.lock").exists() and not (m.parent / "models" / "e").exists()
    assert not (tmp_path / "evil.sh").exists()
    assert not list((tmp_path / "b" / "store").glob(f"blobs/sha256/*/{sha(evil)[7:]}"))


def test_missing_repository_and_tag_exit_3(pushed, tmp_path, mlxk, monkeypatch):
    _, to, _ = pushed
    m = machine(monkeypatch, tmp_path / "b")
    write_manifest(m.parent, f"version: 1\nworkspaces:\n  x:\n    source: {to}/nothing:v1\n")
    res = mlxk("lock", "-f", str(m))
    assert res.exit_code == 3 and "no such repository" in res.stderr
    write_manifest(m.parent, f"version: 1\nworkspaces:\n  x:\n    source: {to}/demo:v9\n")
    res = mlxk("lock", "-f", str(m))
    assert (
        res.exit_code == 3 and "no such tag" in res.stderr and "tags there: sha256-" in res.stderr
    )


def test_oci_source_manifest_errors(tmp_path, mlxk):
    for source, needle in (
        ("oci://h/repo", "names no tag or digest"),
        ("oci://h/Repo:v1", "is not a repository name"),
        ("{oci: h/r:v1}", "give the tag or digest as tag: or digest:"),
    ):
        m = write_manifest(tmp_path, f"version: 1\nworkspaces:\n  x:\n    source: {source}\n")
        res = mlxk("validate", "-f", str(m))
        assert res.exit_code == 2 and needle in res.stderr, (source, res)
        assert res.stderr.startswith("error: models.yaml:4:13: workspaces.x.source: ")


# ---------------------------------------------------------------- auth, TLS, site cache
def test_basic_auth_push_and_remote_sync_never_show_the_password(
    tmp_path, auth_registry, mlxk, monkeypatch
):
    m = make_project(tmp_path / "a")
    assert mlxk("sync", "-f", str(m)).exit_code == 0
    to = prefix(auth_registry)
    res = mlxk("push", "-f", str(m), "--to", to, "--json")
    assert res.exit_code == 3
    assert "wants a login (HTTP 401)" in res.json["error"]["message"]
    assert "DOCKER_CONFIG" in res.json["error"]["hint"]
    monkeypatch.setenv("DOCKER_CONFIG", str(auth_registry.extra["docker_config"]))
    outputs = [mlxk("push", "-f", str(m), "--to", to, "--json")]
    assert outputs[0].exit_code == 0, outputs[0]
    fleet = machine(monkeypatch, tmp_path / "fleet", m)
    monkeypatch.setenv("MLXK_REMOTE", to)
    outputs.append(mlxk("sync", "-f", str(fleet), "--frozen", "--offline", "--json"))
    assert outputs[1].exit_code == 0, outputs[1]
    assert outputs[1].json["data"]["fetched"]["remote"]["files"] == len(FILES)
    b = machine(monkeypatch, tmp_path / "b")
    write_manifest(b.parent, f"version: 1\nworkspaces:\n  p:\n    source: {to}/demo:v0\n")
    outputs.append(mlxk("lock", "-f", str(b), "--json"))  # no such tag: an error with a hint
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker"))
    denied = machine(monkeypatch, tmp_path / "denied", m)
    outputs.append(mlxk("sync", "-f", str(denied), "--frozen", "--offline"))
    assert outputs[-1].exit_code == 3 and "wants a login (HTTP 401)" in outputs[-1].stderr
    assert "DOCKER_CONFIG" in outputs[-1].stderr
    texts = [o.stdout + o.stderr for o in outputs] + [fleet.with_name("mlxk.lock").read_text()]
    import base64

    secret_b64 = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    assert all(PASSWORD not in t and secret_b64 not in t for t in texts)


def test_bearer_token_registry_push_and_remote_sync(tmp_path, token_registry, mlxk, monkeypatch):
    m = make_project(tmp_path / "a")
    assert mlxk("sync", "-f", str(m)).exit_code == 0
    monkeypatch.setenv("DOCKER_CONFIG", str(token_registry.extra["docker_config"]))
    to = prefix(token_registry)
    pushed = mlxk("push", "-f", str(m), "--to", to, "--json")
    assert pushed.exit_code == 0, pushed
    fleet = machine(monkeypatch, tmp_path / "fleet", m)
    monkeypatch.setenv("MLXK_REMOTE", to)
    res = mlxk("sync", "-f", str(fleet), "--frozen", "--offline", "--json")
    assert res.exit_code == 0, res
    assert TOKEN_PASSWORD not in pushed.stdout + res.stdout
    assert any(
        f"repository:{parse(to).repo}/demo:pull" in " ".join(r["scopes"])
        for r in token_registry.extra["tokens"].requests
    )


def test_tls_with_a_private_ca_from_ssl_cert_file(tmp_path, tls_registry, mlxk, monkeypatch):
    m = make_project(tmp_path / "a")
    assert mlxk("sync", "-f", str(m)).exit_code == 0
    to = prefix(tls_registry)
    res = mlxk("push", "-f", str(m), "--to", to)
    assert res.exit_code == 3 and "TLS certificate" in res.stderr and "SSL_CERT_FILE" in res.stderr
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_registry.ca_file))
    assert mlxk("push", "-f", str(m), "--to", to).exit_code == 0
    fleet = machine(monkeypatch, tmp_path / "fleet", m)
    monkeypatch.setenv("MLXK_REMOTE", to)
    res = mlxk("sync", "-f", str(fleet), "--frozen", "--offline", "--json")
    assert res.exit_code == 0 and res.json["data"]["fetched"]["remote"]["files"] == len(FILES)


def test_a_pull_through_site_cache_serves_the_fleet_with_the_upstream_down(
    tmp_path, mlxk, monkeypatch
):
    upstream = make_server(tmp_path / "up", "upstream").start()
    try:
        site = make_server(tmp_path / "site", "site", proxy={"remoteurl": upstream.url}).start()
    except BaseException:
        upstream.stop()
        raise
    try:
        m = make_project(tmp_path / "a")
        assert mlxk("sync", "-f", str(m)).exit_code == 0
        assert mlxk("push", "-f", str(m), "--to", f"oci://{upstream.host}/models").exit_code == 0
        monkeypatch.setenv("MLXK_REMOTE", f"oci://{site.host}/models")
        first = machine(monkeypatch, tmp_path / "m1", m)
        res = mlxk("sync", "-f", str(first), "--frozen", "--offline", "--json")
        assert res.exit_code == 0 and res.json["data"]["fetched"]["remote"]["files"] == len(FILES)
        upstream.stop()  # the site keeps serving what it cached
        second = machine(monkeypatch, tmp_path / "m2", m)
        res = mlxk("sync", "-f", str(second), "--frozen", "--offline", "--json")
        assert res.exit_code == 0, res
        assert res.json["data"]["fetched"]["remote"]["files"] == len(FILES)
        assert mlxk("verify", "-f", str(second)).exit_code == 0
    finally:
        site.stop()
        upstream.stop()


# ---------------------------------------------------------------- pure parts
@pytest.mark.unit
def test_repo_names_and_prefixes():
    from mlxk.errors import UserError
    from mlxk.push import content_tag
    from mlxk.remote import prefix_of, repo_name

    assert repo_name("Qwen2.5-0.5B") == "qwen2.5-0.5b"
    with pytest.raises(UserError, match="cannot be an OCI repository name"):
        repo_name("a..b")
    assert prefix_of("oci://reg.lan:5000/models", "MLXK_REMOTE").repo == "models"
    with pytest.raises(UserError, match="^MLXK_REMOTE: "):
        prefix_of("https://reg.lan/models", "MLXK_REMOTE")
    assert content_tag("sha256:" + "ab" * 32) == "sha256-" + "ab" * 32


@pytest.mark.unit
def test_the_remote_is_a_plan_origin_before_the_source_or_a_build():
    from mlxk.entries import FileEntry
    from mlxk.lock import Placed
    from mlxk.plan import Provenance

    f = FileEntry("a", 1, sha(b"a"))
    prov = Provenance(have=lambda e: False, reachable=lambda p: False, remote="oci://r/m")
    assert prov.origin(Placed(f, None, f)) == ("remote", True, "oci://r/m")
    assert Provenance(have=lambda e: True, remote="oci://r/m").origin(Placed(f))[0] == "store"


@pytest.mark.unit
def test_registry_settings_come_from_mlxk_settings():
    s = Settings.from_env(
        {"MLXK_REMOTE": " oci://r/m ", "SSL_CERT_FILE": "", "DOCKER_CONFIG": "/d", "HOME": "/h"}
    )
    assert s.remote == "oci://r/m" and s.registry.ca_file is None
    assert s.registry.credential_files == (Path("/d/config.json"),)


@pytest.mark.unit
def test_an_oci_pin_round_trips_through_the_lock():
    from mlxk.sources.oci import OciKind

    body = {
        "kind": "oci",
        "files": [{"path": "a/b.json", "size": 2, "hash": sha(b"{}")}],
        "ref": "oci://reg.lan:5000/models/q",
        "tag": "v3",
        "manifest": sha(b"m"),
        "provenance": {"workspace": "q"},
    }
    reader = lockfile._Reader("mlxk.lock")
    pin = reader.source(body, "workspaces.q.source")
    assert (
        pin.to_dict() == body
        and pin.describe() == f"oci://reg.lan:5000/models/q:v3 ({sha(b'm')[:19]})"
    )
    assert OciKind().origin(pin.identity())[1:] == (sha(b"m"), "v3")
    with pytest.raises(Exception, match="workspaces.q.source.ref"):
        reader.source({**body, "ref": "oci://reg.lan/models/q:v1"}, "workspaces.q.source")


@pytest.mark.unit
def test_integrity_and_source_errors_exit_3():
    assert IntegrityError("x").exit_code == SourceError("x").exit_code == 3
