"""EmbeddingVectorizer inside scikit-learn workflows, end to end."""

from __future__ import annotations

import pickle

import joblib
import numpy as np
import pandas as pd
import pytest
from conftest import polars
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from skembed import EmbeddingVectorizer

ANIMALS = [
    "The puppy chased its tail around the garden.",
    "My cat sleeps on the windowsill all afternoon.",
    "A horse galloped across the open field.",
    "The parrot learned to say hello.",
    "Our dog barks whenever the mailman arrives.",
    "The kitten played with a ball of yarn.",
    "Cows were grazing quietly in the meadow.",
    "A rabbit hopped into its burrow.",
    "The goldfish swam in circles in its bowl.",
    "Sheep huddled together against the cold wind.",
    "The hamster ran on its wheel at night.",
    "A squirrel buried nuts under the oak tree.",
]
FINANCE = [
    "The central bank raised interest rates again.",
    "Stock prices fell sharply after the earnings report.",
    "She deposited her salary into a savings account.",
    "Inflation reduced the purchasing power of wages.",
    "The company issued new bonds to raise capital.",
    "Investors sold shares as the market dropped.",
    "The loan has a fixed annual interest rate.",
    "Quarterly revenue beat analysts' expectations.",
    "He paid off his mortgage ten years early.",
    "The currency lost value against the dollar.",
    "A credit card charges interest on unpaid balances.",
    "The fund diversified its portfolio into bonds.",
]
TEXTS = ANIMALS + FINANCE
LABELS = np.array([0] * len(ANIMALS) + [1] * len(FINANCE))


def _frame():
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "text": TEXTS,
            "price": rng.normal(size=len(TEXTS)),
            "color": rng.choice(["red", "green", "blue"], size=len(TEXTS)),
        },
        index=[f"doc{i}" for i in range(len(TEXTS))],
    )


def test_pipeline_learns_topics_with_minilm(minilm):
    pipeline = make_pipeline(
        EmbeddingVectorizer(minilm, device="cpu"), LogisticRegression(max_iter=1000)
    )
    cv = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
    scores = cross_val_score(pipeline, TEXTS, LABELS, cv=cv)
    assert scores.mean() >= 0.9, scores
    pipeline.fit(TEXTS, LABELS)
    new = ["The veterinarian examined the sick puppy.", "The bank approved the loan."]
    assert pipeline.predict(new).tolist() == [0, 1]


def _column_transformer(tiny_model):
    return ColumnTransformer(
        [
            ("emb", EmbeddingVectorizer(tiny_model, device="cpu"), ["text"]),
            ("num", StandardScaler(), ["price"]),
            ("cat", OneHotEncoder(sparse_output=False), ["color"]),
        ]
    )


def test_column_transformer_mixes_text_numeric_and_categorical_as_pandas(tiny_model):
    frame = _frame()
    transformer = _column_transformer(tiny_model).set_output(transform="pandas")
    out = transformer.fit_transform(frame)
    assert isinstance(out, pd.DataFrame)
    assert out.index.equals(frame.index)
    assert out.shape == (len(frame), 32 + 1 + 3)
    assert out.columns[:2].tolist() == ["emb__text_0", "emb__text_1"]
    assert out.columns[32:].tolist() == ["num__price", "cat__color_blue", "cat__color_green",
                                         "cat__color_red"]
    alone = EmbeddingVectorizer(tiny_model, device="cpu").fit_transform(frame[["text"]])
    np.testing.assert_array_equal(out.iloc[:, :32].to_numpy(), alone)
    np.testing.assert_allclose(out["num__price"].mean(), 0.0, atol=1e-12)
    # A scalar column selector hands the vectorizer a Series (a 1-D text column);
    # the ColumnTransformer still names its features after the column.
    scalar = ColumnTransformer([("emb", EmbeddingVectorizer(tiny_model, device="cpu"), "text")])
    scalar_out = scalar.set_output(transform="pandas").fit_transform(frame)
    assert scalar_out.columns[0] == "emb__text_0"
    np.testing.assert_array_equal(scalar_out.to_numpy(), alone)


def test_column_transformer_in_a_classifier_pipeline(tiny_model):
    frame = _frame()
    pipeline = make_pipeline(_column_transformer(tiny_model), LogisticRegression(max_iter=1000))
    pipeline.fit(frame, LABELS)
    assert pipeline.predict(frame.iloc[:3]).shape == (3,)
    assert pipeline.score(frame, LABELS) >= 0.9  # 36 features separate 24 training rows


@pytest.mark.slow
def test_grid_search_in_two_processes_matches_one_process(tiny_model):
    pipeline = make_pipeline(
        EmbeddingVectorizer(tiny_model, device="cpu"), LogisticRegression(max_iter=1000)
    )
    grid = {"logisticregression__C": [0.01, 1.0, 100.0]}
    cv = StratifiedKFold(n_splits=2, shuffle=True, random_state=0)
    parallel = GridSearchCV(pipeline, grid, cv=cv, n_jobs=2).fit(TEXTS, LABELS)
    serial = GridSearchCV(pipeline, grid, cv=cv, n_jobs=1).fit(TEXTS, LABELS)
    np.testing.assert_array_equal(
        parallel.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"]
    )
    assert parallel.best_params_ == serial.best_params_
    assert parallel.best_params_["logisticregression__C"] in grid["logisticregression__C"]
    np.testing.assert_array_equal(parallel.predict_proba(TEXTS), serial.predict_proba(TEXTS))


@pytest.mark.parametrize("dump_load", ["pickle", "joblib"])
def test_fitted_pipeline_round_trip(tiny_model, tmp_path, dump_load):
    frame = _frame()
    pipeline = make_pipeline(_column_transformer(tiny_model), LogisticRegression(max_iter=1000))
    pipeline.fit(frame, LABELS)
    path = tmp_path / "pipeline.bin"
    if dump_load == "pickle":
        path.write_bytes(pickle.dumps(pipeline))
        restored = pickle.loads(path.read_bytes())
    else:
        joblib.dump(pipeline, path)
        restored = joblib.load(path)
    assert path.stat().st_size < 16_000  # no model weights inside
    np.testing.assert_array_equal(restored.predict_proba(frame), pipeline.predict_proba(frame))


@pytest.mark.extras
def test_polars_in_and_out(tiny_model):
    pl = polars()
    frame = pl.from_pandas(_frame().reset_index(drop=True))
    transformer = ColumnTransformer(
        [
            ("emb", EmbeddingVectorizer(tiny_model, device="cpu"), ["text"]),
            ("num", StandardScaler(), ["price"]),
        ]
    ).set_output(transform="polars")
    out = transformer.fit_transform(frame)
    assert isinstance(out, pl.DataFrame)
    assert out.columns[0] == "emb__text_0" and out.columns[-1] == "num__price"
    assert out.shape == (len(frame), 33)
    expected = EmbeddingVectorizer(tiny_model, device="cpu").fit_transform(_frame()[["text"]])
    np.testing.assert_array_equal(out.select(out.columns[:32]).to_numpy(), expected)

    vectorizer = EmbeddingVectorizer(tiny_model, device="cpu").set_output(transform="polars")
    two = vectorizer.fit_transform(frame.select("text", "color"))
    assert isinstance(two, pl.DataFrame)
    assert two.columns[32] == "color_0"
    assert two.shape == (len(frame), 64)
