"""The `mlxk` command: parse → call the library → render → exit code. Nothing else lives here."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import click

from . import __version__, interrupt
from .errors import EXIT_CHANGES, EXIT_OK, EXIT_SOURCE, EXIT_USER, MlxkError, UserError
from .settings import Settings

ALL = ":all:"
SCHEMA_URL = "https://mlxk.invalid/schemas/manifest-v1.json"
JSON_HELP = "Print one JSON envelope {status, command, data, error} on stdout."


class Outcome:
    """What a command hands back to the runner."""

    def __init__(self, data, text: str, exit_code: int = EXIT_OK, status: str = "ok"):
        self.data, self.text, self.exit_code, self.status = data, text, exit_code, status


def complete_workspace(ctx, param, incomplete: str):
    """Shell completion: workspace names from the manifest (-f, or ./models.yaml)."""
    from click.shell_completion import CompletionItem

    try:
        from .manifest import load_manifest

        names = sorted(load_manifest(ctx.params.get("file")).workspaces)
    except Exception:  # completion must never fail loudly
        return []
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def _fail(command: str, json_mode: bool, err: MlxkError) -> None:
    from .output import emit_json, envelope

    if json_mode:
        emit_json(envelope(command, "error", None, err))
    else:
        click.echo(f"error: {err.message}", err=True)
        if err.hint:
            click.echo(f"hint: {err.hint}", err=True)
    sys.exit(err.exit_code)


def command(name: str):
    """Wrap a command body: common options, one UI, errors → message + exit code."""

    def decorate(fn):
        @click.option("--json", "json_mode", is_flag=True, help=JSON_HELP)
        @click.option(
            "-f",
            "--file",
            "file",
            type=click.Path(dir_okay=False),
            help="The manifest (default: ./models.yaml).",
        )
        @functools.wraps(fn)
        def run(json_mode: bool, file, **kwargs):
            from .output import UI, emit_json, envelope

            ui = UI(json_mode=json_mode)
            try:
                outcome = fn(ui=ui, file=file, **kwargs)
            except MlxkError as e:
                ui.close()
                _fail(name, json_mode, e)
            except (KeyboardInterrupt, interrupt.Stopped):
                ui.close()
                click.echo("interrupted; the previous workspaces are unchanged", err=True)
                sys.exit(interrupt.exit_code())
            except Exception as e:  # a bug: one line, never a traceback unless asked
                ui.close()
                if Settings.from_env().debug:
                    raise
                _fail(
                    name,
                    json_mode,
                    MlxkError(
                        f"internal error: {type(e).__name__}: {e}",
                        hint="set MLXK_DEBUG=1 for a traceback and report it",
                    ),
                )
            ui.close()
            if json_mode:
                emit_json(envelope(name, outcome.status, outcome.data))
            elif outcome.text:
                click.echo(outcome.text)
            sys.exit(outcome.exit_code)

        return run

    return decorate


def _project(file, ui, jobs=None, offline=False):
    from .project import DEFAULT_JOBS, Project

    if jobs is not None and jobs < 1:
        raise UserError("--jobs must be at least 1")
    return Project.load(file, ui=ui, jobs=jobs or DEFAULT_JOBS, offline=offline)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlxk")
def cli():
    """mlxk: declarative MLX model workspaces, pinned by a lockfile.

    \b
    models.yaml --lock--> mlxk.lock --sync--> workspaces on disk --verify--> exit 0/1
    \b
    Exit codes: 0 ok; 1 changes (plan) or drift (verify); 2 user error (bad manifest or
    arguments, stale lock with --locked); 3 source or environment error (hub, hash, disk).
    """


@cli.command("lock")
@click.option(
    "--upgrade",
    "upgrade",
    is_flag=False,
    flag_value=ALL,
    default=None,
    multiple=True,
    metavar="[NAME]",
    shell_complete=complete_workspace,
    help="Re-resolve revisions: all workspaces, or only NAME (repeatable).",
)
@click.option("--jobs", "-j", type=int, default=None, help="Parallel file fetches.")
@click.option(
    "--check",
    is_flag=True,
    help="Only check: exit 0 if mlxk.lock is up to date with the manifest, 1 if stale. "
    "Needs no network.",
)
@click.option(
    "--refresh",
    is_flag=True,
    help="With --check: also ask the hub whether a branch or tag moved (exit 1 if so).",
)
@command("lock")
def lock_cmd(ui, file, upgrade, jobs, check, refresh):
    """Resolve models.yaml into mlxk.lock (commits, sizes, sha256 of every file).

    Existing pins are kept unless the workspace changed in the manifest or an upgrade is asked.
    """
    from .output import render_lock

    if refresh and not check:
        raise UserError("--refresh goes with --check")
    project = _project(file, ui, jobs)
    if check:
        result = project.check_lock(refresh=refresh)
        code = EXIT_OK if result["fresh"] else EXIT_CHANGES
        text = (
            "mlxk.lock is up to date."
            if result["fresh"]
            else ("mlxk.lock is stale:\n" + "\n".join(f"  {r}" for r in result["reasons"]))
        )
        return Outcome(result, text, code, "ok" if result["fresh"] else "changes")
    how = True if ALL in upgrade else (frozenset(upgrade) if upgrade else False)
    result = project.lock(upgrade=how)
    return Outcome(result.to_dict(), render_lock(result))


@cli.command("plan")
@click.option("--prune", is_flag=True, help="Also plan removing workspaces not in the lock.")
@command("plan")
def plan_cmd(ui, file, prune):
    """Show what sync would do, per workspace and file. Exit 0: nothing to do; 1: changes."""
    from .output import render_plan

    project = _project(file, ui)
    lock, _ = project.current_lock(locked=True, purpose="plan")
    plan = project.plan(lock, prune=prune)
    if plan.blocked:  # sync would refuse: say so the same way (exit 2)
        raise UserError("; ".join(f"{w.name}: {w.reason}" for w in plan.blocked))
    code = EXIT_CHANGES if plan.has_changes else EXIT_OK
    return Outcome(plan.to_dict(), render_plan(plan), code, "changes" if code else "ok")


@cli.command("sync")
@click.option("--locked", is_flag=True, help="Fail (exit 2) if the lock is missing or stale.")
@click.option("--frozen", is_flag=True, help="Use the lock as is; never resolve.")
@click.option("--offline", is_flag=True, help="No network: only the store (and bundles).")
@click.option("--prune", is_flag=True, help="Remove managed workspaces that are not in the lock.")
@click.option("--jobs", "-j", type=int, default=None, help="Parallel downloads (default 4).")
@click.option(
    "--link",
    type=click.Choice(["copy", "hardlink"]),
    default="copy",
    help="How files come from the store: copy (reflink where possible) or hardlink.",
)
@click.option(
    "--from",
    "from_bundle",
    type=click.Path(exists=True),
    default=None,
    metavar="BUNDLE",
    help="Import BUNDLE first (every blob checked into the store), then sync.",
)
@click.option(
    "--rebuild",
    "rebuild",
    multiple=True,
    metavar="NAME",
    shell_complete=complete_workspace,
    help="Rebuild NAME's steps from scratch and check every output is byte-identical "
    "to the lock (exit 3 if not).",
)
@command("sync")
def sync_cmd(ui, file, locked, frozen, offline, prune, jobs, link, from_bundle, rebuild):
    """Make the workspaces on disk match the lock (locking first if it is missing or stale)."""
    from .output import render_sync

    if from_bundle:
        from .project import import_bundle

        _, dest = import_bundle(from_bundle, file, force=True, ui=ui)
        file = str(dest)
    project = _project(file, ui, jobs, offline=offline)
    report = project.sync(locked=locked, frozen=frozen, prune=prune, link=link, rebuild=rebuild)
    return Outcome(report.to_dict(), render_sync(report))


@cli.command("verify")
@click.option(
    "--workspace",
    "-w",
    "names",
    multiple=True,
    metavar="NAME",
    shell_complete=complete_workspace,
    help="Verify only this workspace (repeatable).",
)
@click.option("--jobs", "-j", type=int, default=None, help="Parallel hashing threads.")
@click.option(
    "--fast",
    is_flag=True,
    help="Trust the stat-keyed hash cache for files unchanged since they were last hashed "
    "(fast; plain verify rehashes every byte and is what CI should run).",
)
@click.option(
    "--bundle",
    "bundle",
    type=click.Path(exists=True),
    default=None,
    help="Verify a bundle instead: every blob hashed against the bundle's own lock.",
)
@command("verify")
def verify_cmd(ui, file, names, jobs, fast, bundle):
    """Read-only: rehash every file and compare with the lock. Exit 0: match; 1: drift.

    Plain verify always rehashes every byte (CI should not trust a cache). It never changes
    anything: a tampered file is reported, not repaired.
    """
    from .output import render_bundle, render_verify

    if bundle:
        from .bundle import verify_bundle

        report = verify_bundle(bundle)
        code = EXIT_OK if report.ok else EXIT_CHANGES
        status = "ok" if report.ok else "drift"
        return Outcome(report.to_dict(), render_bundle(report, "verified"), code, status)
    project = _project(file, ui, jobs)
    result = project.verify(list(names) or None, fast=fast)
    code = EXIT_OK if result.ok else EXIT_CHANGES
    return Outcome(result.to_dict(), render_verify(result), code, "ok" if result.ok else "drift")


@cli.command("bundle")
@click.argument("out", type=click.Path())
@command("bundle")
def bundle_cmd(ui, file, out):
    """Write the manifest, the lock and every blob it names to OUT: a directory, or one .tar
    when OUT ends in .tar. Carry it across the air gap and `mlxk import` it there."""
    from .output import render_bundle

    report = _project(file, ui).bundle(out)
    return Outcome(report.to_dict(), render_bundle(report, "wrote"))


@cli.command("import")
@click.argument("bundle", type=click.Path(exists=True))
@click.option("--force", is_flag=True, help="Replace a different manifest or lock.")
@command("import")
def import_cmd(ui, file, bundle, force):
    """Check every blob of BUNDLE into the store (refusing a bundle that does not match its
    lock), then write its manifest and lock here. Then: mlxk sync --offline --frozen."""
    from .output import render_bundle
    from .project import import_bundle

    report, dest = import_bundle(bundle, file, force=force, ui=ui)
    data = {**report.to_dict(), "manifest": dest.name}
    text = render_bundle(report, "imported") + f"\nWrote {dest.name} and mlxk.lock"
    return Outcome(data, text)


def _maybe_project(file, ui):
    """The project when there is a manifest (-f, or ./models.yaml), else None."""
    from pathlib import Path

    if file or (Path.cwd() / "models.yaml").is_file():
        return _project(file, ui)
    return None


def _readonly_cache(project):
    """The hash cache, read-only: list and show never write a file."""
    from .hashcache import HashCache
    from .project import Project

    store = project.store if project else Project.default_store(Settings.from_env())
    return HashCache(store.root / "hashcache.sqlite", readonly=True)


def _ws_home():
    return Settings.from_env().workspace_home


@cli.command("clone")
@click.argument("ref", metavar="ORG/REPO[@REV]")
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.option("--include", multiple=True, metavar="GLOB", help="Only files matching (repeatable).")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip files matching (repeatable).")
@click.option("--add", is_flag=True, help="Also add it to models.yaml and lock it.")
@click.option("--jobs", "-j", type=int, default=None, help="Parallel downloads (default 4).")
@command("clone")
def clone_cmd(ui, file, ref, directory, include, exclude, add, jobs):
    """Download one repo at a pinned commit into DIRECTORY (default
    $MLXK_WORKSPACE_HOME/<name>): real files, no symlinks, nothing in the HF cache; a
    complete workspace or nothing. Refuses a non-empty DIRECTORY."""
    from .clone import clone, parse_ref
    from .project import DEFAULT_JOBS

    if add:
        from .edit import add_workspace

        project = _project(file, ui, jobs)
        repo, revision = parse_ref(ref)
        name = Path(directory).name if directory else repo.split("/")[-1]
        if directory and Path(directory).resolve() != project.workspace_path(name):
            raise UserError(
                "clone --add: the workspace goes under the manifest's home; "
                "give no DIRECTORY (or home/NAME)"
            )
        entry = {"source": f"hf://{repo}@{revision}"}
        if include:
            entry["include"] = list(include)
        if exclude:
            entry["exclude"] = list(exclude)
        add_workspace(project.manifest.path, name, entry)
        project = _project(file, ui, jobs)
        report = project.sync()
        ws = report.plan.workspaces
        data = {"added": name, "sync": report.to_dict()}
        return Outcome(
            data, f"added {name} to {project.manifest.path.name}; {len(ws)} workspace(s) in sync"
        )
    from .project import Project

    store = Project.default_store()
    result = clone(
        ref,
        Path(directory) if directory else None,
        store,
        include,
        exclude,
        jobs or DEFAULT_JOBS,
        ui=ui,
    )
    text = (
        f"cloned hf://{result.repo}@{result.revision} ({result.commit[:12]}) into "
        f"{result.path}: {result.files} files, {result.bytes} bytes\n"
        f"content hash {result.content_hash}"
    )
    return Outcome(result.to_dict(), text)


@cli.command("list")
@click.option("--full-paths", is_flag=True, help="Show full paths instead of names.")
@command("list")
def list_cmd(ui, file, full_paths):
    """Every workspace in the manifest and under $MLXK_WORKSPACE_HOME: origin, size, type and
    state (clean / modified / missing / unlocked). Read-only."""
    from .inventory import inspect, targets
    from .output import render_list

    project = _maybe_project(file, ui)
    cache = _readonly_cache(project)
    infos = [
        inspect(path, name, source, locked, cache=cache)
        for name, path, source, locked in targets(project, _ws_home())
    ]
    data = {"workspaces": [i.to_dict(full_paths=True) for i in infos]}
    return Outcome(data, render_list(infos, full_paths))


@cli.command("show")
@click.argument("target", metavar="NAME|PATH", shell_complete=complete_workspace)
@click.option("--files", "with_files", is_flag=True, help="Also the per-file table.")
@command("show")
def show_cmd(ui, file, target, with_files):
    """A workspace's metadata: source, operation, commit, content hash, modified yes/no,
    steps and their fingerprints, runtime captures. Read-only."""
    from .inventory import find, inspect
    from .output import render_show

    project = _maybe_project(file, ui)
    name, path, source, locked = find(target, project, _ws_home())
    info = inspect(
        path, name, source, locked, with_files=with_files, cache=_readonly_cache(project)
    )
    return Outcome(info.to_dict(with_files=with_files), render_show(info, with_files))


@cli.command("health")
@click.argument("target", metavar="[NAME|PATH]", required=False, shell_complete=complete_workspace)
@click.option(
    "--verbose",
    "-v",
    is_flag=True,
    help="Also list each workspace's .hf_cache repos, and whether runtime: declares them.",
)
@command("health")
def health_cmd(ui, file, target, verbose):
    """Check workspaces are usable without loading them: config, shards, safetensors headers,
    tokenizer, no pickle weights. Exit 1 with the problems."""
    import dataclasses

    from .health import cache_listing, check_workspace
    from .inventory import find, targets
    from .output import render_health

    project = _maybe_project(file, ui)
    chosen = [find(target, project, _ws_home())] if target else targets(project, _ws_home())
    reports = []
    for name, path, source, _ in chosen:
        spec = project.manifest.workspaces.get(name) if project and source == "manifest" else None
        report = check_workspace(path, allow_pickle=bool(spec and spec.allow_pickle))
        if verbose:
            report = dataclasses.replace(report, hf_cache=cache_listing(Path(path)))
        reports.append((name, report))
    ok = all(r.ok for _, r in reports)
    data = {"ok": ok, "workspaces": [{"name": n, **r.to_dict()} for n, r in reports]}
    code = EXIT_OK if ok else EXIT_CHANGES
    return Outcome(data, render_health(reports), code, "ok" if ok else "drift")


@cli.command("validate")
@command("validate")
def validate_cmd(ui, file):
    """Check the manifest against its schema (file:line:column errors, exit 2); no lock needed."""
    project = _project(file, ui)
    m = project.manifest
    data = {"manifest": m.path.name, "workspaces": sorted(m.workspaces), "digest": m.digest()}
    return Outcome(data, f"{m.path.name}: valid, {len(m.workspaces)} workspace(s).")


@cli.command("schema")
@click.argument("which", type=click.Choice(["manifest", "json-output"]))
@command("schema")
def schema_cmd(ui, file, which):
    """Print a JSON Schema: the manifest's (for editors) or that of --json output."""
    import json

    from .manifest import manifest_schema
    from .output import output_schema

    schema = manifest_schema() if which == "manifest" else output_schema()
    return Outcome(schema, json.dumps(schema, indent=2))


@cli.command("init")
@command("init")
def init_cmd(ui, file):
    """Write a commented starter models.yaml here (never overwrites)."""
    from .edit import init_manifest

    path = Path(file or "models.yaml").resolve()
    init_manifest(path, SCHEMA_URL)
    return Outcome({"manifest": str(path)}, f"wrote {path.name}; next: mlxk add hf://org/repo")


@cli.command("add")
@click.argument("ref", metavar="hf://ORG/REPO[@REV] | path:DIR")
@click.option("--name", help="Workspace name (default: the repo's name).")
@click.option(
    "--quantize",
    type=click.Choice(["2", "3", "4", "5", "6", "8"]),
    default=None,
    help="Add a convert step quantizing to this many bits.",
)
@click.option("--group-size", type=click.Choice(["32", "64", "128"]), default=None)
@click.option("--include", multiple=True, metavar="GLOB")
@click.option("--exclude", multiple=True, metavar="GLOB")
@command("add")
def add_cmd(ui, file, ref, name, quantize, group_size, include, exclude):
    """Add a workspace to models.yaml, keeping the file's comments and order."""
    from .edit import add_workspace
    from .manifest import find_manifest

    if not ref.startswith(("hf://", "path:")):
        ref = "hf://" + ref
    if ref.startswith("hf://"):
        from .clone import parse_ref

        repo, revision = parse_ref(ref)
        ref = f"hf://{repo}@{revision}" if "@" in ref else f"hf://{repo}"
    elif ref == "path:":
        raise UserError("add: path: needs a directory, e.g. path:../train/out")
    name = name or ref.split("@")[0].rstrip("/").split("/")[-1].removeprefix("path:")
    entry: dict = {"source": ref}
    if include:
        entry["include"] = list(include)
    if exclude:
        entry["exclude"] = list(exclude)
    if quantize:
        q = {"bits": int(quantize)}
        if group_size:
            q["group_size"] = int(group_size)
        entry["steps"] = [{"convert": {"quantize": q}}]
    path = find_manifest(file)
    add_workspace(path, name, entry)
    return Outcome(
        {"manifest": str(path), "added": name}, f"added {name} to {path.name}; next: mlxk lock"
    )


@cli.command("gc")
@click.argument("locks", nargs=-1, type=click.Path(dir_okay=False), metavar="[LOCK]...")
@click.option(
    "--only",
    "only",
    multiple=True,
    type=click.Path(dir_okay=False),
    metavar="LOCK",
    help="Keep only the blobs of these locks (not every lock the store records).",
)
@click.option("--dry-run", is_flag=True, help="Only report what would be removed.")
@click.option(
    "--grace",
    type=click.FloatRange(0),
    default=3600,
    show_default=True,
    help="Keep blobs younger than this many seconds (a sync may be using them).",
)
@command("gc")
def gc_cmd(ui, file, locks, only, dry_run, grace):
    """Remove store blobs that no lock using the store names (every project that locked or
    synced from it, this one and any LOCK given), and report the bytes freed. Workspaces keep
    their own copies (or hardlinks)."""
    from .gc import collect, read_locks, store_locks
    from .output import human_size
    from .project import Project

    project = _maybe_project(file, ui) if (locks or only) else _project(file, ui)
    store = project.store if project else Project.default_store()
    if only:
        chosen, forgotten = read_locks(only), []
    else:
        chosen, forgotten = store_locks(store, dry_run=dry_run)
        chosen.update(read_locks(locks))
        if project and not locks:
            lock = project.current_lock(frozen=True, purpose="gc")[0]
            chosen[str(project.lock_path)] = lock
    report = collect(store, chosen, dry_run=dry_run, grace=grace)
    report.forgotten = forgotten
    verb = "would free" if dry_run else "freed"
    text = (
        f"{verb} {human_size(report.freed_bytes)} ({report.removed} blobs); kept "
        f"{report.kept + report.young} blobs, {human_size(report.kept_bytes)}, for "
        f"{len(chosen)} lock(s)"
        + (f" ({report.young} unreferenced but younger than {grace:g} s)" if report.young else "")
    )
    for f in forgotten:
        text += f"\nforgot {f['lock']}: {f['reason']}"
    return Outcome(report.to_dict(), text)


@cli.command(
    "capture", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False}
)
@click.argument("name", shell_complete=complete_workspace)
@click.argument("argv", nargs=-1, type=click.UNPROCESSED, metavar="-- COMMAND [ARGS]...")
@command("capture")
def capture_cmd(ui, file, name, argv):
    """Run COMMAND once online, with HF_HOME=<workspace>/.hf_cache (a fresh copy of it), and
    record every hub repo it downloaded as a runtime: entry of NAME in models.yaml, pinned to
    the revision the loader asked for and the commit it got; relock, check every captured
    byte against the hub, and place the captures from the store. A failing COMMAND passes on
    its exit code and changes nothing."""
    from .capture import capture_command
    from .output import render_capture

    argv = list(argv)[1:] if argv and argv[0] == "--" else list(argv)
    result = capture_command(_project(file, ui), name, argv, ui=ui, json_mode=ui.json_mode)
    return Outcome(result.to_dict(), render_capture(result))


@cli.command("run")
@click.argument("name", shell_complete=complete_workspace)
@click.argument("prompt", required=False, default=None)
@click.option(
    "--image",
    "images",
    multiple=True,
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="An image for a vision model (repeatable).",
)
@click.option(
    "--audio", type=click.Path(dir_okay=False), metavar="FILE", help="Audio to transcribe."
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Where a text-to-speech model writes its WAV.",
)
@click.option("--max-tokens", type=click.IntRange(1, 100_000), default=32, show_default=True)
@click.option("--temp", type=click.FloatRange(0.0, 10.0), default=0.0, show_default=True)
@click.option("--seed", type=int, default=None, help="Random seed for sampling.")
@click.option(
    "--capture",
    is_flag=True,
    help="Run online instead, and record every hub repo the model downloads under the "
    "workspace's runtime: (as `mlxk capture NAME -- mlxk run NAME ...`).",
)
@command("run")
def run_cmd(ui, file, name, prompt, images, audio, output, max_tokens, temp, seed, capture):
    """Run a synced workspace's model by its kind, with the network off (HF_HUB_OFFLINE=1,
    HF_HOME=<workspace>/.hf_cache): text and vision print the generated text, speech to
    text the transcript; text to speech writes a WAV (--output)."""
    from .output import render_run

    project = _project(file, ui)
    inputs = {"prompt": prompt, "images": list(images), "audio": audio, "output": output}
    options = {"max_tokens": max_tokens, "temp": temp, "seed": seed}
    request = project.run_request(name, options, **inputs)
    if capture:
        from .capture import capture_run
        from .output import render_capture

        result = capture_run(project, request, ui=ui)
        return Outcome(result.to_dict(), render_capture(result))
    out = project.run(request)
    return Outcome(out, render_run(out))


def main() -> None:
    interrupt.install()
    try:
        _main()
    except SystemExit as e:
        if interrupt.received() is None:
            raise
        # Interrupted: leave now. Fetch threads stop at their next chunk, but a thread blocked
        # on a silent socket must not hold the exit (Python joins its threads at exit).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(e.code if isinstance(e.code, int) else interrupt.exit_code())


def _main() -> None:
    try:
        cli(standalone_mode=False, prog_name="mlxk")
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        if "--json" in sys.argv[1:]:  # --json promises an envelope, even for bad arguments
            from .output import emit_json, envelope

            name = next((a for a in sys.argv[1:] if a in cli.commands), "mlxk")
            emit_json(
                envelope(
                    name,
                    "error",
                    None,
                    UserError(f"usage: {e.format_message()}", hint=f"mlxk {name} --help"),
                )
            )
        else:
            e.show()
        sys.exit(EXIT_USER)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        sys.exit(interrupt.exit_code())
    except OSError as e:  # e.g. a closed stdout pipe
        sys.exit(EXIT_SOURCE if e.errno else EXIT_USER)
    sys.exit(EXIT_OK)


if __name__ == "__main__":
    main()
