"""Is a workspace usable? A read-only check that never loads the model.

Pure Python (json + struct): config.json, the shard index, every safetensors header against
its file's size, the tokenizer files, and no pickle weights unless allowed. Each problem names
the check that found it and the file (and tensor) it is about.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from .models import has_tokenizer, model_kind
from .workspace import walk

CONFIG = "config.json"
INDEX = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
MAX_HEADER = 100_000_000  # the safetensors format's own limit on a header's length
MAX_TENSOR_PROBLEMS = 5  # per file; the rest are counted in one last problem
DTYPE_SIZES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "F8_E8M0": 1,
}


@dataclass(frozen=True)
class Problem:
    path: str  # relative to the workspace
    check: str
    message: str

    def to_dict(self) -> dict:
        return {"path": self.path, "check": self.check, "message": self.message}


@dataclass(frozen=True)
class HealthReport:
    path: str
    problems: tuple[Problem, ...] = ()
    checks: tuple[str, ...] = ()  # the checks that ran, in order
    model_type: str | None = None
    kind: str | None = None  # "chat" | "vision" | "audio" | "embedding" | None
    hf_cache: tuple[dict, ...] | None = None  # --verbose: the .hf_cache's repo snapshots

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        out = {
            "path": self.path,
            "ok": self.ok,
            "model_type": self.model_type,
            "kind": self.kind,
            "checks": list(self.checks),
            "problems": [p.to_dict() for p in self.problems],
        }
        if self.hf_cache is not None:
            out["hf_cache"] = list(self.hf_cache)
        return out


def cache_listing(path: Path) -> tuple[dict, ...]:
    """Every repo snapshot in a workspace's .hf_cache (its refs and files), and whether the
    workspace declares it: the sentinel sync wrote from the lock names its repo and commit.
    A run or a library that wrote there behind mlxk's back shows up as not declared."""
    from .hfcache import snapshots
    from .workspace import HF_CACHE, SENTINEL

    try:
        sentinel = json.loads((path / SENTINEL).read_text(encoding="utf-8"))
        runtime = sentinel.get("runtime") or [] if isinstance(sentinel, dict) else []
        declared = {(r.get("repo"), r.get("commit")) for r in runtime if isinstance(r, dict)}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        declared = set()
    return tuple(
        {**s.to_dict(), "declared": (s.repo, s.commit) in declared}
        for s in snapshots(path / HF_CACHE)
    )


def check_workspace(path: Path, allow_pickle: bool = False) -> HealthReport:
    """Every problem that would keep the workspace at path from loading (read-only, no model)."""
    path = Path(path)
    if not path.is_dir():
        what = "not a directory" if path.exists() else "no such directory"
        return HealthReport(str(path), (Problem(".", "exists", f"{path}: {what}"),), ("exists",))
    files = _files(path)
    problems: list[Problem] = []
    checks = ["exists", "config"]
    config = _check_config(path, files, problems)
    kind = model_kind(config)
    model_type = config.get("model_type") if config else None

    checks.append("weights")
    tensors = sorted(rel for rel in files if rel.endswith(".safetensors"))
    pickles = sorted(rel for rel in files if rel.endswith(PICKLE_SUFFIXES))
    if not tensors and not (allow_pickle and pickles):
        allowed = " or pickle" if allow_pickle else ""
        problems.append(Problem(".", "weights", f"no *.safetensors{allowed} weight file in {path}"))

    if INDEX in files:
        checks.append("index")
        _check_index(path, files, problems)

    checks.append("safetensors")
    for rel in tensors:
        problems.extend(check_safetensors(path / rel, rel))

    if kind in ("chat", "vision") or (kind and "tokenizer_config.json" in files):
        checks.append("tokenizer")
        if not _has_tokenizer(files):
            problems.append(
                Problem(
                    ".",
                    "tokenizer",
                    f"no tokenizer file in {path} ({kind} models need tokenizer.json, "
                    "tokenizer.model or vocab.json + merges.txt)",
                )
            )

    checks.append("pickle")
    if not allow_pickle:
        for rel in pickles:
            problems.append(
                Problem(rel, "pickle", f"{rel}: pickle file (runs code when loaded), not allowed")
            )

    return HealthReport(
        path=str(path),
        problems=tuple(problems),
        checks=tuple(checks),
        model_type=model_type if isinstance(model_type, str) and model_type else None,
        kind=kind,
    )


def _files(root: Path) -> dict[str, int]:
    """Regular files under root (symlinks followed, as a loader would): {relpath: size}."""
    out = {}
    for rel, (kind, st) in walk(root).items():
        if kind == "symlink":
            try:
                st = os.stat(root / rel)
            except OSError:
                continue  # dangling: reported as missing by whatever check needs it
        if stat.S_ISREG(st.st_mode):
            out[rel] = st.st_size
    return out


def _read_json(path: Path, rel: str, check: str, problems: list[Problem]) -> dict | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        problems.append(Problem(rel, check, f"{rel}: cannot read: {e.strerror or e}"))
        return None
    except UnicodeDecodeError:
        problems.append(Problem(rel, check, f"{rel}: not UTF-8 text"))
        return None
    except json.JSONDecodeError as e:
        problems.append(Problem(rel, check, f"{rel}: not valid JSON: {e}"))
        return None
    if not isinstance(doc, dict):
        problems.append(Problem(rel, check, f"{rel}: not a JSON object"))
        return None
    return doc


def _check_config(root: Path, files: dict, problems: list[Problem]) -> dict | None:
    if CONFIG not in files:
        problems.append(Problem(CONFIG, "config", f"{CONFIG}: missing"))
        return None
    config = _read_json(root / CONFIG, CONFIG, "config", problems)
    if config is not None:
        model_type = config.get("model_type")
        if not isinstance(model_type, str) or not model_type:
            problems.append(Problem(CONFIG, "config", f"{CONFIG}: no model_type"))
    return config


def _check_index(root: Path, files: dict, problems: list[Problem]) -> None:
    index = _read_json(root / INDEX, INDEX, "index", problems)
    if index is None:
        return
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict):
        problems.append(Problem(INDEX, "index", f"{INDEX}: no weight_map object"))
        return
    shards = set()
    for tensor, shard in weight_map.items():
        if not isinstance(shard, str) or not shard:
            problems.append(
                Problem(INDEX, "index", f"{INDEX}: tensor {tensor!r} maps to no shard name")
            )
        else:
            shards.add(shard)
    for shard in sorted(shards):
        parts = shard.split("/")
        if shard.startswith("/") or ".." in parts:
            problems.append(Problem(INDEX, "index", f"{INDEX}: shard {shard!r} is outside"))
        elif shard not in files:
            problems.append(Problem(shard, "index", f"{shard}: named in {INDEX} but missing"))


def check_safetensors(file: Path, rel: str | None = None) -> list[Problem]:
    """Problems with one safetensors file's header and its tensors' byte ranges (data unread)."""
    rel = rel or file.name

    def problem(message: str) -> Problem:
        return Problem(rel, "safetensors", f"{rel}: {message}")

    try:
        with open(file, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 8:
                return [problem(f"{size} bytes, too short for a header")]
            (n,) = struct.unpack("<Q", f.read(8))
            if n > MAX_HEADER:
                return [problem(f"header length {n} is over the {MAX_HEADER}-byte limit")]
            if n > size - 8:
                return [problem(f"header length {n} runs past the end of the file ({size} bytes)")]
            raw = f.read(n)
    except OSError as e:
        return [problem(f"cannot read: {e.strerror or e}")]
    if len(raw) != n:
        return [problem(f"header cut short: read {len(raw)} of {n} bytes")]
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return [problem(f"header is not valid JSON: {e}")]
    if not isinstance(header, dict):
        return [problem("header is not a JSON object")]

    data_size = size - 8 - n
    found = []
    if not isinstance(header.get("__metadata__", {}), dict):
        found.append(problem("__metadata__ is not an object"))
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        message = _tensor_problem(entry, data_size)
        if message:
            found.append(problem(f"tensor {name!r} {message}"))
    if len(found) > MAX_TENSOR_PROBLEMS:
        more = len(found) - MAX_TENSOR_PROBLEMS
        found = found[:MAX_TENSOR_PROBLEMS] + [problem(f"and {more} more tensor problems")]
    return found


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _tensor_problem(entry, data_size: int) -> str | None:
    """What is wrong with one header entry, or None."""
    if not isinstance(entry, dict):
        return "entry is not an object"
    missing = [k for k in ("dtype", "shape", "data_offsets") if k not in entry]
    if missing:
        return "has no " + ", ".join(missing)
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        return f"has a bad shape {shape!r}"
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_int(o) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        return f"has bad data_offsets {offsets!r}"
    begin, end = offsets
    if end > data_size:
        return (
            f"data_offsets [{begin}, {end}] run past the data section ({data_size} bytes; "
            "truncated?)"
        )
    itemsize = DTYPE_SIZES.get(dtype) if isinstance(dtype, str) else None
    if itemsize is not None:
        count = 1
        for d in shape:
            count *= d
        if count * itemsize != end - begin:
            return (
                f"is {dtype} {shape} = {count * itemsize} bytes but its data_offsets "
                f"[{begin}, {end}] span {end - begin}"
            )
    return None


def _has_tokenizer(files: dict) -> bool:
    if has_tokenizer(files):
        return True
    return any(rel.endswith(".tiktoken") and "/" not in rel for rel in files)


@dataclass(frozen=True)
class HealthResult:
    reports: tuple[tuple[str, HealthReport], ...]

    @property
    def ok(self) -> bool:
        return all(r.ok for _, r in self.reports)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "workspaces": [{"name": n, **r.to_dict()} for n, r in self.reports]}


def check_all(
    project, target: str | None, home: Path | None, verbose: bool = False
) -> HealthResult:
    """`mlxk health [NAME|PATH]`: every workspace of the manifest and under `home` (or the
    one named), each with the manifest's allow_pickle; nothing to check is a user error."""
    from .errors import UserError
    from .inventory import find, targets

    chosen = [find(target, project, home)] if target else targets(project, home)
    if not chosen:
        raise UserError(
            "health: nothing to check: no manifest here and no workspace under "
            f"{home or './models'}",
            hint="run it in a project (models.yaml), pass -f FILE or a workspace PATH",
        )
    reports = []
    for name, path, source, _ in chosen:
        spec = project.manifest.workspaces.get(name) if project and source == "manifest" else None
        report = check_workspace(path, allow_pickle=bool(spec and spec.allow_pickle))
        if verbose:  # the ADR's open question 3: what is in .hf_cache, declared or not
            report = dataclasses.replace(report, hf_cache=cache_listing(Path(path)))
        reports.append((name, report))
    return HealthResult(tuple(reports))
