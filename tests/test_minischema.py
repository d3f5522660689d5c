"""The quick manifest check never calls an invalid manifest valid: over the documented examples
and thousands of seeded mutations of them, whenever it says True jsonschema agrees; and every
valid example takes the quick path (no jsonschema import)."""

from __future__ import annotations

import copy
import random
import re
import subprocess
import sys
from functools import cache

import jsonschema
import pytest
import yaml

from mlxk.manifest import manifest_schema
from mlxk.minischema import is_valid
from tests.support import ROOT

pytestmark = pytest.mark.unit

ODD_VALUES = [
    *(None, True, False, 0, 1, 1.0, 2.5, -3, 4, 8, 64, "", "x", "\n", "é", "a b", "../up"),
    *("hf://a/b", "mxfp4", "float16", [], {}, [1], ["*.json"], {"k": 1}, {"hf": "a/b"}),
]


@cache
def examples() -> list:
    text = (ROOT / "docs" / "manifest.md").read_text()
    blocks = re.findall(r"^```yaml\n(.*?)^```", text, flags=re.S | re.M)
    docs = [yaml.safe_load(b) for b in blocks if "version: 1" in b]
    return [d for d in docs if isinstance(d, dict)]


def paths(node, at=()):
    yield at
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, (*at, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, (*at, i))


def mutate(doc, rng: random.Random):
    doc = copy.deepcopy(doc)
    inside = [p for p in paths(doc) if p]
    if not inside:
        return rng.choice([*ODD_VALUES, *examples()])
    at = rng.choice(inside)
    parent = doc
    for k in at[:-1]:
        parent = parent[k]
    key, roll = at[-1], rng.random()
    if roll < 0.45:
        parent[key] = rng.choice(ODD_VALUES)
    elif roll < 0.65:
        del parent[key]
    elif roll < 0.85 and isinstance(parent, dict):
        parent[rng.choice(["extra", "Include", "steps", "revision", "link", key + "x"])] = (
            rng.choice(ODD_VALUES)
        )
    elif isinstance(parent, list):
        parent.append(rng.choice(ODD_VALUES))
    else:
        parent[key] = copy.deepcopy(rng.choice([doc, parent, ODD_VALUES]))
    return doc


def test_valid_examples_take_the_quick_path():
    schema = manifest_schema()
    docs = examples()
    assert len(docs) >= 6
    for doc in docs:
        assert jsonschema.Draft202012Validator(schema).is_valid(doc)
        assert is_valid(doc, schema) is True, doc


def test_the_quick_check_never_passes_an_invalid_manifest():
    schema = manifest_schema()
    validator = jsonschema.Draft202012Validator(schema)
    rng = random.Random(15)
    quick_true = both_valid = 0
    for _ in range(2000):
        doc = rng.choice(examples())
        for _ in range(rng.randint(1, 3)):
            doc = mutate(doc, rng)
        quick, full = is_valid(doc, schema), validator.is_valid(doc)
        if quick is True:
            quick_true += 1
            assert full, doc
        if full:
            both_valid += 1
            assert quick is True, doc  # and it is exact: a valid manifest is never slowed
    assert quick_true > 100 and both_valid == quick_true


def test_loading_a_valid_manifest_imports_no_jsonschema(tmp_path):
    (tmp_path / "models.yaml").write_text(
        "version: 1\nlink: copy\nworkspaces:\n  a:\n    source: hf://org/a@main\n"
    )
    code = (
        "import sys; from mlxk.manifest import load_manifest; "
        f"m = load_manifest({str(tmp_path / 'models.yaml')!r}); "
        "assert m.link == 'copy'; assert 'jsonschema' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
