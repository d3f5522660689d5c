"""The runners for real, on tiny models made by scripts/make_tiny_*.py: text (mlx-lm), vision
(mlx-vlm), speech to text and text to speech (mlx-audio), each in a fresh interpreter with
HF_HUB_OFFLINE=1, as `mlxk run` would. The TTS model's unmodified mlx-audio code downloads a
second repo (the SNAC codec, by id) when it loads: offline it fails naming that repo, a capture
run online records it, and once it is listed under `runtime:` and synced, it runs offline."""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError

from mlxk import runners
from mlxk.errors import NotSupportedError, UserError
from mlxk.hfcache import cached_repos
from tests.hubserver import unique_repo_id
from tests.support import DEMO_MODEL, load_script, write_manifest

SNAC = "mlx-community/snac_24khz"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """The tiny models, a 28x28 PNG and a one-second 16 kHz tone."""
    from PIL import Image

    root = tmp_path_factory.mktemp("tiny")
    tts_model, snac = load_script("make_tiny_tts").build(root / "tts")
    pixels = (np.arange(28 * 28 * 3).reshape(28, 28, 3) % 256).astype("uint8")
    Image.fromarray(pixels).save(root / "image.png")
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    runners.write_wav(root / "tone.wav", tone, 16000)
    return {
        "text": DEMO_MODEL,
        "vision": load_script("make_tiny_vlm").build(root / "vlm"),
        "stt": load_script("make_tiny_audio").build(root / "whisper"),
        "tts": tts_model,
        "snac": snac,
        "image": root / "image.png",
        "audio": root / "tone.wav",
    }


@pytest.mark.parametrize(
    ("config", "kind"),
    [
        ({"model_type": "llama", "vocab_size": 512}, "text"),
        ({"model_type": "qwen3", "vocab_size": 151936}, "text"),
        ({"model_type": "qwen3", "vocab_size": 180352}, "tts"),  # VyvoTTS: SNAC code ids
        ({"model_type": "llama", "vocab_size": 156940}, "tts"),  # Orpheus
        ({"model_type": "llava", "vision_config": {"model_type": "clip_vision_model"}}, "vision"),
        ({"model_type": "whisper", "n_mels": 80}, "stt"),
        ({"model_type": "kokoro"}, "tts"),
    ],
)
def test_kind_of(config, kind):
    assert runners.kind_of(config) == kind


def test_kinds_mlxk_cannot_run_are_refused():
    with pytest.raises(NotSupportedError, match="codec"):
        runners.kind_of({"model_type": "snac"})


def test_a_flag_that_does_not_fit_names_the_kind(tiny):
    assert runners.read_kind(tiny["stt"]) == "stt"
    with pytest.raises(
        UserError,
        match="--image is only for vision models, and this is a "
        r"speech-to-text model \(mlx-audio\)",
    ) as e:
        runners.run(tiny["stt"], images=[tiny["image"]], audio=tiny["audio"], what="run w")
    assert e.value.exit_code == 2 and e.value.hint == "mlxk run NAME --audio FILE"
    with pytest.raises(UserError, match="--audio is only for speech-to-text models"):
        runners.run(tiny["text"], prompt="hi", audio=tiny["audio"])
    with pytest.raises(UserError, match=r"a text-to-speech model \(mlx-audio\) needs --output"):
        runners.run_isolated(tiny["tts"], prompt="hi")  # refused before any process starts
    with pytest.raises(UserError, match="needs --audio"):
        runners.run(tiny["stt"])
    with pytest.raises(UserError, match="no such file"):
        runners.run(tiny["vision"], prompt="hi", images=[tiny["image"].with_name("nope.png")])


def test_text_vision_and_speech_to_text_run_offline(tiny, tmp_path):
    env = runners.run_env(tmp_path / "hf_home")  # offline
    text = runners.run_isolated(tiny["text"], env=env, prompt="hello", options={"max_tokens": 4})
    assert text["kind"] == "text" and text["library"] == "mlx-lm"
    assert text["generation_tokens"] == 4 and isinstance(text["text"], str)

    vision = runners.run_isolated(
        tiny["vision"],
        env=env,
        prompt="What is this?",
        images=[str(tiny["image"])],
        options={"max_tokens": 3},
    )
    assert vision["library"] == "mlx-vlm" and vision["generation_tokens"] == 3
    assert vision["images"] == [str(tiny["image"])] and vision["prompt_tokens"] > 4

    stt = runners.run_isolated(tiny["stt"], env=env, audio=str(tiny["audio"]))
    assert stt["kind"] == "stt" and stt["language"] == "en" and stt["segments"] >= 1
    assert isinstance(stt["text"], str)
    assert not (tmp_path / "hf_home" / "hub").exists()  # nothing fetched, nothing cached


def test_the_offline_error_names_the_repo_a_hub_call_wanted(tmp_path):
    """huggingface_hub's "not cached" errors, as transformers and mlx-audio meet them."""
    with pytest.raises(LocalEntryNotFoundError) as e:
        snapshot_download(
            SNAC, allow_patterns=["*.json"], cache_dir=tmp_path, local_files_only=True
        )
    assert SNAC not in str(e.value)  # the message does not say which repo …
    assert runners.wanted_repo(e.value) == (SNAC, "main", ("*.json",))  # … the call did
    with pytest.raises(LocalEntryNotFoundError) as e:
        hf_hub_download(
            "acme/tok", "tokenizer.json", revision="v1", cache_dir=tmp_path, local_files_only=True
        )
    assert runners.wanted_repo(e.value) == ("acme/tok", "v1", ("tokenizer.json",))
    assert runners.wanted_repo(ValueError("unrelated")) is None


def read_wav(path: Path) -> tuple[int, int]:
    with wave.open(str(path)) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        return w.getframerate(), w.getnframes()


def test_tts_second_repo_fails_offline_is_captured_online_then_runs_offline(
    hub, hf_env, tiny, tmp_path, mlxk
):
    files = {
        p: {f.name: f.read_bytes() for f in sorted(tiny[p].iterdir())} for p in ("tts", "snac")
    }
    model = unique_repo_id("tiny-tts")
    hub.create_repo(model, files["tts"])
    if not hub.repo_dir(SNAC).exists():
        hub.create_repo(SNAC, files["snac"])
    body = f"version: 1\nworkspaces:\n  tts:\n    source: hf://{model}@main\n"
    m = write_manifest(tmp_path, body)
    assert mlxk("sync", "-f", str(m)).exit_code == 0
    ws = tmp_path / "models" / "tts"

    # 1. Offline, the codec mlx-audio loads by repo id at import is missing: named, exit 3.
    with pytest.raises(runners.MissingRuntimeRepo) as e:
        runners.run_isolated(ws, prompt="hello", output=str(tmp_path / "a.wav"), what="run tts")
    assert (e.value.repo, e.value.revision) == (SNAC, "main") and e.value.exit_code == 3
    assert e.value.files == ("*.safetensors", "*.json")
    assert f"{SNAC}@main" in e.value.message and not (tmp_path / "a.wav").exists()

    # 2. A capture run: online, against the hub, into an empty HF_HOME; it records the codec.
    capture = tmp_path / "capture"
    online = {**os.environ, "HF_HOME": str(capture)}
    out = runners.run_isolated(ws, env=online, prompt="hello", output=str(tmp_path / "b.wav"))
    assert out["sample_rate"] == 24000 and out["samples"] > 0
    (captured,) = cached_repos(capture)
    assert (captured.repo, captured.revision) == (SNAC, "main")
    assert captured.files == ("config.json", "model.safetensors")

    # 3. Listed under runtime: and synced, the workspace runs offline and still verifies.
    entry = captured.runtime_entry()
    body += f"    runtime:\n      - {{source: '{entry['source']}', include: {entry['include']}}}\n"
    write_manifest(tmp_path, body)
    assert mlxk("sync", "-f", str(m)).exit_code == 0
    res = runners.run_isolated(
        ws, prompt="hello", output=str(tmp_path / "c.wav"), options={"seed": 0}
    )
    assert read_wav(tmp_path / "c.wav") == (24000, res["samples"]) == (24000, out["samples"])
    assert res["duration_seconds"] == round(res["samples"] / 24000, 3)
    assert mlxk("verify", "-f", str(m)).exit_code == 0


def test_mlxk_run_dispatches_vision_and_speech_to_text_from_the_workspace(tiny, tmp_path, mlxk):
    """`mlxk run` picks the runner from the synced workspace's config.json."""
    import shutil

    project = tmp_path / "p"
    for name in ("vision", "stt"):
        shutil.copytree(tiny[name], project / name)
    body = "version: 1\nworkspaces:\n  v:\n    source: path:vision\n  s:\n    source: path:stt\n"
    m = str(write_manifest(project, body))
    assert mlxk("sync", "-f", m).exit_code == 0
    image, audio = str(tiny["image"]), str(tiny["audio"])
    res = mlxk(
        "run", "-f", m, "v", "What is this?", "--image", image, "--max-tokens", "3", "--json"
    )
    assert res.exit_code == 0, res
    data = res.json["data"]
    assert (data["workspace"], data["kind"], data["images"]) == ("v", "vision", [image])
    res = mlxk("run", "-f", m, "s", "--audio", audio, "--json")
    assert res.exit_code == 0 and res.json["data"]["kind"] == "stt", res
    plain = mlxk("run", "-f", m, "s", "--audio", audio)
    assert plain.exit_code == 0 and plain.stdout.strip() == res.json["data"]["text"]
    wrong = mlxk("run", "-f", m, "s", "--audio", audio, "--image", image, "--json")
    assert wrong.exit_code == 2 and wrong.json["error"]["message"] == (
        "run s: --image is only for vision models, and this is a speech-to-text model (mlx-audio)"
    )
    res = mlxk("run", "-f", m, "v", "hi", "--audio", audio)
    assert res.exit_code == 2 and "this is a vision model (mlx-vlm)" in res.stderr
    assert mlxk("verify", "-f", m).exit_code == 0  # running wrote nothing into the workspaces
