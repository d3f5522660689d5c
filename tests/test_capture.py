"""`mlxk capture` and `mlxk run --capture` for real: the test hub (olah) serves a tiny real
text-to-speech model (scripts/make_tiny_tts.py) and the tiny SNAC codec its unmodified
mlx-audio code downloads by repo id, as `mlx-community/snac_24khz`. The seed's case end to
end: sync; an offline run fails naming the codec and suggesting a capture; a capture run
records it; the bundle carries it; inside `unshare -rn` the isolated side syncs from the
bundle, runs and verifies. Plus a plain COMMAND capturing a tokenizer by tag, and a hub that
refuses the download (gated, no token)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave

import pytest
import yaml

from mlxk import lock as lockfile
from tests.hubserver import unique_repo_id
from tests.support import load_script, validate_output, write_manifest
from tests.test_hub_faults import FaultServer

SNAC = "mlx-community/snac_24khz"
SECRET = "hf_SECRETcapturetoken0123456789abcdef"
TOKENIZER = ("tokenizer.json", "tokenizer_config.json")


@pytest.fixture(scope="module")
def tiny_tts(tmp_path_factory) -> dict[str, dict[str, bytes]]:
    model, snac = load_script("make_tiny_tts").build(tmp_path_factory.mktemp("tts"))
    return {
        "model": {f.name: f.read_bytes() for f in sorted(model.iterdir())},
        "snac": {f.name: f.read_bytes() for f in sorted(snac.iterdir())},
    }


@pytest.fixture
def tts_project(hub, hf_env, tiny_tts, tmp_path):
    model = unique_repo_id("tiny-tts")
    hub.create_repo(model, tiny_tts["model"])
    if not hub.repo_dir(SNAC).exists():  # one hub per session (and xdist worker)
        hub.create_repo(SNAC, tiny_tts["snac"])
    body = (
        "# the tiny TTS; the codec it loads at run time gets captured\n"
        f"version: 1\nworkspaces:\n  tts:\n    source: hf://{model}@main   # the model\n"
    )
    return write_manifest(tmp_path / "a", body)


def cli(args, env, cwd=None, netns=False):
    cmd = [sys.executable, "-m", "mlxk.cli", *args]
    if netns:
        cmd = ["unshare", "-rn", *cmd]
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def wav(path) -> tuple[int, int]:
    with wave.open(str(path)) as w:
        return w.getframerate(), w.getnframes()


def test_the_seed_case_end_to_end_capture_bundle_and_run_inside_unshare(
    tts_project, tmp_path, mlxk
):
    m = str(tts_project)
    a = tts_project.parent
    assert mlxk("sync", "-f", m).exit_code == 0
    # 1. Offline, the codec the model loads by id is missing: named, and a capture suggested.
    res = mlxk("run", "-f", m, "tts", "hello", "--output", str(tmp_path / "a.wav"), "--json")
    assert res.exit_code == 3 and res.json["error"]["type"] == "source_error", res
    assert f"loads {SNAC}@main (*.safetensors, *.json) at run time" in res.json["error"]["message"]
    assert "mlxk run --capture tts" in res.json["error"]["hint"]
    assert "mlxk capture tts" in res.json["error"]["hint"]
    assert not (tmp_path / "a.wav").exists()
    # 2. A capture run, online: records the codec, pinned, with the files it fetched.
    res = mlxk("run", "-f", m, "--capture", "tts", "hello", "--output", str(a / "b.wav"), "--json")
    assert res.exit_code == 0, res
    data = res.json["data"]
    (c,) = data["captured"]
    assert (c["repo"], c["revision"], c["action"]) == (SNAC, "main", "added")
    assert c["files"] == ["config.json", "model.safetensors"] and data["written"]
    assert data["run"]["kind"] == "tts" and wav(a / "b.wav") == (24000, data["run"]["samples"])
    text = tts_project.read_text()
    assert text.startswith("# the tiny TTS") and "# the model" in text  # comments kept
    entry = yaml.safe_load(text)["workspaces"]["tts"]["runtime"]
    assert entry == [{"source": f"hf://{SNAC}@main", "include": c["files"]}]
    (rt,) = lockfile.read(a / "mlxk.lock").workspaces["tts"].runtime
    assert rt.commit == c["commit"] == hub_commit(SNAC)
    ws = a / "models" / "tts"
    assert not [p for p in ws.rglob("*") if p.is_symlink()]
    snap = ws / ".hf_cache" / "hub" / "models--mlx-community--snac_24khz"
    assert sorted(p.name for p in (snap / "snapshots" / rt.commit).iterdir()) == c["files"]
    assert sorted(p.name for p in snap.iterdir()) == ["refs", "snapshots"]  # nothing else left
    assert mlxk("verify", "-f", m).exit_code == 0
    assert mlxk("lock", "-f", m, "--check").exit_code == 0
    # 3. Again: nothing new, nothing changed.
    before = tts_project.read_bytes(), (a / "mlxk.lock").read_bytes()
    res = mlxk("run", "-f", m, "--capture", "tts", "hi", "--output", str(a / "c.wav"))
    assert res.exit_code == 0 and "nothing new" in res.stdout, res
    assert (tts_project.read_bytes(), (a / "mlxk.lock").read_bytes()) == before
    # 4. Bundle; on the isolated side (no network at all), first provisioning from it.
    assert mlxk("bundle", "-f", m, str(tmp_path / "models.tar")).exit_code == 0
    iso = dict(os.environ, MLXK_STORE=str(tmp_path / "store-b"), HF_HOME=str(tmp_path / "hf-b"))
    dest = tmp_path / "b"
    dest.mkdir()
    p = cli(["sync", "--offline", "--from", str(tmp_path / "models.tar")], iso, dest, netns=True)
    assert p.returncode == 0, p.stderr
    p = cli(["run", "tts", "hello", "--output", "d.wav", "--json"], iso, dest, netns=True)
    assert p.returncode == 0, p.stderr
    out = validate_output(json.loads(p.stdout))["data"]
    assert wav(dest / "d.wav") == (24000, out["samples"]) and out["library"] == "mlx-audio"
    p = cli(["verify"], iso, dest, netns=True)
    assert p.returncode == 0, p.stdout + p.stderr


def hub_commit(repo: str) -> str:
    """The commit `repo@main` names at the hub now (asked through mlxk's hub client)."""
    from mlxk.sources.hf_client import HfClient

    return HfClient(os.environ["HF_ENDPOINT"]).resolve(repo, "main")


LOADS_A_TOKENIZER = """
import sys
from huggingface_hub import hf_hub_download
for name in ("tokenizer.json", "tokenizer_config.json"):
    print(hf_hub_download(sys.argv[1], name, revision="v1"))
"""


def test_a_command_that_loads_a_tokenizer_by_tag_is_captured_then_runs_offline(
    hub, hf_env, tmp_path, mlxk, demo_files, monkeypatch
):
    """The model ships without a tokenizer; any program that fetches one by repo id and tag
    is the COMMAND. Its capture is pinned to the tag, and `mlxk run` then works offline."""
    model, tok = unique_repo_id("model"), unique_repo_id("tok")
    hub.create_repo(model, {k: v for k, v in demo_files.items() if k not in TOKENIZER})
    hub.create_repo(tok, {k: demo_files[k] for k in (*TOKENIZER, "config.json")})
    v1 = hub.tag(tok, "v1")
    body = f"version: 1\nworkspaces:\n  m:\n    source: hf://{model}@main\n"
    m = str(write_manifest(tmp_path, body))
    assert mlxk("sync", "-f", m).exit_code == 0
    assert mlxk("run", "-f", m, "m", "hello", "--max-tokens", "2").exit_code != 0
    cmd = [sys.executable, "-c", LOADS_A_TOKENIZER, tok]
    res = mlxk("capture", "-f", m, "--json", "m", "--", *cmd)
    assert res.exit_code == 0, res
    (c,) = res.json["data"]["captured"]
    assert (c["repo"], c["revision"], c["commit"], c["files"]) == (tok, "v1", v1, list(TOKENIZER))
    assert "snapshots" in res.stderr  # with --json, the command's stdout goes to stderr
    cache = tmp_path / "models" / "m" / ".hf_cache" / "hub" / f"models--{tok.replace('/', '--')}"
    assert {p.name: p.read_text() for p in (cache / "refs").iterdir()} == {"main": v1, "v1": v1}
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the hub is gone
    res = mlxk("run", "-f", m, "m", "hello", "--max-tokens", "2", "--json")
    assert res.exit_code == 0 and res.json["data"]["generation_tokens"] == 2, res
    assert mlxk("verify", "-f", m).exit_code == 0


def test_a_hub_that_refuses_the_download_is_exit_3_with_its_message(
    tts_project, hub, tmp_path, mlxk, monkeypatch
):
    m = str(tts_project)
    assert mlxk("sync", "-f", m).exit_code == 0
    before = tts_project.read_bytes(), (tts_project.parent / "mlxk.lock").read_bytes()
    fault = FaultServer(hub.endpoint)
    try:
        said = f"Access to model {SNAC} is restricted. You must be authenticated to access it."
        fault.answer = (401, {"X-Error-Code": "GatedRepo", "X-Error-Message": said}, b"")
        monkeypatch.setenv("HF_ENDPOINT", fault.endpoint)
        out = str(tmp_path / "x.wav")
        res = mlxk("run", "-f", m, "--capture", "tts", "hi", "--output", out, "--json")
        assert res.exit_code == 3 and res.json["error"]["type"] == "source_error", res
        assert res.json["error"]["message"] == f"run tts: the hub refused {SNAC}: {said}"
        assert "HF_TOKEN" in res.json["error"]["hint"]
        fetch = f"from huggingface_hub import snapshot_download; snapshot_download('{SNAC}')"
        res = mlxk("capture", "-f", m, "--json", "tts", "--", sys.executable, "-c", fetch)
        assert res.exit_code == 3, res
        assert res.json["error"]["message"] == (
            f"capture tts: the hub refused {sys.executable} a download: 401 Client Error. "
            f"Cannot access gated repo for url {fault.endpoint}/api/models/{SNAC}/revision/main. "
            + said
        )
        # With a token the hub does not accept, and echoes back: never shown by mlxk.
        monkeypatch.setenv("HF_TOKEN", SECRET)
        fault.answer = (403, {"X-Error-Message": "token {auth} is not allowed"}, b"")
        res = mlxk("run", "-f", m, "--capture", "tts", "hi", "--output", out, "--json")
        assert res.exit_code == 3 and "the hub refused" in res.json["error"]["message"], res
        shown = [res.stdout, res.stderr]
        res = mlxk("capture", "-f", m, "--json", "tts", "--", sys.executable, "-c", fetch)
        assert (
            res.exit_code == 3
            and "403 Forbidden: token <token> is not" in res.json["error"]["message"]
        )
        shown.append(res.stdout)
        assert all(r[2].get("authorization") == f"Bearer {SECRET}" for r in fault.log[-1:])
        assert not [s for s in shown if SECRET in s or "Bearer" in s], shown
    finally:
        fault.close()
    after = tts_project.read_bytes(), (tts_project.parent / "mlxk.lock").read_bytes()
    assert after == before
