"""The plain TF-IDF + logistic-regression utility router, the yardstick for OutcomeModel.

Kept apart from ``routing_quality.py`` so every track runs the very same baseline.
"""

from __future__ import annotations

import numpy as np

BASELINE = "TF-IDF + LR baseline"


def baseline_predict(train_q: list[str], outcomes: np.ndarray, test_q: list[str]) -> np.ndarray:
    """The plain utility router the issue measures against: p(good) per model on ``test_q``.

    TF-IDF of word 1-2-grams (min_df 2, sublinear tf) and one logistic regression (C = 2) per
    model on its outcome (scores >= 0.5 count as good). Nothing here is tuned; it is the yardstick.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    x_tr = vec.fit_transform(train_q)
    x_te = vec.transform(test_q)
    out = np.empty((len(test_q), outcomes.shape[1]))
    for k in range(outcomes.shape[1]):
        y = (outcomes[:, k] >= 0.5).astype(int)
        if y.min() == y.max():
            out[:, k] = float(y[0])
            continue
        lr = LogisticRegression(C=2.0, max_iter=1000)
        lr.fit(x_tr, y)
        out[:, k] = lr.predict_proba(x_te)[:, 1]
    return out
