"""`mlxk push`: each locked workspace becomes a CNCF ModelPack artifact at PREFIX/NAME:TAG.

One raw layer per placed file (content files and runtime captures, sorted by path as the lock
sorts them), its digest
the lock's sha256 and its path the `org.cncf.model.filepath` annotation; mlxk's provenance
(workspace, source as described and as pinned, content hash, steps with their fingerprints and
tool versions, runtime repos) in `org.mlxk.*` manifest annotations. The manifest is canonical
JSON, so the same lock entry always makes the same manifest digest.

Tags: `sha256-<content hash hex>` always (immutable: it is never moved to another artifact;
an existing one naming other provenance for the same content is kept and reported), plus any
`--tag`. A blob the repository has is not sent (HEAD); one pushed to another repository of
the same registry in this run, or held by the workspace's own `oci://` source there, is
mounted; a big one goes in chunks, and an interrupted upload resumes (sessions kept under the
store's tmp/).
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field

from .errors import UserError
from .remote import prefix_of, repo_name

CONTENT_TAG = "sha256-"  # + the workspace's content hash hex: the default, immutable tag


def content_tag(content_hash: str) -> str:
    return CONTENT_TAG + content_hash.removeprefix("sha256:")


@dataclass(frozen=True)
class PushedWorkspace:
    name: str
    repository: str
    digest: str
    tags: tuple[str, ...]
    kept_tags: tuple[str, ...]
    files: int
    bytes: int
    content_hash: str
    blobs: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "repository": self.repository,
            "digest": self.digest,
            "tags": list(self.tags),
            "kept_tags": list(self.kept_tags),
            "files": self.files,
            "bytes": self.bytes,
            "content_hash": self.content_hash,
            "blobs": dict(self.blobs),
        }


@dataclass(frozen=True)
class PushReport:
    registry: str
    workspaces: tuple[PushedWorkspace, ...]

    def to_dict(self) -> dict:
        return {"registry": self.registry, "workspaces": [w.to_dict() for w in self.workspaces]}


def provenance(ws) -> dict[str, str]:
    """mlxk's provenance for a locked workspace, as annotation values (compact JSON)."""
    from .oci.modelpack import canonical_bytes

    steps = [
        {
            "kind": s.kind,
            "params": s.params,
            "converter": s.converter,
            "tools": s.tools,
            "fingerprint": s.fingerprint,
            "input_digest": s.input_digest,
            "output_digest": s.output_digest,
        }
        for s in ws.steps
    ]
    runtime = [{"repo": r.repo, "revision": r.revision, "commit": r.commit} for r in ws.runtime]
    values = {
        "workspace": ws.name,
        "origin": ws.source.describe(),
        "source": ws.source.identity(),
        "content_hash": ws.content_hash,
        "steps": steps,
        "runtime": runtime,
    }
    return {k: v if isinstance(v, str) else canonical_bytes(v).decode() for k, v in values.items()}


def target(project, to: str | None):
    """The prefix to push to: --to, else $MLXK_REMOTE, else the manifest's `remote:`."""
    named = (to, "--to") if to else project.remote_text()
    if named is None:
        raise UserError(
            "push: no registry to push to",
            hint="give --to oci://HOST[:PORT]/PREFIX, or set MLXK_REMOTE or remote: in "
            f"{project.manifest.path.name}",
        )
    return prefix_of(*named)


def _chosen(lock, names) -> list[str]:
    unknown = sorted(set(names) - set(lock.workspaces))
    if unknown:
        raise UserError(
            f"push: not in the lock: {', '.join(unknown)}",
            hint=f"workspaces: {', '.join(sorted(lock.workspaces)) or 'none'}",
        )
    chosen = sorted(names or lock.workspaces)
    repos: dict[str, str] = {}
    for name in chosen:
        other = repos.setdefault(repo_name(name), name)
        if other != name:
            raise UserError(f"push: {other} and {name} would be the same repository")
    return chosen


def push(project, names=(), to: str | None = None, tags=(), chunk_size: int | None = None):
    """Push workspaces (default: every one in the lock); the PushReport."""
    from .oci.client import DEFAULT_CHUNK
    from .oci.pool import Registries
    from .oci.reference import parse
    from .oci.sessions import DirSessions

    for tag in tags:
        parse(f"oci://x/y:{tag}")  # a UserError for a bad --tag, before anything is sent
    lock = project.current_lock(locked=True, purpose="push")[0]
    prefix = target(project, to)
    chosen = _chosen(lock, names)
    pusher = _Pusher(
        project,
        prefix,
        Registries(project.settings.registry).get(prefix.host),
        DirSessions(project.store.tmp / "oci-uploads"),
        chunk_size or DEFAULT_CHUNK,
    )
    done = tuple(pusher.workspace(lock.workspaces[n], tuple(tags)) for n in chosen)
    project.store.flush()
    return PushReport(prefix.describe(), done)


@dataclass
class _Pusher:
    project: object
    prefix: object  # the Reference pushed under
    registry: object
    sessions: object
    chunk_size: int
    holders: dict = field(default_factory=dict)  # digest -> a repository that has it

    def workspace(self, ws, tags: tuple[str, ...]) -> PushedWorkspace:
        from .oci import modelpack

        ref = self.prefix.child(repo_name(ws.name))
        self.project.ui.note(f"pushing {ws.name} to {ref.describe()}")
        placed = [p for p in ws.placements() if p.data is None]
        self._ensure_blobs(ws, placed)
        art = modelpack.build(
            [modelpack.ModelFile(p.file.path, p.file.size, p.file.hash) for p in placed],
            provenance=provenance(ws),
            descriptor={"name": ws.name},
        )
        counts = Counter({"uploaded": 0, "mounted": 0, "existing": 0})
        counts.update(bytes_sent=0, resumed_bytes=0)
        unique = {p.file.hash: p.file.size for p in placed}
        for digest, size in unique.items():
            self._blob(ref.repo, digest, size, counts, ws.source.registry_repo())
        config = art.config
        self.registry.push_blob(
            ref.repo, art.config_digest, len(config), lambda: io.BytesIO(config)
        )
        put, kept = self._tags(ref, ws.content_hash, tags, art)
        for tag in put or (None,):
            self.registry.put_manifest(ref.repo, tag, art.manifest, art.media_type)
        return PushedWorkspace(
            ws.name,
            f"{self.prefix.describe()}/{repo_name(ws.name)}",
            art.manifest_digest,
            tuple(put),
            tuple(kept),
            len(placed),
            sum(p.file.size for p in placed),
            ws.content_hash,
            dict(counts),
        )

    def _ensure_blobs(self, ws, placed) -> None:
        """Every blob in the store, checked: from the remote, the source or the steps if not."""
        store = self.project.store
        missing = [p for p in placed if not store.check(p.file.hex, p.file.size)]
        if missing:
            ensure = self.project.ensurer(ws)
            for p in missing:
                ensure(p.file)

    def _blob(self, repo: str, digest: str, size: int, counts: Counter, source) -> None:
        store = self.project.store
        mount = self.holders.get(digest)
        if mount is None and source and source[0] == self.prefix.host:
            mount = source[1]
        result = self.registry.push_blob(
            repo,
            digest,
            size,
            lambda: open(store.blob_path(digest.removeprefix("sha256:")), "rb"),  # noqa: SIM115
            mount_from=mount,
            chunk_size=self.chunk_size,
            sessions=self.sessions,
        )
        counts[{"exists": "existing"}.get(result.how, result.how)] += 1
        counts["bytes_sent"] += result.sent
        counts["resumed_bytes"] += result.resumed_from
        self.holders.setdefault(digest, repo)

    def _tags(self, ref, content_hash: str, tags, art) -> tuple[list[str], list[str]]:
        """(tags to put, content tags kept): the content tag is never moved."""
        from .oci.reference import Reference

        ctag = content_tag(content_hash)
        now = self.registry.manifest_digest(Reference(ref.host, ref.repo, ctag))
        kept = [ctag] if now not in (None, art.manifest_digest) else []
        put = [] if kept else [ctag]
        return put + [t for t in dict.fromkeys(tags) if t != ctag], kept
