"""Helpers shared by the tests: run the CLI, validate its JSON, write manifests."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import jsonschema
from click.testing import CliRunner

from mlxk.cli import cli
from mlxk.output import output_schema

ROOT = Path(__file__).resolve().parent.parent
DEMO_MODEL = ROOT / "manifests" / "demo-model"


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str
    json: dict | None

    def __repr__(self) -> str:
        return f"Result(exit={self.exit_code})\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


def validate_output(doc: dict) -> dict:
    jsonschema.Draft202012Validator(output_schema()).validate(doc)
    return doc


def run_mlxk(*args: str) -> Result:
    """Invoke `mlxk ARGS` in-process. With --json, stdout must be one valid envelope."""
    res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    doc = None
    if "--json" in args:
        doc = validate_output(json.loads(res.stdout))
    return Result(res.exit_code, res.stdout, res.stderr, doc)


def write_manifest(project: Path, body: str, name: str = "models.yaml") -> Path:
    project.mkdir(parents=True, exist_ok=True)
    path = project / name
    path.write_text(body)
    return path


def load_script(name: str):
    """One of scripts/*.py (the tiny model builders) as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
