"""EmbeddingVectorizer: parameters, backends, outputs, missing values, determinism, loading."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from conftest import pairwise_cosine, polars
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError

import skembed
from skembed import EmbeddingVectorizer, _engine, _registry

TEXTS = [
    "Nerea va a comprar un cuadro usando bitcoins",
    "Se puede comprar arte",
    "hola",
    "Un hombre está tocando la guitarra en un escenario muy iluminado por la noche.",
    "",
]


@pytest.fixture(scope="module")
def stsb_sentences(stsb_dir):
    """100 distinct STSb sentences spread over the whole range of lengths."""
    frame = pd.read_csv(stsb_dir / "test.csv")
    sentences = sorted(set(frame["sentence1"]) | set(frame["sentence2"]), key=lambda s: (len(s), s))
    picks = np.linspace(0, len(sentences) - 1, 100).round().astype(int)
    return [sentences[i] for i in np.random.default_rng(0).permutation(picks)]


def _vectorizer(model, **params):
    return EmbeddingVectorizer(model, device="cpu", **params)


# --- parameters -------------------------------------------------------------


def test_every_parameter_is_written_in_its_three_places():
    from conftest import assert_parameters_written_in_three_places

    from skembed._config import model_option_names

    parameters = assert_parameters_written_in_three_places(EmbeddingVectorizer)
    assert parameters[:2] == ["model", "backend"]
    # The model options the layers below read are parameters, in the same order.
    assert [p for p in parameters if p in model_option_names()] == list(model_option_names())
    assert EmbeddingVectorizer()._encoder_config().model == skembed.DEFAULT_MODEL


def params_of(estimator) -> dict:
    return estimator.get_params(deep=False)


def test_a_cuda_device_index_is_a_valid_parameter(tiny_model, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="device='cuda:1' was asked for, but torch sees no CUDA"):
        EmbeddingVectorizer(tiny_model, device="cuda:1").fit(TEXTS)
    with pytest.raises(InvalidParameterError, match="of the form 'cuda:<index>'"):
        EmbeddingVectorizer(tiny_model, device="cuda:x").fit(TEXTS)


@pytest.mark.parametrize(
    "param, value",
    [
        ("model", 3),
        ("backend", "onnx"),
        ("device", "tpu"),
        ("precision", "int4"),
        ("batch_size", 0),
        ("batch_size", 2.5),
        ("max_seq_length", 0),
        ("normalize", "yes"),
        ("handle_missing", "drop"),
        ("show_progress_bar", "sometimes"),
        ("revision", 1),
        ("trust_remote_code", "no"),
        ("prompt", 3),
        ("prompt_name", ["query"]),
        ("truncate_dim", 0),
        ("warn_on_truncation", "false"),
    ],
)
def test_invalid_parameter_is_refused_before_any_load(param, value):
    loads = _registry.MODEL_LOADS
    vectorizer = EmbeddingVectorizer(**{"model": "/nonexistent/model", param: value})
    with pytest.raises(InvalidParameterError, match=f"The '{param}' parameter"):
        vectorizer.fit(["a"])
    assert _registry.MODEL_LOADS == loads


def test_path_like_model(tiny_model):
    from pathlib import Path

    expected = _vectorizer(tiny_model).fit_transform(TEXTS)
    np.testing.assert_array_equal(_vectorizer(Path(tiny_model)).fit_transform(TEXTS), expected)


def test_device_without_hardware_is_a_clear_error(tiny_model, monkeypatch):
    import torch

    skembed.unload_models()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="device='cuda'.*no CUDA device"):
        EmbeddingVectorizer(tiny_model, device="cuda").fit(TEXTS)


# --- backends and precision ---------------------------------------------------


def test_backends_agree_with_sentence_transformers_on_tiny_model(tiny_model, stsb_sentences):
    from sentence_transformers import SentenceTransformer

    texts = stsb_sentences[:24]
    reference = SentenceTransformer(tiny_model, device="cpu").encode(texts)
    st = _vectorizer(tiny_model, batch_size=5).fit_transform(texts)
    hf = _vectorizer(tiny_model, backend="transformers", batch_size=7).fit_transform(texts)
    assert st.dtype == hf.dtype == np.float32
    assert np.abs(st - reference).max() <= 1e-5
    assert np.abs(hf - reference).max() <= 1e-5
    assert np.abs(st - hf).max() <= 1e-5


def test_backends_agree_with_sentence_transformers_on_minilm(minilm, stsb_sentences):
    from sentence_transformers import SentenceTransformer

    texts = stsb_sentences[:16]
    reference = SentenceTransformer(minilm, device="cpu").encode(texts)
    st = _vectorizer(minilm, batch_size=4).fit_transform(texts)
    # MiniLM's pipeline ends with a Normalize module: the plain transformers
    # backend (mean pooling only) matches it once asked to normalise.
    hf = _vectorizer(minilm, backend="transformers", normalize=True).fit_transform(texts)
    assert st.shape == (16, 384)
    assert np.abs(st - reference).max() <= 1e-5
    assert np.abs(hf - reference).max() <= 1e-5


@pytest.mark.filterwarnings("ignore:precision=.*emulated:RuntimeWarning")
@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_half_precisions_run_on_cpu_and_return_float32(tiny_model, precision):
    full = _vectorizer(tiny_model).fit_transform(TEXTS)
    half = _vectorizer(tiny_model, precision=precision).fit_transform(TEXTS)
    assert half.dtype == np.float32
    assert not np.array_equal(half, full)  # the model really ran in half precision
    for a, b in zip(half, full):
        assert pairwise_cosine(a, b)[0] > 0.999


def test_semantics_with_minilm(minilm):
    X = _vectorizer(minilm, normalize=True).fit_transform(
        [
            "A man is playing a guitar.",
            "Someone is strumming an acoustic guitar.",
            "The stock market fell sharply on Monday.",
        ]
    )
    paraphrase, unrelated = X[0] @ X[1], X[0] @ X[2]
    assert paraphrase > unrelated + 0.3


# --- inputs and outputs --------------------------------------------------------


@pytest.mark.parametrize(
    "make_X",
    [
        list,
        tuple,
        np.array,
        lambda t: np.array(t, dtype=object),
        pd.Series,
        lambda t: pd.Series(t, index=np.arange(len(t))[::-1] * 7),
        lambda t: np.array(t, dtype=object)[:, None],
        lambda t: pd.DataFrame({"text": t}),
        pytest.param(lambda t: polars().DataFrame({"text": t}), marks=pytest.mark.extras),
        pytest.param(lambda t: polars().Series(t), marks=pytest.mark.extras),
    ],
    ids=[
        "list", "tuple", "array", "object-array", "series", "series-reversed-index",
        "2d-array", "pandas", "polars", "polars-series",
    ],
)
def test_one_column_containers_give_the_same_vectors(tiny_model, make_X):
    expected = _vectorizer(tiny_model).fit_transform(list(TEXTS))
    X = _vectorizer(tiny_model).fit_transform(make_X(list(TEXTS)))
    assert isinstance(X, np.ndarray)
    assert X.dtype == np.float32
    assert X.shape == (len(TEXTS), 32)
    np.testing.assert_array_equal(X, expected)


def test_columns_are_embedded_side_by_side_and_each_distinct_text_once(tiny_model, monkeypatch):
    calls = []
    encode = _engine.encode

    def spy(config, texts, **kwargs):
        calls.append(list(texts))
        return encode(config, texts, **kwargs)

    monkeypatch.setattr(_engine, "encode", spy)
    frame = pd.DataFrame(
        {"title": ["hola", "arte", "hola", "adiós"], "body": ["arte", "hola", "cuadro", "hola"]}
    )
    vectorizer = _vectorizer(tiny_model)
    X = vectorizer.fit_transform(frame)
    assert len(calls) == 1
    assert sorted(calls[0]) == ["adiós", "arte", "cuadro", "hola"]
    assert X.shape == (4, 64)
    single = {t: _vectorizer(tiny_model).fit_transform([t])[0] for t in calls[0]}
    for row in range(4):
        np.testing.assert_allclose(X[row, :32], single[frame["title"][row]], atol=1e-6)
        np.testing.assert_allclose(X[row, 32:], single[frame["body"][row]], atol=1e-6)


def test_feature_names_out(tiny_model):
    one = _vectorizer(tiny_model).fit(["a", "b"])
    assert one.get_feature_names_out().tolist() == [f"embedding_{i}" for i in range(32)]
    named = _vectorizer(tiny_model).fit(pd.DataFrame({"title": ["a"], "body": ["b"]}))
    names = named.get_feature_names_out()
    assert names.tolist() == [f"title_{i}" for i in range(32)] + [f"body_{i}" for i in range(32)]
    assert named.feature_names_in_.tolist() == ["title", "body"]
    unnamed = _vectorizer(tiny_model).fit([["a", "b"]])
    assert unnamed.get_feature_names_out()[[0, 32]].tolist() == ["x0_0", "x1_0"]


def test_set_output_pandas_keeps_the_index(tiny_model):
    frame = pd.DataFrame({"title": ["a", "b", "c"]}, index=["r1", "r2", "r3"])
    vectorizer = _vectorizer(tiny_model).set_output(transform="pandas")
    out = vectorizer.fit_transform(frame)
    assert isinstance(out, pd.DataFrame)
    assert out.index.tolist() == ["r1", "r2", "r3"]
    assert out.columns.tolist() == vectorizer.get_feature_names_out().tolist()
    assert (out.dtypes == np.float32).all()


@pytest.mark.extras
def test_set_output_polars(tiny_model):
    pl = polars()
    frame = pl.DataFrame({"title": ["a", "b"], "body": ["c", "d"]})
    vectorizer = _vectorizer(tiny_model).set_output(transform="polars")
    out = vectorizer.fit_transform(frame)
    assert isinstance(out, pl.DataFrame)
    assert out.shape == (2, 64)
    assert out.columns == vectorizer.get_feature_names_out().tolist()
    np.testing.assert_array_equal(
        out.to_numpy(), _vectorizer(tiny_model).fit_transform(frame.to_pandas())
    )


def test_normalize(tiny_model):
    X = _vectorizer(tiny_model, normalize=True).fit_transform(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-6)
    raw = _vectorizer(tiny_model).fit_transform(TEXTS)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)


@pytest.mark.filterwarnings("ignore::skembed.TruncationWarning")  # cut on purpose
def test_max_seq_length_truncates_like_sentence_transformers(tiny_model):
    from sentence_transformers import SentenceTransformer

    text = [TEXTS[3]]
    st = SentenceTransformer(tiny_model, device="cpu")
    st.max_seq_length = 6
    short = _vectorizer(tiny_model, max_seq_length=6).fit_transform(text)
    np.testing.assert_allclose(short, st.encode(text), atol=1e-5)
    short_hf = _vectorizer(tiny_model, max_seq_length=6, backend="transformers").fit_transform(text)
    np.testing.assert_allclose(short_hf, short, atol=1e-5)
    full = _vectorizer(tiny_model).fit_transform(text)
    assert np.abs(full - short).max() > 1e-3


@pytest.mark.parametrize("backend", ["sentence-transformers", "transformers"])
@pytest.mark.filterwarnings("ignore::skembed.TruncationWarning")  # cut on purpose
def test_max_seq_length_past_the_model_limit_is_the_model_limit(tiny_model, backend):
    long_text = ["palabra " * 300]  # 300 tokens, the tiny model has 128 positions
    asked = _vectorizer(tiny_model, max_seq_length=1000, backend=backend).fit_transform(long_text)
    np.testing.assert_allclose(asked, _vectorizer(tiny_model).fit_transform(long_text), atol=1e-5)


def test_embed_unique_matches_transform(tiny_model):
    vectorizer = _vectorizer(tiny_model).fit(TEXTS)
    np.testing.assert_array_equal(vectorizer.embed_unique(TEXTS), vectorizer.transform(TEXTS))


def test_progress_bar(tiny_model, capfd, monkeypatch):
    from skembed import _vectorizer as vectorizer_module

    _vectorizer(tiny_model, show_progress_bar=True).fit_transform(TEXTS)
    assert "Embedding" in capfd.readouterr().err
    _vectorizer(tiny_model, show_progress_bar=False).fit_transform(TEXTS)
    out, err = capfd.readouterr()
    assert out == err == ""  # quiet: no bar, no print, not even the model load's
    # "auto": a bar from AUTO_PROGRESS_MIN_TEXTS texts on (2,048), none below.
    monkeypatch.setattr(vectorizer_module, "AUTO_PROGRESS_MIN_TEXTS", len(TEXTS))
    _vectorizer(tiny_model).fit_transform(TEXTS[:-1])
    assert "Embedding" not in capfd.readouterr().err
    _vectorizer(tiny_model).fit_transform(TEXTS)
    assert "Embedding" in capfd.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["plain", "prompted"])
def test_a_model_load_prints_nothing(model_of_kind, kind):
    import subprocess
    import sys

    # A new process: sentence-transformers says some things once per process only.
    code = (f"from skembed import EmbeddingVectorizer\n"
            f"EmbeddingVectorizer({model_of_kind(kind)!r}, device='cpu').fit_transform(['hola'])")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    # Neither transformers' "Loading weights" bar nor sentence-transformers' notice of the
    # default prompt it applies.
    assert (run.stdout, run.stderr) == ("", "")


# --- missing values -----------------------------------------------------------


def _with_missing():
    return pd.DataFrame(
        {"title": ["hola", "arte", "cuadro"], "body": ["adiós", None, "hola"]},
        index=["a", "b", "c"],
    )


def test_missing_value_is_an_error_naming_column_and_row(tiny_model):
    with pytest.raises(ValueError, match=r"column 'body'.*row 1 \(index label 'b'\)"):
        _vectorizer(tiny_model).fit(_with_missing())
    fitted = _vectorizer(tiny_model).fit(_with_missing().fillna("x"))
    with pytest.raises(ValueError, match=r"column 'body'.*index label 'b'.*handle_missing"):
        fitted.transform(_with_missing())


def test_missing_value_policies(tiny_model):
    frame = _with_missing()
    empty = _vectorizer(tiny_model, handle_missing="empty").fit_transform(frame)
    zero = _vectorizer(tiny_model, handle_missing="zero").fit_transform(frame)
    filled = _vectorizer(tiny_model).fit_transform(frame.fillna(""))
    np.testing.assert_array_equal(empty, filled)
    np.testing.assert_array_equal(zero[1, 32:], 0.0)
    np.testing.assert_array_equal(np.delete(zero, 1, axis=0), np.delete(filled, 1, axis=0))
    np.testing.assert_array_equal(zero[1, :32], filled[1, :32])
    assert np.abs(filled[1, 32:]).max() > 0  # the empty string has a real vector


@pytest.mark.parametrize("policy, allow_nan", [("error", False), ("empty", True), ("zero", True)])
def test_allow_nan_tag_follows_policy(policy, allow_nan):
    tags = EmbeddingVectorizer(handle_missing=policy).__sklearn_tags__()
    assert tags.input_tags.allow_nan is allow_nan


# --- bad input through the estimator ---------------------------------------------


def test_invalid_unicode_is_refused_before_the_model_runs(tiny_model, monkeypatch):
    def no_encoding(*args, **kwargs):
        raise AssertionError("the model ran on invalid text")

    monkeypatch.setattr(_engine, "encode", no_encoding)
    frame = pd.DataFrame({"title": ["ok", "also ok"], "body": ["fine", "broken \udc9f"]},
                         dtype=object)
    with pytest.raises(ValueError, match=r"column 'body' \(position 1\), row 1.*lone surrogate"):
        _vectorizer(tiny_model).fit_transform(frame)


def test_bad_input_through_the_estimator(tiny_model):
    import scipy.sparse as sp

    vectorizer = _vectorizer(tiny_model)
    with pytest.raises(ValueError, match="Iterable over raw text documents expected"):
        vectorizer.fit("one text")
    with pytest.raises(ValueError, match="3 dimensions"):
        vectorizer.fit(np.full((2, 2, 2), "a"))
    with pytest.raises(TypeError, match="Sparse input"):
        vectorizer.fit(sp.csr_matrix(np.ones((2, 2))))
    with pytest.raises(ValueError, match="Complex data"):
        vectorizer.fit(np.array([1j, 2j]))
    with pytest.raises(ValueError, match="infinity"):
        vectorizer.fit(np.array([1.0, np.inf]))
    with pytest.raises(TypeError, match="got dict"):
        vectorizer.fit(np.array(["a", {"k": 1}], dtype=object))
    with pytest.raises(ValueError, match="different numbers of columns"):
        vectorizer.fit([["a", "b"], ["c"]])
    with pytest.raises(ValueError, match=r"0 sample\(s\)"):
        vectorizer.fit([])
    fitted = _vectorizer(tiny_model).fit(["a", "b"])
    with pytest.raises(ValueError, match="Iterable over raw text documents expected"):
        fitted.transform("one text")


def test_wrong_number_of_columns_at_transform(tiny_model):
    fitted = _vectorizer(tiny_model).fit([["a", "b"], ["c", "d"]])
    with pytest.raises(ValueError, match="X has 3 features, but EmbeddingVectorizer is expecting 2"):
        fitted.transform([["a", "b", "c"]])
    with pytest.raises(ValueError, match="1-D input is read as one text column"):
        fitted.transform(["a", "b"])


def test_renamed_column_at_transform(tiny_model):
    fitted = _vectorizer(tiny_model).fit(pd.DataFrame({"title": ["a"]}))
    with pytest.raises(ValueError, match="Feature names unseen at fit time:\n- body"):
        fitted.transform(pd.DataFrame({"body": ["a"]}))


def test_transform_before_fit(tiny_model):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        _vectorizer(tiny_model).transform(["a"])


# --- determinism ------------------------------------------------------------------


def test_vectors_do_not_depend_on_row_order_with_minilm(minilm, stsb_sentences):
    lengths = [len(s.split()) for s in stsb_sentences]
    assert max(lengths) >= 4 * min(lengths)  # varied lengths, hence varied padding
    vectorizer = _vectorizer(minilm, batch_size=8)  # 13 batches
    X = vectorizer.fit_transform(stsb_sentences)
    permutation = np.random.default_rng(0).permutation(len(stsb_sentences))
    shuffled = vectorizer.transform([stsb_sentences[i] for i in permutation])
    np.testing.assert_array_equal(shuffled, X[permutation])  # bit-identical
    # Duplicated rows get the very same vector as their first occurrence.
    doubled = vectorizer.transform(stsb_sentences[:10] + stsb_sentences[:10])
    np.testing.assert_array_equal(doubled[:10], doubled[10:])
    # Other companions change the batches (padding width, batch size): the
    # vectors then agree to float32 rounding only, not bit for bit.
    np.testing.assert_allclose(doubled[:10], X[:10], rtol=0, atol=1e-6)


# --- loading, pickling, cloning -----------------------------------------------------


@pytest.fixture
def count_loads(monkeypatch):
    """Start from no encoder in the process and count the model loads."""
    loads = []
    loader = _registry.LoadedModel

    class CountingLoader(loader):
        def __init__(self, *args, **kwargs):
            loads.append(args[0])
            super().__init__(*args, **kwargs)

    skembed.unload_models()
    monkeypatch.setattr(_registry, "LoadedModel", CountingLoader)
    return loads


@pytest.mark.filterwarnings("ignore:precision=.*emulated:RuntimeWarning")
def test_model_loads_lazily_and_once_per_process(tiny_model, count_loads):
    vectorizer = _vectorizer(tiny_model, batch_size=2)
    clone(vectorizer)
    assert count_loads == []  # neither __init__ nor clone loads
    X = vectorizer.fit_transform(TEXTS)
    assert len(count_loads) == 1
    vectorizer.transform(TEXTS[:2])
    clone(vectorizer).fit(TEXTS).transform(TEXTS)
    # Parameters that do not change the network share the loaded model.
    _vectorizer(tiny_model, batch_size=3, normalize=True, handle_missing="zero").fit_transform(TEXTS)
    restored = pickle.loads(pickle.dumps(vectorizer))
    np.testing.assert_array_equal(restored.transform(TEXTS), X)
    assert len(count_loads) == 1
    # A parameter that changes the network is another model.
    _vectorizer(tiny_model, precision="bfloat16").fit(TEXTS)
    assert len(count_loads) == 2


def test_unfitted_vectorizer_with_unreachable_model_constructs_and_clones(count_loads):
    vectorizer = EmbeddingVectorizer("/nonexistent/model", device="cpu")
    assert clone(vectorizer).get_params() == vectorizer.get_params()
    assert count_loads == []
    with pytest.raises(FileNotFoundError, match="No model folder at '/nonexistent/model'"):
        vectorizer.fit(["a"])
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):  # a failed fit leaves it unfitted
        vectorizer.transform(["a"])


def test_pickle_is_small_and_gives_identical_vectors(tiny_model):
    vectorizer = _vectorizer(tiny_model).fit(pd.DataFrame({"title": TEXTS}))
    X = vectorizer.transform(pd.DataFrame({"title": TEXTS}))
    payload = pickle.dumps(vectorizer)
    assert len(payload) < 4096, len(payload)
    restored = pickle.loads(payload)
    np.testing.assert_array_equal(restored.transform(pd.DataFrame({"title": TEXTS})), X)
    assert restored.feature_names_in_.tolist() == ["title"]
    assert restored.embedding_dim_ == 32


@pytest.mark.parametrize("cache", [None, "memory"])
def test_changing_an_output_never_changes_later_outputs(tiny_model, cache):
    texts = ["uno", "dos", "tres"]  # all distinct: the output is the encoder's own array
    vectorizer = EmbeddingVectorizer(tiny_model, device="cpu", cache=cache).fit(texts)
    first = vectorizer.transform(texts)
    expected = first.copy()
    first[:] = 0.0
    np.testing.assert_array_equal(vectorizer.transform(texts), expected)
