"""Hashed word and character n-grams of a text, computed with numpy array operations.

Why hashing, and why not scikit-learn's analyzers: the learned router scores every
request on the hot path, and building the n-gram *strings* of a 2,000-word prompt
(≈16,000 of them, each sliced, hashed and looked up in a dict by the interpreter)
took ≈6 ms. Here the text becomes one array of code points and every n-gram
becomes a 64-bit polynomial hash computed from prefix sums, so the whole prompt is
a few dozen vectorized operations (well under a millisecond), the same at fit and
at predict time, so a fitted model and a loaded one see identical features.

The n-grams follow scikit-learn's conventions closely (they are what measured
well), but are defined here, not borrowed:

* text is lowercased first;
* **words** are maximal runs of word characters (``str.isalnum()`` or ``_``, the
  same set as ``re``'s ``\\w`` for code points below U+10000; others count as
  non-word) of length ≥ 2; word n-grams are runs of consecutive words;
* **characters** (like ``analyzer="char_wb"``): whitespace runs collapse to one
  space, the text is padded with a space at both ends, and an n-gram is kept only
  when its interior holds no space, i.e. it lies within one space-padded word.

Collisions: hashes are 64-bit and the model keeps only hashes seen in training, so
two different n-grams share a feature with negligible probability (≈ n² / 2⁶⁵ for
n distinct n-grams: about 10⁻⁹ for 200,000).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    U64 = npt.NDArray[np.uint64]

__all__ = ["HashTable", "NgramHasher"]

_BASE = 0x100000001B3  # odd, so it has an inverse modulo 2**64
_MAX_CHARS = 1 << 16  # the longest span hashed; word_chars/char_chars are clamped to it
_SALT_WORD = 0x9E3779B97F4A7C15
_SALT_BIGRAM = 0xC2B2AE3D27D4EB4F
_SALT_CHAR = 0x165667B19E3779F9

_tables: dict[str, object] = {}


def _state() -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], U64, U64]:
    """Word-character and whitespace tables for the BMP, and powers of the base and its inverse."""
    cached = _tables.get("state")
    if cached is None:
        import numpy as np

        chars = [chr(i) for i in range(0x10000)]
        word = np.fromiter((c.isalnum() or c == "_" for c in chars), dtype=np.bool_, count=0x10000)
        space = np.fromiter((c.isspace() for c in chars), dtype=np.bool_, count=0x10000)
        pw = _powers(_BASE, _MAX_CHARS + 1)
        ipw = _powers(pow(_BASE, -1, 1 << 64), _MAX_CHARS + 1)
        cached = (word, space, pw, ipw)
        _tables["state"] = cached
    return cached  # type: ignore[return-value]


def _powers(base: int, n: int) -> U64:
    """``base**k mod 2**64`` for k = 0..n-1 (wrapping uint64 products, exact)."""
    import numpy as np

    out = np.empty(n, dtype=np.uint64)
    out[0] = 1
    step = 1
    b = np.uint64(base)
    with np.errstate(over="ignore"):
        # doubling: out[step:2step] = out[:step] * base**step
        while step < n:
            m = min(step, n - step)
            out[step : step + m] = out[:m] * b
            b = b * b
            step += m
    return out


def _mix(h: U64) -> U64:
    """splitmix64 finalizer: spreads the polynomial hash over all 64 bits (in place)."""
    c1, c2, s30, s27, s31 = _consts()[:5]
    h ^= h >> s30
    h *= c1
    h ^= h >> s27
    h *= c2
    h ^= h >> s31
    return h


def _consts() -> tuple[np.uint64, ...]:
    """numpy scalars built once: making one costs about a microsecond, and a call uses dozens."""
    cached = _tables.get("consts")
    if cached is None:
        import numpy as np

        cached = tuple(
            np.uint64(v)
            for v in (0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 30, 27, 31, _BASE, _SALT_WORD, _SALT_BIGRAM, 32)
        )
        _tables["consts"] = cached
    return cached  # type: ignore[return-value]


class NgramHasher:
    """Turns a text into the 64-bit hashes of its word and character n-grams.

    ``word_ngrams``/``char_ngrams`` are inclusive (lo, hi) ranges or ``None``;
    words are taken from the first ``word_chars`` characters and character n-grams
    from the first ``char_chars``, which bounds the time spent on huge prompts.
    """

    def __init__(
        self,
        word_ngrams: tuple[int, int] | None,
        char_ngrams: tuple[int, int] | None,
        *,
        word_chars: int = 20_000,
        char_chars: int = 2_000,
    ) -> None:
        for name, rng in (("word_ngrams", word_ngrams), ("char_ngrams", char_ngrams)):
            if rng is not None and (len(rng) != 2 or not 1 <= rng[0] <= rng[1]):
                raise ValueError(f"{name} must be (lo, hi) with 1 <= lo <= hi, got {rng!r}")
        if word_ngrams is not None and word_ngrams[1] > 2:
            raise ValueError("word_ngrams supports unigrams and bigrams only (hi <= 2)")
        self.word_ngrams = word_ngrams
        self.char_ngrams = char_ngrams
        self.word_chars = min(int(word_chars), _MAX_CHARS)
        self.char_chars = min(int(char_chars), _MAX_CHARS)

    def hashes(self, text: str) -> U64:
        """Every n-gram's hash, once per occurrence (unsorted)."""
        import numpy as np

        word_tab, space_tab, pw, ipw = _state()
        parts: list[U64] = []
        wanted = max(self.word_chars if self.word_ngrams else 0, self.char_chars if self.char_ngrams else 0)
        cp = np.frombuffer(text[:wanted].lower().encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        if self.word_ngrams is not None and cp.size:
            self._words(cp[: self.word_chars], word_tab, pw, ipw, parts)
        if self.char_ngrams is not None and cp.size:
            self._chars(cp[: self.char_chars], space_tab, pw, ipw, parts)
        if not parts:
            return np.empty(0, dtype=np.uint64)
        return _mix(np.concatenate(parts) if len(parts) > 1 else parts[0])

    def _words(
        self, cp: npt.NDArray[np.uint32], word_tab: npt.NDArray[np.bool_], pw: U64, ipw: U64, out: list[U64]
    ) -> None:
        import numpy as np

        assert self.word_ngrams is not None
        _, _, _, _, _, base, salt_word, salt_bigram, _ = _consts()
        is_word = np.zeros(cp.size + 2, dtype=np.int8)
        is_word[1:-1] = word_tab[np.minimum(cp, 0xFFFF)] & (cp < 0x10000)
        edges = np.diff(is_word)
        starts = np.flatnonzero(edges == 1)
        ends = np.flatnonzero(edges == -1)
        keep = ends - starts >= 2
        starts, ends = starts[keep], ends[keep]
        if starts.size == 0:
            return
        prefix = _prefix(cp, pw)
        tok = (prefix[ends] - prefix[starts]) * ipw[starts]
        tok = _mix(tok ^ salt_word)
        lo, hi = self.word_ngrams
        if lo <= 2 <= hi and tok.size > 1:
            out.append(tok[:-1] * base + tok[1:] + salt_bigram)
        if lo <= 1 <= hi:
            out.append(tok)

    def _chars(
        self, cp: npt.NDArray[np.uint32], space_tab: npt.NDArray[np.bool_], pw: U64, ipw: U64, out: list[U64]
    ) -> None:
        import numpy as np

        assert self.char_ngrams is not None
        is_space = space_tab[np.minimum(cp, 0xFFFF)] & (cp < 0x10000)
        # collapse whitespace runs to one space and pad both ends with a space
        keep = np.ones(cp.size, dtype=np.bool_)
        keep[1:] = ~(is_space[1:] & is_space[:-1])
        seq = np.empty(int(keep.sum()) + 2, dtype=np.uint64)
        seq[0] = seq[-1] = 32
        seq[1:-1] = np.where(is_space, 32, cp)[keep]
        if seq.size > 2 and seq[1] == 32:
            seq = seq[1:]
        if seq.size > 2 and seq[-2] == 32:
            seq = seq[:-1]
        sp = np.zeros(seq.size + 1, dtype=np.intp)
        np.cumsum(seq == 32, out=sp[1:])
        prefix = _prefix(seq, pw)
        lo, hi = self.char_ngrams
        for n in range(lo, hi + 1):
            count = seq.size - n + 1
            if count <= 0:
                break
            # keep the n-grams with no space inside (a space only at either end)
            i = np.flatnonzero(sp[n - 1 : n - 1 + count] == sp[1 : 1 + count]) if n > 2 else np.arange(count)
            h = (prefix[i + n] - prefix[i]) * ipw[i]
            h += np.uint64(_SALT_CHAR + n)
            out.append(h)


def _prefix(cp: npt.NDArray[np.uint32] | U64, pw: U64) -> U64:
    """``prefix[k] = Σ_{j<k} cp[j]·B^j`` (mod 2**64); span hashes are differences of it."""
    import numpy as np

    out = np.empty(cp.size + 1, dtype=np.uint64)
    out[0] = 0
    np.cumsum(cp * pw[: cp.size], out=out[1:])
    return out


class HashTable:
    """Map from 64-bit n-gram hashes to column numbers, probed with a fixed number of numpy ops.

    Why not ``np.searchsorted`` over the sorted keys: a binary search per n-gram
    into 200,000 keys is ~18 dependent cache misses each (≈0.3-0.5 ms for a
    2,000-word prompt). And why not linear probing: unknown n-grams (a third of a
    typical prompt) probe until an empty slot, and vectorized probing runs as
    many rounds as the longest chain (15+ measured). Here a key lives in bucket
    ``hash >> shift`` (the top bits; the hashes are already mixed), each bucket
    holds up to ``WAYS`` keys, and the few keys of fuller buckets go to a small
    sorted stash: a lookup is one gather of the home bucket plus a binary search
    of the misses in the stash, whatever the chain lengths.
    """

    WAYS = 4  # the hit test views a row of WAYS bools as one uint32

    def __init__(self, keys: U64) -> None:
        import numpy as np

        n = int(keys.size)
        bits = max(2, (max(n, 1) - 1).bit_length() - 1)  # about 1.5-3 keys per bucket
        self._shift = np.uint64(64 - bits)
        self._keys = np.zeros((1 << bits, self.WAYS), dtype=np.uint64)
        self._cols = np.full((1 << bits, self.WAYS), -1, dtype=np.int32)  # 6 MB at 200,000 keys
        bucket = (keys >> self._shift).astype(np.intp)
        order = np.argsort(bucket, kind="stable")
        sb = bucket[order]
        rank = np.arange(n) - np.searchsorted(sb, sb)
        fits = rank < self.WAYS
        placed = order[fits]
        self._keys[sb[fits], rank[fits]] = keys[placed]
        self._cols[sb[fits], rank[fits]] = placed.astype(np.int32)
        over = np.sort(order[~fits])  # key order is column order: the stash is sorted too
        self._stash_keys: U64 = keys[over]
        self._stash_cols = over.astype(np.int32)
        # only a miss in a bucket that overflowed can be in the stash (~2% of buckets)
        self._overflowed = np.zeros(1 << bits, dtype=np.bool_)
        self._overflowed[bucket[over]] = True
        self._flat_cols = self._cols.ravel()

    def lookup(self, hashes: U64) -> npt.NDArray[np.int32]:
        """Column of each hash, ``-1`` where the hash is not a key."""
        import numpy as np

        bucket = (hashes >> self._shift).astype(np.intp)
        # np.take(axis=0) gathers whole rows ~7x faster than fancy indexing (measured)
        eq = np.take(self._keys, bucket, axis=0) == hashes[:, None]
        hit = eq.view(np.uint32).ravel() != 0  # a row of 4 bools is 4 bytes: any() in one op
        out: npt.NDArray[np.int32] = self._flat_cols[bucket * self.WAYS + eq.argmax(axis=1)]
        out[~hit] = -1
        miss = np.flatnonzero(~hit & self._overflowed[bucket])
        if miss.size:
            pos = np.searchsorted(self._stash_keys, hashes[miss])
            pos[pos == self._stash_keys.size] = 0
            found = self._stash_keys[pos] == hashes[miss]
            out[miss[found]] = self._stash_cols[pos[found]]
        return out
