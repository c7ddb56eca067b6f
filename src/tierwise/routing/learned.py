"""Learned routing: predict, per model, how well it will answer a prompt.

``OutcomeModel`` is trained offline from recorded outcomes (a benchmark's
per-model correctness, or your own traffic with good/bad feedback) and then
routes each prompt to the model maximizing ``predicted score − cost_weight ×
expected cost``. ``as_classifier()`` wraps it in the ``Classifier`` protocol,
so a ``Router`` whose labels are the model names uses it like the keyword
classifier::

    model = OutcomeModel.fit(prompts, scores={"big": [...], "small": [...]},
                             costs={"big": 24.7, "small": 0.24})
    model.save("router.json")
    clf = OutcomeModel.load("router.json").as_classifier(strong_share=0.3)
    tw.Router(clf, routes={"big": "opus", "small": "haiku"}, default="small")

Features (the default, and what measured best in ``docs/routing.md``): TF-IDF
of word 1-2-grams and character 3-5-grams (within word boundaries; only the
first ``char_chars`` characters, which bounds the decision time on long
prompts), plus the log of the word count; one L2-regularized logistic
regression per model on those features. Fractional scores (0..1) are handled
by weighting each prompt as a positive with weight ``s`` and a negative with
weight ``1 − s``.

scikit-learn is needed only to *fit* (extra ``learn``: ``pip install
"tierwise[learn]"``); predicting, routing, saving and loading use numpy and
this module's own scorer (the same tokenizer, a dict lookup per n-gram and a
sparse dot product), so a loaded model's predictions equal the fitted one's
exactly. The saved file is plain JSON: vocabulary, IDF weights, coefficients,
per-model expected costs and the training predictions used for calibration.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..types import Request
from .base import Classification

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FloatArray = npt.NDArray[np.float64]

__all__ = ["OutcomeClassifier", "OutcomeModel", "require_learn"]

FORMAT = "tierwise.outcome-model/1"
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


def _word_count(text: str) -> int:
    return len(text.split())


class _Featurizer:
    """Word + char TF-IDF and a length feature, scored without scikit-learn."""

    def __init__(self, params: Mapping[str, Any], vocab: Sequence[str], idf: Sequence[float]) -> None:
        self.params = dict(params)
        self.terms = list(vocab)
        self.index: dict[str, int] = {t: i for i, t in enumerate(self.terms)}
        self.idf = list(idf)
        self.char_chars: int = int(self.params.get("char_chars", 4000))
        self.n_text = len(self.terms)
        self.n_features = self.n_text + 1  # + log word count
        self._word = (
            _analyzer("word", tuple(self.params["word_ngrams"])) if self.params["word_ngrams"] else None
        )
        cn = self.params.get("char_ngrams")
        self._char = _analyzer("char_wb", tuple(cn)) if cn else None

    def row(self, text: str) -> tuple[list[int], list[float]]:
        """Sparse feature row (indices, values) of one text: sublinear TF × IDF, L2-normalized."""
        counts: Counter[str] = Counter()
        if self._word is not None:
            counts.update("w " + t for t in self._word(text))
        if self._char is not None:
            counts.update("c " + t for t in self._char(text[: self.char_chars]))
        index = self.index
        idf = self.idf
        cols: list[int] = []
        vals: list[float] = []
        for term, n in counts.items():
            j = index.get(term)
            if j is not None:
                cols.append(j)
                vals.append((1.0 + math.log(n)) * idf[j])
        norm = math.sqrt(math.fsum(v * v for v in vals))
        if norm > 0:
            vals = [v / norm for v in vals]
        cols.append(self.n_text)
        vals.append(math.log1p(_word_count(text)) / 8.0)
        return cols, vals


def _analyzer(kind: str, ngrams: tuple[int, int]) -> Callable[[str], list[str]]:
    """scikit-learn's analyzer when available, else an equivalent (same tokens) fallback."""
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
    except ImportError:
        return _fallback_analyzer(kind, ngrams)
    fn: Callable[[str], list[str]] = TfidfVectorizer(analyzer=kind, ngram_range=ngrams).build_analyzer()
    return fn


def _fallback_analyzer(kind: str, ngrams: tuple[int, int]) -> Callable[[str], list[str]]:
    # Mirrors sklearn's defaults: lowercase, strip_accents=None, token_pattern (?u)\b\w\w+\b,
    # and _char_wb_ngrams (whitespace normalized, each word padded with spaces).
    import re

    lo, hi = ngrams
    if kind == "word":
        pattern = re.compile(r"(?u)\b\w\w+\b")

        def words(text: str) -> list[str]:
            toks = pattern.findall(text.lower())
            out: list[str] = []
            n = len(toks)
            if lo == 1:
                out.extend(toks)
            for k in range(max(lo, 2), min(hi, n) + 1):
                out.extend(" ".join(toks[i : i + k]) for i in range(n - k + 1))
            return out

        return words
    white = re.compile(r"\s\s+")

    def chars(text: str) -> list[str]:
        text = white.sub(" ", text.lower())
        out: list[str] = []
        for w in text.split():
            w = " " + w + " "
            wl = len(w)
            for k in range(lo, hi + 1):
                offset = 0
                out.append(w[offset : offset + k])
                while offset + k < wl:
                    offset += 1
                    out.append(w[offset : offset + k])
                if offset == 0:
                    break
        return out

    return chars


class OutcomeModel:
    """Per-model probability of a good answer, learned from prompts and outcomes.

    Build it with ``OutcomeModel.fit`` (or ``load``); see the module docstring.
    ``models`` lists the model names, ``expected_cost`` their expected cost per
    request in the unit the costs were given in.
    """

    def __init__(
        self,
        *,
        models: Sequence[str],
        expected_cost: Mapping[str, float],
        params: Mapping[str, Any],
        vocab: Sequence[str],
        idf: Sequence[float],
        coef: Sequence[Sequence[float]],
        intercept: Sequence[float],
        calibration: Sequence[Sequence[float]] = (),
    ) -> None:
        require_learn(sklearn=False)
        import numpy as np

        self.models: tuple[str, ...] = tuple(models)
        if len(set(self.models)) != len(self.models) or not self.models:
            raise ValueError("models must be distinct, non-empty names")
        self.expected_cost: dict[str, float] = {m: float(expected_cost[m]) for m in self.models}
        self._featurizer = _Featurizer(params, vocab, idf)
        self._coef: FloatArray = np.asarray(coef, dtype=np.float64).reshape(
            self._featurizer.n_features, len(self.models)
        )
        self._intercept: FloatArray = np.asarray(intercept, dtype=np.float64).reshape(len(self.models))
        self._cost_vec: FloatArray = np.array([self.expected_cost[m] for m in self.models], dtype=np.float64)
        # training-set predictions (n × models), for calibrating a target share or cost
        self._calibration: FloatArray = np.asarray(calibration, dtype=np.float64).reshape(
            -1, len(self.models)
        )

    def __repr__(self) -> str:
        return f"OutcomeModel(models={list(self.models)}, features={self._featurizer.n_features})"

    # ------------------------------------------------------------------ fitting

    @classmethod
    def fit(
        cls,
        prompts: Sequence[str],
        scores: Mapping[str, Sequence[float]],
        costs: Mapping[str, Sequence[float] | float],
        *,
        word_ngrams: tuple[int, int] | None = (1, 2),
        char_ngrams: tuple[int, int] | None = (3, 5),
        char_chars: int = 4000,
        min_df: int = 2,
        max_features: int | None = 200_000,
        c: float = 1.0,
    ) -> OutcomeModel:
        """Learn each model's probability of answering well, and its expected cost.

        ``scores[model][i]`` is model's outcome on ``prompts[i]`` in 0..1 (1 =
        good). ``costs[model]`` is either one number, that model's cost per
        request (USD per query; a price per 1M tokens works too when all models
        see the same tokens, since only ratios matter to routing), or one USD
        cost per prompt, whose mean becomes the expected cost. ``cost_weight``
        in ``route`` is in score units per cost unit.

        ``word_ngrams``/``char_ngrams`` set the TF-IDF n-gram ranges (``None``
        disables one); ``c`` is the logistic regression's inverse
        regularization. Needs scikit-learn (``pip install "tierwise[learn]"``).
        """
        require_learn()
        import numpy as np
        import scipy.sparse as sp
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

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
            if np.any((col < 0) | (col > 1)) or np.any(~np.isfinite(col)):
                raise ValueError(f"scores[{m!r}] must be within 0..1")
            y[:, k] = col
        expected: dict[str, float] = {}
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
                value = float(arr.mean())
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"costs[{m!r}] must be finite and >= 0")
            expected[m] = value

        params: dict[str, Any] = {
            "word_ngrams": list(word_ngrams) if word_ngrams else None,
            "char_ngrams": list(char_ngrams) if char_ngrams else None,
            "char_chars": char_chars,
        }
        blocks = []
        vocab: list[str] = []
        idf: list[float] = []
        for prefix, kind, rng, texts in (
            ("w ", "word", word_ngrams, prompts),
            ("c ", "char_wb", char_ngrams, [p[:char_chars] for p in prompts]),
        ):
            if not rng:
                continue
            vec = TfidfVectorizer(
                analyzer=kind,
                ngram_range=tuple(rng),
                min_df=min(min_df, n),
                max_features=max_features,
                sublinear_tf=True,
                norm=None,
                dtype=np.float64,
            )
            blocks.append(vec.fit_transform(texts))
            order = sorted(vec.vocabulary_.items(), key=lambda kv: kv[1])
            vocab.extend(prefix + term for term, _ in order)
            idf.extend(float(v) for v in vec.idf_)
        if not blocks:
            raise ValueError("enable word_ngrams or char_ngrams")
        text_x = sp.hstack(blocks, format="csr")
        # one L2 norm over word + char blocks together, as the scorer does
        norms = np.sqrt(np.asarray(text_x.multiply(text_x).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        text_x = sp.diags(1.0 / norms) @ text_x
        length = np.log1p([_word_count(p) for p in prompts]) / 8.0
        x = sp.hstack([text_x, sp.csr_matrix(length.reshape(-1, 1))], format="csr")

        n_features = x.shape[1]
        coef = np.zeros((n_features, len(models)), dtype=np.float64)
        intercept = np.zeros(len(models), dtype=np.float64)
        for k in range(len(models)):
            s = y[:, k]
            mean = float(s.mean())
            if mean <= 0.0 or mean >= 1.0:
                p = min(max(mean, 1e-4), 1 - 1e-4)
                intercept[k] = math.log(p / (1 - p))
                continue
            xx = sp.vstack([x, x], format="csr")
            yy = np.concatenate([np.ones(n), np.zeros(n)])
            ww = np.concatenate([s, 1.0 - s])
            keep = ww > 0
            lr = LogisticRegression(C=c, max_iter=1000, solver="liblinear")
            lr.fit(xx[keep], yy[keep], sample_weight=ww[keep])
            coef[:, k] = lr.coef_.ravel()
            intercept[k] = float(lr.intercept_[0])

        model = cls(
            models=models,
            expected_cost=expected,
            params=params,
            vocab=vocab,
            idf=idf,
            coef=coef.tolist(),
            intercept=intercept.tolist(),
        )
        model._calibration = model.predict_matrix(prompts)
        return model

    # ------------------------------------------------------------------ predicting

    def predict_matrix(self, prompts: Sequence[str]) -> FloatArray:
        """Predicted scores as an ``(n_prompts, n_models)`` array, columns in ``models`` order."""
        import numpy as np

        rows = [self._logits(p) for p in prompts]
        if not rows:
            return np.zeros((0, len(self.models)), dtype=np.float64)
        z = np.vstack(rows)
        out: FloatArray = 1.0 / (1.0 + np.exp(-z))
        return out

    def _logits(self, prompt: str) -> FloatArray:
        import numpy as np

        cols, vals = self._featurizer.row(prompt)
        z: FloatArray = np.asarray(vals, dtype=np.float64) @ self._coef[cols] + self._intercept
        return z

    def predict(self, prompts: Sequence[str]) -> dict[str, FloatArray]:
        """Predicted score (probability of a good answer) per model: ``{model: array(n)}``."""
        if isinstance(prompts, str):
            raise TypeError("predict takes a sequence of prompts, not one string")
        mat = self.predict_matrix(prompts)
        return {m: mat[:, k].copy() for k, m in enumerate(self.models)}

    def utilities(self, predicted: FloatArray, cost_weight: float) -> FloatArray:
        """``predicted − cost_weight × expected cost`` for a ``predict_matrix`` result."""
        out: FloatArray = predicted - cost_weight * self._cost_vec
        return out

    def choose(self, predicted: FloatArray, cost_weight: float) -> Any:
        """Index of the chosen model per row (ties go to the cheaper model)."""
        import numpy as np

        order = np.argsort(self._cost_vec, kind="stable")  # cheapest first wins ties in argmax
        util = self.utilities(predicted, cost_weight)[:, order]
        return order[np.argmax(util, axis=1)]

    def route(self, prompt: str, *, cost_weight: float) -> str:
        """The model maximizing predicted score − ``cost_weight`` × expected cost."""
        import numpy as np

        p = 1.0 / (1.0 + np.exp(-self._logits(prompt)))
        return self.models[int(self.choose(p.reshape(1, -1), cost_weight)[0])]

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
    ) -> float:
        """The smallest ``cost_weight`` meeting a target, calibrated on training prompts.

        ``strong_share``: the share (0..1) of requests that may go to ``strong``
        (default: the most expensive model). ``cost_per_request``: the mean
        expected cost per request may not exceed it. Give exactly one. The
        predictions on the training prompts (stored at fit time) are used, or
        on ``prompts`` if given (e.g. a sample of your recent traffic).
        """
        import numpy as np

        if (strong_share is None) == (cost_per_request is None):
            raise ValueError("give exactly one of strong_share or cost_per_request")
        pred = self.predict_matrix(prompts) if prompts is not None else self._calibration
        if pred.shape[0] == 0:
            raise ValueError("no calibration prompts: pass prompts=")
        if strong_share is not None:
            if not 0.0 <= strong_share <= 1.0:
                raise ValueError("strong_share must be within 0..1")
            s = self.models.index(strong if strong is not None else self.strongest())

            def measure(w: float) -> float:
                return float(np.mean(self.choose(pred, w) == s))

            target = strong_share
        else:
            assert cost_per_request is not None

            def measure(w: float) -> float:
                return float(np.mean(self._cost_vec[self.choose(pred, w)]))

            target = cost_per_request
        if measure(0.0) <= target:
            return 0.0
        costs = sorted(set(self._cost_vec.tolist()))
        gaps = [b - a for a, b in itertools.pairwise(costs) if b - a > 0]
        hi = 2.0 / min(gaps) if gaps else 1.0
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
    ) -> OutcomeClassifier:
        """A ``Classifier`` whose labels are model names (route them in a ``Router``).

        Give a raw ``cost_weight``, or a target ``strong_share`` /
        ``cost_per_request`` calibrated on the training prompts
        (``cost_weight_for``).
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
        return OutcomeClassifier(self, cost_weight)

    # ------------------------------------------------------------------ saving

    def to_dict(self) -> dict[str, Any]:
        f = self._featurizer
        return {
            "format": FORMAT,
            "models": list(self.models),
            "expected_cost": self.expected_cost,
            "params": f.params,
            "vocab": f.terms,
            "idf": f.idf,
            "coef": self._coef.tolist(),
            "intercept": self._intercept.tolist(),
            "calibration": self._calibration.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutcomeModel:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a tierwise outcome model (format {data.get('format')!r}, want {FORMAT!r})")
        return cls(
            models=data["models"],
            expected_cost=data["expected_cost"],
            params=data["params"],
            vocab=data["vocab"],
            idf=data["idf"],
            coef=data["coef"],
            intercept=data["intercept"],
            calibration=data.get("calibration", ()),
        )

    def save(self, path: str | Path) -> None:
        """Write the model as JSON (floats round-trip exactly; no pickled code)."""
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> OutcomeModel:
        """Read a model written by ``save``."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


class OutcomeClassifier:
    """``Classifier`` adapter: label = the model ``OutcomeModel.route`` picks.

    ``score`` is the chosen model's predicted probability of a good answer; the
    reason lists every model's predicted score and expected cost. Like the
    keyword classifier, it classifies every non-system turn joined by newlines.
    """

    def __init__(self, model: OutcomeModel, cost_weight: float) -> None:
        self.model = model
        self.cost_weight = cost_weight

    @property
    def labels(self) -> tuple[str, ...]:
        return self.model.models

    def __repr__(self) -> str:
        return f"OutcomeClassifier(models={list(self.model.models)}, cost_weight={self.cost_weight:.6g})"

    @staticmethod
    def text_of(request: Request) -> str:
        return "\n".join(m.text for m in request.messages if m.role != "system")

    def classify(self, request: Request) -> Classification:
        import numpy as np

        model = self.model
        p = 1.0 / (1.0 + np.exp(-model._logits(self.text_of(request))))
        k = int(model.choose(p.reshape(1, -1), self.cost_weight)[0])
        label = model.models[k]
        parts = ", ".join(
            f"{m} {p[i]:.2f} (cost {model.expected_cost[m]:.4g})" for i, m in enumerate(model.models)
        )
        reason = f"predicted {parts}; cost_weight {self.cost_weight:.4g} → {label}"
        return Classification(label, min(max(float(p[k]), 0.0), 1.0), reason)
