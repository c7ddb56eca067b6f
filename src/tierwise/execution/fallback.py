"""Which refusals stop a fallback chain, and which move on to the next deployment.

A ``BadRequestError`` (HTTP 400/413/422) used to stop the whole chain on the
theory that "the request is wrong, every model would refuse it". That holds for a
malformed message list or an invalid tool schema, but many 400s are about the
*deployment*, not the request, and the next deployment is another model, often
behind another gateway:

* an unknown model name: LiteLLM answers ``400 Invalid model name passed in
  model=…``, OpenRouter ``400 … is not a valid model ID``, vLLM ``400 The model
  `x` does not exist``;
* a parameter or value this model does not support: OpenAI's
  ``unsupported_parameter`` / ``unsupported_value`` (``temperature`` on a
  reasoning model, ``max_tokens`` vs ``max_completion_tokens``), "does not
  support tools", "images are not supported by this model";
* permission for this model: "your organization must be verified to use the
  model", "you do not have access to model …".

So a 400 is classified by its cause (message, error type and code, matched
case-insensitively):

1. ``request_patterns`` (yours first, then none built in: the default is to
   trust the deployment patterns) mark the error as about the request → the chain
   stops, the error is the caller's.
2. ``deployment_patterns`` (yours, then the built-in list below) mark it as about
   this deployment → the chain falls back, like a 404 or a context-window error.
3. Anything else stops the chain: an unrecognized 400 is most likely a request
   every model would refuse, and sending it everywhere multiplies the failure
   (and the bill, for the gateways that charge for refusals).

``mode`` overrides the classification: ``"stop"`` restores the old rule (every
plain 400 stops), ``"fall_back"`` tries every deployment whatever the 400 says.
``ContextWindowExceeded`` and ``NotFoundError`` always fall back, whatever the mode:
they name a property of the model by definition.

Configured in ``[fallback]`` (``on_bad_request``, ``deployment_errors``,
``request_errors``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from ..errors import BadRequestError, ContextWindowExceeded, NotFoundError, ProviderError

__all__ = ["DEPLOYMENT_ERROR_PATTERNS", "BadRequestMode", "BadRequestRule"]

BadRequestMode: TypeAlias = Literal["by_cause", "stop", "fall_back"]
_MODES = ("by_cause", "stop", "fall_back")

#: Built-in shapes of 400s that are about the deployment (case-insensitive regexes,
#: searched in "message type code"). Gathered from the public error texts of
#: OpenAI, Anthropic, Gemini, OpenRouter, LiteLLM, vLLM and Ollama.
DEPLOYMENT_ERROR_PATTERNS: tuple[str, ...] = (
    # unknown model
    r"model_not_found",
    r"invalid model",
    r"unknown model",
    r"no such model",
    r"not a valid model",
    r"model[^.]{0,80}(?:does not exist|not found|is not available|is not supported|unavailable)",
    r"unsupported model",
    r"model[_ ]not[_ ]supported",
    r"no endpoints found",
    # a parameter or value this model does not support
    r"unsupported_parameter",
    r"unsupported_value",
    r"unsupported parameter",
    r"unrecognized request argument",
    r"(?:does not|doesn't|do not) support",
    r"not supported (?:with|by|for|on) (?:this|the) model",
    r"is not supported (?:with|by|for|on)",
    r"only supported (?:by|on|for|with)",
    # permission for this model
    r"(?:does not|doesn't|do not) have access to (?:the )?model",
    r"not allowed to (?:use|access)",
    r"must be verified to use",
    r"model access",
)


@dataclass(frozen=True, slots=True)
class BadRequestRule:
    """Decides whether a refusal stops the chain (see the module docstring)."""

    mode: BadRequestMode = "by_cause"
    deployment_patterns: Sequence[str] = ()
    request_patterns: Sequence[str] = ()
    _deployment: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _request: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ValueError(f"mode must be one of {', '.join(_MODES)}, got {self.mode!r}")
        for name in ("deployment_patterns", "request_patterns"):
            patterns = getattr(self, name)
            if isinstance(patterns, str):
                raise TypeError(f"{name} must be a sequence of regexes, not one string")
            for i, p in enumerate(patterns):
                try:
                    re.compile(p)
                except (re.error, TypeError) as exc:
                    raise ValueError(f"{name}[{i}] is not a valid regex: {exc}") from None
            object.__setattr__(self, name, tuple(patterns))
        object.__setattr__(
            self, "_deployment", _join((*self.deployment_patterns, *DEPLOYMENT_ERROR_PATTERNS))
        )
        object.__setattr__(self, "_request", _join(self.request_patterns) if self.request_patterns else None)

    def about_deployment(self, error: BadRequestError) -> bool:
        """Whether ``error`` says something about the deployment that refused, not
        about the request (so another deployment may well accept it)."""
        if isinstance(error, ContextWindowExceeded | NotFoundError):
            return True
        text = _text(error)
        if self._request is not None and self._request.search(text):
            return False
        return self._deployment.search(text) is not None

    def stops_chain(self, error: ProviderError) -> bool:
        """A request-level refusal: the same request would fail on every model."""
        if not isinstance(error, BadRequestError) or isinstance(error, ContextWindowExceeded | NotFoundError):
            return False
        if self.mode == "stop":
            return True
        if self.mode == "fall_back":
            return False
        return not self.about_deployment(error)


def _join(patterns: Sequence[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


def _text(error: ProviderError) -> str:
    # The message as raised (redacted), plus the wire type and code: OpenAI puts the
    # cause in ``code`` ("unsupported_parameter") with free text in the message.
    return f"{error.message} {error.error_type or ''} {error.error_code or ''}"
