"""pydantic's validation errors → one ``ConfigError`` with dotted field paths.

Validators raise ``FieldError`` to carry an exact path (absolute, or relative to
where pydantic found the error) and a message in tierwise's wording; everything
else pydantic reports is reworded here (unknown keys get a "did you mean", a
misplaced key-shaped value is never echoed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..errors import ConfigError, did_you_mean, redact

__all__ = [
    "SECRET_HINT",
    "SECRET_KEYS",
    "FieldError",
    "FieldErrors",
    "bare_message",
    "config_error",
    "path_of",
    "relative",
    "unknown",
]

#: Keys under which people paste a literal secret. They get a message pointing at
#: ``api_key_env`` instead of a bare "unknown field", wherever they appear.
SECRET_KEYS = frozenset({"api_key", "apikey", "api-key", "key", "token", "api_token", "secret"})
SECRET_HINT = (
    "API keys are never read from the config file: remove it and set "
    'api_key_env = "NAME_OF_ENV_VAR" on the provider; tierwise reads the key from that environment variable'
)


class FieldError(ValueError):
    """Raised inside validators to carry an exact field path out of pydantic.

    ``relative`` paths are appended to where pydantic found the error, for
    validators of nested sections that do not know their own position
    (``budget.limits[2]`` + ``downgrade_to``).
    """

    def __init__(self, field: str, message: str, relative: bool = False) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.relative = relative


class FieldErrors(ValueError):
    """Several ``FieldError`` s out of one validator (the cross-reference checks),
    each reported on its own line."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(e.message for e in errors))
        self.errors = errors


def relative(exc: ConfigError) -> FieldError:
    """A ``ConfigError`` raised by a table check run with ``where=""`` (so its
    field is ``""`` or ``".routes.x"``) as a path relative to the table."""
    return FieldError((exc.field or "").lstrip("."), bare_message(exc), relative=True)


def bare_message(exc: ConfigError) -> str:
    """``exc``'s message without the ``field: `` prefix ConfigError adds."""
    text = str(exc)
    prefix = f"{exc.field}: " if exc.field else ""
    return text[len(prefix) :] if prefix and text.startswith(prefix) else text


def unknown(kind: str, name: str, known: Iterable[str]) -> str:
    hint = did_you_mean(name, sorted(known))
    return f"unknown {kind} {name!r}" + (f" ({hint})" if hint else "")


def _unknown_field(name: str, known: list[str]) -> str:
    if name.casefold() in SECRET_KEYS:
        return SECRET_HINT
    hint = did_you_mean(name, sorted(known))
    return f"unknown field {name!r}" + (f" ({hint})" if hint else "")


def path_of(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _walk(root: type[Any], loc: Sequence[int | str]) -> tuple[list[int | str], list[str]]:
    """``loc`` without pydantic's union tags, and the field names valid at its
    parent (for "did you mean" on an unknown key).

    Walks the schema alongside ``loc``: a section field descends into its model; a
    dict or list field consumes the next part as a key/index (a model alias such as
    ``model`` must not be mistaken for a field name); a discriminated union
    (``[state]``) consumes its tag, which is not part of the file's path.
    """
    model: Any = root  # the model whose field the next part names (None: not a model)
    members: list[type[Any]] = []
    clean: list[int | str] = []
    known: list[str] = []
    skip_key = False
    for part in loc:
        known = []
        if skip_key:  # a dict key or list index: part of the path, not a field
            clean.append(part)
            skip_key = False
            continue
        if len(members) > 1:  # a discriminated union's tag is not part of the path
            tagged = {_tag(m): m for m in members}
            members = []
            if part in tagged:
                model = tagged[str(part)]
                continue
        clean.append(part)
        known = list(model.model_fields) if model is not None else []
        field = model.model_fields.get(str(part)) if model is not None else None
        if field is None:
            model, members = None, []
            continue
        members = _models_in(field.annotation)
        model = members[0] if len(members) == 1 else None
        skip_key = _is_container(field.annotation)
    return clean, known


def _tag(model: type[Any]) -> str | None:
    for name in ("backend", "type"):
        field = model.model_fields.get(name)
        args: tuple[Any, ...] = getattr(field.annotation, "__args__", ()) if field is not None else ()
        if len(args) == 1 and isinstance(args[0], str):
            return args[0]
    return None


def _is_container(annotation: Any) -> bool:
    origin = getattr(annotation, "__origin__", None)
    if origin in (dict, list):
        return True
    return any(_is_container(a) for a in getattr(annotation, "__args__", ()) or ())


def _models_in(annotation: Any) -> list[type[Any]]:
    if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
        return [annotation]
    found: list[type[Any]] = []
    for arg in getattr(annotation, "__args__", ()) or ():
        found.extend(m for m in _models_in(arg) if m not in found)
    return found


def _priority(err: Mapping[str, Any]) -> int:
    # Report the cause, not its echo: a typo'd key (extra_forbidden) also makes the
    # real key "missing", and the typo is what the user must fix.
    loc = err.get("loc", ())
    if err["type"] == "extra_forbidden":
        return 0 if loc and str(loc[-1]).casefold() in SECRET_KEYS else 1
    return 2


def _one_error(root: type[Any], err: Mapping[str, Any], prefix: str = "") -> tuple[str, str]:
    """(field path, message) for one pydantic error, in tierwise's wording."""
    loc, known = _walk(root, tuple(err.get("loc", ())))
    ctx = err.get("ctx") or {}
    inner = ctx.get("error")
    field = path_of([prefix, *loc] if prefix else loc)
    if isinstance(inner, FieldError):
        field = ".".join(p for p in (field, inner.field) if p) if inner.relative else inner.field
        message = inner.message
    elif err["type"] == "extra_forbidden" and loc:
        message = _unknown_field(str(loc[-1]), known)
    elif err["type"] == "missing":
        message = "required field is missing"
    elif isinstance(inner, Exception):
        message = str(inner)  # our own validators' messages, without pydantic's "Value error, "
    else:
        message = err["msg"]
        if "input" in err and err["type"] not in ("model_type", "dict_type"):
            # Never echo something shaped like a key, even from a misplaced value.
            message += f" (got {redact(repr(err['input'])[:60])})"
    return field, message


def config_error(root: type[Any], errors: Iterable[Mapping[str, Any]], prefix: str = "") -> ConfigError:
    """One ``ConfigError`` for every problem pydantic found: ``.field`` is the most
    telling one's path, the message lists them all (a file with three mistakes gets
    three lines, not one and a count), ``.problems`` has each (field, message).
    ``prefix`` roots the paths of a table validated on its own (``strategies.r``)."""
    found: list[tuple[str, str]] = []
    for err in sorted(errors, key=_priority):
        inner = (err.get("ctx") or {}).get("error")
        if isinstance(inner, FieldErrors):  # the cross-reference checks: one line each
            found.extend(_one_error(root, {**err, "ctx": {"error": one}}, prefix) for one in inner.errors)
        else:
            found.append(_one_error(root, err, prefix))
    problems = list(dict.fromkeys(found))
    field, message = problems[0]
    if len(problems) > 1:
        message += "".join(f"\n  also {f or '(top level)'}: {m}" for f, m in problems[1:])
    error = ConfigError(message, field=field or None)
    error.problems = [(ConfigError("", field=f).field or "", ConfigError(m).args[0]) for f, m in problems]
    return error
