"""models.yaml: load, validate against the shipped JSON Schema, and freeze into dataclasses.

Errors name the file, line, column and field path, e.g.
`models.yaml:7:9: workspaces.qwen.steps[0]: unknown step 'quantise' (did you mean 'convert'?)`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

from .errors import ManifestError
from .hashing import canonical_json, sha256_text
from .manifest_file import LOCK_NAME as LOCK_NAME
from .manifest_file import MANIFEST_NAME as MANIFEST_NAME
from .manifest_file import (
    MAX_MANIFEST_BYTES,
    InManifestDir,
    default_home,
    placed,
    read_manifest,
    stays_inside,
)
from .manifest_file import find_manifest as find_manifest
from .models import FIXED_MODES
from .sources import Spec, kinds, parse_source, source_schema
from .sources.hf import HfSource
from .sources.path import PathSource

__all__ = ["HfSource", "PathSource", "Manifest", "WorkspaceSpec", "load_manifest"]

MAX_NODES = 100_000  # refuses YAML alias bombs (billion laughs) before they expand


def manifest_schema() -> dict:
    """The shipped schema, its `source` composed from every registered source kind."""
    return _schema(tuple(kinds()))


@cache
def _schema(kind_names: tuple[str, ...]) -> dict:
    # beside this module (importlib.resources costs a tenth of the start-up; mlxk is never zipped)
    text = (Path(__file__).parent / "schemas" / "manifest.schema.json").read_text("utf-8")
    schema = json.loads(text)
    schema["$defs"]["source"] = source_schema(schema["$defs"]["source"])
    return schema


@dataclass(frozen=True)
class Step:
    kind: str
    params: dict

    def to_dict(self) -> dict:
        return {"kind": self.kind, "params": self.params}


@dataclass(frozen=True)
class RuntimeDep:
    source: HfSource
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {
            "source": self.source.to_dict(),
            "include": list(self.include),
            "exclude": list(self.exclude),
        }


@dataclass(frozen=True)
class WorkspaceSpec:
    name: str
    source: Spec
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    steps: tuple[Step, ...] = ()
    runtime: tuple[RuntimeDep, ...] = ()
    where: str = ""  # "models.yaml:12:3", for messages
    allow_pickle: bool = False  # for `mlxk health` only; not part of the lock's digests

    def to_dict(self) -> dict:
        """The normalised form that the lock's digests are computed over."""
        return {
            "source": self.source.to_dict(),
            "include": list(self.include),
            "exclude": list(self.exclude),
            "steps": [s.to_dict() for s in self.steps],
            "runtime": [r.to_dict() for r in self.runtime],
        }

    def digest(self) -> str:
        return sha256_text(canonical_json(self.to_dict()))


@dataclass(frozen=True)
class Manifest(InManifestDir):
    path: Path  # absolute path of models.yaml
    home: Path  # absolute directory the workspaces go in
    store: Path | None  # from the manifest, if it set one
    workspaces: dict[str, WorkspaceSpec] = field(default_factory=dict)
    allowed_signers: Path | None = None  # who may sign the bundles this site imports
    remote: str | None = None  # oci://HOST/PREFIX (`remote:`); not part of any digest
    link: str | None = None  # how sync places files, if the manifest says (not in the digest)
    given: tuple[str | None, str | None] = (None, None)  # (home, store) as written, for the cache
    text_sha256: str = ""  # of the text it was parsed from: its manifest cache entry's key

    def digest(self) -> str:
        """Digest of the normalised workspaces (not of home/store: moving them keeps pins)."""
        body = {name: ws.to_dict() for name, ws in sorted(self.workspaces.items())}
        return sha256_text(canonical_json({"workspaces": body}))


# ---------------------------------------------------------------- positions


_KEY_TAGS = ("tag:yaml.org,2002:str", "tag:yaml.org,2002:merge")  # merge: `<<: *anchor`


def _pos(table: dict, path: tuple) -> tuple[int, int]:
    """Line and column of path, else of its nearest ancestor (merged keys have none)."""
    while path not in table and path:
        path = path[:-1]
    return table.get(path, (1, 1))


def _walk_positions(node, path: tuple, values: dict, keys: dict, counter: list, label: str):
    counter[0] += 1
    if counter[0] > MAX_NODES:
        raise ManifestError(
            f"{label}: too many YAML nodes (more than {MAX_NODES}); aliases expanding?",
            hint="a manifest is small; remove YAML anchors/aliases that multiply",
        )
    mark = node.start_mark
    values[path] = (mark.line + 1, mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _KEY_TAGS:
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                got = key_node.value if isinstance(key_node, yaml.ScalarNode) else "a collection"
                raise ManifestError(
                    f"{label}:{line}:{col}: {_dotted(path)}: a key must be a string, "
                    f"got {str(got)[:40]!r} (quote it)"
                )
            key = key_node.value
            if key in seen:
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                where = _dotted(path + (key,))
                shown = _printable(key)
                raise ManifestError(f"{label}:{line}:{col}: {where}: duplicate key '{shown}'")
            seen.add(key)
            keys[path + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            _walk_positions(value_node, path + (key,), values, keys, counter, label)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk_positions(item, path + (i,), values, keys, counter, label)


def _printable(text) -> str:
    """Text from the manifest, for a one-line message: control characters escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _dotted(path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + _printable(part)
    return out or "(top level)"


# ---------------------------------------------------------------- schema errors


def _schema_message(err) -> tuple[tuple, str, bool]:
    """(path, message, at_key) for one jsonschema error, with did-you-mean for unknown keys."""
    path = tuple(err.absolute_path)
    schema = err.schema if isinstance(err.schema, dict) else {}
    if err.validator in ("oneOf", "anyOf") and isinstance(err.instance, dict):
        # A mapping that almost fits one branch: report that branch's own error (a typo'd key).
        for sub in err.context:
            if sub.validator == "additionalProperties" and set(err.instance) & set(
                sub.schema.get("required", ())
            ):
                return _schema_message(sub)
    parent = err.parent
    while parent is not None:  # inside a oneOf with its own words (a source, a runtime entry)
        if (
            isinstance(parent.schema, dict)
            and "x-message" in parent.schema
            and (parent.validator in ("oneOf", "anyOf") and not isinstance(parent.instance, dict))
        ):
            got = json.dumps(parent.instance, default=str)[:80]
            return tuple(parent.absolute_path), f"{parent.schema['x-message']} (got {got})", False
        parent = parent.parent
    if err.validator == "type" and err.validator_value == "array" and path:
        field = str(path[-1])
        got = json.dumps(err.instance, default=str)[:60]
        return path, f"{field} is a list, e.g. {field}: [{got}]", False
    if err.validator == "minProperties" and path and path[-1] == "convert":
        return path, "a convert step needs quantize, dtype or dequantize", False
    if err.validator == "additionalProperties":
        return _unknown_key(err, schema, path)
    if "propertyNames" in err.schema_path:
        name = err.instance
        hint = manifest_schema()["properties"]["workspaces"]["propertyNames"]["x-message"]
        return path + (name,), f"bad workspace name '{_printable(name)}': {hint}", True
    if err.validator in ("oneOf", "anyOf") and "x-message" in schema:
        got = json.dumps(err.instance, default=str)[:80]
        return path, f"{schema['x-message']} (got {got})", False
    if err.validator == "required":
        return path, err.message.replace("is a required property", "is required"), False
    if err.validator in ("minProperties", "maxProperties") and schema.get("x-unknown") == "step":
        return path, "a step is a mapping with exactly one key, e.g. {convert: {...}}", False
    if err.validator == "enum":
        choices = ", ".join(json.dumps(c) for c in err.validator_value)
        return path, f"{json.dumps(err.instance, default=str)} is not one of: {choices}", False
    if err.validator == "const":
        want = err.validator_value
        kind = "the integer " if isinstance(want, int) and not isinstance(want, bool) else ""
        got = f" (got {json.dumps(err.instance, default=str)[:40]})" if kind else ""
        return path, f"must be {kind}{json.dumps(want)}{got}", False
    return path, err.message, False


def _unknown_key(err, schema: dict, path: tuple) -> tuple[tuple, str, bool]:
    """An unknown key (or step), with did-you-mean."""
    import difflib

    allowed = sorted(schema.get("properties", {}))
    extra = [k for k in err.instance if k not in schema.get("properties", {})]
    key = str(extra[0]) if extra else "?"
    if schema.get("x-unknown") == "step":
        msg = f"unknown step '{_printable(key)}'"
        if key in manifest_schema()["$defs"]["convert"]["properties"]:
            msg += f" (did you mean 'convert: {{{key}: ...}}'?)"
        else:
            close = difflib.get_close_matches(key, allowed, n=1) or allowed[:1]
            msg += f" (did you mean '{close[0]}'?)"
        return path + (key,), msg, True
    msg = f"unknown key '{_printable(key)}'"
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        msg += f" (did you mean '{close[0]}'?)"
    elif allowed:
        msg += f" (expected one of: {', '.join(allowed)})"
    return path + (key,), msg, True


def _validate(data, label: str, values: dict, keys: dict) -> None:
    from .minischema import is_valid

    if is_valid(data, manifest_schema()):
        return  # valid for certain: jsonschema (slow to import) only words errors
    import jsonschema

    validator = jsonschema.Draft202012Validator(manifest_schema())
    errors = list(validator.iter_errors(data))
    if not errors:
        return

    # Report the first error in the file (a person fixes top-down); among errors at one
    # place, the most relevant one by jsonschema's own ranking.
    def first(err):
        return values.get(tuple(err.absolute_path), (0, 0))

    earliest = min(first(e) for e in errors)
    here = [e for e in errors if first(e) == earliest]
    # A misspelt key also leaves a required one missing: name the typo, it is the cause.
    typos = [e for e in here if e.validator == "additionalProperties"]
    best = typos[0] if typos else jsonschema.exceptions.best_match(here)
    path, msg, at_key = _schema_message(best)
    pos = (keys if at_key else values).get(path) or values.get(path[:-1]) or (1, 1)
    shown = path[:-1] if at_key else path
    raise ManifestError(
        f"{label}:{pos[0]}:{pos[1]}: {_dotted(shown)}: {msg}",
        hint="see `mlxk schema manifest` for every key",
    )


# ---------------------------------------------------------------- building


def _parse_hf(text: str) -> HfSource:
    return parse_source(text, "runtime")


def _globs(raw: dict, key: str) -> tuple[str, ...]:
    """Patterns as huggingface_hub takes them: a backslash is a path separator ('/')."""
    return tuple(p.replace("\\", "/") for p in raw.get(key, ()))


def _check_globs(data: dict, label: str, values: dict) -> None:
    """`include: []` would select nothing (it used to mean everything): say so."""
    for name, ws in data["workspaces"].items():
        entries = [(("workspaces", name), ws)]
        entries += [
            (("workspaces", name, "runtime", i), r)
            for i, r in enumerate(ws.get("runtime", ()))
            if isinstance(r, dict)
        ]
        for path, raw in entries:
            if raw.get("include") == []:
                line, col = _pos(values, (*path, "include"))
                raise ManifestError(
                    f"{label}:{line}:{col}: {_dotted((*path, 'include'))}: an empty list "
                    "selects no file",
                    hint="leave `include` out to take every file, or list the patterns to keep",
                )


def _runtime(raw) -> RuntimeDep:
    if isinstance(raw, str):
        return RuntimeDep(source=_parse_hf(raw))
    src = _parse_hf(raw["source"]) if "source" in raw else parse_source(raw, "runtime")
    return RuntimeDep(source=src, include=_globs(raw, "include"), exclude=_globs(raw, "exclude"))


_OUTSIDE_HINTS = {
    "home": "use $MLXK_WORKSPACE_HOME for a home outside the project",
    "store": "use $MLXK_STORE for a store outside the project",
    "allowed_signers": "use $MLXK_ALLOWED_SIGNERS (or --allowed-signers) for a file elsewhere",
}


def _inside(base: Path, rel: str, label: str, pos, field_name: str) -> Path:
    """Resolve `rel` against `base`; refuse absolute paths and anything that leaves `base`."""
    if not stays_inside(rel):
        raise ManifestError(
            f"{label}:{pos[0]}:{pos[1]}: {field_name}: {rel!r} must be a relative path inside "
            f"the project directory",
            hint=_OUTSIDE_HINTS[field_name],
        )
    return placed(base, rel)


def _check_steps(data: dict, label: str, values: dict) -> None:
    """What the schema cannot say: group sizes and bits that a quantization mode fixes."""
    for name, ws in data["workspaces"].items():
        for i, step in enumerate(ws.get("steps", ())):
            q = (step.get("convert") or {}).get("quantize")
            if not q:
                continue
            mode = q.get("mode", "affine")
            path = ("workspaces", name, "steps", i, "convert", "quantize")
            line, col = _pos(values, path)
            where = f"{label}:{line}:{col}: {_dotted(path)}"
            if mode in FIXED_MODES:
                group, bits = FIXED_MODES[mode]
                if q.get("group_size", group) != group or q["bits"] != bits:
                    raise ManifestError(
                        f"{where}: mode {mode} means bits: {bits} and group_size: {group}",
                        hint=f"write {{bits: {bits}, mode: {mode}}}",
                    )
            elif q.get("group_size") == 16:
                raise ManifestError(f"{where}: group_size 16 is for mode nvfp4 only")


def _sources(data: dict, label: str, values: dict) -> dict:
    """Each workspace's source, parsed by its kind (errors name file:line:col)."""
    out = {}
    for name, raw in data["workspaces"].items():
        line, col = _pos(values, ("workspaces", name, "source"))
        out[name] = parse_source(raw["source"], f"{label}:{line}:{col}: workspaces.{name}.source")
    return out


def _places(data: dict, root: Path, label: str, values: dict, settings):
    """(home, store, allowed_signers) the manifest names, resolved inside its directory; home
    defaults to $MLXK_WORKSPACE_HOME (from settings), else ./models."""
    if "home" in data:
        home = _inside(root, data["home"], label, _pos(values, ("home",)), "home")
    else:
        home = default_home(root, settings)
    store = None
    if "store" in data:
        store = _inside(root, data["store"], label, _pos(values, ("store",)), "store")
    signers = None
    if "allowed_signers" in data:
        pos = _pos(values, ("allowed_signers",))
        signers = _inside(root, data["allowed_signers"], label, pos, "allowed_signers")
    return home, store, signers


def _remote(data: dict, label: str, values: dict) -> str | None:
    """`remote:`, checked as a registry prefix (no tag or digest)."""
    from .errors import UserError
    from .oci.reference import parse

    if "remote" not in data:
        return None
    line, col = _pos(values, ("remote",))
    try:
        ref = parse(data["remote"])
    except UserError as e:
        raise ManifestError(f"{label}:{line}:{col}: remote: {e.message}", hint=e.hint) from None
    if ref.tag or ref.digest:
        raise ManifestError(
            f"{label}:{line}:{col}: remote: {ref.describe()} names a tag or digest; a remote is "
            "a prefix, oci://HOST[:PORT]/PREFIX (workspace NAME lives at PREFIX/NAME)"
        )
    return ref.describe()


def _read_yaml(text: str, label: str) -> tuple[dict, dict, dict]:
    """The YAML as data, with each value's and key's line and column; one-line errors."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            values: dict = {}
            keys: dict = {}
            _walk_positions(node, (), values, keys, [0], label)
            data = yaml.safe_load(text)
    except RecursionError:
        raise ManifestError(
            f"{label}: nested too deeply", hint="a manifest is a few levels of mappings"
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{label}:{mark.line + 1}:{mark.column + 1}" if mark else label
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        if "'\\t'" in problem or "\t" in problem:
            raise ManifestError(
                f"{where}: invalid YAML: a tab; YAML does not allow tabs for indentation",
                hint="indent with spaces (two per level, as in `mlxk init`'s manifest)",
            ) from None
        raise ManifestError(
            f"{where}: invalid YAML: {problem}",
            hint="check this line's indentation against the line above, and quote values "
            "that contain ': ' or start with '*', '&', '!' or '@'",
        ) from None
    if node is None:
        raise ManifestError(f"{label}:1:1: (top level): the manifest is empty")
    if not isinstance(data, dict):
        raise ManifestError(
            f"{label}:1:1: (top level): expected a mapping with 'version' and 'workspaces'"
        )
    return data, values, keys


def parse_manifest(text: str, path: Path, settings=None) -> Manifest:
    """models.yaml's text → Manifest; `settings` gives the default home ($MLXK_WORKSPACE_HOME)."""
    label = path.name
    if len(text.encode("utf-8", "replace")) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{label}: file is larger than {MAX_MANIFEST_BYTES} bytes")
    data, values, keys = _read_yaml(text, label)
    _validate(data, label, values, keys)

    home, store, signers = _places(data, path.parent, label, values, settings)
    sources = _sources(data, label, values)

    _check_steps(data, label, values)
    _check_globs(data, label, values)
    workspaces = {}
    for name, raw in data["workspaces"].items():
        line, col = _pos(keys, ("workspaces", name))
        workspaces[name] = WorkspaceSpec(
            name=name,
            source=sources[name],
            include=_globs(raw, "include"),
            exclude=_globs(raw, "exclude"),
            steps=tuple(
                Step(kind=k, params=v) for step in raw.get("steps", ()) for k, v in step.items()
            ),
            runtime=tuple(_runtime(r) for r in raw.get("runtime", ())),
            where=f"{label}:{line}:{col}",
            allow_pickle=bool(raw.get("allow_pickle", False)),
        )
    remote = _remote(data, label, values)
    extra = {"allowed_signers": signers, "remote": remote, "link": data.get("link")}
    extra["given"] = (data.get("home"), data.get("store"))
    return Manifest(path, home, store, workspaces, **extra, text_sha256=sha256_text(text))


def load_manifest(file: str | os.PathLike | None = None, settings=None) -> Manifest:
    """The manifest at -f/--file (or ./models.yaml), with the environment's settings."""
    from .settings import Settings

    path, text = read_manifest(file)
    return parse_manifest(text, path, settings or Settings.from_env())
