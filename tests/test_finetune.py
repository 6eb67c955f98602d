"""Fine-tuning through SimilarityRegressor on the tiny model: learning, reproducibility, saving."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from skembed import EmbeddingVectorizer, FineTuneConfig, SimilarityRegressor, evaluate_sts
from skembed._finetune import length_grouped_batches, rescale_scores
from skembed._sklearn import InvalidParameterError

pytestmark = pytest.mark.extras  # needs an optional dependency: see pyproject.toml

# A random tiny model learns fast with a large step; no warm-up for 16 steps.
# The defaults but one model, float32 everywhere, the model's own dropout and trainable
# embeddings (what the tests of those settings compare against).
FAST = {"loss": "cosent", "epochs": 4, "learning_rate": 1e-3, "warmup_steps": 0, "soup": 1,
        "batch_size": 16, "bf16": False, "dropout": None, "freeze_embeddings": False}


@pytest.fixture(scope="module")
def train(stsb_dir):
    data = pd.read_csv(stsb_dir / "train.csv").head(64)
    return data[["sentence1", "sentence2"]], data["similarity_score"].to_numpy()


def _regressor(model, **params):
    vec = EmbeddingVectorizer(model, device="cpu", show_progress_bar=False)
    return SimilarityRegressor(vec, fine_tune=True, random_state=0, **params)


@pytest.fixture(scope="module")
def tuned(tiny_model, train, tmp_path_factory):
    X, y = train
    folder = tmp_path_factory.mktemp("tuned") / "encoder"
    return _regressor(tiny_model, fine_tune_params=FAST, fine_tune_dir=folder).fit(X, y)


@pytest.mark.slow
def test_loss_goes_down_and_training_pairs_rank_better(tiny_model, tuned, train):
    X, y = train
    history = tuned.fine_tune_history_
    losses = history["loss"]
    assert len(losses) >= 4 and np.mean(losses[-2:]) < np.mean(losses[:2])
    # Logged at increasing steps, through the 4 epochs.
    assert np.all(np.diff(history["step"]) > 0) and history["epoch"][-1] == pytest.approx(4)
    assert len(history["step"]) == len(history["epoch"]) == len(losses)
    before = evaluate_sts(tiny_model, X.sentence1, X.sentence2, y).spearman
    after = evaluate_sts(tuned, X.sentence1, X.sentence2, y).spearman
    assert after > before + 0.2, (before, after)
    # The original model is untouched; the fitted vectorizer points at the new one.
    assert tuned.vectorizer.model == tiny_model
    assert tuned.vectorizer_.model == tuned.fine_tuned_model_ != tiny_model


@pytest.mark.slow
def test_same_random_state_same_model(tiny_model, tuned, train, tmp_path):
    X, y = train
    again = _regressor(tiny_model, fine_tune_params=FAST, fine_tune_dir=tmp_path / "again")
    again.fit(X, y)
    np.testing.assert_array_equal(again.predict_similarity(X), tuned.predict_similarity(X))
    for key in ("step", "epoch", "loss"):
        np.testing.assert_array_equal(again.fine_tune_history_[key], tuned.fine_tune_history_[key])
    # Refitting into the same folder serves the new weights, not a stale model.
    first = again.predict_similarity(X)
    again.set_params(random_state=1, fine_tune_params={**FAST, "learning_rate": 3e-3}).fit(X, y)
    fresh = SimilarityRegressor(EmbeddingVectorizer(again.fine_tuned_model_, device="cpu"))
    np.testing.assert_array_equal(again.predict_similarity(X), fresh.fit(X, y).predict_similarity(X))
    assert not np.allclose(again.predict_similarity(X), first)


@pytest.mark.slow
def test_saved_encoder_loads_in_both_libraries(tuned, train, tmp_path):
    from sentence_transformers import SentenceTransformer

    X, _ = train
    texts = X.sentence1.tolist()[:10]
    before = tuned.vectorizer_.embed_unique(texts)
    path = tuned.save_encoder(tmp_path / "saved")
    assert path == os.path.realpath(tmp_path / "saved")
    ours = EmbeddingVectorizer(path, device="cpu").fit_transform(texts)
    theirs = SentenceTransformer(path, device="cpu").encode(texts)
    np.testing.assert_array_equal(ours, before)
    np.testing.assert_allclose(theirs, ours, atol=1e-5)


@pytest.mark.slow
def test_a_pickle_carries_the_tuned_weights(tuned, train):
    X, _ = train
    blob = pickle.dumps(tuned)
    weights = Path(tuned.fine_tuned_model_) / "model.safetensors"
    assert len(blob) > weights.stat().st_size  # see test_artifacts: they load anywhere
    np.testing.assert_array_equal(pickle.loads(blob).predict(X), tuned.predict(X))


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["mnrl", "angle", "cosine"])
def test_other_losses_train(tiny_model, train, loss):
    X, y = train
    params = {**FAST, "loss": loss, "epochs": 2}
    reg = _regressor(tiny_model, fine_tune_params=params).fit(X, y)
    losses = reg.fine_tune_history_["loss"]
    if loss != "mnrl":  # in-batch negatives make each batch's loss a world of its own
        assert len(losses) >= 4 and np.mean(losses[-2:]) < np.mean(losses[:2])
    before = evaluate_sts(tiny_model, X.sentence1, X.sentence2, y).spearman
    after = evaluate_sts(reg, X.sentence1, X.sentence2, y).spearman
    assert after > before + 0.03, (before, after)  # it learns what the pairs teach
    assert os.fspath(reg.fine_tuned_model_).startswith(str(__import__("tempfile").gettempdir()))


@pytest.mark.slow
def test_mnrl_needs_positive_pairs(tiny_model):
    X = [("a", "b"), ("c", "d"), ("e", "f")]
    reg = _regressor(tiny_model, fine_tune_params={"loss": "mnrl"})
    with pytest.raises(ValueError, match="at least 2 positive pairs"):
        reg.fit(X, [0.0, 0.0, 5.0])


@pytest.mark.parametrize(
    "params",
    [
        {"loss": "triplet"}, {"epochs": 0}, {"epochs": True}, {"dropout": "0.1"},
        {"learning_rate": None}, {"batch_size": 2.5}, {"dropout": 1.0}, {"learning_rate": -1.0},
        {"positive_threshold": 2.0}, {"attn_implementation": "flash"}, {"soup": 0},
        {"soup": 2.0}, {"soup": True}, {"bf16": "false"}, {"freeze_embeddings": 1},
    ],
)
def test_an_invalid_field_is_named_in_scikit_learns_words(params):
    (name, value), = params.items()
    with pytest.raises(InvalidParameterError,
                       match=f"The '{name}' parameter of FineTuneConfig must be .*{value!r}"):
        FineTuneConfig.from_params(params)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"loss": "mnrl", "batch_size": 1}, "needs batch_size >= 2"),
        ({"loss": "mnrl", "group_by_length": True}, "group_by_length=True cannot be used"),
        ({"max_seq_length": 64}, r"Unknown fine-tuning parameter\(s\) \['max_seq_length'\]"),
    ],
)
def test_config_errors(params, match):
    with pytest.raises(ValueError, match=match):
        FineTuneConfig.from_params(params)


def test_every_field_is_written_in_its_three_places():
    from dataclasses import fields

    from conftest import assert_parameters_written_in_three_places

    names = assert_parameters_written_in_three_places(FineTuneConfig)
    assert names == [f.name for f in fields(FineTuneConfig)]


def test_the_default_is_the_best_recipe_measured_and_the_card_is_named():
    config = FineTuneConfig()
    assert (config.loss, config.scale, config.batch_size, config.epochs) == ("cosent", 5.0, 32, 2)
    assert (config.learning_rate, config.warmup_steps, config.soup) == (1e-4, 0.1, 3)
    assert (config.group_by_length, config.dropout, config.freeze_embeddings) == ("auto", 0.0, True)
    assert config.bf16 == "auto"
    card = FineTuneConfig.from_params("card")
    assert (card.loss, card.scale, card.batch_size, card.epochs) == ("mnrl", 20.0, 16, 3)
    assert (card.learning_rate, card.weight_decay, card.warmup_steps) == (2e-5, 0.01, 271)
    assert (card.max_grad_norm, card.bf16, card.soup, card.dropout) == (1.0, False, 1, None)
    assert (card.freeze_embeddings, card.group_by_length) == (False, False)
    assert card.attn_implementation == "model"  # the model's own kernel: the card's run
    with pytest.raises(ValueError, match="Unknown FineTuneConfig recipe 'best'"):
        FineTuneConfig.from_params("best")
    assert rescale_scores([0, 5, 6], 0, 5).tolist() == [0.0, 1.0, 1.0]
    # The scores fed to the losses keep the order of y.
    y = np.array([3.0, 0.5, 4.5, 2.0])
    assert spearmanr(y, rescale_scores(y, y.min(), y.max())).statistic == 1.0


def test_length_grouped_batches_cover_every_pair_once_with_little_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 80, size=1000)
    batches = length_grouped_batches(lengths, 16, seed=1)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    assert [len(b) for b in batches].count(16) == 1000 // 16
    assert batches == length_grouped_batches(lengths, 16, seed=1)
    assert batches != length_grouped_batches(lengths, 16, seed=2)

    def padding(batches):
        return sum(len(b) * lengths[b].max() for b in batches) / lengths.sum()

    shuffled = rng.permutation(1000)
    random_batches = [shuffled[i : i + 16] for i in range(0, 1000, 16)]
    assert padding(batches) < 1.1 < 1.5 < padding(random_batches)
    # Batches do not come out sorted by length (a random curriculum).
    firsts = [lengths[b].max() for b in batches]
    assert firsts != sorted(firsts) and firsts != sorted(firsts, reverse=True)


@pytest.mark.slow
def test_group_by_length_trains_reproducibly(tiny_model, train, tmp_path):
    X, y = train
    params = {**FAST, "epochs": 1, "batch_size": 8, "group_by_length": True}
    first = _regressor(tiny_model, fine_tune_params=params).fit(X, y)
    again = _regressor(tiny_model, fine_tune_params=params).fit(X, y)
    assert len(first.fine_tune_history_["loss"]) >= 2
    np.testing.assert_array_equal(first.predict_similarity(X), again.predict_similarity(X))
    plain = _regressor(tiny_model, fine_tune_params={**params, "group_by_length": False}).fit(X, y)
    assert not np.array_equal(plain.predict_similarity(X), first.predict_similarity(X))


@pytest.mark.slow
def test_fractional_epochs_stop_part_way(tiny_model, train):
    X, y = train  # 64 pairs: 4 steps an epoch at batch 16, one loss logged per step
    half = _regressor(tiny_model, fine_tune_params={**FAST, "epochs": 0.5}).fit(X, y)
    whole = _regressor(tiny_model, fine_tune_params={**FAST, "epochs": 1}).fit(X, y)
    assert (len(half.fine_tune_history_["loss"]), len(whole.fine_tune_history_["loss"])) == (2, 4)
    np.testing.assert_array_equal(whole.fine_tune_history_["step"], [1, 2, 3, 4])


@pytest.mark.slow
def test_freeze_embeddings_keeps_the_token_embeddings(tiny_model, train):
    from sentence_transformers import SentenceTransformer

    X, y = train
    reg = _regressor(tiny_model, fine_tune_params={**FAST, "epochs": 1, "freeze_embeddings": True})
    reg.fit(X, y)
    before = SentenceTransformer(tiny_model, device="cpu")[0].auto_model
    after = SentenceTransformer(os.fspath(reg.fine_tuned_model_), device="cpu")[0].auto_model
    frozen = before.get_input_embeddings().weight
    assert after.get_input_embeddings().weight.equal(frozen)
    changed = [name for name, p in after.named_parameters()
               if not p.equal(dict(before.named_parameters())[name])]
    assert len(changed) > 10 and not any("word_embeddings" in name for name in changed)


def test_freeze_embeddings_needs_a_transformers_model():
    import torch

    from skembed._training import _prepare_for_training

    with pytest.raises(ValueError, match="needs a transformers model"):
        _prepare_for_training(torch.nn.Sequential(torch.nn.Linear(2, 2)),
                              FineTuneConfig(freeze_embeddings=True), "cpu")


@pytest.mark.parametrize(
    "choice, device, expected",
    [("auto", "cpu", "eager"), ("auto", "cuda", "sdpa"), ("model", "cpu", "sdpa"),
     ("eager", "cuda", "eager"), ("sdpa", "cpu", "sdpa")],
)
def test_training_attention_kernel(tiny_model, choice, device, expected):
    from sentence_transformers import SentenceTransformer

    from skembed._training import _prepare_for_training

    model = SentenceTransformer(tiny_model, device="cpu")
    network = model[0].auto_model
    assert network.config._attn_implementation == "sdpa"
    _prepare_for_training(model, FineTuneConfig(attn_implementation=choice), device)
    assert network.config._attn_implementation == expected


@pytest.mark.slow
def test_attention_kernel_changes_speed_not_results(tiny_model, train):
    import json
    from pathlib import Path

    X, y = train
    params = {**FAST, "epochs": 1}
    eager = _regressor(tiny_model, fine_tune_params={**params, "attn_implementation": "auto"})
    fused = _regressor(tiny_model, fine_tune_params={**params, "attn_implementation": "model"})
    eager.fit(X, y)
    fused.fit(X, y)
    np.testing.assert_allclose(
        eager.fine_tune_history_["loss"], fused.fine_tune_history_["loss"], rtol=1e-3
    )
    np.testing.assert_allclose(
        eager.predict_similarity(X), fused.predict_similarity(X), atol=1e-3
    )
    # The saved model does not carry the training kernel.
    saved = json.loads((Path(eager.fine_tuned_model_) / "config.json").read_text())
    assert "eager" not in json.dumps(saved)


def test_explicit_attention_kernel_needs_a_transformers_model():
    import torch

    from skembed._training import _prepare_for_training

    plain = torch.nn.Sequential(torch.nn.Linear(2, 2))
    unfrozen = {"freeze_embeddings": False}
    _prepare_for_training(plain, FineTuneConfig(**unfrozen), "cpu")  # "auto" leaves it be
    with pytest.raises(ValueError, match="attn_implementation='eager' needs a transformers"):
        _prepare_for_training(plain, FineTuneConfig(attn_implementation="eager", **unfrozen),
                              "cpu")


def test_attention_kernel_on_a_transformers_without_the_switch(tiny_model, monkeypatch):
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedModel

    from skembed._training import _prepare_for_training

    model = SentenceTransformer(tiny_model, device="cpu")
    monkeypatch.delattr(PreTrainedModel, "set_attn_implementation")
    _prepare_for_training(model, FineTuneConfig(), "cpu")  # "auto" keeps the model's own
    assert model[0].auto_model.config._attn_implementation == "sdpa"
    with pytest.raises(ValueError, match="needs a transformers version whose models have"):
        _prepare_for_training(model, FineTuneConfig(attn_implementation="eager"), "cpu")


@pytest.mark.slow
def test_dropout_is_set_for_training_only(tiny_model, train):
    import json
    from pathlib import Path

    X, y = train
    params = {**FAST, "epochs": 1}
    plain = _regressor(tiny_model, fine_tune_params=params).fit(X, y)
    no_dropout = _regressor(tiny_model, fine_tune_params={**params, "dropout": 0.0}).fit(X, y)
    again = _regressor(tiny_model, fine_tune_params={**params, "dropout": 0.0}).fit(X, y)
    np.testing.assert_array_equal(no_dropout.predict_similarity(X), again.predict_similarity(X))
    assert not np.array_equal(plain.predict_similarity(X), no_dropout.predict_similarity(X))
    # The saved model keeps its own dropout settings for later training.
    original = json.loads((Path(tiny_model) / "config.json").read_text())
    saved = json.loads((Path(no_dropout.fine_tuned_model_) / "config.json").read_text())
    assert saved["dropout"] == original["dropout"] > 0


@pytest.mark.slow
def test_soup_keeps_the_mean_of_its_members_weights(tiny_model, train, tmp_path):
    from sentence_transformers import SentenceTransformer

    from conftest import encoder_config

    from skembed._finetune import train_encoder

    X, y = train
    config = {**FAST, "epochs": 1}
    encoder = encoder_config(tiny_model)

    def tune(seed, soup):
        folder = tmp_path / f"seed{seed}-soup{soup}"
        history = train_encoder(
            (encoder, encoder), X.sentence1, X.sentence2, y, folder, seed=seed,
            recipe=FineTuneConfig.from_params({**config, "soup": soup}),
        )
        weights = SentenceTransformer(str(folder), device="cpu").state_dict()
        return history, weights

    history3, member3 = tune(3, 1)
    history4, member4 = tune(4, 1)
    soup_history, soup = tune(3, 2)
    changed = 0
    for name, weight in soup.items():
        if weight.is_floating_point():
            expected = (member3[name] + member4[name]) / 2
            np.testing.assert_allclose(weight.numpy(), expected.numpy(), atol=1e-6)
            changed += not member3[name].equal(member4[name])
    assert changed > 10  # the members differ, so the mean is a new model
    np.testing.assert_allclose(soup_history["loss"], (history3["loss"] + history4["loss"]) / 2)
    np.testing.assert_array_equal(soup_history["step"], history3["step"])


@pytest.mark.slow
def test_bf16_trains_float32_weights_close_to_float32_training(tiny_model, train, monkeypatch):
    import warnings
    from pathlib import Path

    from safetensors.torch import load_file

    from skembed import _devices

    X, y = train
    params = {**FAST, "epochs": 1}
    monkeypatch.setattr(_devices, "cpu_has_fast_bfloat16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        bf16 = _regressor(tiny_model, fine_tune_params={**params, "bf16": True}).fit(X, y)
    fp32 = _regressor(tiny_model, fine_tune_params=params).fit(X, y)
    bf16_losses, fp32_losses = bf16.fine_tune_history_["loss"], fp32.fine_tune_history_["loss"]
    np.testing.assert_allclose(bf16_losses, fp32_losses, rtol=0.05)
    assert not np.array_equal(bf16_losses, fp32_losses)  # autocast did run
    weights = load_file(next(Path(bf16.fine_tuned_model_).rglob("model.safetensors")))
    assert {str(t.dtype) for t in weights.values() if t.is_floating_point()} == {"torch.float32"}

    monkeypatch.setattr(_devices, "cpu_has_fast_bfloat16", lambda: False)
    with pytest.warns(RuntimeWarning, match="bf16=True on a CPU without AVX512-BF16 or AMX"):
        _regressor(tiny_model, fine_tune_params={**params, "epochs": 0.25, "bf16": True}).fit(X, y)


@pytest.mark.slow
def test_training_is_quiet_unless_asked(tiny_model, train, capfd):
    X, y = train
    for show in (False, "auto"):  # "auto": 64 pairs, 2 epochs are 256 texts, short work
        vec = EmbeddingVectorizer(tiny_model, device="cpu", show_progress_bar=show)
        SimilarityRegressor(vec, fine_tune=True, fine_tune_params={**FAST, "epochs": 2},
                            random_state=0).fit(X, y)
        assert capfd.readouterr() == ("", "")  # no bar, no log dicts, nothing at all
    vec = EmbeddingVectorizer(tiny_model, device="cpu", show_progress_bar=True)
    SimilarityRegressor(vec, fine_tune=True, fine_tune_params={**FAST, "epochs": 1},
                        random_state=0).fit(X, y)
    out, err = capfd.readouterr()
    assert out == ""  # never the trainer's log dicts ({'loss': ...}) on stdout
    assert "Fine-tuning" in err and "4/4" in err and "loss=" in err  # one bar, the loss in it
    assert "{'loss'" not in err


@pytest.mark.slow
def test_a_fine_tune_config_works_as_the_dict_of_its_fields(tiny_model, train):
    X, y = train
    params = {**FAST, "epochs": 1}
    from_dict = _regressor(tiny_model, fine_tune_params=params).fit(X, y)
    from_config = _regressor(tiny_model, fine_tune_params=FineTuneConfig(**params)).fit(X, y)
    np.testing.assert_array_equal(from_config.predict_similarity(X),
                                  from_dict.predict_similarity(X))


@pytest.mark.slow
def test_each_column_is_trained_with_the_prompt_it_is_encoded_with(model_of_kind, train,
                                                                   monkeypatch):
    from skembed import _training

    seen = []
    real = _training._training_arguments

    def spy(*args):
        seen.append(args[-1])
        return real(*args)

    monkeypatch.setattr(_training, "_training_arguments", spy)
    X, y = train
    model = model_of_kind("prompted")  # its default prompt is the query one
    reg = _regressor(model, fine_tune_params={**FAST, "epochs": 0.25},
                     column_params={"sentence2": {"prompt_name": "document"}}).fit(X, y)
    assert seen == [{"sentence1": "consulta: ", "sentence2": "documento: "}]
    _regressor(model_of_kind("plain"), fine_tune_params={**FAST, "epochs": 0.25}).fit(X, y)
    assert seen[-1] == {}  # a model without prompts trains without
    assert reg.column_params_ == [{}, {"prompt_name": "document"}]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::skembed.TruncationWarning")  # cut on purpose
def test_training_reads_texts_as_the_vectorizer_does(tiny_model, train):
    from sentence_transformers import SentenceTransformer

    X, y = train
    params = {**FAST, "epochs": 0.5}

    def fit(max_seq_length, **extra):
        vec = EmbeddingVectorizer(tiny_model, device="cpu", max_seq_length=max_seq_length,
                                  show_progress_bar=False)
        return SimilarityRegressor(vec, fine_tune=True, fine_tune_params=params,
                                   random_state=0, **extra).fit(X, y)

    short, whole = fit(8), fit(None)
    saved = SentenceTransformer(os.fspath(short.fine_tuned_model_), device="cpu")
    assert saved.max_seq_length == 8 and short.vectorizer_.max_seq_length == 8
    # Texts cut to 8 tokens are other training examples than whole ones.
    assert not np.allclose(short.fine_tune_history_["loss"], whole.fine_tune_history_["loss"])
    with pytest.raises(ValueError, match="trains every column with one max_seq_length"):
        fit(8, column_params={1: {"max_seq_length": 16}})


def test_a_recipe_name_is_a_valid_parameter_and_an_unknown_one_is_named(tiny_model):
    reg = SimilarityRegressor(EmbeddingVectorizer(tiny_model, device="cpu"), fine_tune=True,
                              fine_tune_params="card")
    reg._validate_params()  # a str is a valid value
    with pytest.raises(ValueError, match="Unknown FineTuneConfig recipe 'best'.*'card'"):
        reg.set_params(fine_tune_params="best").fit([("a", "b"), ("c", "d")], [0.0, 1.0])
