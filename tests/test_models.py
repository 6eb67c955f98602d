"""Model lifetime and errors about models: one copy of the weights, reloads, releases, names."""

from __future__ import annotations

import gc
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline

from skembed import (
    EmbeddingVectorizer,
    FineTuneConfig,
    ModelLoadError,
    SimilarityRegressor,
    _models,
    unload_models,
)
from skembed._cli import main
from skembed._options import EncoderConfig

TEXTS = ["Un perro corre.", "Dos gatos duermen al sol.", "hola"]
FAST = {"loss": "cosent", "epochs": 1, "learning_rate": 1e-3, "warmup_steps": 0}


def _weights(config: EncoderConfig):
    model = _models.load_model(config)
    network = model.st if model.st is not None else model.network
    return model, next(network.parameters()).data_ptr()


def test_settings_that_only_feed_texts_share_one_copy_of_the_weights(model_of_kind):
    path = model_of_kind("prompted")
    unload_models()
    loads = _models.MODEL_LOADS
    first, pointer = _weights(EncoderConfig(model=path, device="cpu"))
    for change in ({"max_seq_length": 8}, {"prompt_name": "document"}, {"prompt": "x: "},
                   {"truncate_dim": 4}):
        model, other = _weights(EncoderConfig(model=path, device="cpu", **change))
        assert model is first and other == pointer, change
    assert _models.MODEL_LOADS == loads + 1
    # What changes the computation is another copy.
    assert _weights(EncoderConfig(model=path, device="cpu", backend="transformers"))[0] is not first
    assert _models.MODEL_LOADS == loads + 2


@pytest.mark.filterwarnings("ignore::skembed.TruncationWarning")  # cut on purpose
def test_a_grid_search_over_max_seq_length_and_prompts_loads_the_model_once(model_of_kind):
    from sklearn.linear_model import LogisticRegression

    unload_models()
    loads = _models.MODEL_LOADS
    X = pd.DataFrame({"text": [f"frase número {i}" for i in range(12)]})
    y = np.arange(12) % 2
    pipe = make_pipeline(EmbeddingVectorizer(model_of_kind("prompted"), device="cpu"),
                         LogisticRegression())
    grid = {"embeddingvectorizer__max_seq_length": [4, 8, None],
            "embeddingvectorizer__prompt_name": ["query", "document"]}
    GridSearchCV(pipe, grid, cv=KFold(2)).fit(X, y)
    assert _models.MODEL_LOADS == loads + 1


def test_a_folder_saved_again_is_loaded_again(tiny_model_copy, model_of_kind):
    from sentence_transformers import SentenceTransformer

    vectorizer = EmbeddingVectorizer(tiny_model_copy, device="cpu")
    before = vectorizer.fit_transform(TEXTS)
    other = model_of_kind("normalized")  # other weights, saved over the folder
    shutil.rmtree(tiny_model_copy)
    shutil.copytree(other, tiny_model_copy)
    after = vectorizer.fit_transform(TEXTS)
    expected = SentenceTransformer(str(tiny_model_copy), device="cpu").encode(TEXTS)
    np.testing.assert_allclose(after, expected, atol=1e-5)
    assert not np.allclose(after, before)
    with _models._LOCK:  # the stale copy was released
        folders = [k for k in _models._MODELS if k[1][0] == "folder"
                   and k[1][1][0] == os.path.realpath(tiny_model_copy)]
    assert len(folders) == 1


@pytest.mark.slow
@pytest.mark.extras  # fine-tuning needs datasets and accelerate
def test_a_relative_fine_tune_dir_fitted_twice_serves_the_second_weights(tiny_model, stsb_dir,
                                                                        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = pd.read_csv(stsb_dir / "train.csv").head(32)
    X, y = data[["sentence1", "sentence2"]], data["similarity_score"]
    reg = SimilarityRegressor(
        EmbeddingVectorizer(tiny_model, device="cpu", show_progress_bar=False),
        fine_tune=True, fine_tune_params=FAST, fine_tune_dir="ft", random_state=0,
    )
    first = reg.fit(X, y).predict_similarity(X)
    second = reg.set_params(random_state=1).fit(X, y).predict_similarity(X)
    assert not np.allclose(first, second)
    fresh = EmbeddingVectorizer(str(tmp_path / "ft"), device="cpu")
    from skembed import pair_similarity

    np.testing.assert_array_equal(second, pair_similarity(X, fresh))


def test_unload_models_releases_all_or_one(tiny_model, tiny_model_copy):
    unload_models()
    EmbeddingVectorizer(tiny_model, device="cpu").fit(TEXTS)
    EmbeddingVectorizer(str(tiny_model_copy), device="cpu").fit(TEXTS)
    assert unload_models(tiny_model_copy) == 1
    assert not _models.is_loaded(EncoderConfig(model=str(tiny_model_copy), device="cpu"))
    assert _models.is_loaded(EncoderConfig(model=tiny_model, device="cpu"))
    loads = _models.MODEL_LOADS
    EmbeddingVectorizer(str(tiny_model_copy), device="cpu").fit_transform(TEXTS)
    assert _models.MODEL_LOADS == loads + 1  # loaded again on the next use
    assert unload_models() == 2 and unload_models() == 0


@pytest.mark.slow
@pytest.mark.extras  # fine-tuning needs datasets and accelerate
def test_temporary_fine_tuned_folders_go_with_their_estimator(tiny_model, stsb_dir):
    data = pd.read_csv(stsb_dir / "train.csv").head(32)
    X, y = data[["sentence1", "sentence2"]], data["similarity_score"]
    reg = SimilarityRegressor(
        EmbeddingVectorizer(tiny_model, device="cpu", show_progress_bar=False),
        fine_tune=True, fine_tune_params=FineTuneConfig.from_params(FAST), random_state=0,
    ).fit(X, y)
    first = Path(reg.fine_tuned_model_)
    assert (first / "modules.json").is_file()
    reg.fit(X, y)  # a refit replaces the folder
    second = Path(reg.fine_tuned_model_)
    assert second != first and not first.exists() and second.is_dir()
    del reg
    gc.collect()
    assert not second.exists()


@pytest.mark.parametrize("backend", ["sentence-transformers", "transformers"])
def test_a_hub_model_that_cannot_be_had_is_named_with_the_remedies(backend):
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # conftest: the hub is never asked
    vectorizer = EmbeddingVectorizer("someone/not-cached-model", device="cpu", backend=backend)
    with pytest.raises(ModelLoadError) as error:
        vectorizer.fit(["hola"])
    message = str(error.value)
    assert "'someone/not-cached-model'" in message
    for remedy in ("SentenceTransformer.save", "HF_HUB_OFFLINE=1", "revision"):
        assert remedy in message
    assert isinstance(error.value, OSError)


PAIRS, SCORES = [("a", "b"), ("c", "d"), ("e", "f")], [0.0, 2.5, 5.0]
UNAVAILABLE = EmbeddingVectorizer("someone/not-cached-model", device="cpu")


@pytest.mark.slow
@pytest.mark.extras  # fine-tuning needs datasets and accelerate
def test_fine_tuning_names_the_model_too():
    with pytest.raises(ModelLoadError, match="'someone/not-cached-model'.*HF_HUB_OFFLINE"):
        SimilarityRegressor(UNAVAILABLE, fine_tune=True,
                            fine_tune_params={"loss": "cosent"}).fit(PAIRS, SCORES)


def test_the_regressor_and_the_cli_name_the_model_too(capsys):
    with pytest.raises(ModelLoadError, match="'someone/not-cached-model'.*HF_HUB_OFFLINE"):
        SimilarityRegressor(UNAVAILABLE).fit(PAIRS, SCORES)
    assert main(["similarity", "a", "b", "--model", "someone/not-cached-model"]) == 2
    err = capsys.readouterr().err
    assert "skembed similarity: error: Could not load the model 'someone/not-cached-model'" in err
    assert "HF_HUB_OFFLINE=1" in err
