"""SimilarityRegressor on the tiny model: scikit-learn's checks, features, model selection, errors."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from conftest import TINY_DIM
from scipy.stats import pearsonr, spearmanr
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, KFold, cross_validate
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import parametrize_with_checks

from skembed import EmbeddingVectorizer, SimilarityRegressor, pearson_scorer, spearman_scorer

# parametrize_with_checks needs the instance at collection time, before the
# session's tiny model exists: the instance points at a fixed folder that a
# module fixture fills with a copy of that model.
CHECK_MODEL = Path(tempfile.gettempdir()) / f"skembed-regressor-checks-{TINY_DIM}" / "tiny"


@pytest.fixture(scope="module", autouse=True)
def _check_model(tiny_model):
    if not (CHECK_MODEL / "modules.json").is_file():
        CHECK_MODEL.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=CHECK_MODEL.parent))
        shutil.copytree(tiny_model, staging / "model")
        try:
            os.rename(staging / "model", CHECK_MODEL)  # atomic; a concurrent run may win
        except OSError:
            assert (CHECK_MODEL / "modules.json").is_file()
        finally:
            shutil.rmtree(staging, ignore_errors=True)


@parametrize_with_checks(
    [SimilarityRegressor(EmbeddingVectorizer(str(CHECK_MODEL), device="cpu"))],
    xfail_strict=True,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


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


def _cosine(a, b):
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_two_columns_calibrate_cosine_to_the_scale_of_y(tiny_model, pairs):
    X, y = pairs
    reg = SimilarityRegressor(EmbeddingVectorizer(tiny_model, device="cpu")).fit(X, y)
    assert isinstance(reg.head_, IsotonicRegression) and reg.pairs_ == [(0, 1)]
    vectors = EmbeddingVectorizer(tiny_model, device="cpu").fit_transform(X)
    expected = _cosine(vectors[:, :TINY_DIM], vectors[:, TINY_DIM:])
    np.testing.assert_allclose(reg.predict_similarity(X), expected, rtol=1e-5)
    pred = reg.predict(X)
    assert pred.min() >= y.min() and pred.max() <= y.max()
    # The calibration is the isotonic fit of y on the cosine: monotone in it.
    order = np.argsort(expected)
    assert np.all(np.diff(pred[order]) >= -1e-12)
    assert reg.score(X, y) > 0.2  # isotonic fit on training pairs, R²


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
    expected = np.column_stack([_cosine(cols[i], cols[j]) for i, j in reg.pairs_])
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
    for other in (tuples, X.to_numpy(), pl.from_pandas(X)):
        np.testing.assert_allclose(reg.predict(other), expected)


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
