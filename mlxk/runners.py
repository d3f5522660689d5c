"""Run a model directory in this process, by kind: text (mlx-lm), vision (mlx-vlm), speech to
text and text to speech (mlx-audio).

The caller sets the environment before anything imports huggingface_hub (it reads it once, at
import): `HF_HOME=<workspace>/.hf_cache` and `HF_HUB_OFFLINE=1` (`run_env`), so whatever a
library loads by repo id comes from the workspace's runtime captures or fails. `run_isolated`
does that in a fresh interpreter (`python -m mlxk.runners`), as the convert worker does for
conversions; a capture run (`mlxk run --capture`) gives it an online environment instead.

Each runner returns a small frozen result with `to_dict()`. A library that asks, offline, for
a repo that is not cached raises `MissingRuntimeRepo` (a SourceError) naming the repo id, the
revision and the files it asked for; a hub that refuses a download (a gated repo, no token)
is a SourceError with the hub's message; a flag that does not fit the model's kind is a
UserError. Like the convert worker, this is the only place that imports its libraries.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

from .errors import MlxkError, NotSupportedError, SourceError, UserError, scrub
from .models import speaks_snac
from .settings import Settings
from .steps.convert import detect, tool_versions

KINDS = ("text", "vision", "stt", "tts")
KIND_WORDS = {"text": "text", "vision": "vision", "stt": "speech-to-text", "tts": "text-to-speech"}
KIND_LIBRARIES = {"text": "mlx-lm", "vision": "mlx-vlm", "stt": "mlx-audio", "tts": "mlx-audio"}
KIND_CONVERTERS = {"text": "mlx_lm", "vision": "mlx_vlm", "stt": "mlx_audio", "tts": "mlx_audio"}
# The options each kind's runner takes (the rest of `mlxk run`'s options do not apply to it).
KIND_OPTIONS = {
    "text": ("max_tokens", "temp", "seed", "tokenizer_repo"),
    "vision": ("max_tokens", "temp", "seed"),
    "stt": ("language",),
    "tts": ("seed", "voice"),
}


@dataclasses.dataclass(frozen=True)
class RunRequest:
    """A checked `mlxk run`: the workspace, its kind, the inputs and the runner's options."""

    name: str
    path: Path
    kind: str
    inputs: dict
    options: dict


# ---------------------------------------------------------------- kinds


def kind_of(config: dict) -> str:
    """A model's kind, "text", "vision", "stt" or "tts", from its config.json.

    The converter choice (`mlxk.steps.convert.detect`) decides, plus one rule of its own:
    a llama/qwen3 whose vocabulary holds the SNAC code ranges is an mlx-audio TTS model
    (Orpheus, VyvoTTS); it converts as the language model it is, but runs through mlx-audio.
    """
    converter, options = detect(config)
    if converter == "mlx_vlm":
        return "vision"
    if converter == "mlx_audio":
        domain = options.get("model_domain")
        if domain in ("stt", "tts"):
            return domain
        raise NotSupportedError(
            f"{config.get('model_type') or 'this'} is an mlx-audio "
            f"{domain or 'audio'} model: mlxk runs only speech-to-text and text-to-speech"
        )
    return "tts" if speaks_snac(config) else "text"


def read_kind(model_dir: Path) -> str:
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SourceError(f"{model_dir}: cannot read config.json ({e})") from None
    return kind_of(config)


# (flag, input name, the kinds that take it, the kinds that need it)
_INPUTS = (
    ("a prompt", "prompt", ("text", "vision", "tts"), ("text", "vision", "tts")),
    ("--image", "images", ("vision",), ()),
    ("--audio", "audio", ("stt",), ("stt",)),
    ("--output", "output", ("tts",), ("tts",)),
)


def check_inputs(kind: str, what: str, **given) -> None:
    """Refuse inputs the kind does not take (`--image` on an audio model) or lacks."""
    for flag, name, takes, _ in _INPUTS:
        if given.get(name) and kind not in takes:
            users = " and ".join(KIND_WORDS[k] for k in takes)
            raise UserError(
                f"{what}: {flag} is only for {users} models, and this is {kind_name(kind)}",
                hint=usage(kind),
            )
    for flag, name, _, needs in _INPUTS:
        if not given.get(name) and kind in needs:
            raise UserError(f"{what}: {kind_name(kind)} needs {flag}", hint=usage(kind))
    for path in [*(given.get("images") or ()), given.get("audio")]:
        if path and not Path(path).is_file():
            raise UserError(f"{what}: no such file: {path}")


def kind_name(kind: str) -> str:
    """'a speech-to-text model (mlx-audio)'."""
    return f"a {KIND_WORDS[kind]} model ({KIND_LIBRARIES[kind]})"


def usage(kind: str) -> str:
    return {
        "text": 'mlxk run NAME "prompt"',
        "vision": 'mlxk run NAME "prompt" --image FILE [--image FILE ...]',
        "stt": "mlxk run NAME --audio FILE",
        "tts": 'mlxk run NAME "text" --output out.wav',
    }[kind]


# ---------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class _Result:
    kind: ClassVar[str] = ""
    library: ClassVar[str] = ""

    def to_dict(self) -> dict:
        return {"kind": self.kind, "library": self.library, **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class TextResult(_Result):
    kind: ClassVar[str] = "text"
    library: ClassVar[str] = KIND_LIBRARIES["text"]
    text: str
    prompt_tokens: int
    generation_tokens: int
    load_seconds: float
    generate_seconds: float


@dataclasses.dataclass(frozen=True)
class VisionResult(_Result):
    kind: ClassVar[str] = "vision"
    library: ClassVar[str] = KIND_LIBRARIES["vision"]
    text: str
    images: tuple[str, ...]
    prompt_tokens: int
    generation_tokens: int
    load_seconds: float
    generate_seconds: float


@dataclasses.dataclass(frozen=True)
class Transcript(_Result):
    kind: ClassVar[str] = "stt"
    library: ClassVar[str] = KIND_LIBRARIES["stt"]
    text: str
    audio: str
    language: str | None
    segments: int
    load_seconds: float
    generate_seconds: float


@dataclasses.dataclass(frozen=True)
class Speech(_Result):
    kind: ClassVar[str] = "tts"
    library: ClassVar[str] = KIND_LIBRARIES["tts"]
    output: str
    sample_rate: int
    samples: int
    duration_seconds: float
    load_seconds: float
    generate_seconds: float


# ---------------------------------------------------------------- missing runtime repos


class MissingRuntimeRepo(SourceError):
    """A library asked, offline, for a repo (by id) that the workspace has not captured.

    Its JSON error type stays "source_error" (exit 3); `runtime_repo` says what was wanted.
    """

    def __init__(self, what: str, repo: str, revision: str, files: tuple[str, ...], name=None):
        asked = f" ({', '.join(files)})" if files else ""
        run = f"mlxk run --capture {name} …" if name else "mlxk run --capture NAME …"
        super().__init__(
            f"{what}: the model loads {repo}@{revision}{asked} at run time, and it is not in "
            f"the workspace's runtime cache",
            hint=f"run it once online to record it under runtime: (`{run}`, or "
            f"`mlxk capture {name or 'NAME'} -- COMMAND`), or list hf://{repo}@{revision} "
            "there yourself and `mlxk sync`",
        )
        self.repo, self.revision, self.files, self.name = repo, revision, files, name

    @property
    def runtime_repo(self) -> dict:
        return {"repo": self.repo, "revision": self.revision, "files": list(self.files)}


_HUB_CALLS = ("snapshot_download", "hf_hub_download")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def wanted_repo(exc: BaseException) -> tuple[str, str, tuple[str, ...]] | None:
    """(repo id, revision, files asked for) if `exc` is an offline "not cached" failure.

    huggingface_hub's offline errors do not always name the repo (snapshot_download's
    LocalEntryNotFoundError does not), so it is read from the failing call's arguments, in
    the traceback's frames.
    """
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    chain = list(_chain(exc))
    if not any(isinstance(e, LocalEntryNotFoundError | OfflineModeIsEnabled) for e in chain):
        return None
    for e in chain:
        for frame, _ in reversed(list(traceback.walk_tb(e.__traceback__))):
            local = frame.f_locals
            if frame.f_code.co_name in _HUB_CALLS and isinstance(local.get("repo_id"), str):
                files = local.get("allow_patterns") or local.get("filename") or ()
                files = (files,) if isinstance(files, str) else tuple(files)
                return local["repo_id"], local.get("revision") or "main", files
    return None


def hub_refusal(exc: BaseException) -> tuple[str, str] | None:
    """(what was refused, the hub's message) if a hub call in `exc`'s chain was refused
    access (a gated or private repo, HTTP 401/403): what a capture without a token meets."""
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError

    for e in _chain(exc):
        if not isinstance(e, HfHubHTTPError):
            continue
        status = getattr(getattr(e, "response", None), "status_code", None)
        if isinstance(e, GatedRepoError) or status in (401, 403):
            said = e.server_message or str(e).strip().splitlines()[0]
            try:
                url = str(e.response.url)
            except Exception:  # httpx raises RuntimeError for a response without a request
                url = str(e)
            repo = re.search(r"/(?:api/models/)?([\w.-]+/[\w.-]+)/(?:resolve|revision|tree)/", url)
            return (repo.group(1) if repo else "a repo"), " ".join(said.split())
    return None


@contextlib.contextmanager
def _runtime_repos_named(what: str, name: str | None = None) -> Iterator[None]:
    try:
        yield
    except MlxkError:
        raise
    except Exception as e:
        refused = hub_refusal(e)  # first: a refusal can end in a "not cached" error too
        if refused is not None:
            said = scrub(refused[1], Settings.from_env().hf_token)
            raise SourceError(
                f"{what}: the hub refused {refused[0]}: {said}",
                hint="set HF_TOKEN to a token with access to it (or `hf auth login`)",
            ) from e
        wanted = wanted_repo(e)
        if wanted is not None:
            raise MissingRuntimeRepo(what, *wanted, name=name) from e
        raise


# ---------------------------------------------------------------- runners


def _seed(seed: int | None) -> None:
    import mlx.core as mx

    if seed is not None:
        mx.random.seed(seed)


def _audio_load_kwargs(model_dir: Path) -> dict:
    """Keep mlx-audio from guessing the model type from the directory's name."""
    config = json.loads((model_dir / "config.json").read_text())
    return {"model_name_parts": []} if config.get("model_type") else {}


def generate_text(
    model_dir: Path,
    prompt: str,
    *,
    max_tokens: int = 256,
    temp: float = 0.0,
    seed: int | None = None,
    tokenizer_repo: tuple[str, str] | None = None,
    what: str = "run",
) -> TextResult:
    """mlx-lm. `tokenizer_repo` (repo, revision) loads the tokenizer by repo id from the
    runtime cache, as an upstream library would, for a model that ships without one."""
    with _runtime_repos_named(what):
        from mlx_lm import stream_generate
        from mlx_lm.sample_utils import make_sampler
        from mlx_lm.utils import load, load_model, load_tokenizer

        _seed(seed)
        t0 = time.perf_counter()
        if tokenizer_repo:
            from huggingface_hub import snapshot_download

            repo, revision = tokenizer_repo
            tok_dir = snapshot_download(repo, revision=revision, local_files_only=True)
            model, tokenizer = load_model(Path(model_dir))[0], load_tokenizer(Path(tok_dir))
        else:
            model, tokenizer = load(str(model_dir))
        t1 = time.perf_counter()
        sampler = make_sampler(temp=temp)
        pieces, last = [], None
        for last in stream_generate(
            model, tokenizer, prompt, max_tokens=max_tokens, sampler=sampler
        ):
            pieces.append(last.text)
        t2 = time.perf_counter()
    return TextResult(
        text="".join(pieces),
        prompt_tokens=last.prompt_tokens if last else 0,
        generation_tokens=last.generation_tokens if last else 0,
        load_seconds=round(t1 - t0, 3),
        generate_seconds=round(t2 - t1, 3),
    )


def generate_vision(
    model_dir: Path,
    prompt: str,
    images: Sequence[str | Path] = (),
    *,
    max_tokens: int = 256,
    temp: float = 0.0,
    seed: int | None = None,
    what: str = "run",
) -> VisionResult:
    """mlx-vlm: the prompt through the model's chat template, with one placeholder per image."""
    images = tuple(str(p) for p in images)
    with _runtime_repos_named(what):
        from mlx_vlm import generate, load
        from mlx_vlm.prompt_utils import apply_chat_template

        _seed(seed)
        t0 = time.perf_counter()
        model, processor = load(str(model_dir), trust_remote_code=False)
        t1 = time.perf_counter()
        chat = apply_chat_template(processor, model.config, prompt, num_images=len(images))
        out = generate(
            model,
            processor,
            chat,
            image=list(images) or None,
            max_tokens=max_tokens,
            temperature=temp,
            verbose=False,
        )
        t2 = time.perf_counter()
    return VisionResult(
        text=out.text,
        images=images,
        prompt_tokens=out.prompt_tokens,
        generation_tokens=out.generation_tokens,
        load_seconds=round(t1 - t0, 3),
        generate_seconds=round(t2 - t1, 3),
    )


def transcribe(
    model_dir: Path, audio: str | Path, *, language: str | None = None, what: str = "run"
) -> Transcript:
    """mlx-audio speech to text: the whole file, as one transcript."""
    model_dir = Path(model_dir)
    with _runtime_repos_named(what):
        from mlx_audio.stt.utils import load_model

        t0 = time.perf_counter()
        model = load_model(model_dir, **_audio_load_kwargs(model_dir))
        t1 = time.perf_counter()
        out = model.generate(str(audio), **({"language": language} if language else {}))
        t2 = time.perf_counter()
    return Transcript(
        text=str(getattr(out, "text", out)).strip(),
        audio=str(audio),
        language=getattr(out, "language", None) or language,
        segments=len(getattr(out, "segments", None) or ()),
        load_seconds=round(t1 - t0, 3),
        generate_seconds=round(t2 - t1, 3),
    )


def speak(
    model_dir: Path,
    text: str,
    output: str | Path,
    *,
    voice: str | None = None,
    seed: int | None = None,
    what: str = "run",
) -> Speech:
    """mlx-audio text to speech, written to `output` as a 16-bit mono WAV."""
    import numpy as np

    model_dir = Path(model_dir)
    with _runtime_repos_named(what):
        from mlx_audio.tts.utils import load_model

        _seed(seed)
        t0 = time.perf_counter()
        model = load_model(model_dir, **_audio_load_kwargs(model_dir))
        t1 = time.perf_counter()
        options = {"voice": voice} if voice else {}
        parts = [
            np.asarray(r.audio, dtype=np.float32).reshape(-1)
            for r in model.generate(text, **options)
        ]
        t2 = time.perf_counter()
    if not parts:
        raise SourceError(f"{what}: the model produced no audio for this text")
    samples = np.concatenate(parts)
    rate = int(model.sample_rate)
    write_wav(Path(output), samples, rate)
    return Speech(
        output=str(output),
        sample_rate=rate,
        samples=int(samples.shape[0]),
        duration_seconds=round(samples.shape[0] / rate, 3),
        load_seconds=round(t1 - t0, 3),
        generate_seconds=round(t2 - t1, 3),
    )


def write_wav(path: Path, samples, rate: int) -> None:
    """16-bit PCM mono, written beside `path` and renamed into place."""
    import wave

    import numpy as np

    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2")
    tmp = path.with_name(f".{path.name}.tmp")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    os.replace(tmp, path)


# ---------------------------------------------------------------- dispatch


def run(
    model_dir: Path,
    *,
    prompt: str | None = None,
    images: Sequence[str | Path] = (),
    audio: str | Path | None = None,
    output: str | Path | None = None,
    kind: str | None = None,
    options: dict | None = None,
    what: str = "run",
    name: str | None = None,
):
    """Check the inputs against the model's kind, then run it (in this process)."""
    kind = kind or read_kind(Path(model_dir))
    check_inputs(kind, what, prompt=prompt, images=images, audio=audio, output=output)
    opts = {k: v for k, v in (options or {}).items() if k in KIND_OPTIONS[kind] and v is not None}
    try:
        if kind == "text":
            return generate_text(model_dir, prompt, what=what, **opts)
        if kind == "vision":
            return generate_vision(model_dir, prompt, images, what=what, **opts)
        if kind == "stt":
            return transcribe(model_dir, audio, what=what, **opts)
        return speak(model_dir, prompt, output, what=what, **opts)
    except MissingRuntimeRepo as e:  # say which workspace to capture for
        if name is None or e.name:
            raise
        raise MissingRuntimeRepo(what, e.repo, e.revision, e.files, name=name) from e.__cause__


# Variables that would move huggingface_hub's caches away from HF_HOME (a capture must land in
# the HF_HOME it is given) or force it offline (a capture run must be online).
CACHE_VARS = (
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "HF_ASSETS_CACHE",
    "HUGGINGFACE_ASSETS_CACHE",
    "HF_XET_CACHE",
    "TRANSFORMERS_CACHE",
    "HF_DATASETS_CACHE",
)
OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
TOKEN_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_STORED_TOKENS_PATH")


def run_env(hf_home: Path, settings: Settings | None = None, online: bool = False) -> dict:
    """The environment a model runs in: `HF_HOME=hf_home` (a workspace's .hf_cache), and

    - offline (`mlxk run`): HF_HUB_OFFLINE=1 and no token;
    - online (a capture run): HF_ENDPOINT and HF_TOKEN as usual, and the user's login token
      file still found although HF_HOME moved.
    """
    settings = settings or Settings.from_env()
    drop = set(CACHE_VARS) | set(OFFLINE_VARS) | ({"HF_TOKEN_PATH"} if online else set(TOKEN_VARS))
    env = {k: v for k, v in settings.child_env().items() if k not in drop}
    env.update(
        HF_HOME=str(hf_home),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        TOKENIZERS_PARALLELISM="false",
    )
    if online:
        env["HF_TOKEN_PATH"] = str(settings.hf_token_path())
    else:
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def run_isolated(
    model_dir: Path,
    *,
    env: dict[str, str] | None = None,
    kind: str | None = None,
    what: str = "run",
    name: str | None = None,
    options: dict | None = None,
    settings: Settings | None = None,
    **inputs,
) -> dict:
    """`run` in a fresh interpreter with `env` (default: offline, `run_env` of the model's
    .hf_cache); its result's dict.

    `inputs` are run's prompt, images, audio and output. They are checked here, before paying
    for a process; an MlxkError raised there is raised here again, as the same class.
    """
    settings = settings or Settings.from_env()
    kind = kind or read_kind(Path(model_dir))
    check_inputs(kind, what, **inputs)
    tool_versions(KIND_CONVERTERS[kind])  # a missing library says which extra installs it
    request = {"model_dir": str(model_dir), "kind": kind, "what": what, "name": name}
    request.update(inputs, options=options)
    cmd = [sys.executable, "-m", "mlxk.runners", json.dumps(request, default=str)]
    env = env or run_env(Path(model_dir) / ".hf_cache", settings)
    stderr = None if settings.debug else subprocess.PIPE  # debug: show the library's output
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
    lines = proc.stdout.strip().splitlines()
    try:
        reply = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        last = ((proc.stderr or "").strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        hint = "set MLXK_DEBUG=1 to see the library's output"
        raise SourceError(f"{what}: {last}", hint=hint) from None
    if "error" in reply:
        raise _error_from(reply, what, name)
    return reply["result"]


def _error_from(reply: dict, what: str, name: str | None) -> MlxkError:
    """The worker's error, as the same class here."""
    if reply.get("runtime_repo"):
        wanted = reply["runtime_repo"]
        files = tuple(wanted["files"])
        return MissingRuntimeRepo(what, wanted["repo"], wanted["revision"], files, name=name)
    doc = reply["error"]
    classes = {c.kind: c for c in (UserError, NotSupportedError, SourceError)}
    return classes.get(doc["type"], MlxkError)(doc["message"], hint=doc["hint"])


def main(argv: list[str]) -> int:
    """Worker: `python -m mlxk.runners REQUEST_JSON`; the last stdout line is the reply."""
    request = json.loads(argv[0])
    model_dir = Path(request.pop("model_dir"))
    real_stdout, sys.stdout = sys.stdout, sys.stderr  # library chatter goes to stderr
    try:
        reply = {"result": run(model_dir, **request).to_dict()}
    except MlxkError as e:
        reply = {"error": e.to_dict(), "runtime_repo": getattr(e, "runtime_repo", None)}
    finally:
        sys.stdout = real_stdout
    print(json.dumps(reply))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
