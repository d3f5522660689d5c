"""A quick yes/no check of a document against the manifest's JSON Schema, so that loading a
valid manifest never imports jsonschema (about a third of a command's start-up).

It knows the keywords the manifest schema uses and answers exactly for them: True when the
document is valid, False when it is not. On any keyword it does not know it answers None.
Only True is taken as final; False and None both go to jsonschema, which words the error.
"""

from __future__ import annotations

import re
from functools import cache

IGNORED = frozenset({"$schema", "$id", "$defs", "title", "description", "x-message", "x-unknown"})
TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


class Unknown(Exception):
    """A keyword (or form of one) this checker does not handle."""


def is_valid(document, schema: dict) -> bool | None:
    try:
        return _fits(document, schema, schema)
    except Unknown:
        return None


@cache
def _pattern(text: str) -> re.Pattern:
    return re.compile(text)


def _same(a, b) -> bool:
    """JSON equality: 1 is not true, 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _fits(value, schema, root) -> bool:
    if schema is True or schema is False:
        return schema
    for key, arg in schema.items():
        if key in IGNORED:
            continue
        check = CHECKS.get(key)
        if check is None:
            raise Unknown(key)
        if not check(value, arg, schema, root):
            return False
    return True


def _ref(value, ref, schema, root) -> bool:
    if not ref.startswith("#/"):
        raise Unknown(ref)
    target = root
    for part in ref[2:].split("/"):
        target = target[part.replace("~1", "/").replace("~0", "~")]
    return _fits(value, target, root)


def _type(value, names, schema, root) -> bool:
    names = [names] if isinstance(names, str) else names
    return any(TYPES[n](value) for n in names)


def _properties(value, props, schema, root) -> bool:
    if not isinstance(value, dict):
        return True
    return all(_fits(value[k], s, root) for k, s in props.items() if k in value)


def _additional(value, extra, schema, root) -> bool:
    if not isinstance(value, dict):
        return True
    if "patternProperties" in schema:
        raise Unknown("patternProperties")
    known = schema.get("properties", {})
    return all(_fits(v, extra, root) for k, v in value.items() if k not in known)


def _items(value, items, schema, root) -> bool:
    if not isinstance(value, list):
        return True
    if "prefixItems" in schema or not isinstance(items, (dict, bool)):
        raise Unknown("prefixItems")
    return all(_fits(v, items, root) for v in value)


def _names(value, names, schema, root) -> bool:
    return not isinstance(value, dict) or all(_fits(k, names, root) for k in value)


def _of_str(test):
    return lambda value, arg, schema, root: not isinstance(value, str) or test(value, arg)


def _of_dict(test):
    return lambda value, arg, schema, root: not isinstance(value, dict) or test(value, arg)


CHECKS = {
    "$ref": _ref,
    "type": _type,
    "const": lambda value, arg, schema, root: _same(value, arg),
    "enum": lambda value, arg, schema, root: any(_same(value, x) for x in arg),
    "properties": _properties,
    "additionalProperties": _additional,
    "propertyNames": _names,
    "items": _items,
    "required": _of_dict(lambda v, arg: all(k in v for k in arg)),
    "minProperties": _of_dict(lambda v, arg: len(v) >= arg),
    "maxProperties": _of_dict(lambda v, arg: len(v) <= arg),
    "minLength": _of_str(lambda v, arg: len(v) >= arg),
    "pattern": _of_str(lambda v, arg: _pattern(arg).search(v) is not None),
    "oneOf": lambda value, arg, schema, root: sum(_fits(value, s, root) for s in arg) == 1,
    "not": lambda value, arg, schema, root: not _fits(value, arg, root),
}
