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
#: What ``prompt_upper_bound`` counts per image. Providers bill an image by its
#: size: OpenAI at most ~1,100 tokens (high detail, after its resize), Anthropic
#: about width x height / 750 (at most ~1,600 after its resize), Gemini 258 per
#: tile. 6,000 is above all of them; a provider billing more breaks the bound.
IMAGE_TOKEN_CEILING = 6000
_BOUND_PER_MESSAGE = 16  # role, separators, name: generous against any chat template
_BOUND_PER_REQUEST = 16
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
            elif kind in ("image_url", "image", "input_image", "inline_data", "image_file"):
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
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def prompt_upper_bound(request: Request) -> int:
    """A ceiling on the prompt's input tokens, whatever the tokenizer.

    Byte-level BPE tokenizers (OpenAI, Anthropic, Llama, Mistral, DeepSeek) and
    SentencePiece with byte fallback (Gemini) never emit more tokens than the text
    has UTF-8 bytes: every token covers at least one byte. So the byte count of
    every text the provider reads (messages, tool calls, tool schemas, a JSON
    schema), plus generous chat framing and ``IMAGE_TOKEN_CEILING`` per image, is
    an upper bound — about 4x the heuristic estimate for English, which is the
    price of a hard guarantee. ASCII text costs a ``len()``; no encoding happens.
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
                    total += _bytes(text)
                elif part.get("type") in ("image_url", "image", "input_image", "inline_data", "image_file"):
                    total += IMAGE_TOKEN_CEILING
                else:
                    total += _bytes(json.dumps(part, default=str))
        for call in m.tool_calls:
            total += _BOUND_PER_MESSAGE + _bytes(call.name) + _bytes(call.raw_arguments)
        if m.name:
            total += _bytes(m.name)
    if request.tools:
        for tool in request.tools:
            spec = json.dumps(tool.parameters, separators=(",", ":"), default=str)
            total += _BOUND_PER_MESSAGE + _bytes(tool.name) + _bytes(tool.description) + _bytes(spec)
    fmt = request.response_format
    if fmt:
        total += _bytes(json.dumps(fmt, separators=(",", ":"), default=str))
    return total


class InputBound:
    """The input tokens a budget reservation counts for one deployment.

    The reservation's output part is already a true worst case (``max_tokens``);
    this makes the input part one too, so that "the real cost never exceeds the
    reservation" — the condition under which a hard limit cannot be crossed —
    holds even when the provider's tokenizer counts more than tierwise's
    ~4-characters-a-token heuristic (dense code, CJK, other tokenizers).

    ``mode="strict"`` (the default) reserves ``prompt_upper_bound`` always. It is
    safe from the first request, including a burst of hundreds admitted before
    any reply has taught anything, and costs nothing but admission headroom near
    the limit (the surplus is given back at settlement).

    ``mode="learned"`` reserves the heuristic ``estimate`` scaled by the largest
    real/estimated ratio among this deployment's last ``window`` replies, plus
    ``margin``, never more than the strict bound; until ``warmup`` replies have
    been observed it is strict. It admits more concurrent requests near the limit,
    under an assumption: no prompt tokenizes more than ``1 + margin`` times denser
    than the densest recently seen. A prompt that does may overspend by its excess.
    """

    __slots__ = ("_ratios", "margin", "mode", "warmup", "window")

    def __init__(
        self, mode: str = "strict", *, margin: float = 0.25, warmup: int = 20, window: int = 256
    ) -> None:
        if mode not in ("strict", "learned"):
            raise ValueError(f"mode must be 'strict' or 'learned', got {mode!r}")
        if not (0.0 <= margin < math.inf) or warmup < 1 or window < 1:
            raise ValueError("margin must be >= 0, warmup and window >= 1")
        self.mode = mode
        self.margin = margin
        self.warmup = warmup
        self.window = window
        self._ratios: deque[float] = deque(maxlen=window)

    def reserve_tokens(self, request: Request, estimate: int) -> int:
        """Input tokens to reserve for ``request`` (``estimate``: the heuristic
        prompt estimate)."""
        upper = prompt_upper_bound(request)
        if self.mode == "strict" or len(self._ratios) < self.warmup:
            return max(upper, estimate)
        learned = math.ceil(estimate * max(1.0, max(self._ratios)) * (1.0 + self.margin))
        return max(estimate, min(upper, learned))

    def observe(self, estimate: int, actual: int) -> None:
        """Record one reply's real input count against its estimate."""
        if estimate > 0 and type(actual) is int and actual > 0:
            self._ratios.append(actual / estimate)

    def __repr__(self) -> str:
        return f"InputBound(mode={self.mode!r}, observed={len(self._ratios)})"
