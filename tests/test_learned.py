"""OutcomeModel (tierwise.routing.learned) on tiny synthetic data, and the routing-quality metrics."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("sklearn")

from tierwise.catalog import ModelSpec  # noqa: E402
from tierwise.execution.executor import Deployment  # noqa: E402
from tierwise.execution.retry import RetryPolicy  # noqa: E402
from tierwise.orchestrator import Orchestrator  # noqa: E402
from tierwise.routing import Classifier  # noqa: E402
from tierwise.routing.learned import DEFAULT_VIEWS, OutcomeModel, TextView  # noqa: E402
from tierwise.strategies.router import Router  # noqa: E402
from tierwise.testing import FakeProvider  # noqa: E402
from tierwise.types import Done, Request  # noqa: E402

HARD = ["integral", "theorem", "proof", "eigenvalue", "derivative", "lemma"]
EASY = ["capital", "color", "weather", "greeting", "animal", "fruit"]
COSTS = {"strong": 10.0, "weak": 1.0}
#: the default's two views with little regularization: the tiny synthetic data needs a strong fit
LOOSE = (TextView((1, 2), None, c=10.0), TextView(None, (3, 5), c=10.0))


def synthetic(n: int = 200, seed: int = 0) -> tuple[list[str], dict[str, list[float]]]:
    """Hard prompts: only the strong model answers well. Easy prompts: both do."""
    rng = random.Random(seed)
    prompts: list[str] = []
    scores: dict[str, list[float]] = {"strong": [], "weak": []}
    for i in range(n):
        hard = i % 2 == 0
        words = rng.sample(HARD if hard else EASY, 3) + [f"filler{rng.randrange(20)}" for _ in range(4)]
        rng.shuffle(words)
        prompts.append("please answer about " + " ".join(words))
        scores["strong"].append(1.0)
        scores["weak"].append(0.0 if hard else 1.0)
    return prompts, scores


@pytest.fixture(scope="module")
def model() -> OutcomeModel:
    prompts, scores = synthetic()
    return OutcomeModel.fit(prompts, scores, COSTS, views=LOOSE)


def test_predict_learns_which_model_fails(model: OutcomeModel) -> None:
    pred = model.predict(["prove the theorem with an integral", "what color is the fruit"])
    assert set(pred) == {"strong", "weak"}
    assert pred["weak"][0] < 0.3 < 0.7 < pred["weak"][1]
    assert pred["strong"][0] > 0.9 and pred["strong"][1] > 0.9


def test_route_sends_hard_prompts_to_strong(model: OutcomeModel) -> None:
    w = 0.01  # a 9-unit cost gap is worth 0.09 of score
    assert model.route("prove the theorem with an integral", cost_weight=w) == "strong"
    assert model.route("what color is the fruit", cost_weight=w) == "weak"


def test_cost_weight_trades_quality_for_cost(model: OutcomeModel) -> None:
    hard = "eigenvalue lemma derivative"
    assert model.route(hard, cost_weight=0.0) == "strong"
    assert model.route(hard, cost_weight=1.0) == "weak"  # cost dominates
    prompts, _ = synthetic(100, seed=1)
    shares = [np.mean([model.route(p, cost_weight=w) == "strong" for p in prompts]) for w in (0.0, 0.01, 0.5)]
    assert shares[0] >= shares[1] >= shares[2]
    assert shares[1] == pytest.approx(0.5, abs=0.1)
    assert shares[2] == 0.0


def test_fractional_scores_and_per_prompt_costs() -> None:
    prompts, scores = synthetic(60)
    soft = {m: [0.2 + 0.6 * v for v in vals] for m, vals in scores.items()}
    m = OutcomeModel.fit(prompts, soft, {"strong": [9.0, 11.0] * 30, "weak": 1.0})
    assert m.expected_cost == {"strong": 10.0, "weak": 1.0}
    p = m.predict(["integral theorem proof"])
    assert 0.0 < p["weak"][0] < p["strong"][0] < 1.0


def per_char_costs(prompts: list[str]) -> dict[str, list[float]]:
    """What a price per token makes of prompts of different lengths (plus a fixed answer)."""
    return {
        "strong": [10.0 * (len(p) + 100) for p in prompts],
        "weak": [1.0 * (len(p) + 100) for p in prompts],
    }


def test_costs_that_grow_with_the_prompt_are_weighed_per_prompt() -> None:
    """Given per-prompt costs, each model's cost is a line in the prompt's length, and a long
    prompt needs a larger predicted gain to go to the dear model than a short one."""
    from tierwise.routing.learned import cost_line

    prompts, scores = synthetic()
    m = OutcomeModel.fit(prompts, scores, per_char_costs(prompts), views=LOOSE)
    assert m.cost_lines["strong"] == pytest.approx((1000.0, 10.0))
    assert m.cost_lines["weak"] == pytest.approx((100.0, 1.0))
    short, long = "prove the theorem with an integral", "prove the theorem with an integral " + "x" * 2000
    assert m.prompt_costs([0, 100]) == pytest.approx(np.array([[1000.0, 100.0], [2000.0, 200.0]]))
    assert m.cost_matrix([short]) == pytest.approx(m.prompt_costs([len(short)]))
    gain = float(np.diff(m.predict_matrix([short])[0])[0] * -1)  # p(strong) - p(weak), strong first
    assert m.models == ("strong", "weak") and gain > 0.5
    # the cost gap is 9 × (len + 100): at this weight it is worth the gain for the short prompt only
    w = gain / (9.0 * (len(short) + 100)) / 2
    assert m.route(short, cost_weight=w) == "strong"
    assert m.route(long, cost_weight=w) == "weak"
    # a model fitted with one cost per model weighs the same cost for every prompt
    flat = OutcomeModel.fit(prompts, scores, COSTS, views=LOOSE)
    assert flat.cost_lines == {"strong": (10.0, 0.0), "weak": (1.0, 0.0)}
    assert flat.row_costs(long) is None
    # the line: nan left out, a negative slope is noise (kept at 0), one length is flat
    assert cost_line([1, 2, 3, 4], [2.0, float("nan"), 4.0, 5.0]) == pytest.approx((1.0, 1.0))
    assert cost_line([1, 2, 3], [3.0, 2.0, 1.0]) == (2.0, 0.0)
    assert cost_line([5, 5], [1.0, 3.0]) == (2.0, 0.0)


def test_per_prompt_costs_calibrate_save_and_explain(tmp_path: Path) -> None:
    prompts, scores = synthetic()
    costs = per_char_costs(prompts)
    m = OutcomeModel.fit(prompts, scores, costs, views=LOOSE)
    target = float(np.mean(costs["weak"])) * 3  # between always-weak and always-strong
    w = m.cost_weight_for(cost_per_request=target)
    chosen = [m.models.index(m.route(p, cost_weight=w)) for p in prompts]
    spent = np.mean([costs[m.models[k]][i] for i, k in enumerate(chosen)])
    assert spent <= target * (1 + 1e-9) and spent > target * 0.9
    path = tmp_path / "router.json"
    m.save(path)
    loaded = OutcomeModel.load(path)
    assert loaded.cost_lines == m.cost_lines
    assert loaded.cost_weight_for(cost_per_request=target) == w
    assert loaded.route(prompts[0] + " x" * 500, cost_weight=w) == m.route(
        prompts[0] + " x" * 500, cost_weight=w
    )
    clf = m.as_classifier(cost_weight=w)
    reason = clf.classify(Request.from_prompt(prompts[0])).reason
    assert f"(cost {m.prompt_costs([len(prompts[0])])[0][0]:.4g})" in reason
    # a format /3 file (one cost per model) reads with flat lines
    data = m.to_dict()
    del data["cost_lines"], data["calibration_chars"]
    old = OutcomeModel.from_dict(dict(data, format="tierwise.outcome-model/3"))
    assert old.cost_lines == {k: (v, 0.0) for k, v in m.expected_cost.items()}
    with pytest.raises(ValueError, match="cost_lines"):
        OutcomeModel.from_dict(dict(m.to_dict(), cost_lines={"strong": "cheap"}))


def test_fit_validates_inputs() -> None:
    prompts, scores = synthetic(10)
    with pytest.raises(ValueError, match="costs has no entry"):
        OutcomeModel.fit(prompts, scores, {"strong": 1.0})
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        OutcomeModel.fit(prompts, {"a": [2.0] * 10}, {"a": 1.0})
    with pytest.raises(ValueError, match="values for 10 prompts"):
        OutcomeModel.fit(prompts, {"a": [1.0] * 9}, {"a": 1.0})


def test_constant_outcome_model_is_fine() -> None:
    prompts, scores = synthetic(20)
    m = OutcomeModel.fit(prompts, {"always": [1.0] * 20, "weak": scores["weak"]}, {"always": 5, "weak": 1})
    assert m.predict(["anything"])["always"][0] > 0.99


def test_save_load_round_trip_is_exact(model: OutcomeModel, tmp_path: Path) -> None:
    path = tmp_path / "router.json"
    model.save(path)
    assert path.read_text(encoding="utf-8").lstrip().startswith("{")  # plain JSON, no pickle
    loaded = OutcomeModel.load(path)
    probe, _ = synthetic(50, seed=7)
    probe += ["", "unseen words only", "x" * 10_000]
    a, b = model.predict(probe), loaded.predict(probe)
    for name in model.models:
        assert np.array_equal(a[name], b[name])
    assert loaded.expected_cost == model.expected_cost
    assert loaded.cost_weight_for(strong_share=0.3) == model.cost_weight_for(strong_share=0.3)


def test_load_rejects_other_files(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"format": "something else"}', encoding="utf-8")
    with pytest.raises(ValueError, match="not a tierwise outcome model"):
        OutcomeModel.load(path)


@pytest.mark.parametrize("share", [0.0, 0.25, 0.5, 1.0])
def test_calibrate_to_a_strong_share(model: OutcomeModel, share: float) -> None:
    w = model.cost_weight_for(strong_share=share)
    prompts, _ = synthetic()  # the training prompts the calibration used
    got = np.mean([model.route(p, cost_weight=w) == "strong" for p in prompts])
    assert got <= share + 1e-9
    if share in (0.5, 1.0):  # half the training prompts are hard: reachable exactly
        assert got == pytest.approx(share, abs=0.02)


def test_calibrate_to_a_cost_per_request(model: OutcomeModel) -> None:
    w = model.cost_weight_for(cost_per_request=5.5)  # 50% strong: 0.5 × 10 + 0.5 × 1
    prompts, _ = synthetic()
    chosen = [model.route(p, cost_weight=w) for p in prompts]
    mean_cost = np.mean([COSTS[c] for c in chosen])
    assert mean_cost <= 5.5 + 1e-9
    assert mean_cost == pytest.approx(5.5, abs=0.2)
    with pytest.raises(ValueError, match="exactly one"):
        model.cost_weight_for(strong_share=0.1, cost_per_request=1.0)


def test_as_classifier_reason_and_protocol(model: OutcomeModel) -> None:
    clf = model.as_classifier(cost_weight=0.01)
    assert isinstance(clf, Classifier)
    c = clf.classify(Request.from_prompt("prove the lemma about the eigenvalue", system="be brief"))
    assert c.label == "strong"
    assert 0.0 <= c.score <= 1.0
    assert "strong" in c.reason and "weak" in c.reason and "cost" in c.reason
    with pytest.raises(ValueError, match="exactly one"):
        model.as_classifier()


async def test_as_classifier_inside_a_router(model: OutcomeModel) -> None:
    provider = FakeProvider({"big": "from big", "small": "from small"})
    deps = {
        alias: Deployment(alias, provider, alias, spec=ModelSpec(alias, "fake", input=i, output=o))
        for alias, i, o in (("big", 10.0, 30.0), ("small", 0.1, 0.3))
    }
    router = Router(
        model.as_classifier(strong_share=0.5), {"strong": "big", "weak": "small"}, "weak", name="learned"
    )
    orch = Orchestrator(deps, strategies={"learned": router}, retry=RetryPolicy(max_attempts=1))
    hard = await orch.run("integral of the derivative, with proof")
    easy = await orch.run("the capital and the weather")
    assert [m for m, _ in provider.calls] == ["big", "small"]
    assert hard.text == "from big" and easy.text == "from small"
    assert hard.route is not None and "predicted" in hard.route.reason
    await orch.aclose()


def test_import_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)
    prompts, scores = synthetic(10)
    with pytest.raises(ImportError, match=r'pip install "tierwise\[learn\]"'):
        OutcomeModel.fit(prompts, scores, COSTS)


def test_routing_package_import_is_lazy() -> None:
    import subprocess

    code = (
        "import sys, tierwise.routing as r;"
        " assert 'sklearn' not in sys.modules and 'numpy' not in sys.modules;"
        " r.OutcomeModel; assert 'tierwise.routing.learned' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the benchmark's metrics, on hand-computed cases ------------------------------------------


def _metrics() -> Any:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "routing_metrics.py"
    spec = importlib.util.spec_from_file_location("routing_metrics", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_pgr_apgr_cpt_hand_computed() -> None:
    m = _metrics()
    # 4 prompts: weak right on 0,1; strong right on 0,1,2,3 → perf weak 0.5, strong 1.0
    weak = [1, 1, 0, 0]
    strong = [1, 1, 1, 1]
    perfect = [0, 0, 1, 1]  # the prompts weak fails come first
    shares, pgr = m.pgr_curve(perfect, weak, strong)
    assert list(shares) == [0, 0.25, 0.5, 0.75, 1.0]
    assert list(pgr) == [0, 0.5, 1.0, 1.0, 1.0]
    # trapezoids: 0.0625 + 0.1875 + 0.25 + 0.25
    assert m.apgr(perfect, weak, strong) == pytest.approx(0.75)
    assert m.cpt(perfect, weak, strong, 0.5) == 0.25
    assert m.cpt(perfect, weak, strong, 0.8) == 0.5
    worst = [1, 1, 0, 0]  # prompts weak already gets right come first
    assert list(m.pgr_curve(worst, weak, strong)[1]) == [0, 0, 0, 0.5, 1.0]
    assert m.apgr(worst, weak, strong) == pytest.approx(0.25)
    assert m.cpt(worst, weak, strong, 0.8) == 1.0


def test_pgr_can_exceed_one_and_ties_are_random() -> None:
    m = _metrics()
    with pytest.raises(ValueError, match="undefined"):
        m.pgr_curve([1, 0], [0, 1], [1, 0])  # weak 0.5 = strong 0.5: no gap to recover
    weak, strong = [0, 1, 0], [1, 0, 1]  # weak 1/3, strong 2/3
    _, pgr = m.pgr_curve([2, 0, 1], weak, strong)
    assert list(np.round(pgr, 9)) == [0, 1.0, 2.0, 1.0]
    const = np.zeros(1000)
    w = np.random.default_rng(12345).random(1000) < 0.5  # not the tie-break seed's stream
    s = np.ones(1000)
    assert m.apgr(const, w, s) == pytest.approx(0.5, abs=0.03)  # constant score ≈ random


# -- hashed n-grams, the lookup table, unobserved scores, the file format --------------------


def test_ngram_hashes_follow_the_documented_tokenization() -> None:
    from tierwise.routing._ngrams import NgramHasher

    words = NgramHasher((1, 2), None)
    # words: runs of \w of length >= 2, lowercased; "a" and "x" are too short; bigrams join neighbours
    assert words.hashes("a bb cc_d é9 x").size == 3 + 2
    assert set(words.hashes("Hello WORLD").tolist()) == set(words.hashes("hello world").tolist())
    # the same n-gram hashes the same wherever it appears
    assert set(words.hashes("hello world").tolist()) <= set(words.hashes("say hello world now").tolist())
    chars = NgramHasher(None, (3, 3))
    # char 3-grams within space-padded words: " ab", "ab "; " cd", "cde", "de "
    assert chars.hashes("ab cde").size == 5
    assert np.array_equal(np.sort(chars.hashes("ab \t\n cde")), np.sort(chars.hashes("  ab cde ")))
    # word and char n-grams of one string never share a hash; bigrams differ from unigrams
    both = NgramHasher((1, 2), (3, 5))
    h = both.hashes("alpha beta")
    assert np.unique(h).size == h.size
    # caps bound the work: only the first char_chars characters make char n-grams
    capped = NgramHasher(None, (3, 3), char_chars=10)
    assert np.array_equal(capped.hashes("x" * 10 + " tail words"), capped.hashes("x" * 10))
    # odd input: empty, astral code points, lone surrogates
    assert both.hashes("").size == 0
    assert both.hashes("🙂🙂 \ud800 ok").size > 0
    with pytest.raises(ValueError, match="word_ngrams supports"):
        NgramHasher((1, 3), None)
    with pytest.raises(ValueError, match="1 <= lo <= hi"):
        NgramHasher(None, (4, 2))


@pytest.mark.parametrize("n", [0, 1, 7, 5000])
def test_hash_table_agrees_with_a_binary_search(n: int) -> None:
    from tierwise.routing._ngrams import HashTable

    rng = np.random.default_rng(n)
    keys = np.unique(rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True))
    table = HashTable(keys)
    probe = np.concatenate(
        [
            keys,
            keys[table._stash_cols],
            rng.integers(0, 2**64 - 1, 2000, dtype=np.uint64),
            np.zeros(3, np.uint64),
        ]
    )
    expect = np.full(probe.size, -1)
    if keys.size:
        pos = np.minimum(np.searchsorted(keys, probe), keys.size - 1)
        expect = np.where(keys[pos] == probe, pos, -1)
    assert np.array_equal(table.lookup(probe), expect)
    if n == 5000:
        assert table._stash_keys.size > 0  # the overflow path is exercised, not just the buckets


def test_unobserved_scores_are_left_out_of_that_models_fit() -> None:
    prompts, scores = synthetic(200)
    nan = float("nan")
    # the strong model was only ever tried on hard prompts (as a cascade would), the weak one on all
    strong = [1.0 if i % 2 == 0 else nan for i in range(200)]
    m = OutcomeModel.fit(prompts, {"strong": strong, "weak": scores["weak"]}, COSTS, views=LOOSE)
    p = m.predict(["prove the theorem with an integral", "what color is the fruit"])
    assert p["strong"][0] > 0.9 and p["weak"][0] < 0.3 < 0.7 < p["weak"][1]
    assert m.route("eigenvalue lemma derivative", cost_weight=0.01) == "strong"
    # a nan in per-prompt costs is left out of the mean
    m2 = OutcomeModel.fit(prompts, scores, {"strong": [nan, 12.0] * 100, "weak": 1.0})
    assert m2.expected_cost["strong"] == 12.0
    with pytest.raises(ValueError, match="no observed value"):
        OutcomeModel.fit(prompts, {"strong": [nan] * 200, "weak": scores["weak"]}, COSTS)
    with pytest.raises(ValueError, match="finite"):
        OutcomeModel.fit(prompts, scores, {"strong": [nan] * 200, "weak": 1.0})


def test_saved_file_is_compact_json_and_damage_is_a_clear_error(model: OutcomeModel, tmp_path: Path) -> None:
    import json

    path = tmp_path / "router.json"
    model.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "tierwise.outcome-model/4"
    assert len(data["views"]) == 2
    view = data["views"][0]
    assert view["keys"]["dtype"] == "<u8" and view["coef"]["dtype"] == "<f8"
    assert view["params"]["word_ngrams"] == [1, 2] and view["params"]["c"] == 10.0

    def with_view(**change: Any) -> dict[str, Any]:
        return dict(data, views=[dict(view, **change), data["views"][1]])

    with pytest.raises(ValueError, match="'coef' has malformed data"):
        OutcomeModel.from_dict(with_view(coef=dict(view["coef"], data="not base64!")))
    with pytest.raises(ValueError, match="'idf'"):
        OutcomeModel.from_dict(with_view(idf=dict(view["idf"], shape=[view["idf"]["shape"][0] + 1])))
    with pytest.raises(ValueError, match=r"lacks keys \(view 0\)"):
        OutcomeModel.from_dict(dict(data, views=[{k: v for k, v in view.items() if k != "keys"}]))
    with pytest.raises(ValueError, match="lacks views"):
        OutcomeModel.from_dict({k: v for k, v in data.items() if k != "views"})
    with pytest.raises(ValueError, match="not a packed array"):
        OutcomeModel.from_dict(with_view(keys={"dtype": "|O", "shape": [1], "data": ""}))
    with pytest.raises(ValueError, match="one regression per model"):
        OutcomeModel.from_dict(dict(data, models=["strong", "weak", "third"]))


def test_a_file_of_the_previous_format_still_loads_and_predicts_the_same(tmp_path: Path) -> None:
    """Format /2 (one view at the top level, before views existed) is read as a one-view model."""
    prompts, scores = synthetic()
    one = OutcomeModel.fit(prompts, scores, COSTS, views=(TextView((1, 2), (3, 5), c=10.0),))
    data = one.to_dict()
    (view,) = data.pop("views")
    old = dict(data, format="tierwise.outcome-model/2", **view)
    loaded = OutcomeModel.from_dict(old)
    probe = ["prove the theorem with an integral", "what color is the fruit", "unseen words entirely"]
    assert np.array_equal(loaded.predict_matrix(probe), one.predict_matrix(probe))


def test_views_are_fitted_apart_and_their_probabilities_averaged() -> None:
    prompts, scores = synthetic()
    word, char = LOOSE
    both = OutcomeModel.fit(prompts, scores, COSTS, views=LOOSE)
    alone = [OutcomeModel.fit(prompts, scores, COSTS, views=(v,)) for v in (word, char)]
    probe = ["prove the theorem with an integral", "what color is the fruit", "an eigen value, maybe"]
    expect = (alone[0].predict_matrix(probe) + alone[1].predict_matrix(probe)) / 2
    assert np.allclose(both.predict_matrix(probe), expect, rtol=0, atol=1e-12)
    # the two views disagree somewhere (else averaging them would be no test at all)
    assert not np.allclose(alone[0].predict_matrix(probe), alone[1].predict_matrix(probe), atol=1e-3)
    assert both.n_features == alone[0].n_features + alone[1].n_features
    assert "views=2" in repr(both)
    assert OutcomeModel.fit(prompts, scores, COSTS).to_dict()["views"][1]["params"]["c"] == DEFAULT_VIEWS[1].c


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"word_ngrams": None, "char_ngrams": None}, "needs word_ngrams or char_ngrams"),
        ({"char_ngrams": (5, 3)}, "1 <= lo <= hi"),
        ({"char_ngrams": (3, 4, 5)}, "1 <= lo <= hi"),
        ({"word_ngrams": (1, 3)}, "word_ngrams supports unigrams and bigrams only"),
        ({"c": 0.0}, "c must be a finite number > 0"),
        ({"c": float("nan")}, "c must be a finite number > 0"),
    ],
)
def test_a_bad_view_is_refused_with_its_field(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TextView(**kwargs)


def test_fit_refuses_no_views() -> None:
    prompts, scores = synthetic(20)
    with pytest.raises(ValueError, match="non-empty sequence of TextView"):
        OutcomeModel.fit(prompts, scores, COSTS, views=())


def test_classifier_sees_the_text_the_audit_records(model: OutcomeModel) -> None:
    from tierwise.routing.learned import OutcomeClassifier

    request = Request.from_prompt("prove the lemma", system="you are a tutor")
    assert OutcomeClassifier.text_of(request) == request.prompt_text
    clf = model.as_classifier(cost_weight=0.01)
    direct = model.route(request.prompt_text, cost_weight=0.01)
    assert clf.classify(request).label == direct


# -- the embedding half ------------------------------------------------------------------------


def embedded(n: int = 200, seed: int = 0) -> tuple[list[str], dict[str, list[float]], Any]:
    """Prompts whose words say nothing about difficulty; only the embedding does."""
    rng = np.random.default_rng(seed)
    prompts = [" ".join(f"filler{rng.integers(30)}" for _ in range(6)) for _ in range(n)]
    hard = np.arange(n) % 2 == 0
    emb = rng.normal(0, 0.3, (n, 8))
    emb[:, 0] += np.where(hard, 3.0, -3.0)  # the direction that means "hard"
    scores = {"strong": [1.0] * n, "weak": [0.0 if h else 1.0 for h in hard]}
    return prompts, scores, emb


W = 0.05  # with costs 10 vs 1: strong when p(weak) < ~0.55, weak when it is above ~0.55
HARD_VEC = [3.0, 0, 0, 0, 0, 0, 0, 0]
EASY_VEC = [-3.0, 0, 0, 0, 0, 0, 0, 0]


@pytest.fixture(scope="module")
def emb_model() -> OutcomeModel:
    prompts, scores, emb = embedded()
    return OutcomeModel.fit(prompts, scores, COSTS, embeddings=emb, c_embedding=10.0)


def test_embeddings_carry_the_signal_the_text_lacks(emb_model: OutcomeModel) -> None:
    assert emb_model.embedding_dim == 8
    text = "filler3 filler7 filler1"
    p = emb_model.predict([text, text], embeddings=[HARD_VEC, EASY_VEC])
    # the mean of an uninformed text half (≈ 0.5) and a confident embedding half
    assert p["weak"][0] < 0.35 < 0.65 < p["weak"][1]
    assert emb_model.route(text, cost_weight=W, embedding=HARD_VEC) == "strong"
    assert emb_model.route(text, cost_weight=W, embedding=EASY_VEC) == "weak"
    # without an embedding the text half answers alone: it cannot tell the two apart
    alone = emb_model.predict([text])["weak"][0]
    assert p["weak"][0] + 0.15 < alone < p["weak"][1] - 0.15
    # vectors are normalized: a scaled vector predicts the same
    scaled = emb_model.predict([text], embeddings=[[30.0, 0, 0, 0, 0, 0, 0, 0]])["weak"][0]
    assert scaled == pytest.approx(p["weak"][0])


def test_embedding_inputs_are_checked(emb_model: OutcomeModel, model: OutcomeModel) -> None:
    prompts, scores, emb = embedded(20)
    with pytest.raises(ValueError, match="one row per prompt: 20 prompts"):
        OutcomeModel.fit(prompts, scores, COSTS, embeddings=emb[:19])
    bad = emb.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="nan or infinity"):
        OutcomeModel.fit(prompts, scores, COSTS, embeddings=bad)
    with pytest.raises(ValueError, match="dimension 3; the model was fitted with 8"):
        emb_model.predict(["x"], embeddings=[[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="fitted without embeddings"):
        model.predict(["x"], embeddings=[HARD_VEC])
    with pytest.raises(ValueError, match="fitted without embeddings"):
        model.as_classifier(cost_weight=W, embedder=lambda texts: None)  # type: ignore[arg-type,return-value]


def test_embedding_model_round_trips_exactly(emb_model: OutcomeModel, tmp_path: Path) -> None:
    path = tmp_path / "router.json"
    emb_model.save(path)
    loaded = OutcomeModel.load(path)
    prompts, _, emb = embedded(30, seed=5)
    a = emb_model.predict_matrix(prompts, embeddings=emb)
    b = loaded.predict_matrix(prompts, embeddings=emb)
    assert np.array_equal(a, b)
    assert loaded.embedding_dim == 8
    assert loaded.cost_weight_for(strong_share=0.5) == emb_model.cost_weight_for(strong_share=0.5)


async def test_aclassify_fetches_the_embedding_and_falls_back_without_it(emb_model: OutcomeModel) -> None:
    from tierwise.errors import ProviderError

    seen: list[list[str]] = []

    async def embed(texts: list[str]) -> list[list[float]]:
        seen.append(texts)
        return [HARD_VEC if "hard" in t else EASY_VEC for t in texts]

    clf = emb_model.as_classifier(cost_weight=W, embedder=embed)
    hard = Request.from_prompt("filler1 hard filler2", system="sys")
    c = await clf.aclassify(hard)
    assert seen == [[hard.prompt_text]]
    assert c.label == "strong" and "embedding" not in c.reason
    assert (await clf.aclassify(Request.from_prompt("filler1 filler2"))).label == "weak"
    sync = clf.classify(hard)  # explain's path: never calls out
    assert len(seen) == 2 and "text features only" in sync.reason

    async def down(texts: list[str]) -> list[list[float]]:
        raise ProviderError("embeddings endpoint down", provider="x", model="e")

    c = await emb_model.as_classifier(cost_weight=W, embedder=down).aclassify(hard)
    assert "embedding failed (ProviderError): text features only" in c.reason

    async def wrong_count(texts: list[str]) -> list[list[float]]:
        return [HARD_VEC, HARD_VEC]

    c = await emb_model.as_classifier(cost_weight=W, embedder=wrong_count).aclassify(hard)
    assert "embedding failed (ValueError)" in c.reason

    import anyio

    never = anyio.Event()

    async def hangs(texts: list[str]) -> list[list[float]]:
        await never.wait()  # never set: only the timeout ends this
        return []

    c = await emb_model.as_classifier(cost_weight=W, embedder=hangs, embed_timeout_s=0.01).aclassify(hard)
    assert "embedding failed (TimeoutError)" in c.reason


async def test_router_awaits_an_async_classifier(emb_model: OutcomeModel) -> None:
    calls: list[str] = []

    async def embed(texts: list[str]) -> Any:
        calls.extend(texts)

        from types import SimpleNamespace  # like tierwise.Embeddings: vectors under .vectors

        return SimpleNamespace(vectors=[HARD_VEC if "hard" in t else EASY_VEC for t in texts])

    provider = FakeProvider({"big": "from big", "small": "from small"})
    deps = {
        alias: Deployment(alias, provider, alias, spec=ModelSpec(alias, "fake", input=i, output=o))
        for alias, i, o in (("big", 10.0, 30.0), ("small", 0.1, 0.3))
    }
    clf = emb_model.as_classifier(cost_weight=W, embedder=embed)
    router = Router(clf, {"strong": "big", "weak": "small"}, "weak", name="learned")
    orch = Orchestrator(deps, strategies={"learned": router}, retry=RetryPolicy(max_attempts=1))
    assert (await orch.run("filler4 hard")).text == "from big"
    assert (await orch.run("filler4 easy")).text == "from small"
    chunks = [e async for e in orch.stream("filler5 hard")]
    assert chunks and calls == ["filler4 hard", "filler4 easy", "filler5 hard"]
    # plain vectors carry no cost: nothing is added, no classify step
    done = chunks[-1]
    assert isinstance(done, Done) and not [s for s in done.response.steps if s.name == "classify"]
    # explain stays offline: no embedding call, the text half decides
    route = orch.explain("filler4 hard")
    assert "text features only" in route.reason and len(calls) == 3
    await orch.aclose()


# -- configured from TOML / dict -----------------------------------------------------------------


def _outcome_config(server_url: str, router: dict[str, Any]) -> dict[str, Any]:
    provider = {"type": "openai", "compat": "vllm", "base_url": server_url + "/v1"}
    return {
        "providers": {"mock": provider},
        "models": {
            "big": {"provider": "mock", "model": "big-model", "input_price": 10.0, "output_price": 30.0},
            "small": {"provider": "mock", "model": "small-model", "input_price": 0.1, "output_price": 0.3},
            "emb": {"provider": "mock", "model": "emb-model", "input_price": 0.02},
        },
        "strategies": {"learned": {"type": "router", "routes": {"strong": "big", "weak": "small"}, **router}},
        "default_strategy": "learned",
    }


async def test_outcome_router_from_config_with_an_embedder_alias(
    emb_model: OutcomeModel, tmp_path: Path
) -> None:
    from tierwise.testing import MockLLMServer, MockModel

    path = tmp_path / "router.json"
    emb_model.save(path)
    embedded_texts: list[str] = []

    def embed(texts: list[str]) -> list[list[float]]:
        embedded_texts.extend(texts)
        return [HARD_VEC if "hard" in t else EASY_VEC for t in texts]

    models = {
        "big-model": MockModel(reply="from big"),
        "small-model": MockModel(reply="from small"),
        "emb-model": MockModel(),
    }
    async with MockLLMServer(models, embed=embed) as server:
        cfg = _outcome_config(
            server.base_url,
            {"classifier": "outcome", "model": str(path), "cost_weight": W, "embedder": "emb"},
        )
        async with Orchestrator.from_config(cfg) as orch:
            hard = await orch.run("filler2 hard")
            easy = await orch.run("filler2 easy")
    assert easy.route is not None
    assert (hard.text, easy.text) == ("from big", "from small"), easy.route.reason
    assert embedded_texts == ["filler2 hard", "filler2 easy"]  # over real sockets, via /v1/embeddings
    assert hard.route is not None and "text features only" not in hard.route.reason
    # the embedding call is billed with the request: first step, cost added to the answer's
    for answer in (hard, easy):
        step = answer.steps[0]
        assert (step.name, step.model, step.path) == ("classify", "emb", "learned.classify")
        assert step.cost_usd is not None and step.cost_usd > 0 and step.usage.input_tokens > 0
        chat = sum(a.cost_usd or 0.0 for a in answer.attempts)
        assert chat > 0 and answer.cost_usd == pytest.approx(chat + step.cost_usd)


def test_outcome_router_config_errors_name_the_field(
    model: OutcomeModel, emb_model: OutcomeModel, tmp_path: Path
) -> None:
    from tierwise.errors import ConfigError

    path, emb_path = tmp_path / "router.json", tmp_path / "emb.json"
    model.save(path)
    emb_model.save(emb_path)
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")

    def error(router: dict[str, Any]) -> ConfigError:
        with pytest.raises(ConfigError) as info:
            Orchestrator.from_config(_outcome_config("http://127.0.0.1:9", router))
        return info.value

    ok = {"classifier": "outcome", "model": str(path), "strong_share": 0.3}
    orch = Orchestrator.from_config(_outcome_config("http://127.0.0.1:9", ok))
    route = orch.explain("prove the theorem with an integral")
    assert route.label == "strong" and "predicted" in route.reason
    cases = [
        ({**ok, "model": str(tmp_path / "missing.json")}, "model", "no such file"),
        ({**ok, "model": str(tmp_path / "broken.json")}, "model", "cannot load"),
        ({**ok, "cost_weight": 0.1}, "strong_share", "(got cost_weight, strong_share)"),
        ({k: v for k, v in ok.items() if k != "strong_share"}, "strong_share", "exactly one"),
        ({**ok, "strong_share": "lots"}, "strong_share", "expected a number"),
        ({**ok, "strong": "nope"}, "strong", "not a model"),
        ({**ok, "rules": {"x": ["y"]}}, "rules", "unknown key"),
        ({**ok, "embedder": "emb"}, "embedder", "without embeddings"),
        ({**ok, "model": str(emb_path), "embedder": "nope"}, "embedder", "nope"),
        ({**ok, "model": str(emb_path), "embedder": "emb", "embed_timeout_s": 0}, "embed_timeout_s", "> 0"),
        ({**ok, "classifier": "magic"}, "classifier", "available: 'keyword', 'outcome'"),
    ]
    for router, field, text in cases:
        err = error(router)
        assert err.field == f"strategies.learned.{field}", (router, err)
        assert text in str(err), (router, err)
    cfg = _outcome_config("http://127.0.0.1:9", ok)
    cfg["strategies"]["learned"]["routes"] = {"strong": "big"}
    with pytest.raises(ConfigError, match="no route for 'weak'") as info:
        Orchestrator.from_config(cfg)
    assert info.value.field == "strategies.learned.routes"
