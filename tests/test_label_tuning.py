"""EmbeddingVectorizer(fine_tune=True): fine-tuning the encoder on class labels inside fit."""

from __future__ import annotations

import gc
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skembed import EmbeddingVectorizer, LabelFineTuneConfig, SimilarityRegressor, pair_similarity
from skembed._cache import resolve_cache
from skembed._sampling import sample_pairs

pytestmark = pytest.mark.extras  # fine-tuning needs datasets and accelerate

#: A few steps at a large rate: the tiny random model moves at once.
FAST = {"steps": 3, "batch_size": 8, "learning_rate": 1e-3}


@pytest.fixture
def trainings(monkeypatch):
    """The ``(texts, labels)`` of every training on labels run while the test runs."""
    from skembed import _vectorizer

    calls = []
    train = _vectorizer.train_on_labels

    def recorded(config, texts, labels, folder, **kwargs):
        calls.append((list(texts), list(labels)))
        return train(config, texts, labels, folder, **kwargs)

    monkeypatch.setattr(_vectorizer, "train_on_labels", recorded)
    return calls


def _tuner(model, **params):
    return EmbeddingVectorizer(model, device="cpu", fine_tune=True, fine_tune_params=FAST,
                               show_progress_bar=False, random_state=0, **params)


@pytest.mark.slow
def test_fit_tunes_a_copy_of_the_encoder_on_the_labels(tiny_model, topics):
    texts, labels = topics
    tuner = _tuner(tiny_model).fit(texts, labels)
    folder = Path(tuner.fine_tuned_model_)
    assert folder.is_dir() and folder != Path(tiny_model)
    tuned, frozen = tuner.transform(texts), EmbeddingVectorizer(tiny_model, device="cpu"
                                                                ).fit_transform(texts)
    assert tuned.shape == frozen.shape and not np.allclose(tuned, frozen, atol=1e-4)
    # The vectors are those of the saved folder, as any user of it gets them.
    np.testing.assert_array_equal(
        tuned, EmbeddingVectorizer(str(folder), device="cpu").fit_transform(texts))
    assert list(tuner.fine_tune_history_) == ["step", "epoch", "loss", "stopped"]
    assert tuner.fine_tune_history_["step"][-1] == FAST["steps"]
    # The same seed trains the same model, bit for bit.
    again = _tuner(tiny_model).fit(texts, labels)
    np.testing.assert_array_equal(again.transform(texts), tuned)


@pytest.mark.slow
@pytest.mark.parametrize("make_labels", [
    lambda labels: labels,  # strings, 4 classes
    lambda labels: (labels == "sports").astype(int),  # binary numbers
    lambda labels: pd.Series(labels).map({"sports": 3, "health": 7, "travel": 1,
                                          "politics": 0}).to_numpy(),
], ids=["strings", "binary", "integers"])
def test_in_a_pipeline_with_any_labels(tiny_model, topics, make_labels):
    texts, labels = topics
    y = make_labels(labels)
    pipe = make_pipeline(_tuner(tiny_model), LogisticRegression(max_iter=500)).fit(texts, y)
    assert set(pipe.predict(texts)) <= set(np.unique(y))


@pytest.mark.slow
def test_each_fold_tunes_on_its_own_training_part(tiny_model, topics, trainings):
    texts, labels = topics
    folds = list(StratifiedKFold(3, shuffle=True, random_state=0).split(texts, labels))
    pipe = make_pipeline(_tuner(tiny_model, cache="memory"), LogisticRegression(max_iter=500))
    result = cross_validate(pipe, np.array(texts, dtype=object), labels, cv=folds,
                            return_estimator=True)
    assert len(trainings) == 3
    for (tuned_texts, _), (train_rows, _) in zip(trainings, folds):
        assert set(tuned_texts) == {texts[i] for i in train_rows}  # no text of its test part
    # Each fold embeds with its own weights: no fold reads another fold's cached vectors.
    keys = set()
    for estimator in result["estimator"]:
        vectorizer = estimator[0]
        config = vectorizer._fitted_config()
        keys.add(vectorizer._model_key(resolve_cache(vectorizer.cache)).digest)
        assert config.model == os.fspath(vectorizer.fine_tuned_model_)
    assert len(keys) == 3


@pytest.mark.slow
def test_grid_search_over_fine_tuning_and_a_column_transformer(tiny_model, topics):
    texts, labels = topics
    frame = pd.DataFrame({"text": texts, "length": [len(t) for t in texts]})
    transformer = ColumnTransformer([("text", _tuner(tiny_model), "text"),
                                     ("length", StandardScaler(), ["length"])])
    pipe = make_pipeline(transformer, LogisticRegression(max_iter=500))
    search = GridSearchCV(pipe, {"columntransformer__text__fine_tune": [False, True]},
                          cv=StratifiedKFold(2, shuffle=True, random_state=0)).fit(frame, labels)
    assert len(search.cv_results_["mean_test_score"]) == 2
    tuned = search.best_estimator_[0].named_transformers_["text"]
    assert (tuned.fine_tuned_model_ is not None) == tuned.fine_tune


@pytest.mark.parametrize("X, y, error, match", [
    (["a", "b", "c", "d"], [[0, 1], [1, 0], [0, 1], [1, 0]], ValueError, "y should be a 1d array"),
    (["a", "b", "c", "d"], None, ValueError, r"requires y to be passed.*call fit\(X, y\)"),
    (["a", "b", "c", "d"], [1, 1, 1, 1], ValueError, "got 1 class"),
    (["a", "b", "c", "d"], [0, 1, 2, 3], ValueError, "two classes of two distinct texts"),
    (["a", "a", "c", "d"], [0, 0, 1, 1], ValueError, "two classes of two distinct texts"),
])
def test_what_it_does_not_do_is_refused_clearly(tiny_model, X, y, error, match, tmp_path):
    tuner = _tuner(tiny_model, fine_tune_dir=tmp_path / "tuned")
    with pytest.raises(error, match=match):
        tuner.fit(X, y)
    assert not (tmp_path / "tuned").exists() or not any((tmp_path / "tuned").iterdir())


def test_a_bad_recipe_is_named_before_any_work(tiny_model, topics):
    from sklearn.utils._param_validation import InvalidParameterError

    texts, labels = topics
    for params, error in (({"steps": 0}, InvalidParameterError),
                          ({"loss": "cosent"}, InvalidParameterError),
                          ("card", ValueError), ({"epochs": 2}, ValueError)):
        with pytest.raises(error):
            _tuner(tiny_model).set_params(fine_tune_params=params).fit(texts, labels)


def test_the_regressor_refuses_a_vectorizer_that_tunes_on_labels(tiny_model):
    with pytest.raises(ValueError, match="cannot fine-tune on class labels"):
        SimilarityRegressor(_tuner(tiny_model)).fit([("a", "b"), ("c", "d")], [0.0, 1.0])


@pytest.mark.slow
def test_the_tuned_folder_lives_while_an_estimator_holds_it(tiny_model, topics, tmp_path):
    texts, labels = topics
    # Seeds no other test uses: equal weights share one folder across the session.
    tuner = _tuner(tiny_model).set_params(random_state=101).fit(texts, labels)
    folder = os.fspath(tuner.fine_tuned_model_)
    expected = tuner.transform(texts[:3])
    restored = pickle.loads(pickle.dumps(tuner))  # it carries the weights
    np.testing.assert_array_equal(restored.transform(texts[:3]), expected)
    tuner.set_params(random_state=102).fit(texts, labels)  # a new fit, other weights
    gc.collect()
    assert Path(folder).is_dir() and os.fspath(tuner.fine_tuned_model_) != folder
    np.testing.assert_array_equal(restored.transform(texts[:3]), expected)
    del restored
    gc.collect()
    assert not Path(folder).exists()  # removed with the last estimator that held it
    kept = _tuner(tiny_model, fine_tune_dir=tmp_path / "kept").fit(texts, labels)
    assert (tmp_path / "kept" / "modules.json").is_file()  # a copy for the user...
    assert Path(kept.fine_tuned_model_) != tmp_path / "kept"  # ...not what the vectorizer reads


@pytest.mark.slow
def test_several_columns_tune_one_encoder_on_all_their_texts(tiny_model, topics, trainings):
    texts, labels = topics
    frame = pd.DataFrame({"a": texts[:12], "b": texts[12:]})
    tuner = _tuner(tiny_model).fit(frame, labels[:12])
    assert [sorted(zip(*training)) for training in trainings] == [
        sorted([*zip(texts[:12], labels[:12]), *zip(texts[12:], labels[:12])])]
    assert tuner.transform(frame).shape == (12, 2 * tuner.embedding_dim_)


@pytest.mark.slow
def test_pair_similarity_uses_the_tuned_encoder(tiny_model, topics):
    texts, labels = topics
    tuner = _tuner(tiny_model).fit(texts, labels)
    pairs = [[texts[0], texts[1]], [texts[0], texts[7]]]
    expected = pair_similarity(pairs, EmbeddingVectorizer(tuner.fine_tuned_model_, device="cpu"))
    np.testing.assert_array_equal(pair_similarity(pairs, tuner), expected)


@pytest.mark.slow
@pytest.mark.parametrize("show", [False, True])
def test_training_writes_nothing_to_stdout_and_one_bar_when_asked(tiny_model, topics, capfd,
                                                                  show):
    texts, labels = topics
    _tuner(tiny_model).set_params(show_progress_bar=show).fit(texts, labels)
    out, err = capfd.readouterr()
    assert out == ""
    if show:
        assert "Fine-tuning" in err and "loss=" in err and "{'loss'" not in err
    else:
        assert err == ""


def test_auto_shows_a_bar_for_long_training_only():
    from skembed._vectorizer import wants_progress_bar

    assert not wants_progress_bar("auto", LabelFineTuneConfig(steps=10).texts_read())
    assert wants_progress_bar("auto", LabelFineTuneConfig(steps=100).texts_read())


def test_sampled_pairs_have_no_pitfalls():
    labels = np.repeat(np.arange(4), 5)  # 20 texts: 40 same-class pairs, 150 others
    first, second, same = sample_pairs(labels, 200, seed=0)
    assert len(first) == 200 and same.sum() == 100
    assert np.all(first != second)  # never a text with itself
    np.testing.assert_array_equal(same, labels[first] == labels[second])
    positives = {(a, b) for a, b, s in zip(first, second, same) if s}
    assert len(positives) == 40  # every same-class pair before any is drawn again
    negatives = [(a, b) for a, b, s in zip(first, second, same) if not s]
    assert len(set(negatives)) == len(negatives) == 100  # unused ones remain: no repeat


def test_the_supervised_contrastive_loss_rewards_separated_classes():
    import torch

    from skembed._label_tuning import _supcon_loss_class

    class Fixed(torch.nn.Module):
        def forward(self, features):
            return {"sentence_embedding": features["embedding"]}

    loss = _supcon_loss_class()(Fixed(), scale=20.0)
    labels = torch.tensor([0, 0, 1, 1])
    separated = torch.tensor([[1.0, 0], [0.9, 0.1], [0, 1.0], [0.1, 0.9]])
    mixed = separated[[0, 2, 1, 3]]
    assert loss([{"embedding": separated}], labels) < 0.1 < loss([{"embedding": mixed}], labels)
    alone = loss([{"embedding": separated}], torch.tensor([0, 1, 2, 3]))  # no positives
    assert alone == 0


@pytest.mark.slow
def test_clone_keeps_the_parameters_and_drops_the_tuning(tiny_model, topics):
    texts, labels = topics
    tuner = _tuner(tiny_model).fit(texts, labels)
    fresh = clone(tuner)
    assert fresh.get_params() == tuner.get_params() and not hasattr(fresh, "fine_tuned_model_")


def test_every_field_is_written_in_its_three_places():
    from dataclasses import fields

    from conftest import assert_parameters_written_in_three_places

    names = assert_parameters_written_in_three_places(LabelFineTuneConfig)
    assert names == [f.name for f in fields(LabelFineTuneConfig)]


def test_the_default_recipe_is_the_one_measured_and_setfit_is_named():
    recipe = LabelFineTuneConfig()
    assert (recipe.loss, recipe.steps, recipe.batch_size, recipe.margin) == (
        "batch_all", 100, 32, 0.25)
    assert (recipe.learning_rate, recipe.dropout, recipe.freeze_embeddings, recipe.bf16) == (
        1e-4, 0.0, True, "auto")
    from skembed import SetFitConfig
    from skembed._recipes import vectorizer_recipe

    setfit, _ = vectorizer_recipe("setfit", ["a", "b"])
    assert isinstance(setfit, SetFitConfig)
    assert (setfit.batch_size, setfit.learning_rate, setfit.steps) == (16, 2e-5, 168)


def test_a_bad_model_setting_fails_before_training(tiny_model, topics, monkeypatch):
    from skembed import _vectorizer

    texts, labels = topics
    monkeypatch.setattr(_vectorizer, "train_on_labels",
                        lambda *args, **kwargs: pytest.fail("trained before checking"))
    with pytest.raises(ValueError, match="prompt_name='nope' is not a prompt"):
        _tuner(tiny_model, prompt_name="nope").fit(texts, labels)
