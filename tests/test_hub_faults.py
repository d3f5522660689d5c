"""Hub faults: server down, 404 repo and revision, 401/403, a connection dropped mid-file, and
resuming that download with Range; the token never shows anywhere.

olah is the hub. Faults olah cannot produce (a gated 401, a 403, a dropped connection, honouring
Range) come from FaultServer: a small standard-library HTTP server in front of olah that passes
every request through and injects one fault.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from huggingface_hub.utils import close_session

from mlxk import lock as lockfile
from tests.hubserver import unique_repo_id
from tests.support import write_manifest

SECRET = "hf_SECRETfaulttoken0123456789abcdefXYZ"
BIG = 3 * (1 << 20) + 12345  # an LFS file bigger than the client's 1 MiB read chunk


class FaultServer:
    """An HTTP server that forwards to `upstream` (olah) and injects the fault it is set to.

    answer      (status, headers, body) given to every request instead of forwarding; the
                placeholder {auth} in the body and headers becomes the request's Authorization.
    drop_after  cut the body of the next `drops` resolve GETs bigger than this many bytes: the
                headers promise the whole file, then the connection closes.
    ranges      honour `Range: bytes=N-` on resolve GETs (206 / 416), as huggingface.co does.
    rewrite_tree  callable(list of tree entries) -> list, applied to /api/.../tree/ answers.
    log         every request as (method, path, headers).
    """

    def __init__(self, upstream: str | None = None):
        self.upstream = upstream
        self.answer: tuple[int, dict, bytes] | None = None
        self.drop_after: int | None = None
        self.drops = 0
        self.ranges = False
        self.rewrite_tree = None
        self.rename: dict[str, str] = {}  # served path -> upstream path, for resolve URLs
        self.log: list[tuple[str, str, dict]] = []
        self._lock = threading.Lock()
        fault = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 (http.server's naming)
                fault._handle(self, "GET")

            def do_HEAD(self):  # noqa: N802
                fault._handle(self, "HEAD")

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a client gone mid-answer is expected here; never print to stderr

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def requests_for(self, needle: str) -> list[tuple[str, str, dict]]:
        return [r for r in self.log if needle in urllib.parse.unquote(r[1])]

    # ------------------------------------------------------------ serving
    def _forward(self, method: str, path: str) -> tuple[int, dict, bytes]:
        if "/resolve/" in path:
            head, _, rest = path.partition("/resolve/")
            rev, _, name = rest.partition("/")
            name = self.rename.get(urllib.parse.unquote(name), urllib.parse.unquote(name))
            path = f"{head}/resolve/{rev}/{urllib.parse.quote(name)}"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        request = urllib.request.Request(self.upstream + path, method=method)
        try:
            with opener.open(request, timeout=30) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        headers = {k.lower(): v for k, v in h.headers.items()}
        with self._lock:
            self.log.append((method, h.path, headers))
        auth = headers.get("authorization", "")
        if self.answer is not None:
            status, extra, body = self.answer
            extra = {k: v.replace("{auth}", auth) for k, v in extra.items()}
            return self._send(h, method, status, extra, body.replace(b"{auth}", auth.encode()))
        status, up_headers, body = self._forward(method, h.path)
        keep = ("content-type", "x-error-code", "x-error-message", "x-repo-commit", "etag")
        out = {k: v for k, v in up_headers.items() if k.lower() in keep}
        if self.rewrite_tree and "/tree/" in h.path and status == 200:
            body = json.dumps(self.rewrite_tree(json.loads(body))).encode()
        resolve_get = method == "GET" and "/resolve/" in h.path and status == 200
        if resolve_get and self.ranges and "range" in headers:
            start = int(re.fullmatch(r"bytes=(\d+)-", headers["range"]).group(1))
            if start >= len(body):
                out["Content-Range"] = f"bytes */{len(body)}"
                return self._send(h, method, 416, out, b"")
            out["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
            return self._send(h, method, 206, out, body[start:])
        if resolve_get and self.drop_after is not None and len(body) > self.drop_after:
            with self._lock:
                drop, self.drops = self.drops > 0, self.drops - 1
            if drop:
                h.send_response(200)
                for k, v in out.items():
                    h.send_header(k, v)
                h.send_header("Content-Length", str(len(body)))
                h.end_headers()
                h.wfile.write(body[: self.drop_after])
                h.wfile.flush()
                h.connection.shutdown(socket.SHUT_RDWR)
                h.close_connection = True
                return None
        if method == "HEAD" and "content-length" in {k.lower() for k in up_headers}:
            out["Content-Length"] = next(
                v for k, v in up_headers.items() if k.lower() == "content-length"
            )
        return self._send(h, method, status, out, body)

    @staticmethod
    def _send(h, method: str, status: int, headers: dict, body: bytes) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        if "Content-Length" not in headers:
            h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(body)


@pytest.fixture
def fault(hub):
    server = FaultServer(hub.endpoint)
    try:
        yield server
    finally:
        server.close()


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def manifest_for(project, body: str) -> str:
    return str(write_manifest(project, "version: 1\nworkspaces:\n" + body))


def one_line_error(res, name: str | None = None) -> str:
    """The --json error message: exit 3, one line, no traceback, naming `name`; returned."""
    assert res.exit_code == 3, res
    assert res.json["status"] == "error" and res.json["error"]["exit_code"] == 3
    message = res.json["error"]["message"]
    assert "\n" not in message and "Traceback" not in res.stdout + res.stderr
    if name:
        assert name in message
    return message


def big_repo(hub, demo_files) -> tuple[str, bytes]:
    """A repo with the demo files and a BIG LFS file of random bytes."""
    repo = unique_repo_id("fault")
    blob = random.Random(7).randbytes(BIG)
    hub.create_repo(repo, {**demo_files, "weights.bin": blob})
    return repo, blob


# ---------------------------------------------------------------- each fault, its own message


def test_every_hub_fault_has_its_own_clear_message_and_exit_3(
    hub, hf_env, tmp_path, mlxk, demo_files, monkeypatch
):
    repo, blob = big_repo(hub, demo_files)
    messages = {}

    def run(case, source, endpoint, *args):
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        m = manifest_for(tmp_path / case, f"  m:\n    source: {source}\n")
        close_session()  # each run as from a fresh process: no keep-alive socket olah dropped
        res = mlxk(*args, "-f", m, "--json")
        close_session()
        text = mlxk(*args, "-f", m)  # the same failure, as a person sees it
        assert text.exit_code == 3 and "Traceback" not in text.stderr
        assert text.stderr.splitlines()[0].startswith("error: ")
        messages[case] = one_line_error(res)
        return messages[case]

    down = f"http://127.0.0.1:{closed_port()}"
    assert "cannot reach the hub at " + down in run("down", f"hf://{repo}@main", down, "lock")
    msg = run("no-repo", "hf://org/no-such-repo@main", hub.endpoint, "lock")
    assert "hf://org/no-such-repo@main: repository not found" in msg
    msg = run("no-revision", f"hf://{repo}@no-such-branch", hub.endpoint, "lock")
    assert f"hf://{repo}@no-such-branch: revision not found" in msg
    msg = run("no-sha", f"hf://{repo}@{'0' * 40}", hub.endpoint, "sync")
    assert "revision not found" in msg or "HTTP 500" in msg  # olah: 500 for an unknown sha

    fault = FaultServer(hub.endpoint)
    try:
        fault.answer = (401, {"X-Error-Code": "GatedRepo", "X-Error-Message": "gated"}, b"{}")
        msg = run("gated", f"hf://{repo}@main", fault.endpoint, "lock")
        assert "access denied (gated or private repo)" in msg
        fault.answer = (403, {"X-Error-Message": "forbidden"}, b"{}")
        msg = run("forbidden", f"hf://{repo}@main", fault.endpoint, "lock")
        assert "access denied" in msg and "403" in msg
        fault.answer = (404, {"X-Error-Code": "RevisionNotFound"}, b"{}")  # as huggingface.co
        msg = run("hub-404-revision", f"hf://{repo}@gone", fault.endpoint, "lock")
        assert f"hf://{repo}@gone: revision not found" in msg
        fault.answer = None
        fault.drop_after, fault.drops = BIG // 2, 2
        msg = run("dropped", f"hf://{repo}@main", fault.endpoint, "sync")
        assert "weights.bin" in msg and "download interrupted" in msg
    finally:
        fault.close()

    kinds = {
        "down": "cannot reach the hub",
        "no-repo": "repository not found",
        "no-revision": "revision not found",
        "gated": "gated or private",
        "forbidden": "HTTP 403",
        "dropped": "download interrupted",
    }
    for case, phrase in kinds.items():
        others = [c for c in kinds if c != case]
        assert phrase in messages[case], (case, messages[case])
        assert not any(phrase in messages[o] for o in others), (case, messages)
    print(f"faults injected: {len(messages)}, each exit 3 with its own message")


def test_download_401_and_403_after_locking_are_access_denied(
    hub, hf_env, tmp_path, mlxk, demo_files, monkeypatch, fault
):
    repo, _ = big_repo(hub, demo_files)
    m = manifest_for(tmp_path, f"  m:\n    source: hf://{repo}@main\n")
    assert mlxk("lock", "-f", m).exit_code == 0
    monkeypatch.setenv("HF_ENDPOINT", fault.endpoint)
    for status in (401, 403):
        fault.answer = (status, {}, b"{}")
        monkeypatch.setenv("MLXK_STORE", str(tmp_path / f"store-{status}"))  # must download
        msg = one_line_error(mlxk("sync", "-f", m, "--frozen", "--json"))
        assert f"access denied (HTTP {status})" in msg and "hf://" + repo in msg
        assert not (tmp_path / "models" / "m").exists()


# ---------------------------------------------------------------- dropped, then resumed


def test_dropped_download_keeps_the_partial_and_the_retry_resumes_with_range(
    hub, hf_env, tmp_path, mlxk, demo_files, monkeypatch, fault
):
    repo, blob = big_repo(hub, demo_files)
    monkeypatch.setenv("HF_ENDPOINT", fault.endpoint)
    m = manifest_for(tmp_path, f"  m:\n    source: hf://{repo}@main\n")
    assert mlxk("lock", "-f", m).exit_code == 0
    fault.drop_after, fault.drops = BIG // 2 + 1000, 1
    msg = one_line_error(mlxk("sync", "-f", m, "--json"), "weights.bin")
    assert "download interrupted" in msg
    assert not (tmp_path / "models" / "m").exists()  # nothing switched in
    partials = list((tmp_path / "store" / "tmp").glob("*.partial"))
    assert len(partials) == 1, partials
    kept = partials[0].stat().st_size
    assert 0 < kept <= BIG // 2 + 1000
    assert partials[0].read_bytes() == blob[:kept]  # the bytes that came, nothing else
    assert hashlib.sha256(blob).hexdigest() in partials[0].name

    fault.ranges = True
    fault.log.clear()
    res = mlxk("sync", "-f", m, "--json")
    assert res.exit_code == 0, res
    gets = [r for r in fault.requests_for("weights.bin") if r[0] == "GET"]
    assert len(gets) == 1, gets
    assert gets[0][2].get("range") == f"bytes={kept}-"  # only the rest was asked for
    assert (tmp_path / "models" / "m" / "weights.bin").read_bytes() == blob
    assert not list((tmp_path / "store" / "tmp").glob("*.partial"))
    assert mlxk("verify", "-f", m).exit_code == 0


def test_a_hub_that_ignores_range_restarts_the_download(
    hub, hf_env, tmp_path, mlxk, demo_files, monkeypatch, fault
):
    repo, blob = big_repo(hub, demo_files)
    monkeypatch.setenv("HF_ENDPOINT", fault.endpoint)
    m = manifest_for(tmp_path, f"  m:\n    source: hf://{repo}@main\n")
    fault.drop_after, fault.drops = BIG - 1000, 1
    one_line_error(mlxk("sync", "-f", m, "--json"), "weights.bin")
    assert list((tmp_path / "store" / "tmp").glob("*.partial"))
    fault.log.clear()  # olah itself answers 200 with the whole file to a Range request
    assert mlxk("sync", "-f", m).exit_code == 0
    gets = [r for r in fault.requests_for("weights.bin") if r[0] == "GET"]
    assert len(gets) == 1 and gets[0][2].get("range", "").startswith("bytes=")
    assert (tmp_path / "models" / "m" / "weights.bin").read_bytes() == blob


def test_a_complete_partial_left_behind_does_not_wedge_the_download(
    hub, hf_env, tmp_path, mlxk, demo_files, monkeypatch, fault
):
    """A fetch killed after its last write but before the rename leaves a full-size partial;
    asking the hub for `bytes=SIZE-` gets 416 from huggingface.co, forever."""
    repo, blob = big_repo(hub, demo_files)
    monkeypatch.setenv("HF_ENDPOINT", fault.endpoint)
    fault.ranges = True
    m = manifest_for(tmp_path, f"  m:\n    source: hf://{repo}@main\n")
    assert mlxk("lock", "-f", m).exit_code == 0
    tmp = tmp_path / "store" / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    sha = hashlib.sha256(blob).hexdigest()
    (tmp / f"sha256-{sha}.partial").write_bytes(blob[:-1] + b"\0")  # full size, last byte bad
    res = mlxk("sync", "-f", m, "--json")
    assert res.exit_code == 0, res
    assert (tmp_path / "models" / "m" / "weights.bin").read_bytes() == blob


# ---------------------------------------------------------------- secrets


def test_token_and_authorization_never_shown_even_when_the_hub_echoes_them(
    hub, hf_env, tmp_path, mlxk, demo_files, monkeypatch, fault
):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    repo, _ = big_repo(hub, demo_files)
    monkeypatch.setenv("HF_ENDPOINT", fault.endpoint)
    m = manifest_for(tmp_path, f"  m:\n    source: hf://{repo}@main\n")
    outputs = []
    for cmd in ("lock", "sync", "plan", "verify"):
        res = mlxk(cmd, "-f", m, "--json")
        assert res.exit_code == 0, res
        outputs.append(res.stdout)
    assert all(r[2].get("authorization") == f"Bearer {SECRET}" for r in fault.log)  # it is sent
    echo = (
        {"X-Error-Code": "GatedRepo", "X-Error-Message": "token {auth} is not allowed"},
        b'{"error": "denied for {auth}"}',
    )
    for status in (401, 403, 404, 500):
        fault.answer = (status, echo[0], echo[1])
        other = manifest_for(tmp_path / str(status), f"  m:\n    source: hf://{repo}@main\n")
        for args in (("lock",), ("sync",), ("sync", "--frozen")):
            if args[-1] == "--frozen":  # a download answered with the echo
                monkeypatch.setenv("MLXK_STORE", str(tmp_path / f"store-{status}"))
                shutil.rmtree(tmp_path / "models" / "m", ignore_errors=True)
                other = m
            for json_flag in ((), ("--json",)):
                res = mlxk(*args, "-f", other, *json_flag)
                assert res.exit_code == 3, res
                outputs += [res.stdout, res.stderr]
        monkeypatch.setenv("MLXK_STORE", str(tmp_path / "store"))
    for text in outputs:
        assert SECRET not in text and "Bearer" not in text
    for root, _, files in os.walk(tmp_path):
        for name in files:
            data = open(os.path.join(root, name), "rb").read()  # noqa: SIM115
            assert SECRET.encode() not in data, os.path.join(root, name)
    lock = lockfile.read(tmp_path / "mlxk.lock")
    assert lock is not None
