"""skembed's vectors are SentenceTransformer.encode's, for every kind of model, or a clear refusal.

The reference is sentence-transformers itself, loaded from the same folder:
each kind of model the suite can build (conftest.MODEL_KINDS) is encoded with
each setting, by both backends, and compared to ``encode`` with the same
settings. A backend that cannot honour a model refuses it with a ValueError.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import MODEL_KINDS, PROMPTS, kind_cases

from skembed import EmbeddingVectorizer

TEXTS = [
    "Nerea va a comprar un cuadro usando bitcoins",
    "  espacios alrededor  ",
    "hola ",
    "MAYÚSCULAS Y minúsculas",
    "",
    "¿Dónde está la biblioteca? ¡Allí!",
    " ".join(["palabra"] * 60) + " final",  # longer than a short max_seq_length
    "El gato duerme.",
]

#: Vectorizer settings, and the same settings for SentenceTransformer.encode.
SETTINGS = {
    "defaults": ({}, {}),
    "prompt": ({"prompt": "pregunta: "}, {"prompt": "pregunta: "}),
    "no prompt": ({"prompt": ""}, {"prompt": ""}),
    "prompt_name": ({"prompt_name": "document"}, {"prompt_name": "document"}),
    "truncate_dim": ({"truncate_dim": 8}, {"truncate_dim": 8}),
    "max_seq_length": ({"max_seq_length": 6}, {}),
    "normalize": ({"normalize": True}, {"normalize_embeddings": True}),
}
#: (kind, setting) pairs that do not apply: the model has no such limit. (Every model has
#: a "document" prompt: sentence-transformers gives each an empty one by default.)
NOT_APPLICABLE = {("static", "max_seq_length")}
#: Models the transformers backend refuses, and why (it runs a transformers
#: network, mean pooling, Dense and Normalize modules).
TRANSFORMERS_REFUSES = {
    "static": "first module",
    "cls": "pooling is",
    "layernorm": "LayerNorm",
    "instructor": "leaves the prompt's tokens out",
}
#: Models the openvino backend refuses (it converts a transformers network followed by
#: Pooling, Dense and Normalize modules, and runs them with skembed's batching).
OPENVINO_REFUSES = {
    "static": "first module",
    "layernorm": "LayerNorm",
    "instructor": "leaves the prompt's tokens out",
}
REFUSALS = {"transformers": TRANSFORMERS_REFUSES, "openvino": OPENVINO_REFUSES}
#: Kinds whose vectors come from SentenceTransformer.encode itself.
ENCODE_PATH = {"static", "layernorm"}


@pytest.fixture(scope="module")
def reference(model_of_kind):
    from sentence_transformers import SentenceTransformer

    models: dict = {}

    def encode(kind: str, vectorizer_settings: dict, encode_settings: dict) -> np.ndarray:
        if kind not in models:
            models[kind] = SentenceTransformer(model_of_kind(kind), device="cpu")
        model = models[kind]
        saved = model.max_seq_length
        if "max_seq_length" in vectorizer_settings:
            model.max_seq_length = vectorizer_settings["max_seq_length"]
        try:
            return model.encode(TEXTS, batch_size=4, **encode_settings)
        finally:
            if "max_seq_length" in vectorizer_settings:
                model.max_seq_length = saved

    return encode


CASES = kind_cases(SETTINGS, skip=NOT_APPLICABLE)


@pytest.mark.filterwarnings("ignore::skembed.TruncationWarning")
@pytest.mark.parametrize("kind, backend, setting", CASES)
def test_vectors_equal_sentence_transformers_encode(model_of_kind, reference, kind, backend,
                                                    setting):
    ours, theirs = SETTINGS[setting]
    vectorizer = EmbeddingVectorizer(
        model_of_kind(kind), backend=backend, device="cpu", batch_size=3, **ours
    )
    refusals = REFUSALS.get(backend, {})
    refused = kind in refusals
    if kind == "instructor" and backend != "sentence-transformers" and ours.get("prompt") == "":
        refused = False  # without a prompt, leaving it out of pooling changes nothing
    if refused:
        with pytest.raises(ValueError, match=f"backend='{backend}'.*{refusals[kind]}"):
            vectorizer.fit_transform(TEXTS)
        return
    X = vectorizer.fit_transform(TEXTS)
    expected = reference(kind, ours, theirs)
    assert X.dtype == np.float32 and X.shape == expected.shape
    np.testing.assert_allclose(X, expected, rtol=0, atol=1e-5)
    assert vectorizer.embedding_dim_ == expected.shape[1]
    prompt_left_out = kind == "instructor" and ours.get("prompt") != ""
    path = "sentence-transformers" if kind in ENCODE_PATH or prompt_left_out else "skembed"
    assert vectorizer.engine_ == path


def test_every_kind_of_model_is_compared():
    kinds = {case.values[0] for case in CASES}
    settings = {case.values[2] for case in CASES}
    assert kinds == set(MODEL_KINDS) and settings == set(SETTINGS)
    assert set(TRANSFORMERS_REFUSES) | set(OPENVINO_REFUSES) | ENCODE_PATH <= set(MODEL_KINDS)


@pytest.mark.slow
def test_the_kinds_differ_where_they_should(model_of_kind, reference):
    """Guards the comparison itself: each kind's special part changes the vectors."""
    plain = reference("plain", {}, {})
    prompted = reference("prompted", {}, {})
    assert np.abs(prompted - reference("prompted", {}, {"prompt": ""})).max() > 1e-3
    assert reference("matryoshka", {}, {}).shape[1] == plain.shape[1] // 2
    np.testing.assert_allclose(np.linalg.norm(reference("normalized", {}, {}), axis=1), 1, 1e-5)
    assert reference("dense", {}, {}).shape[1] != plain.shape[1]
    lower = reference("lowercase", {}, {})
    assert np.abs(lower[3] - reference("plain", {}, {})[3]).max() > 1e-3
    metaspace = reference("metaspace", {}, {})
    # "hola " is not "hola" to this tokenizer: a stripped text would give another vector.
    from sentence_transformers import SentenceTransformer

    stripped = SentenceTransformer(model_of_kind("metaspace"), device="cpu").encode(["hola"])
    assert np.abs(metaspace[2] - stripped[0]).max() > 1e-3
    assert set(PROMPTS) == {"query", "document", "empty"}


@pytest.mark.parametrize("kind", ["prompted", "plain"])
def test_an_unknown_prompt_name_is_refused(model_of_kind, kind):
    with pytest.raises(ValueError, match="prompt_name='nope' is not a prompt of this model"):
        EmbeddingVectorizer(model_of_kind(kind), device="cpu", prompt_name="nope").fit(["a"])


def test_prompt_and_prompt_name_together_are_refused(model_of_kind):
    vectorizer = EmbeddingVectorizer(model_of_kind("prompted"), device="cpu", prompt="x: ",
                                     prompt_name="query")
    with pytest.raises(ValueError, match="Give prompt or prompt_name, not both"):
        vectorizer.fit(["a"])


def test_max_seq_length_on_a_model_that_reads_whole_texts_is_refused(model_of_kind):
    with pytest.raises(ValueError, match="does not apply.*StaticEmbedding.*reads whole texts"):
        EmbeddingVectorizer(model_of_kind("static"), device="cpu", max_seq_length=8).fit(["a"])
