"""mlxk.health: the tiny real model is healthy; each way of breaking it is one named problem."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from mlxk.health import HealthReport, Problem, check_workspace, model_kind
from tests.support import DEMO_MODEL

pytestmark = pytest.mark.unit

ST = "model.safetensors"


@pytest.fixture
def ws(tmp_path) -> Path:
    """A copy of the tiny real llama model, to break."""
    return Path(shutil.copytree(DEMO_MODEL, tmp_path / "ws"))


def only_problem(report: HealthReport) -> Problem:
    assert len(report.problems) == 1, report.problems
    return report.problems[0]


def read_header(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def write_header(path: Path, header: dict, data: bytes) -> None:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def a_tensor(header: dict) -> str:
    return sorted(k for k in header if k != "__metadata__")[0]


def test_demo_model_is_healthy(ws):
    report = check_workspace(ws)
    assert report.ok, report.problems
    assert (report.kind, report.model_type) == ("chat", "llama")
    assert report.checks == (
        "exists",
        "config",
        "weights",
        "index",
        "safetensors",
        "tokenizer",
        "pickle",
    )
    doc = report.to_dict()
    assert list(doc) == ["path", "ok", "model_type", "kind", "checks", "problems"]
    assert doc["ok"] is True and doc["problems"] == []
    json.dumps(doc)


def test_missing_directory(tmp_path):
    report = check_workspace(tmp_path / "nope")
    p = only_problem(report)
    assert (p.check, report.ok, report.checks, report.kind) == ("exists", False, ("exists",), None)
    assert "nope" in p.message


def test_missing_config(ws):
    (ws / "config.json").unlink()
    report = check_workspace(ws)
    p = only_problem(report)
    assert (p.check, p.path) == ("config", "config.json")
    assert "config.json" in p.message and "missing" in p.message
    assert report.kind is None and report.model_type is None
    assert "tokenizer" not in report.checks


def test_invalid_json_config(ws):
    (ws / "config.json").write_text('{"model_type": "llama",')
    p = only_problem(check_workspace(ws))
    assert (p.check, p.path) == ("config", "config.json")
    assert "config.json" in p.message and "not valid JSON" in p.message


def test_config_not_an_object(ws):
    (ws / "config.json").write_text("[1, 2]")
    p = only_problem(check_workspace(ws))
    assert p.check == "config" and "config.json" in p.message


def test_missing_model_type(ws):
    config = json.loads((ws / "config.json").read_text())
    del config["model_type"]
    (ws / "config.json").write_text(json.dumps(config))
    p = only_problem(check_workspace(ws))
    assert p.check == "config"
    assert "config.json" in p.message and "model_type" in p.message


def test_missing_shard_named_in_index(ws):
    index = json.loads((ws / "model.safetensors.index.json").read_text())
    index["weight_map"]["lm_head.weight"] = "model-00002-of-00002.safetensors"
    (ws / "model.safetensors.index.json").write_text(json.dumps(index))
    p = only_problem(check_workspace(ws))
    assert (p.check, p.path) == ("index", "model-00002-of-00002.safetensors")
    assert "model-00002-of-00002.safetensors" in p.message
    assert "model.safetensors.index.json" in p.message


def test_index_without_weight_map(ws):
    (ws / "model.safetensors.index.json").write_text('{"metadata": {}}')
    p = only_problem(check_workspace(ws))
    assert p.check == "index" and "model.safetensors.index.json" in p.message


def test_no_weights(ws):
    (ws / ST).unlink()
    problems = check_workspace(ws).problems
    assert sorted(p.check for p in problems) == ["index", "weights"]
    assert any(p.check == "index" and ST in p.message for p in problems)


def test_truncated_safetensors(ws):
    raw = (ws / ST).read_bytes()
    (ws / ST).write_bytes(raw[: len(raw) // 2])
    problems = check_workspace(ws).problems
    assert problems and {p.check for p in problems} == {"safetensors"}
    assert all(p.path == ST and p.message.startswith(ST + ": ") for p in problems)
    assert "truncated" in problems[0].message
    assert "more tensor problems" in problems[-1].message  # capped, not one per tensor


def test_truncated_inside_header(ws):
    (ws / ST).write_bytes((ws / ST).read_bytes()[:100])
    p = only_problem(check_workspace(ws))
    assert p.check == "safetensors" and ST in p.message and "header length" in p.message


def test_file_too_short_for_a_header(ws):
    (ws / ST).write_bytes(b"\x01\x02")
    p = only_problem(check_workspace(ws))
    assert p.check == "safetensors" and ST in p.message and "too short" in p.message


def test_header_length_past_the_file(ws):
    raw = (ws / ST).read_bytes()
    (ws / ST).write_bytes(struct.pack("<Q", len(raw)) + raw[8:])
    p = only_problem(check_workspace(ws))
    assert p.check == "safetensors" and ST in p.message and "past the end" in p.message


def test_header_length_over_the_limit(ws):
    raw = (ws / ST).read_bytes()
    (ws / ST).write_bytes(struct.pack("<Q", 2**40) + raw[8:])
    p = only_problem(check_workspace(ws))
    assert p.check == "safetensors" and ST in p.message and "limit" in p.message


def test_header_not_json(ws):
    header, data = read_header(ws / ST)
    text = json.dumps(header).encode()
    (ws / ST).write_bytes(struct.pack("<Q", len(text)) + b"#" + text[1:] + data)
    p = only_problem(check_workspace(ws))
    assert p.check == "safetensors" and ST in p.message and "not valid JSON" in p.message


def test_tensor_offsets_beyond_the_file(ws):
    header, data = read_header(ws / ST)
    name = a_tensor(header)
    begin, end = header[name]["data_offsets"]
    header[name]["data_offsets"] = [begin + len(data), end + len(data)]
    write_header(ws / ST, header, data)
    p = only_problem(check_workspace(ws))
    assert p.check == "safetensors" and ST in p.message and repr(name) in p.message
    assert "past the data section" in p.message


def test_shape_does_not_match_the_byte_range(ws):
    header, data = read_header(ws / ST)
    name = a_tensor(header)
    header[name]["shape"] = [*header[name]["shape"], 2]
    write_header(ws / ST, header, data)
    p = only_problem(check_workspace(ws))
    assert p.check == "safetensors" and ST in p.message and repr(name) in p.message
    assert "span" in p.message


def test_tensor_entry_without_dtype(ws):
    header, data = read_header(ws / ST)
    name = a_tensor(header)
    del header[name]["dtype"]
    write_header(ws / ST, header, data)
    p = only_problem(check_workspace(ws))
    assert p.check == "safetensors" and repr(name) in p.message and "dtype" in p.message


def test_unknown_dtype_is_not_size_checked(ws):
    header, data = read_header(ws / ST)
    header[a_tensor(header)]["dtype"] = "F4"
    write_header(ws / ST, header, data)
    assert check_workspace(ws).ok


def test_no_tokenizer(ws):
    (ws / "tokenizer.json").unlink()
    p = only_problem(check_workspace(ws))
    assert p.check == "tokenizer" and "tokenizer.json" in p.message


def test_vocab_and_merges_are_a_tokenizer(ws):
    (ws / "tokenizer.json").unlink()
    (ws / "vocab.json").write_text("{}")
    (ws / "merges.txt").write_text("")
    assert check_workspace(ws).ok


def test_pickle_file_is_a_problem_unless_allowed(ws):
    (ws / "pytorch_model.bin").write_bytes(b"\x80\x04")
    report = check_workspace(ws)
    p = only_problem(report)
    assert (p.check, p.path) == ("pickle", "pytorch_model.bin")
    assert "pytorch_model.bin" in p.message
    assert check_workspace(ws, allow_pickle=True).ok


def test_allowed_pickle_counts_as_weights(ws):
    (ws / ST).unlink()
    (ws / "model.safetensors.index.json").unlink()
    (ws / "pytorch_model.bin").write_bytes(b"\x80\x04")
    assert check_workspace(ws, allow_pickle=True).ok
    assert sorted(p.check for p in check_workspace(ws).problems) == ["pickle", "weights"]


def test_sentinel_and_caches_are_skipped(ws):
    (ws / ".mlxk_workspace.json").write_text("not json")
    for d in (".hf_cache", ".git"):
        (ws / d).mkdir()
        (ws / d / "weights.pt").write_bytes(b"\x80\x04")
        (ws / d / "broken.safetensors").write_bytes(b"xx")
    assert check_workspace(ws).ok


def test_symlinked_files_are_followed(ws, tmp_path):
    target = tmp_path / "blobs"
    target.mkdir()
    shutil.move(ws / ST, target / "blob")
    (ws / ST).symlink_to(target / "blob")
    assert check_workspace(ws).ok
    (target / "blob").unlink()
    report = check_workspace(ws)
    assert {p.check for p in report.problems} == {"index", "weights"}


def test_audio_and_embedding_need_a_tokenizer_only_when_configured(ws):
    (ws / "tokenizer.json").unlink()
    config = json.loads((ws / "config.json").read_text())
    (ws / "config.json").write_text(json.dumps({**config, "model_type": "whisper"}))
    report = check_workspace(ws)
    assert report.kind == "audio" and "tokenizer" in report.checks
    assert [p.check for p in report.problems] == ["tokenizer"]  # tokenizer_config.json exists
    (ws / "tokenizer_config.json").unlink()
    report = check_workspace(ws)
    assert report.ok and "tokenizer" not in report.checks


@pytest.mark.parametrize(
    "config, kind",
    [
        ({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}, "chat"),
        ({"model_type": "qwen3"}, "chat"),
        ({"model_type": "llava", "vision_config": {"hidden_size": 8}}, "vision"),
        ({"model_type": "gemma3", "image_token_index": 262144}, "vision"),
        ({"model_type": "qwen2_5_vl", "image_token_id": 151655}, "vision"),
        ({"model_type": "llama", "vision_config": {}}, "chat"),
        ({"model_type": "whisper"}, "audio"),
        ({"model_type": "parakeet"}, "audio"),
        ({"model_type": "qwen2_audio", "audio_config": {"d_model": 8}}, "audio"),
        ({"model_type": "bert", "architectures": ["BertModel"]}, "embedding"),
        ({"model_type": "xlm-roberta"}, "embedding"),
        ({"model_type": "modernbert", "architectures": ["ModernBertForMaskedLM"]}, "embedding"),
        ({"model_type": "mistral", "architectures": ["MistralModel"]}, "embedding"),
        ({"model_type": "bert", "architectures": ["BertForCausalLM"]}, "chat"),
        ({"architectures": ["LlamaForCausalLM"]}, None),
        ({}, None),
        (None, None),
    ],
)
def test_model_kind(config, kind):
    assert model_kind(config) == kind


def test_health_imports_no_ml_library():
    code = (
        "import sys, mlxk.health; "
        "print([m for m in ('mlx', 'mlx_lm', 'torch', 'safetensors', 'numpy') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
