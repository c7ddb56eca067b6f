"""Token estimates for rate-limit reservations.

The TPM limiter must reserve tokens *before* the provider says how many a
request used; ``Permit.release(used_tokens)`` corrects the reservation afterwards.
So the estimate needs to be cheap and roughly right, not exact:

``estimate_tokens(request) = prompt tokens + expected output``

* Expected output is ``max_tokens`` when set (providers count it against TPM
  too), else ``DEFAULT_OUTPUT_TOKENS`` (1,024): a typical answer's cap, high
  enough that a burst of unbounded requests does not overrun the window by much
  before their corrections arrive, low enough not to stall the limiter. A
  ``thinking_budget`` without ``max_tokens`` is added on top (thinking is
  billed as output).
* Prompt tokens use tiktoken when it is installed *and* can load its encoding
  without a download (it is imported lazily on first use; any failure — no
  package, no network, no cached file — is remembered and the heuristic is used
  from then on, silently). Non-OpenAI models are counted with ``o200k_base``, a
  fair approximation for a reservation. Counting is memoized per text, so the
  retries and fallbacks of one request do not re-tokenize it.
* The heuristic: ~4 characters per token for ASCII text (the usual figure for
  English and code), with each extra UTF-8 byte of non-ASCII text weighted 1.5
  characters so CJK comes out near one token per character; plus
  ``_PER_MESSAGE`` tokens of chat framing per message and ``_PER_REQUEST`` for
  the reply primer. Images count a flat ``_IMAGE_TOKENS``. Tools and a JSON
  schema count by the length of their JSON. A 2,000-word prompt costs about a
  microsecond (``str.isascii`` and ``len`` run in C); non-ASCII text longer than
  2,048 characters is measured on two 1,024-character samples rather than
  encoded whole (a few µs instead of ~20).

Budgets need more than an estimate: a hard limit holds only if no call costs more
than it reserved. ``prompt_upper_bound`` is a true ceiling on the prompt's input
tokens (UTF-8 bytes: no byte-level tokenizer emits more tokens than bytes), and
``InputBound`` turns it, per deployment, into the input side of a budget
reservation: always the ceiling (``"strict"``, the default) or, opt-in, a ratio
learned from real usage plus a margin (``"learned"``). See ``docs/costs.md``,
"What a hard limit guarantees".
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from ..types import Message, Request

__all__ = [
    "DEFAULT_OUTPUT_TOKENS",
    "IMAGE_TOKEN_CEILING",
    "InputBound",
    "estimate_tokens",
    "heuristic_text_tokens",
    "prompt_upper_bound",
]

DEFAULT_OUTPUT_TOKENS = 1024
"""Output reserved for a request without ``max_tokens``."""

_PER_MESSAGE = 4  # role + separators, as in OpenAI's chat framing
_PER_REQUEST = 3  # the primer before the reply
_IMAGE_TOKENS = 800  # a mid-size image; providers charge ~85 to ~1,600
_FALLBACK_ENCODING = "o200k_base"
#: What ``prompt_upper_bound`` counts per image (the stated image assumption).
#: Providers bill an image by its size: OpenAI's GPT-4o/GPT-5 at most ~1,500 tokens
#: (high detail, after their resize to 2048 x 768 tiles) and its patch-billed minis
#: at most ~3,800; Anthropic about width x height / 750, at most ~1,600 after its
#: resize; Gemini 258 per 768-pixel tile. 6,000 is above all of these. Known
#: exceptions, which need ``InputBound(image_tokens=...)``: gpt-4o-mini, which bills
#: an image at ~33x the tokens (up to ~48,000) at a proportionally lower price, and a
#: Gemini image of more than ~23 tiles.
IMAGE_TOKEN_CEILING = 6000
_BOUND_PER_MESSAGE = 16  # role, separators, name: generous against any chat template
_BOUND_PER_PART = 4  # a content block's own framing
_BOUND_PER_REQUEST = 16
# Instructions a provider adds when tools or a response schema are sent (Anthropic's
# tool-use system prompt is ~250-550 tokens, OpenAI's tool namespace preamble less).
_TOOLS_OVERHEAD = 1024
_IMAGE_PARTS = frozenset(("image_url", "image", "input_image", "inline_data", "image_file"))
_CACHE_SIZE = 256
_SAMPLE = 1024  # characters per sample when measuring a long non-ASCII text

_Counter = Callable[[str], int]
# encoding name -> counter, or None when tiktoken could not provide it.
_encoders: dict[str, _Counter | None] = {}
_model_encoding: dict[str, str] = {}
_count_cache: OrderedDict[tuple[str, str], int] = OrderedDict()


def heuristic_text_tokens(text: str) -> int:
    """~4 characters per token; non-ASCII bytes weigh more (see module docstring)."""
    n = len(text)
    if n == 0:
        return 0
    if text.isascii():
        return (n + 3) // 4
    if n <= 2 * _SAMPLE:
        extra = len(text.encode("utf-8", "surrogatepass")) - n
    else:
        # Encoding a long text costs ~7 ns/char; two samples give the byte ratio
        # at a fraction of that, and prose is homogeneous enough for a reservation.
        mid = n // 2
        sample = text[:_SAMPLE] + text[mid : mid + _SAMPLE]
        extra = (len(sample.encode("utf-8", "surrogatepass")) - len(sample)) * n // len(sample)
    return int((n + 1.5 * extra) / 4) + 1


def _load_encoding(name: str) -> _Counter | None:
    if name in _encoders:
        return _encoders[name]
    counter: _Counter | None = None
    try:
        import tiktoken

        enc = tiktoken.get_encoding(name)

        def counter(text: str, _encode: Any = enc.encode_ordinary) -> int:
            return len(_encode(text))

        counter("warm up")
    except Exception:
        counter = None
    _encoders[name] = counter
    return counter


def _encoding_name(model: str) -> str:
    name = _model_encoding.get(model)
    if name is None:
        name = _FALLBACK_ENCODING
        bare = model.rsplit("/", 1)[-1]
        try:
            import tiktoken

            name = tiktoken.encoding_name_for_model(bare)
        except Exception:
            pass
        _model_encoding[model] = name
    return name


def _text_counter(model: str | None) -> tuple[str, _Counter]:
    name = _encoding_name(model) if model else _FALLBACK_ENCODING
    counter = _load_encoding(name)
    if counter is None and name != _FALLBACK_ENCODING:
        name, counter = _FALLBACK_ENCODING, _load_encoding(_FALLBACK_ENCODING)
    if counter is None:
        return "heuristic", heuristic_text_tokens
    return name, counter


def _count(text: str, encoding: str, counter: _Counter) -> int:
    if encoding == "heuristic" or len(text) < 64:
        return counter(text)
    key = (encoding, text)
    hit = _count_cache.get(key)
    if hit is not None:
        _count_cache.move_to_end(key)
        return hit
    n = counter(text)
    _count_cache[key] = n
    if len(_count_cache) > _CACHE_SIZE:
        _count_cache.popitem(last=False)
    return n


def _message_tokens(m: Message, encoding: str, counter: _Counter) -> int:
    total = _PER_MESSAGE
    content = m.content
    if isinstance(content, str):
        total += _count(content, encoding, counter)
    elif content:
        for part in content:
            kind = part.get("type")
            text = part.get("text")
            if isinstance(text, str):
                total += _count(text, encoding, counter)
            elif kind in _IMAGE_PARTS:
                total += _IMAGE_TOKENS
            else:
                total += heuristic_text_tokens(json.dumps(part, default=str))
    for call in m.tool_calls:
        total += _PER_MESSAGE + counter(call.name) + _count(call.raw_arguments, encoding, counter)
    if m.name:
        total += 1
    return total


def estimate_tokens(request: Request, model: str | None = None) -> int:
    """Tokens to reserve for ``request``: prompt plus expected output.

    ``model`` (``"gpt-4o"`` or ``"openai/gpt-4o"``) picks the tiktoken encoding when
    tiktoken is usable; it does not change the heuristic.
    """
    encoding, counter = _text_counter(model)
    total = _PER_REQUEST
    for m in request.messages:
        total += _message_tokens(m, encoding, counter)
    if request.tools:
        for tool in request.tools:
            spec = json.dumps(tool.parameters, separators=(",", ":"), default=str)
            total += 8 + heuristic_text_tokens(tool.name + tool.description + spec)
    fmt = request.response_format
    if fmt and fmt.get("type") == "json_schema":
        total += heuristic_text_tokens(json.dumps(fmt, separators=(",", ":"), default=str))
    if request.max_tokens is not None:
        total += max(0, request.max_tokens)
    else:
        total += DEFAULT_OUTPUT_TOKENS + max(0, request.thinking_budget or 0)
    return total


def _bytes(text: str) -> int:
    # ASCII (the common case) is one byte a character: a len(), no encoding. Other
    # text is encoded (~1 ns a character in C): the exact byte count is the bound.
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _json_bytes(value: object) -> int:
    return _bytes(json.dumps(value, separators=(",", ":"), default=str))


def prompt_upper_bound(request: Request, *, image_tokens: int = IMAGE_TOKEN_CEILING) -> int:
    """A ceiling on the prompt's input tokens, whatever the tokenizer.

    Byte-level BPE tokenizers (OpenAI, Anthropic, Llama, Mistral, DeepSeek) and
    SentencePiece with byte fallback (Gemini) never emit more tokens than the text
    has UTF-8 bytes: every token covers at least one byte. So the byte count of
    every text the provider reads (messages, tool calls and their arguments, tool
    schemas, ``tool_choice``, a response schema, ``extra_body``), plus generous
    chat framing per message, ``_TOOLS_OVERHEAD`` for the instructions a provider
    adds when tools or a schema are sent, and ``image_tokens`` per image, is an
    upper bound — about 4x the heuristic estimate for English, which is the price
    of a guarantee. ASCII text costs a ``len()``; no encoding happens.

    Not bounded: a content part that refers to a document by URL or file id (a
    PDF's pages are billed as text plus an image each) is counted by its JSON
    bytes only; an image billed above ``image_tokens`` (see ``IMAGE_TOKEN_CEILING``).
    """
    total = _BOUND_PER_REQUEST
    for m in request.messages:
        total += _BOUND_PER_MESSAGE
        content = m.content
        if isinstance(content, str):
            total += _bytes(content)
        elif content:
            for part in content:
                text = part.get("text")
                if isinstance(text, str):
                    total += _BOUND_PER_PART + _bytes(text)
                elif part.get("type") in _IMAGE_PARTS:
                    total += image_tokens
                else:
                    total += _BOUND_PER_PART + _json_bytes(part)
        for call in m.tool_calls:
            total += _BOUND_PER_MESSAGE + _bytes(call.name) + _bytes(call.raw_arguments)
        if m.name:
            total += _bytes(m.name)
    fmt = request.response_format
    if request.tools or fmt:
        total += _TOOLS_OVERHEAD
    if request.tools:
        for tool in request.tools:
            total += _BOUND_PER_MESSAGE + _bytes(tool.name) + _bytes(tool.description)
            total += _json_bytes(tool.parameters)
        choice = request.tool_choice
        if choice is not None:
            total += _bytes(choice) if isinstance(choice, str) else _json_bytes(choice)
    if fmt:
        total += _json_bytes(fmt)
    if request.extra_body:
        total += _json_bytes(request.extra_body)
    return total


# Past this, a reported input count is nonsense (and its ratio could overflow a float).
_MAX_OBSERVED = 10**12


class InputBound:
    """The input tokens a budget reservation counts for one deployment.

    Why: a hard limit holds whatever the concurrency as long as no call costs more
    than its reservation. The output part of a reservation is a true worst case
    (``max_tokens``); this makes the input part one too, instead of the ~4
    characters-a-token heuristic, which a denser real tokenization (code, CJK,
    another vendor's tokenizer: 1.6x in issue #18) overruns — by the excess of every
    call admitted concurrently.

    ``mode="strict"`` (the default) always reserves ``prompt_upper_bound`` (never
    below ``estimate``). It holds from the first request, including a burst of
    hundreds admitted before any reply has taught anything, and it needs no
    assumption about the traffic beyond the byte-level tokenizer. What it costs:
    admission headroom near the limit (a reservation about 4x the real input for
    English; the surplus is given back at settlement), so near the limit a few
    concurrent calls are refused that would have fit. That is the right default for
    a limit called hard.

    ``mode="learned"`` reserves ``ceil(estimate x R x (1 + margin))``, where ``R`` is
    the largest real/estimated ratio among this deployment's last ``window``
    replies (at least 1), never more than the strict bound. Until ``warmup``
    replies have been observed it is strict, so the first burst is as safe as in
    strict mode. It admits more concurrent calls near the limit, under an
    assumption that is not a guarantee: no prompt tokenizes more than ``1 + margin``
    times denser, relative to the heuristic, than the densest of the recent window.
    A prompt unlike the traffic seen (a CJK or minified-JSON prompt on an English
    deployment) may overspend by its excess. Hence opt-in, with a stated margin
    (default 25 %).

    The exact tokenizer is deliberately not used for the bound: tiktoken is
    optional, exact only for OpenAI's own models, and a model name mapped to the
    wrong encoding would make a "bound" an estimate again; a provider's
    ``count_tokens`` endpoint costs a round trip per request.

    ``observe`` keeps a sliding-window maximum (a monotonic deque), so
    ``reserve_tokens`` stays O(1) in both modes.
    """

    __slots__ = ("_maxq", "_seen", "image_tokens", "margin", "mode", "warmup", "window")

    def __init__(
        self,
        mode: str = "strict",
        *,
        margin: float = 0.25,
        warmup: int = 20,
        window: int = 256,
        image_tokens: int = IMAGE_TOKEN_CEILING,
    ) -> None:
        if mode not in ("strict", "learned"):
            raise ValueError(f"mode must be 'strict' or 'learned', got {mode!r}")
        if not (0.0 <= margin < math.inf):
            raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
        for label, value in (("warmup", warmup), ("window", window), ("image_tokens", image_tokens)):
            if type(value) is not int or value < 1:
                raise ValueError(f"{label} must be an int >= 1, got {value!r}")
        self.mode = mode
        self.margin = float(margin)
        self.warmup = warmup
        self.window = window
        self.image_tokens = image_tokens
        self._seen = 0
        # (observation number, ratio), ratios strictly decreasing: the front is the
        # largest ratio among the last ``window`` observations.
        self._maxq: deque[tuple[int, float]] = deque()

    @property
    def observed(self) -> int:
        """Replies observed so far (all time, not only the window)."""
        return self._seen

    @property
    def max_ratio(self) -> float | None:
        """The largest real/estimated input ratio in the window (``None``: none yet)."""
        return self._maxq[0][1] if self._maxq else None

    def reserve_tokens(self, request: Request, estimate: int) -> int:
        """Input tokens to reserve for ``request``; ``estimate`` is the heuristic
        prompt estimate (``estimate_tokens`` minus the output part)."""
        upper = (
            prompt_upper_bound(request)
            if self.image_tokens == IMAGE_TOKEN_CEILING
            else prompt_upper_bound(request, image_tokens=self.image_tokens)
        )
        if self.mode == "strict" or self._seen < self.warmup or not self._maxq:
            return upper if upper > estimate else estimate
        ratio = self._maxq[0][1]
        learned = math.ceil(estimate * (ratio if ratio > 1.0 else 1.0) * (1.0 + self.margin))
        return max(estimate, min(upper, learned))

    def observe(self, estimate: int, actual: int) -> None:
        """Record one reply's real input count against its heuristic estimate.

        Only real counts: a count that is not a positive int (an estimated usage, a
        provider's nonsense) teaches nothing, since an invented ratio of 1.0 would
        push real ones out of the window."""
        if type(estimate) is not int or type(actual) is not int:
            return
        if not (0 < estimate <= _MAX_OBSERVED and 0 < actual <= _MAX_OBSERVED):
            return
        ratio = actual / estimate
        self._seen = seq = self._seen + 1
        q = self._maxq
        while q and q[-1][1] <= ratio:
            q.pop()
        q.append((seq, ratio))
        oldest = seq - self.window
        while q[0][0] <= oldest:
            q.popleft()

    def __repr__(self) -> str:
        return f"InputBound(mode={self.mode!r}, observed={self._seen}, max_ratio={self.max_ratio!r})"
