"""The learned router's features and storage: hashed-n-gram TF-IDF rows, embeddings, packed arrays.

Split from ``learned.py`` so the model there reads as fit / predict / route /
calibrate; everything here is numpy-only (no scikit-learn), because it runs at
predict time too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._ngrams import HashTable, NgramHasher

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FloatArray = npt.NDArray[np.float64]

__all__ = ["Featurizer", "embedding_matrix", "pack", "unpack", "word_count"]


def word_count(text: str) -> int:
    return len(text.split())


def embedding_matrix(embeddings: Any, n: int, *, dim: int | None = None) -> FloatArray:
    """``embeddings`` as an L2-normalized ``(n, dim)`` float array, or a ``ValueError`` naming the problem.

    Normalized because providers differ (OpenAI's vectors are unit length, others'
    are not) and the regression should see directions, not magnitudes.
    """
    import numpy as np

    try:
        e = np.asarray(embeddings, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"embeddings must be numbers, one row per prompt: {exc}") from None
    if e.ndim != 2 or e.shape[0] != n:
        raise ValueError(f"embeddings must be one row per prompt: {n} prompts, got shape {list(e.shape)}")
    if dim is not None and e.shape[1] != dim:
        raise ValueError(f"embeddings have dimension {e.shape[1]}; the model was fitted with {dim}")
    if not np.all(np.isfinite(e)):
        raise ValueError("embeddings contain nan or infinity")
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out: FloatArray = e / norms
    return out


def pack(arr: Any) -> dict[str, Any]:
    """A numpy array as JSON: dtype, shape and the little-endian bytes in base64 (exact, compact)."""
    import base64

    import numpy as np

    a = np.ascontiguousarray(arr)
    dtype = {"f": "<f8", "u": "<u8"}[a.dtype.kind]
    return {
        "dtype": dtype,
        "shape": list(a.shape),
        "data": base64.b64encode(a.astype(dtype).tobytes()).decode("ascii"),
    }


def unpack(obj: Any, field: str) -> Any:
    import base64
    import binascii

    import numpy as np

    if not isinstance(obj, dict) or obj.get("dtype") not in ("<f8", "<u8"):
        raise ValueError(f"outcome model field {field!r} is not a packed array")
    shape = tuple(int(d) for d in obj.get("shape", ()))
    try:
        raw = base64.b64decode(obj["data"], validate=True)
    except (KeyError, TypeError, binascii.Error) as exc:
        raise ValueError(f"outcome model field {field!r} has malformed data: {exc}") from None
    arr = np.frombuffer(raw, dtype=obj["dtype"])
    if arr.size != math.prod(shape):
        raise ValueError(f"outcome model field {field!r}: {arr.size} values for shape {list(shape)}")
    return arr.reshape(shape).astype(np.float64 if obj["dtype"] == "<f8" else np.uint64)


class Featurizer:
    """Hashed word + char n-grams (``_ngrams``) → sublinear TF × IDF, L2-normalized, + log length.

    ``keys`` is the sorted array of n-gram hashes kept at fit time (column j of
    the text block is ``keys[j]``); the last column is the length feature.
    """

    def __init__(self, params: Mapping[str, Any], keys: Any, idf: Any) -> None:
        import numpy as np

        self.params = dict(params)
        word = self.params.get("word_ngrams")
        char = self.params.get("char_ngrams")
        self.hasher = NgramHasher(
            tuple(word) if word else None,
            tuple(char) if char else None,
            word_chars=int(self.params.get("word_chars", 20_000)),
            char_chars=int(self.params.get("char_chars", 2_000)),
        )
        self.keys = np.asarray(keys, dtype=np.uint64)
        self.idf = np.asarray(idf, dtype=np.float64)
        if self.keys.shape != self.idf.shape or self.keys.ndim != 1:
            raise ValueError("outcome model keys and idf must be 1-D arrays of one length")
        if self.keys.size > 1 and not bool(np.all(self.keys[1:] > self.keys[:-1])):
            raise ValueError("outcome model keys must be sorted and distinct")
        self.n_text = int(self.keys.size)
        self.n_features = self.n_text + 1  # + log word count
        self.table = HashTable(self.keys)

    def lookup(self, hashes: Any) -> tuple[Any, Any]:
        """(columns, counts) of the distinct known n-grams among ``hashes``."""
        import numpy as np

        cols = self.table.lookup(hashes)
        u, counts = np.unique(cols[cols >= 0], return_counts=True)
        return u, counts

    def row(self, text: str) -> tuple[Any, Any, float]:
        """(columns, L2-normalized TF-IDF values, length feature) of one text."""
        import numpy as np

        cols, counts = self.lookup(self.hasher.hashes(text))
        vals = (1.0 + np.log(counts)) * self.idf[cols]
        norm = float(np.sqrt(vals @ vals))
        if norm > 0:
            vals /= norm
        return cols, vals, math.log1p(word_count(text)) / 8.0
