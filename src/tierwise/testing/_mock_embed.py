"""Embedding vectors for the mock LLM server.

By default a text's vector is a hashed bag of words: each lower-cased word adds ±1
to one of ``dim`` slots chosen by a stable hash (BLAKE2b, so every process and
Python version agrees), and the result is L2-normalized. Texts that share words
therefore point in similar directions (cosine similarity grows with overlap), the
same text always gets the same vector, and no model or network is needed. A
user-supplied ``embed`` callable replaces this, e.g. to serve a real local
embedding model over real sockets.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

#: ``embed=`` for ``MockLLMServer``: a batch of texts → one vector per text.
EmbedFn = Callable[[list[str]], Sequence[Sequence[float]]]

DEFAULT_EMBEDDING_DIM = 64
_WORD = re.compile(r"\w+")


@functools.lru_cache(maxsize=65_536)
def _slot(word: str, dim: int) -> tuple[int, float]:
    h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
    return h % dim, 1.0 if h >> 63 else -1.0


def hashed_embedding(text: str, dim: int = DEFAULT_EMBEDDING_DIM) -> list[float]:
    """The mock server's default vector for ``text``: a unit-length hashed bag of words.

    A text without any word character is hashed whole, so it still gets a unit vector
    (the same one for the same text).
    """
    if dim < 1:
        raise ValueError(f"embedding dimension must be >= 1, got {dim}")
    vec = [0.0] * dim
    words = _WORD.findall(text.lower()) or [text]
    for word in words:
        index, sign = _slot(word, dim)
        vec[index] += sign
    norm = math.sqrt(math.fsum(x * x for x in vec))
    if norm == 0.0:  # every word cancelled out: fall back to the whole text's slot
        index, sign = _slot(text, dim)
        vec[index] = sign
        return vec
    return [x / norm for x in vec]


def compute_vectors(texts: list[str], dim: int, embed: EmbedFn | None) -> list[list[float]]:
    """Vectors for ``texts``: ``embed(texts)`` when given (checked: one finite vector
    per text, all of one length), else ``hashed_embedding`` at ``dim``."""
    if embed is None:
        return [hashed_embedding(t, dim) for t in texts]
    raw: Any = embed(list(texts))
    try:
        vectors = [[float(x) for x in vec] for vec in raw]
    except (TypeError, ValueError) as exc:
        raise TypeError(f"MockLLMServer embed= must return a list of number lists: {exc}") from None
    if len(vectors) != len(texts):
        raise ValueError(f"MockLLMServer embed= returned {len(vectors)} vectors for {len(texts)} texts")
    if vectors and (len({len(v) for v in vectors}) > 1 or not vectors[0]):
        raise ValueError("MockLLMServer embed= must return non-empty vectors of one length")
    if any(not math.isfinite(x) for v in vectors for x in v):
        raise ValueError("MockLLMServer embed= returned a non-finite value")
    return vectors
