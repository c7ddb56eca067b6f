"""Router: classify the request, send it to the route for its label.

``Router(classifier, routes={label: target}, default=label)`` is the tutorials'
"task router": a classifier (``KeywordClassifier.default()`` or a learned one)
labels the request, and each label names a target — a model alias or another
strategy (a cascade for "complex", an ensemble for "structured"…). The answer's
``route`` says which path answered and why (``"matched 'trade-offs' (complex)
→ model opus"``), and ``explain()`` gives the same decision without calling
anything.

The decision, in ``select()`` (the hook to override):

1. **Sticky conversations** (``sticky=True``): a request whose metadata has a
   ``conversation_id`` reuses the label of that conversation's first routed
   turn, unless the turn carries a ``tier`` hint. This, with the classifier
   seeing every turn, is the tutorials' "token-level routing for chats": left
   non-sticky, each turn is classified on the whole conversation so far (a chat
   that turns into a debugging session moves up a tier and, since the history
   keeps the evidence, stays there); made sticky, a conversation keeps the
   model it started on, which keeps its prompt cache warm and its voice
   consistent. Memory is an LRU of ``sticky_size`` conversations per Router
   instance (no global state). With a shared state backend (``[state] backend =
   "redis"``) the route is booked there too, per router name: the first process
   to route a conversation decides it for every process, and the LRU is that
   store's local cache (a booked route never changes, so a conversation seen
   before costs no round trip).
2. Otherwise the **classifier** labels the request. A label with no route goes
   to ``default``, and the reason says so.
3. **Long-context override**: when the chosen target is a model alias whose
   context window is known and the request's token estimate (the executor's
   own, prompt plus expected output) does not fit, the request goes to the
   ``long_context`` route instead. Without it the executor would skip that
   model as too small and quietly answer from a fallback; the override makes
   the choice explicit, and visible in the reason.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Hashable, Mapping

from ..execution.tokens import estimate_tokens
from ..routing.base import Classification, Classifier
from ..types import Done, Request, Response, RouteInfo, StreamEvent
from ._compose import combine, step_of
from .base import RunContext, Strategy, Target

__all__ = ["Router"]

_ROUTER_KEYS = ("type", "routes", "default", "long_context", "sticky", "sticky_size", "classifier")
_CONVERSATION_KEY = "conversation_id"


class Router(Strategy):
    """Send each request to the route its classifier's label names.

    ``routes`` maps labels to targets (model aliases or strategies); ``default``
    is the label used when the classifier returns one with no route.
    ``long_context`` names the route for requests too big for the chosen
    model's window; ``sticky`` keeps a conversation on its first route.
    """

    kind = "router"

    def __init__(
        self,
        classifier: Classifier,
        routes: Mapping[str, Target],
        default: str,
        *,
        name: str | None = None,
        long_context: str | None = None,
        sticky: bool = False,
        sticky_size: int = 10_000,
    ) -> None:
        super().__init__(name=name)
        if not isinstance(classifier, Classifier):
            raise TypeError(f"classifier must have classify(request), got {type(classifier).__name__}")
        if not routes:
            raise ValueError("Router needs at least one route")
        for label, target in routes.items():
            if not isinstance(label, str) or not label:
                raise ValueError(f"route labels must be non-empty strings, got {label!r}")
            if not isinstance(target, str | Strategy) or target == "":
                raise TypeError(f"routes[{label!r}] must be a model alias or a Strategy, got {target!r}")
        if default not in routes:
            raise ValueError(f"default {default!r} is not a route; routes: {', '.join(routes)}")
        if long_context is not None and long_context not in routes:
            raise ValueError(f"long_context {long_context!r} is not a route; routes: {', '.join(routes)}")
        if sticky_size < 1:
            raise ValueError("sticky_size must be >= 1")
        self.classifier = classifier
        self.routes: dict[str, Target] = dict(routes)
        self.default = default
        self.long_context = long_context
        self.sticky = sticky
        self.sticky_size = sticky_size
        self._conversations: OrderedDict[Hashable, str] = OrderedDict()

    # ------------------------------------------------------------------ deciding

    def select(
        self, request: Request, ctx: RunContext | None = None, *, classification: Classification | None = None
    ) -> tuple[str, Target, Classification]:
        """The routing decision: ``(label, target, classification)``.

        The returned classification describes the final decision (its label is
        the route label, its reason covers stickiness, unknown labels and the
        long-context override). ``ctx`` is ``None`` when called from
        ``explain()`` without one: the long-context check needs the executor's
        deployments and is skipped. ``classification`` is the classifier's
        answer when the caller already has it (``aselect`` for an async
        classifier); otherwise ``classify`` is called. Override to change how
        routes are chosen; ``run``/``stream``/``explain`` all go through here.
        """
        found = self._sticky_label(request)
        if found is not None:
            c = found
        else:
            c = classification if classification is not None else self.classifier.classify(request)
        label = c.label
        reason = c.reason or f"classified {label!r}"
        if label not in self.routes:
            reason = f"{reason}; no route for {label!r}, default {self.default!r}"
            label = self.default
        target = self.routes[label]
        long_label = self.long_context
        if long_label is not None and label != long_label and ctx is not None:
            window = self.context_window(target, ctx)
            if window is not None:
                needed = estimate_tokens(request)
                if needed > window:
                    name = target if isinstance(target, str) else target.name
                    reason = (
                        f"{reason}; ~{needed:,} tokens exceed {name}'s {window:,}-token window, "
                        f"long-context route {long_label!r}"
                    )
                    label, target = long_label, self.routes[long_label]
        return label, target, Classification(label, c.score, reason, c.call)

    def context_window(self, target: Target, ctx: RunContext) -> int | None:
        """The context window of ``target`` in tokens, or ``None`` if unknown.

        Known for a model alias whose catalog entry has a window; ``None`` for a
        nested strategy (which model it ends on is its own decision).
        """
        if not isinstance(target, str):
            return None
        info = ctx.target(target)
        return info.context_window if info is not None else None

    def _conversation(self, request: Request) -> str | int | None:
        md = request.metadata
        if not self.sticky or not md or md.get("tier"):
            return None
        key = md.get(_CONVERSATION_KEY)
        if key is None:
            return None
        return key if isinstance(key, str | int) else repr(key)

    def _sticky_label(self, request: Request) -> Classification | None:
        key = self._conversation(request)
        if key is None:
            return None
        label = self._conversations.get(key)
        if label is None:
            return None
        self._conversations.move_to_end(key)
        return Classification(label, 1.0, f"sticky: conversation {key!r} started on {label!r}")

    def _remember(self, request: Request, label: str) -> None:
        key = self._conversation(request)
        if key is None or key in self._conversations:
            return
        self._keep(key, label)

    def _keep(self, key: Hashable, label: str) -> None:
        self._conversations[key] = label
        if len(self._conversations) > self.sticky_size:
            self._conversations.popitem(last=False)

    async def _fetch_shared(self, request: Request, ctx: RunContext) -> None:
        """With a shared sticky store: copy the conversation's booked route (made by
        any process) into the local memory, where ``select`` finds it."""
        store = ctx.executor.sticky
        key = self._conversation(request)
        if store is None or key is None or key in self._conversations:
            return
        label = await store.get(self.name, key)
        if label is not None and label in self.routes:
            self._keep(key, label)

    async def _decide(self, request: Request, ctx: RunContext) -> tuple[str, Target, Classification]:
        """``aselect``, then book a new conversation's route: locally, and in the
        shared store when there is one. Two processes routing the same new
        conversation at once may classify it differently; the store keeps the
        first booking, and the loser routes this turn by it too."""
        label, target, c = await self.aselect(request, ctx)
        store = ctx.executor.sticky
        key = self._conversation(request)
        if store is not None and key is not None and key not in self._conversations:
            booked = await store.claim(self.name, key, label)
            if booked != label and booked in self.routes:
                self._keep(key, booked)
                return self.select(request, ctx)
        self._remember(request, label)
        return label, target, c

    # ------------------------------------------------------------------ running

    def _answer(
        self, response: Response, label: str, target: Target, c: Classification, ctx: RunContext
    ) -> Response:
        """``response`` with the router's ``route``: the path that answered, the
        route label, and the router's reason followed by the target's own
        (``"matched 'json*' (structured) → model gpt55"``). A strategy's answer
        goes through ``combine`` so its cost, usage and attempts stay summed."""
        inner = response.route
        reason = f"{c.reason} → {inner.reason}" if inner.reason else c.reason
        path = inner.strategy_path or f"{ctx.path}.routes[{label}]"
        route = RouteInfo(path, label, reason, c.score)
        if isinstance(target, Strategy):
            # Keep the nested strategy's own breakdown (cascade rungs, verifier and
            # judge calls); only a strategy that reported none gets one summary step.
            steps = response.steps or [step_of(f"routes[{label}]", response, kind="route")]
            response = combine(response, [response], route=route, steps=steps)
        else:
            response.route = route
        if c.call is not None:
            # The classifier's own model call (an embedding) is part of this request's bill.
            cost = c.call.cost_usd
            response.cost_usd = (
                None if cost is None or response.cost_usd is None else response.cost_usd + cost
            )
            response.steps = [c.call, *response.steps]
        return response

    async def aselect(self, request: Request, ctx: RunContext) -> tuple[str, Target, Classification]:
        """``select`` for ``run``/``stream``: awaits the classifier's ``aclassify`` when it has one.

        Why a second, async entry point: a classifier may need I/O to decide (the
        learned router fetching the prompt's embedding), and the ``Classifier``
        protocol itself stays synchronous so ``explain()`` never calls out. An
        async classifier has ``async def aclassify(request, ctx)``: ``ctx`` lets
        it call a model through this run's executor. A sticky conversation skips
        the classifier, async or not.
        """
        await self._fetch_shared(request, ctx)
        aclassify = getattr(self.classifier, "aclassify", None)
        if aclassify is None or self._conversation(request) in self._conversations:
            return self.select(request, ctx)
        return self.select(request, ctx, classification=await aclassify(request, ctx))

    async def run(self, request: Request, ctx: RunContext) -> Response:
        label, target, c = await self._decide(request, ctx)
        response = await ctx.call(target, request, name=f"routes[{label}]", label=label)
        return self._answer(response, label, target, c, ctx)

    async def stream(self, request: Request, ctx: RunContext) -> AsyncIterator[StreamEvent]:
        label, target, c = await self._decide(request, ctx)
        events = ctx.stream(target, request, name=f"routes[{label}]", label=label)
        try:
            async for event in events:
                if isinstance(event, Done):
                    yield Done(self._answer(event.response, label, target, c, ctx))
                else:
                    yield event
        finally:
            # Close the inner stream now if our caller stopped early, so its
            # limiter slot and connection are released at once.
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()

    def explain(self, request: Request, ctx: RunContext | None = None) -> RouteInfo:
        """The route ``run`` would take and why, calling nothing and remembering
        nothing. Pass ``ctx`` to include the long-context check."""
        label, target, c = self.select(request, ctx)
        base = ctx.path if ctx is not None else self.name
        name = target if isinstance(target, str) else target.name
        return RouteInfo(f"{base}.routes[{label}]", label, f"{c.reason} → {name}", c.score)

    def __repr__(self) -> str:
        routes = {k: (v if isinstance(v, str) else v.name) for k, v in self.routes.items()}
        return f"Router(name={self.name!r}, routes={routes}, default={self.default!r})"
