"""Editing models.yaml in place (mlxk add, clone --add), keeping its comments and order.

A round trip through ruamel.yaml; the result is validated like any manifest before it is
written, atomically.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from .errors import ManifestError, UserError
from .lock import write_atomic
from .manifest import parse_manifest

STARTER = """\
# models.yaml: the MLX model workspaces this project wants.
# `mlxk lock` pins every commit and file hash in mlxk.lock; `mlxk sync` builds them;
# `mlxk verify` proves the disk matches. Reference: `mlxk schema manifest`.
# yaml-language-server: $schema={schema}
version: 1
home: models            # where workspaces go, relative to this file
# A workspace looks like this (`mlxk add hf://org/repo` writes one under workspaces:):
#   tiny-4bit:
#     source: hf://org/model@main          # or path:../train/out
#     include: ["*.json", "*.safetensors", "tokenizer*"]
#     steps:
#       - convert: {{quantize: {{bits: 4, group_size: 64}}}}
workspaces: {{}}
"""


def _yaml():
    from ruamel.yaml import YAML

    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.indent(mapping=2, sequence=4, offset=2)
    y.width = 100
    return y


def _load(manifest: Path):
    """(the YAML round-tripper, the document) of a manifest that has a `workspaces` mapping."""
    text = manifest.read_text(encoding="utf-8")
    y = _yaml()
    try:
        doc = y.load(text)
    except Exception as e:  # ruamel's errors have no common public base
        raise ManifestError(f"{manifest.name}: cannot edit: {str(e).splitlines()[0]}") from None
    if not isinstance(doc, dict) or "workspaces" not in doc:
        raise ManifestError(f"{manifest.name}: no 'workspaces' mapping to add to")
    return y, doc


def _dump(y, doc, manifest: Path) -> str:
    out = io.StringIO()
    y.dump(doc, out)
    new = out.getvalue()
    parse_manifest(new, manifest)  # never write a manifest mlxk would refuse
    return new


def add_workspace(manifest: Path, name: str, entry: dict) -> str:
    """Append workspace `name` to the manifest's `workspaces`; returns the new text."""
    from ruamel.yaml.comments import CommentedMap

    y, doc = _load(manifest)
    workspaces = doc["workspaces"]
    if workspaces is None or not isinstance(workspaces, dict):
        workspaces = doc["workspaces"] = CommentedMap()
    if name in workspaces:
        raise UserError(
            f"{manifest.name}: workspaces.{name} exists already",
            hint="choose another name (mlxk add --name NAME; mlxk clone --add: DIRECTORY "
            "home/NAME)",
        )
    workspaces[name] = entry
    if hasattr(workspaces, "fa"):
        workspaces.fa.set_block_style()
    new = _dump(y, doc, manifest)
    write_atomic(manifest, new)
    return new


def with_runtime(manifest: Path, name: str, add=(), extend=None) -> str:
    """The manifest's text with runtime entries `add` ({source, include}) appended to
    workspaces.NAME.runtime, and file names added to the include lists of the entries in
    `extend` ({index: [names]}, entries that have one); comments and order kept. Validated,
    not written."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    y, doc = _load(manifest)
    ws = doc["workspaces"].get(name) if isinstance(doc["workspaces"], dict) else None
    if not isinstance(ws, dict):
        raise ManifestError(f"{manifest.name}: no workspace {name!r} to capture into")
    runtime = ws.get("runtime")
    if runtime is None:
        runtime = ws["runtime"] = CommentedSeq()
    for i, names in (extend or {}).items():  # entries with an include list (without one,
        include = runtime[i]["include"]  # an entry takes every file already)
        include.extend(n for n in names if n not in include)
    for new in add:
        include = CommentedSeq(new["include"])
        include.fa.set_flow_style()
        runtime.append(CommentedMap(source=new["source"], include=include))
    return _dump(y, doc, manifest)


def init_manifest(path: Path, schema_ref: str) -> None:
    if path.exists():
        raise UserError(f"{path.name} exists; mlxk init never overwrites", hint="edit it instead")
    text = STARTER.format(schema=schema_ref)
    parse_manifest(text, path)
    write_atomic(path, text)


@dataclass(frozen=True)
class AddResult:
    manifest: Path
    added: str

    def to_dict(self) -> dict:
        return {"manifest": str(self.manifest), "added": self.added}


def workspace_entry(ref: str, name=None, include=(), exclude=(), quantize=None, group_size=None):
    """(name, manifest entry) for `mlxk add REF`: an hf:// repo (ORG/REPO alone means hf://)
    or a path: directory, with its patterns and an optional quantize step."""
    from .clone import parse_ref

    if not ref.startswith(("hf://", "path:")):
        ref = "hf://" + ref
    if ref.startswith("hf://"):
        repo, revision = parse_ref(ref)
        ref = f"hf://{repo}@{revision}" if "@" in ref else f"hf://{repo}"
    elif ref == "path:":
        raise UserError("add: path: needs a directory, e.g. path:../train/out")
    name = name or ref.split("@")[0].rstrip("/").split("/")[-1].removeprefix("path:")
    entry: dict = {"source": ref}
    if include:
        entry["include"] = list(include)
    if exclude:
        entry["exclude"] = list(exclude)
    if quantize:
        q = {"bits": int(quantize)}
        if group_size:
            q["group_size"] = int(group_size)
        entry["steps"] = [{"convert": {"quantize": q}}]
    return name, entry


def add(
    manifest: Path, ref: str, name=None, include=(), exclude=(), quantize=None, group_size=None
) -> AddResult:
    """`mlxk add`: one workspace appended to models.yaml, comments and order kept."""
    name, entry = workspace_entry(ref, name, include, exclude, quantize, group_size)
    add_workspace(manifest, name, entry)
    return AddResult(manifest, name)


@dataclass(frozen=True)
class CloneAddResult:
    added: str
    report: object  # the SyncReport of the sync that followed

    @property
    def in_sync(self) -> str:
        return f"{len(self.report.plan.workspaces)} workspace(s) in sync"

    def to_dict(self) -> dict:
        return {"added": self.added, "sync": self.report.to_dict()}


def clone_add(
    project, ref: str, directory, include=(), exclude=(), link: str | None = None
) -> CloneAddResult:
    """`mlxk clone --add`: the repo becomes a workspace of the manifest (under its home),
    which is then locked and synced."""
    from .clone import parse_ref
    from .project import Project

    repo, revision = parse_ref(ref)
    name = Path(directory).name if directory else repo.split("/")[-1]
    if directory and Path(directory).resolve() != project.workspace_path(name):
        raise UserError(
            "clone --add: the workspace goes under the manifest's home; "
            "give no DIRECTORY (or home/NAME)"
        )
    _, entry = workspace_entry(f"hf://{repo}@{revision}", name, include, exclude)
    add_workspace(project.manifest.path, name, entry)
    again = Project.load(
        project.manifest.path, settings=project.settings, ui=project.ui, jobs=project.jobs
    )
    return CloneAddResult(name, again.sync(link=link))
