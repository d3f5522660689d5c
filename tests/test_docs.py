"""The user guide in docs/ stays true: every manifest key, command and option is documented,
the examples validate, the CI recipe runs for real, and the exit-code table matches the code."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import yaml

from mlxk import errors
from mlxk.cli import cli
from mlxk.manifest import manifest_schema
from mlxk.output import output_schema
from tests.support import DEMO_MODEL, ROOT

DOCS = ROOT / "docs"
PAGES = (
    "README.md",
    "getting-started.md",
    "manifest.md",
    "lock.md",
    "exit-codes.md",
    "mirrors.md",
    "ci.md",
    "commands.md",
)
LOCK_CHECK = "mlxk lock --check"
SYNC_VERIFY = "mlxk sync --locked && mlxk verify"


def doc(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def fenced(text: str, lang: str) -> list[str]:
    """The bodies of the ```lang blocks of a markdown text."""
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


# ---------------------------------------------------------------- manifest.md


def schema_keys(node) -> set[str]:
    """Every property name at every level of a JSON Schema (including $defs)."""
    keys: set[str] = set()
    if isinstance(node, dict):
        props = node.get("properties")
        if isinstance(props, dict):
            keys |= set(props)
        for value in node.values():
            keys |= schema_keys(value)
    elif isinstance(node, list):
        for item in node:
            keys |= schema_keys(item)
    return keys


def test_manifest_doc_names_every_schema_key():
    keys = schema_keys(manifest_schema())
    nested = {"bits", "group_size", "mode", "dtype", "dequantize", "revision", "hf", "path"}
    assert nested | {"allow_pickle", "include", "exclude", "version", "workspaces"} <= keys
    text = doc("manifest.md")
    missing = sorted(k for k in keys if f"`{k}`" not in text)
    assert not missing, f"docs/manifest.md does not name these schema keys: {missing}"


def test_manifest_doc_lists_every_allowed_value():
    """bits, group_size, mode and dtype: each value of each enum is in the doc, in backticks."""
    defs = manifest_schema()["$defs"]
    quantize = defs["convert"]["properties"]["quantize"]["properties"]
    enums = {
        "bits": quantize["bits"]["enum"],
        "group_size": quantize["group_size"]["enum"],
        "mode": quantize["mode"]["enum"],
        "dtype": defs["convert"]["properties"]["dtype"]["enum"],
    }
    text = doc("manifest.md")
    for key, values in enums.items():
        for value in values:
            assert f"`{value}`" in text, (key, value)


def test_manifest_doc_yaml_examples_validate(tmp_path, mlxk):
    examples = [b for b in fenced(doc("manifest.md"), "yaml") if "version: 1" in b]
    assert len(examples) >= 6
    for i, body in enumerate(examples):
        path = tmp_path / f"ex{i}" / "models.yaml"
        path.parent.mkdir()
        path.write_text(body)
        res = mlxk("validate", "-f", str(path), "--json")
        assert res.exit_code == 0, (body, res)


def test_manifest_doc_error_examples_are_real(tmp_path, mlxk):
    """Each quoted error is what mlxk prints for the input its comment describes."""
    cases = {
        "unknown key 'sorce'": "  a:\n    sorce: hf://org/x\n",
        "unknown step 'quantize'": "  a:\n    source: hf://org/x\n    steps:\n"
        "      - quantize: {bits: 4}\n",
        "7 is not one of": "  a:\n    source: hf://org/x\n    steps:\n"
        "      - convert: {quantize: {bits: 7}}\n",
        "a source is": "  a:\n    source: org/x\n",
        "duplicate key 'a'": "  a:\n    source: hf://org/x\n  a:\n    source: hf://org/y\n",
    }
    text = doc("manifest.md")
    for needle, body in cases.items():
        path = tmp_path / "models.yaml"
        path.write_text("version: 1\nworkspaces:\n" + body)
        res = mlxk("validate", "-f", str(path))
        assert res.exit_code == 2, res
        message = res.stderr.splitlines()[0]
        assert needle in message and message in text, message


# ---------------------------------------------------------------- commands.md


def sections(text: str) -> tuple[str, dict[str, str]]:
    """(the text before the first `## mlxk X` heading, {X: its section})."""
    parts = re.split(r"^## mlxk (\S+)\n", text, flags=re.M)
    return parts[0], dict(zip(parts[1::2], parts[2::2], strict=True))


def mentions(text: str, opt: str) -> bool:
    return re.search(r"`" + re.escape(opt) + r"[`\s\[]", text) is not None


def test_commands_doc_names_every_command_and_option():
    text = doc("commands.md")
    preamble, by_command = sections(text)
    ctx = click.Context(cli, info_name="mlxk")
    for opt in [*ctx.help_option_names, *(o for p in cli.params for o in p.opts)]:
        assert mentions(preamble, opt), opt
    assert set(by_command) == set(cli.commands), "one `## mlxk NAME` section per command"
    for name, cmd in cli.commands.items():
        section = by_command[name]
        sub = click.Context(cmd, info_name=name, parent=ctx)
        usage = f"mlxk {name} " + " ".join(cmd.collect_usage_pieces(sub))
        assert usage in section, (name, usage)
        for param in cmd.params:
            if not isinstance(param, click.Option):
                continue
            for opt in param.opts + param.secondary_opts:
                assert mentions(section, opt) or mentions(preamble, opt), (name, opt)


# ---------------------------------------------------------------- ci.md


def ci_jobs() -> tuple[dict, dict]:
    """(the GitHub Actions job, the GitLab CI job) from docs/ci.md's YAML blocks."""
    blocks = [yaml.safe_load(b) for b in fenced(doc("ci.md"), "yaml")]
    github = next(b for b in blocks if isinstance(b, dict) and "jobs" in b)
    gitlab = next(b for b in blocks if isinstance(b, dict) and "models" in b)
    return github["jobs"]["models"], gitlab["models"]


def test_ci_doc_jobs_run_the_gates_with_a_cached_store():
    text = doc("ci.md")
    assert LOCK_CHECK in text.splitlines() and SYNC_VERIFY in text.splitlines()
    github, gitlab = ci_jobs()
    runs = [s["run"] for s in github["steps"] if "run" in s]
    assert LOCK_CHECK in runs and SYNC_VERIFY in runs
    assert LOCK_CHECK in gitlab["script"] and SYNC_VERIFY in gitlab["script"]
    # The store each job points MLXK_STORE at is the directory it caches, keyed on the lock.
    cache = next(
        s["with"] for s in github["steps"] if s.get("uses", "").startswith("actions/cache@")
    )
    assert github["env"]["MLXK_STORE"] == "${{ github.workspace }}/" + cache["path"]
    assert "hashFiles('mlxk.lock')" in cache["key"]
    store = gitlab["variables"]["MLXK_STORE"]
    assert store.startswith("$CI_PROJECT_DIR/")
    assert gitlab["cache"]["paths"] == [store.removeprefix("$CI_PROJECT_DIR/") + "/"]
    assert gitlab["cache"]["key"]["files"] == ["mlxk.lock"]


def test_ci_doc_commands_run_for_real(tmp_path):
    """The doc's two gates, run by sh with MLXK_STORE as the GitLab job sets it, on a project
    holding the demo model: green on a fresh lock, red (exit 1) once the manifest changes."""
    text = doc("ci.md")
    lines = [ln.strip().removeprefix("- ").removeprefix("run: ") for ln in text.splitlines()]
    assert LOCK_CHECK in lines and SYNC_VERIFY in lines
    _, gitlab = ci_jobs()
    project = tmp_path / "project"
    shutil.copytree(DEMO_MODEL, project / "demo-model")
    manifest = project / "models.yaml"
    manifest.write_text(
        "version: 1\nworkspaces:\n  demo-4bit:\n    source: path:demo-model\n"
        "    steps:\n      - convert: {quantize: {bits: 4, group_size: 32}}\n"
    )
    store = project / gitlab["variables"]["MLXK_STORE"].removeprefix("$CI_PROJECT_DIR/")
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        MLXK_STORE=str(store),
        HF_ENDPOINT="http://127.0.0.1:9",  # nothing here may need a hub
    )

    def sh(command: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["sh", "-c", command], cwd=project, env=env, capture_output=True, text=True
        )

    assert sh("mlxk lock").returncode == 0
    for command in (LOCK_CHECK, SYNC_VERIFY):
        res = sh(command)
        assert res.returncode == 0, (command, res.stdout, res.stderr)
    assert (project / "models" / "demo-4bit" / ".mlxk_workspace.json").is_file()
    assert any(p.is_file() for p in store.rglob("*")), "the store the CI caches is filled"
    manifest.write_text(manifest.read_text().replace("group_size: 32", "group_size: 64"))
    res = sh(LOCK_CHECK)
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert "demo-4bit: changed in the manifest since it was locked" in res.stdout
    assert sh(SYNC_VERIFY).returncode == 2  # --locked refuses the stale lock


# ---------------------------------------------------------------- exit-codes.md


def test_exit_code_table_matches_errors():
    rows = re.findall(r"^\| (\d+) \| `(EXIT_[A-Z_]+)` \|", doc("exit-codes.md"), flags=re.M)
    documented = {name: int(code) for code, name in rows}
    defined = {n: v for n, v in vars(errors).items() if n.startswith("EXIT_")}
    assert documented == defined


def error_kinds(cls=errors.MlxkError) -> set[str]:
    import mlxk.steps.convert  # noqa: F401 - registers its MlxkError subclasses

    return {cls.kind} | {k for sub in cls.__subclasses__() for k in error_kinds(sub)}


def test_exit_codes_doc_covers_every_command_status_and_error_type():
    text = doc("exit-codes.md")
    for name in cli.commands:
        assert re.search(rf"^\| `mlxk {name}[ `]", text, flags=re.M), name
    schema = output_schema()["properties"]
    for value in schema["status"]["enum"] + schema["command"]["enum"]:
        assert f"`{value}`" in text, value
    for kind in error_kinds():
        assert f"`{kind}`" in text, kind


# ---------------------------------------------------------------- the pages as a whole


def slug(heading: str) -> str:
    """A heading's anchor, as GitHub makes it."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_docs_index_and_links():
    index = doc("README.md")
    pages = sorted(p.name for p in DOCS.glob("*.md") if p.name != "README.md")
    for page in pages:
        assert f"]({page})" in index, f"docs/README.md does not link {page}"
    for page in (DOCS / name for name in PAGES):
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://")):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            assert dest.exists(), (page.name, target)
            if anchor and dest.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", dest.read_text(encoding="utf-8"), re.M)
                assert anchor in {slug(h) for h in headings}, (page.name, target)


def test_readme_manifest_example_is_valid(tmp_path, mlxk):
    """The README's models.yaml example passes `mlxk validate`, so it cannot drift."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    (tmp_path / "models.yaml").write_text(block)
    res = mlxk("validate", "-f", str(tmp_path / "models.yaml"))
    assert res.exit_code == 0, res
