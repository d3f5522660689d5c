"""Benchmark: `mlxk sync` + `mlxk verify` against `hf download`, both served by a local olah.

    MLXK_OLAH_CLI=/path/to/olah-cli python benchmarks/sync_vs_hf.py [--size-mb 520] [--files 4]

Starts olah (through ``tests.hubserver.Hub``) in a temporary directory, creates one git+LFS repo
``org/big`` of ``--size-mb`` MiB of random safetensors-like shards (fixed seed) plus a small
``config.json`` and ``tokenizer.json`` kept as regular git files, then times, alternating
(a, b, a, b, ...), each in a fresh target directory with fresh, empty caches:

  a. ``mlxk sync -f models.yaml`` then ``mlxk verify -f models.yaml`` (fresh ``MLXK_STORE``)
  b. ``hf download org/big --revision main --local-dir DIR``

Every run gets its own ``HF_HOME``; ``HF_ENDPOINT`` points at olah.  Peak RSS comes from
``/usr/bin/time -v`` when it exists, else from ``getrusage(RUSAGE_CHILDREN)``.  Before the
runs, a plain parallel HTTP GET of every file (bytes discarded) measures what olah can serve,
as a floor for both tools.  Prints a Markdown table, the medians and the exact commands.
Everything (olah, its repos, every run's files) lives under one temporary directory that is
removed at the end, also on failure or interruption.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import random
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
REPO_ID = "org/big"
REVISION = "main"
SEED = 20240601
MIB = 1 << 20
GNU_TIME = "/usr/bin/time"
MANIFEST = f"version: 1\nworkspaces:\n  big:\n    source: hf://{REPO_ID}@{REVISION}\n"


# --------------------------------------------------------------------------- the repo
def safetensors_shard(rng: random.Random, size: int, name: str) -> bytes:
    """A valid safetensors file of exactly ``size`` bytes: one U8 tensor of random bytes."""
    header = b""
    for _ in range(3):  # the header's length depends on the tensor length it names
        n = size - 8 - len(header)
        meta = {"__metadata__": {"format": "pt"}, name: {"dtype": "U8", "shape": [n]}}
        meta[name]["data_offsets"] = [0, n]
        header = json.dumps(meta, separators=(",", ":")).encode()
        header += b" " * (-(8 + len(header)) % 8)  # keep the data 8-byte aligned
    n = size - 8 - len(header)
    return len(header).to_bytes(8, "little") + header + rng.randbytes(n)


def repo_files(size_mb: int, n_files: int) -> dict[str, bytes]:
    rng = random.Random(SEED)
    shard = size_mb * MIB // n_files
    files = {}
    for i in range(1, n_files + 1):
        name = f"model-{i:05d}-of-{n_files:05d}.safetensors"
        files[name] = safetensors_shard(rng, shard, f"layers.{i - 1}.weight")
    config = {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": n_files}
    files["config.json"] = (json.dumps(config, indent=2) + "\n").encode()
    vocab = {f"tok{i}": i for i in range(2000)}
    tokenizer = {"version": "1.0", "model": {"type": "BPE", "vocab": vocab, "merges": []}}
    files["tokenizer.json"] = (json.dumps(tokenizer) + "\n").encode()
    return files


# --------------------------------------------------------------------------- measuring
@dataclass
class Timed:
    wall: float
    rss_kib: int | None
    returncode: int


@dataclass
class Run:
    tool: str
    index: int
    steps: dict[str, Timed] = field(default_factory=dict)
    target_bytes: int = 0
    cache_bytes: int = 0

    @property
    def total(self) -> float:
        return sum(t.wall for t in self.steps.values())


def _max_rss_from_time_file(path: Path) -> int | None:
    for line in path.read_text(errors="replace").splitlines():
        if "Maximum resident set size" in line:
            return int(line.rsplit(":", 1)[1])
    return None


def timed(cmd: list[str], env: dict[str, str], cwd: Path, log: Path) -> Timed:
    """Run ``cmd`` to completion; its wall time and peak RSS (KiB, of the biggest process)."""
    time_file = log.with_suffix(".time")
    use_gnu_time = os.access(GNU_TIME, os.X_OK)
    argv = [GNU_TIME, "-v", "-o", str(time_file), *cmd] if use_gnu_time else cmd
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with open(log, "ab") as out:
        out.write(f"$ {shlex.join(cmd)}\n".encode())
        out.flush()
        start = time.perf_counter()
        # Own process group, so an interrupted run takes the measured tool down with it
        # (killing /usr/bin/time alone would leave its child running).
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            rc = proc.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        wall = time.perf_counter() - start
    if use_gnu_time:
        rss = _max_rss_from_time_file(time_file)
    else:  # only meaningful if this child is the biggest one waited for so far
        after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        rss = after if after > before else None
    if rc != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{shlex.join(cmd)} exited {rc}; log {log}:\n{tail}")
    return Timed(wall, rss, rc)


def tree_bytes(root: Path, skip: tuple[str, ...] = ()) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip]
        for name in filenames:
            p = Path(dirpath, name)
            if not p.is_symlink():
                total += p.stat().st_size
    return total


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MIB):
            h.update(chunk)
    return h.hexdigest()


def check_tree(root: Path, expected: dict[str, str]) -> None:
    """Every repo file is in ``root`` with the right bytes (checked outside the timings)."""
    for rel, digest in expected.items():
        p = root / rel
        if not p.is_file() or p.is_symlink():
            raise RuntimeError(f"{p}: missing or not a regular file")
        if sha256_file(p) != digest:
            raise RuntimeError(f"{p}: wrong content")


def raw_get_floor(endpoint: str, paths: list[str], workers: int) -> float:
    """Seconds for plain parallel GETs of every file (bytes discarded): olah's serving rate."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def get(path: str) -> int:
        url = f"{endpoint}/{REPO_ID}/resolve/{REVISION}/{path}"
        n = 0
        with opener.open(url, timeout=120) as r:
            while chunk := r.read(MIB):
                n += len(chunk)
        return n

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(get, paths))
    return time.perf_counter() - start


# --------------------------------------------------------------------------- the runs
def base_env(endpoint: str) -> dict[str, str]:
    if str(REPO_ROOT) not in sys.path:  # run.py and scale.py import this module too
        sys.path.insert(0, str(REPO_ROOT))
    from tests.hubserver import HF_VARS

    drop = (*HF_VARS, "HF_HUB_ENABLE_HF_TRANSFER", "MLXK_STORE", "MLXK_WORKSPACE_HOME")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["HF_ENDPOINT"] = endpoint
    env["HF_HUB_DISABLE_TELEMETRY"] = "1"
    no_proxy = ",".join(filter(None, [env.get("NO_PROXY") or env.get("no_proxy"), "127.0.0.1"]))
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    return env


def run_mlxk(mlxk: str, env0: dict[str, str], run_dir: Path, index: int) -> Run:
    project, store, hf_home = run_dir / "project", run_dir / "store", run_dir / "hf_home"
    for d in (project, store, hf_home):
        d.mkdir(parents=True)
    (project / "models.yaml").write_text(MANIFEST)
    env = {**env0, "HF_HOME": str(hf_home), "MLXK_STORE": str(store)}
    run = Run("mlxk", index)
    log = run_dir / "mlxk.log"
    run.steps["sync"] = timed([mlxk, "sync", "-f", "models.yaml"], env, project, log)
    run.steps["verify"] = timed([mlxk, "verify", "-f", "models.yaml"], env, project, log)
    run.target_bytes = tree_bytes(project / "models" / "big")
    run.cache_bytes = tree_bytes(store) + tree_bytes(hf_home)
    return run


def run_hf(hf: str, env0: dict[str, str], run_dir: Path, index: int) -> Run:
    target, hf_home = run_dir / "local", run_dir / "hf_home"
    hf_home.mkdir(parents=True)
    env = {**env0, "HF_HOME": str(hf_home)}
    run = Run("hf", index)
    cmd = [hf, "download", REPO_ID, "--revision", REVISION, "--local-dir", str(target)]
    run.steps["download"] = timed(cmd, env, run_dir, run_dir / "hf.log")
    run.target_bytes = tree_bytes(target, skip=(".cache",))
    run.cache_bytes = tree_bytes(target / ".cache") + tree_bytes(hf_home)
    return run


# --------------------------------------------------------------------------- report
def fmt_s(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def fmt_rss(kib: int | None) -> str:
    return "–" if kib is None else f"{kib / 1024:.0f}"


def report(runs: list[Run], repo_bytes: int, floor: float, workers: int) -> str:
    mb = repo_bytes / 1e6
    lines = [
        "| run | tool | sync / download (s) | verify (s) | total wall (s) | MB/s (total) "
        "| peak RSS sync / download (MiB) | peak RSS verify (MiB) | bytes in target "
        "| bytes in caches |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in runs:
        first = r.steps.get("sync") or r.steps["download"]
        verify = r.steps.get("verify")
        lines.append(
            f"| {r.tool} #{r.index} | {r.tool} | {fmt_s(first.wall)} "
            f"| {fmt_s(verify.wall if verify else None)} | {fmt_s(r.total)} "
            f"| {mb / r.total:.1f} | {fmt_rss(first.rss_kib)} "
            f"| {fmt_rss(verify.rss_kib if verify else None)} "
            f"| {r.target_bytes:,} | {r.cache_bytes:,} |"
        )
    for tool in ("mlxk", "hf"):
        mine = [r for r in runs if r.tool == tool]
        first = [(r.steps.get("sync") or r.steps["download"]) for r in mine]
        verify = [r.steps["verify"].wall for r in mine if "verify" in r.steps]
        total = statistics.median(r.total for r in mine)
        rss = [t.rss_kib for t in first if t.rss_kib is not None]
        lines.append(
            f"| **median** | **{tool}** | **{fmt_s(statistics.median(t.wall for t in first))}** "
            f"| **{fmt_s(statistics.median(verify) if verify else None)}** "
            f"| **{fmt_s(total)}** | **{mb / total:.1f}** "
            f"| **{fmt_rss(max(rss) if rss else None)}** (max) | | | |"
        )
    lines.append(
        f"| floor | raw GET, {workers} threads | {fmt_s(floor)} | | {fmt_s(floor)} "
        f"| {mb / floor:.1f} | | | | |"
    )
    m_total = statistics.median(r.total for r in runs if r.tool == "mlxk")
    m_sync = statistics.median(r.steps["sync"].wall for r in runs if r.tool == "mlxk")
    h_total = statistics.median(r.total for r in runs if r.tool == "hf")
    lines += [
        "",
        f"Repo: {repo_bytes:,} bytes ({mb:.1f} MB). Ratios of medians: "
        f"mlxk sync+verify / hf download = {m_total / h_total:.2f}; "
        f"mlxk sync alone / hf download = {m_sync / h_total:.2f}; "
        f"hf download / raw GET floor = {h_total / floor:.2f}.",
    ]
    return "\n".join(lines)


def source_fingerprint() -> str:
    """sha256 (12 hex) of every file under mlxk/: shows whether the code changed during a run."""
    h = hashlib.sha256()
    for p in sorted((REPO_ROOT / "mlxk").rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            h.update(p.relative_to(REPO_ROOT).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:12]


def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break

    def git(*a: str) -> str:
        cmd = ["git", "-C", str(REPO_ROOT), *a]
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()

    dirty = git("status", "--porcelain", "--", "mlxk")
    versions = {}
    for dist in ("huggingface_hub", "mlxk"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[dist] = version(dist)
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "mlxk commit": git("rev-parse", "--short", "HEAD")
        + (" (+ uncommitted changes in mlxk/)" if dirty else ""),
        "mlxk source fingerprint": source_fingerprint(),
        **{f"{k} version": v for k, v in versions.items()},
    }


# --------------------------------------------------------------------------- main
def tool_path(name: str) -> str:
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if not found:
        sys.exit(f"{name}: not found beside {sys.executable} or on PATH")
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=520, help="repo size in MiB (default 520)")
    ap.add_argument("--files", type=int, default=4, help="number of LFS shards (default 4)")
    ap.add_argument("--runs", type=int, default=2, help="runs of each tool (default 2)")
    ap.add_argument("--workdir", type=Path, help="parent of the temporary directory")
    ap.add_argument("--olah-cli", help="olah-cli to use (default: $MLXK_OLAH_CLI, .venv-olah)")
    ap.add_argument("--mlxk", default=None, help="mlxk executable (default: beside python)")
    ap.add_argument("--hf", default=None, help="hf executable (default: beside python)")
    args = ap.parse_args(argv)
    if args.size_mb < 1 or args.files < 1 or args.runs < 1:
        ap.error("--size-mb, --files and --runs must be positive")

    sys.path.insert(0, str(REPO_ROOT))
    from tests.hubserver import OLAH_ENV_VAR, Hub, find_olah_cli

    if args.olah_cli:
        os.environ[OLAH_ENV_VAR] = args.olah_cli
    mlxk = args.mlxk or tool_path("mlxk")
    hf = args.hf or tool_path("hf")

    # SIGTERM/SIGHUP unwind like Ctrl-C, so the cleanup below always runs.
    def _terminate(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)

    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="mlxk-bench-", dir=args.workdir))
    setup = machine()
    hub = None
    try:
        hub = Hub(find_olah_cli(), tmp / "hub")
        hub.start()
        print(f"olah on {hub.endpoint} (work dir {tmp})", flush=True)

        t0 = time.perf_counter()
        files = repo_files(args.size_mb, args.files)
        expected = {p: hashlib.sha256(b).hexdigest() for p, b in files.items()}
        repo_bytes = sum(len(b) for b in files.values())
        commit = hub.create_repo(REPO_ID, files, message="big")
        del files
        print(
            f"created {REPO_ID}@{commit[:12]}: {len(expected)} files, {repo_bytes:,} bytes "
            f"in {time.perf_counter() - t0:.1f}s (not timed)",
            flush=True,
        )

        workers = len(expected)
        floor = raw_get_floor(hub.endpoint, sorted(expected), workers)
        print(f"raw GET floor: {floor:.2f}s ({repo_bytes / 1e6 / floor:.1f} MB/s)", flush=True)

        env0 = base_env(hub.endpoint)
        runs: list[Run] = []
        for i in range(1, args.runs + 1):
            for tool, fn, exe in (("mlxk", run_mlxk, mlxk), ("hf", run_hf, hf)):
                run_dir = tmp / "runs" / f"{tool}-{i}"
                run = fn(exe, env0, run_dir, i)
                target = run_dir / ("project/models/big" if tool == "mlxk" else "local")
                check_tree(target, expected)
                runs.append(run)
                steps = ", ".join(f"{k} {v.wall:.2f}s" for k, v in run.steps.items())
                print(f"{tool} #{i}: {steps}; total {run.total:.2f}s", flush=True)
                shutil.rmtree(run_dir)  # keep the disk footprint to one run at a time

        print("\n## Machine\n")
        for k, v in setup.items():
            print(f"- {k}: {v}")
        if source_fingerprint() != setup["mlxk source fingerprint"]:
            print("- WARNING: files under mlxk/ changed during the run; figures may mix versions")
        print(f"- repo: {REPO_ID}@{commit[:12]}, {repo_bytes:,} bytes")
        print(f"- /usr/bin/time -v for peak RSS: {'yes' if os.access(GNU_TIME, os.X_OK) else 'no'}")
        print("\n## Results\n")
        print(report(runs, repo_bytes, floor, workers))
        print("\n## Commands\n")
        print("Environment of every run (fresh temp dirs per run):")
        print(f"    HF_ENDPOINT={hub.endpoint} HF_HOME=<fresh dir> HF_HUB_DISABLE_TELEMETRY=1")
        print(f"models.yaml:\n    {MANIFEST.rstrip().replace(chr(10), chr(10) + '    ')}")
        print("a. (cwd = the manifest's dir, MLXK_STORE=<fresh dir>)")
        print(f"    {shlex.join([mlxk, 'sync', '-f', 'models.yaml'])}")
        print(f"    {shlex.join([mlxk, 'verify', '-f', 'models.yaml'])}")
        print("b.")
        print(f"    {hf} download {REPO_ID} --revision {REVISION} --local-dir <fresh dir>")
        print(f"each wrapped in: {GNU_TIME} -v -o <file>")
        return 0
    finally:
        if hub is not None:
            hub.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as e:
        print(f"interrupted ({e or 'Ctrl-C'}); olah stopped, temp dirs removed", file=sys.stderr)
        sys.exit(130)
