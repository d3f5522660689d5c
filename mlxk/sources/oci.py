"""OCI registry source (`oci://HOST[:PORT]/REPO:TAG` or `oci://HOST[:PORT]/REPO@sha256:DIGEST`):
a CNCF ModelPack artifact, made by `mlxk push` or by any other tool.

`lock` reads the manifest the tag (or digest) names and pins its digest and every layer's path,
size and sha256 (a raw layer's digest is the file's sha256, so nothing is downloaded to lock).
Files are then fetched by digest, each checked against the lock on its way into the store.
What is refused, before anything is written (all exit 3, in `mlxk.oci.modelpack.parse`):
images and indexes (naming the media types found), tar layers, layers without a file path,
and paths that would leave the workspace.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from ..entries import FileEntry
from ..errors import ManifestError, SourceError, UserError
from . import Pin, SourceFile, SourceKind, Spec, choose, register

_DIGEST = "^sha256:[0-9a-f]{64}$"
# The mlxk provenance annotations (org.mlxk.<key>) a pushed artifact carries; kept in the lock.
PROVENANCE_KEYS = ("workspace", "origin", "source", "content_hash", "steps", "runtime")
JSON_KEYS = ("source", "steps", "runtime")  # the values that are JSON text


def registries(ctx):
    """The context's registry clients, one per host (made on first use; refused offline)."""
    from ..oci.pool import Registries

    return ctx.client("oci", lambda: Registries(ctx.settings.registry))


def reference(text: str, where: str):
    """An `oci://` reference from the manifest or the lock, as a ManifestError if it is bad."""
    from ..oci.reference import parse

    try:
        return parse(text)
    except UserError as e:
        raise ManifestError(f"{where}: {e.message}", hint=e.hint) from None


def provenance_of(parsed) -> dict:
    """mlxk's provenance annotations of an artifact, JSON values decoded ({} if foreign)."""
    out = {}
    for key, value in parsed.provenance.items():
        if key not in PROVENANCE_KEYS:
            continue
        try:
            out[key] = json.loads(value) if key in JSON_KEYS else value
        except ValueError:
            out[key] = value
    return out


@dataclass(frozen=True)
class OciSource(Spec):
    host: str
    repo: str
    tag: str | None = None
    digest: str | None = None
    kind = "oci"
    network = True

    @property
    def ref(self):
        from ..oci.reference import Reference

        return Reference(self.host, self.repo, self.tag, self.digest)

    def to_dict(self) -> dict:
        return {"kind": "oci", "ref": self.ref.describe()}

    def __str__(self) -> str:
        return self.ref.describe()

    def pin(self, ctx, include, exclude, label: str, jobs: int) -> OciPin:
        from ..oci import modelpack

        registry = registries(ctx).get(self.host)
        digest, raw, _ = registry.get_manifest(self.ref)
        parsed = modelpack.parse(raw, str(self))
        listing = [SourceFile(f.path, f.size, f.sha256) for f in parsed.files]
        files = choose(listing, include, exclude, label, str(self), None, jobs)
        return OciPin(
            files=files,
            host=self.host,
            repo=self.repo,
            tag=self.tag,
            manifest=digest,
            provenance=provenance_of(parsed),
        )


@dataclass(frozen=True)
class OciPin(Pin):
    files: tuple[FileEntry, ...]
    host: str
    repo: str
    tag: str | None
    manifest: str  # the manifest digest the tag named when locked
    provenance: dict = field(default_factory=dict, compare=False, hash=False)
    kind = "oci"
    network = True

    @property
    def base(self) -> str:
        return f"oci://{self.host}/{self.repo}"

    @property
    def revision(self) -> str | None:
        return self.tag

    def to_dict(self) -> dict:
        d = {
            "kind": "oci",
            "files": [f.to_dict() for f in self.files],
            "ref": self.base,
            "manifest": self.manifest,
        }
        if self.tag is not None:
            d["tag"] = self.tag
        if self.provenance:
            d["provenance"] = self.provenance
        return d

    def describe(self) -> str:
        if self.tag is None:
            return f"{self.base}@{self.manifest}"
        return f"{self.base}:{self.tag} ({self.manifest[:19]})"

    def opener(self, ctx, entry: FileEntry):
        if ctx.offline:
            raise SourceError(
                f"offline: {entry.path} of {self.describe()} is not in the store "
                f"({ctx.store.root})",
                hint="set MLXK_REMOTE to a registry that holds it, import a bundle, or sync "
                "once online",
            )
        label = f"{self.base}@{self.manifest[:19]}/{entry.path}"
        return registries(ctx).get(self.host).opener(self.repo, entry.hash), label

    def registry_repo(self) -> tuple[str, str] | None:
        return self.host, self.repo

    def moved(self, ctx) -> str | None:
        if self.tag is None:
            return None
        from ..oci.reference import Reference

        ref = Reference(self.host, self.repo, self.tag)
        now = registries(ctx).get(self.host).manifest_digest(ref)
        if now == self.manifest:
            return None
        if now is None:
            return f"{self.base}:{self.tag} is gone from the registry (was {self.manifest[:19]})"
        return f"{self.base}:{self.tag} moved {self.manifest[:19]} → {now[:19]}"


class OciKind(SourceKind):
    name = "oci"
    prefix = "oci://"
    key = "oci"
    forms = (
        "'oci://HOST[:PORT]/REPO:TAG' (or @sha256:DIGEST)",
        "{oci: HOST[:PORT]/REPO, tag: TAG}",
    )
    schema = (
        {"type": "string", "pattern": "^oci://\\S+$"},
        {
            "type": "object",
            "required": ["oci"],
            "additionalProperties": False,
            "properties": {
                "oci": {"type": "string", "pattern": "^[^\\s:/@]+(:[0-9]+)?/\\S+$"},
                "tag": {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"},
                "digest": {"type": "string", "pattern": _DIGEST},
            },
            "not": {"required": ["tag", "digest"]},
        },
    )

    def parse(self, raw, where: str) -> OciSource:
        if isinstance(raw, str):
            ref = reference(raw, where)
        else:
            text = "oci://" + raw["oci"].removeprefix("oci://")
            ref = reference(text, where)
            if ref.tag or ref.digest:
                raise ManifestError(
                    f"{where}: {{oci: ...}} names the repository; give the tag or digest as "
                    "tag: or digest:"
                )
            ref = reference(
                text + (f":{raw['tag']}" if "tag" in raw else "") + _at(raw.get("digest")), where
            )
        if ref.tag is None and ref.digest is None:
            raise ManifestError(
                f"{where}: {ref.describe()} names no tag or digest",
                hint="write oci://HOST/REPO:TAG or oci://HOST/REPO@sha256:DIGEST",
            )
        return OciSource(host=ref.host, repo=ref.repo, tag=ref.tag, digest=ref.digest)

    def from_lock(self, reader, raw: dict, where: str, files) -> OciPin:
        base = reader.get(raw, "ref", str, where)
        try:
            ref = reference(base, f"{where}.ref")
        except ManifestError as e:
            reader.fail(f"{where}.ref", e.message)
        if ref.tag or ref.digest:
            reader.fail(f"{where}.ref", "names a tag or digest; they are kept apart")
        manifest = reader.get(raw, "manifest", str, where)
        if not re.fullmatch(_DIGEST, manifest):
            reader.fail(f"{where}.manifest", "not a sha256:<64 hex> digest")
        tag = reader.get(raw, "tag", str, where, optional=True)
        provenance = reader.get(raw, "provenance", dict, where, optional=True) or {}
        return OciPin(files, ref.host, ref.repo, tag, manifest, provenance)

    def origin(self, ident: dict) -> tuple[str, str | None, str | None]:
        manifest = ident.get("manifest") or ""
        return f"{ident.get('ref')}@{manifest[:19]}", manifest or None, ident.get("tag")


def _at(digest: str | None) -> str:
    return f"@{digest}" if digest else ""


register(OciKind())
