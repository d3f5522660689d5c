"""Speed benchmarks for mlxk (issue 6), every figure from one command on this machine.

    python benchmarks/run.py [--workdir DIR] [--only 1,2,..] [--output F] [--idle-wait S] [--small]

``python`` is an interpreter with mlxk, huggingface_hub and numpy installed; the ``mlxk`` and
``hf`` beside it are measured (``--mlxk``/``--hf`` pick others).  Repos are served by
``benchmarks/fasthub.py``, a small hub-compatible server started in this process (sendfile,
Range honoured; several GB/s on loopback), so the download figures measure the clients, not
the hub.  Data are random bytes from numpy's PCG64 with fixed seeds, with valid safetensors
headers; they are generated once per run, hashed as they are written, and removed at the end.

  1. hash while writing   ``mlxk sync`` of a 2 GiB single-file repo: wall, MB/s, peak RSS,
                          bytes read from files (/proc/<pid>/io) vs bytes downloaded
  2. parallel verify      ``mlxk verify`` (4 x 512 MiB; and 1 x 2 GiB) vs hashlib in one
                          thread, sha256sum, and HfApi().verify_repo_checksums
  3. hash cache           ``mlxk verify --fast`` and ``mlxk plan`` vs ``mlxk verify``
  4. start-up             ``mlxk --help``, no-op ``plan``/``sync`` of 20 workspaces
                          (hyperfine if installed), and ``python -X importtime``
  5. download             ``mlxk sync`` vs ``hf download --local-dir`` (4 x 130 MiB + 2 git files)
  6. materialise          re-create the 2 GiB workspace from the store: copy vs ``--link hardlink``
  7. scale                1/10/100 tiny workspaces; 100 MiB, 1 GiB, 4 GiB

Every measured command runs in its own process group; its wall time is taken from start to
exit, its peak RSS by ``/usr/bin/time -f %M``, and its I/O counters from /proc/<pid>/io read
while it is a zombie (waitid WNOWAIT).  ``os.sync()`` runs between measurements (untimed), so
no run pays for the previous run's deferred writeback.  Each section also reports how much CPU
other processes on the machine used meanwhile (/proc/stat minus this benchmark's own CPU
time).  ``--small`` divides every size by 16: a smoke test of the script, not a benchmark.
Everything lives under one temporary directory that is removed at the end, also on failure,
Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import mmap
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fasthub  # noqa: E402  (sibling modules, not a package)
import sync_vs_hf as shared  # noqa: E402

REPO_ROOT = shared.REPO_ROOT
MIB = 1 << 20
GEN_CHUNK = 16 * MIB
FORBIDDEN_IMPORTS = ("mlx", "mlx_lm", "huggingface_hub")
DEMO_MODEL = REPO_ROOT / "manifests" / "demo-model"
GNU_TIME = "/usr/bin/time"
HAVE_TIME = os.access(GNU_TIME, os.X_OK)

# The data pool: name -> (MiB, seed). Repos below point at these files.
POOL = {
    **{f"a{i}": (512, 100 + i) for i in range(1, 5)},
    **{f"b{i}": (512, 200 + i) for i in range(1, 5)},
    "c": (2048, 300),
    **{f"e{i}": (130, 400 + i) for i in range(1, 5)},
    "f": (100, 500),
}


def shards(names: list[str]) -> list[tuple[str, str]]:
    n = len(names)
    return [(f"model-{i:05d}-of-{n:05d}.safetensors", x) for i, x in enumerate(names, 1)]


REPOS = {  # repo id -> [(path in repo, pool name)]
    "org/two-gig": [("model.safetensors", "c")],
    "org/four": shards(["a1", "a2", "a3", "a4"]),
    "org/big": shards(["e1", "e2", "e3", "e4"]),
    "org/s100m": [("model.safetensors", "f")],
    "org/s1g": shards(["a1", "a2"]),
    "org/s4g": shards(["a1", "a2", "a3", "a4", "b1", "b2", "b3", "b4"]),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- data
def st_header(size: int, name: str) -> bytes:
    """The 8-byte length + JSON header of a safetensors file of ``size`` bytes (one U8 tensor)."""
    header = b""
    for _ in range(3):  # the header's length depends on the tensor length it names
        n = size - 8 - len(header)
        meta = {"__metadata__": {"format": "pt"}, name: {"dtype": "U8", "shape": [n]}}
        meta[name]["data_offsets"] = [0, n]
        header = json.dumps(meta, separators=(",", ":")).encode()
        header += b" " * (-(8 + len(header)) % 8)
    return len(header).to_bytes(8, "little") + header


def generate(path: Path, size: int, seed: int) -> str:
    """Write a safetensors file of random bytes (PCG64, ``seed``); returns its sha256 hex."""
    import numpy as np

    bits = np.random.PCG64(seed)
    h = hashlib.sha256()
    head = st_header(size, f"weight.{seed}")
    with open(path, "wb") as f:
        f.write(head)
        h.update(head)
        left = size - len(head)
        while left:
            n = min(left, GEN_CHUNK)
            data = memoryview(bits.random_raw((n + 7) // 8)).cast("B")[:n]
            f.write(data)
            h.update(data)
            left -= n
    return h.hexdigest()


# --------------------------------------------------------------------------- measuring
@dataclass
class Proc:
    wall: float
    rss_kib: int
    io: dict[str, int]
    rc: int


@dataclass
class Ctx:
    tmp: Path
    hub: fasthub.FastHub
    mlxk: str
    hf: str
    factor: float
    pool: dict[str, tuple[Path, int, str]] = field(default_factory=dict)  # name → disk,size,sha
    commands: dict[str, list[str]] = field(default_factory=dict)
    projects: dict[str, Project] = field(default_factory=dict)
    results: dict = field(default_factory=dict)
    gen_seconds: float = 0.0

    @property
    def log(self) -> Path:
        return self.tmp / "commands.log"

    def note_command(self, section: str, text: str) -> None:
        shown = text.replace(str(self.tmp), "$TMP")
        lst = self.commands.setdefault(section, [])
        if shown not in lst:
            lst.append(shown)

    def run(
        self, cmd: list[str], env: dict, cwd: Path, expect=(0,), section: str = "", shown=None
    ) -> Proc:
        """Run ``cmd`` to completion: wall time, peak RSS (KiB), /proc/<pid>/io counters.

        Under /usr/bin/time (when present) for the peak RSS: a child forked straight from this
        big process would report this process's RSS as its own peak (Linux carries the
        parent's high-water mark across fork + exec).  The I/O counters are those of the
        wrapper, which include its reaped child's.
        """
        if section:
            self.note_command(section, shown or shlex.join(cmd))
        rss_file = self.tmp / "maxrss"
        argv = [GNU_TIME, "-f", "%M", "-o", str(rss_file), *cmd] if HAVE_TIME else cmd
        with open(self.log, "ab") as out:
            out.write(f"$ (cd {cwd}) {shlex.join(cmd)}\n".encode())
            out.flush()
            start = time.perf_counter()
            proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
            try:
                os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
                wall = time.perf_counter() - start
                io = read_io(proc.pid)
                _, status, usage = os.wait4(proc.pid, 0)
            except BaseException:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    proc.wait()
                raise
            proc.returncode = rc = os.waitstatus_to_exitcode(status)
        if rc not in expect:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{shlex.join(cmd)} exited {rc} (expected {expect}):\n{tail}")
        rss = usage.ru_maxrss
        if HAVE_TIME:
            rss = int(rss_file.read_text().split()[-1])
        return Proc(wall, rss, io, rc)

    def env(self, **extra: str) -> dict[str, str]:
        return {**shared.base_env(self.hub.endpoint), **extra}

    # ------------------------------------------------------------ data pool and repos
    def ensure_pool(self, names: Iterable[str]) -> None:
        todo = [n for n in names if n not in self.pool]
        if not todo:
            return
        d = self.tmp / "pool"
        d.mkdir(exist_ok=True)
        t0 = time.perf_counter()

        def one(name: str) -> tuple[str, tuple[Path, int, str]]:
            mib, seed = POOL[name]
            size = max(4096, int(mib * MIB * self.factor))
            path = d / f"{name}.safetensors"
            return name, (path, size, generate(path, size, seed))

        with ThreadPoolExecutor(max_workers=2) as pool:
            self.pool.update(pool.map(one, todo))
        dt = time.perf_counter() - t0
        self.gen_seconds += dt
        total = sum(self.pool[n][1] for n in todo)
        log(f"generated {', '.join(todo)}: {total / 1e6:,.0f} MB in {dt:.1f}s (not timed)")

    def drop_pool(self, names: Iterable[str]) -> None:
        for n in names:
            if n in self.pool:
                self.pool.pop(n)[0].unlink(missing_ok=True)

    def repo(self, repo_id: str) -> fasthub.HubRepo:
        if repo_id in self.hub.repos:
            return self.hub.repos[repo_id]
        spec = REPOS[repo_id]
        self.ensure_pool(name for _, name in spec)
        files = [fasthub.lfs_file(p, *self.pool[n]) for p, n in spec]
        if repo_id == "org/big":  # two regular git files, as in sync_vs_hf.py
            extra = self.tmp / "pool" / "big-extra"
            extra.mkdir(parents=True, exist_ok=True)
            small = shared.repo_files(1, 1)
            for name in ("config.json", "tokenizer.json"):
                (extra / name).write_bytes(small[name])
                files.append(fasthub.git_file(name, extra / name))
        return self.hub.add_repo(repo_id, files)

    def repo_bytes(self, repo_id: str) -> int:
        return sum(f.size for f in self.repo(repo_id).files.values())

    def project(self, key: str, workspaces: dict[str, str], home: str = "models") -> Project:
        p = Project(self, self.tmp / "projects" / key, workspaces, home)
        self.projects[key] = p
        return p

    def forget(self, key: str) -> None:
        p = self.projects.pop(key, None)
        if p is not None:
            shutil.rmtree(p.root, ignore_errors=True)


def cpu_sample() -> tuple[float, float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process and its reaped
    children, monotonic time)."""
    vals = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    busy = (sum(vals) - vals[3] - vals[4]) / os.sysconf("SC_CLK_TCK")
    t = os.times()
    return busy, t.user + t.system + t.children_user + t.children_system, time.monotonic()


def foreign_load(a: tuple, b: tuple) -> float:
    """Share of the machine's CPUs that other processes used between two cpu_sample()s."""
    others = (b[0] - a[0]) - (b[1] - a[1])
    return max(0.0, others) / ((b[2] - a[2]) * (os.cpu_count() or 1))


def wait_idle(limit: float, threshold: float = 0.15, window: float = 3.0) -> float:
    """Wait (up to ``limit`` s) for a ``window`` in which other processes use < ``threshold``
    of the CPUs; returns the share seen in the last window."""
    deadline = time.monotonic() + limit
    while True:
        a = cpu_sample()
        time.sleep(window)
        load = foreign_load(a, cpu_sample())
        if load < threshold or time.monotonic() >= deadline:
            return load
        log(f"waiting for the machine to go idle (other processes: {load:.0%} of the CPUs)")


def read_io(pid: int) -> dict[str, int]:
    out = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            k, _, v = line.partition(":")
            out[k.strip()] = int(v)
    return out


class Project:
    """A directory with models.yaml, its own MLXK_STORE and HF_HOME."""

    def __init__(self, ctx: Ctx, root: Path, workspaces: dict[str, str], home: str):
        self.ctx, self.root = ctx, root
        self.dir, self.store, self.hf_home = root / "project", root / "store", root / "hf_home"
        for d in (self.dir, self.store, self.hf_home):
            d.mkdir(parents=True, exist_ok=True)
        body = "".join(f"  {n}:\n    source: {s}\n" for n, s in workspaces.items())
        (self.dir / "models.yaml").write_text(f"version: 1\nhome: ./{home}\nworkspaces:\n{body}")
        self.home = self.dir / home
        self.names = list(workspaces)
        self.env = ctx.env(MLXK_STORE=str(self.store), HF_HOME=str(self.hf_home))

    @property
    def manifest(self) -> Path:
        return self.dir / "models.yaml"

    def mlxk(self, args: list[str], expect=(0,), section: str = "") -> Proc:
        argv = [self.ctx.mlxk, *args, "-f", "models.yaml"] if args else [self.ctx.mlxk]
        shown = "mlxk " + shlex.join([*args, "-f", "models.yaml"])
        return self.ctx.run(argv, self.env, self.dir, expect, section, shown)

    def files(self, name: str | None = None) -> list[Path]:
        root = self.home / (name or self.names[0])
        return sorted(
            p for p in root.rglob("*") if p.is_file() and p.name != ".mlxk_workspace.json"
        )

    def rm_workspaces(self) -> None:
        for n in self.names:
            shutil.rmtree(self.home / n, ignore_errors=True)
        os.sync()

    def blobs(self) -> list[Path]:
        return sorted(p for p in (self.store / "blobs").rglob("*") if p.is_file())


# --------------------------------------------------------------------------- stats and format
def med(xs: list[float]) -> float:
    return statistics.median(xs)


def f2(x: float) -> str:
    return f"{x:.2f}" if x >= 0.1 else f"{x:.3f}"


def mbs(nbytes: int, seconds: float) -> str:
    return f"{nbytes / 1e6 / seconds:,.0f}"


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f}"


def table(header: list[str], rows: list[list], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def rounds(n: int, fns: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Run each timed function n times, rotating the order every round."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    keys = list(fns)
    for i in range(n):
        for k in keys[i % len(keys) :] + keys[: i % len(keys)]:
            os.sync()
            out[k].append(fns[k]())
    return out


def hash_one_thread(paths: list[Path]) -> float:
    """Seconds for hashlib.sha256 over the files, one thread, 1 MiB readinto (in process)."""
    buf = bytearray(MIB)
    view = memoryview(buf)
    start = time.perf_counter()
    for p in paths:
        h = hashlib.sha256()
        with open(p, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                h.update(view[:n])
        h.hexdigest()
    return time.perf_counter() - start


def hash_threads(paths: list[Path], threads: int, window: int = 0) -> float:
    """Seconds for hashlib.sha256 over the files, one file per thread (in process): read in
    1 MiB `readinto`s, or with `window`, mapped that many bytes at a time (no copy)."""

    def one(p: Path) -> str:
        h = hashlib.sha256()
        with open(p, "rb", buffering=0) as f:
            if window:
                size = os.fstat(f.fileno()).st_size
                for off in range(0, size, window):
                    n = min(window, size - off)
                    with mmap.mmap(f.fileno(), n, offset=off, prot=mmap.PROT_READ) as m:
                        h.update(m)
                return h.hexdigest()
            buf = bytearray(MIB)
            view = memoryview(buf)
            while n := f.readinto(buf):
                h.update(view[:n])
        return h.hexdigest()

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, paths))
    return time.perf_counter() - start


def warm(paths: list[Path]) -> None:
    hash_one_thread(paths)


def raw_get(endpoint: str, repo_id: str, paths: list[str]) -> tuple[float, int]:
    """Plain parallel GETs (one thread per file, bytes discarded): (seconds, bytes)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def get(path: str) -> int:
        n = 0
        with opener.open(f"{endpoint}/{repo_id}/resolve/main/{path}", timeout=120) as r:
            while chunk := r.read(MIB):
                n += len(chunk)
        return n

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(paths)) as pool:
        total = sum(pool.map(get, paths))
    return time.perf_counter() - start, total


def check_files(root: Path, repo: fasthub.HubRepo) -> None:
    """Every repo file is in ``root`` with the right sha256 (or git blob id); untimed."""
    for f in repo.files.values():
        p = root / f.path
        if not p.is_file() or p.stat().st_size != f.size:
            raise RuntimeError(f"{p}: missing or wrong size")
        if f.sha256 and shared.sha256_file(p) != f.sha256:
            raise RuntimeError(f"{p}: wrong content")


# --------------------------------------------------------------------------- 1. hash while writing
def sync_file_range_write(fd: int, offset: int, nbytes: int) -> None:
    """Start writeback of a range now, without waiting (Linux sync_file_range WRITE)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.sync_file_range(fd, ctypes.c_int64(offset), ctypes.c_int64(nbytes), 2)


def download_breakdown(ctx: Ctx, repo_id: str, n_rounds: int = 3) -> str:
    """mlxk's own download loop, in this process, one stage added at a time (one file); then
    prototypes of three changes to that loop (benchmark code only, mlxk is not changed)."""
    import queue
    import threading

    from huggingface_hub.utils import build_hf_headers, get_session

    from mlxk.hashing import StreamHasher
    from mlxk.sources.hf_client import HfClient
    from mlxk.store import Store

    f = next(iter(ctx.repo(repo_id).files.values()))
    client = HfClient(endpoint=ctx.hub.endpoint, token="")
    opener = client.opener(repo_id, "main", f.path)
    url = f"{ctx.hub.endpoint}/{repo_id}/resolve/main/{f.path}"
    out = ctx.tmp / "breakdown"
    want = f"sha256:{f.sha256}"

    def mlxk_loop(hash_: bool, write: bool, fsync: bool) -> None:
        _, chunks = opener(0)
        hasher = StreamHasher()
        with open(out, "wb") if write else contextlib.nullcontext() as fh:
            for chunk in chunks:
                if hash_:
                    hasher.update(chunk)
                if fh:
                    fh.write(chunk)
            if fh and fsync:
                fh.flush()
                os.fsync(fh.fileno())
        assert not hash_ or hasher.digest() == want

    def proto(early: bool, thread: bool) -> None:
        headers = build_hf_headers(token=False, library_name="mlxk")
        headers["Accept-Encoding"] = "identity"
        session = get_session()
        request = session.build_request("GET", url, headers=headers, timeout=60)
        response = session.send(request, stream=True, follow_redirects=True)
        hasher = StreamHasher()
        todo: queue.Queue = queue.Queue(maxsize=64)

        def hash_worker() -> None:
            while (chunk := todo.get()) is not None:
                hasher.update(chunk)

        worker = threading.Thread(target=hash_worker) if thread else None
        if worker:
            worker.start()
        done = started = 0
        try:
            with open(out, "wb") as fh:
                for chunk in response.iter_raw():  # network-sized chunks: no re-chunking
                    fh.write(chunk)
                    if worker:
                        todo.put(chunk)
                    else:
                        hasher.update(chunk)
                    done += len(chunk)
                    if early and done - started >= 32 * MIB:
                        fh.flush()
                        sync_file_range_write(fh.fileno(), started, done - started)
                        started = done
                fh.flush()
                os.fsync(fh.fileno())
        finally:
            if worker:
                todo.put(None)
                worker.join()
            response.close()
        assert hasher.digest() == want

    def store_fetch() -> None:
        store = Store(ctx.tmp / "breakdown-store")
        store.fetch(opener, size=f.size, sha256=want, label=f.path)
        shutil.rmtree(ctx.tmp / "breakdown-store")

    stages: dict[str, Callable[[], None]] = {
        "mlxk's opener (httpx2 `iter_raw(1 MiB)`), bytes discarded": lambda: mlxk_loop(
            False, False, False
        ),
        "+ sha256 (`StreamHasher.update`)": lambda: mlxk_loop(True, False, False),
        "+ write to a file (page cache)": lambda: mlxk_loop(True, True, False),
        "+ fsync at the end (= the loop of `Store.fetch`)": lambda: mlxk_loop(True, True, True),
        "`Store.fetch` itself (fresh store)": store_fetch,
        "prototype A: the same with `iter_raw()` (no chunk size)": lambda: proto(False, False),
        "prototype B: A + `sync_file_range(WRITE)` every 32 MiB": lambda: proto(True, False),
        "prototype C: B + sha256 in a second thread": lambda: proto(True, True),
    }
    cpu: dict[str, list[float]] = {k: [] for k in stages}

    def timed(key: str) -> Callable[[], float]:
        def run() -> float:
            t0, c0 = time.perf_counter(), time.thread_time()
            stages[key]()
            wall = time.perf_counter() - t0
            cpu[key].append(time.thread_time() - c0)
            out.unlink(missing_ok=True)
            return wall

        return run

    times = rounds(n_rounds, {k: timed(k) for k in stages})
    os.sync()
    rows = [
        [k, f2(med(xs)), f2(min(xs)), mbs(f.size, med(xs)), f2(med(cpu[k]))]
        for k, xs in times.items()
    ]
    ctx.results["1-breakdown"] = {k: med(xs) for k, xs in times.items()}
    head = ["stage (in process, one file)", "median (s)", "min (s)", "MB/s", "CPU, loop thread (s)"]
    return table(head, rows)


def bench_hash_while_writing(ctx: Ctx) -> str:
    sec = "1"
    repo_id = "org/two-gig"
    repo = ctx.repo(repo_id)
    size = ctx.repo_bytes(repo_id)
    t, n = raw_get(ctx.hub.endpoint, repo_id, sorted(repo.files))
    assert n == size
    base = ctx.project("b1-lock", {"big": f"hf://{repo_id}@main"})
    baseline = base.mlxk(["lock"], section=sec)
    ctx.forget("b1-lock")
    rows, runs = [], []
    for i, link in enumerate(["copy", "hardlink", "copy", "hardlink", "copy"], 1):
        os.sync()
        key = f"two-gig-{i}"
        p = ctx.project(key, {"big": f"hf://{repo_id}@main"})
        sent0 = ctx.hub.bytes_sent
        args = ["sync"] + (["--link", "hardlink"] if link == "hardlink" else [])
        r = p.mlxk(args, section=sec)
        sent = ctx.hub.bytes_sent - sent0
        check_files(p.home / "big", repo)
        runs.append((link, r, sent))
        extra_read = r.io.get("rchar", 0) - baseline.io.get("rchar", 0)
        rows.append(
            [
                f"#{i} `mlxk sync" + (" --link hardlink`" if link == "hardlink" else "`"),
                f2(r.wall),
                mbs(size, r.wall),
                mib(r.rss_kib),
                f"{sent:,}",
                f"{r.io.get('rchar', 0):,}",
                f"{r.io.get('wchar', 0):,}",
                f"{r.io.get('read_bytes', 0):,}",
                f"{r.io.get('write_bytes', 0):,}",
                f"{extra_read / sent:.2f}",
            ]
        )
        if i == 5:
            ctx.projects["two-gig"] = ctx.projects.pop(key)  # kept for section 2
        else:
            ctx.forget(key)
    rows.append(
        [
            "baseline: `mlxk lock` (resolve only)",
            f2(baseline.wall),
            "",
            mib(baseline.rss_kib),
            "",
            f"{baseline.io.get('rchar', 0):,}",
            f"{baseline.io.get('wchar', 0):,}",
            "",
            "",
            "",
        ]
    )
    rows.append(["floor: raw GET (urllib), 1 stream, bytes discarded", f2(t), mbs(size, t)])
    rows[-1] += [""] * 7
    breakdown = download_breakdown(ctx, repo_id)
    copy = [r for link, r, _ in runs if link == "copy"]
    hard = [r for link, r, _ in runs if link != "copy"]
    peak = max(r.rss_kib for _, r, _ in runs)
    rows.insert(
        len(runs),
        [
            f"**median** copy / hardlink: {f2(med([r.wall for r in copy]))} / "
            f"{f2(med([r.wall for r in hard]))} s",
            "",
            f"{mbs(size, med([r.wall for r in copy]))} / {mbs(size, med([r.wall for r in hard]))}",
        ]
        + [""] * 7,
    )
    ctx.results["1"] = {
        "peak_rss_mib": peak / 1024,
        "wall_copy": med([r.wall for r in copy]),
        "wall_hardlink": med([r.wall for r in hard]),
        "read_ratio_copy": [
            (r.io["rchar"] - baseline.io["rchar"]) / s for link, r, s in runs if link == "copy"
        ],
        "read_ratio_hardlink": [
            (r.io["rchar"] - baseline.io["rchar"]) / s for link, r, s in runs if link != "copy"
        ],
    }
    head = [
        "run",
        "wall (s)",
        "MB/s",
        "peak RSS (MiB)",
        "bytes downloaded",
        "rchar",
        "wchar",
        "read_bytes",
        "write_bytes",
        "(rchar − baseline) / downloaded",
    ]
    return (
        f"Repo `{repo_id}`: one safetensors file of {size:,} bytes (random, seed "
        f"{POOL['c'][1]}). 5 runs, copy and `--link hardlink` alternating, each with a fresh "
        "project, store and `HF_HOME` and no lock yet (so sync resolves, locks, downloads into "
        "the store hashing as it writes, fsyncs, and places the file in the workspace). Every "
        "workspace file is checked (sha256) after the run, untimed. `rchar`/`wchar`: bytes "
        "the mlxk process passed through read/write/sendfile on files (socket receives are "
        "not counted); `read_bytes`/`write_bytes`: bytes that reached the block device.\n\n"
        + table(head, rows)
        + "\n\nWhere a single-file download's time goes: mlxk's download loop run in this "
        "process on the same file, one stage added at a time, then `Store.fetch` itself, then "
        "three prototype changes to the loop (benchmark code; mlxk is unchanged). 3 rounds, "
        "order rotated, `os.sync()` before each:\n\n" + breakdown
    )


# --------------------------------------------------------------------------- 2. parallel verify
def four_project(ctx: Ctx) -> Project:
    if "four" not in ctx.projects:
        p = ctx.project("four", {"four": "hf://org/four@main"})
        ctx.repo("org/four")
        r = p.mlxk(["sync"], section="2")
        ctx.results["four_first_sync"] = r.wall
        log(f"synced org/four: {r.wall:.2f}s")
    return ctx.projects["four"]


def two_gig_project(ctx: Ctx) -> Project:
    if "two-gig" not in ctx.projects:
        p = ctx.project("two-gig", {"big": "hf://org/two-gig@main"})
        ctx.repo("org/two-gig")
        p.mlxk(["sync"], section="2")
    return ctx.projects["two-gig"]


VRC = (
    "import sys; from huggingface_hub import HfApi; "
    "r = HfApi().verify_repo_checksums(sys.argv[1], revision='main', local_dir=sys.argv[2]); "
    "sys.exit(1 if r.mismatches or r.missing_paths else 0)"
)


def verify_methods(ctx: Ctx, p: Project, repo_id: str, split: bool) -> dict:
    files = p.files()
    ws = p.home / p.names[0]
    sec = "2"
    sha256sum = ["sha256sum", *map(str, files)]
    xargs = 'printf "%s\\0" "$@" | xargs -0 -P 2 -n 1 sha256sum'
    fns: dict[str, Callable[[], float]] = {
        "`mlxk verify` (default `--jobs` 4)": lambda: p.mlxk(["verify"], section=sec).wall,
        "`mlxk verify --jobs 2`": lambda: p.mlxk(["verify", "--jobs", "2"], section=sec).wall,
        "`mlxk verify --jobs 1`": lambda: p.mlxk(["verify", "--jobs", "1"], section=sec).wall,
        "`Project.verify()` (in process: mlxk's verify without start-up)": lambda: in_process(
            p, "full"
        ),
        "hashlib.sha256, 1 thread, 1 MiB reads (in process)": lambda: hash_one_thread(files),
    }
    if split:
        fns["hashlib.sha256, 2 threads (in process): the 2-core ceiling"] = lambda: hash_threads(
            files, 2
        )
    fns["`sha256sum FILES` (1 process)"] = lambda: (
        ctx.run(sha256sum, p.env, ws, section=sec, shown="sha256sum FILES").wall
    )
    if split:
        fns["`sha256sum` × 2 processes (xargs -P 2)"] = lambda: (
            ctx.run(
                ["sh", "-c", xargs, "sh", *map(str, files)],
                p.env,
                ws,
                section=sec,
                shown=f"sh -c '{xargs}' sh FILES",
            ).wall
        )
    vrc_shown = f'python -c "{VRC}" REPO WORKSPACE'
    fns["`HfApi().verify_repo_checksums` (fresh python)"] = lambda: (
        ctx.run(
            [sys.executable, "-c", VRC, repo_id, str(ws)], p.env, ws, section=sec, shown=vrc_shown
        ).wall
    )
    warm(files)
    return {"files": files, "times": rounds(3, fns)}


def verify_table(res: dict) -> tuple[str, dict[str, float]]:
    files, times = res["files"], res["times"]
    size = sum(f.stat().st_size for f in files)
    ref = med(times["hashlib.sha256, 1 thread, 1 MiB reads (in process)"])
    vrc = med(times["`HfApi().verify_repo_checksums` (fresh python)"])
    rows = []
    meds = {}
    for k, xs in times.items():
        m = med(xs)
        meds[k] = m
        rows.append([k, f2(m), f2(min(xs)), mbs(size, m), f"{ref / m:.2f}×", f"{vrc / m:.2f}×"])
    head = ["method", "median (s)", "min (s)", "MB/s", "vs hashlib 1 thread", "vs verify_repo"]
    return table(head, rows), meds


def bench_verify(ctx: Ctx) -> str:
    four = four_project(ctx)
    res4 = verify_methods(ctx, four, "org/four", split=True)
    t4, m4 = verify_table(res4)
    one = two_gig_project(ctx)
    res1 = verify_methods(ctx, one, "org/two-gig", split=False)
    t1, m1 = verify_table(res1)
    ctx.results["2"] = {"four": m4, "one": m1}
    size4 = sum(f.stat().st_size for f in res4["files"])
    size1 = sum(f.stat().st_size for f in res1["files"])
    return (
        f"Page cache warm: every file was read once before timing, and the whole data set fits "
        f"in RAM. 3 rounds, order rotated each round; `os.sync()` before each measurement. "
        f"The CLI rows include interpreter start-up (see section 4); the hashlib row does not.\n\n"
        f"**Four files** (`org/four`, 4 × {size4 // 4:,} bytes = {size4:,} bytes):\n\n{t4}\n\n"
        f"**One file** (`org/two-gig`, 1 × {size1:,} bytes; one sha256 cannot be split across "
        f"cores):\n\n{t1}"
    )


# --------------------------------------------------------------------------- 3. hash cache
def in_process(p: Project, what: str) -> float:
    """Seconds for one library call in this process (a fresh Project: the cache is reloaded)."""
    from mlxk.manifest import load_manifest
    from mlxk.project import Project as MlxkProject
    from mlxk.store import Store

    start = time.perf_counter()
    project = MlxkProject(load_manifest(str(p.manifest)), store=Store(p.store))
    if what == "plan":
        assert not project.plan().has_changes
    else:
        assert project.verify(fast=what == "fast").ok
    return time.perf_counter() - start


def bench_hash_cache(ctx: Ctx) -> str:
    p = four_project(ctx)
    sec = "3"
    warm(p.files())
    cli = rounds(
        5,
        {
            "full": lambda: p.mlxk(["verify"], section=sec).wall,
            "fast": lambda: p.mlxk(["verify", "--fast"], section=sec).wall,
            "plan": lambda: p.mlxk(["plan"], section=sec).wall,
        },
    )
    lib = rounds(
        5,
        {
            "full": lambda: in_process(p, "full"),
            "fast": lambda: in_process(p, "fast"),
            "plan": lambda: in_process(p, "plan"),
        },
    )
    rows = []
    labels = {
        "full": ("`mlxk verify`", "`Project.verify()`"),
        "fast": ("`mlxk verify --fast`", "`Project.verify(fast=True)`"),
        "plan": ("`mlxk plan`", "`Project.plan()`"),
    }
    for k in ("full", "fast", "plan"):
        c, lb = med(cli[k]), med(lib[k])
        rows.append(
            [
                f"{labels[k][0]} / {labels[k][1]}",
                f2(c),
                f"{med(cli['full']) / c:.1f}×",
                f"{lb * 1000:.1f}",
                f"{med(lib['full']) / lb:.0f}×",
            ]
        )
    ctx.results["3"] = {k: (med(cli[k]), med(lib[k])) for k in cli}
    size = sum(f.stat().st_size for f in p.files())
    head = ["command / library call", "CLI median (s)", "CLI: full / this", "in process (ms)"]
    head.append("in process: full / this")
    return (
        f"The synced `org/four` workspace ({size:,} bytes in 4 files), page cache warm, 5 rounds "
        "(order rotated). CLI: a fresh `mlxk` process each time. In process: a fresh "
        "`mlxk.project.Project` each time (manifest, lock and hash cache reloaded), no "
        "interpreter start-up.\n\n" + table(head, rows)
    )


# --------------------------------------------------------------------------- 4. start-up
def twenty_project(ctx: Ctx) -> Project:
    p = ctx.project("twenty", {f"tiny-{i:02d}": "path:demo-model" for i in range(1, 21)})
    shutil.copytree(DEMO_MODEL, p.dir / "demo-model")
    p.mlxk(["sync"], section="4")
    return p


def importtime(ctx: Ctx, p: Project, args: list[str], expect=(0,)) -> dict:
    cmd = [sys.executable, "-X", "importtime", ctx.mlxk, *args]
    with open(ctx.log, "ab") as out:
        r = subprocess.run(cmd, cwd=p.dir, env=p.env, stdout=out, stderr=subprocess.PIPE)
    if r.returncode not in expect:
        raise RuntimeError(f"{shlex.join(cmd)} exited {r.returncode}")
    shown = 'python -X importtime "$(which mlxk)" ' + shlex.join(args)
    ctx.note_command("4", shown)
    mods, top_level = set(), []
    for line in r.stderr.decode(errors="replace").splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        _, cum, name = (x.strip() for x in line[len("import time:") :].split("|"))
        mods.add(name)
        if not line.split("|")[2].startswith("  "):
            top_level.append((int(cum), name))
    heavy = sorted({m.split(".")[0] for m in mods} & set(FORBIDDEN_IMPORTS))
    slow = sorted(top_level, reverse=True)[:3]
    return {
        "modules": len(mods),
        "total_ms": sum(c for c, _ in top_level) / 1000,
        "heavy": heavy,
        "slowest": ", ".join(f"{n} {c / 1000:.0f} ms" for c, n in slow),
    }


def hyperfine(ctx: Ctx, p: Project, cmds: dict[str, list[str]], runs: int = 10) -> dict:
    exe = shutil.which("hyperfine")
    out: dict[str, dict] = {}
    if exe:
        export = ctx.tmp / "hyperfine.json"
        argv = [exe, "-N", "--warmup", "3", "--runs", str(runs), "--export-json", str(export)]
        argv += [shlex.join(c) for c in cmds.values()]
        with open(ctx.log, "ab") as f:
            subprocess.run(
                argv, cwd=p.dir, env=p.env, stdout=f, stderr=subprocess.STDOUT, check=True
            )
        for label, res in zip(cmds, json.loads(export.read_text())["results"], strict=True):
            out[label] = {"mean": res["mean"], "min": res["min"], "stddev": res["stddev"]}
        shown = [
            shlex.join(c).replace(ctx.mlxk, "mlxk").replace(sys.executable, "python")
            for c in cmds.values()
        ]
        ctx.note_command(
            "4",
            f"hyperfine -N --warmup 3 --runs {runs} " + " ".join(f'"{s}"' for s in shown),
        )
        return out
    for label, c in cmds.items():  # a plain loop: 2 warm-ups, then `runs` timed runs
        for _ in range(2):
            ctx.run(c, p.env, p.dir)
        xs = [ctx.run(c, p.env, p.dir, section="4").wall for _ in range(runs)]
        out[label] = {"mean": statistics.mean(xs), "min": min(xs), "stddev": statistics.stdev(xs)}
    return out


def bench_startup(ctx: Ctx) -> str:
    p = twenty_project(ctx)
    m = ctx.mlxk
    cmds = {
        "`mlxk --help`": [m, "--help"],
        "`mlxk plan` (no-op, 20 workspaces)": [m, "plan", "-f", "models.yaml"],
        "`mlxk sync` (no-op, 20 workspaces)": [m, "sync", "-f", "models.yaml"],
        "`mlxk verify --fast` (20 workspaces)": [m, "verify", "--fast", "-f", "models.yaml"],
        "`mlxk verify` (20 workspaces)": [m, "verify", "-f", "models.yaml"],
    }
    py = sys.executable
    for code in ("pass", "import mlxk.cli", "import mlxk.cli, mlxk.project", "import jsonschema"):
        cmds[f"`python -c '{code}'`"] = [py, "-c", code]
    hf = hyperfine(ctx, p, cmds)
    targets = {"`mlxk --help`": 0.3}
    targets.update({k: 0.5 for k in cmds if "no-op" in k})
    rows = []
    for k, v in hf.items():
        t = targets.get(k)
        ok = "" if t is None else (f"≤ {t} s: **yes**" if v["mean"] <= t else f"≤ {t} s: **no**")
        rows.append([k, f"{v['mean'] * 1000:.0f}", f"{v['min'] * 1000:.0f}", ok])
    tool = "hyperfine -N, 3 warm-ups, 10 runs" if shutil.which("hyperfine") else "10 runs"
    imp_rows = []
    imports = {}
    for label, args in (
        ("`mlxk --help`", ["--help"]),
        ("`mlxk plan` (no-op)", ["plan", "-f", "models.yaml"]),
        ("`mlxk sync` (no-op)", ["sync", "-f", "models.yaml"]),
        ("`mlxk verify --fast`", ["verify", "--fast", "-f", "models.yaml"]),
    ):
        r = importtime(ctx, p, args)
        imports[label] = r
        heavy = ", ".join(r["heavy"]) or "none"
        imp_rows.append([label, r["modules"], f"{r['total_ms']:.0f}", heavy, r["slowest"]])
    ctx.results["4"] = {"times": hf, "imports": imports}
    ctx.forget("twenty")
    return (
        f"A synced project of 20 workspaces, each `source: path:demo-model` (the tiny llama of "
        f"`manifests/demo-model`, 7 files, 309 KB), so no-op plan/sync look at 140 files. "
        f"Timing: {tool}. The `python -c` rows split the start-up into interpreter, the "
        f"CLI module (all `--help` needs), the library (`mlxk.project`, what plan/sync/verify "
        f"load) and jsonschema (imported when the manifest is validated).\n\n"
        + table(["command", "mean (ms)", "min (ms)", "target"], rows)
        + "\n\nImports (`python -X importtime`; import time is inflated by the tracing):\n\n"
        + table(
            ["command", "modules imported", "import time (ms)", f"of {FORBIDDEN_IMPORTS}"]
            + ["slowest top-level imports"],
            imp_rows,
            "lrrll",
        )
    )


# --------------------------------------------------------------------------- 5. download
def bench_download(ctx: Ctx) -> str:
    sec = "5"
    repo_id = "org/big"
    repo = ctx.repo(repo_id)
    size = ctx.repo_bytes(repo_id)
    shard = ctx.pool["e1"][1]
    floor_t, n = raw_get(ctx.hub.endpoint, repo_id, sorted(repo.files))
    assert n == size

    def mlxk_run(i: int, link: str = "copy", lock_only: bool = False) -> Proc:
        key = f"b5-{link}-{i}"
        p = ctx.project(key, {"big": f"hf://{repo_id}@main"})
        if lock_only:
            r = p.mlxk(["lock"], section=sec)
        else:
            r = p.mlxk(["sync"] + (["--link", "hardlink"] if link != "copy" else []), section=sec)
            check_files(p.home / "big", repo)
        ctx.forget(key)
        return r

    def hf_run(i: int, workers: int | None = None) -> Proc:
        d = ctx.tmp / "b5-hf"
        shutil.rmtree(d, ignore_errors=True)
        (d / "hf_home").mkdir(parents=True)
        env = ctx.env(HF_HOME=str(d / "hf_home"))
        cmd = [ctx.hf, "download", repo_id, "--local-dir", str(d / "local")]
        if workers:
            cmd += ["--max-workers", str(workers)]
        shown = shlex.join(["hf", *cmd[1:4], "LOCAL_DIR", *cmd[5:]])
        r = ctx.run(cmd, env, d, section=sec, shown=shown)
        check_files(d / "local", repo)
        shutil.rmtree(d)
        return r

    runs: dict[str, list[Proc]] = {"mlxk": [], "hf": []}
    for i in range(1, 6):
        for tool in ("mlxk", "hf") if i % 2 else ("hf", "mlxk"):
            os.sync()
            runs[tool].append(mlxk_run(i) if tool == "mlxk" else hf_run(i))
    os.sync()
    extra = {
        "`mlxk sync --link hardlink` (no copy into the workspace)": [
            mlxk_run(i, "hardlink") for i in (1, 2)
        ],
    }
    os.sync()
    extra["`mlxk lock` alone (resolve + list + fetch the 2 git files)"] = [
        mlxk_run(i, lock_only=True) for i in (1, 2)
    ]
    os.sync()
    extra["`hf download --max-workers 4`"] = [hf_run(i, 4) for i in (1, 2)]
    rows = []
    for label, key in (("`mlxk sync` (fresh store, no lock)", "mlxk"), ("`hf download`", "hf")):
        xs = [r.wall for r in runs[key]]
        rows.append(
            [
                label,
                ", ".join(f2(x) for x in xs),
                f2(med(xs)),
                mbs(size, med(xs)),
                mib(max(r.rss_kib for r in runs[key])),
            ]
        )
    for label, rs in extra.items():
        xs = [r.wall for r in rs]
        rows.append(
            [
                label,
                ", ".join(f2(x) for x in xs),
                f2(med(xs)),
                mbs(size, med(xs)),
                mib(rs[0].rss_kib),
            ]
        )
    rows.append(
        [f"floor: raw GET, {len(repo.files)} threads", f2(floor_t), "", mbs(size, floor_t), ""]
    )
    m, h = med([r.wall for r in runs["mlxk"]]), med([r.wall for r in runs["hf"]])
    ctx.results["5"] = {"mlxk": m, "hf": h, "ratio": m / h}
    ctx.drop_pool(["e1", "e2", "e3", "e4"])
    head = ["run", "walls (s)", "median (s)", "MB/s", "peak RSS (MiB)"]
    return (
        f"Repo `{repo_id}` on the fast server: 4 × {shard:,}-byte safetensors shards (LFS) "
        f"+ `config.json` + `tokenizer.json` (regular git files), {size:,} bytes. "
        f"Each run in fresh directories with an empty `HF_HOME` (and "
        f"`MLXK_STORE`); 5 runs each, alternating; `os.sync()` between runs, so neither tool "
        f"pays for the other's writeback. Every result is checked (sha256) after the run.\n\n"
        + table(head, rows, "lllrr")
        + f"\n\nRatio of medians mlxk sync / hf download = **{m / h:.2f}** (target ≤ 1.05)."
    )


# --------------------------------------------------------------------------- 6. materialise
def bench_materialise(ctx: Ctx) -> str:
    sec = "6"
    p = four_project(ctx)
    blobs = p.blobs()
    size = sum(b.stat().st_size for b in blobs)
    fstype = subprocess.run(
        ["stat", "-f", "-c", "%T", str(p.dir)], capture_output=True, text=True
    ).stdout.strip()

    def sync(link: str) -> float:
        p.rm_workspaces()
        args = ["sync"] + (["--link", "hardlink"] if link == "hardlink" else [])
        return p.mlxk(args, section=sec).wall

    def floor_copy() -> float:
        d = p.root / "floor"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        os.sync()

        def one(b: Path) -> None:
            shutil.copyfile(b, d / b.name)
            fd = os.open(d / b.name, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(one, blobs))
        t = time.perf_counter() - start
        shutil.rmtree(d)
        return t

    def floor_link() -> float:
        d = p.root / "floor"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        start = time.perf_counter()
        for b in blobs:
            os.link(b, d / b.name)
        t = time.perf_counter() - start
        shutil.rmtree(d)
        return t

    def rehash() -> float:
        from mlxk.hashing import hash_files

        start = time.perf_counter()
        hash_files(blobs, jobs=4)
        return time.perf_counter() - start

    warm(blobs)
    times = rounds(
        5,
        {
            "copy": lambda: sync("copy"),
            "hardlink": lambda: sync("hardlink"),
            "floor_copy": floor_copy,
            "floor_link": floor_link,
            "rehash": rehash,
        },
    )
    p.rm_workspaces()
    p.mlxk(["sync"])  # leave it synced (copy) for anything after
    times["noop"] = [p.mlxk(["sync"], section=sec).wall for _ in range(5)]
    c, h = med(times["copy"]), med(times["hardlink"])
    ctx.results["6"] = {"copy": c, "hardlink": h, "ratio": c / h, "fstype": fstype}
    ctx.results["6"].update({k: med(v) for k, v in times.items()})
    labels = {
        "copy": "`mlxk sync` (default: copy; reflink not available here)",
        "hardlink": "`mlxk sync --link hardlink`",
        "floor_copy": "floor: `shutil.copyfile` + fsync of the 4 blobs, 4 threads (in process)",
        "floor_link": "floor: `os.link` of the 4 blobs (in process)",
        "rehash": "part of mlxk's time: sha256 of the 4 store blobs (`hash_files`, 4 threads)",
        "noop": "no-op `mlxk sync` (workspace in place): start-up + plan, the floor of any sync",
    }
    link_ms = med(times["floor_link"]) * 1000
    rows = [
        [labels[k], ", ".join(f2(x) for x in xs), f2(med(xs)), f"{c / med(xs):.1f}×"]
        for k, xs in times.items()
        if k != "floor_link"
    ]
    return (
        f"The `org/four` workspace ({size:,} bytes in 4 files), store warm; before each sync "
        f"`rm -rf models/four` and `os.sync()` (untimed). Filesystem of the work directory: "
        f"`{fstype}` (`stat -f -c %T`), which has no reflinks, so the default copies. "
        f"5 rounds, order rotated.\n\n"
        + table(["run", "walls (s)", "median (s)", "copy / this"], rows, "llrr")
        + f"\n\n`os.link` of the 4 blobs (in process) takes {link_ms:.2f} ms."
        + f"\n\nRatio copy / hardlink = **{c / h:.1f}×** (target ≥ 20×)."
    )


# --------------------------------------------------------------------------- 7. scale
def scale_row(ctx: Ctx, p: Project, label: str, nbytes: int, nfiles: int, n_rounds: int) -> list:
    sec = "7"
    first = ctx.results.setdefault("7-first", {})
    warm([f for n in p.names for f in p.files(n)])
    t = rounds(
        n_rounds,
        {
            "plan": lambda: p.mlxk(["plan"], section=sec).wall,
            "verify": lambda: p.mlxk(["verify"], section=sec).wall,
            "fast": lambda: p.mlxk(["verify", "--fast"], section=sec).wall,
        },
    )
    syncs = []
    for _ in range(n_rounds):
        p.rm_workspaces()
        syncs.append(p.mlxk(["sync"], section=sec).wall)
    t["sync"] = syncs
    ctx.results.setdefault("7", {})[label] = {k: med(v) for k, v in t.items()}
    return [
        label,
        nfiles,
        f"{nbytes / 1e6:,.1f}",
        f2(first[label]),
        f2(med(t["plan"])),
        f2(med(t["verify"])),
        f2(med(t["fast"])),
        f2(med(t["sync"])),
    ]


def bench_scale(ctx: Ctx) -> str:
    rows = []
    first = ctx.results.setdefault("7-first", {})
    for n in (1, 10, 100):
        key = f"tiny-{n}"
        p = ctx.project(key, {f"tiny-{i:03d}": "path:demo-model" for i in range(1, n + 1)})
        shutil.copytree(DEMO_MODEL, p.dir / "demo-model")
        os.sync()
        first[f"{n} × tiny"] = p.mlxk(["sync"], section="7").wall
        files = [f for name in p.names for f in p.files(name)]
        nbytes = sum(f.stat().st_size for f in files)
        rows.append(scale_row(ctx, p, f"{n} × tiny", nbytes, len(files), 3))
        ctx.forget(key)
        log(f"scale: {n} tiny done")
    for repo_id, label in (("org/s100m", "100 MiB"), ("org/s1g", "1 GiB"), ("org/s4g", "4 GiB")):
        ctx.repo(repo_id)
        key = f"scale-{repo_id[4:]}"
        p = ctx.project(key, {"m": f"hf://{repo_id}@main"})
        os.sync()
        first[label] = p.mlxk(["sync"], section="7").wall
        files = p.files()
        rows.append(scale_row(ctx, p, label, sum(f.stat().st_size for f in files), len(files), 3))
        ctx.forget(key)
        log(f"scale: {label} done")
    head = [
        "workspaces / size",
        "files",
        "MB",
        "first sync (s)",
        "no-op plan (s)",
        "verify (s)",
        "verify --fast (s)",
        "sync from store (s)",
    ]
    return (
        "Medians of 3 runs. Tiny: N workspaces, each `source: path:demo-model` (7 files, 309 KB). "
        "Sizes: one workspace from the fast server, `100 MiB` = 1 file, `1 GiB` = 2 × 512 MiB, "
        "`4 GiB` = 8 × 512 MiB. *First sync* locks, fetches into an empty store and places "
        "(path sources: hashed and copied; hub: downloaded). *Sync from store*: `rm -rf` of "
        "every workspace directory and `os.sync()` (untimed), then `mlxk sync` with the lock and "
        "store in place (copy; ext4). Page cache warm.\n\n" + table(head, rows)
    )


# --------------------------------------------------------------------------- summary
def summary(ctx: Ctx) -> str:
    r = ctx.results
    rows = []

    def add(what: str, target: str, measured: str, ok: bool | None) -> None:
        rows.append(
            [what, target, measured, "–" if ok is None else ("**yes**" if ok else "**no**")]
        )

    if "1" in r:
        x = r["1"]
        rss = x["peak_rss_mib"]
        add("1. sync peak RSS (2 GiB file)", "< 150 MB", f"{rss:.0f} MiB", rss * MIB / 1e6 < 150)
        rc, rh = x["read_ratio_copy"], x["read_ratio_hardlink"]
        add(
            "1. file bytes read / bytes downloaded (copy; hardlink)",
            "read once at most",
            f"{min(rc):.2f}–{max(rc):.2f}; {min(rh):.2f}–{max(rh):.2f}",
            max(rc + rh) < 1.05,
        )
    if "2" in r:
        m = r["2"]["four"]
        v = m["`mlxk verify` (default `--jobs` 4)"]
        h = m["hashlib.sha256, 1 thread, 1 MiB reads (in process)"]
        vr = m["`HfApi().verify_repo_checksums` (fresh python)"]
        add("2. verify 4 × 512 MiB vs hashlib 1 thread", "≥ 1.7×", f"{h / v:.2f}×", h / v >= 1.7)
        add("2. verify 4 × 512 MiB vs verify_repo_checksums", "≥ 2×", f"{vr / v:.2f}×", vr / v >= 2)
        m1 = r["2"]["one"]
        v1 = m1["`mlxk verify` (default `--jobs` 4)"]
        h1 = m1["hashlib.sha256, 1 thread, 1 MiB reads (in process)"]
        add("2. verify 1 × 2 GiB vs hashlib 1 thread", "(cannot split)", f"{h1 / v1:.2f}×", None)
    if "3" in r:
        full, fast, plan = r["3"]["full"], r["3"]["fast"], r["3"]["plan"]
        for k, x in (("verify --fast", fast), ("plan", plan)):
            add(
                f"3. full verify / {k}, CLI",
                "≥ 100×",
                f"{full[0] / x[0]:.1f}×",
                full[0] / x[0] >= 100,
            )
            add(
                f"3. full verify / {k}, in process",
                "≥ 100×",
                f"{full[1] / x[1]:.0f}×",
                full[1] / x[1] >= 100,
            )
    if "4" in r:
        for k, v in r["4"]["times"].items():
            t = 0.3 if "help" in k else (0.5 if "no-op" in k else None)
            if t:
                add(f"4. {k}", f"≤ {t} s", f"{v['mean']:.3f} s (mean)", v["mean"] <= t)
        for k, v in r["4"]["imports"].items():
            if "help" in k or "plan" in k:
                heavy = ", ".join(v["heavy"]) or "none"
                add(f"4. {k} imports {'/'.join(FORBIDDEN_IMPORTS)}", "none", heavy, not v["heavy"])
    if "5" in r:
        x = r["5"]
        add("5. mlxk sync / hf download", "≤ 1.05", f"{x['ratio']:.2f}", x["ratio"] <= 1.05)
    if "6" in r:
        x = r["6"]
        add("6. materialise copy / hardlink", "≥ 20×", f"{x['ratio']:.1f}×", x["ratio"] >= 20)
    return table(["figure", "target", "measured", "met"], rows, "lllr")


def finish_report(out: list[str], ctx: Ctx, output: Path | None, mark: str) -> int:
    """The report's lines, then every command each section ran (headed `<section><mark>`):
    printed, and written to `output` when given. 0, the script's exit code."""
    for s in sorted(ctx.commands):
        out += ["", f"{s}{mark}", "", "```bash", *ctx.commands[s], "```"]
    report = "\n".join(out) + "\n"
    print("\n\n" + report, flush=True)
    if output:
        output.write_text(report)
    return 0


def machine(ctx: Ctx) -> list[str]:
    info = shared.machine()
    mem = ""
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / (1 << 20):.1f} GiB"
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    fstype = subprocess.run(
        ["stat", "-f", "-c", "%T", str(ctx.tmp)], capture_output=True, text=True
    ).stdout.strip()

    def version(cmd: list[str]) -> str:
        with contextlib.suppress(OSError):
            out = subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
            return out.splitlines()[0] if out else "?"
        return "not installed"

    lines = [
        f"- {info['nproc']} CPUs, {info['cpu']}"
        + (", SHA extensions (sha_ni)" if " sha_ni" in flags else ", no SHA extensions")
        + f", {mem} RAM; {info['platform']}",
        f"- work directory filesystem: `{fstype}`",
        f"- Python {info['python']}; huggingface_hub {info.get('huggingface_hub version', '?')}; "
        f"{version(['hyperfine', '--version'])}; {version(['sha256sum', '--version'])}",
        f"- mlxk commit {info['mlxk commit']}, source fingerprint "
        f"{info['mlxk source fingerprint']}",
    ]
    return lines


# --------------------------------------------------------------------------- main
BENCHES = {
    "1": ("Hash while writing", bench_hash_while_writing),
    "2": ("Parallel verify", bench_verify),
    "3": ("Hash cache", bench_hash_cache),
    "4": ("Start-up", bench_startup),
    "5": ("Download: mlxk sync vs hf download (fast server)", bench_download),
    "6": ("Materialise from the store", bench_materialise),
    "7": ("Scale", bench_scale),
}
ORDER = ["1", "2", "3", "6", "4", "5", "7"]  # 2, 3 and 6 share the synced org/four


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, help="parent of the temporary directory (default /tmp)")
    ap.add_argument("--only", default="", help="comma-separated sections, e.g. 1,4 (default all)")
    ap.add_argument("--output", type=Path, help="also write the Markdown report here")
    ap.add_argument("--small", action="store_true", help="sizes / 16: a smoke test, not figures")
    ap.add_argument(
        "--idle-wait",
        type=float,
        default=0,
        metavar="S",
        help="before each section, wait up to S seconds for other processes to use < 15%% of "
        "the CPUs (default 0: do not wait)",
    )
    ap.add_argument("--mlxk", default=None, help="mlxk executable (default: beside python)")
    ap.add_argument("--hf", default=None, help="hf executable (default: beside python)")
    args = ap.parse_args(argv)
    chosen = [s for s in ORDER if not args.only or s in args.only.split(",")]

    def _terminate(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)

    mlxk = args.mlxk or shared.tool_path("mlxk")
    hf = args.hf or shared.tool_path("hf")
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="mlxk-speed-", dir=args.workdir))
    need = 16e9 if not args.small else 2e9
    free = shutil.disk_usage(tmp).free
    if free < need:
        shutil.rmtree(tmp)
        sys.exit(f"{tmp.parent}: {free / 1e9:.1f} GB free, this needs about {need / 1e9:.0f} GB")
    hub = fasthub.FastHub().start()
    ctx = Ctx(tmp, hub, mlxk, hf, 1 / 16 if args.small else 1.0)
    t0 = time.perf_counter()
    sections: dict[str, str] = {}
    try:
        log(f"fast hub on {hub.endpoint}; work dir {tmp}")
        fingerprint = shared.source_fingerprint()
        for s in chosen:
            title, fn = BENCHES[s]
            if args.idle_wait:
                wait_idle(args.idle_wait)
            log(f"section {s}: {title} …")
            ts, c0 = time.perf_counter(), cpu_sample()
            text = fn(ctx)
            load = foreign_load(c0, cpu_sample())
            ctx.results.setdefault("load", {})[s] = load
            dt = time.perf_counter() - ts
            sections[s] = (
                f"{text}\n\n*Section wall time {dt:.0f} s; other processes on the machine used "
                f"{load:.0%} of the CPUs meanwhile (from /proc/stat).*"
            )
            log(f"section {s} done in {dt:.0f}s (other processes: {load:.0%} of the CPUs)")
            print(f"\n### {s}. {title}\n\n{sections[s]}\n", flush=True)
            if not set(chosen[chosen.index(s) + 1 :]) & {"2", "3", "6"}:
                ctx.forget("four")  # free the disk the later sections need
                ctx.forget("two-gig")
                ctx.drop_pool(["c"])
        total = time.perf_counter() - t0
        out = ["## Speed (issue 6)", "", "```bash", "python benchmarks/run.py", "```", ""]
        out += ["### Machine", "", *machine(ctx)]
        if shared.source_fingerprint() != fingerprint:
            out.append(
                "- WARNING: files under mlxk/ changed during the run; figures may mix versions"
            )
        out += [
            f"- total run time {total / 60:.1f} min (of which generating the test data "
            f"{ctx.gen_seconds:.0f} s); served by `benchmarks/fasthub.py` on 127.0.0.1"
            + (" — `--small`: NOT representative" if args.small else ""),
            "",
            "### Targets",
            "",
            summary(ctx),
            "",
        ]
        for s in sorted(sections):
            out += [f"### {s}. {BENCHES[s][0]}", "", sections[s], ""]
        out += ["### Commands", ""]
        out.append(
            "Every command ran with `HF_ENDPOINT` at the fast server, `HF_HUB_DISABLE_TELEMETRY=1`,"
            " a fresh `HF_HOME` and `MLXK_STORE` per project, and `cwd` = the project directory "
            "(`$TMP` is the temporary work directory):"
        )
        return finish_report(out, ctx, args.output, ".")
    finally:
        hub.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as e:
        print(
            f"interrupted ({str(e) or 'Ctrl-C'}); server stopped, temp dirs removed",
            file=sys.stderr,
        )
        sys.exit(130)
