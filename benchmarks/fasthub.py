"""A small, fast, read-only Hugging Face hub for benchmarks: files on disk, served by sendfile.

Serves just what huggingface_hub (``hf download``, ``HfApi.verify_repo_checksums``) and mlxk use:

  GET  /api/models/{org}/{name}/revision/{rev}           repo_info: sha, siblings
  GET  /api/models/{org}/{name}/tree/{rev}[/{path}]      list_repo_tree (recursive or not)
  GET  /api/models/{org}/{name}/refs                     list_repo_refs
  HEAD /{org}/{name}/resolve/{rev}/{path}                X-Repo-Commit, ETag, X-Linked-*
  GET  /{org}/{name}/resolve/{rev}/{path}                the bytes; Range honoured (206)

(``/models/{org}/{name}/resolve/...`` is accepted too.)  ``rev`` is ``main`` or the repo's
commit.  Each file is either "LFS" (the tree gives ``lfs.oid`` = its sha256) or a regular git
file (the tree gives only its git blob sha1, as the real hub does).  The sha256 of LFS files is
given by whoever registers them (the benchmark computes it while generating the bytes), so
starting the server reads nothing.  Unlike olah it keeps no per-request state, honours Range
and sends file bodies with ``socket.sendfile``: on loopback it serves several GB/s, so a
download benchmark measures the client.  Standard library only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {size}\n"
LAST_MODIFIED = "2024-06-01T00:00:00.000Z"


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class HubFile:
    path: str  # path inside the repo (posix)
    disk: Path  # where the bytes are
    size: int
    sha256: str | None  # hex; set for LFS files
    blob_id: str  # git blob sha1 (of the LFS pointer for LFS files)

    @property
    def lfs(self) -> bool:
        return self.sha256 is not None

    def tree_entry(self) -> dict:
        entry = {"type": "file", "oid": self.blob_id, "size": self.size, "path": self.path}
        if self.lfs:
            pointer = LFS_POINTER.format(sha=self.sha256, size=self.size)
            entry["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": len(pointer)}
        return entry


@dataclass
class HubRepo:
    repo_id: str
    files: dict[str, HubFile] = field(default_factory=dict)

    @property
    def commit(self) -> str:
        """A fixed 40-hex id from the repo's content (same files → same commit)."""
        h = hashlib.sha1(self.repo_id.encode(), usedforsecurity=False)
        for f in sorted(self.files.values(), key=lambda f: f.path):
            h.update(f"\0{f.path}\0{f.blob_id}".encode())
        return h.hexdigest()


def lfs_file(path: str, disk: Path, size: int, sha256: str) -> HubFile:
    pointer = LFS_POINTER.format(sha=sha256, size=size).encode()
    return HubFile(path, Path(disk), size, sha256, git_blob_sha1(pointer))


def git_file(path: str, disk: Path) -> HubFile:
    data = Path(disk).read_bytes()
    return HubFile(path, Path(disk), len(data), None, git_blob_sha1(data))


class FastHub:
    """``with FastHub() as hub: hub.add_repo("org/x", [files...]); hub.endpoint``."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, rate: int | None = None, ranges: bool = True
    ):
        """`rate`: bytes per second each connection is capped at (as CDNs cap them); None
        for no cap (sendfile at loopback speed). `ranges=False`: ignore Range and send whole
        files (200), as olah does."""
        self.rate = rate
        self.ranges = ranges
        self.repos: dict[str, HubRepo] = {}
        self.requests = 0
        self.bytes_sent = 0  # file bytes sent by resolve GETs
        self.ranged = 0  # resolve GETs answered 206 (a resumed or ranged download)
        self.sending = 0  # file bodies being sent right now
        self.peak = 0  # the most file bodies sent at once (parallel connections)
        self.gets: list[tuple[str, int, int]] = []  # each resolve GET: (path, start, end)
        self._lock = threading.Lock()
        hub = self

        class Handler(_Handler):
            owner = hub

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def add_repo(self, repo_id: str, files: list[HubFile]) -> HubRepo:
        repo = HubRepo(repo_id, {f.path: f for f in files})
        self.repos[repo_id] = repo
        return repo

    def start(self) -> FastHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FastHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    owner: FastHub
    protocol_version = "HTTP/1.1"  # keep-alive: every answer has a Content-Length

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._handle(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle(head=True)

    # ------------------------------------------------------------ routing
    def _handle(self, head: bool) -> None:
        with self.owner._lock:
            self.owner.requests += 1
        path = urllib.parse.urlsplit(self.path).path
        parts = [urllib.parse.unquote(p) for p in path.split("/")[1:]]
        try:
            if parts[:2] == ["api", "models"] and len(parts) >= 5:
                self._api(parts[2:], head)
            else:
                if parts and parts[0] == "models":
                    parts = parts[1:]
                if len(parts) >= 5 and parts[2] == "resolve":
                    self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]), head)
                else:
                    self._error(404, "EntryNotFound", "no such route", head)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _repo(self, repo_id: str, rev: str | None, head: bool) -> HubRepo | None:
        repo = self.owner.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", f"Repository {repo_id} not found", head)
            return None
        if rev is not None and rev not in ("main", repo.commit):
            self._error(404, "RevisionNotFound", f"Revision {rev} not found", head)
            return None
        return repo

    def _api(self, parts: list[str], head: bool) -> None:
        repo_id, what, rest = f"{parts[0]}/{parts[1]}", parts[2], parts[3:]
        if what == "refs":
            repo = self._repo(repo_id, None, head)
            if repo:
                main = {"name": "main", "ref": "refs/heads/main", "targetCommit": repo.commit}
                self._json({"branches": [main], "tags": [], "converts": []}, head)
            return
        if not rest:
            self._error(404, "EntryNotFound", "no such route", head)
            return
        repo = self._repo(repo_id, rest[0], head)
        if repo is None:
            return
        if what == "revision":
            self._json(
                {
                    "_id": repo_id,
                    "id": repo_id,
                    "modelId": repo_id,
                    "sha": repo.commit,
                    "private": False,
                    "lastModified": LAST_MODIFIED,
                    "tags": [],
                    "siblings": [{"rfilename": p} for p in sorted(repo.files)],
                },
                head,
            )
        elif what == "tree":
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
            self._json(_tree(repo, "/".join(rest[1:]).strip("/"), recursive), head)
        else:
            self._error(404, "EntryNotFound", "no such route", head)

    # ------------------------------------------------------------ files
    def _resolve(self, repo_id: str, rev: str, path: str, head: bool) -> None:
        repo = self._repo(repo_id, rev, head)
        if repo is None:
            return
        f = repo.files.get(path)
        if f is None:
            self._error(404, "EntryNotFound", f"{path} not found", head)
            return
        etag = f'"{f.sha256 or f.blob_id}"'
        start, end = 0, f.size - 1
        status = 200
        rng = self.headers.get("Range") if self.owner.ranges else None
        if rng and rng.startswith("bytes=") and "," not in rng:
            first, _, last = rng[6:].partition("-")
            with contextlib.suppress(ValueError):
                if first:
                    start = int(first)
                    end = min(int(last), f.size - 1) if last else f.size - 1
                else:  # bytes=-N: the last N bytes
                    start = max(0, f.size - int(last))
                if start >= f.size:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{f.size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
        length = end - start + 1
        if not head:
            with self.owner._lock:
                self.owner.gets.append((path, start, end + 1))
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        self.send_header("X-Repo-Commit", repo.commit)
        if f.lfs:
            self.send_header("X-Linked-Etag", etag)
            self.send_header("X-Linked-Size", str(f.size))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{f.size}")
            with self.owner._lock:
                self.owner.ranged += 1
        self.end_headers()
        if head or not length:
            return
        with self.owner._lock:
            self.owner.sending += 1
            self.owner.peak = max(self.owner.peak, self.owner.sending)
        try:
            self._send_body(f, start, length)
        finally:
            with self.owner._lock:
                self.owner.sending -= 1

    def _send_body(self, f, start: int, length: int) -> None:
        with open(f.disk, "rb") as fh:
            if self.owner.rate:
                sent = self._send_capped(fh, start, length, self.owner.rate)
            else:
                sent = self.connection.sendfile(fh, offset=start, count=length)
        with self.owner._lock:
            self.owner.bytes_sent += sent
        if sent != length:
            self.close_connection = True

    def _send_capped(self, fh, start: int, length: int, rate: int) -> int:
        """Send `length` bytes from `start` at no more than `rate` bytes/s (20 slices a s)."""
        piece = max(1, rate // 20)
        fh.seek(start)
        sent, began = 0, time.monotonic()
        try:
            while sent < length:
                data = fh.read(min(piece, length - sent))
                self.connection.sendall(data)
                sent += len(data)
                ahead = sent / rate - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)
        except OSError:  # the client went away (e.g. interrupted): stop quietly
            pass
        return sent

    # ------------------------------------------------------------ answers
    def _json(self, value, head: bool) -> None:
        body = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str, head: bool) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)


def _tree(repo: HubRepo, prefix: str, recursive: bool) -> list[dict]:
    """Tree entries under ``prefix`` (folders too, as the hub lists them)."""
    base = prefix + "/" if prefix else ""
    files, folders = [], set()
    for path, f in sorted(repo.files.items()):
        if not path.startswith(base):
            continue
        rest = path[len(base) :]
        dirs = rest.split("/")[:-1]
        depth = len(dirs) if recursive else min(1, len(dirs))
        for i in range(1, depth + 1):
            folders.add(base + "/".join(dirs[:i]))
        if recursive or not dirs:
            files.append(f.tree_entry())
    oid = "0" * 40
    return [
        {"type": "directory", "oid": oid, "size": 0, "path": d} for d in sorted(folders)
    ] + files


if __name__ == "__main__":  # serve a directory's files as one repo, for manual poking
    import argparse
    import time

    ap = argparse.ArgumentParser(description="Serve DIR as repo REPO_ID (every file LFS).")
    ap.add_argument("repo_id")
    ap.add_argument("dir", type=Path)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    hub = FastHub(port=args.port)
    files = []
    for p in sorted(args.dir.rglob("*")):
        if p.is_file():
            digest = hashlib.sha256(p.read_bytes()).hexdigest()
            files.append(lfs_file(p.relative_to(args.dir).as_posix(), p, p.stat().st_size, digest))
    hub.add_repo(args.repo_id, files)
    with hub:
        print(f"serving {args.repo_id} on {hub.endpoint} (Ctrl-C stops)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
