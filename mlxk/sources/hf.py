"""Hugging Face hub source: the only module that imports huggingface_hub.

Endpoint and token are read when a client is made (HF_ENDPOINT, HF_TOKEN / the hub's own token
file), never at import time. Downloads are plain HTTP GETs pinned to a commit and streamed
straight into the store, so nothing is written to the user's HF cache and every byte is hashed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from ..errors import SourceError
from ..hashing import CHUNK
from . import SourceFile, check_relpath

DEFAULT_ENDPOINT = "https://huggingface.co"
TIMEOUT = 60.0


class HfClient:
    def __init__(self, endpoint: str | None = None, token: str | None = None):
        self.endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
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
        import httpx2
        from huggingface_hub import errors as hf_errors

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
            return SourceError(f"{what}: hub answered HTTP {status} at {self.endpoint}")
        if isinstance(e, (httpx2.TransportError, OSError)):
            return SourceError(
                f"{what}: cannot reach the hub at {self.endpoint} ({type(e).__name__})",
                hint="check HF_ENDPOINT and the network, or use --offline with a bundle",
            )
        return SourceError(f"{what}: {type(e).__name__}: {e}")

    # ------------------------------------------------------------ metadata
    def resolve(self, repo: str, revision: str) -> str:
        """A branch, tag or commit → the 40-hex commit it names now."""
        try:
            info = self.api.repo_info(repo, revision=revision, repo_type="model")
        except Exception as e:
            raise self._translate(e, f"hf://{repo}@{revision}") from None
        if not info.sha:
            raise SourceError(f"hf://{repo}@{revision}: the hub gave no commit sha")
        return info.sha

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
            sha256 = f"sha256:{entry.lfs.sha256}" if entry.lfs else None
            size = entry.lfs.size if entry.lfs else entry.size
            out.append(
                SourceFile(
                    path=entry.path,
                    size=size,
                    sha256=sha256,
                    gitsha1=None if entry.lfs else f"gitsha1:{entry.blob_id}",
                )
            )
        return sorted(out, key=lambda f: f.path)

    # ------------------------------------------------------------ download
    def opener(self, repo: str, commit: str, path: str):
        """A store Opener for one file: GET pinned to the commit, with Range to resume."""
        from huggingface_hub import hf_hub_url
        from huggingface_hub.utils import build_hf_headers, get_session

        url = hf_hub_url(repo, path, revision=commit, endpoint=self.endpoint)
        what = f"hf://{repo}@{commit[:12]}/{path}"

        def open_at(offset: int) -> tuple[int, Iterator[bytes]]:
            headers = build_hf_headers(token=self._token or False, library_name="mlxk")
            headers["Accept-Encoding"] = "identity"
            if offset:
                headers["Range"] = f"bytes={offset}-"
            session = get_session()
            try:
                request = session.build_request("GET", url, headers=headers, timeout=TIMEOUT)
                response = session.send(request, stream=True, follow_redirects=True)
            except Exception as e:
                raise self._translate(e, what) from None
            if response.status_code not in (200, 206):
                response.close()
                status = response.status_code
                if status in (401, 403):
                    raise SourceError(
                        f"{what}: access denied (HTTP {status})",
                        hint="set HF_TOKEN to a token with access to it",
                    )
                raise SourceError(f"{what}: hub answered HTTP {status}")
            start = offset if response.status_code == 206 else 0

            def chunks() -> Iterator[bytes]:
                try:
                    yield from response.iter_raw(CHUNK)
                except Exception as e:
                    raise self._translate(e, what) from None
                finally:
                    response.close()

            return start, chunks()

        return open_at
