"""`Registry`: the OCI distribution API mlxk needs, for one registry host.

    get_manifest(ref)                       -> (digest, bytes, dict)   Accept names every type
    manifest_digest(ref)                    -> digest | None           HEAD: what a tag names
    blob_exists(repo, digest)               -> bool                    HEAD
    open_blob(repo, digest, offset)         -> (start, chunks)         a store Opener, with Range
    opener(repo, digest)                    -> Opener                  for Store.fetch
    read_blob(repo, digest, limit)          -> bytes                   small blobs (a config)
    push_blob(repo, digest, size, open_file, mount_from=, chunk_size=, sessions=) -> PushResult
    put_manifest(repo, tag, data, media_type) -> digest

Written on httpx2 rather than oras-py (see docs/oci-notes.md for the measurements): blobs
stream in both directions, downloads resume with Range, uploads go in chunks, mount across
repositories and resume an interrupted session, and manifests keep their exact bytes.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import httpx2

from .. import faults
from ..errors import IntegrityError, SourceError
from ..hashing import CHUNK
from . import mediatypes as mt
from .auth import scope_for
from .modelpack import digest_of, manifest_json
from .reference import Reference
from .sessions import UploadSessions, session_key
from .settings import RegistrySettings

DEFAULT_CHUNK = 16 << 20  # bytes per PATCH of a chunked upload
MAX_MANIFEST = 4 << 20  # the largest manifest mlxk reads (containerd's limit too)
_RANGE = re.compile(r"(\d+)-(-?\d+)")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
RESUME_HINT = "run the command again: the transfer resumes where it stopped"


@dataclass(frozen=True)
class PushResult:
    how: str  # "exists" (HEAD found it), "mounted" (from another repo), "uploaded"
    sent: int = 0  # blob bytes sent by this call
    resumed_from: int = 0  # bytes the registry already held from an earlier, cut-off push


class Registry:
    def __init__(self, host: str, settings: RegistrySettings | None = None):
        from .transport import Transport

        self.host = host
        self.settings = settings or RegistrySettings()
        self._t = Transport(host, self.settings)

    @classmethod
    def for_reference(cls, ref: Reference, settings: RegistrySettings | None = None) -> Registry:
        return cls(ref.host, settings)

    @property
    def stats(self):
        """Requests sent per method, plus bytes_sent / bytes_received / token (a Counter)."""
        return self._t.stats

    def close(self) -> None:
        self._t.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _req(self, method: str, url: str, repo: str, what: str, push=False, extra=(), **kw):
        scopes = (scope_for(repo, push), *extra)
        return self._t.request(method, url, repo=repo, scopes=scopes, what=what, **kw)

    # ------------------------------------------------------------ manifests
    def get_manifest(self, ref: Reference) -> tuple[str, bytes, dict]:
        """The manifest `ref` names: (its sha256 digest, its exact bytes, its JSON)."""
        if ref.host != self.host:
            raise ValueError(f"{ref} is on another registry than {self.host}")
        what = ref.describe()
        url = self._t.url(f"/v2/{ref.repo}/manifests/{ref.target}")
        accept = {"Accept": ", ".join(mt.ACCEPT_MANIFESTS)}
        resp = self._req("GET", url, ref.repo, what, headers=accept, stream=True)
        if resp.status_code == 404:
            resp.close()
            raise self._missing(ref)
        if resp.status_code != 200:
            raise self._t.fail(resp, what, ref.repo)
        data = _read_capped(resp, MAX_MANIFEST, what, "manifest")
        digest = digest_of(data)
        declared = resp.headers.get("docker-content-digest", "")
        for expected in (ref.digest, declared if declared.startswith("sha256:") else None):
            if expected and expected != digest:
                raise IntegrityError(
                    f"{what}: the registry {self.host} served a manifest whose sha256 is "
                    f"{digest}, not {expected}",
                    hint="the registry or a proxy in between changed it; nothing was written",
                )
        return digest, data, manifest_json(data, what)

    def manifest_digest(self, ref: Reference) -> str | None:
        """The digest a tag (or digest) names now, by HEAD; None when there is no such
        manifest. Nothing is downloaded (a push asks this before moving a tag)."""
        what = ref.describe()
        url = self._t.url(f"/v2/{ref.repo}/manifests/{ref.target}")
        accept = {"Accept": ", ".join(mt.ACCEPT_MANIFESTS)}
        resp = self._req("HEAD", url, ref.repo, what, headers=accept)
        resp.close()
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self._t.fail(resp, what, ref.repo)
        digest = resp.headers.get("docker-content-digest", "")
        return digest if digest.startswith("sha256:") else self.get_manifest(ref)[0]

    def _missing(self, ref: Reference) -> SourceError:
        """404 for a manifest: registry 2.8 says MANIFEST_UNKNOWN even for an unknown
        repository, so the tag list tells which of the two is missing (and what tags exist)."""
        what = ref.describe()
        url = self._t.url(f"/v2/{ref.repo}/tags/list?n=20")
        resp = self._req("GET", url, ref.repo, what)
        try:
            tags = resp.json().get("tags") if resp.status_code == 200 else None
        except (ValueError, AttributeError):
            tags = None
        resp.close()
        if resp.status_code == 404:
            return SourceError(
                f"{what}: no such repository at the registry {self.host}",
                hint="check the host and repository; `mlxk push` creates it",
            )
        shown = ", ".join(str(t) for t in (tags or [])[:10]) or "(none)"
        kind = "manifest digest" if ref.digest else "tag"
        return SourceError(
            f"{what}: no such {kind} in {ref.repo} at the registry {self.host}",
            hint=f"tags there: {shown}",
        )

    def put_manifest(self, repo: str, tag: str | None, data: bytes, media_type: str) -> str:
        """Store a manifest (under a tag, or only by digest when tag is None); its digest."""
        digest = digest_of(data)
        what = f"oci://{self.host}/{repo}:{tag}" if tag else f"oci://{self.host}/{repo}@{digest}"
        url = self._t.url(f"/v2/{repo}/manifests/{tag or digest}")
        headers = {"Content-Type": media_type}
        resp = self._req("PUT", url, repo, what, push=True, headers=headers, content=data)
        if resp.status_code != 201:
            raise self._t.fail(resp, what, repo)
        declared = resp.headers.get("docker-content-digest")
        resp.close()
        if declared and declared != digest:
            raise IntegrityError(f"{what}: the registry stored the manifest as {declared}")
        return digest

    # ------------------------------------------------------------ blobs: read
    def blob_exists(self, repo: str, digest: str) -> bool:
        what = f"oci://{self.host}/{repo}@{digest}"
        resp = self._req("HEAD", self._t.url(f"/v2/{repo}/blobs/{digest}"), repo, what, follow=True)
        resp.close()
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        raise self._t.fail(resp, what, repo)

    def open_blob(self, repo: str, digest: str, offset: int = 0) -> tuple[int, Iterator[bytes]]:
        """The blob's bytes from `offset` if the registry honours Range (start == offset),
        else from 0 (start == 0): exactly the store's Opener contract."""
        what = f"oci://{self.host}/{repo}@{digest}"
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        url = self._t.url(f"/v2/{repo}/blobs/{digest}")
        resp = self._req("GET", url, repo, what, headers=headers, stream=True, follow=True)
        if resp.status_code == 416 and offset:  # nothing past offset: let the store start over
            resp.close()
            return self.open_blob(repo, digest, 0)
        if resp.status_code not in (200, 206):
            raise self._t.fail(resp, what, repo)
        start = 0
        if resp.status_code == 206:
            match = _CONTENT_RANGE.fullmatch(resp.headers.get("content-range", ""))
            if not match or int(match.group(1)) != offset:
                resp.close()
                raise SourceError(f"{what}: the registry answered a different byte range")
            start = offset
        return start, self._chunks(resp, what, start)

    def _chunks(self, resp: httpx2.Response, what: str, start: int) -> Iterator[bytes]:
        got = 0
        try:
            for chunk in resp.iter_raw(CHUNK):
                got += len(chunk)
                self._t.stats["bytes_received"] += len(chunk)
                yield chunk
        except (httpx2.HTTPError, OSError) as e:
            raise SourceError(
                f"{what}: download interrupted after {start + got} bytes ({type(e).__name__})",
                hint=RESUME_HINT,
            ) from None
        finally:
            resp.close()

    def opener(self, repo: str, digest: str) -> Callable[[int], tuple[int, Iterator[bytes]]]:
        """A store Opener (`open_at(offset) -> (start, chunks)`) for one blob."""
        return functools.partial(self.open_blob, repo, digest)

    def read_blob(self, repo: str, digest: str, limit: int = MAX_MANIFEST) -> bytes:
        """A small blob in full (a config), checked against its digest."""
        what = f"oci://{self.host}/{repo}@{digest}"
        _, chunks = self.open_blob(repo, digest)
        data = bytearray()
        for chunk in chunks:
            data += chunk
            if len(data) > limit:
                raise SourceError(f"{what}: the blob is larger than {limit} bytes")
        if digest_of(bytes(data)) != digest:
            raise IntegrityError(f"{what}: the registry served bytes with another digest")
        return bytes(data)

    # ------------------------------------------------------------ blobs: write
    def push_blob(
        self,
        repo: str,
        digest: str,
        size: int,
        open_file: Callable[[], BinaryIO],
        *,
        mount_from: str | None = None,
        chunk_size: int = DEFAULT_CHUNK,
        sessions: UploadSessions | None = None,
    ) -> PushResult:
        """Make the blob present in repo: skip it if there (HEAD), else mount it from
        `mount_from` (same registry), else upload it; a blob larger than chunk_size goes in
        PATCHes, and with `sessions` a cut-off upload resumes from what the registry holds."""
        what = f"oci://{self.host}/{repo}@{digest}"
        if self.blob_exists(repo, digest):
            return PushResult("exists")
        key = session_key(self.host, repo, digest)
        location, offset = self._resume(repo, sessions.get(key) if sessions else None, what)
        if location is None:
            location = self._start_upload(repo, digest, mount_from, what)
            if location is None:
                return PushResult("mounted")
        if sessions:
            sessions.put(key, location)
        upload = _Upload(self, repo, digest, size, what, sessions, key, chunk_size)
        sent = upload.run(open_file, location, offset)
        if sessions:
            sessions.drop(key)
        return PushResult("uploaded", sent, offset)

    def _start_upload(self, repo: str, digest: str, mount_from: str | None, what: str):
        """POST an upload: the session URL, or None when the registry mounted the blob."""
        path, extra = f"/v2/{repo}/blobs/uploads/", ()
        if mount_from and mount_from != repo:
            path += f"?mount={digest}&from={mount_from}"
            extra = (scope_for(mount_from),)
        headers = {"Content-Length": "0"}
        resp = self._req("POST", self._t.url(path), repo, what, True, extra, headers=headers)
        if resp.status_code == 201 and extra:
            resp.close()
            return None
        if resp.status_code != 202:
            raise self._t.fail(resp, what, repo)
        resp.close()
        return self.location(resp, what)

    def _resume(self, repo: str, location: str | None, what: str) -> tuple[str | None, int]:
        """(session URL, bytes the registry holds) of a remembered upload, or (None, 0)."""
        if not location or not self._t.same_origin(location):
            return None, 0
        resp = self._req("GET", location, repo, what, push=True)
        resp.close()
        match = _RANGE.fullmatch(resp.headers.get("range", ""))
        if resp.status_code != 204 or not match or "location" not in resp.headers:
            return None, 0  # gone (purged, finished, registry restarted): start over
        end = int(match.group(2))  # inclusive; registry 2.8 says "0-0" for 0 bytes held too
        return self.location(resp, what), end + 1 if end > 0 else 0

    def location(self, resp: httpx2.Response, what: str) -> str:
        value = resp.headers.get("location")
        if not value:
            raise SourceError(f"{what}: the registry {self.host} gave no upload location")
        return str(httpx2.URL(self._t.base + "/").join(value))

    def send(self, method: str, url: str, repo: str, what: str, **kw) -> httpx2.Response:
        """One push-scoped request (the upload helper's way in)."""
        return self._req(method, url, repo, what, push=True, **kw)

    def fail(self, resp: httpx2.Response, what: str, repo: str) -> SourceError:
        return self._t.fail(resp, what, repo)


@dataclass
class _Upload:
    """The bytes of one blob upload: one PUT, or PATCH chunks then a closing PUT."""

    reg: Registry
    repo: str
    digest: str
    size: int
    what: str
    sessions: UploadSessions | None
    key: str
    chunk_size: int

    def run(self, open_file: Callable[[], BinaryIO], location: str, offset: int) -> int:
        pos = offset
        with open_file() as f:
            f.seek(offset)
            if offset == 0 and self.size <= self.chunk_size:
                data = self._read(f, self.size, pos)
                self._close(location, data)
                return len(data)
            while pos < self.size:
                chunk = self._read(f, min(self.chunk_size, self.size - pos), pos)
                location = self._patch(location, chunk, pos)
                pos += len(chunk)
                if self.sessions:
                    self.sessions.put(self.key, location)
                faults.point("push-chunk")
        self._close(location, b"")
        return pos - offset

    def _read(self, f: BinaryIO, n: int, pos: int) -> bytes:
        try:
            data = f.read(n)
        except OSError as e:
            raise self._cut(
                pos, f"reading the file failed: {e.strerror or type(e).__name__}"
            ) from None
        if len(data) != n:
            raise SourceError(
                f"{self.what}: the file ended after {pos + len(data)} of {self.size} bytes"
            )
        return data

    def _cut(self, pos: int, why: str) -> SourceError:
        hint = RESUME_HINT if self.sessions else None
        return SourceError(f"{self.what}: upload interrupted after {pos} bytes ({why})", hint=hint)

    def _patch(self, location: str, chunk: bytes, pos: int) -> str:
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{pos}-{pos + len(chunk) - 1}",
        }
        try:
            resp = self.reg.send(
                "PATCH", location, self.repo, self.what, headers=headers, content=chunk
            )
        except SourceError as e:
            raise self._cut(pos, e.message.removeprefix(f"{self.what}: ")) from None
        if resp.status_code == 416:  # the registry holds another length: start over next time
            resp.close()
            if self.sessions:
                self.sessions.drop(self.key)
            raise SourceError(
                f"{self.what}: the registry's upload session is out of step at byte {pos}",
                hint="run the command again: the upload starts over",
            )
        if resp.status_code != 202:
            raise self.reg.fail(resp, self.what, self.repo)
        resp.close()
        return self.reg.location(resp, self.what)

    def _close(self, location: str, data: bytes) -> None:
        url = str(httpx2.URL(location).copy_merge_params({"digest": self.digest}))
        headers = {"Content-Type": "application/octet-stream"}
        resp = self.reg.send("PUT", url, self.repo, self.what, headers=headers, content=data)
        if resp.status_code == 201:
            resp.close()
            return
        if self.sessions:
            self.sessions.drop(self.key)
        raise self.reg.fail(resp, self.what, self.repo)


def _read_capped(resp: httpx2.Response, limit: int, what: str, kind: str) -> bytes:
    data = bytearray()
    try:
        for chunk in resp.iter_bytes():
            data += chunk
            if len(data) > limit:
                raise SourceError(f"{what}: the {kind} is larger than {limit} bytes")
    except httpx2.HTTPError as e:
        raise SourceError(f"{what}: reading the {kind} failed ({type(e).__name__})") from None
    finally:
        resp.close()
    return bytes(data)
