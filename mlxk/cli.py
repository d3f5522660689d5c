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
            "-q", "--quiet", is_flag=True, help="Print nothing on stdout on success (errors still)."
        )
        @click.option(
            "-f",
            "--file",
            "file",
            type=click.Path(dir_okay=False),
            help="The manifest (default: ./models.yaml).",
        )
        @functools.wraps(fn)
        def run(json_mode: bool, quiet: bool, file, **kwargs):
            from .output import UI, emit_json, envelope

            ui = UI(json_mode=json_mode, quiet=quiet)
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
                if Settings.from_env().debug:  # the traceback, whatever the error's type
                    import traceback

                    traceback.print_exc()
                    sys.exit(EXIT_SOURCE)
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
            elif outcome.text and not (quiet and outcome.exit_code == EXIT_OK):
                click.echo(outcome.text)
            sys.exit(outcome.exit_code)

        return run

    return decorate


def _project(file, ui, jobs=None, offline=False, use_remote=True):
    from .project import DEFAULT_JOBS, Project

    if jobs is not None and jobs < 1:
        raise UserError("--jobs must be at least 1")
    return Project.load(
        file, ui=ui, jobs=jobs or DEFAULT_JOBS, offline=offline, use_remote=use_remote
    )


def allowed_signers_option(lead: str):
    """--allowed-signers FILE, as sync --from, verify --bundle and import take it; `lead`
    starts its help ("Refuse", or "With --bundle: refuse")."""
    return click.option(
        "--allowed-signers",
        "allowed_signers",
        type=click.Path(),
        default=None,
        metavar="FILE",
        help=f"{lead} (exit 3) a bundle not signed by a key in FILE (default "
        "$MLXK_ALLOWED_SIGNERS, else the manifest's allowed_signers).",
    )


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
    help="With --check: also ask the hub (or registry) whether a branch or tag moved (exit 1 if "
    "so).",
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
@click.option(
    "--offline",
    is_flag=True,
    help="Never ask the sources (hub, registries named by oci:// sources): only the store, "
    "bundles and the remote registry (MLXK_REMOTE / remote:).",
)
@click.option(
    "--no-remote",
    "no_remote",
    is_flag=True,
    help="Leave the remote registry out (with --offline: no network at all).",
)
@click.option("--prune", is_flag=True, help="Remove managed workspaces that are not in the lock.")
@click.option("--jobs", "-j", type=int, default=None, help="Parallel downloads (default 4).")
@click.option(
    "--link",
    type=click.Choice(["auto", "copy", "hardlink"]),
    default=None,
    help="How files come from the store: auto (a reflink where the filesystem can, else a "
    "hardlink to the read-only blob), copy (writable files; a reflink where possible) or "
    "hardlink. Default: $MLXK_LINK, else the manifest's link, else auto.",
)
@click.option(
    "--from",
    "from_bundle",
    type=click.Path(exists=True),
    default=None,
    metavar="BUNDLE",
    help="Import BUNDLE first (only the blobs the local lock names, each checked; with no "
    "manifest and lock here, the bundle's), then sync.",
)
@click.option(
    "--force",
    is_flag=True,
    help="With --from: let the bundle's manifest and lock replace the ones here.",
)
@allowed_signers_option("With --from: refuse")
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
def sync_cmd(
    ui,
    file,
    locked,
    frozen,
    offline,
    no_remote,
    prune,
    jobs,
    link,
    from_bundle,
    force,
    allowed_signers,
    rebuild,
):
    """Make the workspaces on disk match the lock (locking first if it is missing or stale)."""
    from .importing import sync_from
    from .output import render_import, render_sync

    if jobs is not None and jobs < 1:
        raise UserError("--jobs must be at least 1")
    options = dict(locked=locked, frozen=frozen, prune=prune, link=link, rebuild=rebuild)
    imported, report = sync_from(
        from_bundle, file, ui, jobs, offline, force, allowed_signers, not no_remote, **options
    )
    data, text = report.to_dict(), render_sync(report)
    if imported:
        data["import"] = imported.to_dict()
        text = render_import(imported) + "\n" + text
    return Outcome(data, text)


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
    help="Verify a bundle instead: every blob hashed against the bundle's own lock, its "
    "signature shown, and (next to a lock) whether it carries every blob that lock needs.",
)
@allowed_signers_option("With --bundle: refuse")
@click.option("--locked", is_flag=True, help="Fail (exit 2) if the lock is stale.")
@command("verify")
def verify_cmd(ui, file, names, jobs, fast, bundle, allowed_signers, locked):
    """Read-only: rehash every file and compare with the lock. Exit 0: match; 1: drift.

    Plain verify always rehashes every byte (CI should not trust a cache). It never changes
    anything: a tampered file is reported, not repaired.
    """
    from .output import render_bundle, render_verify

    if bundle:
        from .bundle import verify_bundle
        from .importing import signers_file

        project = _maybe_project(file, ui)
        manifest = project.manifest if project else None
        trusted = signers_file(allowed_signers, Settings.from_env(), manifest)
        lock = project.read_lock() if project else None
        local = (project.shown(project.lock_path), lock) if lock else None
        report = verify_bundle(bundle, trusted, local)
        code = EXIT_OK if report.ok else EXIT_CHANGES
        status = "ok" if report.ok else "drift"
        return Outcome(report.to_dict(), render_bundle(report, "verified"), code, status)
    if allowed_signers:
        raise UserError("--allowed-signers goes with --bundle")
    project = _project(file, ui, jobs)
    result = project.verify(list(names) or None, fast=fast, locked=locked)
    code = EXIT_OK if result.ok else EXIT_CHANGES
    return Outcome(result.to_dict(), render_verify(result), code, "ok" if result.ok else "drift")


@cli.command("bundle")
@click.argument("out", type=click.Path())
@click.option("--locked", is_flag=True, help="Fail (exit 2) if the lock is missing or stale.")
@click.option("--frozen", is_flag=True, help="Ship the lock as it is; never resolve.")
@click.option(
    "--sign",
    "sign",
    type=click.Path(),
    default=None,
    metavar="KEY",
    help="Sign the bundle's lock, manifest and index with this SSH key (ssh-keygen -Y sign "
    "-n mlxk): a private key, or a .pub whose private key is in ssh-agent.",
)
@command("bundle")
def bundle_cmd(ui, file, out, locked, frozen, sign):
    """Write the manifest, the lock and every blob it names to OUT: a directory, or one .tar
    when OUT ends in .tar. Carry it across the air gap and `mlxk import` it there."""
    from .output import render_bundle

    interactive = ui.interactive and sys.stdin.isatty()  # else a passphrase is never asked
    report = _project(file, ui).bundle(
        out, locked=locked, frozen=frozen, sign=sign, interactive=interactive
    )
    return Outcome(report.to_dict(), render_bundle(report, "wrote"))


@cli.command("push")
@click.argument("names", nargs=-1, metavar="[NAME]...", shell_complete=complete_workspace)
@click.option(
    "--to",
    "to",
    metavar="oci://HOST[:PORT]/PREFIX",
    default=None,
    help="The registry prefix; workspace NAME goes to PREFIX/NAME (default: $MLXK_REMOTE, "
    "else the manifest's remote:).",
)
@click.option(
    "--tag",
    "tags",
    multiple=True,
    metavar="TAG",
    help="Also tag the artifact TAG (repeatable); it always gets sha256-<content hash>.",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(min=4096),
    default=None,
    metavar="BYTES",
    help="Upload blobs larger than this in chunks of it (default 16 MiB).",
)
@click.option("--jobs", "-j", type=int, default=None, help="Parallel fetches of missing blobs.")
@command("push")
def push_cmd(ui, file, names, to, tags, chunk_size, jobs):
    """Push workspaces of the lock (default: all) to an OCI registry, each a ModelPack
    artifact at PREFIX/NAME; prints each manifest digest. Blobs the registry has are not sent."""
    from .output import render_push
    from .push import push

    project = _project(file, ui, jobs)
    report = push(project, names, to=to, tags=tags, chunk_size=chunk_size)
    return Outcome(report.to_dict(), render_push(report))


@cli.command("import")
@click.argument("bundle", type=click.Path(exists=True))
@click.option(
    "--force",
    is_flag=True,
    help="Let the bundle's manifest and lock replace the ones here (shows what changes).",
)
@allowed_signers_option("Refuse")
@command("import")
def import_cmd(ui, file, bundle, force, allowed_signers):
    """Check blobs of BUNDLE into the store, each against its lock. With a manifest and lock
    here, the local lock decides: only the blobs it names are taken and neither file changes.
    With none here (or --force), the bundle's manifest and lock are written. Then: mlxk sync
    --offline --frozen."""
    from .importing import import_bundle
    from .output import render_import

    result = import_bundle(bundle, file, force, ui, allowed_signers)
    return Outcome(result.to_dict(), render_import(result))


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
@click.option(
    "--link",
    type=click.Choice(["auto", "copy", "hardlink"]),
    default=None,
    help="How files come from the store: copy (default: writable files of their own, a "
    "reflink where possible), auto or hardlink (read-only files sharing the store's bytes). "
    "With --add, as for sync.",
)
@command("clone")
def clone_cmd(ui, file, ref, directory, include, exclude, add, jobs, link):
    """Download one repo at a pinned commit into DIRECTORY (default
    $MLXK_WORKSPACE_HOME/<name>): real files, no symlinks, nothing in the HF cache; a
    complete workspace or nothing. Refuses a non-empty DIRECTORY."""
    from .clone import clone
    from .edit import clone_add
    from .output import render_clone
    from .project import DEFAULT_JOBS, Project

    if add:
        project = _project(file, ui, jobs)
        result = clone_add(project, ref, directory, include, exclude, link=link)
        text = f"added {result.added} to {project.manifest.path.name}; {result.in_sync}"
        return Outcome(result.to_dict(), text)
    store = Project.default_store()
    store.ensure_usable()
    where = Path(directory) if directory else None
    result = clone(
        ref, where, store, include, exclude, jobs or DEFAULT_JOBS, link=link or "copy", ui=ui
    )
    return Outcome(result.to_dict(), render_clone(result))


@cli.command("list")
@click.option("--full-paths", is_flag=True, help="Show full paths instead of names.")
@command("list")
def list_cmd(ui, file, full_paths):
    """Every workspace in the manifest and under $MLXK_WORKSPACE_HOME: origin, size, type and
    state (clean / modified / missing / unlocked). Read-only."""
    from .inventory import list_workspaces
    from .output import render_list

    project = _maybe_project(file, ui)
    if project is not None:
        project.warn_if_stale(project.read_lock())
    infos = list_workspaces(project, _ws_home(), _readonly_cache(project))
    data = {"workspaces": [i.to_dict(full_paths=True) for i in infos]}
    return Outcome(data, render_list(infos, full_paths))


@cli.command("show")
@click.argument("target", metavar="NAME|PATH", shell_complete=complete_workspace)
@click.option("--files", "with_files", is_flag=True, help="Also the per-file table.")
@command("show")
def show_cmd(ui, file, target, with_files):
    """A workspace's metadata: source, operation, commit, content hash, modified yes/no,
    steps and their fingerprints, runtime captures. Read-only."""
    from .inventory import show_workspace
    from .output import render_show

    project = _maybe_project(file, ui)
    info = show_workspace(target, project, _ws_home(), _readonly_cache(project), with_files)
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
    from .health import check_all
    from .output import render_health

    result = check_all(_maybe_project(file, ui), target, _ws_home(), verbose=verbose)
    code = EXIT_OK if result.ok else EXIT_CHANGES
    return Outcome(
        result.to_dict(), render_health(list(result.reports)), code, "ok" if result.ok else "drift"
    )


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
    from .edit import add
    from .manifest import find_manifest

    path = find_manifest(file)
    result = add(path, ref, name, include, exclude, quantize, group_size)
    return Outcome(result.to_dict(), f"added {result.added} to {path.name}; next: mlxk lock")


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
    from .gc import gc
    from .output import render_gc
    from .project import Project

    project = _maybe_project(file, ui) if (locks or only) else _project(file, ui)
    store = project.store if project else Project.default_store()
    report = gc(project, store, locks, only, dry_run=dry_run, grace=grace)
    return Outcome(report.to_dict(), render_gc(report))


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
