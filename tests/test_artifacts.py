"""A fitted estimator is a finished artifact: it pickles and saves with its tuned weights,
loads in a fresh process with no hub and no folder of the old one, stays what it was at fit,
and a fit that fails leaves it as it was."""

from __future__ import annotations

import glob
import json
import os
import pickle
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import SHARED, build_model
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_validate
from sklearn.pipeline import make_pipeline

import skembed
from skembed import (
    CacheError,
    EmbeddingVectorizer,
    ParameterChangedError,
    SavedEstimatorError,
    SimilarityRegressor,
    TunedEncoder,
)
from skembed._vectorizer import LIVE_PARAMETERS

pytestmark = pytest.mark.extras  # fine-tuning needs datasets and accelerate

LABELS = {"steps": 3, "batch_size": 8, "learning_rate": 1e-3}
PAIRS = {"epochs": 1, "batch_size": 16, "soup": 1, "learning_rate": 1e-3}


@pytest.fixture(scope="module")
def pairs():
    data = pd.read_csv(SHARED / "data" / "stsb_multi_mt_es" / "train.csv").head(32)
    return data[["sentence1", "sentence2"]], data["similarity_score"].to_numpy()


@pytest.fixture
def own_model(tmp_path):
    """A model folder of this test alone: deleted before the artifact is loaded elsewhere."""
    return str(build_model(tmp_path / "base-model"))


def _tuner(model, **params):
    return EmbeddingVectorizer(model, device="cpu", fine_tune=True, fine_tune_params=LABELS,
                               show_progress_bar=False, random_state=0, **params)


def _pair_tuner(model, **params):
    return SimilarityRegressor(EmbeddingVectorizer(model, device="cpu"), fine_tune=True,
                               fine_tune_params=PAIRS, random_state=0, **params)


def _tuned_folders() -> set:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "skembed-*")))


def _delete_every_folder_of_the_fit(*estimators, base_model) -> None:
    """What the fitting machine had: its temporary folders and the base model."""
    for estimator in estimators:
        tuned = (estimator[0] if hasattr(estimator, "steps") else estimator).fine_tuned_model_
        shutil.rmtree(os.fspath(tuned))
    shutil.rmtree(base_model)


LOAD_AND_PREDICT = """
import pickle, sys
import numpy as np
import skembed
source, X, method, out = sys.argv[1:5]
estimator = skembed.load(source) if source.endswith("saved") else pickle.load(open(source, "rb"))
X = pickle.load(open(X, "rb"))
np.save(out, getattr(estimator, method)(X))
"""


def _predict_in_a_fresh_process(source, X, method, tmp_path) -> np.ndarray:
    (tmp_path / "X.pkl").write_bytes(pickle.dumps(X))
    out = tmp_path / f"{method}.npy"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    subprocess.run([sys.executable, "-c", LOAD_AND_PREDICT, str(source), str(tmp_path / "X.pkl"),
                    method, str(out)], check=True, env=env, cwd=tmp_path, timeout=300)
    return np.load(out)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["pickle", "save"])
def test_a_tuned_pipeline_and_regressor_load_anywhere_and_predict_the_same(
        own_model, topics, pairs, tmp_path, how):
    texts, labels = topics
    X_pairs, y_pairs = pairs
    pipeline = make_pipeline(_tuner(own_model), LogisticRegression(max_iter=500))
    pipeline.fit(texts, labels)
    regressor = _pair_tuner(own_model).fit(X_pairs, y_pairs)
    expected = {"pipeline": pipeline.predict_proba(texts), "regressor": regressor.predict(X_pairs)}
    sources = {}
    for name, estimator in (("pipeline", pipeline), ("regressor", regressor)):
        if how == "pickle":
            sources[name] = tmp_path / f"{name}.pkl"
            sources[name].write_bytes(pickle.dumps(estimator))
        else:
            saved = skembed.save(estimator, tmp_path / f"first-{name}-saved")
            sources[name] = tmp_path / "elsewhere" / f"{name}-saved"
            shutil.copytree(saved, sources[name])  # another folder, as on another machine
            shutil.rmtree(saved)
    _delete_every_folder_of_the_fit(pipeline, regressor, base_model=own_model)
    got_pipeline = _predict_in_a_fresh_process(sources["pipeline"], texts, "predict_proba",
                                               tmp_path)
    got_regressor = _predict_in_a_fresh_process(sources["regressor"], X_pairs, "predict", tmp_path)
    np.testing.assert_array_equal(got_pipeline, expected["pipeline"])
    np.testing.assert_array_equal(got_regressor, expected["regressor"])


@pytest.mark.slow
def test_estimators_fitted_in_worker_processes_come_back_usable(tiny_model, topics):
    texts, labels = topics
    pipeline = make_pipeline(_tuner(tiny_model), LogisticRegression(max_iter=500))
    results = cross_validate(pipeline, texts, labels, cv=2, n_jobs=2, return_estimator=True)
    for fitted in results["estimator"]:
        tuned = fitted[0].fine_tuned_model_
        assert isinstance(tuned, TunedEncoder) and os.path.isdir(os.fspath(tuned))
        probabilities = fitted.predict_proba(texts)
        assert probabilities.shape == (len(texts), 4)
        np.testing.assert_array_equal(pickle.loads(pickle.dumps(fitted)).predict_proba(texts),
                                      probabilities)


def test_a_pickle_without_tuning_stays_small(tiny_model):
    vectorizer = EmbeddingVectorizer(tiny_model, device="cpu").fit(["hola"])
    assert len(pickle.dumps(vectorizer)) < 5_000


@pytest.mark.slow
def test_a_tuned_pickle_carries_exactly_the_tuned_files(tiny_model, topics):
    texts, labels = topics
    tuner = _tuner(tiny_model).fit(texts, labels)
    blob = pickle.dumps(tuner)
    from skembed._fingerprint import model_files

    files = sum(os.path.getsize(path) for _, path in model_files(tuner.fine_tuned_model_))
    assert files < len(blob) < files + 100_000  # the model's files, and little beside
    restored = pickle.loads(blob)
    assert restored.fine_tuned_model_ == tuner.fine_tuned_model_
    np.testing.assert_array_equal(restored.transform(texts[:4]), tuner.transform(texts[:4]))


# -- skembed.load refuses what it should not load ---------------------------------------
@pytest.fixture(scope="module")
def saved_pipeline(tiny_model, topics, tmp_path_factory):
    texts, labels = topics
    pipeline = make_pipeline(_tuner(tiny_model), LogisticRegression(max_iter=500))
    pipeline.fit(texts, labels)
    folder = skembed.save(pipeline, tmp_path_factory.mktemp("saved") / "pipeline",
                          metrics={"train accuracy": 1.0})
    return folder, pipeline.predict_proba(texts)


@pytest.fixture
def saved_copy(saved_pipeline, tmp_path):
    return Path(shutil.copytree(saved_pipeline[0], tmp_path / "copy"))


@pytest.mark.slow
def test_the_saved_folder_is_plain_and_documented(saved_copy, topics):
    from sentence_transformers import SentenceTransformer

    manifest = json.loads((saved_copy / "skembed.json").read_text())
    (reference, entry), = manifest["encoders"].items()
    encoder = SentenceTransformer(str(saved_copy / reference), device="cpu")
    loaded = skembed.load(saved_copy)
    texts = topics[0][:3]
    np.testing.assert_allclose(loaded[0].transform(texts), encoder.encode(texts), atol=1e-5)
    card = (saved_copy / "README.md").read_text()
    assert "fine-tuned on 24 class labels" in card and "| train accuracy | 1.0 |" in card
    assert entry["info"]["recipe"]["steps"] == LABELS["steps"]


@pytest.mark.slow
def test_load_refuses_weights_changed_after_saving(saved_copy):
    weights = next(saved_copy.glob("encoders/*/model.safetensors"))
    content = bytearray(weights.read_bytes())
    content[-1] ^= 1
    weights.write_bytes(bytes(content))
    with pytest.raises(SavedEstimatorError, match=r"changed: \['model.safetensors'\]"):
        skembed.load(saved_copy)


@pytest.mark.slow
def test_load_refuses_a_changed_estimator_file_and_added_files(saved_copy):
    encoder = next(saved_copy.glob("encoders/*"))
    (encoder / "pytorch_model.bin").write_bytes(b"not a pickle you want to load")
    with pytest.raises(SavedEstimatorError, match=r"added: \['pytorch_model.bin'\]"):
        skembed.load(saved_copy)
    (encoder / "pytorch_model.bin").unlink()
    with open(saved_copy / "estimator.skops", "ab") as f:
        f.write(b"\0")
    with pytest.raises(SavedEstimatorError, match="estimator.skops .* changed or replaced"):
        skembed.load(saved_copy)


@pytest.mark.slow
def test_load_refuses_an_encoder_that_would_import_code_even_with_a_matching_manifest(saved_copy):
    """A folder made by someone else, manifest and all: nothing outside sentence-transformers
    is imported."""
    encoder = next(saved_copy.glob("encoders/*"))
    modules = json.loads((encoder / "modules.json").read_text())
    modules[0]["type"] = "os.system"
    (encoder / "modules.json").write_text(json.dumps(modules))
    manifest = json.loads((saved_copy / "skembed.json").read_text())
    from skembed._persistence import _file_hashes

    (reference,) = manifest["encoders"]
    manifest["encoders"][reference]["files"] = _file_hashes(saved_copy / reference)
    (saved_copy / "skembed.json").write_text(json.dumps(manifest))
    with pytest.raises(SavedEstimatorError, match=r"outside sentence-transformers.*'os.system'"):
        skembed.load(saved_copy)


class Shout(TransformerMixin, BaseEstimator):
    """A user's own transformer: skops does not build it unless told to trust it."""

    def fit(self, X, y=None):
        self.fitted_ = True
        return self

    def transform(self, X):
        return X


@pytest.mark.slow
def test_load_refuses_an_untrusted_type_and_names_it(tiny_model, tmp_path):
    pipeline = make_pipeline(EmbeddingVectorizer(tiny_model, device="cpu"), Shout()).fit(["a"])
    folder = skembed.save(pipeline, tmp_path / "saved")
    name = f"{Shout.__module__}.Shout"
    with pytest.raises(SavedEstimatorError, match=f"not trusted: \\['{name}'\\]"):
        skembed.load(folder)
    loaded = skembed.load(folder, trusted=[name])
    np.testing.assert_array_equal(loaded.transform(["b"]), pipeline.transform(["b"]))


def test_save_refuses_an_unfitted_estimator_and_a_full_folder(tiny_model, tmp_path):
    with pytest.raises(NotFittedError, match="skembed.save saves fitted estimators"):
        skembed.save(EmbeddingVectorizer(tiny_model), tmp_path / "x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep me")
    fitted = EmbeddingVectorizer(tiny_model, device="cpu").fit(["a"])
    with pytest.raises(FileExistsError, match="not empty; pass overwrite=True"):
        skembed.save(fitted, tmp_path / "full")
    assert (tmp_path / "full" / "mine.txt").read_text() == "keep me"
    with pytest.raises(SavedEstimatorError, match="not a folder written by skembed.save"):
        skembed.load(tmp_path / "full")


# -- fitted means frozen -------------------------------------------------------------
#: Each parameter that decides the vectors, and a value other than the test's.
FROZEN = {
    "model": "other-model",
    "backend": "transformers",
    "precision": "bfloat16",
    "max_seq_length": 8,
    "prompt": "query: ",
    "prompt_name": "query",
    "truncate_dim": 16,
    "long_texts": "chunk",
    "window_overlap": 2,
    "max_windows": 3,
    "revision": "v2",
    "trust_remote_code": True,
    "normalize": True,
    "handle_missing": "zero",
    "fine_tune": True,
}
#: Deciding only with fine_tune=True (tested there).
TUNING_ONLY = {"fine_tune_params", "random_state"}


def test_every_parameter_is_either_frozen_or_live():
    names = set(EmbeddingVectorizer().get_params())
    assert names == set(FROZEN) | set(LIVE_PARAMETERS) | TUNING_ONLY


@pytest.mark.parametrize("name", sorted(FROZEN))
def test_changing_a_frozen_parameter_after_fit_is_refused(tiny_model, name):
    vectorizer = EmbeddingVectorizer(tiny_model, device="cpu").fit(["hola", "adiós"])
    before = vectorizer.transform(["hola"])
    vectorizer.set_params(**{name: FROZEN[name]})
    for use in (lambda: vectorizer.transform(["hola"]), lambda: vectorizer.engine_,
                lambda: vectorizer.embed_unique(["hola"])):
        with pytest.raises(ParameterChangedError, match=f"\\['{name}'\\] changed after fit"):
            use()
    vectorizer.set_params(**{name: EmbeddingVectorizer(tiny_model).get_params()[name]})
    np.testing.assert_array_equal(vectorizer.transform(["hola"]), before)  # set back: fine


@pytest.mark.parametrize("name, value", [("batch_size", 1), ("device", "cpu"),
                                         ("show_progress_bar", False),
                                         ("warn_on_truncation", False), ("cache", "memory"),
                                         ("fine_tune_dir", "anywhere"), ("random_state", 3),
                                         ("fine_tune_params", {"steps": 1})])
def test_settings_of_how_vectors_are_computed_stay_live(tiny_model, name, value):
    vectorizer = EmbeddingVectorizer(tiny_model, device="cpu").fit(["hola", "adiós"])
    before = vectorizer.transform(["hola", "adiós"])
    vectorizer.set_params(**{name: value})
    np.testing.assert_allclose(vectorizer.transform(["hola", "adiós"]), before, atol=1e-6)


def test_an_edit_in_place_of_a_frozen_dict_is_a_change(tiny_model, pairs):
    X, y = pairs
    regressor = SimilarityRegressor(EmbeddingVectorizer(tiny_model, device="cpu"),
                                    column_params={0: {"prompt": "q: "}}).fit(X[:8], y[:8])
    regressor.column_params[0]["prompt"] = "other: "
    with pytest.raises(ParameterChangedError, match=r"\['column_params'\]"):
        regressor.predict(X[:2])


@pytest.mark.parametrize("params, changed", [
    ({"vectorizer__truncate_dim": 8}, "vectorizer__truncate_dim"),
    ({"vectorizer__prompt": "q: "}, "vectorizer__prompt"),
    ({"head": "isotonic"}, "head"),
    ({"alpha": 2.0}, "alpha"),
])
def test_the_regressor_is_frozen_too(tiny_model, pairs, params, changed):
    X, y = pairs
    regressor = SimilarityRegressor(EmbeddingVectorizer(tiny_model, device="cpu")).fit(X, y)
    regressor.set_params(**params)
    with pytest.raises(ParameterChangedError, match=f"\\['{changed}'\\]"):
        regressor.predict(X)


def test_the_regressors_live_vectorizer_settings_reach_its_fitted_vectorizers(tiny_model, pairs):
    X, y = pairs
    regressor = SimilarityRegressor(EmbeddingVectorizer(tiny_model, device="cpu")).fit(X, y)
    before = regressor.predict(X)
    regressor.set_params(vectorizer__batch_size=3)
    np.testing.assert_allclose(regressor.predict(X), before, atol=1e-6)
    assert regressor.vectorizer_.batch_size == 3


def test_a_changed_model_folder_is_named_not_silently_used(tiny_model_copy, model_of_kind):
    vectorizer = EmbeddingVectorizer(tiny_model_copy, device="cpu").fit(["hola"])
    shutil.rmtree(tiny_model_copy)
    shutil.copytree(model_of_kind("normalized"), tiny_model_copy)
    reborn = pickle.loads(pickle.dumps(vectorizer))  # a new process would load from scratch
    with pytest.raises(ValueError, match="files changed since fit"):
        reborn.transform(["hola"])


def test_a_hub_model_is_pinned_to_its_commit_at_fit(tmp_path, tiny_model, model_of_kind,
                                                     monkeypatch):
    from huggingface_hub import constants

    from skembed import _fingerprint

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--someone--tiny"
    first, second = "a" * 40, "b" * 40
    shutil.copytree(tiny_model, repo / "snapshots" / first)
    shutil.copytree(model_of_kind("normalized"), repo / "snapshots" / second)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(first)
    vectorizer = EmbeddingVectorizer("someone/tiny", device="cpu").fit(["hola"])
    before = vectorizer.transform(["hola"])
    (repo / "refs" / "main").write_text(second)  # the hub moved on...
    monkeypatch.setattr(_fingerprint, "_HUB_COMMITS", {})  # ...and this is a new process
    reborn = pickle.loads(pickle.dumps(vectorizer))
    np.testing.assert_array_equal(reborn.transform(["hola"]), before)
    fresh = EmbeddingVectorizer("someone/tiny", device="cpu").fit(["hola"])
    assert not np.allclose(fresh.transform(["hola"]), before)


# -- one fine-tuning lifecycle ------------------------------------------------------------
class Interrupted(Exception):
    pass


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["vectorizer", "regressor"])
def test_a_refit_that_fails_leaves_the_previous_fit_usable(tiny_model, topics, pairs, estimator,
                                                          monkeypatch):
    from skembed import _regressor, _vectorizer

    if estimator == "vectorizer":
        model, (X, y), module, name = _tuner(tiny_model), topics, _vectorizer, "train_on_labels"
        use = model.transform
    else:
        model, (X, y), module, name = _pair_tuner(tiny_model), pairs, _regressor, "train_encoder"
        use = model.predict
    model.fit(X, y)
    before, state = use(X), dict(vars(model))
    folders = _tuned_folders()
    train = getattr(module, name)

    def interrupted(*args, **kwargs):
        train(*args, **kwargs)  # the new weights are written...
        raise Interrupted  # ...then the process is interrupted

    monkeypatch.setattr(module, name, interrupted)
    with pytest.raises(Interrupted):
        model.fit(X, y)
    assert vars(model).keys() == state.keys()
    assert all(vars(model)[key] is value for key, value in state.items())
    np.testing.assert_array_equal(use(X), before)
    assert _tuned_folders() == folders  # the failed fit's folder is gone
    fresh = type(model)(**model.get_params(deep=False))
    with pytest.raises(Interrupted):
        fresh.fit(X, y)
    with pytest.raises(NotFittedError):
        fresh.predict(X) if estimator == "regressor" else fresh.transform(X)


@pytest.mark.slow
def test_fitting_keeps_the_global_random_state_and_one_seed_gives_one_model(tiny_model, topics,
                                                                           pairs):
    texts, labels = topics
    X, y = pairs
    weights = []
    for global_seed in (0, 12345):
        random.seed(global_seed)
        np.random.seed(global_seed)
        torch.manual_seed(global_seed)
        before = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        tuner = _tuner(tiny_model).fit(texts, labels)
        regressor = _pair_tuner(tiny_model).fit(X, y)
        after = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        assert after[0] == before[0]
        np.testing.assert_array_equal(after[1][1], before[1][1])
        assert after[1][2:] == before[1][2:]
        assert torch.equal(after[2], before[2])
        weights.append([t.fine_tuned_model_.files()["model.safetensors"]
                        for t in (tuner, regressor)])
    assert weights[0] == weights[1]  # bit-identical, whatever the global state


@pytest.mark.slow
def test_random_state_none_draws_fresh_seeds_without_the_global_generator(tiny_model, topics):
    texts, labels = topics
    np.random.seed(0)
    first = _tuner(tiny_model, ).set_params(random_state=None).fit(texts, labels)
    np.random.seed(0)
    second = _tuner(tiny_model).set_params(random_state=None).fit(texts, labels)
    assert first.fine_tuned_model_ != second.fine_tuned_model_


def test_a_bad_cache_fails_before_any_training(tiny_model, topics, tmp_path, monkeypatch):
    from skembed import _vectorizer

    def no_training(*args, **kwargs):
        raise AssertionError("trained before the cache was opened")

    monkeypatch.setattr(_vectorizer, "train_on_labels", no_training)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(CacheError):
        _tuner(tiny_model, cache=str(blocker / "cache.sqlite")).fit(*topics)
