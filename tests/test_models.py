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
    _registry,
    unload_models,
)
from skembed._cli import main
from conftest import encoder_config

TEXTS = ["Un perro corre.", "Dos gatos duermen al sol.", "hola"]
FAST = {"loss": "cosent", "epochs": 1, "learning_rate": 1e-3, "warmup_steps": 0, "soup": 1,
        "bf16": False}


def _weights(config):
    model = _registry.load_model(config)
    network = model.st if model.st is not None else model.network
    return model, next(network.parameters()).data_ptr()


def test_settings_that_only_feed_texts_share_one_copy_of_the_weights(model_of_kind):
    path = model_of_kind("prompted")
    unload_models()
    loads = _registry.MODEL_LOADS
    first, pointer = _weights(encoder_config(path))
    for change in ({"max_seq_length": 8}, {"prompt_name": "document"}, {"prompt": "x: "},
                   {"truncate_dim": 4}):
        model, other = _weights(encoder_config(path, **change))
        assert model is first and other == pointer, change
    assert _registry.MODEL_LOADS == loads + 1
    # What changes the computation is another copy.
    assert _weights(encoder_config(path, backend="transformers"))[0] is not first
    assert _registry.MODEL_LOADS == loads + 2


@pytest.mark.filterwarnings("ignore::skembed.TruncationWarning")  # cut on purpose
def test_a_grid_search_over_max_seq_length_and_prompts_loads_the_model_once(model_of_kind):
    from sklearn.linear_model import LogisticRegression

    unload_models()
    loads = _registry.MODEL_LOADS
    X = pd.DataFrame({"text": [f"frase número {i}" for i in range(12)]})
    y = np.arange(12) % 2
    pipe = make_pipeline(EmbeddingVectorizer(model_of_kind("prompted"), device="cpu"),
                         LogisticRegression())
    grid = {"embeddingvectorizer__max_seq_length": [4, 8, None],
            "embeddingvectorizer__prompt_name": ["query", "document"]}
    GridSearchCV(pipe, grid, cv=KFold(2)).fit(X, y)
    assert _registry.MODEL_LOADS == loads + 1


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
    with _registry._LOCK:  # the stale copy was released
        folders = [k for k in _registry._MODELS if k[1][0] == "folder"
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
    # Reversed scores: other weights whatever the seed does (one batch of 32, no dropout).
    second = reg.fit(X, 5.0 - y).predict_similarity(X)
    assert not np.allclose(first, second)
    fresh = EmbeddingVectorizer(str(tmp_path / "ft"), device="cpu")
    from skembed import pair_similarity

    np.testing.assert_array_equal(second, pair_similarity(X, fresh))


def test_unload_models_releases_all_or_one(tiny_model, tiny_model_copy):
    unload_models()
    EmbeddingVectorizer(tiny_model, device="cpu").fit(TEXTS)
    EmbeddingVectorizer(str(tiny_model_copy), device="cpu").fit(TEXTS)
    assert unload_models(tiny_model_copy) == 1
    assert not _registry.is_loaded(encoder_config(str(tiny_model_copy)))
    assert _registry.is_loaded(encoder_config(tiny_model))
    loads = _registry.MODEL_LOADS
    EmbeddingVectorizer(str(tiny_model_copy), device="cpu").fit_transform(TEXTS)
    assert _registry.MODEL_LOADS == loads + 1  # loaded again on the next use
    assert unload_models() == 2 and unload_models() == 0


@pytest.mark.slow
@pytest.mark.extras  # fine-tuning needs datasets and accelerate
def test_temporary_fine_tuned_folders_go_with_their_estimator(tiny_model, stsb_dir):
    data = pd.read_csv(stsb_dir / "train.csv").head(32)
    X, y = data[["sentence1", "sentence2"]], data["similarity_score"]
    reg = SimilarityRegressor(
        EmbeddingVectorizer(tiny_model, device="cpu", show_progress_bar=False),
        fine_tune=True, fine_tune_params=FineTuneConfig.from_params(FAST), random_state=201,
    ).fit(X, y)
    first = Path(reg.fine_tuned_model_)
    assert (first / "modules.json").is_file()
    reg.set_params(random_state=202).fit(X, y)  # a refit to other weights replaces the folder
    gc.collect()
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


NEW_OPTION_CHECKS = '''
import sys
import numpy as np
import sentence_transformers, transformers
calls = []
for owner, name in ((sentence_transformers.SentenceTransformer, "__init__"),):
    original = owner.__init__
    def recording(self, *args, __original=original, **kwargs):
        calls.append(("SentenceTransformer", kwargs.get("local_files_only")))
        return __original(self, *args, **kwargs)
    owner.__init__ = recording
for owner in (transformers.AutoModel, transformers.AutoTokenizer):
    original = owner.from_pretrained
    def recording(*args, __original=original, __name=owner.__name__, **kwargs):
        calls.append((__name, kwargs.get("local_files_only")))
        return __original(*args, **kwargs)
    owner.from_pretrained = recording

from skembed import EmbeddingCache, EmbeddingVectorizer, _registry
from skembed._cli import build_parser
from skembed._finetune import FineTuneConfig, train_encoder
from skembed._loading import load_request

model, out = sys.argv[1], sys.argv[2]
on = EmbeddingVectorizer(model, device="cpu", local_files_only=True)
off = EmbeddingVectorizer(model, device="cpu")
config = on._encoder_config()
# The loaders' arguments and the registry's key.
assert load_request(config).kwargs["local_files_only"] is True, load_request(config)
assert load_request(config).key() != load_request(off._encoder_config()).key()
loads = _registry.MODEL_LOADS
on.fit(["a"]); off.fit(["a"])
assert _registry.MODEL_LOADS == loads + 2  # two settings, two copies
assert ("SentenceTransformer", True) in calls and ("SentenceTransformer", False) in calls
calls.clear()
EmbeddingVectorizer(model, device="cpu", backend="transformers", local_files_only=True).fit(["a"])
assert ("AutoModel", True) in calls and ("AutoTokenizer", True) in calls, calls
# The cache's key.
cache = EmbeddingCache(None)
key_on, key_off = cache.model_key(config, "cpu"), cache.model_key(off._encoder_config(), "cpu")
assert key_on.description["local_files_only"] is True and key_on.digest != key_off.digest
# Fine-tuning loads through the same arguments.
calls.clear()
train_encoder((config, config), ["un perro", "dos gatos"], ["un can", "tres gatos"], [1.0, 0.0],
              out, recipe=FineTuneConfig(loss="cosent", epochs=0.5, warmup_steps=0))
assert ("SentenceTransformer", True) in calls and all(value is True for _, value in calls), calls
# The command line's flag.
assert "--local-files-only" in build_parser().format_help() or any(
    "--local-files-only" in a.option_strings
    for a in build_parser()._subparsers._group_actions[0].choices["embed"]._actions)
print("every loader and key took the new option")
'''


def _add_load_option(package: Path) -> None:
    """Add the load option ``local_files_only`` where a contributor would: its declaration in
    _config.py, and the vectorizer's __init__ argument, constraint and docstring entry."""

    def edit(name, old, new):
        path = package / name
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1, (name, old)
        path.write_text(text.replace(old, new), encoding="utf-8")

    edit("_config.py", "    trust_remote_code: bool = _option(loads=True)\n",
         "    trust_remote_code: bool = _option(loads=True)\n"
         "    local_files_only: bool = _option(loads=True)\n")
    edit("_vectorizer.py", '        "trust_remote_code": ["boolean"],\n',
         '        "trust_remote_code": ["boolean"],\n        "local_files_only": ["boolean"],\n')
    edit("_vectorizer.py", "        revision=None, trust_remote_code=False,\n",
         "        revision=None, trust_remote_code=False, local_files_only=False,\n")
    edit("_vectorizer.py", "        self.trust_remote_code = trust_remote_code\n",
         "        self.trust_remote_code = trust_remote_code\n"
         "        self.local_files_only = local_files_only\n")
    edit("_vectorizer.py", "    trust_remote_code : bool, default=False\n",
         "    local_files_only : bool, default=False\n"
         "        Read the model from files on disk only.\n"
         "    trust_remote_code : bool, default=False\n")


@pytest.mark.slow
@pytest.mark.extras  # fine-tuning needs datasets and accelerate
def test_a_new_load_option_reaches_every_loader_and_key_with_no_other_edit(tiny_model, tmp_path):
    import subprocess
    import sys

    package = tmp_path / "skembed"
    shutil.copytree(Path(__file__).resolve().parent.parent / "skembed", package,
                    ignore=shutil.ignore_patterns("__pycache__"))
    _add_load_option(package)
    result = subprocess.run(
        [sys.executable, "-c", NEW_OPTION_CHECKS, tiny_model, str(tmp_path / "tuned")],
        env={**os.environ, "PYTHONPATH": str(tmp_path)}, cwd=tmp_path, capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every loader and key took the new option" in result.stdout
