"""SimilarityRegressor on the tiny model: scikit-learn's checks, features, model selection, errors."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
from conftest import PLACEHOLDER_MODEL, STRICT_XFAIL, TINY_DIM, pairwise_cosine, polars
from scipy.stats import pearsonr, spearmanr
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, KFold, cross_validate
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import parametrize_with_checks

from skembed import EmbeddingVectorizer, SimilarityRegressor, pearson_scorer, spearman_scorer
from skembed._heads import MonotoneInterpolation

@parametrize_with_checks(
    [SimilarityRegressor(EmbeddingVectorizer(PLACEHOLDER_MODEL, device="cpu"))], **STRICT_XFAIL
)
def test_sklearn_estimator_checks(estimator, check, tiny_model):
    check(estimator.set_params(vectorizer__model=tiny_model))


def test_tags_are_honest():
    tags = get_tags(SimilarityRegressor())
    assert tags.input_tags.string and tags.input_tags.two_d_array
    assert tags.regressor_tags.poor_score
    assert not tags.input_tags.allow_nan
    assert not (tags.non_deterministic or tags.no_validation or tags._skip_test)
    lenient = SimilarityRegressor(EmbeddingVectorizer(handle_missing="empty"))
    assert get_tags(lenient).input_tags.allow_nan


@pytest.fixture(scope="module")
def pairs(stsb_dir):
    data = pd.read_csv(stsb_dir / "train.csv").head(120)
    return data[["sentence1", "sentence2"]], data["similarity_score"].to_numpy()


def test_two_columns_calibrate_cosine_to_the_scale_of_y(tiny_model, pairs):
    X, y = pairs
    reg = SimilarityRegressor(EmbeddingVectorizer(tiny_model, device="cpu")).fit(X, y)
    assert isinstance(reg.head_, MonotoneInterpolation) and reg.pairs_ == [(0, 1)]
    vectors = EmbeddingVectorizer(tiny_model, device="cpu").fit_transform(X)
    expected = pairwise_cosine(vectors[:, :TINY_DIM], vectors[:, TINY_DIM:])
    np.testing.assert_allclose(reg.predict_similarity(X), expected, rtol=1e-5)
    pred = reg.predict(X)
    margin = 1e-3 * np.ptp(y)
    assert pred.min() >= y.min() - margin and pred.max() <= y.max() + margin
    # The calibration is strictly increasing in the cosine: the cosine's ranks, its ties only
    # (two pairs of one sentence with itself, and a duplicated pair).
    similarity = reg.predict_similarity(X)
    order = np.argsort(similarity)
    rising = np.diff(similarity[order]) > 0
    assert rising.sum() >= len(y) - 3 and np.all(np.diff(pred[order])[rising] > 0)
    assert spearmanr(y, pred).statistic == pytest.approx(spearmanr(y, similarity).statistic,
                                                         abs=1e-12)
    isotonic = SimilarityRegressor(EmbeddingVectorizer(tiny_model, device="cpu"),
                                   head="isotonic").fit(X, y)
    # On its training pairs the isotonic staircase is the best monotone fit (R²); on
    # held-out pairs the interpolation through its steps does better (see
    # test_the_monotone_head_beats_the_isotonic_one_on_stsb_test).
    assert 0 < reg.score(X, y) <= isotonic.score(X, y)
    assert isinstance(isotonic.head_, IsotonicRegression)
    assert len(np.unique(isotonic.predict(X))) < len(np.unique(pred)) == len(np.unique(similarity))


def test_k_columns_use_all_pairwise_similarities(tiny_model):
    X = pd.DataFrame(
        {
            "query": ["red shoes", "blue car", "green tea", "red shoes", "old books"],
            "title": ["red sneakers", "a blue truck", "matcha", "running shoes", "novels"],
            "brand": ["Acme", "Acme", "Zen", "Bolt", "Acme"],
        }
    )
    y = np.array([3.0, 2.0, 1.0, 2.5, 0.5])
    reg = SimilarityRegressor(EmbeddingVectorizer(tiny_model, device="cpu")).fit(X, y)
    assert isinstance(reg.head_, Ridge)
    assert reg.pairs_ == [(0, 1), (0, 2), (1, 2)]
    assert list(reg.feature_names_in_) == ["query", "title", "brand"]
    vectors = EmbeddingVectorizer(tiny_model, device="cpu").fit_transform(X)
    cols = [vectors[:, j * TINY_DIM : (j + 1) * TINY_DIM] for j in range(3)]
    expected = np.column_stack([pairwise_cosine(cols[i], cols[j]) for i, j in reg.pairs_])
    sims = reg.predict_similarity(X)
    np.testing.assert_allclose(sims, expected, rtol=1e-5)
    np.testing.assert_allclose(reg.predict(X), reg.head_.predict(sims))


def test_each_distinct_text_is_embedded_once_per_call(tiny_model, monkeypatch):
    calls = []
    original = EmbeddingVectorizer.embed_unique

    def spy(self, texts):
        calls.append(list(texts))
        return original(self, texts)

    monkeypatch.setattr(EmbeddingVectorizer, "embed_unique", spy)
    X = [("a", "b"), ("b", "a"), ("a", "c"), ("c", "c")]
    reg = SimilarityRegressor(EmbeddingVectorizer(tiny_model, device="cpu")).fit(X, [1, 2, 3, 4])
    reg.predict(X)
    assert len(calls) == 2
    assert all(sorted(texts) == ["a", "b", "c"] for texts in calls)


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_containers_give_the_same_predictions(tiny_model, pairs):
    X, y = pairs
    reg = SimilarityRegressor(EmbeddingVectorizer(tiny_model, device="cpu")).fit(X, y)
    expected = reg.predict(X)
    tuples = list(X.itertuples(index=False, name=None))
    for other in (tuples, X.to_numpy()):
        np.testing.assert_allclose(reg.predict(other), expected)


@pytest.mark.extras
def test_a_polars_frame_gives_the_same_predictions(tiny_model, pairs):
    X, y = pairs
    reg = SimilarityRegressor(EmbeddingVectorizer(tiny_model, device="cpu")).fit(X, y)
    np.testing.assert_allclose(reg.predict(polars().from_pandas(X)), reg.predict(X))


def test_scorers_in_grid_search_and_cross_validate(tiny_model, pairs):
    X, y = pairs
    vec = EmbeddingVectorizer(tiny_model, device="cpu", cache="memory")
    grid = GridSearchCV(
        SimilarityRegressor(vec),
        {"vectorizer__batch_size": [8, 64], "head": ["isotonic", "ridge"]},
        scoring={"spearman": spearman_scorer, "pearson": pearson_scorer},
        refit="spearman",
        cv=KFold(3),
    ).fit(X, y)
    scores = grid.cv_results_["mean_test_spearman"]
    assert np.all(np.isfinite(scores)) and np.all(np.abs(scores) <= 1)
    assert grid.best_score_ == scores.max()
    # Nested parameters reach the fitted vectorizer and the head.
    best = grid.best_estimator_
    assert best.vectorizer_.batch_size == grid.best_params_["vectorizer__batch_size"]
    head = {"isotonic": IsotonicRegression, "ridge": Ridge}[grid.best_params_["head"]]
    assert isinstance(best.head_, head)
    cv = cross_validate(
        SimilarityRegressor(vec), X, y, cv=KFold(3),
        scoring={"spearman": spearman_scorer, "pearson": pearson_scorer},
        return_estimator=True, return_indices=True,
    )
    for k in range(3):
        fold_test = cv["indices"]["test"][k]
        pred = cv["estimator"][k].predict(X.iloc[fold_test])
        assert cv["test_spearman"][k] == pytest.approx(spearmanr(y[fold_test], pred).statistic)
        assert cv["test_pearson"][k] == pytest.approx(pearsonr(y[fold_test], pred).statistic)


def test_missing_cells_follow_the_vectorizer_policy(tiny_model):
    X = [("a dog", None), ("a cat", "a cat"), ("a bird", "a fish")]
    with pytest.raises(ValueError, match=r"missing value.*column 1, row 0"):
        SimilarityRegressor(EmbeddingVectorizer(tiny_model, device="cpu")).fit(X, [0, 5, 1])
    zero = SimilarityRegressor(
        EmbeddingVectorizer(tiny_model, device="cpu", handle_missing="zero")
    ).fit(X, [0, 5, 1])
    sims = zero.predict_similarity(X)
    assert sims[0] == 0.0 and sims[1] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "X, y, match",
    [
        (["one column", "of text"], [1.0, 2.0], r"1 feature\(s\).*at least 2 text column"),
        ([("a", "b"), ("c", "d")], [1.0, np.nan], "Input y contains NaN"),
        ([("a", "b"), ("c", "d"), ("e", "f")], [1.0, 2.0], "inconsistent numbers of samples"),
        ([("a", "b"), ("c", "d")], None, "y should be a 1d array"),
    ],
    ids=["one-column", "y-nan", "lengths", "y-none"],
)
def test_bad_fit_input_has_clear_errors(tiny_model, X, y, match):
    with pytest.raises(ValueError, match=match):
        SimilarityRegressor(EmbeddingVectorizer(tiny_model, device="cpu")).fit(X, y)


def test_y_is_validated_before_X():
    # No model is ever needed: y fails first, even with an unloadable model.
    reg = SimilarityRegressor(EmbeddingVectorizer("/nonexistent/model"))
    with pytest.raises(ValueError, match="Input y contains NaN"):
        reg.fit([("a", "b")], [np.nan])


def test_wrong_number_of_columns_at_predict(tiny_model):
    reg = SimilarityRegressor(EmbeddingVectorizer(tiny_model, device="cpu"))
    reg.fit([("a", "b"), ("c", "d")], [1.0, 2.0])
    with pytest.raises(ValueError, match="X has 3 features, but .* expecting 2"):
        reg.predict([("a", "b", "c")])


def test_head_and_fine_tune_need_the_right_number_of_columns(tiny_model):
    X3, y = [("a", "b", "c"), ("d", "e", "f")], [1.0, 2.0]
    vec = EmbeddingVectorizer(tiny_model, device="cpu")
    with pytest.raises(ValueError, match="head='isotonic' maps a single similarity"):
        SimilarityRegressor(vec, head="isotonic").fit(X3, y)
    with pytest.raises(ValueError, match="exactly 2 text columns, got 3"):
        SimilarityRegressor(vec, fine_tune=True).fit(X3, y)
    with pytest.raises(ValueError, match=r"Unknown fine-tuning parameter\(s\) \['lr'\]"):
        SimilarityRegressor(vec, fine_tune=True, fine_tune_params={"lr": 1}).fit(
            [("a", "b"), ("c", "d")], y
        )


def test_column_name_warnings_and_errors_name_the_regressor(tiny_model, pairs):
    X, y = pairs
    reg = SimilarityRegressor(EmbeddingVectorizer(tiny_model, device="cpu")).fit(X, y)
    with pytest.warns(UserWarning, match="but SimilarityRegressor was fitted with feature names"):
        reg.predict(X.to_numpy())
    renamed = X.set_axis(["q", *X.columns[1:]], axis=1)
    with pytest.raises(ValueError, match="Feature names unseen at fit time:\n- q"):
        reg.predict(renamed)
    three = np.c_[X.to_numpy(), X.to_numpy()[:, :1]]
    expected = "X has 3 features, but SimilarityRegressor is expecting 2"
    with pytest.raises(ValueError, match=expected):
        SimilarityRegressor(reg.vectorizer).fit(X.to_numpy(), y).predict(three)


@pytest.mark.slow
def test_the_monotone_head_beats_the_isotonic_one_on_stsb_test(minilm, stsb_dir, tmp_path):
    """all-MiniLM-L6-v2 on STSb Spanish: fit on train, score on test (docs/user_guide.rst)."""
    from sklearn.metrics import r2_score

    train, test = (pd.read_csv(stsb_dir / f"{part}.csv") for part in ("train", "test"))
    columns = ["sentence1", "sentence2"]
    vec = EmbeddingVectorizer(minilm, device="cpu", cache=tmp_path / "cache.sqlite")
    y = test["similarity_score"]
    results = {}
    for head in ("monotone", "isotonic"):
        reg = SimilarityRegressor(vec, head=head).fit(train[columns], train["similarity_score"])
        pred = reg.predict(test[columns])
        results[head] = (spearmanr(y, pred).statistic, pearsonr(y, pred).statistic,
                         r2_score(y, pred))
    cosine = spearmanr(y, reg.predict_similarity(test[columns])).statistic
    assert results["monotone"][0] == pytest.approx(cosine, abs=1e-12)
    assert results["isotonic"][0] < cosine  # the staircase's ties cost rank correlation
    assert results["monotone"][1] >= results["isotonic"][1]  # Pearson
    assert results["monotone"][2] >= results["isotonic"][2]  # R²


def test_column_params_prompt_the_query_column_differently(model_of_kind):
    model = model_of_kind("prompted")
    X = pd.DataFrame({"query": ["perro", "gato negro", "coche"],
                      "doc": ["un perro corre", "el gato duerme", "una casa"]})
    y = np.array([4.0, 3.0, 0.5])
    documents = EmbeddingVectorizer(model, device="cpu", prompt_name="document")
    reg = SimilarityRegressor(documents, column_params={"query": {"prompt_name": "query"}})
    similarity = reg.fit(X, y).predict_similarity(X)
    q = EmbeddingVectorizer(model, device="cpu", prompt_name="query").fit_transform(X["query"])
    d = documents.fit_transform(X["doc"])
    np.testing.assert_allclose(similarity, pairwise_cosine(q, d), atol=1e-6)
    same_prompt = SimilarityRegressor(documents).fit(X, y).predict_similarity(X)
    assert np.abs(same_prompt - similarity).max() > 1e-3
    # A position names a column too, and the fitted settings say what each column got.
    by_position = SimilarityRegressor(documents, column_params={0: {"prompt_name": "query"}})
    np.testing.assert_array_equal(by_position.fit(X, y).predict_similarity(X), similarity)
    assert by_position.column_params_ == [{"prompt_name": "query"}, {}]


@pytest.mark.parametrize(
    "column_params, message",
    [
        ({"title": {"prompt": "x: "}}, r"names the column 'title', which X does not have"),
        ({"query": {"model": "other"}}, r"must be a dict of \('max_seq_length', 'prompt'"),
        ({"query": "query: "}, "must be a dict of"),
        ({"query": {"max_seq_length": 0}}, "The 'max_seq_length' parameter"),
    ],
)
def test_bad_column_params_are_refused_before_any_work(tiny_model, column_params, message):
    X = pd.DataFrame({"query": ["a", "b"], "doc": ["c", "d"]})
    reg = SimilarityRegressor(EmbeddingVectorizer(tiny_model, device="cpu"),
                              column_params=column_params)
    with pytest.raises(ValueError, match=message):
        reg.fit(X, [1.0, 2.0])


# --- the regressor fits the vectorizer it holds ----------------------------------


BAD_SETTINGS = [
    ({"batch_size": 0}, "The 'batch_size' parameter of EmbeddingVectorizer must be"),
    ({"precision": "int4"}, "The 'precision' parameter of EmbeddingVectorizer must be"),
    ({"handle_missing": "drop"}, "The 'handle_missing' parameter of EmbeddingVectorizer"),
]


@pytest.mark.parametrize("setting, message", BAD_SETTINGS, ids=lambda v: str(v)[:30])
def test_a_bad_vectorizer_setting_is_the_same_error_through_every_entry_point(
        tiny_model, pairs, setting, message):
    from sklearn.utils._param_validation import InvalidParameterError

    from skembed import evaluate_sts, pair_similarity

    X, y = pairs
    X, y = X.head(4), y[:4]
    bad = EmbeddingVectorizer(tiny_model, device="cpu", **setting)
    for call in (
        lambda: bad.fit(X.sentence1),
        lambda: SimilarityRegressor(bad).fit(X, y),
        lambda: evaluate_sts(bad, X.sentence1, X.sentence2, y),
        lambda: pair_similarity(X, bad),
    ):
        with pytest.raises(InvalidParameterError, match=message):
            call()


def test_vectorizer_is_a_fitted_clone(tiny_model, pairs):
    from sklearn.utils.validation import check_is_fitted

    X, y = pairs
    given = EmbeddingVectorizer(tiny_model, device="cpu")
    reg = SimilarityRegressor(given).fit(X, y)
    check_is_fitted(reg.vectorizer_)
    assert reg.vectorizer_ is not given and reg.vectorizer_.embedding_dim_ == TINY_DIM
    assert not hasattr(given, "embedding_dim_")  # the parameter is left as it was


def test_parameter_validation_can_be_skipped_as_in_scikit_learn(tiny_model, pairs, monkeypatch):
    import sklearn

    X, y = pairs
    calls = []
    validate = EmbeddingVectorizer._validate_params
    monkeypatch.setattr(EmbeddingVectorizer, "_validate_params",
                        lambda self: calls.append(self) or validate(self))
    SimilarityRegressor(EmbeddingVectorizer(tiny_model, device="cpu")).fit(X, y)
    assert calls  # the regressor validates the vectorizer it fits
    calls.clear()
    with sklearn.config_context(skip_parameter_validation=True):
        SimilarityRegressor(EmbeddingVectorizer(tiny_model, device="cpu")).fit(X, y)
        EmbeddingVectorizer(tiny_model, device="cpu").fit(X.sentence1)
    assert calls == []


def test_score_is_r2_with_sample_weight(tiny_model, pairs):
    from sklearn.metrics import r2_score

    X, y = pairs
    reg = SimilarityRegressor(EmbeddingVectorizer(tiny_model, device="cpu")).fit(X, y)
    weights = np.linspace(0.1, 2.0, len(y))
    assert reg.score(X, y, sample_weight=weights) == pytest.approx(
        r2_score(y, reg.predict(X), sample_weight=weights))
    assert reg.score(X, y, sample_weight=weights) != pytest.approx(reg.score(X, y))


def test_every_parameter_is_written_in_its_three_places():
    from conftest import assert_parameters_written_in_three_places

    assert assert_parameters_written_in_three_places(SimilarityRegressor)[0] == "vectorizer"
