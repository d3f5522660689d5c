"""Hugging Face hub source (`hf://org/name[@revision]`): the plug-in (manifest forms, pins in
the lock). Its client, the only code that imports huggingface_hub, is `hf_client.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..entries import FileEntry
from ..errors import SourceError
from . import Pin, SourceFile, SourceKind, Spec, choose, register

if TYPE_CHECKING:
    from .hf_client import HfClient

REPO_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$"
REVISION_SCHEMA = {"type": "string", "minLength": 1, "pattern": "^\\S+$"}


def client(ctx) -> HfClient:
    """The context's hub client (made on first use; refused offline)."""
    from .hf_client import HfClient

    return ctx.client("hf", lambda: HfClient(ctx.settings.hf_endpoint, ctx.settings.hf_token))


@dataclass(frozen=True)
class HfSource(Spec):
    repo: str
    revision: str = "main"
    kind = "hf"
    network = True

    def to_dict(self) -> dict:
        return {"kind": "hf", "repo": self.repo, "revision": self.revision}

    def __str__(self) -> str:
        return f"hf://{self.repo}@{self.revision}"

    def pin(self, ctx, include, exclude, label: str, jobs: int) -> HfPin:
        hub = client(ctx)
        commit = hub.resolve(self.repo, self.revision)
        listing = hub.list_files(self.repo, commit)

        def fetch_sha(f: SourceFile) -> str:
            # A regular git file: the hub declares only a git blob id; learn its sha256 by
            # fetching it (small by the hub's rules) into the store, where sync will find it.
            return ctx.store.fetch(
                hub.opener(self.repo, commit, f.path),
                size=f.size,
                sha256=None,
                gitsha1=f.gitsha1,
                label=f"hf://{self.repo}@{commit[:12]}/{f.path}",
            )

        files = choose(listing, include, exclude, label, str(self), fetch_sha, jobs)
        return HfPin(files=files, repo=self.repo, revision=self.revision, commit=commit)


@dataclass(frozen=True)
class HfPin(Pin):
    files: tuple[FileEntry, ...]
    repo: str
    revision: str
    commit: str
    kind = "hf"
    network = True

    def to_dict(self) -> dict:
        return {
            "kind": "hf",
            "files": [f.to_dict() for f in self.files],
            "repo": self.repo,
            "revision": self.revision,
            "commit": self.commit,
        }

    def describe(self) -> str:
        return f"hf://{self.repo}@{self.revision} ({self.commit[:12]})"

    def opener(self, ctx, entry: FileEntry):
        if ctx.offline:
            raise SourceError(
                f"offline: {entry.path} of hf://{self.repo}@{self.commit[:12]} is not in the "
                f"store ({ctx.store.root})",
                hint="import a bundle that holds it (mlxk import), or sync once online",
            )
        label = f"hf://{self.repo}@{self.commit[:12]}/{entry.path}"
        return client(ctx).opener(self.repo, self.commit, entry.path), label

    def moved(self, ctx) -> str | None:
        if self.revision == self.commit:
            return None
        now = client(ctx).resolve(self.repo, self.revision)
        if now == self.commit:
            return None
        return f"hf://{self.repo}@{self.revision} moved {self.commit[:12]} → {now[:12]}"


class HfKind(SourceKind):
    name = "hf"
    prefix = "hf://"
    key = "hf"
    forms = ("'hf://org/name[@revision]'", "{hf: org/name, revision: REV}")
    schema = (
        {"$ref": "#/$defs/hfSourceString"},
        {
            "type": "object",
            "required": ["hf"],
            "additionalProperties": False,
            "properties": {
                "hf": {"type": "string", "pattern": REPO_PATTERN},
                "revision": REVISION_SCHEMA,
            },
        },
    )

    def parse(self, raw, where: str) -> HfSource:
        if isinstance(raw, str):
            repo, _, rev = raw.removeprefix("hf://").partition("@")
            return HfSource(repo=repo, revision=rev or "main")
        return HfSource(repo=raw["hf"], revision=raw.get("revision", "main"))

    def from_lock(self, reader, raw: dict, where: str, files) -> HfPin:
        commit = reader.get(raw, "commit", str, where)
        if not re.fullmatch(r"[0-9a-f]{40}", commit):
            reader.fail(f"{where}.commit", "not a 40-hex commit sha")
        return HfPin(
            files=files,
            repo=reader.get(raw, "repo", str, where),
            revision=reader.get(raw, "revision", str, where),
            commit=commit,
        )

    def origin(self, ident: dict) -> tuple[str, str | None, str | None]:
        commit = ident.get("commit") or ""
        return f"{ident.get('repo')}@{commit[:12]}", commit or None, ident.get("revision")


register(HfKind())
