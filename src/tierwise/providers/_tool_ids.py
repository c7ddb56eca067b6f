"""Tool-call ids that each server accepts, whoever issued them.

A conversation carries the ids of the tool calls made in it: the assistant turn
names each call, and each tool result names the call it answers. The ids come
from whichever provider answered that turn (``call_…`` from OpenAI, ``toolu_…``
from Anthropic, ``call_0`` synthesized for Gemini, a UUID from a client), and the
next turn may go elsewhere (a fallback, a router): servers validate the ids they
are sent, and reject the whole request over one they dislike:

* OpenAI Chat Completions: at most 40 characters ("string too long. Expected a
  string with maximum length 40"); Azure and most gateways in front of it alike.
  The Responses API: ``call_id`` at most 64.
* Mistral: exactly 9 characters of ``a-z``, ``A-Z``, ``0-9`` ("Tool call id was …
  but must be a-z, A-Z, 0-9, with a length of 9."), also behind OpenRouter.
* Anthropic: ``^[a-zA-Z0-9_-]+$``.

So the request builder maps every id that breaks its server's rule to one that
keeps it, the same way on the assistant turn and on the tool result (the pair
still matches), and deterministically (a hash of the id), so the next turn of the
same conversation maps the same way and prompt caches keep their prefix. Ids that
already fit are left alone. Servers do not check an id against ones they issued,
so nothing needs mapping back.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["TOOL_ID_RULES", "fit_tool_id"]

_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ALNUM9 = re.compile(r"[A-Za-z0-9]{9}")
_ANTHROPIC = re.compile(r"[A-Za-z0-9_-]+")

#: ``""``: any id; ``"max40"``: OpenAI's length cap (``"max64"``: its Responses API's);
#: ``"alnum9"``: Mistral's exact format (accepted by every server, so also the rule for
#: routers such as OpenRouter); ``"anthropic"``: Anthropic's character set.
TOOL_ID_RULES = frozenset({"", "max40", "max64", "alnum9", "anthropic"})


def _digest(tool_id: str) -> bytes:
    return hashlib.sha256(tool_id.encode("utf-8", "surrogatepass")).digest()


def _base62(data: bytes, n: int) -> str:
    value = int.from_bytes(data, "big")
    out = []
    for _ in range(n):
        value, r = divmod(value, 62)
        out.append(_ALNUM[r])
    return "".join(out)


def fit_tool_id(tool_id: str, rule: str) -> str:
    """``tool_id`` if it keeps ``rule`` (``TOOL_ID_RULES``), else a stable id derived from it that does."""
    if rule == "" or (rule == "max40" and len(tool_id) <= 40) or (rule == "max64" and len(tool_id) <= 64):
        return tool_id
    if rule in ("max40", "max64"):
        return "call_" + _digest(tool_id).hex()[:32]
    if rule == "alnum9":
        return tool_id if _ALNUM9.fullmatch(tool_id) else _base62(_digest(tool_id), 9)
    if rule == "anthropic":
        if _ANTHROPIC.fullmatch(tool_id):
            return tool_id
        return "toolu_" + _base62(_digest(tool_id), 24)
    raise ValueError(f"unknown tool-id rule {rule!r}; one of {sorted(TOOL_ID_RULES)}")
