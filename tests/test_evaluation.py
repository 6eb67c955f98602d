"""evaluate_sts against sentence-transformers' evaluator, scorers, and the evaluate command."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr, spearmanr

from skembed import (
    EmbeddingVectorizer,
    SimilarityRegressor,
    evaluate_sts,
    pearson_scorer,
    spearman_scorer,
)
from skembed._cli import main


@pytest.fixture(scope="module")
def sts_test(stsb_dir):
    data = pd.read_csv(stsb_dir / "test.csv").head(100)
    return data["sentence1"].tolist(), data["sentence2"].tolist(), data["similarity_score"]


@pytest.mark.parametrize("which", ["tiny_model", "minilm"])
def test_same_figures_as_embedding_similarity_evaluator(which, request, sts_test):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import (
        EmbeddingSimilarityEvaluator,
    )

    model = request.getfixturevalue(which)
    s1, s2, gold = sts_test
    theirs = EmbeddingSimilarityEvaluator(s1, s2, gold.tolist(), main_similarity="cosine")(
        SentenceTransformer(model, device="cpu")
    )
    ours = evaluate_sts(EmbeddingVectorizer(model, device="cpu"), s1, s2, gold)
    assert ours.n_pairs == 100
    assert abs(ours.pearson - theirs["pearson_cosine"]) < 1e-6
    assert abs(ours.spearman - theirs["spearman_cosine"]) < 1e-6


def test_model_path_vectorizer_and_regressor_agree(tiny_model, sts_test):
    s1, s2, gold = sts_test
    by_path = evaluate_sts(tiny_model, s1, s2, gold, batch_size=7)
    vec = EmbeddingVectorizer(tiny_model, device="cpu")
    by_vectorizer = evaluate_sts(vec, s1, s2, gold)
    reg = SimilarityRegressor(vec).fit(list(zip(s1, s2)), gold)
    by_regressor = evaluate_sts(reg, s1, s2, gold)
    for other in (by_vectorizer, by_regressor):
        np.testing.assert_allclose(other.similarity, by_path.similarity, atol=1e-5)
        assert other.spearman == pytest.approx(by_path.spearman, abs=1e-6)
    np.testing.assert_array_equal(by_path.gold, gold)
    assert by_path.spearman == pytest.approx(spearmanr(gold, by_path.similarity).statistic)
    assert by_path.pearson == pytest.approx(pearsonr(gold, by_path.similarity).statistic)


@pytest.mark.parametrize(
    "args, match",
    [
        ((["a", "b"], ["c"], [1.0, 2.0]), "equal lengths, got 2, 1 and 2"),
        ((["a", "b"], ["c", "d"], [1.0, np.nan]), "Input y contains NaN"),
        ((["a"], ["c"], [1.0]), "at least 2 pairs, got 1"),
        ((["a", None], ["c", "d"], [1.0, 2.0]), "missing value"),
    ],
    ids=["lengths", "nan-score", "one-pair", "missing-text"],
)
def test_bad_input(tiny_model, args, match):
    with pytest.raises(ValueError, match=match):
        evaluate_sts(tiny_model, *args)


def test_rejects_what_is_not_a_model():
    with pytest.raises(TypeError, match="model name or folder, an EmbeddingVectorizer"):
        evaluate_sts(3, ["a", "b"], ["c", "d"], [1.0, 2.0])


def test_scorers_are_the_correlations_of_predictions(tiny_model, sts_test):
    s1, s2, gold = sts_test
    X = list(zip(s1, s2))
    reg = SimilarityRegressor(EmbeddingVectorizer(tiny_model, device="cpu"), head="ridge")
    reg.fit(X, gold)
    pred = reg.predict(X)
    assert spearman_scorer(reg, X, gold) == pytest.approx(spearmanr(gold, pred).statistic)
    assert pearson_scorer(reg, X, gold) == pytest.approx(pearsonr(gold, pred).statistic)
    # A linear head keeps the ranking of the cosine: same Spearman as evaluate_sts.
    assert spearman_scorer(reg, X, gold) == pytest.approx(
        evaluate_sts(reg, s1, s2, gold).spearman
    )


@pytest.mark.extras  # needs matplotlib, or datasets and accelerate
def test_cli_evaluate_prints_and_plots(tiny_model, stsb_dir, tmp_path, capsys):
    data = pd.read_csv(stsb_dir / "test.csv").head(60)
    csv = tmp_path / "pairs.csv"
    data.to_csv(csv, index=False)
    png = tmp_path / "sts.png"
    code = main(["evaluate", "--data", str(csv), "--model", tiny_model, "--device", "cpu",
                 "--plot", str(png), "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out.splitlines()[0])
    expected = evaluate_sts(tiny_model, data.sentence1, data.sentence2, data.similarity_score)
    assert printed["n_pairs"] == 60
    assert printed["spearman"] == pytest.approx(expected.spearman)
    assert printed["pearson"] == pytest.approx(expected.pearson)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    image = imread(png)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
    assert image[..., :3].std() > 0.05  # drawn, not blank


def test_cli_evaluate_names_missing_columns(tiny_model, tmp_path, capsys):
    csv = tmp_path / "bad.csv"
    pd.DataFrame({"sentence1": ["a"], "sentence2": ["b"], "score": [1.0]}).to_csv(csv)
    assert main(["evaluate", "--data", str(csv), "--model", tiny_model]) == 2
    assert "has no column(s) ['similarity_score']" in capsys.readouterr().err


def test_regressor_fitted_on_a_dataframe_evaluates_without_warning(tiny_model, sts_test):
    import warnings

    s1, s2, gold = sts_test
    X = pd.DataFrame({"left": s1, "right": s2})
    reg = SimilarityRegressor(EmbeddingVectorizer(tiny_model, device="cpu")).fit(X, gold)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = evaluate_sts(reg, s1, s2, gold)
    np.testing.assert_allclose(result.similarity, reg.predict_similarity(X))


def test_cli_evaluate_reads_other_formats_and_column_names(tiny_model, stsb_dir, tmp_path, capsys):
    data = pd.read_csv(stsb_dir / "test.csv").head(40)
    renamed = data.rename(columns={"sentence1": "a", "sentence2": "b", "similarity_score": "gold"})
    tsv = tmp_path / "pairs.tsv"
    renamed.to_csv(tsv, sep="\t", index=False)
    code = main(["evaluate", "--data", str(tsv), "--columns", "a", "b", "gold",
                 "--model", tiny_model, "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    expected = evaluate_sts(tiny_model, data.sentence1, data.sentence2, data.similarity_score)
    assert printed["spearman"] == pytest.approx(expected.spearman)


def test_cli_evaluate_names_a_score_that_is_not_a_number(tiny_model, tmp_path, capsys):
    csv = tmp_path / "bad.csv"
    csv.write_text("sentence1,sentence2,similarity_score\na,b,1.0\nc,d,high\ne,f,\n")
    assert main(["evaluate", "--data", str(csv), "--model", tiny_model]) == 2
    err = capsys.readouterr().err
    assert "column 'similarity_score' needs a number in every row; row 1 holds 'high'" in err
    assert "(2 such row(s))" in err


@pytest.mark.extras  # needs matplotlib, or datasets and accelerate
def test_result_plots_on_given_or_new_axes(tiny_model, stsb_dir):
    import matplotlib.pyplot as plt

    data = pd.read_csv(stsb_dir / "test.csv").head(30)
    result = evaluate_sts(tiny_model, data.sentence1, data.sentence2, data.similarity_score)
    fig, ax = plt.subplots()
    try:
        assert result.plot(ax, title="tiny") is ax
        points = ax.collections[0].get_offsets()
        np.testing.assert_allclose(points, np.c_[result.gold, result.similarity])
        assert ax.get_title().startswith(f"tiny\nSpearman {result.spearman:.4f}")
        new = result.plot()
        assert new.figure is not fig and len(new.collections[0].get_offsets()) == 30
    finally:
        plt.close("all")
