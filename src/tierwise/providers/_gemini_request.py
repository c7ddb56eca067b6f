"""Building a Gemini ``generateContent`` request body from tierwise's types.

Kept apart from ``gemini.py`` (the adapter and its reply parsing) because it is
the request side only: ``contents`` turns, function responses, ``tool_choice``,
``generationConfig`` and the deep merge of ``extra_body``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..types import Message, Request

__all__ = ["contents", "generation_config", "google_extra", "google_signature", "merge", "tool_choice"]

# Google's documented value for "no signature available, skip validation". Sent only
# for a turn none of whose calls carries a real signature (a history written by hand,
# or by another provider after a fallback): Gemini 3 rejects an unsigned call, and the
# stand-in makes it accept the turn, at the cost of the model not getting its own
# reasoning state back. A turn with a real signature is replayed exactly as received
# (for parallel calls Gemini signs only the first).
_SKIP_SIGNATURE = "skip_thought_signature_validator"

# reasoning_effort → thinkingBudget, as Google's own OpenAI-compatible endpoint maps
# it. A budget works on 2.5 and 3.x models alike; thinkingLevel is 3.x only.
_EFFORT_BUDGET = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576}

_TOOL_CHOICE_MODE = {"auto": "AUTO", "none": "NONE", "required": "ANY", "any": "ANY"}


def contents(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Messages → ``contents``. System turns go to ``systemInstruction`` instead;
    consecutive tool results become one user turn (Gemini pairs a batch of
    parallel calls with one turn of responses); empty turns are dropped, as the
    API rejects parts-less contents."""
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    tool_turn: list[dict[str, Any]] | None = None
    for m in messages:
        role = m.role
        if role == "system":
            continue
        if role == "tool":
            response = _function_response(m, call_names)
            if tool_turn is None:
                tool_turn = []
                contents.append({"role": "user", "parts": tool_turn})
            tool_turn.append({"functionResponse": response})
            continue
        tool_turn = None
        parts = _parts(m.content)
        if role == "assistant":
            signed = any(tc.thought_signature for tc in m.tool_calls)
            for tc in m.tool_calls:
                call: dict[str, Any] = {"name": tc.name, "args": tc.arguments}
                if tc.id:
                    call["id"] = tc.id
                    call_names[tc.id] = tc.name
                part: dict[str, Any] = {"functionCall": call}
                if tc.thought_signature:
                    part["thoughtSignature"] = tc.thought_signature
                elif not signed:
                    part["thoughtSignature"] = _SKIP_SIGNATURE
                parts.append(part)
        if parts:
            contents.append({"role": "model" if role == "assistant" else "user", "parts": parts})
    return contents


def _parts(content: str | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    if not content:
        return []
    if isinstance(content, str):
        return [{"text": content}]
    # Gemini-native parts pass through; OpenAI-style {"type": "text"} parts are
    # the one foreign shape worth translating, since Message.text understands it.
    return [
        {"text": p.get("text", "")} if p.get("type") == "text" and "text" in p else dict(p) for p in content
    ]


def _function_response(m: Message, call_names: Mapping[str, str]) -> dict[str, Any]:
    name = m.name or (call_names.get(m.tool_call_id) if m.tool_call_id else None)
    if not name:
        raise ValueError(
            "Gemini needs the function name of a tool result: set Message.name or a "
            "tool_call_id matching an earlier assistant tool call"
        )
    text = m.text
    try:
        parsed: Any = json.loads(text) if text else None
    except (ValueError, RecursionError):
        parsed = text
    response: dict[str, Any] = {
        "name": name,
        "response": parsed if isinstance(parsed, dict) else {"result": parsed if parsed is not None else ""},
    }
    if m.tool_call_id:
        response["id"] = m.tool_call_id
    return response


def tool_choice(choice: str | dict[str, Any]) -> dict[str, Any]:
    """OpenAI/Anthropic tool_choice shapes → ``functionCallingConfig``."""
    if isinstance(choice, str):
        mode = _TOOL_CHOICE_MODE.get(choice.lower())
        if mode is None:
            raise ValueError(f"unsupported tool_choice {choice!r} for Gemini")
        return {"mode": mode}
    fn = choice.get("function")
    name = fn.get("name") if isinstance(fn, Mapping) else choice.get("name")
    if isinstance(name, str) and name:
        return {"mode": "ANY", "allowedFunctionNames": [name]}
    kind = choice.get("type") or choice.get("mode")
    if isinstance(kind, str):
        return tool_choice(kind)
    raise ValueError(f"unsupported tool_choice {choice!r} for Gemini")


def generation_config(request: Request) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if request.max_tokens is not None:
        config["maxOutputTokens"] = request.max_tokens
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    if request.stop:
        config["stopSequences"] = list(request.stop)
    if request.seed is not None:
        config["seed"] = request.seed
    fmt = request.response_format
    if fmt:
        kind = fmt.get("type")
        if kind == "json_object":
            config["responseMimeType"] = "application/json"
        elif kind == "json_schema":
            spec = fmt.get("json_schema") or {}
            schema = spec.get("schema") if isinstance(spec, Mapping) else None
            config["responseMimeType"] = "application/json"
            if schema is not None:
                config["responseJsonSchema"] = schema
        elif kind != "text":
            raise ValueError(f"unsupported response_format type {kind!r} for Gemini")
    budget = request.thinking_budget
    if budget is None and request.reasoning_effort is not None:
        effort = request.reasoning_effort.lower()
        if effort not in _EFFORT_BUDGET:
            raise ValueError(f"unsupported reasoning_effort {request.reasoning_effort!r} for Gemini")
        budget = _EFFORT_BUDGET[effort]
    if budget is not None:
        # Thought summaries cost nothing extra (thinking is billed either way) and
        # fill Response.reasoning, so ask for them whenever thinking is on.
        config["thinkingConfig"] = (
            {"thinkingBudget": budget, "includeThoughts": True} if budget != 0 else {"thinkingBudget": 0}
        )
    return config


def merge(target: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """Deep-merge ``extra_body``: nested objects merge (so ``{"generationConfig":
    {"topK": 40}}`` adds one knob), other values replace, ``None`` removes a key."""
    for key, value in extra.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = value


def google_signature(tool_call: Any) -> str | None:
    """A Gemini thought signature where Google's OpenAI-compatible endpoint (and gateways
    in front of Gemini) put it on a Chat Completions tool call:
    ``extra_content.google.thought_signature``. Read by the OpenAI adapter (kept on the
    call, so a conversation continued on the Gemini adapter sends it back) and by ``serve``."""
    extra = tool_call.get("extra_content") if isinstance(tool_call, Mapping) else None
    google = extra.get("google") if isinstance(extra, Mapping) else None
    sig = google.get("thought_signature") if isinstance(google, Mapping) else None
    return sig if isinstance(sig, str) and sig else None


def google_extra(signature: str) -> dict[str, Any]:
    """``extra_content`` carrying ``signature`` the way ``google_signature`` reads it."""
    return {"google": {"thought_signature": signature}}
