"""Build steps applied to a workspace's source snapshot. Each kind of step is a plug-in module
of this package (convert.py: quantize, dtype, dequantize through mlx-lm/mlx-vlm/mlx-audio) that
registers one `StepKind`: how it chooses what runs it (`prepare`, from the input's config.json),
the tool versions that decide its output bytes, its fingerprint, and how it runs (hermetically,
on a local snapshot of its inputs, into a fresh directory). The builder (build.py) looks kinds
up here and never compares kind names.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ..errors import MlxkError, UserError
from ..hashing import canonical_json, sha256_text


class ConverterMissing(MlxkError):
    """What runs a step is not installed here."""

    kind = "converter_missing"


class ConvertFailed(MlxkError):
    """A step ran and failed, or wrote something it may not."""

    kind = "convert_failed"


@dataclass(frozen=True)
class Recipe:
    """How one step will run: what runs it (the lock's `converter`), its options, and the
    versions of every tool that decides its output bytes."""

    runner: str
    options: dict
    tools: dict


class StepKind(ABC):
    name: ClassVar[str]

    @abstractmethod
    def prepare(self, params: dict, config: dict, what: str) -> Recipe:
        """Choose the runner for these inputs (their config.json) and read tool versions."""

    @abstractmethod
    def tools(self, runner: str) -> dict:
        """Installed versions of what `runner` needs (raises when it is not installed)."""

    @abstractmethod
    def run(
        self, in_dir: Path, out_dir: Path, params: dict, recipe: Recipe, what: str, log, settings
    ) -> None:
        """Run: in_dir (the complete input snapshot) → out_dir (must not exist yet)."""

    def fingerprint(self, params: dict, runner: str, tools: dict, input_digest: str) -> str:
        body = {"kind": self.name, "params": params, "converter": runner, "tools": tools}
        return sha256_text(canonical_json({**body, "input": input_digest}))

    def is_current(self, step) -> bool:
        """Whether a locked step would get the same fingerprint with the tools installed now."""
        try:
            tools = self.tools(step.converter)
        except MlxkError:  # not installed here
            return False
        fp = self.fingerprint(step.params, step.converter, tools, step.input_digest)
        return fp == step.fingerprint

    def describe(self, recipe: Recipe) -> str:
        return f"{self.name} with {recipe.runner}"


_KINDS: dict[str, StepKind] = {}


def register(kind: StepKind) -> StepKind:
    _KINDS[kind.name] = kind
    return kind


def kind(name: str) -> StepKind:
    if "convert" not in _KINDS:
        from . import convert  # noqa: F401 (registers itself; imported on first use)
    if name not in _KINDS:
        raise UserError(
            f"unknown step kind {name!r}", hint=f"step kinds: {', '.join(sorted(_KINDS))}"
        )
    return _KINDS[name]
