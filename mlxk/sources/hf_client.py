"""The hub client of the hf source: resolve a revision, list a commit's files, and open one
file for the store (plain GETs pinned to a commit, ranged when asked; the only module that
imports huggingface_hub). Made when a command first talks to the hub: reading a lock that pins
hub repos (verify) never imports it.

Endpoint and token are read when a client is made (HF_ENDPOINT, HF_TOKEN / the hub's own token
file), never at import time. Downloads are streamed straight into the store, so nothing is
written to the user's HF cache and every byte is hashed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import SourceError
from . import SourceFile, check_relpath, check_tree, shown_name

DEFAULT_ENDPOINT = "https://huggingface.co"
TIMEOUT = 60.0
_HEX = {"sha256": re.compile(r"[0-9a-f]{64}"), "git blob id": re.compile(r"[0-9a-f]{40}")}


def _transport_errors() -> tuple[type, ...]:
    """Connection errors of the HTTP clients huggingface_hub may talk through (2.x: httpx2,
    1.x: httpx); both may be installed (mlxk.oci uses httpx2 with hub 1.x)."""
    import importlib

    out = []
    for name in ("httpx2", "httpx"):
        try:
            out.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(out)


class HfClient:
    def __init__(self, endpoint: str | None = None, token: str | None = None):
        self.endpoint = (endpoint or DEFAULT_ENDPOINT).rstrip("/")
        if not self.endpoint.startswith(("http://", "https://")):
            from ..errors import UserError

            scheme, sep, rest = self.endpoint.partition("://")
            if sep:
                raise UserError(
                    f"HF_ENDPOINT={self.endpoint}: the scheme {scheme!r} is not http or https",
                    hint=f"use http://{rest} or https://{rest}",
                )
            raise UserError(
                f"HF_ENDPOINT={self.endpoint} has no scheme",
                hint=f"use http://{self.endpoint} (or https://)",
            )
        if token is None:
            from huggingface_hub import get_token

            token = get_token()
        self._token = token or None
        self._api = None

    @property
    def api(self):
        if self._api is None:
            from huggingface_hub import HfApi

            self._api = HfApi(endpoint=self.endpoint, token=self._token or False)
        return self._api

    # ------------------------------------------------------------ errors
    def _translate(self, e: Exception, what: str) -> SourceError:
        from huggingface_hub import errors as hf_errors

        transport = _transport_errors()

        if isinstance(e, hf_errors.GatedRepoError):
            return SourceError(
                f"{what}: access denied (gated or private repo) at {self.endpoint}",
                hint="set HF_TOKEN to a token with access to it",
            )
        if isinstance(e, hf_errors.RepositoryNotFoundError):
            return SourceError(
                f"{what}: repository not found at {self.endpoint}",
                hint="check the repo id; a private repo also needs HF_TOKEN",
            )
        if isinstance(e, hf_errors.RevisionNotFoundError):
            return SourceError(f"{what}: revision not found at {self.endpoint}")
        if isinstance(e, hf_errors.EntryNotFoundError):
            return SourceError(f"{what}: file not found at {self.endpoint}")
        if isinstance(e, hf_errors.HfHubHTTPError):
            status = getattr(getattr(e, "response", None), "status_code", "?")
            if status in (401, 403):
                return SourceError(
                    f"{what}: access denied (HTTP {status}) at {self.endpoint}",
                    hint="set HF_TOKEN to a token with access to it",
                )
            if status == 500 and re.search(r"@[0-9a-f]{40}", what):
                return SourceError(
                    f"{what}: the hub answered HTTP 500 for this commit (not in the repo?) at "
                    f"{self.endpoint}",
                    hint="check the commit sha, or use a branch or tag",
                )
            return SourceError(f"{what}: hub answered HTTP {status} at {self.endpoint}")
        if isinstance(e, (*transport, OSError)):
            return SourceError(
                f"{what}: cannot reach the hub at {self.endpoint} ({type(e).__name__})",
                hint="check HF_ENDPOINT and the network; `mlxk sync --offline` works from the "
                "store or a bundle",
            )
        return SourceError(f"{what}: {type(e).__name__}: {e}")

    # ------------------------------------------------------------ metadata
    def resolve(self, repo: str, revision: str) -> str:
        """A branch, tag or commit → the 40-hex commit it names now."""
        from huggingface_hub import errors as hf_errors

        try:
            info = self.api.repo_info(repo, revision=revision, repo_type="model")
        except hf_errors.GatedRepoError as e:
            raise self._translate(e, f"hf://{repo}@{revision}") from None
        except (hf_errors.RepositoryNotFoundError, hf_errors.RevisionNotFoundError) as e:
            # Some hubs (olah) answer "not found" for a revision they cannot route (a branch
            # with a slash, refs/pr/N) or for an unknown revision of a repo that exists: the
            # refs listing then names the commit, or shows the revision is what is missing.
            return self._resolve_by_refs(repo, revision, e)
        except Exception as e:
            raise self._translate(e, f"hf://{repo}@{revision}") from None
        if not info.sha:
            raise SourceError(f"hf://{repo}@{revision}: the hub gave no commit sha")
        return info.sha

    def _resolve_by_refs(self, repo: str, revision: str, error: Exception) -> str:
        what = f"hf://{repo}@{revision}"
        try:
            refs = self.api.list_repo_refs(repo, repo_type="model", include_pull_requests=True)
        except Exception:
            raise self._translate(error, what) from None
        listed = [*refs.branches, *refs.tags, *(refs.pull_requests or [])]
        for ref in listed:
            if revision in (ref.name, ref.ref) and ref.target_commit:
                return ref.target_commit
        names = sorted(r.name for r in [*refs.branches, *refs.tags])
        raise SourceError(
            f"{what}: revision not found at {self.endpoint}",
            hint=f"branches and tags: {', '.join(names[:10]) or '(none)'}",
        ) from None

    def list_files(self, repo: str, commit: str) -> list[SourceFile]:
        """Every file of the repo at a commit, with size and the hashes the hub declares."""
        from huggingface_hub.hf_api import RepoFile

        origin = f"hf://{repo}@{commit[:12]}"
        try:
            entries = list(self.api.list_repo_tree(repo, revision=commit, recursive=True))
        except Exception as e:
            raise self._translate(e, origin) from None
        out = []
        for entry in entries:
            if not isinstance(entry, RepoFile):
                continue
            check_relpath(entry.path, origin)
            size = entry.lfs.size if entry.lfs else entry.size
            kind, digest = (
                ("sha256", entry.lfs.sha256) if entry.lfs else ("git blob id", entry.blob_id)
            )
            # The store names blobs by hash: a "hash" like '../..' must never reach it.
            for what, value, ok in (
                ("size", size, type(size) is int and size >= 0),
                (kind, digest, isinstance(digest, str) and _HEX[kind].fullmatch(digest)),
            ):
                if not ok:
                    raise SourceError(
                        f"{origin}: {shown_name(entry.path)}: the hub declared an invalid {what} "
                        f"{str(value)[:80]!r}"
                    )
            sha256 = f"sha256:{entry.lfs.sha256}" if entry.lfs else None
            out.append(
                SourceFile(
                    path=entry.path,
                    size=size,
                    sha256=sha256,
                    gitsha1=None if entry.lfs else f"gitsha1:{entry.blob_id}",
                )
            )
        check_tree([f.path for f in out], origin)
        return sorted(out, key=lambda f: f.path)

    # ------------------------------------------------------------ download
    def opener(self, repo: str, commit: str, path: str) -> HubOpener:
        """A store Opener for one file: GET pinned to the commit, with Range to resume, and
        ranged GETs (`span`) for fetching a big file in pieces."""
        from huggingface_hub import hf_hub_url

        url = hf_hub_url(repo, path, revision=commit, endpoint=self.endpoint)
        return HubOpener(self, url, f"hf://{repo}@{commit[:12]}/{path}")


@dataclass(frozen=True)
class HubOpener:
    client: HfClient
    url: str
    what: str

    def __call__(self, offset: int) -> tuple[int, Iterator[bytes]]:
        response = self._get(f"bytes={offset}-" if offset else None)
        start = offset if response.status_code == 206 else 0
        return start, self._chunks(response, start)

    def span(self, start: int, end: int) -> Iterator[bytes] | None:
        """Bytes [start, end) of the file; None if the server ignored the Range."""
        response = self._get(f"bytes={start}-{end - 1}")
        served = response.headers.get("Content-Range", "")
        if response.status_code != 206 or not served.startswith(f"bytes {start}-{end - 1}/"):
            response.close()
            return None
        return self._chunks(response, start)

    def _get(self, byte_range: str | None):
        from huggingface_hub.utils import build_hf_headers, get_session

        headers = build_hf_headers(token=self.client._token or False, library_name="mlxk")
        headers["Accept-Encoding"] = "identity"
        if byte_range:
            headers["Range"] = byte_range
        session = get_session()
        try:
            request = session.build_request("GET", self.url, headers=headers, timeout=TIMEOUT)
            response = session.send(request, stream=True, follow_redirects=True)
        except Exception as e:
            raise self.client._translate(e, self.what) from None
        if response.status_code not in (200, 206):
            response.close()
            status = response.status_code
            if status in (401, 403):
                raise SourceError(
                    f"{self.what}: access denied (HTTP {status})",
                    hint="set HF_TOKEN to a token with access to it",
                )
            raise SourceError(f"{self.what}: hub answered HTTP {status}")
        return response

    def _chunks(self, response, start: int) -> Iterator[bytes]:
        got = 0
        try:
            for chunk in response.iter_raw():
                got += len(chunk)
                yield chunk
        except Exception as e:
            # Mid-body: the store keeps what came, and the next fetch resumes from it.
            raise SourceError(
                f"{self.what}: download interrupted after {start + got} bytes ({type(e).__name__})",
                hint="run the command again: the download resumes where it stopped",
            ) from None
        finally:
            response.close()
