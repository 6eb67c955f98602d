"""Engine-level correctness: tokenisation, batching pipeline, truncation, precisions, devices."""

import re
import threading
import warnings

import numpy as np
import pytest

from conftest import encoder_config, pairwise_cosine

from skembed import EmbeddingVectorizer, TruncationWarning, _devices, _engine, _registry
from skembed._devices import resolve_device

TEXTS = [
    "Nerea va a comprar un cuadro usando bitcoins",
    "Se puede comprar arte con bitcoins",
    "hola",
    "Un hombre está tocando la guitarra.",
    "  espacios alrededor  ",
    "Un perro corre por el parque con una pelota roja en la boca.",
    "",
    "¿Dónde está la biblioteca?",
    "El gato duerme.",
    "Los niños juegan al fútbol en la calle mientras llueve.",
    "a b c d e f g",
]


@pytest.fixture(scope="module")
def config(tiny_model):
    return encoder_config(tiny_model)


@pytest.fixture(scope="module")
def plan(config):
    return _engine.prepare(config)


def test_chunked_tokenization_equals_one_shot(plan, monkeypatch):
    tokenizer = plan.model.tokenizer
    expected = tokenizer(TEXTS, truncation=True, max_length=plan.max_length)["input_ids"]
    monkeypatch.setattr(_engine, "TOKENIZE_CHUNK", 3)
    monkeypatch.setattr(_engine, "TOKENIZE_CHUNK_CHARS", 40)
    tokens = _engine.tokenize(plan, TEXTS)
    assert tokens.flat.dtype == np.int32
    assert tokens.lengths.tolist() == [len(ids) for ids in expected]
    rows = np.arange(len(TEXTS))
    input_ids, mask = tokens.padded(rows, pad_id=tokenizer.pad_token_id)
    for row, ids in enumerate(expected):
        assert input_ids[row, : len(ids)].tolist() == ids
        assert mask[row].sum() == len(ids)
        assert (input_ids[row, len(ids) :] == tokenizer.pad_token_id).all()


def test_tokenizer_chunks_respect_both_limits(monkeypatch):
    monkeypatch.setattr(_engine, "TOKENIZE_CHUNK", 3)
    monkeypatch.setattr(_engine, "TOKENIZE_CHUNK_CHARS", 10)
    texts = ["aaaa", "bb", "c", "d", "eeeeeeeeeeeeeeeeee", "ff", "ggggggggg", "h"]
    chunks = list(_engine._chunks(texts))
    assert chunks == [(0, 3), (3, 4), (4, 5), (5, 6), (6, 8)]
    assert list(_engine._chunks([])) == []
    # A prompt put before each text counts towards the characters.
    assert list(_engine._chunks(["aa", "bb", "cc"], extra_chars=3)) == [(0, 2), (2, 3)]


@pytest.mark.parametrize("prefetch, output_chunk, chunk", [(0, 10_000, 4096), (2, 3, 4), (1, 1, 3)])
def test_pipelined_path_equals_simple_path(config, monkeypatch, prefetch, output_chunk, chunk):
    monkeypatch.setattr(_engine, "PREFETCH_CHUNKS", 0)
    monkeypatch.setattr(_engine, "OUTPUT_CHUNK", 10_000)
    simple = _engine.encode(config, TEXTS, batch_size=4)
    monkeypatch.setattr(_engine, "PREFETCH_CHUNKS", prefetch)
    monkeypatch.setattr(_engine, "OUTPUT_CHUNK", output_chunk)
    monkeypatch.setattr(_engine, "TOKENIZE_CHUNK", chunk)
    pipelined = _engine.encode(config, TEXTS, batch_size=4)
    np.testing.assert_allclose(pipelined, simple, rtol=0, atol=1e-6)
    assert np.abs(simple).sum(axis=1).min() > 0  # every row was written


class _RecordingEvent:
    """Stands in for torch.cuda.Event on a CPU, and remembers what was asked of it."""

    log = []

    def record(self):
        self.log.append("record")

    def synchronize(self):
        self.log.append("synchronize")


def test_cuda_transfer_logic_on_cpu(config, monkeypatch):
    """The asynchronous path (pinned batches, events, copies in flight) gives the same vectors."""
    plain = _engine.encode(config, TEXTS, batch_size=4)
    pinned = []

    def pin(tensor):
        pinned.append(tensor.shape)
        return tensor.clone()

    _RecordingEvent.log = []
    monkeypatch.setattr(_engine, "_pin", pin)
    monkeypatch.setattr(_engine, "_new_event", _RecordingEvent)
    monkeypatch.setattr(_engine, "OUTPUT_CHUNK", 4)
    real_transfers = _engine._Transfers
    monkeypatch.setattr(
        _engine, "_Transfers", lambda device, asynchronous: real_transfers(device, True)
    )
    asynchronous = _engine.encode(config, TEXTS, batch_size=4)
    np.testing.assert_array_equal(asynchronous, plain)
    # 11 texts in batches of 4 -> 3 output copies, each recorded then waited for.
    assert _RecordingEvent.log.count("record") == _RecordingEvent.log.count("synchronize") == 3
    assert len(pinned) >= 3 + 3  # input ids of each batch and each copy back


def test_tokens_match_the_transformers_tokenizer_call(plan):
    assert plan.model.has_rust_tokenizer  # the fast path is under test
    texts = TEXTS + [" ".join(["palabra"] * 400), "ÁÉÍÓÚ ñ ü ¿? ¡!", "x" * 300, " lead", "trail "]
    expected = plan.model.tokenizer(texts, truncation=True, max_length=plan.max_length)
    assert _engine.token_ids(plan, texts) == expected["input_ids"]


@pytest.mark.parametrize("backend", ["sentence-transformers", "transformers"])
def test_unpadded_batches_run_without_a_mask(tiny_model, backend):
    import torch

    plan = _engine.prepare(encoder_config(tiny_model, backend=backend))
    transfers = _engine._Transfers("cpu", asynchronous=False)
    same_length = ["uno dos", "tres cuatro", "cinco seis"]
    assert len(set(_engine.tokenize(plan, same_length).lengths.tolist())) == 1
    (batch,) = _engine._prepare_chunk(plan, same_length, (0, 3), 8, transfers).batches
    assert batch[2] is None
    (batch,) = _engine._prepare_chunk(plan, same_length + ["siete"], (0, 4), 8, transfers).batches
    assert batch[2] is not None
    input_ids = torch.from_numpy(_engine.tokenize(plan, same_length).padded(np.arange(3), 0)[0])
    with torch.inference_mode():
        without = plan.model.forward(input_ids, None)
        with_ones = plan.model.forward(input_ids, torch.ones_like(input_ids))
    torch.testing.assert_close(without, with_ones, rtol=0, atol=1e-6)


def test_matches_unbatched_sentence_transformers(config, tiny_model):
    from sentence_transformers import SentenceTransformer

    theirs = SentenceTransformer(tiny_model, device="cpu")
    ours = _engine.encode(config, TEXTS, batch_size=3)
    for text, vector in zip(TEXTS, ours):
        np.testing.assert_allclose(vector, theirs.encode([text])[0], atol=1e-5, rtol=0)


def test_bit_identical_under_permutation(config):
    rng = np.random.default_rng(0)
    permutation = rng.permutation(len(TEXTS))
    first = _engine.encode(config, TEXTS, batch_size=4)
    second = _engine.encode(config, [TEXTS[i] for i in permutation], batch_size=4)
    np.testing.assert_array_equal(second, first[permutation])


def test_long_texts_are_truncated_to_max_seq_length(tiny_model):
    config = encoder_config(tiny_model, max_seq_length=16)
    plan = _engine.prepare(config)
    base = " ".join(["palabra"] * 40)
    texts = [base + " final uno", base + " otra cosa distinta", "corto"]
    tokens = _engine.tokenize(plan, texts)
    assert tokens.lengths.tolist()[:2] == [16, 16]
    assert tokens.lengths[2] < 16
    with pytest.warns(TruncationWarning):
        vectors = _engine.encode(config, texts)
    # Both long texts differ only after the 16th token: same vector.
    np.testing.assert_array_equal(vectors[0], vectors[1])
    assert not np.allclose(vectors[0], vectors[2])


@pytest.mark.parametrize("kind", ["plain", "static",
                                  pytest.param("layernorm", marks=pytest.mark.slow)])
def test_truncation_is_reported_once_per_call_with_count_and_longest(model_of_kind, kind):
    long = " ".join(["palabra"] * 50)  # 52 tokens with [CLS] and [SEP]
    texts = [long, long + " más", "corto", "una frase de seis"]
    vectorizer = EmbeddingVectorizer(model_of_kind(kind), device="cpu", batch_size=2)
    if kind != "static":
        vectorizer.set_params(max_seq_length=6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vectorizer.fit_transform(texts)
    cuts = [w for w in caught if issubclass(w.category, TruncationWarning)]
    messages = [str(w.message) for w in cuts]
    assert all(w.filename == __file__ for w in cuts)  # it points at the user's call
    if kind == "static":  # a static model reads whole texts: nothing is cut
        assert messages == []
        return
    assert len(messages) == 1, messages
    assert "2 of 4 texts are longer than the 6 tokens" in messages[0]
    assert "the longest has 53 tokens" in messages[0] and "up to 128" in messages[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncationWarning)
        vectorizer.set_params(warn_on_truncation=False).fit_transform(texts + ["otra"])


def test_a_text_that_fills_max_seq_length_exactly_is_not_reported(tiny_model):
    plan = _engine.prepare(encoder_config(tiny_model, max_seq_length=6))
    text = "una frase de seis"
    assert len(_engine.token_ids(plan, [text], truncate=False)[0]) == 6
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncationWarning)
        _engine.encode(encoder_config(plan.model.name, max_seq_length=6),
                       [text])


def test_empty_input_gives_empty_array(config):
    out = _engine.encode(config, [])
    assert out.shape == (0, _engine.dimension(config)) and out.dtype == np.float32


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_lower_precisions_close_to_float32(tiny_model, monkeypatch, precision):
    monkeypatch.setattr(_devices, "cpu_has_fast_bfloat16", lambda: True)
    reference = _engine.encode(encoder_config(tiny_model), TEXTS)
    vectors = _engine.encode(
        encoder_config(tiny_model, precision=precision), TEXTS
    )
    assert vectors.dtype == np.float32
    assert not np.array_equal(vectors, reference)  # really ran in another precision
    assert pairwise_cosine(vectors, reference).min() > 0.99


def test_bfloat16_on_cpu_without_support_warns(tiny_model_copy, monkeypatch):
    monkeypatch.setattr(_devices, "cpu_has_fast_bfloat16", lambda: False)
    config = encoder_config(str(tiny_model_copy), precision="bfloat16")
    with pytest.warns(RuntimeWarning, match="AVX512-BF16 or AMX"):
        _registry.load_model(config)


def test_resolve_device_errors(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="no CUDA device"):
        resolve_device("cuda:1")
    assert resolve_device("auto") in ("cpu", "mps")
    assert resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == "cuda:0"
    with pytest.raises(ValueError, match=r"'cuda:1' was asked for, but torch sees 1 CUDA"):
        resolve_device("cuda:1")


def test_prefetch_hands_producer_errors_to_the_consumer():
    def prepare(item):
        if item == 1:
            raise RuntimeError("tokenizer broke")
        return item

    seen = []
    with pytest.raises(RuntimeError, match="tokenizer broke"):
        for item in _engine._prefetched(prepare, range(3), depth=2):
            seen.append(item)
    assert seen == [0]


def test_prefetch_stops_its_thread_when_the_consumer_leaves_early():
    before = threading.active_count()
    items = _engine._prefetched(lambda i: i, iter(range(1000)), depth=2)
    assert [next(items), next(items)] == [0, 1]
    items.close()
    assert threading.active_count() == before
    assert list(_engine._prefetched(lambda i: i, iter(range(5)), depth=0)) == list(range(5))


@pytest.mark.parametrize("backend", ["sentence-transformers", "transformers"])
def test_half_precision_checkpoint_runs_in_the_precision_asked_for(tiny_model, tmp_path, backend):
    import torch
    from sentence_transformers import SentenceTransformer

    SentenceTransformer(tiny_model, device="cpu").half().save(str(tmp_path / "half"))
    model = _registry.load_model(
        encoder_config(str(tmp_path / "half"), backend=backend)
    )
    network = model.st if model.st is not None else model.network
    assert {p.dtype for p in network.parameters()} == {torch.float32}


def test_tokenising_leaves_the_callers_strings_as_they_were(plan):
    """The Rust tokenizer would attach a UTF-8 copy to each non-ASCII str it reads."""
    import sys

    texts = [f"{i} ¿Dónde está el niño? " * 50 for i in range(20)]
    sizes = [sys.getsizeof(t) for t in texts]
    tokens = _engine.tokenize(plan, texts)
    assert [sys.getsizeof(t) for t in texts] == sizes
    assert tokens.lengths.tolist() == [len(_engine.token_ids(plan, [t])[0]) for t in texts]
    # What the guard prevents: tokenizers 0.23 grows the strings it reads (0.22.1 does not).
    plan.model._rust.encode_batch(texts)
    grown = sum(sys.getsizeof(t) for t in texts) > sum(sizes) + 20 * 1000
    assert grown == (_version("tokenizers") >= (0, 23))


def _version(package: str) -> tuple:
    from importlib.metadata import version

    return tuple(int(part) for part in version(package).split(".")[:2])


@pytest.mark.parametrize("model", ["./no-such-model", "models/v2/no-such-model", "../nope"])
def test_a_mistyped_model_path_is_named_before_the_hub_is_asked(model, monkeypatch, tmp_path):
    import huggingface_hub

    def no_hub(*args, **kwargs):
        raise AssertionError("asked the hub about a local path")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_hub)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_hub)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=f"No model folder at '{re.escape(model)}'"):
        EmbeddingVectorizer(model, device="cpu").fit_transform(["hola"])


def test_a_model_file_instead_of_a_folder_is_named(tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="is a file; a model is the folder"):
        EmbeddingVectorizer(str(weights), device="cpu").fit_transform(["hola"])


def test_fine_tuning_a_missing_folder_fails_before_training(tmp_path):
    from skembed._finetune import train_encoder

    config = encoder_config(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="No model folder at"):
        train_encoder((config, config), ["a", "b"], ["c", "d"], [0.0, 1.0], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_max_seq_length_past_the_positions_is_said_with_the_cut(tiny_model):
    long = " ".join(["palabra"] * 300)  # 302 tokens; the tiny model has 128 positions
    with pytest.warns(TruncationWarning, match=r"longer than the 128 tokens.*longest has 302 "
                                               r"tokens.*max_seq_length=1000 is past them"):
        _engine.encode(encoder_config(tiny_model, max_seq_length=1000),
                       [long])


def test_the_truncation_check_reads_long_texts_chunk_by_chunk(tiny_model, monkeypatch):
    monkeypatch.setattr(_engine, "TOKENIZE_CHUNK", 2)
    seen = []
    real = _engine.token_ids

    def spy(plan, texts, truncate=True):
        if not truncate:
            seen.append(len(texts))
        return real(plan, texts, truncate=truncate)

    monkeypatch.setattr(_engine, "token_ids", spy)
    texts = [" ".join(["palabra"] * (20 + i)) for i in range(5)]
    with pytest.warns(TruncationWarning, match="5 of 5 texts"):
        _engine.encode(encoder_config(tiny_model, max_seq_length=8), texts)
    assert seen == [2, 2, 1]


@pytest.mark.parametrize("backend", ["sentence-transformers", "openvino"])
@pytest.mark.parametrize("kind", ["plain", "normalized", "matryoshka"])
def test_a_call_of_one_batch_gives_the_bytes_of_the_general_path(model_of_kind, monkeypatch,
                                                                  kind, backend):
    """The short path of small calls (what a service answering one text pays) builds the
    very batch the general path builds: same rows, same padding, same bytes."""
    from skembed import _engine

    texts = ["hola", "una frase bastante más larga que las otras dos", "adiós, amigo", "",
             "hola"[::-1]]
    config = encoder_config(model_of_kind(kind), backend=backend)
    short = _engine.encode(config, texts, batch_size=8)
    monkeypatch.setattr(_engine, "ONE_BATCH_PATH", False)
    general = _engine.encode(config, texts, batch_size=8)
    assert short.tobytes() == general.tobytes()
    single = [_engine.encode(config, [t], batch_size=8) for t in texts]
    monkeypatch.setattr(_engine, "ONE_BATCH_PATH", True)
    assert all(_engine.encode(config, [t], batch_size=8).tobytes() == s.tobytes()
               for t, s in zip(texts, single))
