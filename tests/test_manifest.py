"""models.yaml: every accepted form, and errors that name file, line, column and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlxk.errors import ManifestError
from mlxk.manifest import HfSource, PathSource, load_manifest, parse_manifest

pytestmark = pytest.mark.unit

P = Path("/proj/models.yaml")


def parse(text: str):
    return parse_manifest(text, P)


def error(text: str) -> str:
    with pytest.raises(ManifestError) as e:
        parse(text)
    assert e.value.exit_code == 2
    return e.value.message


def test_short_and_long_sources_and_filters():
    m = parse(
        """
version: 1
home: ws
workspaces:
  a:
    source: hf://org/model@v1
    include: ["*.json", "*.safetensors"]
    exclude: ["*.pth"]
  b:
    source: {hf: org/model, revision: main}
  c:
    source: hf://org/model
  d:
    source: path:../train/out
  e:
    source: {path: local}
"""
    )
    ws = m.workspaces
    assert ws["a"].source == HfSource("org/model", "v1")
    assert ws["a"].include == ("*.json", "*.safetensors") and ws["a"].exclude == ("*.pth",)
    assert ws["b"].source == HfSource("org/model", "main")
    assert ws["c"].source == HfSource("org/model", "main")  # default revision
    assert ws["d"].source == PathSource("../train/out")
    assert ws["e"].source == PathSource("local")
    assert m.home == Path("/proj/ws")
    assert ws["a"].where == "models.yaml:5:3"


def test_steps_and_runtime_are_kept_in_the_model():
    m = parse(
        """
version: 1
workspaces:
  q:
    source: hf://org/m@main
    steps:
      - convert: {quantize: {bits: 4, group_size: 64}}
    runtime:
      - hf://org/tok@v2
      - {source: "hf://org/other", include: ["tokenizer*"]}
"""
    )
    q = m.workspaces["q"]
    assert q.steps[0].kind == "convert"
    assert q.steps[0].params == {"quantize": {"bits": 4, "group_size": 64}}
    assert q.runtime[0].source == HfSource("org/tok", "v2")
    assert q.runtime[1].include == ("tokenizer*",)


def test_digest_ignores_key_order_and_home_but_not_content():
    a = parse("version: 1\nhome: x\nworkspaces:\n  a: {source: 'hf://o/m@v1', include: ['*']}\n")
    b = parse("workspaces:\n  a: {include: ['*'], source: {hf: o/m, revision: v1}}\nversion: 1\n")
    c = parse("version: 1\nworkspaces:\n  a: {source: 'hf://o/m@v2', include: ['*']}\n")
    assert a.digest() == b.digest()
    assert a.digest() != c.digest()
    assert a.workspaces["a"].digest() != c.workspaces["a"].digest()


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "version: 1\nworkspaces:\n  qwen:\n    source: hf://o/m\n    steps:\n"
            "      - quantise: {bits: 4}\n",
            "models.yaml:6:9: workspaces.qwen.steps[0]: unknown step 'quantise' "
            "(did you mean 'convert'?)",
        ),
        (
            "version: 1\nworkspaces:\n  a:\n    source: hf://o/m\n    inclde: ['*']\n",
            "models.yaml:5:5: workspaces.a: unknown key 'inclde' (did you mean 'include'?)",
        ),
        (
            "version: 1\nworkspaces:\n  a:\n    source: {hf: o/m, revison: x}\n",
            "models.yaml:4:23: workspaces.a.source: unknown key 'revison' "
            "(did you mean 'revision'?)",
        ),
        (
            "version: 1\nworkspaces:\n  a:\n    source: ftp://x\n",
            "models.yaml:4:13: workspaces.a.source: a source is 'hf://org/name[@revision]'",
        ),
        (
            "version: 2\nworkspaces: {}\n",
            "models.yaml:1:10: version: must be the integer 1 (got 2)",
        ),
        ("workspaces: {}\n", "models.yaml:1:1: (top level): 'version' is required"),
        (
            "version: 1\nworkspaces:\n  a:\n    source: hf://o/m\n    steps:\n"
            "      - convert: {quantize: {bits: 7}}\n",
            "models.yaml:6:36: workspaces.a.steps[0].convert.quantize.bits: 7 is not one of",
        ),
        (
            "version: 1\nworkspaces:\n  a:\n    source: hf://o/m\n    steps: [{quantize: {}}]\n",
            "unknown step 'quantize' (did you mean 'convert: {quantize: ...}'?)",
        ),
        ("version: 1\nversion: 1\n", "models.yaml:2:1: version: duplicate key 'version'"),
        ("version: 1\nworkspaces:\n  ../up:\n    source: hf://o/m\n", "bad workspace name '../up'"),
        (
            "version: 1\nworkspaces:\n  a: {source: 'path:x'}\nhome: /abs\n",
            "models.yaml:4:7: home: '/abs' must be a relative path inside the project",
        ),
        (
            "version: 1\nworkspaces:\n  a: {source: 'path:x'}\nhome: ../out\n",
            "home: '../out' must be a relative path",
        ),
        ("", "models.yaml:1:1: (top level): the manifest is empty"),
        (
            "version: 1\nworkspaces:\n  a:\n    source: path:x\n    steps:\n"
            "      - convert: {quantize: {bits: 4, group_size: 64, mode: mxfp4}}\n",
            "models.yaml:6:29: workspaces.a.steps[0].convert.quantize: mode mxfp4 means "
            "bits: 4 and group_size: 32",
        ),
        (
            "version: 1\nworkspaces:\n  a:\n    source: path:x\n    include: '*.json'\n",
            'workspaces.a.include: include is a list, e.g. include: ["*.json"]',
        ),
        (
            "version: 1\nworkspaces:\n  a:\n    source: path:x\n    runtime: [org/y]\n",
            "workspaces.a.runtime[0]: a runtime entry is 'hf://org/name[@revision]'",
        ),
        (
            "version: 1\nworkspaces:\n  a:\n    source: path:x\n    steps: [{convert: {}}]\n",
            "a convert step needs quantize, dtype or dequantize",
        ),
        ("- a\n- b\n", "(top level): expected a mapping"),
        ("version: 1\nworkspaces: [\n", "models.yaml:3:1: invalid YAML"),
        (
            "version: 1\nworkspaces:\n  a:\n    include: ['*']\n",
            "models.yaml:4:5: workspaces.a: 'source' is required",
        ),
    ],
)
def test_errors_name_file_line_column_and_field(text, expected):
    assert expected in error(text)


def test_yaml_alias_bomb_is_refused_quickly():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    msg = error("\n".join(lines) + "\n")
    assert "too many YAML nodes" in msg


def test_python_tags_are_not_constructed():
    assert "models.yaml" in error("version: !!python/object/apply:os.system ['true']\n")


def test_missing_manifest_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ManifestError) as e:
        load_manifest()
    assert "models.yaml: no such manifest" in e.value.message


def test_empty_workspace_home_env_counts_as_unset(tmp_path, monkeypatch):
    path = tmp_path / "models.yaml"
    path.write_text("version: 1\nworkspaces:\n  a: {source: 'path:x'}\n")
    monkeypatch.setenv("MLXK_WORKSPACE_HOME", "")
    assert load_manifest(path).home == tmp_path / "models"
    monkeypatch.setenv("MLXK_WORKSPACE_HOME", str(tmp_path / "elsewhere"))
    assert load_manifest(path).home == tmp_path / "elsewhere"
