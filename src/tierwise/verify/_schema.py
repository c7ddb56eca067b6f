"""A small JSON Schema validator for ``MatchesSchema`` when ``jsonschema`` is not installed.

pydantic validates against pydantic types, not against a JSON Schema dict, and
tierwise does not make ``jsonschema`` a dependency for one verifier. This covers
the subset that structured-output schemas actually use:

* ``type`` (a name or a list; ``integer`` accepts ``1.0``; booleans are never
  numbers), ``enum``, ``const``
* objects: ``properties``, ``required``, ``additionalProperties`` (bool or schema)
* arrays: ``items`` (one schema), ``minItems``, ``maxItems``
* strings: ``minLength``, ``maxLength``, ``pattern`` (``re.search``)
* numbers: ``minimum``, ``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum``
* ``anyOf``, ``oneOf``, ``allOf``, ``not``, and local ``$ref`` (``#/$defs/X``,
  ``#/definitions/X``) as pydantic's ``model_json_schema()`` emits
* ignored as annotations: ``title``, ``description``, ``default``, ``examples``,
  ``format``, ``$schema``, ``$id``, ``$comment``, ``deprecated``, ``readOnly``,
  ``writeOnly``, ``$defs``, ``definitions``

Any other keyword raises ``ValueError`` when the schema is compiled, because
silently ignoring a constraint would accept answers the user meant to reject.
Install ``jsonschema`` for the full specification.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["SUPPORTED_KEYWORDS", "check_schema", "validate"]

_ANNOTATIONS = frozenset(
    (
        "title",
        "description",
        "default",
        "examples",
        "format",
        "$schema",
        "$id",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
        "$defs",
        "definitions",
    )
)
_ASSERTIONS = frozenset(
    (
        "type",
        "enum",
        "const",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "anyOf",
        "oneOf",
        "allOf",
        "not",
        "$ref",
    )
)
SUPPORTED_KEYWORDS = _ASSERTIONS | _ANNOTATIONS
_TYPES = frozenset(("object", "array", "string", "number", "integer", "boolean", "null"))


def check_schema(schema: Any, path: str = "#", root: Any = None) -> None:
    """Raise ``ValueError`` naming the first keyword or value this validator cannot
    honour, or a ``$ref`` that does not resolve, so a bad schema fails when the
    verifier is built rather than on some later answer."""
    root = schema if root is None else root
    if isinstance(schema, bool):
        return
    if not isinstance(schema, Mapping):
        raise ValueError(f"{path}: a schema must be an object or a boolean, got {type(schema).__name__}")
    unknown = sorted(set(schema) - SUPPORTED_KEYWORDS)
    if unknown:
        raise ValueError(
            f"{path}: unsupported JSON Schema keyword(s) {', '.join(unknown)}; the built-in validator "
            "covers a subset (see tierwise.verify._schema) — install jsonschema for the rest"
        )
    types = schema.get("type")
    if types is not None and not isinstance(types, str | list):
        raise ValueError(f"{path}/type: must be a type name or a list of them")
    for name in [types] if isinstance(types, str) else types or []:
        if name not in _TYPES:
            raise ValueError(f"{path}/type: unknown type {name!r}")
    ref = schema.get("$ref")
    if ref is not None and not (isinstance(ref, str) and ref.startswith("#")):
        raise ValueError(f"{path}/$ref: only local references ('#/...') are supported, got {ref!r}")
    if ref is not None:
        try:
            _resolve(root, ref)
        except ValueError as exc:
            raise ValueError(f"{path}/$ref: {exc}") from None
    if "pattern" in schema:
        re.compile(schema["pattern"])
    for key in ("properties", "$defs", "definitions"):
        if not isinstance(schema.get(key, {}), Mapping):
            raise ValueError(f"{path}/{key}: must be an object")
    for key in ("required", "enum", "anyOf", "oneOf", "allOf"):
        if not isinstance(schema.get(key, []), list):
            raise ValueError(f"{path}/{key}: must be an array")
    for key in ("minItems", "maxItems", "minLength", "maxLength"):
        bound = schema.get(key, 0)
        if isinstance(bound, bool) or not isinstance(bound, int) or bound < 0:
            raise ValueError(f"{path}/{key}: must be a non-negative integer")
    for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        bound = schema.get(key, 0)
        if isinstance(bound, bool) or not isinstance(bound, int | float):
            raise ValueError(f"{path}/{key}: must be a number")
    for key in ("properties", "$defs", "definitions"):
        for name, sub in (schema.get(key) or {}).items():
            check_schema(sub, f"{path}/{key}/{name}", root)
    for key in ("items", "additionalProperties", "not"):
        if key in schema and not isinstance(schema[key], bool):
            check_schema(schema[key], f"{path}/{key}", root)
    for key in ("anyOf", "oneOf", "allOf"):
        for i, sub in enumerate(schema.get(key) or []):
            check_schema(sub, f"{path}/{key}/{i}", root)


def validate(instance: Any, schema: Any) -> list[str]:
    """Every way ``instance`` violates ``schema`` (empty when it conforms)."""
    errors: list[str] = []
    _validate(instance, schema, schema, "$", errors)
    return errors


def _is_type(value: Any, name: str) -> bool:
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "string":
        return isinstance(value, str)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if isinstance(value, bool):
        return False
    if name == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return isinstance(value, int | float)  # number


def _resolve(root: Any, ref: str) -> Any:
    node = root
    for raw in ref.lstrip("#").split("/"):
        if not raw:
            continue
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise ValueError(f"unresolvable $ref {ref!r}")
    return node


def _equal(a: Any, b: Any) -> bool:
    # JSON equality: 1 == 1.0, but true is not 1.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _validate(value: Any, schema: Any, root: Any, at: str, errors: list[str]) -> None:
    if schema is True:
        return
    if schema is False:
        errors.append(f"{at}: no value is allowed here")
        return
    if "$ref" in schema:
        _validate(value, _resolve(root, schema["$ref"]), root, at, errors)
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_is_type(value, n) for n in names):
            errors.append(f"{at}: expected {' or '.join(names)}, got {_json_type(value)}")
            return
    if "enum" in schema and not any(_equal(value, e) for e in schema["enum"]):
        errors.append(f"{at}: {value!r:.60} is not one of {schema['enum']!r:.120}")
    if "const" in schema and not _equal(value, schema["const"]):
        errors.append(f"{at}: expected {schema['const']!r:.60}")
    if isinstance(value, dict):
        _validate_object(value, schema, root, at, errors)
    elif isinstance(value, list):
        _validate_array(value, schema, root, at, errors)
    elif isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(f"{at}: shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{at}: longer than {schema['maxLength']} characters")
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            errors.append(f"{at}: does not match pattern {schema['pattern']!r}")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _validate_number(value, schema, at, errors)
    for sub in schema.get("allOf") or []:
        _validate(value, sub, root, at, errors)
    if "anyOf" in schema and not any(_conforms(value, s, root) for s in schema["anyOf"]):
        errors.append(f"{at}: matches none of anyOf")
    if "oneOf" in schema:
        matches = sum(1 for s in schema["oneOf"] if _conforms(value, s, root))
        if matches != 1:
            errors.append(f"{at}: matches {matches} of oneOf, expected exactly 1")
    if "not" in schema and _conforms(value, schema["not"], root):
        errors.append(f"{at}: matches a schema it must not match")


def _conforms(value: Any, schema: Any, root: Any) -> bool:
    sub: list[str] = []
    _validate(value, schema, root, "$", sub)
    return not sub


def _validate_object(value: dict[str, Any], schema: Any, root: Any, at: str, errors: list[str]) -> None:
    for name in schema.get("required") or []:
        if name not in value:
            errors.append(f"{at}: missing required property {name!r}")
    props: Mapping[str, Any] = schema.get("properties") or {}
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if key in props:
            _validate(item, props[key], root, f"{at}.{key}", errors)
        elif extra is False:
            errors.append(f"{at}: unexpected property {key!r}")
        elif extra is not True:
            _validate(item, extra, root, f"{at}.{key}", errors)


def _validate_array(value: list[Any], schema: Any, root: Any, at: str, errors: list[str]) -> None:
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(f"{at}: fewer than {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(f"{at}: more than {schema['maxItems']} items")
    items = schema.get("items")
    if items is not None:
        for i, item in enumerate(value):
            _validate(item, items, root, f"{at}[{i}]", errors)


def _validate_number(value: float, schema: Any, at: str, errors: list[str]) -> None:
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{at}: {value} is below the minimum {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        errors.append(f"{at}: {value} is above the maximum {schema['maximum']}")
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        errors.append(f"{at}: {value} must be above {schema['exclusiveMinimum']}")
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        errors.append(f"{at}: {value} must be below {schema['exclusiveMaximum']}")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__
