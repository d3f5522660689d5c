"""CNCF ModelPack artifacts as pure data: files -> manifest + config bytes, and manifest -> files.

mlxk pushes one raw layer per file (`application/vnd.cncf.model.<kind>.v1.raw`), its digest the
lock's sha256, its workspace path in the `org.cncf.model.filepath` annotation. Bytes are
canonical JSON (sorted keys, no spaces), so the same files and provenance always give the same
manifest digest. Parsing accepts any tool's ModelPack artifact made of raw layers (nested paths
included) and refuses, before anything is written: images and indexes, tar layers, layers
without a file path, and paths that could leave the workspace.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from ..errors import SourceError, UserError
from ..paths import check_relpath, check_tree, shown_name
from . import mediatypes as mt

PROVENANCE_PREFIX = "org.mlxk."  # manifest annotations carrying mlxk provenance
_SHA256 = re.compile(r"sha256:[0-9a-f]{64}")
# The config's `descriptor` keys allowed by the spec's schema (schema/config-schema.json).
DESCRIPTOR_KEYS = frozenset(
    [
        "createdAt",
        "authors",
        "family",
        "name",
        "docURL",
        "sourceURL",
        "datasetsURL",
        "version",
        "revision",
        "vendor",
        "licenses",
        "title",
        "description",
    ]
)
MODEL_CONFIG_KEYS = frozenset(
    ["architecture", "format", "paramSize", "precision", "quantization", "capabilities"]
)
_HINT = (
    "mlxk reads CNCF ModelPack artifacts (artifactType "
    f"{mt.ARTIFACT_TYPE}) made of raw layers; push one with `mlxk push` or `modctl build --raw`"
)


@dataclass(frozen=True)
class ModelFile:
    """One file of an artifact: a raw layer whose digest is the file's sha256."""

    path: str
    size: int
    sha256: str  # "sha256:<64 hex>"
    media_type: str = ""  # the layer's type; chosen from the path when empty


@dataclass(frozen=True)
class Artifact:
    """A built ModelPack artifact: push `config` as a blob, then `manifest` under a tag."""

    manifest: bytes
    manifest_digest: str
    config: bytes
    config_digest: str
    files: tuple[ModelFile, ...]
    media_type: str = mt.OCI_MANIFEST


@dataclass(frozen=True)
class Parsed:
    """What a pulled manifest says: its files, the config descriptor, and its annotations."""

    files: tuple[ModelFile, ...]
    config: Mapping
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def provenance(self) -> dict[str, str]:
        """The mlxk provenance annotations, without their prefix ({} for a foreign artifact)."""
        n = len(PROVENANCE_PREFIX)
        return {k[n:]: v for k, v in self.annotations.items() if k.startswith(PROVENANCE_PREFIX)}


def canonical_bytes(value) -> bytes:
    """Canonical JSON bytes for a manifest or config (sorted keys, compact, UTF-8)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------ kinds
_WEIGHTS = frozenset(
    [
        ".safetensors",
        ".gguf",
        ".ggml",
        ".bin",
        ".pt",
        ".pth",
        ".ckpt",
        ".npz",
        ".npy",
        ".onnx",
        ".h5",
        ".hdf5",
        ".msgpack",
        ".pkl",
        ".pickle",
        ".tflite",
        ".pb",
        ".mlmodel",
        ".keras",
        ".pte",
        ".pt2",
    ]
)
_CONFIGS = frozenset(
    [
        ".json",
        ".jsonl",
        ".yaml",
        ".yml",
        ".toml",
        ".ini",
        ".cfg",
        ".tiktoken",
        ".jinja",
        ".model",
        ".vocab",
    ]
)
_CODE = frozenset(
    [
        ".py",
        ".sh",
        ".ipynb",
        ".js",
        ".ts",
        ".c",
        ".cc",
        ".cpp",
        ".h",
        ".cu",
        ".rs",
        ".go",
        ".swift",
        ".lua",
        ".rb",
        ".pl",
    ]
)
_DOCS = frozenset(
    [
        ".md",
        ".rst",
        ".txt",
        ".pdf",
        ".png",
        ".jpg",
        ".jpeg",
        ".gif",
        ".svg",
        ".webp",
        ".html",
        ".htm",
        ".csv",
    ]
)
_DOC_NAMES = ("readme", "license", "licence", "notice", "copying", "authors", "changelog")
_CONFIG_NAMES = ("vocab.txt", "merges.txt", "added_tokens.txt")


def file_kind(path: str) -> tuple[str, bool]:
    """(ModelPack kind, guessed) for a workspace path; guessed means no rule matched it."""
    name = PurePosixPath(path).name
    lower = name.lower()
    suffix = PurePosixPath(lower).suffix
    if lower in _CONFIG_NAMES:
        return "weight.config", False
    if lower.startswith(_DOC_NAMES) and suffix not in _CODE:
        return "doc", False
    for kind, suffixes in (
        ("weight", _WEIGHTS),
        ("weight.config", _CONFIGS),
        ("code", _CODE),
        ("doc", _DOCS),
    ):
        if suffix in suffixes:
            return kind, False
    return "weight.config", True


# ------------------------------------------------------------------ build
def _check_files(files: Iterable[ModelFile]) -> list[ModelFile]:
    out = []
    for f in files:
        check_relpath(f.path, "push")
        if not (type(f.size) is int and f.size >= 0 and _SHA256.fullmatch(str(f.sha256))):
            raise UserError(f"push: {shown_name(f.path)}: needs a size and a sha256:<hex> digest")
        if f.media_type and f.media_type not in mt.RAW_LAYERS:
            raise UserError(f"push: {shown_name(f.path)}: {f.media_type} is not a raw layer type")
        out.append(f)
    if not out:
        raise UserError("push: an artifact needs at least one file")
    check_tree([f.path for f in out], "push")
    return sorted(out, key=lambda f: f.path.encode())


def _layer(f: ModelFile) -> tuple[ModelFile, dict]:
    annotations = {mt.ANNOTATION_FILEPATH: f.path}
    media_type = f.media_type
    if not media_type:
        kind, guessed = file_kind(f.path)
        media_type = mt.layer_type(kind)
        if guessed:
            annotations[mt.ANNOTATION_MEDIATYPE_UNTESTED] = "true"
    layer = {"mediaType": media_type, "digest": f.sha256, "size": f.size}
    layer["annotations"] = annotations
    return ModelFile(f.path, f.size, f.sha256, media_type), layer


def _format(files: list[ModelFile]) -> dict:
    """The config's `format`, when every weight file has one (mlx writes safetensors)."""
    formats = {
        PurePosixPath(f.path).suffix.lstrip(".")
        for f in files
        if f.media_type == mt.layer_type("weight")
    }
    return {"format": formats.pop()} if len(formats) == 1 else {}


def _config(files, descriptor: Mapping, model_config: Mapping | None) -> dict:
    bad = sorted(set(descriptor) - DESCRIPTOR_KEYS) + sorted(
        set(model_config or {}) - MODEL_CONFIG_KEYS
    )
    if bad:
        raise UserError(f"push: not a ModelPack config field: {', '.join(bad)}")
    return {
        "descriptor": dict(descriptor),
        "config": dict(model_config) if model_config is not None else _format(files),
        "modelfs": {"type": "layers", "diffIds": [f.sha256 for f in files]},
    }


def build(
    files: Iterable[ModelFile],
    *,
    provenance: Mapping[str, str] | None = None,
    descriptor: Mapping | None = None,
    model_config: Mapping | None = None,
    annotations: Mapping[str, str] | None = None,
) -> Artifact:
    """A ModelPack manifest and config for these files, deterministic in its inputs.

    `provenance` becomes manifest annotations `org.mlxk.<key>`; `descriptor` and `model_config`
    are the config's `descriptor` and `config` objects (keys as the spec's schema allows);
    `annotations` are further manifest annotations taken as they are.
    """
    built = [_layer(f) for f in _check_files(files)]
    files_out = tuple(f for f, _ in built)
    config = canonical_bytes(_config(list(files_out), descriptor or {}, model_config))
    notes = dict(annotations or {})
    for key, value in (provenance or {}).items():
        if not (isinstance(key, str) and isinstance(value, str)):
            raise UserError(f"push: provenance {key!r} must map a string to a string")
        notes[PROVENANCE_PREFIX + key] = value
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": mt.ARTIFACT_TYPE,
        "config": {"mediaType": mt.CONFIG, "digest": digest_of(config), "size": len(config)},
        "layers": [layer for _, layer in built],
    }
    if notes:
        manifest["annotations"] = notes
    data = canonical_bytes(manifest)
    return Artifact(data, digest_of(data), config, digest_of(config), files_out)


# ------------------------------------------------------------------ parse
def _types_found(doc: dict) -> str:
    config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    layers = doc.get("layers") if isinstance(doc.get("layers"), list) else []
    kinds = sorted({str(x.get("mediaType")) for x in layers if isinstance(x, dict)})
    return (
        f"mediaType {doc.get('mediaType') or 'none'}, artifactType "
        f"{doc.get('artifactType') or 'none'}, config {config.get('mediaType') or 'none'}, "
        f"layers {', '.join(kinds) or 'none'}"
    )


def _is_model(doc: dict) -> bool:
    config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    layers = doc.get("layers") if isinstance(doc.get("layers"), list) else []
    if doc.get("artifactType") == mt.ARTIFACT_TYPE or config.get("mediaType") == mt.CONFIG:
        return True
    known = {**mt.RAW_LAYERS, **mt.TAR_LAYERS}
    return bool(layers) and all(isinstance(x, dict) and x.get("mediaType") in known for x in layers)


def manifest_json(data: bytes | Mapping, origin: str) -> dict:
    """A manifest's bytes as a JSON object (a mapping is taken as it is); else exit 3."""
    if isinstance(data, Mapping):
        return dict(data)
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise SourceError(f"{origin}: the manifest is not JSON") from None
    if not isinstance(doc, dict):
        raise SourceError(f"{origin}: the manifest is not a JSON object")
    return doc


def _check_kind(doc: dict, origin: str) -> None:
    if doc.get("mediaType") in mt.INDEXES or "manifests" in doc:
        raise SourceError(
            f"{origin}: an image index (mediaType {doc.get('mediaType') or 'none'}), "
            "not a model artifact",
            hint=_HINT,
        )
    if doc.get("schemaVersion") != 2 or doc.get("mediaType") not in (None, mt.OCI_MANIFEST):
        raise SourceError(f"{origin}: not an OCI image manifest ({_types_found(doc)})", hint=_HINT)
    if not _is_model(doc):
        raise SourceError(f"{origin}: not a model artifact ({_types_found(doc)})", hint=_HINT)


def _file(layer, i: int, origin: str) -> ModelFile:
    if not isinstance(layer, dict):
        raise SourceError(f"{origin}: layer {i} is not an object")
    kind = layer.get("mediaType")
    notes = layer.get("annotations") if isinstance(layer.get("annotations"), dict) else {}
    path = notes.get(mt.ANNOTATION_FILEPATH)
    where = f"layer {i}" + (f" ({shown_name(path)})" if isinstance(path, str) else "")
    if kind in mt.TAR_LAYERS:
        raise SourceError(
            f"{origin}: {where} is a tar archive ({kind}); mlxk reads raw layers only",
            hint="re-pack it with one raw layer per file (`modctl build --raw`, its default)",
        )
    if kind not in mt.RAW_LAYERS:
        raise SourceError(f"{origin}: {where} has media type {kind!r}, not a ModelPack layer")
    if not isinstance(path, str):
        raise SourceError(f"{origin}: {where} has no {mt.ANNOTATION_FILEPATH} annotation")
    digest, size = layer.get("digest"), layer.get("size")
    if not (isinstance(digest, str) and _SHA256.fullmatch(digest)):
        raise SourceError(f"{origin}: {where}: not a sha256 digest: {str(digest)[:80]!r}")
    if not (type(size) is int and size >= 0):
        raise SourceError(f"{origin}: {where}: invalid size {str(size)[:40]!r}")
    check_relpath(path, origin)
    return ModelFile(path=path, size=size, sha256=digest, media_type=kind)


def parse(data: bytes | Mapping, origin: str) -> Parsed:
    """A manifest (bytes as pulled, or parsed) -> its files; a SourceError for anything else."""
    doc = manifest_json(data, origin)
    _check_kind(doc, origin)
    layers = doc.get("layers")
    if not isinstance(layers, list) or not layers:
        raise SourceError(f"{origin}: the model artifact has no layers")
    files = [_file(layer, i, origin) for i, layer in enumerate(layers)]
    check_tree([f.path for f in files], origin)
    notes = doc.get("annotations") if isinstance(doc.get("annotations"), dict) else {}
    notes = {k: v for k, v in notes.items() if isinstance(k, str) and isinstance(v, str)}
    config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    return Parsed(tuple(sorted(files, key=lambda f: f.path.encode())), config, notes)
