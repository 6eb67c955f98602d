"""Fine-tuning on every kind of target: numbers (EmbeddingVectorizer(fine_tune=True) before a
regressor), labels at any size (pairs drawn in bounded memory), early stopping, one recipe
interface."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline

from skembed import (
    EmbeddingVectorizer,
    FineTuneConfig,
    LabelFineTuneConfig,
    NumericFineTuneConfig,
    SetFitConfig,
)
from skembed._recipes import vectorizer_recipe
from skembed._sampling import sample_any_pairs, sample_pairs

FAST = {"steps": 3, "batch_size": 8, "learning_rate": 1e-3}


@pytest.fixture(scope="module")
def emobank():
    data = pd.read_csv(SHARED / "data" / "emobank" / "train.csv").head(48)
    return data.text.tolist(), data.valence.to_numpy()


def _tuner(model, **params):
    return EmbeddingVectorizer(model, device="cpu", fine_tune=True, fine_tune_params=FAST,
                               show_progress_bar=False, random_state=0, **params)


@pytest.mark.slow
@pytest.mark.extras  # fine-tuning needs datasets and accelerate
def test_a_numeric_target_tunes_in_a_pipeline_and_a_grid_search(tiny_model, emobank):
    texts, valence = emobank
    pipeline = make_pipeline(_tuner(tiny_model), RidgeCV()).fit(texts, valence)
    tuned = pipeline[0]
    assert tuned.fine_tuned_model_.info["target"] == "numbers"
    assert tuned.fine_tuned_model_.info["recipe"]["name"] == "NumericFineTuneConfig"
    assert len(tuned.fine_tune_history_["loss"]) == FAST["steps"]
    frozen = EmbeddingVectorizer(tiny_model, device="cpu").fit_transform(texts)
    assert not np.allclose(tuned.transform(texts), frozen)
    assert pipeline.predict(texts).shape == (len(texts),)
    search = GridSearchCV(make_pipeline(_tuner(tiny_model), RidgeCV()),
                          {"embeddingvectorizer__fine_tune": [False, True]}, cv=KFold(2))
    search.fit(texts, valence)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


@pytest.mark.slow
@pytest.mark.extras
def test_one_seed_one_model_for_numbers(tiny_model, emobank):
    texts, valence = emobank
    first = _tuner(tiny_model).fit(texts, valence).fine_tuned_model_
    second = _tuner(tiny_model).fit(texts, valence).fine_tuned_model_
    third = _tuner(tiny_model, ).set_params(random_state=1).fit(texts, valence).fine_tuned_model_
    assert first == second != third


@pytest.mark.parametrize("y, match", [
    ([0.5, np.nan, 2.0, 3.0], "NaN"),
    ([0.5, np.inf, 2.0, 3.0], "infinity"),
    ([2.5, 2.5, 2.5, 2.5], "every y is 2.5, so there is nothing to learn"),
])
def test_bad_numeric_targets_are_named_before_training(tiny_model, y, match, monkeypatch):
    from skembed import _vectorizer

    monkeypatch.setattr(_vectorizer, "train_on_numbers",
                        lambda *a, **k: pytest.fail("trained on a bad target"))
    recipe = NumericFineTuneConfig(**FAST)
    with pytest.raises(ValueError, match=match):
        _tuner(tiny_model, ).set_params(fine_tune_params=recipe).fit(["a", "b", "c", "d"], y)


@pytest.mark.parametrize("params, y, expected", [
    (None, [0.5, 1.5, 2.25], NumericFineTuneConfig),
    ({"steps": 7}, [0.5, 1.5, 2.25], NumericFineTuneConfig),
    (None, ["x", "y", "x"], LabelFineTuneConfig),
    ("setfit", [0, 1, 0], SetFitConfig),
    ("numbers", [1, 2, 5], NumericFineTuneConfig),  # integer ratings, tuned as numbers
])
def test_the_target_and_the_params_pick_one_recipe(params, y, expected):
    recipe, targets = vectorizer_recipe(params, np.asarray(y))
    assert type(recipe) is expected and len(targets) == len(y)


def test_a_label_recipe_refuses_a_continuous_target():
    with pytest.raises(ValueError, match="LabelFineTuneConfig learns from class labels; y is "
                                         "'continuous'.*NumericFineTuneConfig"):
        vectorizer_recipe(LabelFineTuneConfig(), np.array([0.5, 1.25, 2.0]))


@pytest.mark.parametrize("recipe", [LabelFineTuneConfig, SetFitConfig, NumericFineTuneConfig,
                                    FineTuneConfig])
def test_every_recipe_is_one_strategy_with_its_fields_in_three_places(recipe):
    from dataclasses import fields

    from conftest import assert_parameters_written_in_three_places

    names = assert_parameters_written_in_three_places(recipe)
    assert names == [f.name for f in fields(recipe)]
    assert callable(recipe.training_run) and recipe.texts_read is not None


def test_pair_sampling_never_builds_the_square_of_the_rows():
    labels = np.random.default_rng(0).integers(0, 14, 200_000)  # 2e10 candidate pairs
    tracemalloc.start()
    first, second, same = sample_pairs(labels, 6_400, seed=0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 30e6, peak  # n^2 int64 pairs would be 160 GB
    assert same.sum() == 3_200 and np.all(first != second)
    assert np.array_equal(same, labels[first] == labels[second])
    assert len(set(zip(np.minimum(first, second), np.maximum(first, second)))) == 6_400


def test_pairs_of_a_small_pool_are_used_up_before_any_repeats():
    first, second = sample_any_pairs(5, 25, seed=0)  # 10 pairs exist
    counts = pd.Series(list(zip(np.minimum(first, second), np.maximum(first, second))))
    assert counts.value_counts().min() >= 2 and counts.value_counts().max() == 3


def test_sampled_pairs_of_two_classes_are_uniform():
    labels = np.repeat([0, 1, 2], [2, 3, 40])  # 6 + 80 + 120 pairs of two classes
    first, second, same = sample_pairs(labels, 2 * 20_000, seed=3)
    other = ~same
    kinds = pd.Series([tuple(sorted(p)) for p in zip(labels[first[other]],
                                                     labels[second[other]])]).value_counts()
    expected = np.array([6, 80, 120]) / 206
    observed = kinds[[(0, 1), (0, 2), (1, 2)]].to_numpy() / other.sum()
    np.testing.assert_allclose(observed, expected, atol=0.01)


@pytest.mark.slow
@pytest.mark.extras
def test_training_stops_early_once_the_loss_is_zero_and_says_so(tiny_model):
    texts = [f"{word} {i}" for word in ("perro", "gato") for i in range(8)]
    labels = [0] * 8 + [1] * 8
    params = {**FAST, "steps": 40, "margin": 1e-4, "early_stopping": 1}
    tuner = _tuner(tiny_model).set_params(fine_tune_params=params).fit(texts, labels)
    history = tuner.fine_tune_history_
    assert history["step"][-1] < 40 and history["loss"][-1] <= 1e-6
    assert history["stopped"][-1].startswith(f"stopped early at step {history['step'][-1]}")
    everything = _tuner(tiny_model).set_params(
        fine_tune_params={**params, "early_stopping": None}).fit(texts, labels)
    assert everything.fine_tune_history_["step"][-1] == 40
    assert not any(everything.fine_tune_history_["stopped"])


@pytest.mark.slow
@pytest.mark.extras
def test_the_setfit_recipe_trains_on_sampled_pairs(tiny_model):
    texts = [f"{word} {i}" for word in ("perro", "gato", "casa") for i in range(6)]
    labels = np.repeat([0, 1, 2], 6)
    tuner = _tuner(tiny_model).set_params(
        fine_tune_params=SetFitConfig(steps=3, batch_size=4)).fit(texts, labels)
    assert tuner.fine_tuned_model_.info["recipe"]["name"] == "SetFitConfig"
    model = make_pipeline(tuner, LogisticRegression()).fit(texts, labels)
    assert model.predict(texts).shape == (18,)


def test_rank_n_contrast_prefers_vectors_ordered_as_the_targets():
    import torch

    from skembed._number_tuning import _rank_loss_class

    class Fixed(torch.nn.Module):
        def __init__(self, vectors):
            super().__init__()
            self.vectors = vectors

        def forward(self, features):
            return {"sentence_embedding": self.vectors}

    targets = torch.tensor([1.0, 1.1, 3.0, 3.2])
    ordered = torch.tensor([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [0.1, 0.99]])
    shuffled = ordered[[0, 2, 1, 3]]  # texts 0 and 2 close, their targets far apart
    loss = _rank_loss_class()
    assert loss(Fixed(ordered), 10.0)([{}], targets) < loss(Fixed(shuffled), 10.0)([{}], targets)
    # The anchor's nearest target has every other text as a rival: the loss is a proper
    # cross-entropy, never negative.
    assert loss(Fixed(ordered), 10.0)([{}], targets) > 0
