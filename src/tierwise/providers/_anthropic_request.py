"""Building an Anthropic Messages request body from tierwise's ``Message`` and ``Tool``.

Kept apart from ``anthropic.py`` (the adapter and its reply parsing) because it is
the request side only: hoisting system prompts, grouping tool results into user
turns, and translating OpenAI-style ``tool_choice`` and ``response_format``.
Request errors here are the caller's (``BadRequestError``), found before sending.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import BadRequestError
from ..types import Message, Tool
from ._tool_ids import fit_tool_id

__all__ = ["THINKING_TYPES", "json_schema", "messages_body", "thinking_blocks", "tool_body", "tool_choice"]

_TOOL_CHOICE: dict[str, str] = {"auto": "auto", "required": "any", "any": "any", "none": "none"}


def messages_body(
    messages: list[Message], provider: str, model: str
) -> tuple[str | list[dict[str, Any]] | None, list[dict[str, Any]]]:
    """Split out the system prompt and map turns to Anthropic's shapes."""
    system: list[str | list[dict[str, Any]]] = []
    system_blocks = False
    out: list[dict[str, Any]] = []
    results: list[dict[str, Any]] | None = None  # the open user turn of tool_result blocks
    for m in messages:
        role = m.role
        content = m.content
        if role == "system":
            if isinstance(content, list):
                system_blocks = True
                system.append(content)
            else:
                system.append(content or "")
            continue  # hoisted: does not interrupt a run of tool results
        if role == "tool":
            if not m.tool_call_id:
                raise BadRequestError(
                    "a 'tool' message needs tool_call_id (the tool_use id it answers)",
                    provider=provider,
                    model=model,
                )
            block: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": fit_tool_id(m.tool_call_id, "anthropic"),
            }
            if content:
                block["content"] = content
            if results is None:
                results = []
                out.append({"role": "user", "content": results})
            results.append(block)
            continue
        results = None
        if role == "user":
            out.append({"role": "user", "content": "" if content is None else content})
        elif m.tool_calls or _thinking(m):
            # Signed thinking blocks go first, unchanged: the API verifies them and wants
            # them before the tool_use blocks whose results follow.
            blocks: list[dict[str, Any]] = _thinking(m)
            if not content:
                pass
            elif isinstance(content, str):
                blocks.append({"type": "text", "text": content})
            else:
                blocks.extend(content)
            for call in m.tool_calls:
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": fit_tool_id(call.id, "anthropic"),
                        "name": call.name,
                        "input": _call_input(call.arguments, call.raw_arguments, provider, model),
                    }
                )
            out.append({"role": "assistant", "content": blocks})
        elif content:
            # An empty assistant turn carries nothing and the API rejects it.
            out.append({"role": "assistant", "content": content})
    if not system:
        return None, out
    if not system_blocks:
        return "\n\n".join(s for s in system if isinstance(s, str)), out
    merged: list[dict[str, Any]] = []
    for part in system:
        if isinstance(part, str):
            if part:
                merged.append({"type": "text", "text": part})
        else:
            merged.extend(part)
    return merged, out


def _thinking(m: Message) -> list[dict[str, Any]]:
    """The assistant turn's Anthropic thinking blocks (other providers' items skipped)."""
    return thinking_blocks(m.reasoning_items)


#: Anthropic's own reasoning blocks among provider-native reasoning records.
THINKING_TYPES = frozenset(("thinking", "redacted_thinking"))


def thinking_blocks(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The Anthropic blocks among ``items`` (copies), in order: what Anthropic signed
    and must get back unchanged; every other provider's records are skipped."""
    return [dict(item) for item in items if item.get("type") in THINKING_TYPES]


def _call_input(arguments: dict[str, Any], raw: str, provider: str, model: str) -> dict[str, Any]:
    if arguments or not raw:
        return arguments
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError):
        parsed = None
    if not isinstance(parsed, dict):
        raise BadRequestError(
            "assistant tool call arguments are not a JSON object", provider=provider, model=model
        )
    return parsed


def tool_choice(choice: Any, parallel: bool | None, provider: str, model: str) -> dict[str, Any] | None:
    """OpenAI-style ``tool_choice`` → Anthropic's; Anthropic-shaped dicts pass through."""
    out: dict[str, Any] | None
    if choice is None:
        out = None
    elif isinstance(choice, str):
        kind = _TOOL_CHOICE.get(choice)
        if kind is None:
            raise BadRequestError(
                f"unknown tool_choice {choice!r}; use auto, required, none or {{'name': ...}}",
                provider=provider,
                model=model,
            )
        out = {"type": kind}
    elif isinstance(choice, Mapping):
        fn = choice.get("function")
        if choice.get("type") == "function" and isinstance(fn, Mapping):
            out = {"type": "tool", "name": fn.get("name")}
        elif "type" not in choice and "name" in choice:
            out = {"type": "tool", "name": choice["name"]}
        else:
            out = dict(choice)
    else:
        raise BadRequestError(
            f"tool_choice must be a string or a dict, got {type(choice).__name__}",
            provider=provider,
            model=model,
        )
    if parallel is False:
        if out is None:
            out = {"type": "auto"}
        if out.get("type") != "none":
            out["disable_parallel_tool_use"] = True
    return out


def json_schema(fmt: Mapping[str, Any], provider: str, model: str) -> dict[str, Any]:
    spec = fmt.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, Mapping) else None
    if not isinstance(schema, Mapping):
        raise BadRequestError(
            "response_format json_schema needs {'json_schema': {'schema': {...}}}",
            provider=provider,
            model=model,
        )
    return {"type": "json_schema", "schema": schema}


def tool_body(tool: Tool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name}
    if tool.description:
        out["description"] = tool.description
    out["input_schema"] = tool.parameters
    return out
