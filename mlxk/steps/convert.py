"""Convert steps through mlx_lm, mlx_vlm or mlx_audio (running models is `mlxk.runners`).

The converters are imported only inside a worker subprocess (`python -m mlxk.steps.convert
...`), which runs hermetically: on a local snapshot directory, into a fresh output directory, with
HF_HUB_OFFLINE=1 and HF_HOME pointed at a throwaway directory, its chatter kept out of mlxk's
own stdout. The parent process reads package versions from metadata without importing them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from .. import faults
from ..errors import NotSupportedError
from ..models import audio_domain, group_size, has_model, is_vision, model_type
from ..settings import Settings
from . import ConverterMissing, ConvertFailed, Recipe, StepKind, register

# converter → (distribution, module, mlxk extra that installs it)
CONVERTERS = {
    "mlx_lm": ("mlx-lm", "mlx_lm", "cpu"),
    "mlx_vlm": ("mlx-vlm", "mlx_vlm", "vlm"),
    "mlx_audio": ("mlx-audio", "mlx_audio", "audio"),
}
# Packages whose versions decide a step's output bytes, besides the converter itself.
COMMON_TOOLS = ("mlx", "transformers")


def detect(config: dict) -> tuple[str, dict]:
    """Which converter a model needs, from its config.json, and the options it needs.

    A non-empty vision_config (or image tokens) → mlx-vlm; an audio_config or a model type
    that mlx-audio implements and mlx-lm does not → mlx-audio (with its domain, which keeps
    its loader offline and off path-substring guessing); otherwise mlx-lm.
    """
    mtype = model_type(config)
    if is_vision(config):
        return "mlx_vlm", {}
    domain = audio_domain(mtype)
    in_lm = has_model("mlx_lm", "models", f"{mtype}.py")
    if (config.get("audio_config") or domain) and not in_lm:
        return "mlx_audio", {"model_domain": domain} if domain else {}
    return "mlx_lm", {}


def tool_versions(converter: str) -> dict[str, str]:
    """Versions of the packages that run a converter (read from metadata, nothing imported)."""
    dist, _, extra = CONVERTERS[converter]
    out = {}
    for name in (dist, *COMMON_TOOLS):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            raise ConverterMissing(
                f"{converter}: package {name} is not installed",
                hint=f"pip install 'mlxk[{extra}]'",
            ) from None
    return out


def fingerprint(params: dict, converter: str, tools: dict, input_digest: str) -> str:
    return STEP.fingerprint(params, converter, tools, input_digest)


def hermetic_env(scratch: Path, settings: Settings | None = None) -> dict[str, str]:
    """The environment a converter sees: offline, a throwaway HF_HOME, no token."""
    settings = settings or Settings.from_env()
    env = settings.child_env(drop_prefixes=("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HOME=str(scratch / "hf_home"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONHASHSEED="0",
    )
    return env


def _worker(args: list[str], env: dict, what: str, log: Path | None = None) -> str:
    cmd = [sys.executable, "-m", "mlxk.steps.convert", *args]
    env = {k: v for k, v in env.items() if not k.startswith("MLXK_FAULT")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    faults.point("convert-mid")
    stdout, stderr = proc.communicate()
    proc = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit {proc.returncode}"
        if "ModuleNotFoundError" in last:
            raise ConverterMissing(
                f"{what}: {last}", hint="pip install 'mlxk[cpu]' (or [vlm]/[audio])"
            )
        raise ConvertFailed(
            f"{what}: {last}",
            hint=f"the converter's full output is in {log}"
            if log
            else "set MLXK_DEBUG=1 to see the converter's output",
        )
    return proc.stdout


def run_convert(
    in_dir: Path,
    out_dir: Path,
    params: dict,
    converter: str,
    what: str,
    options=None,
    log=None,
    settings: Settings | None = None,
) -> None:
    """Run one convert step: in_dir (a complete local snapshot) → out_dir (must not exist)."""
    if converter not in CONVERTERS:
        raise NotSupportedError(f"{what}: unknown converter {converter!r}")
    args = {"params": params, "options": options or {}}
    with tempfile.TemporaryDirectory(prefix="mlxk-convert-") as scratch:
        env = hermetic_env(Path(scratch), settings)
        _worker(["convert", converter, str(in_dir), str(out_dir), json.dumps(args)], env, what, log)


# ---------------------------------------------------------------- the plug-in


class ConvertStep(StepKind):
    """`convert: {quantize | dtype | dequantize}` through mlx-lm, mlx-vlm or mlx-audio."""

    name = "convert"

    def prepare(self, params: dict, config: dict, what: str) -> Recipe:
        converter, options = detect(config)
        return Recipe(converter, options, self.tools(converter))

    def tools(self, runner: str) -> dict:
        return tool_versions(runner)

    def run(self, in_dir, out_dir, params, recipe: Recipe, what: str, log, settings) -> None:
        run_convert(in_dir, out_dir, params, recipe.runner, what, recipe.options, log, settings)

    def describe(self, recipe: Recipe) -> str:
        dist = CONVERTERS[recipe.runner][0]
        return f"converting with {recipe.runner} {recipe.tools[dist]}"


STEP = register(ConvertStep())


# ---------------------------------------------------------------- worker (subprocess side)


def _convert_kwargs(converter: str, params: dict, options: dict) -> dict:
    kwargs: dict = dict(options)
    if converter in ("mlx_lm", "mlx_vlm"):
        kwargs["trust_remote_code"] = False  # mlx-vlm's default is True: never
    if "quantize" in params:
        q = params["quantize"]
        mode = q.get("mode", "affine")
        kwargs.update(
            quantize=True,
            q_bits=q["bits"],
            q_group_size=group_size(mode, q.get("group_size")),
            q_mode=mode,
        )
    if "dtype" in params:
        kwargs["dtype"] = params["dtype"]
    if params.get("dequantize"):
        kwargs["dequantize"] = True
    return kwargs


def _do_convert(converter: str, src: str, dst: str, args: dict) -> None:
    import importlib

    kwargs = _convert_kwargs(converter, args["params"], args["options"])
    convert = importlib.import_module(f"{CONVERTERS[converter][1]}.convert").convert
    # Converter chatter goes to stderr, which the parent keeps in its log.
    real_stdout, sys.stdout = sys.stdout, sys.stderr
    try:
        convert(src, dst, **kwargs)
    finally:
        sys.stdout = real_stdout


def main(argv: list[str]) -> None:
    what = argv[0]
    if what == "convert":
        converter, src, dst, args = argv[1:5]
        _do_convert(converter, src, dst, json.loads(args))
    else:
        raise SystemExit(f"unknown worker command {what!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
