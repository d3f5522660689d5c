"""The tree is lint-clean and formatted (ruff), so CI gates on it through the test command."""

from __future__ import annotations

import shutil
import subprocess
import sys

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
