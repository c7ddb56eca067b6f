"""``OutcomeClassifier``: an ``OutcomeModel`` as a router's ``Classifier``.

Kept apart from the model so the routing side (labels, strong share, the
embedding call through the run context) reads without the fitting code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..types import Request, StepInfo, Usage
from .base import Classification

if TYPE_CHECKING:
    from ..strategies.base import RunContext
    from .learned import Embedder, OutcomeModel

__all__ = ["OutcomeClassifier"]


class OutcomeClassifier:
    """``Classifier`` adapter: label = the model ``OutcomeModel.route`` picks.

    ``score`` is the chosen model's predicted probability of a good answer; the
    reason lists every model's predicted score and expected cost.

    It classifies ``request.prompt_text`` (every turn, the system prompt
    included), which is exactly the ``prompt`` an audit log records: a model
    trained from your own traffic (``tierwise train``) sees at routing time the
    text it was trained on. Train a model on benchmark prompts with the system
    prompt your application sends, for the same reason.

    **Embeddings.** For a model fitted with embeddings, give an ``embedder``:
    an async function from texts to vectors, typically
    ``lambda texts: orch.embed(texts, model="embed")`` (``Orchestrator.embed``
    returns ``Embeddings``, whose ``vectors`` are used) or any coroutine
    returning one vector per text (return the ``Embeddings`` itself, not just its
    vectors, to have its cost billed with the request: it becomes the
    classification's ``call``); or ``embed_model``, a deployment alias, which
    the router's own executor calls (what config's ``embedder = "alias"`` sets,
    with the orchestrator's retry policy, rate limits and budget). A ``Router``
    awaits ``aclassify``, which fetches the embedding first. If the call fails or takes longer than
    ``embed_timeout_s``, the request is routed on the text features alone and
    the reason says so: an embedding endpoint that is down must not stop
    routing. ``classify`` (sync, used by ``explain``) never calls out: it
    decides on the text features alone.
    """

    def __init__(
        self,
        model: OutcomeModel,
        cost_weight: float,
        *,
        embedder: Embedder | None = None,
        embed_model: str | None = None,
        embed_timeout_s: float = 2.0,
    ) -> None:
        if embedder is not None and embed_model is not None:
            raise ValueError("give embedder or embed_model, not both")
        if (embedder is not None or embed_model is not None) and model.embedding_dim is None:
            raise ValueError("embedder given, but the model was fitted without embeddings")
        if not embed_timeout_s > 0:
            raise ValueError("embed_timeout_s must be > 0")
        self.model = model
        self.cost_weight = cost_weight
        self.embedder = embedder
        self.embed_model = embed_model
        self.embed_timeout_s = embed_timeout_s

    @property
    def labels(self) -> tuple[str, ...]:
        return self.model.models

    def __repr__(self) -> str:
        emb = ", embedder=…" if self.embedder is not None else ""
        emb += f", embed_model={self.embed_model!r}" if self.embed_model is not None else ""
        return f"OutcomeClassifier(models={list(self.model.models)}, cost_weight={self.cost_weight:.6g}{emb})"

    @staticmethod
    def text_of(request: Request) -> str:
        return request.prompt_text

    def classify(self, request: Request) -> Classification:
        note = "; text features only" if self.model.embedding_dim is not None else ""
        return self._decide(self.text_of(request), None, note)

    async def aclassify(self, request: Request, ctx: RunContext | None = None) -> Classification:
        """``classify`` with the request's embedding fetched first (when there is an embedder).

        ``ctx`` is the router's run context: ``embed_model`` is called through its executor.
        """
        if self.embedder is None and (self.embed_model is None or ctx is None):
            return self.classify(request)
        import anyio

        from ..errors import TierwiseError

        text = self.text_of(request)
        try:
            with anyio.fail_after(self.embed_timeout_s):
                if self.embedder is not None:
                    got = await self.embedder([text])
                else:
                    assert ctx is not None
                    assert self.embed_model is not None
                    # Billed through Classification.call (below), not twice.
                    got = await ctx.embed(self.embed_model, [text], record=False)
            vectors: Any = getattr(got, "vectors", got)
            if len(vectors) != 1:
                raise ValueError(f"the embedder returned {len(vectors)} vectors for 1 text")
            decided = self._decide(text, vectors[0], "")
        except (TierwiseError, TimeoutError, OSError, ValueError) as exc:
            return self._decide(text, None, f"; embedding failed ({type(exc).__name__}): text features only")
        if hasattr(got, "cost_usd"):  # an Embeddings: bill it with the request (Classification.call)
            decided.call = StepInfo(
                name="classify",
                path=f"{ctx.path}.classify" if ctx is not None else "classify",
                model=str(getattr(got, "deployment", "") or self.embed_model or getattr(got, "model", "")),
                cost_usd=got.cost_usd,
                latency_ms=float(getattr(got, "latency_ms", 0.0)),
                usage=getattr(got, "usage", None) or Usage(),
                note="embedding for the learned router",
                kind="classify",
            )
        return decided

    def _decide(self, text: str, embedding: Sequence[float] | None, note: str) -> Classification:
        model = self.model
        p = model._proba(text, embedding)
        row = model.row_costs(text)
        k = int(model.choose(p.reshape(1, -1), self.cost_weight, row)[0])
        label = model.models[k]
        cost = model._cost_vec if row is None else row[0]
        parts = ", ".join(f"{m} {p[i]:.2f} (cost {cost[i]:.4g})" for i, m in enumerate(model.models))
        reason = f"predicted {parts}; cost_weight {self.cost_weight:.4g}{note} → {label}"
        return Classification(label, min(max(float(p[k]), 0.0), 1.0), reason)
