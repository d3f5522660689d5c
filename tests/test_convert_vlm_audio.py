"""mlx-vlm and mlx-audio conversions for real, on tiny models built with each package's own
model classes (scripts/make_tiny_vlm.py, scripts/make_tiny_audio.py), plus dispatch errors."""

from __future__ import annotations

import importlib.util
import json
from importlib import metadata

from mlxk import lock as lockfile
from mlxk.steps import convert
from tests.support import ROOT, write_manifest


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def header(path) -> dict:
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return {k: v for k, v in json.loads(raw[8 : 8 + n]).items() if k != "__metadata__"}


def project(tmp_path, builder: str, step: str):
    load_script(builder).build(tmp_path / "src")
    body = f"version: 1\nworkspaces:\n  m:\n    source: path:src\n    steps:\n      - {step}\n"
    return str(write_manifest(tmp_path, body))


def test_vlm_quantize_through_mlx_vlm(tmp_path, mlxk):
    m = project(tmp_path, "make_tiny_vlm", "convert: {quantize: {bits: 4, group_size: 64}}")
    res = mlxk("sync", "-f", m, "--json")
    assert res.exit_code == 0, res
    step = lockfile.read(tmp_path / "mlxk.lock").workspaces["m"].steps[0]
    assert step.converter == "mlx_vlm"
    assert set(step.tools) == {"mlx-vlm", "mlx", "transformers"}
    ws = tmp_path / "models" / "m"
    config = json.loads((ws / "config.json").read_text())
    assert config["quantization"]["bits"] == 4
    tensors = header(ws / "model.safetensors")
    lm = {v["dtype"] for k, v in tensors.items() if k.startswith("language_model")}
    vision = {v["dtype"] for k, v in tensors.items() if k.startswith("vision_tower")}
    assert "U32" in lm  # the language model is quantized …
    assert vision and "U32" not in vision  # … the vision tower is not (mlx-vlm's rule)
    assert mlxk("verify", "-f", m).exit_code == 0
    res = mlxk("sync", "-f", m, "--rebuild", "m", "--json")
    assert res.exit_code == 0 and res.json["data"]["rebuild"][0]["identical"]
    res = mlxk("run", "-f", m, "m", "hi", "--max-tokens", "2", "--json")  # vision, no image
    assert res.exit_code == 0 and res.json["data"]["library"] == "mlx-vlm", res


def test_audio_quantize_through_mlx_audio(tmp_path, mlxk):
    m = project(tmp_path, "make_tiny_audio", "convert: {quantize: {bits: 4, group_size: 64}}")
    res = mlxk("sync", "-f", m, "--json")
    assert res.exit_code == 0, res
    step = lockfile.read(tmp_path / "mlxk.lock").workspaces["m"].steps[0]
    assert step.converter == "mlx_audio"
    assert set(step.tools) == {"mlx-audio", "mlx", "transformers"}
    ws = tmp_path / "models" / "m"
    assert "U32" in {v["dtype"] for v in header(ws / "model.safetensors").values()}
    assert mlxk("verify", "-f", m).exit_code == 0


def test_missing_extra_is_named(tmp_path, mlxk, monkeypatch):
    """mlx-vlm is installed here; its absence is simulated at the metadata lookup."""
    m = project(tmp_path, "make_tiny_vlm", "convert: {dtype: float16}")
    real = metadata.version

    def version(name):
        if name == "mlx-vlm":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(convert.metadata, "version", version)
    res = mlxk("sync", "-f", m, "--json")
    assert res.exit_code == 3
    assert res.json["error"]["type"] == "converter_missing"
    assert res.json["error"]["hint"] == "pip install 'mlxk[vlm]'"
