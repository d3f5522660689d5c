"""Issue 15 benchmarks: bytes written once, ranged downloads, verify at the limit, and scale.

    python benchmarks/scale.py [--workdir DIR] [--only link,xfs,capped,verify,scale]
                               [--rate BYTES_PER_S] [--sizes 1,2,4,8,16] [--runs N] [--small]

Same machinery as ``benchmarks/run.py`` (fast hub in process, PCG64 data with fixed seeds,
each command in its own process group under ``/usr/bin/time`` for its peak RSS, ``os.sync()``
between measurements, pairs alternated so neither tool pays for the other's writeback).

  link    1 GiB in 4 shards, ext4: default ``mlxk sync`` vs ``hf download``; ``--link copy``;
          the disk the workspace + store take (``du``, hardlinks counted once) / the model
  xfs     the same pair on a loop-mounted XFS with reflinks (``mkfs.xfs -m reflink=1`` on a
          sparse file; root), the disk measured with statvfs on that private filesystem
  capped  one 1 GiB file from the fast hub capped at ``--rate`` bytes/s per connection
          (default 50 MB/s): ``mlxk sync`` (ranged) vs ``hf download``
  verify  ``mlxk verify`` of the synced 1 GiB (4 shards) vs two hashlib threads in process
  scale   8 shards of 1..16 GiB in all (``--sizes``): sync, no-op re-sync, re-sync from the
          store after ``rm -rf`` of the workspace, verify, verify --fast; ``hf download``,
          hashlib (2 threads), ``sha256sum`` (2 processes); at the largest size also bundle
          and import; peak RSS; time per GB.  Checks the free disk first and leaves out a
          size that does not fit.

Everything lives under one temporary directory, removed at the end (the XFS mount is
unmounted in a ``finally``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import fasthub  # noqa: E402
import run as base  # noqa: E402  (benchmarks/run.py: the measuring machinery)

from tests.xfs import used, xfs_mount  # noqa: E402  (also the reflink tests' mount)

GIB = 1 << 30
MIB = base.MIB
DEFAULT_RATE = 50_000_000
SIZES = (1, 2, 4, 8, 16)

base.POOL.update({f"l{i}": (256, 600 + i) for i in range(1, 5)})
base.POOL["one"] = (1024, 700)
base.REPOS["org/l4"] = base.shards(["l1", "l2", "l3", "l4"])
base.REPOS["org/one"] = [("model.safetensors", "one")]
for _g in SIZES:
    _names = [f"g{_g}-{i}" for i in range(1, 9)]
    base.POOL.update({n: (_g * 1024 // 8, 1000 * _g + i) for i, n in enumerate(_names, 1)})
    base.REPOS[f"org/g{_g}"] = base.shards(_names)

log = base.log
f2, med = base.f2, base.med


def settle() -> None:
    """Flush everything: twice, so what a loop-mounted filesystem flushed into its backing
    file on the first pass is on disk too (else the next run pays for it)."""
    os.sync()
    os.sync()


def du(*paths: Path) -> int:
    """Bytes of disk the paths use, a hardlinked inode counted once (GNU du, one call)."""
    out = subprocess.run(
        ["du", "-s", "-B1", "-c", *map(str, paths)], capture_output=True, text=True, check=True
    ).stdout
    return int(out.strip().splitlines()[-1].split()[0])


def hf_run(ctx: base.Ctx, repo_id: str, where: Path, sec: str) -> base.Proc:
    d = where / "hf-run"
    shutil.rmtree(d, ignore_errors=True)
    (d / "hf_home").mkdir(parents=True)
    env = ctx.env(HF_HOME=str(d / "hf_home"))
    cmd = [ctx.hf, "download", repo_id, "--local-dir", str(d / "local")]
    r = ctx.run(cmd, env, d, section=sec, shown=f"hf download {repo_id} --local-dir LOCAL_DIR")
    base.check_files(d / "local", ctx.repo(repo_id))
    shutil.rmtree(d)
    settle()
    return r


def sync_run(ctx, repo_id: str, root: Path, sec: str, args=(), keep=False):
    """A fresh project (store, HF_HOME, no lock) synced: (Proc, project)."""
    shutil.rmtree(root, ignore_errors=True)
    ctx.repo(repo_id)
    p = base.Project(ctx, root, {"m": f"hf://{repo_id}@main"}, "models")
    r = p.mlxk(["sync", *args], section=sec)
    base.check_files(p.home / "m", ctx.repo(repo_id))
    if not keep:
        shutil.rmtree(root)
    settle()
    return r, p


def pair(ctx, repo_id: str, where: Path, sec: str, runs: int, on_disk=None) -> dict:
    """`runs` default syncs and `runs` hf downloads, alternating; walls and peak RSS."""
    out = {"mlxk": [], "hf": [], "disk": []}
    for i in range(runs):
        for tool in ("mlxk", "hf") if i % 2 == 0 else ("hf", "mlxk"):
            if tool == "hf":
                out["hf"].append(hf_run(ctx, repo_id, where, sec))
                continue
            before = used(where) if on_disk == "statvfs" else 0
            r, p = sync_run(ctx, repo_id, where / "mlxk-run", sec, keep=True)
            settle()
            if on_disk == "statvfs":
                out["disk"].append(used(where) - before)
            elif on_disk == "du":
                out["disk"].append(du(p.store, p.home))
            shutil.rmtree(p.root)
            settle()
            out["mlxk"].append(r)
    return out


def walls(rs) -> str:
    return ", ".join(f2(r.wall) for r in rs)


def pair_rows(res: dict, size: int, label: str) -> tuple[list[list], float]:
    m, h = med([r.wall for r in res["mlxk"]]), med([r.wall for r in res["hf"]])
    rows = [
        [f"`mlxk sync` ({label})", walls(res["mlxk"]), f2(m), base.mbs(size, m)]
        + [base.mib(max(r.rss_kib for r in res["mlxk"]))],
        ["`hf download --local-dir`", walls(res["hf"]), f2(h), base.mbs(size, h)]
        + [base.mib(max(r.rss_kib for r in res["hf"]))],
    ]
    return rows, m / h


HEAD = ["run", "walls (s)", "median (s)", "MB/s", "peak RSS (MiB)"]


# --------------------------------------------------------------------------- sections
def bench_link(ctx: base.Ctx, runs: int) -> str:
    sec, repo_id = "link", "org/l4"
    size = ctx.repo_bytes(repo_id)
    where = ctx.tmp / "link"
    where.mkdir()
    res = pair(ctx, repo_id, where, sec, runs, on_disk="du")
    rows, ratio = pair_rows(res, size, "default: `auto`, hardlinks here")
    copies, disk_copy = [], []
    for _ in range(2):
        r, p = sync_run(ctx, repo_id, where / "copy-run", sec, ["--link", "copy"], keep=True)
        disk_copy.append(du(p.store, p.home))
        shutil.rmtree(p.root)
        copies.append(r)
    cm = med([r.wall for r in copies])
    rows.append(["`mlxk sync --link copy`", walls(copies), f2(cm), base.mbs(size, cm), ""])
    disk, dcopy = max(res["disk"]) / size, max(disk_copy) / size
    ctx.results["link"] = {"ratio": ratio, "disk": disk, "disk_copy": dcopy, "copy": cm}
    return (
        f"Repo `{repo_id}`: 4 × {size // 4:,}-byte safetensors shards ({size:,} bytes), ext4. "
        f"{runs} runs of each tool, alternating, fresh directories each; `--link copy` twice "
        f"after.\n\n{base.table(HEAD, rows)}\n\n"
        f"- mlxk sync (default) / hf download = **{ratio:.2f}** (target ≤ 1.05)\n"
        f"- disk of workspace + store / model bytes (`du -s -B1 -c STORE WORKSPACE`): default "
        f"**{disk:.3f}** (target ≤ 1.05); `--link copy` {dcopy:.3f}"
    )


def bench_xfs(ctx: base.Ctx, runs: int) -> str:
    sec, repo_id = "xfs", "org/l4"
    size = ctx.repo_bytes(repo_id)
    with xfs_mount(ctx.tmp, max(3 * size + GIB, 1 * GIB)) as mnt:
        res = pair(ctx, repo_id, mnt, sec, runs, on_disk="statvfs")
    rows, ratio = pair_rows(res, size, "default: `auto`, reflinks here")
    disk = max(res["disk"]) / size
    ctx.results["xfs"] = {"ratio": ratio, "disk": disk}
    return (
        f"The same repo and pair as `link`, with the projects, stores and `hf` local dirs on a "
        f"loop-mounted XFS made by `mkfs.xfs -m reflink=1` (the served files stay on ext4). "
        f"{runs} runs each, alternating.\n\n{base.table(HEAD, rows)}\n\n"
        f"- mlxk sync (default) / hf download = **{ratio:.2f}** (target ≤ 1.05)\n"
        f"- space used on the XFS by a sync (statvfs before/after, `os.sync()`) / model bytes "
        f"= **{disk:.3f}**"
    )


def bench_capped(ctx: base.Ctx, runs: int, rate: int) -> str:
    sec, repo_id = "capped", "org/one"
    ctx.repo(repo_id)  # generate the data on the fast hub's pool
    fast = ctx.hub
    capped = fasthub.FastHub(rate=rate).start()
    try:
        ctx.hub = capped
        files = [fasthub.lfs_file(p, *ctx.pool[n]) for p, n in base.REPOS[repo_id]]
        capped.add_repo(repo_id, files)
        size = ctx.repo_bytes(repo_id)
        where = ctx.tmp / "capped"
        where.mkdir()
        res = pair(ctx, repo_id, where, sec, runs)
        ranged = capped.ranged
    finally:
        ctx.hub = fast
        capped.stop()
    rows, ratio = pair_rows(res, size, "pieces: 8 connections")
    ctx.results["capped"] = {"ratio": ratio, "rate": rate}
    return (
        f"Repo `{repo_id}`: one file of {size:,} bytes from the fast hub capped at "
        f"{rate / 1e6:.0f} MB/s per connection (`FastHub(rate=…)`, `--rate`). {runs} runs "
        f"each, alternating; the hub answered {ranged} ranged GETs in all.\n\n"
        f"{base.table(HEAD, rows)}\n\n"
        f"- mlxk sync / hf download = **{ratio:.2f}** (target ≤ 0.35)"
    )


def bench_verify(ctx: base.Ctx, runs: int) -> str:
    sec, repo_id = "verify", "org/l4"
    _, p = sync_run(ctx, repo_id, ctx.tmp / "verify-run", sec, keep=True)
    files = p.files()
    size = sum(f.stat().st_size for f in files)
    base.warm(files)
    fns: dict[str, Callable[[], float]] = {
        "`mlxk verify`": lambda: p.mlxk(["verify"], section=sec).wall,
        "hashlib.sha256, 2 threads (in process)": lambda: base.hash_threads(files, 2),
        "hashlib.sha256 over 8 MiB mapped windows, 2 threads (in process)": lambda: (
            base.hash_threads(files, 2, window=8 * MIB)
        ),
        "`Project.verify()` (in process)": lambda: base.in_process(p, "full"),
        "`python -c pass` (the interpreter alone)": lambda: (
            ctx.run(
                [sys.executable, "-c", "pass"], p.env, p.dir, section=sec, shown="python -c pass"
            ).wall
        ),
    }
    times = base.rounds(runs, fns)
    shutil.rmtree(p.root)
    v, h = med(times["`mlxk verify`"]), med(times["hashlib.sha256, 2 threads (in process)"])
    rows = [[k, walls_f(xs), f2(med(xs)), base.mbs(size, med(xs))] for k, xs in times.items()]
    mapped = med(times["hashlib.sha256 over 8 MiB mapped windows, 2 threads (in process)"])
    ctx.results["verify"] = {"ratio": v / h, "ratio_mapped": v / mapped}
    return (
        f"The synced `{repo_id}` workspace ({size:,} bytes in 4 files), page cache warm, "
        f"{runs} rounds, order rotated.\n\n"
        + base.table(["method", "walls (s)", "median (s)", "MB/s"], rows)
        + f"\n\n- mlxk verify / 2 hashlib threads = **{v / h:.2f}** (target ≤ 1.2)"
        + f"\n- mlxk verify / 2 hashlib threads over mapped windows (how mlxk reads a big file) "
        f"= {v / mapped:.2f}"
    )


def walls_f(xs: list[float]) -> str:
    return ", ".join(f2(x) for x in xs)


def scale_one(ctx: base.Ctx, g: int, last: bool) -> dict:
    """Every measurement at one size (one run each): {label: Proc or seconds}."""
    sec, repo_id = "scale", f"org/g{g}"
    ctx.repo(repo_id)
    out: dict = {}
    where = ctx.tmp / f"scale-{g}"
    where.mkdir()
    out["sync"], p = sync_run(ctx, repo_id, where / "p", sec, keep=True)
    out["re-sync (no-op)"] = p.mlxk(["sync"], section=sec)
    files = p.files()
    base.warm(files[:1])
    out["verify"] = p.mlxk(["verify"], section=sec)
    out["verify --fast"] = p.mlxk(["verify", "--fast"], section=sec)
    p.rm_workspaces()
    out["re-sync after rm -rf of the workspace"] = p.mlxk(["sync"], section=sec)
    files = p.files()
    out["hashlib, 2 threads (in process)"] = base.hash_threads(files, 2)
    xargs = 'printf "%s\\0" "$@" | xargs -0 -P 2 -n 1 sha256sum'
    out["`sha256sum`, 2 processes"] = ctx.run(
        ["sh", "-c", xargs, "sh", *map(str, files)], p.env, p.dir, section=sec,
        shown=f"sh -c '{xargs}' sh FILES",
    )  # fmt: skip
    out["`hf download`"] = hf_run(ctx, repo_id, where, sec)
    if last:
        tar = where / "models.tar"
        out["bundle (.tar)"] = p.mlxk(["bundle", str(tar)], section=sec)
        shutil.rmtree(p.store)
        p.rm_workspaces()
        other = where / "imported"
        other.mkdir()
        env = ctx.env(MLXK_STORE=str(where / "store2"), HF_HOME=str(where / "hf2"))
        out["import"] = ctx.run(
            [ctx.mlxk, "import", str(tar)], env, other, section=sec, shown="mlxk import OUT.tar"
        )
    shutil.rmtree(where)
    ctx.drop_pool(n for _, n in base.REPOS[repo_id])
    os.sync()
    return out


def need(g: int, last: bool, factor: float) -> int:
    """Disk a size needs at its peak: the data, the store and one more copy (hf's download;
    then the tar; then, the store gone, the imported store), the workspace being hardlinks."""
    return int(3 * g * GIB * factor + 4 * GIB)


def bench_scale(ctx: base.Ctx, sizes: list[int]) -> str:
    per: dict[int, dict] = {}
    skipped = []
    for g in sizes:
        last = g == max(sizes)
        free = shutil.disk_usage(ctx.tmp).free
        if free < need(g, last, ctx.factor):
            skipped.append(f"{g} GiB (needs {need(g, last, ctx.factor) / 1e9:.0f} GB, "
                           f"{free / 1e9:.0f} GB free)")  # fmt: skip
            continue
        log(f"scale: {g} GiB …")
        per[g] = scale_one(ctx, g, last)
    labels = list(dict.fromkeys(k for res in per.values() for k in res))
    rows = []
    for label in labels:
        row = [label]
        for g, res in per.items():
            x = res.get(label)
            if x is None:
                row.append("")
                continue
            wall = x if isinstance(x, float) else x.wall
            rss = "" if isinstance(x, float) else f", {base.mib(x.rss_kib)} MiB"
            row.append(f"{f2(wall)} s ({wall / (g * GIB * ctx.factor / 1e9):.3f} s/GB{rss})")
        rows.append(row)
    ctx.results["scale"] = {
        g: {k: (v if isinstance(v, float) else v.wall) for k, v in r.items()}
        for g, r in per.items()
    }
    head = ["operation", *(f"{g} GiB" for g in per)]
    note = f"\n\nLeft out for lack of disk: {', '.join(skipped)}." if skipped else ""
    return (
        "8 shards in every size, from the fast hub (uncapped); one run of each operation, in "
        "this order, at each size: the first sync (fresh store, no lock), a no-op sync, "
        "verify, verify --fast, `rm -rf` of the workspace then sync from the store, the two "
        "hash floors over the workspace files, `hf download` into a fresh dir; at the largest "
        "size, `mlxk bundle` to a tar and `mlxk import` of it into a fresh store. Each cell: "
        "wall, time per GB, peak RSS.\n\n" + base.table(head, rows) + note
    )


# --------------------------------------------------------------------------- main
SECTIONS = ("link", "xfs", "capped", "verify", "scale")


def summary(ctx: base.Ctx) -> str:
    r, rows = ctx.results, []
    checks = [
        ("link", "ratio", "default sync / hf download, 1 GiB, ext4", 1.05),
        ("link", "disk", "workspace + store / model bytes, ext4", 1.05),
        ("xfs", "ratio", "default sync / hf download, 1 GiB, XFS (reflinks)", 1.05),
        ("capped", "ratio", "sync / hf download, one 1 GiB file, capped connections", 0.35),
        ("verify", "ratio", "full verify 1 GiB / 2 hashlib threads", 1.2),
        ("verify", "ratio_mapped", "full verify 1 GiB / 2 hashlib threads, mapped windows", 1.2),
    ]
    for sec, key, what, target in checks:
        if sec in r:
            x = r[sec][key]
            rows.append([what, f"≤ {target}", f"{x:.3f}", "**yes**" if x <= target else "**no**"])
    return base.table(["figure", "target", "measured", "met"], rows, "lllr")


def run_sections(ctx: base.Ctx, args) -> dict[str, str]:
    out = {}
    for s in [s for s in SECTIONS if s in args.only.split(",")]:
        log(f"section {s} …")
        t0, c0 = time.perf_counter(), base.cpu_sample()
        if s == "link":
            text = bench_link(ctx, args.runs)
        elif s == "xfs":
            text = bench_xfs(ctx, args.runs)
        elif s == "capped":
            text = bench_capped(ctx, max(2, args.runs // 2), args.rate)
        elif s == "verify":
            text = bench_verify(ctx, args.runs)
        else:
            text = bench_scale(ctx, [int(x) for x in args.sizes.split(",")])
        load = base.foreign_load(c0, base.cpu_sample())
        dt = time.perf_counter() - t0
        out[s] = f"{text}\n\n*Section wall time {dt:.0f} s; other processes used {load:.0%} of "
        out[s] += "the CPUs meanwhile (/proc/stat).*"
        print(f"\n### {s}\n\n{out[s]}\n", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, help="parent of the temporary directory")
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    ap.add_argument("--rate", type=int, default=DEFAULT_RATE, help="capped: bytes/s per conn.")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)), help="scale: GiB, 8 shards")
    ap.add_argument("--runs", type=int, default=5, help="runs of each tool in a pair")
    ap.add_argument("--small", action="store_true", help="sizes / 16: a smoke test")
    ap.add_argument("--mlxk", default=None)
    ap.add_argument("--hf", default=None)
    ap.add_argument("--output", type=Path, help="also write the Markdown report here")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda s, f: (_ for _ in ()).throw(KeyboardInterrupt()))
    # bytecode as an installed mlxk has it (PYTHONDONTWRITEBYTECODE would compile every run)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(base.REPO_ROOT / "mlxk")])
    tmp = Path(tempfile.mkdtemp(prefix="mlxk-scale-", dir=args.workdir))
    hub = fasthub.FastHub().start()
    mlxk = args.mlxk or base.shared.tool_path("mlxk")
    ctx = base.Ctx(
        tmp, hub, mlxk, args.hf or base.shared.tool_path("hf"), 1 / 16 if args.small else 1
    )
    try:
        t0 = time.perf_counter()
        sections = run_sections(ctx, args)
        out = ["## Issue 15: bytes written once, ranged downloads, scale", "", "```bash"]
        out += [shlex.join(["python", "benchmarks/scale.py", *(argv or sys.argv[1:])]), "```"]
        out += ["", "### Machine", "", *base.machine(ctx)]
        out += [f"- total {(time.perf_counter() - t0) / 60:.1f} min", "", "### Targets", ""]
        out += [summary(ctx), ""]
        for s, text in sections.items():
            out += [f"### {s}", "", text, ""]
        return base.finish_report([*out, "### Commands", ""], ctx, args.output, ":")
    finally:
        hub.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; temp dirs removed", file=sys.stderr)
        sys.exit(130)
