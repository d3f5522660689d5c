"""The tree is lint-clean and formatted (ruff), so CI gates on it through the test command."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.support import ROOT


def ruff(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("ruff") or str(ROOT / ".venv" / "bin" / "ruff")
    cmd = [exe] if shutil.which(exe) else [sys.executable, "-m", "ruff"]
    return subprocess.run([*cmd, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_ruff_check_is_clean():
    out = ruff("check", ".")
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format_is_clean():
    out = ruff("format", "--check", ".")
    assert out.returncode == 0, out.stdout + out.stderr


# ---------------------------------------------------------------- the house rules (#12)

PACKAGE = ROOT / "mlxk"


def _modules():
    import ast

    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"))


@pytest.mark.unit
def test_no_function_is_over_60_lines():
    import ast

    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})"
        for path, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > 60
    ]
    assert long == []


@pytest.mark.unit
def test_only_settings_reads_the_environment():
    readers = [
        str(path.relative_to(ROOT))
        for path, _ in _modules()
        if "os.environ" in path.read_text(encoding="utf-8") and path.name != "settings.py"
    ]
    assert readers == []


@pytest.mark.unit
def test_no_module_outside_sources_compares_source_kind_names():
    import re

    pattern = re.compile(
        r"""kind\s*[!=]=\s*["'](hf|path|oci)["']|isinstance\([^)]*(HfSource|PathSource)"""
    )
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path, _ in _modules()
        if "sources" not in path.parts
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []


@pytest.mark.unit
def test_the_architecture_map_names_every_module():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [
        str(path.relative_to(PACKAGE))
        for path, _ in _modules()
        if path.name != "__init__.py" and f"`{path.relative_to(PACKAGE).as_posix()}`" not in text
    ]
    assert missing == []
