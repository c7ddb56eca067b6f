"""Reply bodies in the providers' own formats, built from normalized values.

The reverse of ``_normalize``: the mock LLM server (``tierwise.testing``) answers
with these, and so does ``tierwise serve``, so a body shape is written once and
both speak it the same way.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

__all__ = ["anthropic_error", "openai_embeddings", "openai_error"]


def openai_embeddings(model: str, vectors: list[list[float]], tokens: int, *, b64: bool) -> dict[str, Any]:
    """An OpenAI embeddings reply; ``b64`` sends little-endian float32 bytes, as
    OpenAI does for ``encoding_format: "base64"`` (the official SDK's default)."""
    return {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() if b64 else v,
            }
            for i, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def openai_error(
    message: str, etype: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": etype, "param": param, "code": code}}


def anthropic_error(etype: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": etype, "message": message}}
