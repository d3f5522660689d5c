"""Hostile input: repos whose file names or bytes attack the disk, and manifests that attack the
parser. Nothing is ever written outside the workspace; every failure is one clear line with its
exit code (2 manifest, 3 source), never a traceback.

Repos are real git repos served by olah. Trees with names git refuses are written with git
plumbing (raw tree objects). olah itself refuses to list a tree holding a '..' or empty name
(GitPython rejects it: HTTP 500), so a hub that lists such names is FaultServer (see
test_hub_faults) rewriting olah's listing. A committed symlink (mode 120000) is listed by olah as
a plain file whose bytes are the link's target text: mlxk handles it safely by writing that text
into a regular file (it never creates a symlink and never reads the target).
"""

from __future__ import annotations

import copy
import hashlib
import os
import subprocess
import time
import zlib
from pathlib import Path

import pytest
import yaml
from huggingface_hub.utils import close_session
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlxk.errors import ManifestError
from mlxk.manifest import parse_manifest
from mlxk.manifest_cache import CACHE_DIR
from tests.hubserver import _GIT_BASE_ENV, unique_repo_id
from tests.support import write_manifest
from tests.test_hub_faults import FaultServer, one_line_error

# ---------------------------------------------------------------- git plumbing


def git(hub, repo: str, *args: str, data: bytes | None = None) -> str:
    res = subprocess.run(
        ["git", *args],
        cwd=hub.repo_dir(repo),
        input=data,
        capture_output=True,
        env={**os.environ, **_GIT_BASE_ENV},
        check=True,
    )
    return res.stdout.decode().strip()


def blob(hub, repo: str, data: bytes) -> str:
    return git(hub, repo, "hash-object", "-w", "--stdin", data=data)


def raw_tree(hub, repo: str, entries) -> str:
    """A tree object from (mode, name, sha) entries, written as is (git would refuse some)."""
    body = b"".join(
        mode.encode() + b" " + name.encode() + b"\0" + bytes.fromhex(sha)
        for mode, name, sha in entries
    )
    return git(hub, repo, "hash-object", "-t", "tree", "-w", "--literally", "--stdin", data=body)


def nested(hub, repo: str, path: str, sha: str, mode: str = "100644"):
    """The top-level entry that holds `path` (split on '/') with blob `sha` at its end."""
    *dirs, name = path.split("/")
    entry = (mode, name, sha)
    for d in reversed(dirs):
        entry = ("40000", d, raw_tree(hub, repo, [entry]))
    return entry


def commit_entries(hub, repo: str, extra) -> str:
    """Commit on main a tree of main's top-level entries plus `extra`; return its sha."""
    entries = []
    for line in git(hub, repo, "ls-tree", "-z", "main").split("\0"):
        if line:
            meta, name = line.split("\t", 1)
            mode, _, sha = meta.split()
            entries.append((mode, name, sha))
    entries += list(extra)
    entries.sort(key=lambda e: e[1] + ("/" if e[0] == "40000" else ""))
    tree = raw_tree(hub, repo, entries)
    parent = git(hub, repo, "rev-parse", "main")
    commit = git(hub, repo, "commit-tree", tree, "-p", parent, "-m", "hostile")
    git(hub, repo, "update-ref", "refs/heads/main", commit)
    return commit


# ---------------------------------------------------------------- the disk, before and after


def snapshot(root: Path, project: Path) -> set[str]:
    """Every path under root except the workspace home and the store (where mlxk may write)."""
    skip = {project / "models", root / "store"}
    out = set()
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if Path(dirpath, d) not in skip]
        out.update(os.path.join(dirpath, n) for n in dirs + files)
    return out


def synced_files(project: Path) -> set[str]:
    """What a successful sync writes beside the manifest: the lock and the manifest cache."""
    cache = project / CACHE_DIR
    written = [project / "mlxk.lock", cache, cache / ".gitignore", cache / "models.yaml.json"]
    return {str(p) for p in written}


def home_leftovers(project: Path) -> list[str]:
    """What a failed sync left under home: nothing at all (not even an empty staging dir)."""
    home = project / "models"
    if not home.exists():
        return []
    return sorted(str(p.relative_to(home)) for p in home.rglob("*"))


@pytest.fixture
def project(tmp_path) -> Path:
    """A project three levels down, so '../../../../../x' from a workspace lands in tmp_path."""
    p = tmp_path / "a" / "b" / "project"
    p.mkdir(parents=True)
    return p


def hf_manifest(project: Path, repo: str) -> str:
    return str(write_manifest(project, f"version: 1\nworkspaces:\n  m:\n    source: hf://{repo}\n"))


def refuse_everywhere(mlxk, tmp_path, project, manifest, name_in_message: str) -> str:
    """lock and sync both fail (exit 3, one line naming the file); nothing written outside."""
    before = snapshot(tmp_path, project)
    message = ""
    for cmd in ("lock", "sync"):
        close_session()  # each run as from a fresh process: no keep-alive socket olah dropped
        message = one_line_error(mlxk(cmd, "-f", manifest, "--json"), name_in_message)
        close_session()
        text = mlxk(cmd, "-f", manifest)
        assert text.exit_code == 3 and "Traceback" not in text.stderr
        assert text.stderr.startswith("error: ") and name_in_message in text.stderr
    assert snapshot(tmp_path, project) == before
    assert home_leftovers(project) == []
    assert not (project / "mlxk.lock").exists()
    return message


# ---------------------------------------------------------------- A. hostile repositories


ESCAPES = [
    "../../x",
    "../../../../../x",  # from <home>/m up to tmp_path
    "a/../../x",
    "./x",
    "a//x",
    "..",
    ".",
    "...",
    "a/.../x",
    "x\\..\\..\\y",
    "x\0y",
    "x\ny",
    "\x1b[31mred",
]


def test_a_hub_listing_escaping_names_is_refused_and_nothing_is_written(
    hub, hf_env, tmp_path, project, mlxk, demo_files, monkeypatch
):
    """A hub (FaultServer rewriting olah's listing) declares README.md under a hostile name and
    would serve README.md's bytes for it."""
    repo = unique_repo_id("hostile")
    hub.create_repo(repo, demo_files)
    server = FaultServer(hub.endpoint)
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    absolute = str(tmp_path / "abs" / "x")
    try:
        for name in [*ESCAPES, absolute]:
            server.rename = {name: "README.md"}
            server.rewrite_tree = lambda entries, name=name: [
                {**e, "path": name} if e["path"] == "README.md" else e for e in entries
            ]
            m = hf_manifest(project, repo)
            msg = refuse_everywhere(mlxk, tmp_path, project, m, repr(name))
            assert "refusing unsafe file name" in msg
            assert not server.requests_for("/resolve/")  # refused before any download
            assert not (tmp_path / "abs").exists() and not (tmp_path / "x").exists()
    finally:
        server.close()


def test_a_tree_with_dot_dot_entries_is_refused_by_olah_and_mlxk_writes_nothing(
    hub, hf_env, tmp_path, project, mlxk, demo_files
):
    repo = unique_repo_id("dotdot")
    hub.create_repo(repo, demo_files)
    evil = blob(hub, repo, b"evil\n")
    commit_entries(hub, repo, [nested(hub, repo, "../../x", evil)])
    m = hf_manifest(project, repo)
    msg = refuse_everywhere(mlxk, tmp_path, project, m, "HTTP 500")
    assert f"hf://{repo}@" in msg  # olah: GitPython "Invalid repository path"


@pytest.mark.parametrize(
    "case",
    [
        "dots-only",
        "dots-only-folder",
        "component-256-bytes",
        "path-over-1024-bytes",
        "newline",
        "file-and-folder",
        "listed-twice",
    ],
)
def test_a_git_tree_with_a_hostile_name_is_refused(
    hub, hf_env, tmp_path, project, mlxk, demo_files, case
):
    repo = unique_repo_id("names")
    hub.create_repo(repo, demo_files)
    evil = blob(hub, repo, b"evil\n")
    long_path = "/".join(["d" * 250] * 5 + ["x"])
    entries, shown = {
        "dots-only": ([("100644", "...", evil)], "'...'"),
        "dots-only-folder": ([nested(hub, repo, "..../x", evil)], "'..../x'"),
        "component-256-bytes": ([("100644", "é" * 128, evil)], "é" * 40),
        "path-over-1024-bytes": ([nested(hub, repo, long_path, evil)], "d" * 90),
        "newline": ([("100644", "a\nb", evil)], "'a\\nb'"),
        "file-and-folder": (
            [("100644", "a", evil), ("40000", "a", raw_tree(hub, repo, [("100644", "b", evil)]))],
            "'a' is both a file and a folder",
        ),
        "listed-twice": ([("100644", "a", evil), ("100644", "a", evil)], "'a' is listed twice"),
    }[case]
    commit_entries(hub, repo, entries)
    msg = refuse_everywhere(mlxk, tmp_path, project, hf_manifest(project, repo), shown)
    assert len(msg) < 400  # a long name is cut short in the message


def test_a_255_byte_name_is_fine_and_lands_inside_the_workspace(
    hub, hf_env, tmp_path, project, mlxk, demo_files
):
    repo = unique_repo_id("long")
    hub.create_repo(repo, demo_files)
    name = "é" * 127 + "x"  # 255 bytes, the most a file name can have
    commit_entries(hub, repo, [("100644", name, blob(hub, repo, b"long\n"))])
    m = hf_manifest(project, repo)
    before = snapshot(tmp_path, project)
    assert mlxk("sync", "-f", m).exit_code == 0
    assert (project / "models" / "m" / name).read_bytes() == b"long\n"
    assert snapshot(tmp_path, project) == before | synced_files(project)
    assert mlxk("verify", "-f", m).exit_code == 0


def test_a_committed_symlink_becomes_a_regular_file_holding_the_link_text(
    hub, hf_env, tmp_path, project, mlxk, demo_files
):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"private data outside the workspace\n")
    repo = unique_repo_id("symlink")
    hub.create_repo(repo, demo_files)
    target = str(secret).encode()
    link = blob(hub, repo, target)
    up = blob(hub, repo, b"../../../../secret.txt")
    commit_entries(
        hub, repo, [("120000", "link", link), nested(hub, repo, "sub/up", up, mode="120000")]
    )
    m = hf_manifest(project, repo)
    before = snapshot(tmp_path, project)
    res = mlxk("sync", "-f", m, "--json")
    assert res.exit_code == 0, res
    ws = project / "models" / "m"
    for p in ws.rglob("*"):
        assert not p.is_symlink(), p
    assert (ws / "link").read_bytes() == target  # the link's text, never the target's bytes
    assert (ws / "sub" / "up").read_bytes() == b"../../../../secret.txt"
    assert snapshot(tmp_path, project) == before | synced_files(project)
    assert mlxk("verify", "-f", m).exit_code == 0


def test_corrupted_lfs_object_fails_sync_naming_the_file(
    hub, hf_env, tmp_path, project, mlxk, demo_files
):
    repo = unique_repo_id("lfs")
    hub.create_repo(repo, demo_files)
    m = hf_manifest(project, repo)
    assert mlxk("lock", "-f", m).exit_code == 0  # LFS hashes come from the pointers
    weights = demo_files["model.safetensors"]
    obj = hub.lfs_object_path(repo, hashlib.sha256(weights).hexdigest())
    obj.chmod(0o644)
    obj.write_bytes(weights[:-4] + b"EVIL")
    before = snapshot(tmp_path, project)
    for _ in range(2):
        res = mlxk("sync", "-f", m, "--json")
        msg = one_line_error(res, "model.safetensors")
        assert res.json["error"]["type"] == "integrity_error" and "sha256" in msg
    assert snapshot(tmp_path, project) == before and home_leftovers(project) == []
    assert not list((tmp_path / "store" / "tmp").glob("*.partial"))  # bad bytes not kept
    blobs = [p for p in (tmp_path / "store" / "blobs").rglob("*") if p.is_file()]
    assert all(p.read_bytes() != weights[:-4] + b"EVIL" for p in blobs)


def rewrite_loose_blob(hub, repo: str, path: str, data: bytes) -> None:
    """Overwrite the loose object of main:path with other bytes (its sha stays the same)."""
    sha = git(hub, repo, "rev-parse", f"main:{path}")
    obj = hub.repo_dir(repo) / ".git" / "objects" / sha[:2] / sha[2:]
    obj.chmod(0o644)
    obj.write_bytes(zlib.compress(b"blob %d\0" % len(data) + data))


def test_a_git_blob_changed_on_the_server_fails_lock_and_sync(
    hub, hf_env, tmp_path, project, mlxk, demo_files, monkeypatch
):
    repo = unique_repo_id("blob")
    hub.create_repo(repo, demo_files)
    original = demo_files["README.md"]
    m = hf_manifest(project, repo)
    other = project.parent / "other"
    m2 = hf_manifest(other, repo)
    assert mlxk("lock", "-f", m2).exit_code == 0  # locked while the blob was good
    rewrite_loose_blob(hub, repo, "README.md", original.upper())  # same size, other bytes
    msg = refuse_everywhere(mlxk, tmp_path, project, m, "README.md")
    assert "git blob sha1" in msg
    os.rename(tmp_path / "store", tmp_path / "store-used")  # a fresh store: must download
    res = mlxk("sync", "-f", m2, "--json")
    assert one_line_error(res, "README.md") and res.json["error"]["type"] == "integrity_error"
    assert not (other / "models" / "m").exists()


# ---------------------------------------------------------------- B. hostile manifests

P = Path("/proj/models.yaml")
VALID = [
    {"version": 1, "workspaces": {"a": {"source": "hf://org/m@v1"}}},
    {
        "version": 1,
        "home": "ws",
        "store": ".store",
        "workspaces": {
            "q": {
                "source": {"hf": "org/m", "revision": "main"},
                "include": ["*.json", "*.safetensors"],
                "exclude": ["*.pth"],
                "steps": [{"convert": {"quantize": {"bits": 4, "group_size": 64}}}],
                "runtime": ["hf://org/tok@v2", {"source": "hf://org/o", "include": ["t*"]}],
            },
            "d": {"source": "path:data", "allow_pickle": False},
            "e": {"source": {"path": "data"}, "steps": [{"convert": {"dtype": "bfloat16"}}]},
        },
    },
]
WEIRD_STRINGS = [
    "..",
    ".",
    "a/b",
    "/abs",
    "../x",
    "",
    " ",
    "~",
    "\0",
    "a\0b",
    "hf://",
    "hf://a/b@",
    "hf://../..@x",
    "path:",
    "path:\0",
    "path:" + "x" * 300,
    "path:" + "/x" * 600,
    "*" * 1000,
    "[",
    "é" * 200,
    "\ud800",
    "\U0001f600",
    "on",
    "2020-01-01",
    "!!binary",
    "{{",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(WEIRD_STRINGS),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=10), st.sampled_from(WEIRD_STRINGS)), inner),
    ),
    max_leaves=12,
)
KEYS = ["version", "home", "store", "workspaces", "source", "include", "exclude", "steps"]
KEYS += ["runtime", "convert", "quantize", "bits", "dtype", "hf", "revision", "path", "<<"]
keys = st.one_of(st.sampled_from(KEYS + WEIRD_STRINGS), st.text(max_size=12))
# Odd values the schema accepts, by key: mutations that keep a manifest valid reach past the
# schema into building the Manifest.
ODD_BUT_VALID = {
    "home": ["é", " ", "~", "a/b/c", ".", "x..y", "..x", "a\\b", "💥" * 50],
    "store": ["s", ".", "deep/er/store", "é"],
    "source": [
        "hf://a/b@../../x",
        "hf://a.b/c_d@refs/pr/1",
        "hf://a/b@%00",
        "path:../..",
        "path: ",
        "path:é",
        "path:~",
        {"path": "data"},
        {"hf": "a/b", "revision": "🙂"},
        "hf://" + "a" * 200 + "/b",
    ],
    "include": [["*"], ["[", "**/../*"], ["é*", "?" * 300], ["/"]],
    "exclude": [["*"], ["\\"], ["data/"]],
    "revision": ["x", "v1.0", "refs/heads/main", "0" * 40],
    "steps": [[], [{"convert": {"dequantize": True}}], [{"convert": {"dtype": "float32"}}]],
    "runtime": [[], ["hf://a/b"], [{"hf": "a/b", "include": ["x"]}]],
}


def containers(node) -> list:
    """node and every dict and list inside it."""
    out = [node]
    for child in list(node.values() if isinstance(node, dict) else node):
        if isinstance(child, dict | list):
            out += containers(child)
    return out


@st.composite
def mutated(draw, base=None, ops=("drop", "add", "set", "rename", "wrap", "nest", "odd", "odd")):
    """A valid manifest with a few random edits: drop, add, retype, rename, wrap, nest, or an
    odd value the schema accepts."""
    doc = draw(st.sampled_from(VALID)) if base is None else base
    doc = yaml.safe_load(yaml.safe_dump(doc))  # a deep copy
    for _ in range(draw(st.integers(0, 4))):
        node = draw(st.sampled_from(containers(doc)))
        slots = list(node) if isinstance(node, dict) else list(range(len(node)))
        op = draw(st.sampled_from(ops))
        if not slots or op == "add":
            if isinstance(node, dict):
                node[draw(keys)] = draw(values)
            else:
                node.append(draw(values))
            continue
        slot = draw(st.sampled_from(slots))
        if op == "drop":
            del node[slot]
        elif op == "set":
            node[slot] = draw(values)
        elif op == "rename" and isinstance(node, dict):
            node[draw(st.one_of(keys, st.integers(), st.booleans(), st.none()))] = node.pop(slot)
        elif op == "odd":
            if slot in ODD_BUT_VALID:
                node[slot] = copy.deepcopy(draw(st.sampled_from(ODD_BUT_VALID[slot])))
            elif slot == "workspaces" and isinstance(node[slot], dict) and node[slot]:
                name = draw(st.sampled_from(["0", "a.b", "A_-.", "x" * 128, "é", "on", "1e3"]))
                node[slot][name] = copy.deepcopy(next(iter(node[slot].values())))
        elif op == "wrap":
            node[slot] = [node[slot]]
        else:
            node[slot] = {draw(keys): node[slot]}
    return doc


def dump(doc) -> str:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


YAML_BITS = [
    "&a ", "*a", "<<: *a\n", "!!binary ", "!!set ", "!!python/object:os.system ", "? ",
    "- ", "{", "}", "[", "]", ": ", "\n", "\n  ", "\t", '"\\0"', "'", '"', "~", "on",
    ".inf", "2020-01-01", "0x1F", "--- ", "...", "%YAML 1.1\n", "#", "|\n  ", ">-\n  ",
    "\ufeff", "\x85", "\u2028", "\x00", "é", "💥", "workspaces:", "version: 1\n",
]  # fmt: skip


@st.composite
def yaml_texts(draw):
    """Random YAML-ish text: a valid manifest's text with splices, or token soup, or noise."""
    kind = draw(st.sampled_from(["splice", "soup", "noise"]))
    if kind == "noise":
        return draw(st.text(max_size=200))
    if kind == "soup":
        return "".join(draw(st.lists(st.sampled_from(YAML_BITS), max_size=40)))
    text = dump(draw(mutated()))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 8))
        text = text[:at] + draw(st.sampled_from(YAML_BITS) | st.text(max_size=5)) + text[at + cut :]
    return text


manifest_inputs = st.one_of(mutated().map(dump), yaml_texts())


def parse_or_refuse(text: str, counts: dict) -> None:
    """parse_manifest either gives a Manifest or refuses with ManifestError (exit 2)."""
    counts["inputs"] += 1
    try:
        m = parse_manifest(text, P)
        m.digest()
        for ws in m.workspaces.values():
            assert isinstance(ws.name, str) and ws.digest().startswith("sha256:")
        counts["accepted"] += 1
    except ManifestError as e:
        assert e.exit_code == 2 and e.message.isprintable(), e.message  # one line, no escapes
        counts["refused"] += 1
    except Exception:
        counts["tracebacks"] += 1
        raise


def test_fuzz_parse_manifest_never_raises_anything_but_a_manifest_error():
    counts = {"inputs": 0, "accepted": 0, "refused": 0, "tracebacks": 0}

    @settings(
        max_examples=800,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(manifest_inputs)
    def run(text):
        parse_or_refuse(text, counts)

    started = time.monotonic()
    try:
        run()
    finally:
        print(f"\nparse_manifest fuzz: {counts} in {time.monotonic() - started:.1f}s")
    assert counts["tracebacks"] == 0 and counts["inputs"] >= 800
    assert counts["accepted"] > 20 and counts["refused"] > 100  # both paths are exercised


REGRESSIONS = {
    "a collection as key": "version: 1\nworkspaces:\n  ? [a, b]\n  : {source: 'path:x'}\n",
    "int key": "version: 1\nworkspaces:\n  1: {source: 'path:x'}\n",
    "bool key (a workspace named no)": "version: 1\nworkspaces:\n  no: {source: 'path:x'}\n",
    "null key": "version: 1\nworkspaces:\n  ~: {source: 'path:x'}\n",
    "date key": "version: 1\nworkspaces:\n  2024-01-01: {source: 'path:x'}\n",
    "NUL in home": 'version: 1\nhome: "a\\0b"\nworkspaces:\n  a: {source: "path:x"}\n',
    "NUL in path source": 'version: 1\nworkspaces:\n  a: {source: "path:a\\0b"}\n',
    "deep nesting": "version: 1\nworkspaces: " + "[" * 5000 + "]" * 5000 + "\n",
    "date source": "version: 1\nworkspaces:\n  a: {source: 2020-01-01}\n",
    "bytes source": "version: 1\nworkspaces:\n  a: {source: !!binary aGVsbG8=}\n",
    "set source": "version: 1\nworkspaces:\n  a: {source: !!set {a, b}}\n",
    "date dtype": "version: 1\nworkspaces:\n  a:\n    source: path:x\n"
    "    steps: [{convert: {dtype: 2020-01-01}}]\n",
}


@pytest.mark.parametrize("case", sorted(REGRESSIONS))
def test_manifest_crashes_found_by_fuzzing_are_clear_errors(case):
    with pytest.raises(ManifestError) as e:
        parse_manifest(REGRESSIONS[case], P)
    assert e.value.exit_code == 2 and e.value.message.startswith("models.yaml")
    assert "\0" not in e.value.message


def test_merge_keys_inside_workspaces_are_understood():
    text = "version: 1\nworkspaces:\n  a: &w {source: 'path:d'}\n  <<: {b: *w}\n"
    m = parse_manifest(text, P)
    assert sorted(m.workspaces) == ["a", "b"] and m.workspaces["b"].where == "models.yaml:2:1"


@pytest.fixture
def fuzz_project(tmp_path, monkeypatch) -> Path:
    """Path sources that exist (a plain file, no model), and a hub that is down."""
    project = tmp_path / "deep" / "project"
    for d in ("data", "d", "x"):
        (project / d).mkdir(parents=True)
        (project / d / "notes.txt").write_text(f"{d}\n")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("MLXK_DEBUG", "1")  # an unexpected exception escapes as a traceback
    return project


def test_fuzz_mlxk_lock_cli_fails_only_with_exit_2_or_3(fuzz_project, mlxk):
    path_based = [
        {"version": 1, "workspaces": {"d": {"source": "path:data"}}},
        {
            "version": 1,
            "home": "ws",
            "workspaces": {
                "d": {"source": "path:d", "include": ["*.txt"], "exclude": ["*.bin"]},
                "e": {"source": {"path": "x"}, "steps": [{"convert": {"dtype": "float16"}}]},
                "h": {"source": "hf://org/m@v1"},
            },
        },
    ]
    counts = {"inputs": 0, "exit 0": 0, "exit 2": 0, "exit 3": 0, "tracebacks": 0}
    manifest = fuzz_project / "models.yaml"

    bases = st.sampled_from(path_based)
    gently = bases.flatmap(lambda b: mutated(b, ops=("odd", "odd", "odd", "drop", "set")))

    @settings(
        max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(st.one_of(gently.map(dump), bases.flatmap(mutated).map(dump), yaml_texts()))
    def run(text):
        counts["inputs"] += 1
        manifest.write_text(text, encoding="utf-8", errors="surrogatepass")
        (fuzz_project / "mlxk.lock").unlink(missing_ok=True)
        try:
            res = mlxk("lock", "-f", str(manifest), "--json")
        except Exception:
            counts["tracebacks"] += 1
            raise
        assert res.exit_code in (0, 2, 3), res
        counts[f"exit {res.exit_code}"] += 1
        if res.exit_code:
            error = res.json["error"]
            assert not error["message"].startswith("internal error"), res
            assert error["message"].isprintable(), res
            assert error["exit_code"] == res.exit_code

    started = time.monotonic()
    try:
        run()
    finally:
        print(f"\nmlxk lock fuzz: {counts} in {time.monotonic() - started:.1f}s")
    assert counts["tracebacks"] == 0 and counts["inputs"] >= 150


def test_yaml_bomb_and_huge_file_are_refused_quickly(tmp_path, mlxk):
    lol = ["version: 1", 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev = chr(ord("a") + i - 1)
        lol.append(
            f"{chr(ord('a') + i)}: &{chr(ord('a') + i)} [" + ",".join([f"*{prev}"] * 9) + "]"
        )
    cases = {
        "billion laughs": "\n".join(lol) + "\nworkspaces: {x: {source: 'path:x'}}\n",
        "huge file": "version: 1\nworkspaces: {}\n" + "# padding\n" * 120_000,
        "huge one-line string": "version: 1\nhome: " + "x" * (1 << 20) + "\nworkspaces: {}\n",
    }
    for name, text in cases.items():
        m = write_manifest(tmp_path / name.replace(" ", "-"), text)
        started = time.monotonic()
        res = mlxk("lock", "-f", str(m), "--json")
        elapsed = time.monotonic() - started
        assert elapsed < 1.0, (name, elapsed)
        assert res.exit_code == 2, (name, res)
        msg = res.json["error"]["message"]
        assert "too many YAML nodes" in msg or "larger than" in msg, (name, msg)
    big = tmp_path / "big" / "models.yaml"
    big.parent.mkdir()
    with open(big, "wb") as f:  # 64 MiB, sparse: refused from its size, before reading it
        f.truncate(64 << 20)
    started = time.monotonic()
    res = mlxk("lock", "-f", str(big), "--json")
    assert res.exit_code == 2 and "larger than" in res.json["error"]["message"]
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize(
    "field,value",
    [
        ("name", ".."),
        ("name", "."),
        ("name", "a/b"),
        ("name", "/abs"),
        ("name", "../x"),
        ("name", ".mlxk-staging"),
        ("name", "x\0"),
        ("home", "../x"),
        ("home", "/abs"),
        ("home", "a/../../x"),
        ("home", "x/.."),
        ("home", "x\0y"),
        ("store", "../store"),
        ("store", "/abs/store"),
    ],
)
def test_workspace_name_home_or_store_escaping_the_project_is_refused(tmp_path, mlxk, field, value):
    project = tmp_path / "p"
    (project / "data").mkdir(parents=True)
    (project / "data" / "f.txt").write_text("f\n")
    doc = {"version": 1, "workspaces": {"w": {"source": "path:data"}}}
    if field == "name":
        doc["workspaces"] = {value: doc["workspaces"]["w"]}
    else:
        doc[field] = value
    m = write_manifest(project, yaml.safe_dump(doc))
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    for cmd in ("lock", "sync"):
        res = mlxk(cmd, "-f", str(m), "--json")
        assert res.exit_code == 2, res
        assert res.json["error"]["type"] == "manifest_error"
        assert "\n" not in res.json["error"]["message"]
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("field", ["lfs.oid", "oid", "size"])
def test_a_hub_declaring_a_path_as_a_hash_cannot_touch_files_outside_the_store(
    hub, hf_env, tmp_path, project, mlxk, demo_files, monkeypatch, field
):
    """The store names blobs by their hash: a hash that is really '../..' would point outside
    it (and a corrupt-looking blob there is deleted). Hashes and sizes from a hub are checked."""
    victim = tmp_path / "victim.bin"
    victim.write_bytes(demo_files["model.safetensors"])
    store = tmp_path / "store"
    rel = os.path.relpath(victim, store / "blobs" / "sha256" / "..")  # blob_path(hex) = victim
    hostile = {"lfs.oid": rel, "oid": "../../../../victim", "size": -1}[field]
    repo = unique_repo_id("hash")
    hub.create_repo(repo, demo_files)
    server = FaultServer(hub.endpoint)
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    target = "model.safetensors" if field == "lfs.oid" else "config.json"

    def rewrite(entries):
        for e in entries:
            if e["path"] == target:
                if field == "lfs.oid":
                    e["lfs"]["oid"] = hostile
                else:
                    e[field] = hostile
        return entries

    server.rewrite_tree = rewrite
    try:
        m = hf_manifest(project, repo)
        msg = refuse_everywhere(mlxk, tmp_path, project, m, target)
        assert "the hub declared an invalid" in msg
    finally:
        server.close()
    assert victim.read_bytes() == demo_files["model.safetensors"]


@pytest.mark.parametrize(
    "source,code,expected",
    [
        ("path:" + "x" * 300, 3, "cannot read it (File name too long)"),
        ("path:" + "/x" * 3000, 3, "cannot read it (File name too long)"),
        ("path:data/f.txt", 2, "no such directory"),
        ("path:missing", 2, "no such directory"),
    ],
)
def test_a_path_source_that_cannot_be_read_is_a_clear_error(tmp_path, mlxk, source, code, expected):
    project = tmp_path / "p"
    (project / "data").mkdir(parents=True)
    (project / "data" / "f.txt").write_text("f\n")
    m = write_manifest(
        project, yaml.safe_dump({"version": 1, "workspaces": {"w": {"source": source}}})
    )
    res = mlxk("lock", "-f", str(m), "--json")
    assert res.exit_code == code and res.json["error"]["type"] != "error", res  # not internal
    assert expected in res.json["error"]["message"]


def test_home_dot_cannot_turn_the_manifest_or_lock_into_a_workspace(tmp_path, mlxk):
    project = tmp_path / "p"
    (project / "data").mkdir(parents=True)
    (project / "data" / "f.txt").write_text("f\n")
    doc = {
        "version": 1,
        "home": ".",
        "workspaces": {n: {"source": "path:data"} for n in ("models.yaml", "mlxk.lock", "data")},
    }
    m = write_manifest(project, yaml.safe_dump(doc))
    text = m.read_text()
    res = mlxk("sync", "-f", str(m), "--json")
    assert res.exit_code == 2, res
    assert "is not an mlxk workspace" in res.json["error"]["message"]
    assert m.read_text() == text and (project / "data" / "f.txt").read_text() == "f\n"
    assert (project / "mlxk.lock").is_file()
