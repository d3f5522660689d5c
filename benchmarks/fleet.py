"""Benchmark: a fleet syncing one workspace from the registry vs. each machine from the hub.

    python benchmarks/fleet.py [--size-mb 1024] [--files 4] [--machines 8] [--runs 1]

Sets up, under one temporary directory (removed at the end, also on failure):

- the project's fast hub (``benchmarks/fasthub.py``) serving ``org/big``: ``--files``
  safetensors shards of ``--size-mb`` MiB in all (random bytes, fixed seed, LFS) plus a small
  ``config.json`` and ``tokenizer.json`` (regular git files);
- a real CNCF distribution registry (``docker-registry serve``, as in the tests, access log on);
- a second registry in pull-through-cache mode in front of the first (a site cache);
- a CI machine: ``models.yaml`` with ``source: hf://org/big@main``, ``mlxk sync`` (locks), then
  ``mlxk push --to oci://REGISTRY/models`` twice, timed: the first uploads everything, the
  second nothing.

Then, alternating per run, ``--machines`` simulated fleet machines at once, each with its own
directory (a copy of ``models.yaml`` and ``mlxk.lock``), ``MLXK_STORE``, ``HF_HOME`` and home:

  registry  ``MLXK_REMOTE=oci://REGISTRY/models mlxk sync --frozen --offline --link L``
  hub       ``mlxk sync --frozen --link L`` (``HF_ENDPOINT`` = the fast hub)
  site      as registry, with ``MLXK_REMOTE=oci://SITE-CACHE/models``: cold in run 1 (it
            fills from the registry while serving), then warm (run 1 again, and later runs)

Measured: the wall time from starting the first machine to the last one finishing, each
machine's wall time and peak RSS (``/usr/bin/time -v``), and the bytes each server served in
that window (the hub's count of file bytes sent; each registry's access log, GET response
sizes; the site cache's own fetches from the registry count as the registry's bytes). The
hub's request count proves the registry runs never asked it. After each scenario, one machine
is checked with ``mlxk verify`` (not timed), then every machine is removed.
``--link`` defaults to ``hardlink`` (one copy per machine: a run writes ``machines`` x size, not
twice that, on the one disk the simulated machines share). Prints a Markdown table and JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.fasthub import FastHub, git_file, lfs_file  # noqa: E402
from benchmarks.sync_vs_hf import repo_files  # noqa: E402
from tests.registry import make_server  # noqa: E402

MIB = 1 << 20
GNU_TIME = "/usr/bin/time"
MANIFEST = "version: 1\nworkspaces:\n  big:\n    source: hf://org/big@main\n"
OFF = ["--offline"]
_ACCESS = re.compile(r'"(GET|HEAD) (\S+) HTTP/[\d.]+" (\d{3}) (\d+|-)')


@dataclass
class Proc:
    wall: float
    rss_kib: int


@dataclass
class Scenario:
    name: str
    run: int
    wall: float
    machines: list[Proc] = field(default_factory=list)
    hub_bytes: int = 0
    hub_requests: int = 0
    registry_bytes: int = 0
    site_bytes: int = 0

    def summary(self) -> dict:
        walls = [m.wall for m in self.machines]
        rss = [m.rss_kib for m in self.machines]
        return {
            "scenario": self.name,
            "run": self.run,
            "wall_s": round(self.wall, 2),
            "machine_wall_s": {"min": round(min(walls), 2), "max": round(max(walls), 2)},
            "peak_rss_mib": {
                "median": round(statistics.median(rss) / 1024, 1),
                "max": round(max(rss) / 1024, 1),
            },
            "hub_bytes": self.hub_bytes,
            "hub_requests": self.hub_requests,
            "registry_bytes": self.registry_bytes,
            "site_cache_bytes": self.site_bytes,
        }


def env_for(root: Path, extra: dict[str, str]) -> dict[str, str]:
    drop = ("MLXK_", "HF_", "DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "SSL_CERT_FILE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["HF_HUB_DISABLE_TELEMETRY"] = "1"
    env["DOCKER_CONFIG"] = str(root / "no-docker")
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1"
    env.update(extra)
    return env


def start(cmd: list[str], cwd: Path, env: dict, log: Path) -> tuple[subprocess.Popen, float]:
    argv = [GNU_TIME, "-v", "-o", str(log.with_suffix(".time")), *cmd]
    out = open(log, "wb")  # noqa: SIM115 (closed when the process is reaped)
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    proc.log_file = out  # type: ignore[attr-defined]
    return proc, time.perf_counter()


def reap(proc: subprocess.Popen, started: float, log: Path) -> Proc:
    rc = proc.wait()
    wall = time.perf_counter() - started
    proc.log_file.close()  # type: ignore[attr-defined]
    if rc != 0:
        raise RuntimeError(f"{proc.args} exited {rc}:\n{log.read_text(errors='replace')[-3000:]}")
    rss = 0
    for line in log.with_suffix(".time").read_text().splitlines():
        if "Maximum resident set size" in line:
            rss = int(line.rsplit(":", 1)[1])
    return Proc(wall, rss)


def mlxk(python: str, *args: str) -> list[str]:
    return [python, "-m", "mlxk.cli", *args]


def registry_bytes(log: Path, offset: int) -> tuple[int, int]:
    """(GET response bytes since `offset` in the registry's access log, new offset)."""
    data = log.read_bytes()
    total = 0
    for line in data[offset:].decode(errors="replace").splitlines():
        m = _ACCESS.search(line)
        if m and m.group(1) == "GET" and m.group(4) != "-":
            total += int(m.group(4))
    return total, len(data)


def make_repo(root: Path, size_mb: int, n_files: int) -> tuple[list, int]:
    files = []
    total = 0
    root.mkdir(parents=True)
    for name, data in repo_files(size_mb, n_files).items():
        (root / name).write_bytes(data)
        total += len(data)
        if name.endswith(".safetensors"):
            files.append(lfs_file(name, root / name, len(data), hashlib.sha256(data).hexdigest()))
        else:
            files.append(git_file(name, root / name))
    return files, total


def fleet_run(
    args, work: Path, name: str, run: int, env_extra: dict, sync_args: list, ctx, first: int = 0
):
    """`machines` fleet machines syncing at once (after `first` of them alone); measured."""
    hub, registry, site, ci = ctx["hub"], ctx["registry"], ctx["site"], ctx["ci"]
    hub_before, hub_req_before = hub.bytes_sent, hub.requests
    _, offset = registry_bytes(registry.log, 0)
    _, site_offset = registry_bytes(site.log, 0)
    dirs = []

    def launch(i: int):
        d = work / f"{name.split()[0]}{len(name)}-{run}-m{i}"
        d.mkdir()
        for f in ("models.yaml", "mlxk.lock"):
            shutil.copy(ci / f, d / f)
        env = env_for(work, {"MLXK_STORE": str(d / "store"), "HF_HOME": str(d / "hf"), **env_extra})
        cmd = mlxk(args.python, "sync", "--frozen", "--link", args.link, *sync_args)
        dirs.append((d, env))
        return (*start(cmd, d, env, d / "sync.log"), d)

    t0 = time.perf_counter()
    results = [reap(p, s, d / "sync.log") for p, s, d in [launch(i) for i in range(first)]]
    rest = [launch(i) for i in range(first, args.machines)]
    results += [reap(p, s, d / "sync.log") for p, s, d in rest]
    wall = time.perf_counter() - t0
    served, _ = registry_bytes(registry.log, offset)
    hub_bytes, hub_requests = hub.bytes_sent - hub_before, hub.requests - hub_req_before
    site_served = registry_bytes(site.log, site_offset)[0]
    sc = Scenario(name, run, wall, results, hub_bytes, hub_requests, served, site_served)
    d, env = dirs[0]
    subprocess.run(mlxk(args.python, "verify"), cwd=d, env=env, check=True, capture_output=True)
    for d, _ in dirs:
        shutil.rmtree(d)
    return sc


def push_timed(args, ci: Path, env: dict, to: str, n: int) -> dict:
    proc, t = start(mlxk(args.python, "push", "--to", to, "--json"), ci, env, ci / f"push{n}.log")
    measured = reap(proc, t, ci / f"push{n}.log")
    text = (ci / f"push{n}.log").read_text()
    data = json.loads(text[text.index("{") :])["data"]["workspaces"][0]
    return {
        "wall_s": round(measured.wall, 2),
        "peak_rss_mib": round(measured.rss_kib / 1024, 1),
        "blobs": data["blobs"],
        "digest": data["digest"],
    }


def setup(args, work: Path, stack: contextlib.ExitStack) -> dict:
    (work / "no-docker").mkdir()
    files, total = make_repo(work / "hub-files", args.size_mb, args.files)
    hub = FastHub()
    hub.add_repo("org/big", files)
    stack.enter_context(hub)
    registry = make_server(work / "registry", "bench", log={"level": "warn"})
    registry.config["log"]["accesslog"] = {"disabled": False}
    registry.start()
    stack.callback(registry.stop)
    site = make_server(
        work / "site", "site", log={"level": "warn"}, proxy={"remoteurl": registry.url}
    )
    site.config["log"]["accesslog"] = {"disabled": False}
    site.start()
    stack.callback(site.stop)
    ci = work / "ci"
    ci.mkdir()
    (ci / "models.yaml").write_text(MANIFEST)
    env = env_for(
        work,
        {"MLXK_STORE": str(ci / "store"), "HF_HOME": str(ci / "hf"), "HF_ENDPOINT": hub.endpoint},
    )
    subprocess.run(
        mlxk(args.python, "sync", "--link", "hardlink"),
        cwd=ci,
        env=env,
        check=True,
        capture_output=True,
    )
    to = f"oci://{registry.host}/models"
    pushes = [push_timed(args, ci, env, to, n) for n in (1, 2)]
    return {
        "hub": hub,
        "registry": registry,
        "site": site,
        "site_to": f"oci://{site.host}/models",
        "ci": ci,
        "bytes": total,
        "files": len(files),
        "pushes": pushes,
        "to": to,
    }


def reset(server) -> None:
    """An empty site cache again, on the same port."""
    server.stop()
    shutil.rmtree(server.root / "data", ignore_errors=True)
    server.start()


def report(args, ctx: dict, scenarios: list[Scenario]) -> str:
    lines = [
        f"Workspace: {ctx['files']} files, {ctx['bytes']:,} bytes; {args.machines} machines at "
        f"once, --link {args.link}, --jobs 4 (default) each.",
        "",
        "| push | wall | peak RSS | blobs uploaded / already there | bytes sent |",
        "| --- | ---: | ---: | --- | ---: |",
    ]
    for i, p in enumerate(ctx["pushes"], 1):
        b = p["blobs"]
        lines.append(
            f"| {'first' if i == 1 else 'second'} | {p['wall_s']:.2f} s | "
            f"{p['peak_rss_mib']:.0f} MiB | {b['uploaded']} / {b['existing']} | "
            f"{b['bytes_sent']:,} |"
        )
    lines += [
        "",
        "| fleet from | run | wall (all machines) | per machine | peak RSS (median / max) | "
        "hub served | registry served | site cache served | hub requests |",
        "| --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for s in scenarios:
        d = s.summary()
        lines.append(
            f"| {s.name} | {s.run} | {d['wall_s']:.2f} s | {d['machine_wall_s']['min']:.2f}–"
            f"{d['machine_wall_s']['max']:.2f} s | {d['peak_rss_mib']['median']:.0f} / "
            f"{d['peak_rss_mib']['max']:.0f} MiB | {s.hub_bytes:,} | {s.registry_bytes:,} | "
            f"{s.site_bytes:,} | {s.hub_requests} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--machines", type=int, default=8)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--link", choices=["copy", "hardlink"], default="hardlink")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args(argv)
    need = args.size_mb * MIB * (4 + args.machines * (1 if args.link == "hardlink" else 2))
    parent = args.workdir or Path(tempfile.gettempdir())
    free = shutil.disk_usage(parent).free
    if free < need:
        print(f"needs about {need / 1e9:.1f} GB free under {parent}, has {free / 1e9:.1f}")
        return 2
    work = Path(tempfile.mkdtemp(prefix="mlxk-fleet-", dir=parent))
    try:
        with contextlib.ExitStack() as stack:
            ctx = setup(args, work, stack)
            scenarios = []
            remote = {"MLXK_REMOTE": ctx["to"], "HF_ENDPOINT": ctx["hub"].endpoint}
            hub = {"HF_ENDPOINT": ctx["hub"].endpoint}
            site = {**remote, "MLXK_REMOTE": ctx["site_to"]}
            for run in range(1, args.runs + 1):
                scenarios.append(fleet_run(args, work, "registry", run, remote, ["--offline"], ctx))
                scenarios.append(fleet_run(args, work, "hub", run, hub, [], ctx))
                if run == 1:
                    scenarios.append(fleet_run(args, work, "site (cold)", run, site, OFF, ctx))
                scenarios.append(fleet_run(args, work, "site (warm)", run, site, OFF, ctx))
                if run == 1:
                    reset(ctx["site"])
                    label = "site (cold, 1 machine first)"
                    scenarios.append(fleet_run(args, work, label, run, site, OFF, ctx, first=1))
            print(report(args, ctx, scenarios))
            machine = {
                "nproc": os.cpu_count(),
                "python": platform.python_version(),
                "kernel": platform.release(),
            }
            doc = {
                "machine": machine,
                "pushes": ctx["pushes"],
                "scenarios": [s.summary() for s in scenarios],
                "raw": [asdict(s) for s in scenarios],
            }
            print("\n" + json.dumps(doc, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
