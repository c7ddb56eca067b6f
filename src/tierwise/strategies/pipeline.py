"""Pipeline: sequential steps, each with its own model, prompt template and cost.

The tutorial's research pipeline, as data::

    Pipeline([
        Step("decompose", "deepseek", "Break this into 3-5 sub-questions, as a JSON list: {input}"),
        Step("research", "sonnet", "Research: {item}", fan_out="decompose", concurrency=4),
        Step("synthesize", "opus", "Question: {input}\\n\\nResearch:\\n{research}\\n\\nAnswer it."),
    ])

Templates are ``str.format`` templates over named variables: ``{input}`` (the
original request's last user message), ``{<step name>}`` (an earlier step's output
text) and, in a fan-out step, ``{item}``. They are checked when the pipeline is
built, so a typo (``{reserch}``) or a reference to a later step is a
``ConfigError`` naming the step and field, not a failure halfway through a paid
run. Literal braces are written ``{{`` and ``}}``. ``system`` is sent as is (not a
template), so system prompts with JSON examples need no escaping.

A fan-out step (``fan_out="<earlier step>"``, or ``"input"``) splits that step's output into a
list (``parse_list``: a JSON array; else numbered or bulleted lines; else
non-empty lines) and runs once per item, in parallel with at most
``concurrency`` calls in flight (per run of this step), joining the answers in
item order with ``join``. By default one failed item fails the step and cancels
its siblings (``on_item_error="fail"``): a synthesis over partial research would
present itself as complete. ``on_item_error="skip"`` leaves failed items out
(each is noted in the step's ``StepInfo``) and fails only if every item failed.
An empty list (the earlier step said nothing parseable) runs no calls and gives
an empty output, noted as "0 items".

Every call goes through ``ctx.call`` (paths ``steps[i]`` and ``steps[i][j]``,
label = the step name, so metrics break cost down by step), and a step's target
may be any Strategy (an ``Ensemble``, a ``Cascade``…). The answer is the last
step's response, carrying the summed cost and usage of every call, every attempt,
and one ``StepInfo`` per step with that step's cost, usage and wall-clock latency.
A failing step raises its error unchanged (with a note naming the step).

Each step's request inherits the original request's ``metadata`` (routing hints,
budget tags) and ``user``, but not its sampling parameters: a ``max_tokens``
sized for the final answer would truncate a research step. Per-step parameters
go in ``Step(params={...})``.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, replace
from typing import Any, Literal

import anyio

from ..errors import AllTargetsFailed, ConfigError, TierwiseError, did_you_mean
from ..types import Attempt, Done, Request, Response, RouteInfo, StepInfo, StreamEvent, TextDelta, Usage
from ._compose import combine
from .base import RunContext, Strategy, Target

__all__ = ["Pipeline", "Step", "parse_list"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_RESERVED = frozenset({"input", "item"})
_STEP_KEYS = (
    "name",
    "target",
    "prompt",
    "fan_out",
    "concurrency",
    "join",
    "system",
    "params",
    "on_item_error",
)


# --------------------------------------------------------------------------- list parsing

_FENCED = re.compile(r"```[\w+-]*[ \t]*\n(.*?)```", re.DOTALL)
_MARKED = re.compile(r"^\s*(?:\d{1,3}[.)]|\(\d{1,3}\)|[-*•+])\s+(?P<item>\S.*?)\s*$")


def _json_items(data: Any) -> list[str] | None:
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            return None
        data = lists[0]
    if not isinstance(data, list):
        return None
    items = [x if isinstance(x, str) else json.dumps(x, ensure_ascii=False) for x in data]
    return [x.strip() for x in items if x.strip()]


def parse_list(text: str) -> list[str]:
    """Split a model's list-shaped output into items, in order.

    1. JSON: the whole text, a fenced ```json block, or the outermost ``[...]`` in
       it; a JSON array gives its elements (non-strings re-serialized as JSON), an
       object with exactly one array value gives that array (``{"questions": [...]}``,
       what JSON mode tends to produce).
    2. Else numbered (``1.``, ``2)``, ``(3)``) or bulleted (``-``, ``*``, ``•``, ``+``)
       lines: only those, so a preamble such as "Here are the sub-questions:" is
       dropped; an indented line continues the item above it.
    3. Else every non-empty line.

    Empty items are dropped; an empty text gives ``[]``.
    """
    body = text.strip()
    if not body:
        return []
    candidates = [body, *(m.group(1) for m in _FENCED.finditer(body))]
    start, end = body.find("["), body.rfind("]")
    if 0 <= start < end:
        candidates.append(body[start : end + 1])
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        items = _json_items(data)
        if items is not None:
            return items
    marked: list[str] = []
    for line in body.splitlines():
        match = _MARKED.match(line)
        if match:
            marked.append(match.group("item"))
        elif marked and line[:1].isspace() and line.strip():
            marked[-1] = f"{marked[-1]} {line.strip()}"
    if marked:
        return marked
    return [line.strip() for line in body.splitlines() if line.strip()]


# --------------------------------------------------------------------------- steps


@dataclass(slots=True)
class Step:
    """One pipeline step. See the module docstring for templates and fan-out.

    ``target``: a model alias or any Strategy. ``prompt``: the user-message
    template. ``fan_out``: the name of an earlier step whose output is split into
    items (with ``parse``, default ``parse_list``), one call per item with
    ``{item}`` set, at most ``concurrency`` at once, outputs joined by ``join``.
    ``system``: a fixed system prompt. ``params``: other ``Request`` fields for
    this step's calls (``{"max_tokens": 300}``). ``on_item_error``: ``"fail"``
    (default) or ``"skip"`` for fan-out items.
    """

    name: str
    target: Target
    prompt: str
    _: KW_ONLY
    fan_out: str | None = None
    concurrency: int = 4
    join: str = "\n\n"
    parse: Callable[[str], Sequence[str]] | None = None
    system: str | None = None
    params: Mapping[str, Any] | None = None
    on_item_error: Literal["fail", "skip"] = "fail"

    def __post_init__(self) -> None:
        # Errors name the field relative to the step; Pipeline re-roots them
        # (``steps[1].concurrency``) and config prefixes the strategy's path.
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigError(
                f"step name must be a word (letters, digits, _ or -, not starting with a digit) usable "
                f"as a template field, got {self.name!r}",
                field="name",
            )
        if self.name in _RESERVED:
            raise ConfigError(
                f"{self.name!r} is reserved for the {{{self.name}}} template variable", field="name"
            )
        if not isinstance(self.target, str | Strategy):
            raise ConfigError(f"must be a model alias or a Strategy, got {self.target!r}", field="target")
        if not isinstance(self.prompt, str):
            raise ConfigError(f"must be a template string, got {type(self.prompt).__name__}", field="prompt")
        if self.fan_out is not None and not isinstance(self.fan_out, str):
            raise ConfigError(f"must be the name of an earlier step, got {self.fan_out!r}", field="fan_out")
        if (
            isinstance(self.concurrency, bool)
            or not isinstance(self.concurrency, int)
            or self.concurrency < 1
        ):
            raise ConfigError(f"must be an integer >= 1, got {self.concurrency!r}", field="concurrency")
        if not isinstance(self.join, str):
            raise ConfigError(f"must be a string, got {type(self.join).__name__}", field="join")
        if self.parse is not None and not callable(self.parse):
            raise ConfigError("must be a callable str -> list[str]", field="parse")
        if self.system is not None and not isinstance(self.system, str):
            raise ConfigError(f"must be a string, got {type(self.system).__name__}", field="system")
        if self.on_item_error not in ("fail", "skip"):
            raise ConfigError(f"must be 'fail' or 'skip', got {self.on_item_error!r}", field="on_item_error")
        if self.params is not None:
            if not isinstance(self.params, Mapping):
                raise ConfigError(f"must be a table of request fields, got {self.params!r}", field="params")
            try:
                Request.from_prompt("", **dict(self.params))
            except TypeError as exc:
                raise ConfigError(str(exc), field="params") from None


def _fields(template: str) -> list[str]:
    """The variable names ``template`` uses; ``ValueError`` for what format_map
    would choke on or silently mis-render (positional, attribute or index fields)."""
    names: list[str] = []
    for _, field, spec, _ in string.Formatter().parse(template):
        if field is None:
            continue
        if field == "" or field.isdigit():
            raise ValueError("positional fields ({} or {0}) are not supported; use a name such as {input}")
        base = re.split(r"[.\[]", field, maxsplit=1)[0]
        if base != field:
            raise ValueError(f"{{{field}}}: attribute and index access are not supported; use {{{base}}}")
        if spec and "{" in spec:
            raise ValueError(f"{{{field}:{spec}}}: nested fields in a format spec are not supported")
        names.append(field)
    return names


class _Variables(dict[str, str]):
    """``format_map`` mapping whose missing keys raise a message naming the field."""

    def __init__(self, values: Mapping[str, str], step: str) -> None:
        super().__init__(values)
        self.step = step

    def __missing__(self, key: str) -> str:
        raise KeyError(
            f"step {self.step!r}: template field {{{key}}} has no value; available: {', '.join(sorted(self))}"
        )


class _Ran:
    """What one step produced in one run."""

    __slots__ = ("answer", "calls", "info", "output")

    def __init__(self, output: str, answer: Response, calls: list[Response], info: StepInfo) -> None:
        self.output = output
        self.answer = answer
        self.calls = calls
        self.info = info


def _sum_cost(responses: Sequence[Response]) -> float | None:
    total = 0.0
    for r in responses:
        if r.cost_usd is None:
            return None
        total += r.cost_usd
    return total


def _sum_usage(responses: Sequence[Response]) -> Usage:
    usage = Usage()
    for r in responses:
        usage = usage + r.usage
    return usage


def _join_path(path: str, segment: str) -> str:
    return f"{path}.{segment}" if path else segment


# --------------------------------------------------------------------------- the strategy


def check_steps(steps: Sequence[Any]) -> None:
    """The rules a pipeline's steps must follow, on the steps alone (so config
    validation checks them without building a Pipeline): unique names, and
    ``fan_out`` and template fields referring to earlier steps. ``ConfigError``
    names the field (``steps[2].prompt``)."""
    seen: dict[str, int] = {}
    for i, step in enumerate(steps):
        where = f"steps[{i}]"
        if step.name in seen:
            raise ConfigError(
                f"duplicate step name {step.name!r} (also steps[{seen[step.name]}])",
                field=f"{where}.name",
            )
        later = {s.name: j for j, s in enumerate(steps) if j > i}
        if step.fan_out is not None and step.fan_out != "input" and step.fan_out not in seen:
            raise ConfigError(
                _unknown_ref(step.fan_out, seen, later, "fan out over"), field=f"{where}.fan_out"
            )
        try:
            used = _fields(step.prompt)
        except ValueError as exc:
            raise ConfigError(
                f"invalid template: {exc} (write literal braces as {{{{ and }}}})",
                field=f"{where}.prompt",
            ) from None
        for var in used:
            if var == "input" or var in seen:
                continue
            if var == "item":
                if step.fan_out is None:
                    raise ConfigError(
                        '{item} is only set in a fan-out step (add fan_out = "<earlier step>")',
                        field=f"{where}.prompt",
                    )
                continue
            raise ConfigError(
                f"template field {{{var}}}: {_unknown_ref(var, seen, later, 'use')}",
                field=f"{where}.prompt",
            )
        if step.fan_out is not None and "item" not in used:
            raise ConfigError(
                "a fan-out step's prompt must use {item}, or every item would get the same prompt",
                field=f"{where}.prompt",
            )
        seen[step.name] = i


class Pipeline(Strategy):
    """Run ``steps`` in order, each seeing the original input and every earlier
    step's output; the last step's answer is the pipeline's.

    Hooks for subclasses: ``render`` (build a step's request from its variables),
    ``split`` (a fan-out step's items) and ``join_results`` (a fan-out step's output).
    """

    kind = "pipeline"

    def __init__(self, steps: Sequence[Step], *, name: str | None = None) -> None:
        super().__init__(name=name)
        if isinstance(steps, Step) or not isinstance(steps, Sequence) or not steps:
            raise ConfigError("a pipeline needs a non-empty list of Step", field="steps")
        self.steps: list[Step] = list(steps)
        for i, step in enumerate(self.steps):
            if not isinstance(step, Step):
                raise ConfigError(f"must be a Step, got {type(step).__name__}", field=f"steps[{i}]")
        check_steps(self.steps)

    # ------------------------------------------------------------------ hooks

    async def render(self, step: Step, variables: Mapping[str, str]) -> Request:
        """Build ``step``'s request from ``variables`` (``input``, earlier step
        names, and ``item`` in a fan-out step). Override to change prompt building
        (add few-shot turns, pick a system prompt per item…); the pipeline then
        merges the original request's metadata and user into the result."""
        prompt = step.prompt.format_map(_Variables(variables, step.name))
        return Request.from_prompt(prompt, system=step.system, **dict(step.params or {}))

    def split(self, step: Step, text: str) -> list[str]:
        """A fan-out step's items from the earlier step's output (``step.parse`` or ``parse_list``)."""
        items = (step.parse or parse_list)(text)
        return [str(x) for x in items]

    def join_results(self, step: Step, items: Sequence[str], answers: Sequence[Response]) -> str:
        """A fan-out step's output from its answers (in item order): ``step.join`` between texts."""
        return step.join.join(r.text for r in answers)

    # ------------------------------------------------------------------ running

    async def run(self, request: Request, ctx: RunContext) -> Response:
        start = ctx.now()
        variables = {"input": _input_text(request)}
        ran: list[_Ran] = []
        for i, step in enumerate(self.steps):
            ran.append(await self._step(i, step, variables, request, ctx))
        return self._result(ran, ctx, (ctx.now() - start) * 1000.0)

    async def stream(self, request: Request, ctx: RunContext) -> AsyncIterator[StreamEvent]:
        """Run every step but the last, then stream the last one (the synthesis) as
        it is generated; ``Done`` carries the whole pipeline's response. A fan-out
        last step cannot stream one answer, so its joined output comes as one delta."""
        start = ctx.now()
        variables = {"input": _input_text(request)}
        ran: list[_Ran] = []
        for i, step in enumerate(self.steps[:-1]):
            ran.append(await self._step(i, step, variables, request, ctx))
        i, last = len(self.steps) - 1, self.steps[-1]
        if last.fan_out is not None:
            ran.append(await self._step(i, last, variables, request, ctx))
            if ran[-1].output:
                yield TextDelta(ran[-1].output)
            yield Done(self._result(ran, ctx, (ctx.now() - start) * 1000.0))
            return
        step_request = _inherit(await self.render(last, variables), request)
        t0 = ctx.now()
        final: Response | None = None
        events = ctx.stream(last.target, step_request, name=f"steps[{i}]", label=last.name)
        try:
            async for event in events:
                if isinstance(event, Done):
                    final = event.response
                else:
                    yield event
        except Exception as exc:
            _note(exc, self.name, last.name)
            raise
        finally:
            # Also when our consumer stops early: the inner stream releases its
            # limiter slot, reservation and connection in its own cleanup.
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()
        if final is None:
            raise TierwiseError(f"pipeline {self.name!r}: step {last.name!r} stream ended without a response")
        info = self._info(i, last, [final], ctx, (ctx.now() - t0) * 1000.0, note="streamed")
        ran.append(_Ran(final.text, final, [final], info))
        yield Done(self._result(ran, ctx, (ctx.now() - start) * 1000.0))

    async def _step(
        self, i: int, step: Step, variables: dict[str, str], request: Request, ctx: RunContext
    ) -> _Ran:
        t0 = ctx.now()
        try:
            if step.fan_out is None:
                step_request = _inherit(await self.render(step, variables), request)
                answer = await ctx.call(step.target, step_request, name=f"steps[{i}]", label=step.name)
                info = self._info(i, step, [answer], ctx, (ctx.now() - t0) * 1000.0)
                result = _Ran(answer.text, answer, [answer], info)
            else:
                result = await self._fan_out(i, step, variables, request, ctx)
        except Exception as exc:
            _note(exc, self.name, step.name)
            raise
        variables[step.name] = result.output
        return result

    async def _fan_out(
        self, i: int, step: Step, variables: dict[str, str], request: Request, ctx: RunContext
    ) -> _Ran:
        t0 = ctx.now()
        assert step.fan_out is not None
        items = self.split(step, variables[step.fan_out])
        answers: list[Response | None] = [None] * len(items)
        errors: list[tuple[int, Exception]] = []
        crash: list[BaseException] = []
        limiter = anyio.CapacityLimiter(step.concurrency)
        fail_fast = step.on_item_error == "fail"

        async with anyio.create_task_group() as tg:

            async def one(j: int, item: str) -> None:
                try:
                    step_request = _inherit(await self.render(step, {**variables, "item": item}), request)
                    async with limiter:
                        answers[j] = await ctx.call(
                            step.target, step_request, name=f"steps[{i}][{j}]", label=step.name
                        )
                except Exception as exc:
                    if isinstance(exc, ConfigError) or not isinstance(exc, TierwiseError):
                        crash.append(exc)
                        tg.cancel_scope.cancel()
                    else:
                        errors.append((j, exc))
                        if fail_fast:
                            tg.cancel_scope.cancel()

            for j, item in enumerate(items):
                tg.start_soon(one, j, item, name=f"{ctx.path}.steps[{i}][{j}]")
        if crash:
            raise crash[0]
        if errors and fail_fast:
            j, exc = errors[0]
            exc.add_note(
                f"fan-out item {j} of {len(items)} ({items[j][:80]!r}) failed; "
                "the step's other items were cancelled"
            )
            raise exc
        done = [r for r in answers if r is not None]
        if errors and not done:
            attempts: list[Attempt] = [a for _, e in errors for a in getattr(e, "attempts", ())]
            raise AllTargetsFailed(
                f"every one of the {len(items)} fan-out items failed", [e for _, e in errors], attempts
            )
        kept = [items[j] for j, r in enumerate(answers) if r is not None]
        output = self.join_results(step, kept, done)
        note = f"fan-out over {len(items)} item(s)"
        if errors:
            note += (
                f"; skipped failed item(s) {', '.join(str(j) for j, _ in sorted(errors, key=lambda e: e[0]))}"
            )
        latency = (ctx.now() - t0) * 1000.0
        info = self._info(i, step, done, ctx, latency, note=note)
        if done:
            # The joined text is this step's answer; it reports the first item's model.
            answer = replace(done[0], text=output, tool_calls=[], reasoning="", latency_ms=latency)
        else:
            answer = Response(text="", model="", provider="", latency_ms=latency)
        answer.route = RouteInfo(info.path, step.name, note)
        return _Ran(output, answer, done, info)

    def _info(
        self,
        i: int,
        step: Step,
        answers: Sequence[Response],
        ctx: RunContext,
        latency_ms: float,
        note: str = "",
    ) -> StepInfo:
        models = list(dict.fromkeys(r.deployment or r.model for r in answers))
        return StepInfo(
            name=step.name,
            path=_join_path(ctx.path, f"steps[{i}]"),
            model=",".join(models),
            cost_usd=_sum_cost(answers),
            latency_ms=latency_ms,
            usage=_sum_usage(answers),
            note=note,
            kind="step",
        )

    def _result(self, ran: list[_Ran], ctx: RunContext, latency_ms: float) -> Response:
        last = ran[-1]
        calls = [r for step in ran for r in step.calls]
        route = RouteInfo(
            last.answer.route.strategy_path or ctx.path,
            self.steps[len(ran) - 1].name,
            "pipeline: " + " → ".join(s.name for s in self.steps),
        )
        return combine(last.answer, calls, route=route, steps=[r.info for r in ran], latency_ms=latency_ms)

    # ------------------------------------------------------------------ describing

    def explain(self, request: Request, ctx: RunContext | None = None) -> RouteInfo:
        parts = []
        for s in self.steps:
            target = s.target if isinstance(s.target, str) else s.target.name
            fan = f", fan-out over {s.fan_out} ×≤{s.concurrency}" if s.fan_out else ""
            parts.append(f"{s.name}({target}{fan})")
        return RouteInfo(self.name, self.steps[-1].name, "pipeline: " + " → ".join(parts))

    def __repr__(self) -> str:
        return f"Pipeline([{', '.join(s.name for s in self.steps)}], name={self.name!r})"


# --------------------------------------------------------------------------- helpers


def _input_text(request: Request) -> str:
    """``{input}``: the last user message (the question), else the whole prompt."""
    for message in reversed(request.messages):
        if message.role == "user":
            return message.text
    return request.prompt_text


def _inherit(step_request: Request, original: Request) -> Request:
    """Carry the original request's metadata (under the step's own) and user."""
    if not original.metadata and original.user is None:
        return step_request
    metadata = {**original.metadata, **step_request.metadata}
    return replace(step_request, metadata=metadata, user=step_request.user or original.user)


def _note(exc: BaseException, pipeline: str, step: str) -> None:
    exc.add_note(f"in pipeline {pipeline!r}, step {step!r}")


def _unknown_ref(name: str, seen: Mapping[str, int], later: Mapping[str, int], verb: str) -> str:
    if name in later:
        return f"step {name!r} runs later (steps[{later[name]}]); a step can only {verb} earlier steps"
    known = ["input", *seen]
    hint = did_you_mean(name, known)
    return f"unknown name {name!r}{f' ({hint})' if hint else ''}; available here: {', '.join(known)}"
