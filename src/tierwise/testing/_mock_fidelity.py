"""What makes the mock indistinguishable from the real APIs for a client: strict
request validation (400s in each provider's own shape where the real API rejects a
request), structured outputs that validate against the requested JSON schema,
per-provider model lists and model retrieval, provider-shaped 404s, and the legacy
``/v1/completions`` endpoint.

The rules here are the ones the real APIs enforce and clients get wrong most often;
each message is the real API's wording where it is documented or widely quoted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "choices_of",
    "completion_body",
    "model_list",
    "model_object",
    "not_found_body",
    "strict_problem",
    "structured_text",
]

_OPENAI_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
#: Mistral's API names (its models, served on its OpenAI-compatible wire) and its id rule.
_MISTRAL_MODELS = ("mistral", "magistral", "codestral", "devstral", "ministral", "pixtral", "open-mistral")
_MISTRAL_ID = re.compile(r"[A-Za-z0-9]{9}")
_ANTHROPIC_ID = re.compile(r"[A-Za-z0-9_-]+")


def _tool_id_problem(messages: Sequence[Any], *, mistral: bool) -> str | None:
    """OpenAI caps a tool call's id at 40 characters; Mistral wants exactly 9 alphanumerics."""
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            continue
        ids = [(f"messages[{i}].tool_call_id", m.get("tool_call_id"))] if m.get("role") == "tool" else []
        calls = m.get("tool_calls")
        for j, call in enumerate(calls if isinstance(calls, list) else ()):
            ids.append(
                (f"messages[{i}].tool_calls[{j}].id", call.get("id") if isinstance(call, Mapping) else None)
            )
        for where, value in ids:
            if not isinstance(value, str):
                continue
            if mistral and not _MISTRAL_ID.fullmatch(value):
                return f"Tool call id was {value} but must be a-z, A-Z, 0-9, with a length of 9."
            if len(value) > 40:
                return (
                    f"Invalid '{where}': string too long. Expected a string with maximum length 40, "
                    f"but got a string with length {len(value)} instead."
                )
    return None


def strict_problem(
    provider: str, data: Mapping[str, Any], *, embeddings: bool, model: str = ""
) -> str | None:
    """Why the real API would answer 400 to this body, or ``None``."""
    if embeddings:
        return None
    if provider == "responses":
        from ._mock_responses import responses_problem

        return responses_problem(data)
    if provider == "openai":
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            return "Missing required parameter: 'messages'."
        for i, m in enumerate(messages):
            role = m.get("role") if isinstance(m, Mapping) else None
            if role not in _OPENAI_ROLES:
                return f"Invalid value for 'messages[{i}].role': {role!r}."
        problem = _tool_id_problem(messages, mistral=model.startswith(_MISTRAL_MODELS))
        if problem is not None:
            return problem
        n = data.get("n")
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 128):
            return f"Invalid value for 'n': {n!r}; expected an integer from 1 to 128."
        return None
    if provider == "anthropic":
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            return "messages: Field required"
        if "max_tokens" not in data:
            return "max_tokens: Field required"
        for i, m in enumerate(messages):
            role = m.get("role") if isinstance(m, Mapping) else None
            if role == "system":
                return (
                    f'messages.{i}.role: Unexpected role "system". The Messages API accepts a top-level '
                    '`system` parameter, not "system" as an input message role.'
                )
            if role not in ("user", "assistant"):
                return f"messages.{i}.role: Input should be 'user' or 'assistant'"
            content = m.get("content")
            for j, block in enumerate(content if isinstance(content, list) else ()):
                kind = block.get("type") if isinstance(block, Mapping) else None
                key = {"tool_use": "id", "tool_result": "tool_use_id"}.get(str(kind))
                value = block.get(key) if key is not None else None
                if key is not None and not (isinstance(value, str) and _ANTHROPIC_ID.fullmatch(value)):
                    where = f"messages.{i}.content.{j}.{kind}.{key}"
                    return f"{where}: String should match pattern '^[a-zA-Z0-9_-]+$'"
        return _thinking_problem(data, messages)
    if provider == "gemini":
        contents = data.get("contents")
        if not isinstance(contents, list) or not contents:
            return "* GenerateContentRequest.contents: contents is not specified"
        if model.startswith("gemini-3"):
            return _signature_problem(contents)
    return None


def _thinking_problem(data: Mapping[str, Any], messages: Sequence[Any]) -> str | None:
    """Anthropic with extended thinking on: the last assistant turn, when it called
    tools, must start with its (signed) thinking block, and a thinking block sent back
    needs its signature; the real API answers 400 otherwise."""
    for i, m in enumerate(messages):
        content = m.get("content") if isinstance(m, Mapping) else None
        for j, block in enumerate(content if isinstance(content, list) else ()):
            if isinstance(block, Mapping) and block.get("type") == "thinking" and not block.get("signature"):
                return f"messages.{i}.content.{j}.thinking.signature: Field required"
    thinking = data.get("thinking")
    if not (isinstance(thinking, Mapping) and thinking.get("type") == "enabled"):
        return None
    last = next(
        (
            i
            for i in range(len(messages) - 1, -1, -1)
            if isinstance(messages[i], Mapping) and messages[i].get("role") == "assistant"
        ),
        None,
    )
    if last is None:
        return None
    content = messages[last].get("content")
    blocks = [b for b in content if isinstance(b, Mapping)] if isinstance(content, list) else []
    if any(b.get("type") == "tool_use" for b in blocks) and blocks[0].get("type") not in (
        "thinking",
        "redacted_thinking",
    ):
        return (
            f"messages.{last}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
            f"`{blocks[0].get('type')}`. When `thinking` is enabled, a final `assistant` message must "
            "start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` "
            "blocks). We recommend you include thinking blocks from previous turns."
        )
    return None


def _signature_problem(contents: Sequence[Any]) -> str | None:
    """Gemini 3: in the current turn (after the last user text), each model turn's first
    function call must carry the ``thoughtSignature`` the API issued."""
    start = 0
    for i, c in enumerate(contents):
        parts = c.get("parts") if isinstance(c, Mapping) else None
        if (
            isinstance(c, Mapping)
            and c.get("role", "user") == "user"
            and isinstance(parts, list)
            and any(isinstance(p, Mapping) and "text" in p for p in parts)
        ):
            start = i + 1
    for c in contents[start:]:
        if not isinstance(c, Mapping) or c.get("role") != "model":
            continue
        calls = [p for p in c.get("parts") or () if isinstance(p, Mapping) and "functionCall" in p]
        if calls and not calls[0].get("thoughtSignature"):
            name = (
                calls[0]["functionCall"].get("name") if isinstance(calls[0]["functionCall"], Mapping) else ""
            )
            return (
                "Function call is missing a thought_signature in functionCall parts. This is required "
                f"for tools to work correctly. Additional data, function call `default_api:{name}`. "
                "Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
            )
    return None


def choices_of(data: Mapping[str, Any]) -> int:
    """OpenAI's ``n`` (how many choices to answer), 1 when absent or invalid."""
    n = data.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 128 else 1


# -- structured outputs -------------------------------------------------------------


def _schema_request(provider: str, data: Mapping[str, Any]) -> tuple[bool, Any]:
    """(JSON requested, its schema or None) for this request body."""
    if provider == "responses":
        text = data.get("text")
        fmt = text.get("format") if isinstance(text, Mapping) else None
        if isinstance(fmt, Mapping):
            if fmt.get("type") == "json_schema":
                return True, fmt.get("schema")
            if fmt.get("type") == "json_object":
                return True, None
    elif provider == "openai":
        fmt = data.get("response_format")
        if isinstance(fmt, Mapping):
            if fmt.get("type") == "json_schema":
                spec = fmt.get("json_schema")
                return True, spec.get("schema") if isinstance(spec, Mapping) else None
            if fmt.get("type") == "json_object":
                return True, None
    elif provider == "anthropic":
        fmt = data.get("output_format")
        if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
            return True, fmt.get("schema")
    elif provider == "gemini":
        config = data.get("generationConfig") or data.get("generation_config")
        if isinstance(config, Mapping):
            mime = config.get("responseMimeType") or config.get("response_mime_type")
            schema = (
                config.get("responseJsonSchema")
                or config.get("response_json_schema")
                or config.get("responseSchema")
                or config.get("response_schema")
            )
            if mime == "application/json" or schema is not None:
                return True, schema
    return False, None


def structured_text(provider: str, data: Mapping[str, Any], echo: str, *, invalid: bool) -> str | None:
    """The JSON answer to a request for structured output (``None``: none asked).

    With a schema the answer is a value that validates against it; without one, an
    object carrying the echo. ``invalid`` answers broken JSON instead, for testing
    verifiers and repair loops."""
    wanted, schema = _schema_request(provider, data)
    if not wanted:
        return None
    if invalid:
        return '{"answer": "' + echo[:40]
    if not isinstance(schema, Mapping):
        return json.dumps({"answer": echo})
    defs = schema.get("$defs") or schema.get("definitions") or {}
    return json.dumps(_value(schema, defs if isinstance(defs, Mapping) else {}, 0, echo))


def _value(schema: Any, defs: Mapping[str, Any], depth: int, echo: str) -> Any:
    if not isinstance(schema, Mapping) or depth > 12:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return _value(defs.get(ref.rsplit("/", 1)[-1]), defs, depth + 1, echo)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            chosen = next(
                (o for o in options if isinstance(o, Mapping) and o.get("type") != "null"), options[0]
            )
            return _value(chosen, defs, depth + 1, echo)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    kind = kind.lower() if isinstance(kind, str) else ("object" if "properties" in schema else "string")
    if kind == "object":
        props = schema.get("properties") or {}
        return (
            {str(k): _value(v, defs, depth + 1, echo) for k, v in props.items()}
            if isinstance(props, Mapping)
            else {}
        )
    if kind == "array":
        low = schema.get("minItems")
        count = low if isinstance(low, int) and low > 1 else 1
        return [_value(schema.get("items"), defs, depth + 1, echo) for _ in range(count)]
    if kind == "integer":
        return _number(schema, 0, int)
    if kind == "number":
        return _number(schema, 0.5, float)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema, echo)


def _number(schema: Mapping[str, Any], default: float, cast: type[int] | type[float]) -> float:
    low = schema.get("minimum")
    high = schema.get("maximum")
    value: float = default
    if isinstance(low, int | float):
        value = low
    exclusive = schema.get("exclusiveMinimum")
    if isinstance(exclusive, int | float):
        value = exclusive + 1
    if isinstance(high, int | float) and value > high:
        value = high
    return cast(value)


def _string(schema: Mapping[str, Any], echo: str) -> str:
    formats = {
        "date-time": "2026-01-01T00:00:00Z",
        "date": "2026-01-01",
        "time": "00:00:00",
        "email": "mock@example.com",
        "uri": "https://example.com/mock",
        "uuid": "00000000-0000-4000-8000-000000000000",
    }
    fmt = schema.get("format")
    text = formats.get(fmt, echo[:60] or "mock") if isinstance(fmt, str) else (echo[:60] or "mock")
    low, high = schema.get("minLength"), schema.get("maxLength")
    if isinstance(low, int) and len(text) < low:
        text = text + "x" * (low - len(text))
    if isinstance(high, int) and len(text) > high:
        text = text[:high]
    return text


# -- models and errors ----------------------------------------------------------------


def model_object(provider: str, name: str) -> dict[str, Any]:
    """One model, in the shape ``GET .../models/{id}`` answers."""
    if provider == "anthropic":
        return {"type": "model", "id": name, "display_name": name, "created_at": "2026-01-01T00:00:00Z"}
    if provider == "gemini":
        return {
            "name": f"models/{name}",
            "version": "001",
            "displayName": name,
            "description": "tierwise mock model",
            "inputTokenLimit": 1_048_576,
            "outputTokenLimit": 65_536,
            "supportedGenerationMethods": [
                "generateContent",
                "countTokens",
                "embedContent",
                "batchGenerateContent",
            ],
        }
    return {"id": name, "object": "model", "created": 0, "owned_by": "tierwise-mock"}


def model_list(provider: str, names: Sequence[str]) -> dict[str, Any]:
    """``GET .../models`` in the caller's format."""
    rows = [model_object(provider, n) for n in names]
    if provider == "anthropic":
        return {
            "data": rows,
            "has_more": False,
            "first_id": names[0] if names else None,
            "last_id": names[-1] if names else None,
        }
    if provider == "gemini":
        return {"models": rows}
    return {"object": "list", "data": rows}


def not_found_body(provider: str, message: str) -> dict[str, Any]:
    """A 404 body in the provider's error shape."""
    if provider == "anthropic":
        return {"type": "error", "error": {"type": "not_found_error", "message": message}}
    if provider == "gemini":
        return {"error": {"code": 404, "message": message, "status": "NOT_FOUND"}}
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}


def completion_body(
    model: str, text: str, n: int, seq: int, created: int, usage: tuple[int, int]
) -> dict[str, Any]:
    """A legacy ``/v1/completions`` reply."""
    prompt, completion = usage
    return {
        "id": f"cmpl-mock{seq}",
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"text": text, "index": i, "logprobs": None, "finish_reason": "stop"} for i in range(n)],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion * n,
            "total_tokens": prompt + completion * n,
        },
    }
