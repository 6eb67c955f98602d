"""long_texts="chunk": a long text is embedded whole, window by window, exactly as defined.

The reference is built here from sentence-transformers' own pieces, independently of
skembed's code: each window is the special tokens (as the tokenizer's special-tokens mask
marks them) around the prompt's tokens and a slice of the text's, the model's own
modules embed it (all but the final Normalize), the windows' vectors are averaged with
their token counts as weights, and then the final Normalize and truncate_dim apply.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import kind_cases

from skembed import EmbeddingVectorizer, TruncationWarning

LONG = " ".join(f"palabra{i % 17} y" for i in range(70))  # ~200 tokens
TEXTS = [
    "Nerea va a comprar un cuadro usando bitcoins",
    LONG,
    "hola ",
    " ".join(["Érase una vez un cuento muy largo"] * 12),
    "",
    LONG[:300] + " final",
]
MAX_LENGTH, OVERLAP = 16, 4

#: Vectorizer settings (beyond the window's) and the reference's: prompt, truncate_dim,
#: normalisation.
SETTINGS = {
    "defaults": {},
    "prompt": {"prompt": "pregunta: "},
    "truncate_dim": {"truncate_dim": 8},
    "normalize": {"normalize": True},
}
#: Kinds whose vectors come from SentenceTransformer.encode: chunking refuses them.
REFUSED = {"static": "has no window", "layernorm": "cannot run model",
           "instructor": "cannot run model"}
#: Kinds the transformers backend refuses anyway.
TRANSFORMERS_REFUSES = {"static", "cls", "layernorm", "instructor"}


def windowed_reference(st, texts, *, prompt=None, truncate_dim=None, normalize=False,
                       max_length=MAX_LENGTH, overlap=OVERLAP):
    """Each text's vector by the definition of long_texts="chunk", from the model's modules."""
    import torch
    from sentence_transformers.sentence_transformer.modules import Normalize

    if truncate_dim is None:
        truncate_dim = st.truncate_dim  # a Matryoshka model's own
    if prompt is None and st.default_prompt_name:
        prompt = st.prompts[st.default_prompt_name]
    prompt = prompt or ""
    tokenizer = st[0].tokenizer
    modules = list(st)
    final = [m for m in modules if isinstance(m, Normalize)]
    body = modules[: len(modules) - len(final)]
    # The special tokens around a text, as the tokenizer's special-tokens mask marks them.
    probe = tokenizer("x", return_special_tokens_mask=True)
    mask, probe_ids = probe["special_tokens_mask"], probe["input_ids"]
    first, last = mask.index(0), len(mask) - mask[::-1].index(0)
    prefix, suffix = probe_ids[:first], probe_ids[last:]
    specials = len(prefix) + len(suffix)
    alone = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
    vectors = []
    for text in texts:
        ids = tokenizer(prompt + text, add_special_tokens=False)["input_ids"]
        # The prompt's tokens: those the text starts with that the prompt alone gives.
        k = next((i for i, (a, b) in enumerate(zip(alone, ids)) if a != b), min(len(alone),
                                                                               len(ids)))
        prompt_ids, ids = ids[:k], ids[k:]
        size = max_length - specials - len(prompt_ids)
        # Windows start every size - overlap tokens, until one reaches the end.
        starts = range(0, max(1, len(ids) - overlap), size - overlap)
        windows = [prefix + prompt_ids + ids[s:s + size] + suffix for s in starts]
        pooled, total = 0, 0
        for window in windows:
            features = {"input_ids": torch.tensor([window]),
                        "attention_mask": torch.ones(1, len(window), dtype=torch.long)}
            with torch.inference_mode():
                for module in body:
                    features = module(features)
            pooled = pooled + len(window) * features["sentence_embedding"][0].double()
            total += len(window)
        vector = (pooled / total).float()
        for module in final:
            vector = module({"sentence_embedding": vector[None]})["sentence_embedding"][0]
        vector = vector.numpy()
        if truncate_dim is not None:
            vector = vector[:truncate_dim]
        if normalize:
            vector = vector / np.linalg.norm(vector)
        vectors.append(vector)
    return np.stack(vectors)


@pytest.fixture(scope="module")
def loaded(model_of_kind):
    from sentence_transformers import SentenceTransformer

    models = {}

    def get(kind):
        if kind not in models:
            models[kind] = SentenceTransformer(model_of_kind(kind), device="cpu")
        return models[kind]

    return get


CASES = kind_cases(SETTINGS)


@pytest.mark.parametrize("kind, backend, setting", CASES)
def test_chunked_vectors_equal_the_window_by_window_reference(model_of_kind, loaded, kind,
                                                              backend, setting):
    ours = SETTINGS[setting]
    vectorizer = EmbeddingVectorizer(
        model_of_kind(kind), backend=backend, device="cpu", batch_size=5, long_texts="chunk",
        max_seq_length=MAX_LENGTH, window_overlap=OVERLAP, **ours,
    ) if kind != "static" else EmbeddingVectorizer(model_of_kind(kind), backend=backend,
                                                   device="cpu", long_texts="chunk", **ours)
    if backend == "transformers" and kind in TRANSFORMERS_REFUSES:
        with pytest.raises(ValueError, match="backend='transformers'|has no window"):
            vectorizer.fit(TEXTS)
        return
    if backend == "openvino" and (kind in ("static", "layernorm") or (
            kind == "instructor" and ours.get("prompt") != "")):
        with pytest.raises(ValueError, match="backend='openvino'"):
            vectorizer.fit(TEXTS)
        return
    if kind in REFUSED and not (kind == "instructor" and ours.get("prompt") == ""):
        with pytest.raises(ValueError, match=REFUSED[kind]):
            vectorizer.fit(TEXTS)
        return
    X = vectorizer.fit_transform(TEXTS)
    expected = windowed_reference(loaded(kind), TEXTS, **ours)
    assert X.shape == expected.shape
    np.testing.assert_allclose(X, expected, rtol=0, atol=1e-5)


def test_the_reference_differs_from_the_first_window(loaded):
    """Guards the comparison: chunking a long text changes its vector, a short one's not."""
    st = loaded("plain")
    st.max_seq_length = MAX_LENGTH
    first_window = st.encode(TEXTS)
    chunked = windowed_reference(st, TEXTS)
    assert np.abs(chunked[1] - first_window[1]).max() > 1e-3
    np.testing.assert_allclose(chunked[0], first_window[0], atol=1e-5)


@pytest.mark.parametrize("backend", ["sentence-transformers", "transformers"])
def test_texts_that_fit_one_window_are_bit_identical_to_truncate(model_of_kind, backend):
    short = [t for t in TEXTS if len(t) < 50]
    kwargs = dict(backend=backend, device="cpu", max_seq_length=MAX_LENGTH,
                  window_overlap=OVERLAP)
    truncated = EmbeddingVectorizer(model_of_kind("normalized"), **kwargs).fit_transform(short)
    chunked = EmbeddingVectorizer(model_of_kind("normalized"), long_texts="chunk",
                                  **kwargs).fit_transform(short)
    assert truncated.tobytes() == chunked.tobytes()


def test_windows_of_all_texts_are_batched_together_by_length(tiny_model, monkeypatch):
    from skembed import _loaded_model

    shapes = []
    forward = _loaded_model.LoadedModel.forward

    def spy(self, input_ids, attention_mask, **kwargs):
        shapes.append(tuple(input_ids.shape))
        return forward(self, input_ids, attention_mask, **kwargs)

    monkeypatch.setattr(_loaded_model.LoadedModel, "forward", spy)
    texts = [LONG, LONG + " otra", LONG + " y otra", "corto"]
    vectorizer = EmbeddingVectorizer(tiny_model, device="cpu", max_seq_length=MAX_LENGTH,
                                     long_texts="chunk", window_overlap=OVERLAP,
                                     batch_size=16).fit(texts)
    shapes.clear()
    vectorizer.transform(texts)
    rows = sum(n for n, _ in shapes)
    assert len(shapes) == -(-rows // 16)  # full batches of windows of several texts
    assert all(width == MAX_LENGTH for _, width in shapes[1:])  # no short row padded up


def test_the_progress_bar_counts_texts(tiny_model, monkeypatch):
    import tqdm.auto

    bars = []

    class Recorded(tqdm.auto.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.counted = 0
            bars.append(self)

        def update(self, n=1):
            self.counted += n
            return super().update(n)

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorded)
    texts = [LONG, LONG + " otra", "corto"]
    EmbeddingVectorizer(tiny_model, device="cpu", max_seq_length=MAX_LENGTH, long_texts="chunk",
                        window_overlap=OVERLAP, show_progress_bar=True).fit_transform(texts)
    (bar,) = bars
    assert bar.total == bar.counted == 3  # texts, not windows


def test_a_cap_on_windows_is_warned_and_keeps_the_first_ones(tiny_model, loaded):
    capped = EmbeddingVectorizer(tiny_model, device="cpu", max_seq_length=MAX_LENGTH,
                                 long_texts="chunk", window_overlap=OVERLAP, max_windows=2)
    with pytest.warns(TruncationWarning, match=r"1 of 2 texts need more than max_windows=2 "
                                               r"windows of 16 tokens.*first 2 windows"):
        X = capped.fit_transform([LONG, "corto"])
    st = loaded("plain")
    size = MAX_LENGTH - 2
    ids = st[0].tokenizer(LONG, add_special_tokens=False)["input_ids"]
    first_two = st[0].tokenizer.decode(ids[: 2 * size - OVERLAP])
    # The first two windows of LONG are the windows of the text they hold.
    expected = windowed_reference(st, [first_two])[0]
    np.testing.assert_allclose(X[0], expected, atol=1e-5)


def test_the_truncation_warning_names_the_option(tiny_model):
    with pytest.warns(TruncationWarning, match="long_texts='chunk'"):
        EmbeddingVectorizer(tiny_model, device="cpu", max_seq_length=MAX_LENGTH
                            ).fit_transform([LONG])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncationWarning)  # chunked: nothing is cut
        EmbeddingVectorizer(tiny_model, device="cpu", max_seq_length=MAX_LENGTH,
                            long_texts="chunk", window_overlap=OVERLAP).fit_transform([LONG])


def test_an_overlap_as_long_as_a_window_is_refused(tiny_model):
    with pytest.raises(ValueError, match="holds 14 text tokens.*window_overlap=14"):
        EmbeddingVectorizer(tiny_model, device="cpu", max_seq_length=MAX_LENGTH,
                            long_texts="chunk", window_overlap=14).fit(["a"])


def test_the_setting_is_in_the_cache_key(tiny_model, tmp_path):
    from skembed import EmbeddingCache

    cache = EmbeddingCache(tmp_path / "c.sqlite")
    keys = set()
    for settings in ({}, {"long_texts": "chunk"}, {"long_texts": "chunk", "window_overlap": 2},
                     {"long_texts": "chunk", "max_windows": 3}):
        vectorizer = EmbeddingVectorizer(tiny_model, device="cpu", cache=cache, **settings)
        keys.add(vectorizer.fit(["a"])._model_key(cache).digest)
    assert len(keys) == 4


@pytest.mark.slow
def test_a_million_character_text_in_bounded_memory_and_exactly(tiny_model, loaded):
    code = f"""
import resource, sys
import numpy as np
from skembed import EmbeddingVectorizer
text = ("Un texto muy largo sobre muchas cosas distintas. " * 20500)[:1_000_000]
vectorizer = EmbeddingVectorizer({tiny_model!r}, device="cpu", long_texts="chunk").fit([text])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
X = vectorizer.transform([text])
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
np.save(sys.argv[1], X)
print(grown // 1024)
"""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/x.npy"
        result = subprocess.run([sys.executable, "-c", code, path], capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        grown_mb = int(result.stdout.strip().splitlines()[-1])
        X = np.load(path)
    # 1e6 characters are ~230,000 tokens, ~2,000 windows of 128: an all-windows tensor of
    # hidden states alone would be 2,000 x 128 x 32 float32 (33 MB) for the tiny model, and
    # the tokenizer's own work ~40 MB; the run stays well below a few hundred MB.
    assert grown_mb < 300, grown_mb
    st = loaded("plain")
    text = ("Un texto muy largo sobre muchas cosas distintas. " * 20500)[:1_000_000]
    overlap = EmbeddingVectorizer().window_overlap  # the default, which the run above used
    expected = windowed_reference(st, [text], max_length=128, overlap=overlap)
    np.testing.assert_allclose(X, expected, atol=1e-5)
