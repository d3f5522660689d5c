"""Convert steps for real: mlx-lm quantize / dtype builds of the tiny model, fingerprinted in
the lock, reproducible byte for byte, and runnable offline with `mlxk run`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mlxk import lock as lockfile
from mlxk.hashing import canonical_json
from mlxk.lock import workspace_content_hash
from mlxk.steps import convert
from tests.hubserver import unique_repo_id
from tests.support import DEMO_MODEL, write_manifest

Q4 = "      - convert: {quantize: {bits: 4, group_size: 32}}\n"
BODY = (
    "version: 1\nworkspaces:\n"
    "  demo-4bit:\n    source: path:demo-model\n    steps:\n"
    + Q4
    + "  demo-bf16:\n    source: path:demo-model\n    steps:\n      - convert: {dtype: bfloat16}\n"
)


def project_at(path, body=BODY):
    path.mkdir(parents=True, exist_ok=True)
    if not (path / "demo-model").exists():
        shutil.copytree(DEMO_MODEL, path / "demo-model")
    return str(write_manifest(path, body))


def safetensors_dtypes(path) -> set[str]:
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    return {v["dtype"] for k, v in header.items() if k != "__metadata__"}


@pytest.fixture
def built(tmp_path, mlxk):
    m = project_at(tmp_path / "p")
    res = mlxk("sync", "-f", m, "--json")
    assert res.exit_code == 0, res
    return m, tmp_path / "p"


def test_quantize_and_dtype_steps_build_lock_and_verify(built, mlxk):
    m, project = built
    lock = lockfile.read(project / "mlxk.lock")
    q = lock.workspaces["demo-4bit"]
    (step,) = q.steps
    assert step.converter == "mlx_lm" and step.params == {"quantize": {"bits": 4, "group_size": 32}}
    assert set(step.tools) == {"mlx", "mlx-lm", "transformers"}
    assert step.input_digest == workspace_content_hash(q.source.files)
    assert q.content_hash == step.output_digest == workspace_content_hash(q.files)
    ws = project / "models" / "demo-4bit"
    config = json.loads((ws / "config.json").read_text())
    assert config["quantization"]["bits"] == 4 and config["quantization"]["group_size"] == 32
    assert "U32" in safetensors_dtypes(ws / "model.safetensors")  # packed 4-bit weights
    bf16 = project / "models" / "demo-bf16" / "model.safetensors"
    assert safetensors_dtypes(bf16) == {"BF16"}
    sentinel = json.loads((ws / ".mlxk_workspace.json").read_text())
    assert sentinel["operation"] == "convert"
    assert sentinel["steps"][0]["fingerprint"] == step.fingerprint
    assert mlxk("verify", "-f", m).exit_code == 0
    # verify checks the built bytes: tampering with an output is drift
    (ws / "model.safetensors").write_bytes(b"\0" * 10)
    res = mlxk("verify", "-f", m, "--json")
    assert res.exit_code == 1
    assert res.json["data"]["workspaces"][0]["problems"][0]["path"] == "model.safetensors"


def test_run_generates_offline_from_the_built_workspace(built, mlxk):
    m, project = built
    res = mlxk("run", "-f", m, "demo-4bit", "hello", "--max-tokens", "8", "--json")
    assert res.exit_code == 0, res
    data = res.json["data"]
    assert data["workspace"] == "demo-4bit" and isinstance(data["text"], str) and data["text"]
    again = mlxk("run", "-f", m, "demo-4bit", "hello", "--max-tokens", "8", "--json")
    assert again.json["data"]["text"] == data["text"]  # greedy: deterministic
    plain = mlxk("run", "-f", m, "demo-4bit", "hello", "--max-tokens", "4")
    assert plain.exit_code == 0 and plain.stdout.strip()
    missing = mlxk("run", "-f", m, "nope", "--json")
    assert (
        missing.exit_code == 2 and "no workspace named 'nope'" in missing.json["error"]["message"]
    )


def test_two_independent_builds_are_byte_identical(tmp_path, mlxk, monkeypatch):
    outputs = []
    for i in range(2):
        monkeypatch.setenv("MLXK_STORE", str(tmp_path / f"store{i}"))
        m = project_at(tmp_path / f"p{i}")
        assert mlxk("sync", "-f", m).exit_code == 0
        ws = tmp_path / f"p{i}" / "models" / "demo-4bit"
        outputs.append({p.name: p.read_bytes() for p in sorted(ws.iterdir())})
        outputs[-1]["mlxk.lock"] = (tmp_path / f"p{i}" / "mlxk.lock").read_bytes()
    assert outputs[0].keys() == outputs[1].keys()
    for name in outputs[0]:
        assert outputs[0][name] == outputs[1][name], name


def test_sync_rebuild_checks_reproducibility(built, mlxk):
    m, _ = built
    res = mlxk("sync", "-f", m, "--rebuild", "demo-4bit", "--json")
    assert res.exit_code == 0, res
    (report,) = res.json["data"]["rebuild"]
    assert report["identical"] and len(report["files"]) == 7
    res = mlxk("sync", "-f", m, "--rebuild", "nope", "--json")
    assert res.exit_code == 2


def test_unchanged_step_is_not_rerun_and_changed_params_are(built, mlxk, monkeypatch):
    m, project = built
    calls = []
    real = convert.run_convert
    monkeypatch.setattr(convert, "run_convert", lambda *a, **k: (calls.append(a), real(*a, **k)))
    assert mlxk("sync", "-f", m).exit_code == 0
    assert mlxk("lock", "-f", m, "--json").json["data"]["workspaces"]["demo-4bit"]["action"] == (
        "kept"
    )
    assert calls == []
    old = lockfile.read(project / "mlxk.lock").workspaces["demo-4bit"]
    project_at(project, BODY.replace("bits: 4, group_size: 32", "bits: 8, group_size: 64"))
    res = mlxk("sync", "-f", m, "--json")
    assert res.exit_code == 0, res
    assert len(calls) == 1
    new = lockfile.read(project / "mlxk.lock").workspaces["demo-4bit"]
    assert new.steps[0].fingerprint != old.steps[0].fingerprint
    config = json.loads((project / "models" / "demo-4bit" / "config.json").read_text())
    assert config["quantization"]["bits"] == 8


def test_new_tool_versions_relock_but_locked_sync_keeps_the_lock(built, mlxk):
    """A lock built by other converter versions: plain sync rebuilds and re-locks; --locked
    keeps the lock (its outputs are in the store, bytes checked)."""
    m, project = built
    path = project / "mlxk.lock"
    doc = json.loads(path.read_text())
    doc["workspaces"]["demo-bf16"]["steps"][0]["fingerprint"] = "sha256:" + "0" * 64
    doc["workspaces"]["demo-bf16"]["steps"][0]["tools"]["mlx-lm"] = "0.0.1"
    path.write_text(canonical_json(doc))
    assert mlxk("sync", "-f", m, "--locked").exit_code == 0
    assert json.loads(path.read_text()) == doc
    res = mlxk("sync", "-f", m, "--json")
    assert res.exit_code == 0, res
    assert res.json["data"]["lock"]["workspaces"]["demo-bf16"]["action"] == "rebuilt"
    assert lockfile.read(path).workspaces["demo-bf16"].steps[0].tools["mlx-lm"] != "0.0.1"


def test_frozen_sync_rebuilds_missing_outputs_and_refuses_moved_bytes(
    built, mlxk, tmp_path, monkeypatch
):
    m, project = built
    monkeypatch.setenv("MLXK_STORE", str(tmp_path / "empty-store"))
    shutil.rmtree(project / "models")
    res = mlxk("sync", "-f", m, "--frozen", "--json")  # outputs rebuilt, bytes match the lock
    assert res.exit_code == 0, res
    assert mlxk("verify", "-f", m).exit_code == 0
    # A lock whose recorded output differs from what this converter makes (as if made by
    # another version): a consistent lock, edited, then synced with an empty store.
    path = project / "mlxk.lock"
    doc = json.loads(path.read_text())
    ws = doc["workspaces"]["demo-4bit"]
    step = ws["steps"][0]
    entry = next(f for f in step["files"] if f["path"] == "model.safetensors")
    entry["hash"] = "sha256:" + "ab" * 32
    files = lockfile._Reader("x").files(step["files"], "x")
    step["output_digest"] = ws["content_hash"] = workspace_content_hash(files)
    path.write_text(canonical_json(doc))
    monkeypatch.setenv("MLXK_STORE", str(tmp_path / "empty-store-2"))
    shutil.rmtree(project / "models")
    res = mlxk("sync", "-f", m, "--frozen", "--json")
    assert res.exit_code == 3, res
    assert res.json["error"]["type"] == "integrity_error"
    assert "model.safetensors (locked abababababab…" in res.json["error"]["message"]
    assert not (project / "models" / "demo-4bit").exists()


def test_hf_source_with_dtype_step(hub, hf_env, tmp_path, mlxk, demo_files):
    repo = unique_repo_id()
    hub.create_repo(repo, demo_files)
    hub.tag(repo, "v1")
    m = str(
        write_manifest(
            tmp_path,
            f"version: 1\nworkspaces:\n  demo-bf16:\n"
            f"    source: hf://{repo}@v1\n"
            "    steps:\n      - convert: {dtype: bfloat16}\n",
        )
    )
    res = mlxk("sync", "-f", m, "--json")
    assert res.exit_code == 0, res
    ws = tmp_path / "models" / "demo-bf16"
    assert safetensors_dtypes(ws / "model.safetensors") == {"BF16"}
    assert not (hf_env / "hub").exists()
    assert mlxk("run", "-f", m, "demo-bf16", "hi", "--max-tokens", "4").exit_code == 0


def test_two_steps_run_in_order(tmp_path, mlxk):
    body = (
        "version: 1\nworkspaces:\n  twice:\n    source: path:demo-model\n    steps:\n"
        "      - convert: {dtype: float32}\n" + Q4
    )
    m = project_at(tmp_path / "p", body)
    assert mlxk("sync", "-f", m).exit_code == 0
    lock = lockfile.read(tmp_path / "p" / "mlxk.lock").workspaces["twice"]
    assert lock.steps[1].input_digest == lock.steps[0].output_digest
    assert mlxk("verify", "-f", m).exit_code == 0


@pytest.mark.parametrize(
    "config, converter",
    [
        ({"model_type": "llama"}, ("mlx_lm", {})),
        ({"model_type": "qwen2", "vision_config": {}}, ("mlx_lm", {})),  # empty: text model
        ({"model_type": "llava", "vision_config": {"hidden_size": 8}}, ("mlx_vlm", {})),
        ({"model_type": "llava", "image_token_index": 32000}, ("mlx_vlm", {})),
        ({"model_type": "whisper"}, ("mlx_audio", {"model_domain": "stt"})),
        ({"model_type": "kokoro"}, ("mlx_audio", {"model_domain": "tts"})),
        ({"model_type": "glm"}, ("mlx_lm", {})),  # also an mlx-audio alias; mlx-lm has it
    ],
)
def test_dispatch_by_config(config, converter):
    assert convert.detect(config) == converter


def test_broken_model_fails_with_one_clear_line(tmp_path, mlxk):
    m = project_at(
        tmp_path / "p",
        "version: 1\nworkspaces:\n  bad:\n    source: path:demo-model\n    steps:\n" + Q4,
    )
    cfg = tmp_path / "p" / "demo-model" / "config.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "model_type": "no_such_arch"}))
    res = mlxk("sync", "-f", m, "--json")
    assert res.exit_code == 3
    assert res.json["error"]["type"] == "convert_failed"
    assert res.json["error"]["message"].startswith("bad step 1: ")
    assert "\n" not in res.json["error"]["message"]
    log = res.json["error"]["hint"].removeprefix("the converter's full output is in ")
    assert "Traceback" in Path(log).read_text()  # the whole story is kept, and named
    assert not (tmp_path / "p" / "models" / "bad").exists()


def test_mxfp4_quantization_takes_its_own_group_size(tmp_path, mlxk):
    body = (
        "version: 1\nworkspaces:\n  fp4:\n    source: path:demo-model\n    steps:\n"
        "      - convert: {quantize: {bits: 4, mode: mxfp4}}\n"
    )
    m = project_at(tmp_path / "p", body)
    res = mlxk("sync", "-f", m, "--json")
    assert res.exit_code == 0, res
    config = json.loads((tmp_path / "p" / "models" / "fp4" / "config.json").read_text())
    assert config["quantization"]["mode"] == "mxfp4"
    assert config["quantization"]["group_size"] == 32
