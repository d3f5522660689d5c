"""Benchmark: the air-gap flow end to end (bundle → import → offline sync → verify).

    MLXK_OLAH_CLI=/path/to/olah-cli python benchmarks/airgap.py [--size-mb 520] [--runs 2]

Two cases, each run ``--runs`` times in fresh directories:

  demo  ``manifests/demo.yaml`` + ``manifests/demo-model`` copied into a temporary project
        (a path source with a 4-bit quantize step);
  big   ``org/big`` served by olah (through ``tests.hubserver.Hub``): ``--size-mb`` MiB of
        random safetensors-like LFS shards from a fixed seed plus a small ``config.json`` and
        ``tokenizer.json`` (the repo of ``benchmarks/sync_vs_hf.py``).

Connected side (its own ``MLXK_STORE`` and ``HF_HOME``, ``HF_ENDPOINT`` at olah), in the project:

  mlxk sync -f models.yaml                         (locks first: no lock yet)
  mlxk bundle -f models.yaml ../transfer/models.tar
  mlxk bundle -f models.yaml ../transfer/models.bundle         (the same, to a directory)
  mlxk verify --bundle ../transfer/models.tar

Isolated side, every command under ``unshare -rn`` (a network namespace with no interfaces),
with a fresh ``MLXK_STORE`` and ``HF_HOME``, in a fresh empty project directory:

  mlxk import ../transfer/models.tar
  mlxk sync -f models.yaml --offline --frozen
  mlxk verify -f models.yaml
  mlxk run -f models.yaml demo-4bit hello --max-tokens 8        (demo only)

and, in another fresh directory with another fresh store, the one-step form:

  mlxk sync --offline --from ../transfer/models.tar   then   mlxk verify -f models.yaml

Every stage's wall time, peak RSS (``/usr/bin/time -v`` when present) and the bytes involved
(bundle on disk, store after import, workspace) are reported, with two floors measured on the
same tar: one-thread sha256, and a plain copy + fsync.  After every stage, outside its wall
time, the script calls sync(2) and reports how long that took ("flush after"): what the stage
left in the page cache unwritten; so every stage starts with nothing pending.  Untimed checks:
the namespace really has no route to olah; two tar bundles of the same lock are byte-identical;
the isolated workspace holds exactly the repo's bytes (big).  Prints a Markdown table and the
exact commands.  Everything (olah, its repo, every run's files) lives under one temporary
directory removed at the end, also on failure or interruption.  Helpers are shared with
``sync_vs_hf.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sync_vs_hf as shared  # noqa: E402  (a sibling script, not a package)

REPO_ROOT = shared.REPO_ROOT
DEMO_MANIFEST = REPO_ROOT / "manifests" / "demo.yaml"
DEMO_MODEL = REPO_ROOT / "manifests" / "demo-model"
BIG_MANIFEST = shared.MANIFEST
MIB = shared.MIB


@dataclass
class Stage:
    side: str  # "connected" | "isolated"
    name: str
    argv: list[str]  # the mlxk arguments, as run (cwd-relative paths)
    cwd: str  # the run directory, relative to the case's run root
    walls: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    bytes: list[int] = field(default_factory=list)
    flush: list[float] = field(default_factory=list)  # sync(2) right after the stage
    what: str = ""  # what the bytes are


@dataclass
class Case:
    name: str
    stages: dict[str, Stage] = field(default_factory=dict)
    notes: dict[str, list] = field(default_factory=dict)

    def stage(self, key: str, side: str, argv: list[str], cwd: str, what: str = "") -> Stage:
        if key not in self.stages:
            self.stages[key] = Stage(side, key, argv, cwd, what=what)
        return self.stages[key]

    def note(self, key: str, value) -> None:
        self.notes.setdefault(key, []).append(value)


def dir_bytes(path: Path) -> int:
    return path.stat().st_size if path.is_file() else shared.tree_bytes(path)


def loadavg() -> float:
    """The 1-minute load average: other work on the machine skews every figure."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def netns_probe(port: int) -> tuple[bool, bool, str]:
    """(olah reachable from here, olah reachable inside unshare -rn, interfaces in there)."""
    code = (
        "import socket,sys; s=socket.socket(); s.settimeout(2); "
        f"r=s.connect_ex(('127.0.0.1', {port})); "
        "print(','.join(n for _, n in socket.if_nameindex())); sys.exit(r)"
    )
    outside = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    inside = subprocess.run(
        ["unshare", "-rn", sys.executable, "-c", code], capture_output=True, text=True
    )
    return outside.returncode == 0, inside.returncode == 0, inside.stdout.strip()


def flush() -> float:
    """sync(2), timed: writes still in the page cache go to disk, so the next stage does not
    pay for them (an fsync on ext4 can wait for other files' pending writes)."""
    start = time.perf_counter()
    os.sync()
    return time.perf_counter() - start


def floors(tar: Path, scratch: Path) -> tuple[float, float]:
    """Seconds for a one-thread sha256 of the tar, and for copying it (+ fsync)."""
    start = time.perf_counter()
    shared.sha256_file(tar)
    sha = time.perf_counter() - start
    dest = scratch / "copy-floor.tar"
    start = time.perf_counter()
    shutil.copyfile(tar, dest)
    fd = os.open(dest, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    copy = time.perf_counter() - start
    dest.unlink()
    return sha, copy


# --------------------------------------------------------------------------- one run
def run_case(
    case: Case,
    mlxk: str,
    env0: dict[str, str],
    root: Path,
    expected: dict[str, str] | None,
) -> None:
    """One pass of the whole flow for one case under ``root`` (removed afterwards)."""
    a, transfer = root / "a", root / "transfer"
    b, c = root / "b", root / "c"
    for d in (transfer, b, c):
        d.mkdir(parents=True)
    ws_name = "demo-4bit" if case.name == "demo" else "big"
    case.note("load average (1 min) at start", loadavg())
    if case.name == "demo":
        a.mkdir(parents=True)
        shutil.copytree(DEMO_MODEL, a / "demo-model")
        shutil.copy(DEMO_MANIFEST, a / "models.yaml")
    else:
        a.mkdir(parents=True)
        (a / "models.yaml").write_text(BIG_MANIFEST)
    log = root / "mlxk.log"

    def env_for(side: str) -> dict[str, str]:
        d = root / f"{side}-env"
        (d / "hf_home").mkdir(parents=True, exist_ok=True)
        return {**env0, "MLXK_STORE": str(d / "store"), "HF_HOME": str(d / "hf_home")}

    env_a, env_b, env_c = env_for("connected"), env_for("isolated"), env_for("isolated-1step")

    def step(key, side, argv, cwd: Path, env, what="", netns=False):
        st = case.stage(key, side, argv, cwd.relative_to(root).as_posix(), what)
        cmd = [mlxk, *argv]
        if netns:
            cmd = ["unshare", "-rn", *cmd]
        t = shared.timed(cmd, env, cwd, log)
        st.walls.append(t.wall)
        if t.rss_kib is not None:
            st.rss_kib.append(t.rss_kib)
        st.flush.append(flush())
        return st

    # ---- connected
    s = step("sync", "connected", ["sync", "-f", "models.yaml"], a, env_a, "store + workspace")
    s.bytes.append(dir_bytes(Path(env_a["MLXK_STORE"])) + dir_bytes(a / "models" / ws_name))
    case.note("store (connected)", dir_bytes(Path(env_a["MLXK_STORE"])))
    case.note("workspace (connected)", dir_bytes(a / "models" / ws_name))
    tar, bdir = transfer / "models.tar", transfer / "models.bundle"
    s = step(
        "bundle → .tar",
        "connected",
        ["bundle", "-f", "models.yaml", "../transfer/models.tar"],
        a,
        env_a,
        "tar on disk",
    )
    s.bytes.append(dir_bytes(tar))
    s = step(
        "bundle → dir",
        "connected",
        ["bundle", "-f", "models.yaml", "../transfer/models.bundle"],
        a,
        env_a,
        "dir on disk",
    )
    s.bytes.append(dir_bytes(bdir))
    shutil.rmtree(bdir)
    s = step(
        "verify --bundle (.tar)",
        "connected",
        ["verify", "--bundle", "../transfer/models.tar"],
        a,
        env_a,
        "tar hashed",
    )
    s.bytes.append(dir_bytes(tar))
    # untimed: a second tar of the same lock is byte-identical
    again = root / "again.tar"
    shared.timed([mlxk, "bundle", "-f", "models.yaml", str(again)], env_a, a, log)
    same = shared.sha256_file(again) == shared.sha256_file(tar)
    again.unlink()
    flush()
    case.note("tar sha256", shared.sha256_file(tar)[:16])
    case.note("tar byte-identical on re-bundle", same)

    # ---- isolated: import, offline sync, verify (run)
    store_b = Path(env_b["MLXK_STORE"])
    s = step("import", "isolated", ["import", "../transfer/models.tar"], b, env_b, "store", True)
    s.bytes.append(dir_bytes(store_b))
    s = step(
        "sync --offline --frozen",
        "isolated",
        ["sync", "-f", "models.yaml", "--offline", "--frozen"],
        b,
        env_b,
        "workspace",
        True,
    )
    s.bytes.append(dir_bytes(b / "models" / ws_name))
    s = step("verify", "isolated", ["verify", "-f", "models.yaml"], b, env_b, "workspace", True)
    s.bytes.append(dir_bytes(b / "models" / ws_name))
    if case.name == "demo":
        mark = log.stat().st_size
        step(
            "run",
            "isolated",
            ["run", "-f", "models.yaml", "demo-4bit", "hello", "--max-tokens", "8"],
            b,
            env_b,
            netns=True,
        )
        with open(log, "rb") as f:
            f.seek(mark)
            out = f.read().decode(errors="replace").splitlines()[1:]
        case.note("run output", " ".join(out).strip())
    iso = ("import", "sync --offline --frozen", "verify")
    case.note("isolated import + sync + verify (s)", sum(case.stages[k].walls[-1] for k in iso))
    if expected is not None:  # untimed: exactly the repo's bytes arrived
        shared.check_tree(b / "models" / ws_name, expected)
    case.note(
        "isolated disk: tar + store + workspace",
        dir_bytes(tar) + dir_bytes(store_b) + dir_bytes(b / "models" / ws_name),
    )
    case.note(
        "lock identical across the gap",
        (b / "mlxk.lock").read_bytes() == (a / "mlxk.lock").read_bytes(),
    )

    # ---- isolated, one step
    s = step(
        "sync --offline --from (one step)",
        "isolated",
        ["sync", "--offline", "--from", "../transfer/models.tar"],
        c,
        env_c,
        "store + workspace",
        True,
    )
    s.bytes.append(dir_bytes(Path(env_c["MLXK_STORE"])) + dir_bytes(c / "models" / ws_name))
    s = step(
        "verify (after one step)",
        "isolated",
        ["verify", "-f", "models.yaml"],
        c,
        env_c,
        "workspace",
        True,
    )
    s.bytes.append(dir_bytes(c / "models" / ws_name))

    sha, copy = floors(tar, root)
    case.note("floor: sha256 of the tar, one thread (s)", sha)
    case.note("floor: copy the tar + fsync (s)", copy)


# --------------------------------------------------------------------------- report
def fmt_bytes(n: int) -> str:
    return f"{n:,}"


def fmt_walls(walls: list[float]) -> tuple[str, str]:
    med = statistics.median(walls)
    return f"{med:.2f}", " / ".join(f"{w:.2f}" for w in walls)


def report(cases: list[Case]) -> str:
    lines = [
        "| case | side | stage | wall (s), median | each run (s) | MB/s | peak RSS (MiB) "
        "| flush after (s) | bytes | of what |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for case in cases:
        for st in case.stages.values():
            med, each = fmt_walls(st.walls)
            nbytes = max(st.bytes) if st.bytes else None
            rate = "" if nbytes is None else f"{nbytes / 1e6 / statistics.median(st.walls):.0f}"
            rss = f"{max(st.rss_kib) / 1024:.0f}" if st.rss_kib else "–"
            fl = f"{statistics.median(st.flush):.2f}" if st.flush else ""
            lines.append(
                f"| {case.name} | {st.side} | `{st.name}` | {med} | {each} | {rate} | {rss} "
                f"| {fl} | {fmt_bytes(nbytes) if nbytes is not None else ''} | {st.what} |"
            )
    lines.append("")
    for case in cases:
        for key, values in case.notes.items():
            if key == "run output":
                shown = repr(values[-1])
            elif all(isinstance(v, bool) for v in values):
                shown = "yes" if all(values) else f"NO ({values})"
            elif all(isinstance(v, float) for v in values):
                shown = " / ".join(f"{v:.3f}" for v in values)
            elif all(isinstance(v, int) for v in values):
                shown = " / ".join(fmt_bytes(v) for v in values)
            else:
                shown = " / ".join(str(v) for v in values)
            lines.append(f"- {case.name}: {key}: {shown}")
    return "\n".join(lines)


def commands(cases: list[Case]) -> str:
    out = []
    for case in cases:
        out.append(f"# {case.name}")
        for st in case.stages.values():
            prefix = "unshare -rn " if st.side == "isolated" else ""
            out.append(f"(cd {st.cwd} && {prefix}mlxk {shlex.join(st.argv)})")
    return "\n".join(out)


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=520, help="big repo size in MiB (default 520)")
    ap.add_argument("--files", type=int, default=4, help="LFS shards in the big repo (default 4)")
    ap.add_argument("--runs", type=int, default=2, help="passes of each case (default 2)")
    ap.add_argument("--cases", default="demo,big", help="comma-separated: demo, big")
    ap.add_argument("--workdir", type=Path, help="parent of the temporary directory")
    ap.add_argument("--olah-cli", help="olah-cli to use (default: $MLXK_OLAH_CLI, .venv-olah)")
    ap.add_argument("--mlxk", default=None, help="mlxk executable (default: beside python)")
    args = ap.parse_args(argv)
    wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
    if args.size_mb < 1 or args.files < 1 or args.runs < 1:
        ap.error("--size-mb, --files and --runs must be positive")
    if not wanted or set(wanted) - {"demo", "big"}:
        ap.error("--cases: demo, big or both")
    if subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode != 0:
        sys.exit("`unshare -rn true` failed: the isolated side needs user + network namespaces")

    sys.path.insert(0, str(REPO_ROOT))
    from tests.hubserver import OLAH_ENV_VAR, Hub, find_olah_cli

    if args.olah_cli:
        os.environ[OLAH_ENV_VAR] = args.olah_cli
    mlxk = args.mlxk or shared.tool_path("mlxk")

    def _terminate(signum, _frame):  # SIGTERM/SIGHUP unwind like Ctrl-C: cleanup runs
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)

    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="mlxk-airgap-", dir=args.workdir))
    setup = shared.machine()
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        for dist in ("mlx", "mlx-lm"):
            setup[f"{dist} version"] = version(dist)
    hub = None
    try:
        hub = Hub(find_olah_cli(), tmp / "hub")
        hub.start()
        print(f"olah on {hub.endpoint} (work dir {tmp})", flush=True)
        outside, inside, ifaces = netns_probe(hub.port)
        print(
            f"olah reachable from here: {outside}; from inside unshare -rn: {inside} "
            f"(interfaces in there: {ifaces or 'none'})",
            flush=True,
        )
        if not outside or inside:
            raise RuntimeError("the network namespace probe did not come out as expected")
        setup["network namespace"] = f"unshare -rn: interfaces {ifaces!r}, olah unreachable"

        expected = None
        repo_bytes = 0
        if "big" in wanted:
            t0 = time.perf_counter()
            files = shared.repo_files(args.size_mb, args.files)
            expected = {p: hashlib.sha256(d).hexdigest() for p, d in files.items()}
            repo_bytes = sum(len(d) for d in files.values())
            commit = hub.create_repo(shared.REPO_ID, files, message="big")
            del files
            print(
                f"created {shared.REPO_ID}@{commit[:12]}: {len(expected)} files, "
                f"{repo_bytes:,} bytes in {time.perf_counter() - t0:.1f}s (not timed)",
                flush=True,
            )

        env0 = shared.base_env(hub.endpoint)
        cases = [Case(name) for name in wanted]
        for i in range(1, args.runs + 1):
            for case in cases:
                root = tmp / "runs" / f"{case.name}-{i}"
                root.mkdir(parents=True)
                run_case(case, mlxk, env0, root, expected if case.name == "big" else None)
                walls = ", ".join(f"{k} {v.walls[-1]:.2f}s" for k, v in case.stages.items())
                print(f"{case.name} #{i}: {walls}", flush=True)
                shutil.rmtree(root)  # one run's files on disk at a time

        fingerprint = shared.source_fingerprint()
        print("\n## Machine\n")
        for k, v in setup.items():
            print(f"- {k}: {v}")
        if fingerprint != setup["mlxk source fingerprint"]:
            print(
                f"- WARNING: files under mlxk/ changed during the runs "
                f"({setup['mlxk source fingerprint']} → {fingerprint})"
            )
        if repo_bytes:
            print(f"- big repo: {len(expected)} files, {repo_bytes:,} bytes")
        print(f"\n## Results ({args.runs} run(s) of each case)\n")
        print(report(cases))
        print("\n## Commands (cwd relative to each run's directory)\n")
        print("```bash")
        print(
            "# connected: MLXK_STORE, HF_HOME fresh; HF_ENDPOINT=<olah>\n"
            "# isolated: MLXK_STORE, HF_HOME fresh (another pair for the one-step form), "
            "a fresh empty dir"
        )
        print(commands(cases))
        print("```")
        return 0
    finally:
        if hub is not None:
            hub.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
