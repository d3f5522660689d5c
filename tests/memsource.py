"""An in-process source for the fast `unit` tier (pip-tools' FakeRepository): repos held in
memory, served through the same interfaces the real ones implement.

- `MemRepos` answers what `mlxk.sources.hf_client.HfClient` answers (resolve, list_files,
  opener), so `Project(clients={"hf": repos})` drives hub workspaces and runtime captures
  with no server.
- `MemKind` is a source kind of its own (`mem://NAME[@REV]` or `{mem: NAME, revision: REV}`),
  registered through the plug-in registry like hf and path: the proof that a kind is one
  module plus a schema fragment.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from mlxk.entries import FileEntry
from mlxk.errors import SourceError
from mlxk.sources import Pin, SourceFile, SourceKind, Spec, choose


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class MemRepos:
    """{repo: {revision: commit}} and {commit: {path: bytes}}; files over `lfs_over` bytes are
    declared by sha256 (as LFS files are), the rest by git blob id only."""

    refs: dict = field(default_factory=dict)
    trees: dict = field(default_factory=dict)
    lfs_over: int = 100
    served: list = field(default_factory=list)  # (repo, commit, path) of every open
    down: bool = False  # answer every call with "cannot reach"
    tamper: dict = field(default_factory=dict)  # path → bytes served instead of the real ones

    def commit(self, repo: str, files: dict[str, bytes], *revisions: str) -> str:
        """Add a commit holding `files`; point `revisions` (default main) at it."""
        n = sum(len(t) for t in self.refs.values()) + len(self.trees)
        sha = hashlib.sha1(f"{repo}:{n}:{sorted(files)}".encode()).hexdigest()
        self.trees[sha] = dict(files)
        for rev in revisions or ("main",):
            self.refs.setdefault(repo, {})[rev] = sha
        return sha

    def _reach(self, what: str) -> None:
        if self.down:
            raise SourceError(f"{what}: cannot reach the hub at mem:// (ConnectError)")

    def resolve(self, repo: str, revision: str) -> str:
        self._reach(f"hf://{repo}@{revision}")
        if repo not in self.refs:
            raise SourceError(f"hf://{repo}@{revision}: repository not found at mem://")
        if revision in self.trees and revision in self.refs[repo].values():
            return revision
        if revision not in self.refs[repo]:
            raise SourceError(f"hf://{repo}@{revision}: revision not found at mem://")
        return self.refs[repo][revision]

    def list_files(self, repo: str, commit: str) -> list[SourceFile]:
        self._reach(f"hf://{repo}@{commit[:12]}")
        out = []
        for path, data in sorted(self.trees[commit].items()):
            if len(data) > self.lfs_over:
                digest = "sha256:" + hashlib.sha256(data).hexdigest()
                out.append(SourceFile(path, len(data), digest))
            else:
                out.append(SourceFile(path, len(data), None, "gitsha1:" + git_blob_id(data)))
        return out

    def opener(self, repo: str, commit: str, path: str):
        def open_at(offset: int):
            self._reach(f"hf://{repo}@{commit[:12]}/{path}")
            self.served.append((repo, commit, path))
            data = self.tamper.get(path, self.trees[commit][path])
            return offset, iter([data[offset:]])

        return open_at


# ---------------------------------------------------------------- a kind of its own


@dataclass(frozen=True)
class MemSource(Spec):
    name: str
    revision: str = "main"
    kind = "mem"
    network = True

    def to_dict(self) -> dict:
        return {"kind": "mem", "name": self.name, "revision": self.revision}

    def pin(self, ctx, include, exclude, label: str, jobs: int) -> MemPin:
        repos = ctx.client("mem", MemRepos)
        commit = repos.resolve(self.name, self.revision)
        listing = repos.list_files(self.name, commit)

        def fetch_sha(f):
            opener = repos.opener(self.name, commit, f.path)
            return ctx.store.fetch(opener, f.size, None, f.gitsha1, label=f.path)

        files = choose(listing, include, exclude, label, f"mem://{self.name}", fetch_sha, jobs)
        return MemPin(files=files, name=self.name, revision=self.revision, commit=commit)


@dataclass(frozen=True)
class MemPin(Pin):
    files: tuple[FileEntry, ...]
    name: str
    revision: str
    commit: str
    kind = "mem"
    network = True

    def to_dict(self) -> dict:
        files = [f.to_dict() for f in self.files]
        return {
            "kind": "mem",
            "files": files,
            "name": self.name,
            "commit": self.commit,
            "revision": self.revision,
        }

    def describe(self) -> str:
        return f"mem://{self.name}@{self.revision} ({self.commit[:12]})"

    def opener(self, ctx, entry: FileEntry):
        if ctx.offline:
            raise SourceError(f"offline: {entry.path} of {self.describe()} is not in the store")
        repos = ctx.client("mem", MemRepos)
        return repos.opener(self.name, self.commit, entry.path), f"mem://{self.name}/{entry.path}"

    def moved(self, ctx) -> str | None:
        now = ctx.client("mem", MemRepos).resolve(self.name, self.revision)
        return None if now == self.commit else f"mem://{self.name}@{self.revision} moved"


class MemKind(SourceKind):
    name = "mem"
    prefix = "mem://"
    key = "mem"
    forms = ("'mem://NAME[@revision]'", "{mem: NAME, revision: REV}")
    schema = (
        {"type": "string", "pattern": "^mem://[a-z0-9-]+(@[^\\s@]+)?$"},
        {
            "type": "object",
            "required": ["mem"],
            "additionalProperties": False,
            "properties": {"mem": {"type": "string"}, "revision": {"type": "string"}},
        },
    )

    def parse(self, raw, where: str) -> MemSource:
        if isinstance(raw, str):
            name, _, rev = raw.removeprefix("mem://").partition("@")
            return MemSource(name, rev or "main")
        return MemSource(raw["mem"], raw.get("revision", "main"))

    def from_lock(self, reader, raw: dict, where: str, files) -> MemPin:
        get = reader.get
        return MemPin(
            files,
            get(raw, "name", str, where),
            get(raw, "revision", str, where),
            get(raw, "commit", str, where),
        )

    def origin(self, ident: dict):
        return f"mem://{ident.get('name')}", ident.get("commit"), ident.get("revision")
