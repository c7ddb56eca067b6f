"""Learned routing: predict, per model, how well it will answer a prompt.

``OutcomeModel`` is trained offline from recorded outcomes (a benchmark's
per-model correctness, or your own traffic with good/bad feedback) and then
routes each prompt to the model maximizing ``predicted score − cost_weight ×
cost``, the cost being that model's expected cost *for this prompt*: given one
cost per training prompt, each model's cost is fitted as a base plus a price
per character of the prompt (a long prompt costs more input tokens everywhere,
and the absolute gap between a cheap and a dear model grows with it, so a long
prompt needs a larger predicted gain to be worth the dear one); given one number
per model, it is that number for every prompt. ``as_classifier()`` wraps it in
the ``Classifier`` protocol, so a ``Router`` whose labels are the model names
uses it like the keyword classifier::

    model = OutcomeModel.fit(prompts, scores={"big": [...], "small": [...]},
                             costs={"big": 24.7, "small": 0.24})
    model.save("router.json")
    clf = OutcomeModel.load("router.json").as_classifier(strong_share=0.3)
    tw.Router(clf, routes={"big": "opus", "small": "haiku"}, default="small")

Features: one or more *views* of the prompt (``TextView``), each a TF-IDF of
word n-grams and/or character n-grams (within word boundaries; characters from
the first ``char_chars`` only, which bounds the decision time on long prompts)
plus the log of the word count, with one L2-regularized logistic regression per
model and view; a prediction is the mean of the views' probabilities. The
default, chosen by cross-validation over three datasets together
(``benchmarks/routing_cv.py``, ``docs/routing.md``), is two views: word 1-2-grams
and character 3-5-grams, each with its own regularization. Fractional scores
(0..1) are handled by weighting each prompt as a positive with weight ``s`` and
a negative with weight ``1 − s``; a ``nan`` score means "not observed" and is
left out.

The n-grams are hashed to 64 bits with numpy (``_ngrams``), the same code at
fit and at predict time, so decisions stay fast on long prompts (figures in
``benchmarks/classify.py``). scikit-learn is needed only to *fit* (extra ``learn``: ``pip install
"tierwise[learn]"``); predicting, routing, saving and loading use numpy alone,
and a loaded model's predictions equal the fitted one's exactly. The saved file
is JSON, safe to load from anywhere (no pickle, no code): names, costs and
parameters as JSON values, and the arrays (n-gram hashes, IDF weights,
coefficients, the training predictions used for calibration) as base64 of their
little-endian bytes, which keeps them exact and a 200,000-feature model compact.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from ._features import Featurizer, embedding_matrix, pack, unpack, word_count
from ._ngrams import NgramHasher

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FloatArray = npt.NDArray[np.float64]

__all__ = ["DEFAULT_VIEWS", "Embedder", "OutcomeClassifier", "OutcomeModel", "TextView", "require_learn"]

Embedder: TypeAlias = Callable[[list[str]], Awaitable[Any]]
"""An async function from texts to one vector per text (a list of vectors, or an
object with ``.vectors`` such as ``tierwise.Embeddings``)."""

FORMAT = "tierwise.outcome-model/4"
#: Earlier formats ``from_dict`` still reads (``/2``: one view, stored at the top level;
#: ``/3``: views, one cost per model).
_READS = ("tierwise.outcome-model/2", "tierwise.outcome-model/3", FORMAT)
_INSTALL = 'pip install "tierwise[learn]"'


def require_learn(*, sklearn: bool = True) -> None:
    """Raise a clear ``ImportError`` when numpy (or scikit-learn) is missing."""
    try:
        import numpy  # noqa: F401

        if sklearn:
            import sklearn as _sk  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"learned routing needs scikit-learn and numpy ({exc.name or exc} is missing): {_INSTALL}"
        ) from None


def cost_line(chars: Sequence[float] | Any, costs: Sequence[float] | Any) -> tuple[float, float]:
    """``(base, per_char)``: the least-squares line cost ≈ base + per_char × characters.

    ``nan`` costs (not observed) are left out. The slope is kept at 0 or above (a
    prompt does not get cheaper by growing; a negative slope is noise, and it would
    turn the routing's preference around); with fewer than two distinct lengths
    the line is flat at the mean cost.
    """
    import numpy as np

    x = np.asarray(chars, dtype=np.float64)
    y = np.asarray(costs, dtype=np.float64)
    seen = ~np.isnan(y)
    x, y = x[seen], y[seen]
    if y.size == 0:
        return math.nan, 0.0
    mean_y = float(y.mean())
    if y.size < 2 or float(x.std()) == 0.0:
        return mean_y, 0.0
    mean_x = float(x.mean())
    slope = max(0.0, float(((x - mean_x) * (y - mean_y)).sum() / ((x - mean_x) ** 2).sum()))
    return mean_y - slope * mean_x, slope


def _sigmoid(z: FloatArray) -> FloatArray:
    import numpy as np

    out: FloatArray = 1.0 / (1.0 + np.exp(-z))
    return out


@dataclass(frozen=True)
class TextView:
    """One TF-IDF view of the prompt and the regularization of its regressions.

    ``OutcomeModel`` fits one logistic regression per model on each view and
    averages the views' probabilities. Two views fitted apart beat one regression
    on their union in the cross-validation that chose the default: each view gets
    the regularization that suits it (word n-grams want more than character
    n-grams), and averaging two models that err differently steadies the ranking.
    ``word_ngrams`` / ``char_ngrams`` are inclusive (lo, hi) ranges or ``None``
    (at least one must be set; words support 1..2); ``c`` is the logistic
    regression's inverse regularization.
    """

    word_ngrams: tuple[int, int] | None = (1, 2)
    char_ngrams: tuple[int, int] | None = None
    c: float = 1.0

    def __post_init__(self) -> None:
        if self.word_ngrams is None and self.char_ngrams is None:
            raise ValueError("a TextView needs word_ngrams or char_ngrams")
        NgramHasher(self.word_ngrams, self.char_ngrams)  # its range checks, at construction
        if not (isinstance(self.c, int | float) and math.isfinite(self.c) and self.c > 0):
            raise ValueError(f"c must be a finite number > 0, got {self.c!r}")


#: The default views (``benchmarks/routing_cv.py`` chose them; ``docs/routing.md``).
DEFAULT_VIEWS: tuple[TextView, ...] = (
    TextView(word_ngrams=(1, 2), char_ngrams=None, c=0.5),
    TextView(word_ngrams=None, char_ngrams=(3, 5), c=1.0),
)


class _View:
    """A fitted view: its featurizer and one regression per model (text block, length row, intercept)."""

    def __init__(
        self, params: Mapping[str, Any], keys: Any, idf: Any, coef: Any, intercept: Any, k: int
    ) -> None:
        import numpy as np

        self.featurizer = Featurizer(params, keys, idf)
        coef = np.asarray(coef, dtype=np.float64)
        intercept = np.asarray(intercept, dtype=np.float64)
        if coef.size != self.featurizer.n_features * k or intercept.size != k:
            raise ValueError(
                f"outcome model view has {coef.size} coefficients and {intercept.size} intercepts; "
                f"want one regression per model: {self.featurizer.n_features} × {k} and {k}"
            )
        self.coef: FloatArray = coef.reshape(self.featurizer.n_features, k)
        # the text block and the length row apart: a prediction gathers rows of the first
        self.coef_text: FloatArray = np.ascontiguousarray(self.coef[:-1])
        self.coef_len: FloatArray = self.coef[-1].copy()
        self.intercept: FloatArray = intercept.reshape(k)

    def logits(self, prompt: str) -> FloatArray:
        cols, vals, length = self.featurizer.row(prompt)
        z: FloatArray = vals @ self.coef_text[cols] + (length * self.coef_len + self.intercept)
        return z

    def to_dict(self) -> dict[str, Any]:
        f = self.featurizer
        return {
            "params": f.params,
            "keys": pack(f.keys),
            "idf": pack(f.idf),
            "coef": pack(self.coef),
            "intercept": pack(self.intercept),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], k: int, where: str) -> _View:
        missing = [f for f in ("params", "keys", "idf", "coef", "intercept") if f not in data]
        if missing:
            raise ValueError(f"outcome model file lacks {', '.join(missing)}{where}")
        return cls(
            data["params"],
            unpack(data["keys"], "keys"),
            unpack(data["idf"], "idf"),
            unpack(data["coef"], "coef"),
            unpack(data["intercept"], "intercept"),
            k,
        )


def _fit_per_model(x: Any, y: Any, c: float) -> tuple[Any, Any]:
    """One logistic regression per column of ``y`` on the rows where it is observed.

    A fractional score s counts as a positive of weight s and a negative of weight
    1 − s; a column that is all good or all bad gets only an intercept.
    """
    import numpy as np
    import scipy.sparse as sp
    from sklearn.linear_model import LogisticRegression

    n_models = y.shape[1]
    coef = np.zeros((x.shape[1], n_models), dtype=np.float64)
    intercept = np.zeros(n_models, dtype=np.float64)
    for k in range(n_models):
        observed = ~np.isnan(y[:, k])
        s = y[observed, k]
        mean = float(s.mean())
        if mean <= 0.0 or mean >= 1.0:
            p = min(max(mean, 1e-4), 1 - 1e-4)
            intercept[k] = math.log(p / (1 - p))
            continue
        xo = x[observed]
        m = int(observed.sum())
        xx = sp.vstack([xo, xo], format="csr") if sp.issparse(xo) else np.vstack([xo, xo])
        yy = np.concatenate([np.ones(m), np.zeros(m)])
        ww = np.concatenate([s, 1.0 - s])
        nz = ww > 0
        lr = LogisticRegression(C=c, max_iter=1000, solver="liblinear")
        lr.fit(xx[nz], yy[nz], sample_weight=ww[nz])
        coef[:, k] = lr.coef_.ravel()
        intercept[k] = float(lr.intercept_[0])
    return coef, intercept


Hashed: TypeAlias = list[tuple[Any, Any]]
"""Per document, ``(distinct n-gram hashes (sorted), their counts)``."""


def hash_documents(hasher: NgramHasher, prompts: Sequence[str]) -> Hashed:
    """Each prompt's distinct n-gram hashes with their counts (the expensive, reusable step).

    Split from ``fit`` so a cross-validation (``benchmarks/routing_cv.py``) hashes
    each prompt once and rebuilds only the vocabulary per fold, with exactly the
    code ``fit`` runs.
    """
    import numpy as np

    return [np.unique(hasher.hashes(p), return_counts=True) for p in prompts]


def vocabulary(per_doc: Hashed, *, min_df: int, max_features: int | None) -> tuple[Any, Any]:
    """The kept n-gram hashes (sorted) and their smoothed IDF, from the training documents."""
    import numpy as np

    n = len(per_doc)
    flat = np.concatenate([u for u, _ in per_doc]) if n else np.empty(0, np.uint64)
    keys, df = np.unique(flat, return_counts=True)
    keep = df >= min(min_df, n)
    if max_features is not None and int(keep.sum()) > max_features:
        # the most frequent, ties by hash: deterministic for a given corpus
        order = np.lexsort((keys, -df))
        top = np.zeros(keys.size, dtype=bool)
        top[order[:max_features]] = True
        keep &= top
    keys, df = keys[keep], df[keep]
    idf = np.log((1.0 + n) / (1.0 + df)) + 1.0  # smoothed IDF
    return keys, idf


def design_matrix(per_doc: Hashed, keys: Any, idf: Any, words: Sequence[int]) -> Any:
    """Sparse rows: sublinear TF × IDF over ``keys``, L2-normalized, then log(1 + words) / 8.

    The same values ``Featurizer.row`` computes for one prompt at decision time.
    """
    import numpy as np
    import scipy.sparse as sp

    n = len(per_doc)
    lens = np.array([u.size for u, _ in per_doc], dtype=np.int64)
    flat = np.concatenate([u for u, _ in per_doc]) if n else np.empty(0, np.uint64)
    tf = np.concatenate([cnt for _, cnt in per_doc]).astype(np.float64) if n else np.empty(0)
    pos = np.searchsorted(keys, flat)
    pos[pos == keys.size] = 0
    hit = keys[pos] == flat if keys.size else np.zeros(flat.size, dtype=bool)
    rows = np.repeat(np.arange(n), lens)[hit]
    vals = (1.0 + np.log(tf[hit])) * idf[pos[hit]]
    text_x = sp.csr_matrix((vals, (rows, pos[hit])), shape=(n, keys.size))
    norms = np.sqrt(np.asarray(text_x.multiply(text_x).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    text_x = sp.diags(1.0 / norms) @ text_x
    length = np.log1p(np.asarray(words, dtype=np.float64)) / 8.0
    return sp.hstack([text_x, sp.csr_matrix(length.reshape(-1, 1))], format="csr")


class OutcomeModel:
    """Per-model probability of a good answer, learned from prompts and outcomes.

    Build it with ``OutcomeModel.fit`` (or ``load``); see the module docstring.
    ``models`` lists the model names, ``expected_cost`` their mean cost per
    request in the unit the costs were given in, ``cost_lines`` each model's
    ``(base, per_char)`` cost for a prompt of a given length (``prompt_costs``).
    """

    def __init__(
        self,
        *,
        models: Sequence[str],
        expected_cost: Mapping[str, float],
        views: Sequence[_View],
        calibration: Any = (),
        emb_coef: Any = None,
        emb_intercept: Any = None,
        cost_lines: Mapping[str, tuple[float, float]] | None = None,
        calibration_chars: Any = (),
    ) -> None:
        require_learn(sklearn=False)
        import numpy as np

        self.models: tuple[str, ...] = tuple(models)
        if len(set(self.models)) != len(self.models) or not self.models:
            raise ValueError("models must be distinct, non-empty names")
        self.expected_cost: dict[str, float] = {m: float(expected_cost[m]) for m in self.models}
        k = len(self.models)
        if not views:
            raise ValueError("an outcome model needs at least one view")
        if any(v.intercept.shape != (k,) for v in views):
            raise ValueError(f"every view must have one regression per model ({k})")  # built in code
        self._views: tuple[_View, ...] = tuple(views)
        self._cost_vec: FloatArray = np.array([self.expected_cost[m] for m in self.models], dtype=np.float64)
        lines = {m: (self.expected_cost[m], 0.0) for m in self.models}
        for m, line in (cost_lines or {}).items():
            if m not in lines:
                raise ValueError(f"cost_lines names an unknown model {m!r}")
            base, slope = (float(v) for v in line)
            if not (math.isfinite(base) and math.isfinite(slope) and slope >= 0):
                raise ValueError(f"cost_lines[{m!r}] must be a finite base and a per-char cost >= 0")
            lines[m] = (base, slope)
        self.cost_lines: dict[str, tuple[float, float]] = lines
        self._cost_base: FloatArray = np.array([lines[m][0] for m in self.models], dtype=np.float64)
        self._cost_slope: FloatArray = np.array([lines[m][1] for m in self.models], dtype=np.float64)
        self._per_prompt = bool(np.any(self._cost_slope > 0))
        # training-set predictions (n × models), for calibrating a target share or cost,
        # and the training prompts' lengths (their costs, when costs depend on length)
        self._calibration: FloatArray = np.asarray(calibration, dtype=np.float64).reshape(-1, k)
        chars = np.asarray(calibration_chars, dtype=np.float64).reshape(-1)
        if chars.size and chars.size != self._calibration.shape[0]:
            raise ValueError("calibration_chars needs one length per calibration row")
        self._calibration_chars: FloatArray = chars
        # the optional embedding half: one more logistic regression per model, on the
        # prompt's embedding; predictions average the two halves' probabilities
        self._emb_coef: FloatArray | None = None
        self._emb_intercept: FloatArray | None = None
        if emb_coef is not None:
            ec = np.asarray(emb_coef, dtype=np.float64)
            if ec.ndim != 2 or ec.shape[1] != k or emb_intercept is None:
                raise ValueError(f"emb_coef must be (dimension, {k}) with an emb_intercept")
            self._emb_coef = ec
            self._emb_intercept = np.asarray(emb_intercept, dtype=np.float64).reshape(k)

    @property
    def embedding_dim(self) -> int | None:
        """The embedding dimension the model was fitted with, or ``None`` (text features only)."""
        return None if self._emb_coef is None else int(self._emb_coef.shape[0])

    @property
    def n_features(self) -> int:
        """Text features over all views (n-grams kept at fit time, plus each view's length feature)."""
        return sum(v.featurizer.n_features for v in self._views)

    def __repr__(self) -> str:
        return (
            f"OutcomeModel(models={list(self.models)}, views={len(self._views)}, features={self.n_features})"
        )

    # ------------------------------------------------------------------ fitting

    @classmethod
    def fit(
        cls,
        prompts: Sequence[str],
        scores: Mapping[str, Sequence[float]],
        costs: Mapping[str, Sequence[float] | float],
        *,
        views: Sequence[TextView] = DEFAULT_VIEWS,
        char_chars: int = 2_000,
        word_chars: int = 20_000,
        min_df: int = 2,
        max_features: int | None = 200_000,
        embeddings: Any = None,
        c_embedding: float = 1.0,
    ) -> OutcomeModel:
        """Learn each model's probability of answering well, and its expected cost.

        ``scores[model][i]`` is model's outcome on ``prompts[i]`` in 0..1 (1 =
        good). ``costs[model]`` is either one number, that model's cost per
        request (USD per query; a price per 1M tokens works too when all models
        see the same tokens, since only ratios matter to routing), or one USD
        cost per prompt: its mean becomes the expected cost, and a line fitted
        on the prompts' lengths (``cost_line``) the cost ``route`` weighs for a
        prompt of a given length. ``cost_weight`` in ``route`` is in score units
        per cost unit.

        A score may be ``nan``: *not observed* (traffic logs know how the model
        that answered did, rarely how the others would have). Each model's
        regression uses only its observed prompts, and NaN per-prompt costs are
        left out of the mean; a model with no observed score is an error.

        ``views``: the TF-IDF views (``TextView``: n-gram ranges and C), one
        regression per model on each, predictions averaged; n-grams are taken from
        the first ``word_chars``/``char_chars`` characters, those in fewer than
        ``min_df`` prompts are dropped and at most ``max_features`` (the most
        frequent) kept per view. The default (``DEFAULT_VIEWS``: word 1-2-grams at
        C = 0.5 and character 3-5-grams at C = 1) was chosen by cross-validation
        over three datasets together (``benchmarks/routing_cv.py``,
        ``docs/routing.md``); ``(TextView((1, 2), (3, 5), c=2.0),)`` is the
        previous default, one regression on both kinds. Needs scikit-learn (``pip
        install "tierwise[learn]"``).

        ``embeddings`` (optional, ``(n_prompts, dimension)``): each prompt's
        embedding, e.g. from ``Orchestrator.embed`` (any provider's
        ``/v1/embeddings``). A second logistic regression per model (inverse
        regularization ``c_embedding``) is fitted on the L2-normalized vectors, and
        a prediction is the mean of the two halves' probabilities: that is what
        measured best on LLMRouter, chosen by cross-validation on the training
        split (``docs/routing.md``). Predicting then takes the prompt's embedding
        too; without one, the text half alone answers (see ``predict_matrix``).
        """
        require_learn()
        import numpy as np

        prompts = list(prompts)
        n = len(prompts)
        if n < 2:
            raise ValueError("fit needs at least 2 prompts")
        models = list(scores)
        if not models:
            raise ValueError("scores needs at least one model")
        y = np.empty((n, len(models)), dtype=np.float64)
        for k, m in enumerate(models):
            col = np.asarray(scores[m], dtype=np.float64)
            if col.shape != (n,):
                raise ValueError(f"scores[{m!r}] has {col.size} values for {n} prompts")
            seen = col[~np.isnan(col)]
            if np.any((seen < 0) | (seen > 1)) or np.any(np.isinf(seen)):
                raise ValueError(f"scores[{m!r}] must be within 0..1 (or nan: not observed)")
            if seen.size == 0:
                raise ValueError(f"scores[{m!r}] has no observed value (all nan)")
            y[:, k] = col
        expected: dict[str, float] = {}
        lines: dict[str, tuple[float, float]] = {}
        chars = [len(p) for p in prompts]
        for m in models:
            if m not in costs:
                raise ValueError(f"costs has no entry for model {m!r}")
            raw = costs[m]
            if isinstance(raw, int | float):
                value = float(raw)
            else:
                arr = np.asarray(raw, dtype=np.float64)
                if arr.shape != (n,):
                    raise ValueError(f"costs[{m!r}] has {arr.size} values for {n} prompts")
                known = arr[~np.isnan(arr)]
                value = float(known.mean()) if known.size else math.nan
                if known.size and (np.any(known < 0) or np.any(np.isinf(known))):
                    raise ValueError(f"costs[{m!r}] must be finite and >= 0")
                if known.size:
                    lines[m] = cost_line(chars, arr)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"costs[{m!r}] must be finite and >= 0")
            expected[m] = value

        emb = None if embeddings is None else embedding_matrix(embeddings, n)
        views = list(views)
        if not views or not all(isinstance(v, TextView) for v in views):
            raise ValueError("views must be a non-empty sequence of TextView")
        words = [word_count(p) for p in prompts]
        fitted: list[_View] = []
        for view in views:
            params: dict[str, Any] = {
                "word_ngrams": list(view.word_ngrams) if view.word_ngrams else None,
                "char_ngrams": list(view.char_ngrams) if view.char_ngrams else None,
                "word_chars": word_chars,
                "char_chars": char_chars,
                "c": view.c,
            }
            hasher = NgramHasher(
                view.word_ngrams, view.char_ngrams, word_chars=word_chars, char_chars=char_chars
            )
            per_doc = hash_documents(hasher, prompts)
            keys, idf = vocabulary(per_doc, min_df=min_df, max_features=max_features)
            x = design_matrix(per_doc, keys, idf, words)
            coef, intercept = _fit_per_model(x, y, view.c)
            fitted.append(_View(params, keys, idf, coef, intercept, len(models)))
        emb_coef = emb_intercept = None
        if emb is not None:
            emb_coef, emb_intercept = _fit_per_model(emb, y, c_embedding)

        model = cls(
            models=models,
            expected_cost=expected,
            views=fitted,
            emb_coef=emb_coef,
            emb_intercept=emb_intercept,
            cost_lines=lines,
        )
        model._calibration = model.predict_matrix(prompts, embeddings=emb)
        model._calibration_chars = np.asarray(chars, dtype=np.float64)
        return model

    # ------------------------------------------------------------------ predicting

    def predict_matrix(self, prompts: Sequence[str], *, embeddings: Any = None) -> FloatArray:
        """Predicted scores as an ``(n_prompts, n_models)`` array, columns in ``models`` order.

        For a model fitted with embeddings, pass the prompts' ``embeddings``
        (``(n_prompts, dimension)``); without them the text half's prediction is
        returned alone, which is how a router keeps routing when the embedding
        endpoint is down (a little less accurate, never stuck). A model without an
        embedding half rejects ``embeddings``: they would be silently ignored.
        """
        import numpy as np

        n = len(prompts)
        if n == 0:
            return np.zeros((0, len(self.models)), dtype=np.float64)
        out: FloatArray = np.vstack([self._text_proba(p) for p in prompts])
        if embeddings is not None:
            if self._emb_coef is None:
                raise ValueError("this model was fitted without embeddings; predict without them")
            emb = embedding_matrix(embeddings, n, dim=self.embedding_dim)
            out = (out + self._emb_proba(emb)) / 2.0
        return out

    def _emb_proba(self, emb: FloatArray) -> FloatArray:
        assert self._emb_coef is not None
        assert self._emb_intercept is not None
        return _sigmoid(emb @ self._emb_coef + self._emb_intercept)

    def _text_proba(self, prompt: str) -> FloatArray:
        """The text half's predicted scores: the mean of the views' probabilities."""
        views = self._views
        p = _sigmoid(views[0].logits(prompt))
        if len(views) > 1:
            for v in views[1:]:
                p += _sigmoid(v.logits(prompt))
            p /= len(views)
        return p

    def _proba(self, prompt: str, embedding: Sequence[float] | None) -> FloatArray:
        """One prompt's predicted scores (the hot path of ``route`` and the classifier)."""
        p = self._text_proba(prompt)
        if embedding is not None:
            if self._emb_coef is None:
                raise ValueError("this model was fitted without embeddings; route without one")
            emb = embedding_matrix([embedding], 1, dim=self.embedding_dim)
            p = (p + self._emb_proba(emb)[0]) / 2.0
        return p

    def predict(self, prompts: Sequence[str], *, embeddings: Any = None) -> dict[str, FloatArray]:
        """Predicted score (probability of a good answer) per model: ``{model: array(n)}``."""
        if isinstance(prompts, str):
            raise TypeError("predict takes a sequence of prompts, not one string")
        mat = self.predict_matrix(prompts, embeddings=embeddings)
        return {m: mat[:, k].copy() for k, m in enumerate(self.models)}

    def prompt_costs(self, chars: Any) -> FloatArray:
        """Each model's cost for prompts of these lengths (characters): ``(n, n_models)``.

        ``base + per_char × chars`` per ``cost_lines``, never below 0; the same for
        every length when the model was fitted with one cost per model.
        """
        import numpy as np

        x = np.asarray(chars, dtype=np.float64).reshape(-1, 1)
        out: FloatArray = np.maximum(0.0, self._cost_base + x * self._cost_slope)
        return out

    def cost_matrix(self, prompts: Sequence[str]) -> FloatArray:
        """``prompt_costs`` of these prompts, columns in ``models`` order."""
        return self.prompt_costs([len(p) for p in prompts])

    def utilities(self, predicted: FloatArray, cost_weight: float, costs: Any = None) -> FloatArray:
        """``predicted − cost_weight × cost`` for a ``predict_matrix`` result.

        ``costs``: the rows' ``cost_matrix`` (default: each model's expected cost,
        the same for every row).
        """
        out: FloatArray = predicted - cost_weight * (self._cost_vec if costs is None else costs)
        return out

    def choose(self, predicted: FloatArray, cost_weight: float, costs: Any = None) -> Any:
        """Index of the chosen model per row (ties go to the cheaper model); ``costs`` as in ``utilities``."""
        import numpy as np

        order = np.argsort(self._cost_vec, kind="stable")  # cheapest first wins ties in argmax
        util = self.utilities(predicted, cost_weight, costs)[:, order]
        return order[np.argmax(util, axis=1)]

    def route(self, prompt: str, *, cost_weight: float, embedding: Sequence[float] | None = None) -> str:
        """The model maximizing predicted score − ``cost_weight`` × its cost for this prompt.

        ``embedding``: the prompt's embedding, for a model fitted with embeddings
        (without it the text half decides alone).
        """
        p = self._proba(prompt, embedding)
        return self.models[int(self.choose(p.reshape(1, -1), cost_weight, self.row_costs(prompt))[0])]

    def row_costs(self, prompt: str) -> FloatArray | None:
        """``cost_matrix`` of one prompt (``None`` when costs do not depend on length)."""
        return self.prompt_costs([len(prompt)]) if self._per_prompt else None

    # ------------------------------------------------------------------ calibrating

    def strongest(self) -> str:
        """The most expensive model (the "strong" model of a strong-share target)."""
        return max(self.models, key=lambda m: (self.expected_cost[m], m))

    def cost_weight_for(
        self,
        *,
        strong_share: float | None = None,
        cost_per_request: float | None = None,
        strong: str | None = None,
        prompts: Sequence[str] | None = None,
        embeddings: Any = None,
    ) -> float:
        """The smallest ``cost_weight`` meeting a target, calibrated on training prompts.

        ``strong_share``: the share (0..1) of requests that may go to ``strong``
        (default: the most expensive model). ``cost_per_request``: the mean
        expected cost per request may not exceed it. Give exactly one. The
        predictions on the training prompts (stored at fit time) are used, or
        on ``prompts`` if given (e.g. a sample of your recent traffic, with
        their ``embeddings`` for a model fitted with embeddings).
        """
        import numpy as np

        if (strong_share is None) == (cost_per_request is None):
            raise ValueError("give exactly one of strong_share or cost_per_request")
        costs: FloatArray | None = None
        if prompts is not None:
            pred = self.predict_matrix(prompts, embeddings=embeddings)
            if self._per_prompt:
                costs = self.cost_matrix(prompts)
        else:
            pred = self._calibration
            if self._per_prompt and self._calibration_chars.size:
                costs = self.prompt_costs(self._calibration_chars)
        if pred.shape[0] == 0:
            raise ValueError("no calibration prompts: pass prompts=")
        per_row = np.broadcast_to(self._cost_vec if costs is None else costs, pred.shape)
        if strong_share is not None:
            if not 0.0 <= strong_share <= 1.0:
                raise ValueError("strong_share must be within 0..1")
            s = self.models.index(strong if strong is not None else self.strongest())

            def measure(w: float) -> float:
                return float(np.mean(self.choose(pred, w, costs) == s))

            target = strong_share
        else:
            assert cost_per_request is not None

            def measure(w: float) -> float:
                chosen = self.choose(pred, w, costs)
                return float(np.mean(per_row[np.arange(len(chosen)), chosen]))

            target = cost_per_request
        if measure(0.0) <= target:
            return 0.0
        # Past 2 / (the smallest cost gap between two models on any row), every row
        # goes to its cheapest model: the top of the search.
        steps = np.diff(np.sort(per_row, axis=1), axis=1)
        gaps = steps[steps > 0]
        hi = 2.0 / float(gaps.min()) if gaps.size else 1.0
        if measure(hi) > target:
            return hi  # unreachable target: everything goes to the cheapest model at hi
        lo = 0.0
        for _ in range(60):
            mid = (lo + hi) / 2
            if measure(mid) <= target:
                hi = mid
            else:
                lo = mid
        return hi

    def as_classifier(
        self,
        cost_weight: float | None = None,
        *,
        strong_share: float | None = None,
        cost_per_request: float | None = None,
        strong: str | None = None,
        embedder: Embedder | None = None,
        embed_model: str | None = None,
        embed_timeout_s: float = 2.0,
    ) -> OutcomeClassifier:
        """A ``Classifier`` whose labels are model names (route them in a ``Router``).

        Give a raw ``cost_weight``, or a target ``strong_share`` /
        ``cost_per_request`` calibrated on the training prompts
        (``cost_weight_for``). For a model fitted with embeddings, ``embedder``
        or ``embed_model`` fetches each request's embedding (see ``OutcomeClassifier``).
        """
        given = sum(v is not None for v in (cost_weight, strong_share, cost_per_request))
        if given != 1:
            raise ValueError("give exactly one of cost_weight, strong_share or cost_per_request")
        if cost_weight is None:
            cost_weight = self.cost_weight_for(
                strong_share=strong_share, cost_per_request=cost_per_request, strong=strong
            )
        if cost_weight < 0 or not math.isfinite(cost_weight):
            raise ValueError("cost_weight must be finite and >= 0")
        return OutcomeClassifier(
            self, cost_weight, embedder=embedder, embed_model=embed_model, embed_timeout_s=embed_timeout_s
        )

    # ------------------------------------------------------------------ saving

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able form ``save`` writes: names, costs and parameters as JSON, arrays packed."""
        return {
            "format": FORMAT,
            "models": list(self.models),
            "expected_cost": self.expected_cost,
            "cost_lines": {m: list(line) for m, line in self.cost_lines.items()},
            "views": [v.to_dict() for v in self._views],
            "calibration": pack(self._calibration),
            "calibration_chars": pack(self._calibration_chars),
            **(
                {"emb_coef": pack(self._emb_coef), "emb_intercept": pack(self._emb_intercept)}
                if self._emb_coef is not None
                else {}
            ),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutcomeModel:
        """Rebuild a model from ``to_dict`` output; a wrong or damaged file raises ``ValueError``."""
        if not isinstance(data, Mapping) or data.get("format") not in _READS:
            got = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise ValueError(f"not a tierwise outcome model (format {got!r}, want {FORMAT!r})")
        missing = [k for k in ("models", "expected_cost") if k not in data]
        if missing:
            raise ValueError(f"outcome model file lacks {', '.join(missing)}")
        models = data["models"]
        if not isinstance(models, list) or not models:
            raise ValueError("outcome model field 'models' must be a non-empty list of names")
        k = len(models)
        if data["format"] != "tierwise.outcome-model/2":
            raw = data.get("views")
            if not isinstance(raw, list) or not raw or not all(isinstance(v, Mapping) for v in raw):
                raise ValueError("outcome model file lacks views (a non-empty list of tables)")
            views = [_View.from_dict(v, k, f" (view {i})") for i, v in enumerate(raw)]
        else:  # format /2: one view at the top level
            views = [_View.from_dict(data, k, "")]
        return cls(
            models=models,
            expected_cost=data["expected_cost"],
            views=views,
            calibration=unpack(data["calibration"], "calibration") if "calibration" in data else (),
            emb_coef=unpack(data["emb_coef"], "emb_coef") if "emb_coef" in data else None,
            emb_intercept=unpack(data["emb_intercept"], "emb_intercept") if "emb_intercept" in data else None,
            cost_lines=_lines(data.get("cost_lines")),
            calibration_chars=unpack(data["calibration_chars"], "calibration_chars")
            if "calibration_chars" in data
            else (),
        )

    def save(self, path: str | Path) -> None:
        """Write the model as JSON (floats round-trip exactly; no pickled code)."""
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> OutcomeModel:
        """Read a model written by ``save``."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def _lines(raw: Any) -> dict[str, tuple[float, float]] | None:
    """A file's ``cost_lines`` (absent before format /4: one cost per model)."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or not all(
        isinstance(v, list) and len(v) == 2 and all(isinstance(x, int | float) for x in v)
        for v in raw.values()
    ):
        raise ValueError("outcome model field 'cost_lines' must map each model to [base, per_char]")
    return {str(m): (float(v[0]), float(v[1])) for m, v in raw.items()}


# The Classifier adapter lives in its own module; importable from here as before.
from ._outcome_classifier import OutcomeClassifier  # noqa: E402
