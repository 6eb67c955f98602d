"""Load sentence-transformers models once per process and encode text with them.

This module knows nothing of scikit-learn. :class:`EncoderConfig` says which
model and how to run it; :func:`get_encoder` returns the process-wide
:class:`Encoder` for a config, which loads its weights on first use only.

Encoding sorts the distinct texts by (token length, text) before batching, so
batches, and therefore vectors, do not depend on the order of the input.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_MODEL = "mrm8488/distiluse-base-multilingual-cased-v2-finetuned-stsb_multi_mt-es"
BACKENDS = ("sentence-transformers", "transformers")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class EncoderConfig:
    """Everything that decides how a model is loaded and run."""

    model: str = DEFAULT_MODEL
    backend: str = "sentence-transformers"
    device: str = "auto"
    precision: str = "float32"
    max_seq_length: int | None = None
    revision: str | None = None
    trust_remote_code: bool = False


def resolve_device(device: str) -> str:
    """Map ``"auto"`` to the best available torch device, and check the others.

    >>> resolve_device("cpu")
    'cpu'
    """
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for, but torch sees no CUDA device.")
    if device == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise ValueError("device='mps' was asked for, but torch sees no MPS device.")
    return device


def _torch_dtype(precision: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
        precision
    ]


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _model_file(config: EncoderConfig, name: str) -> Path | None:
    """Path of a file of the model, local or from the hub cache; None if absent."""
    local = Path(os.path.expanduser(config.model))
    if local.is_dir():
        path = local / name
        return path if path.is_file() else None
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(config.model, name, revision=config.revision))
    except Exception:  # noqa: BLE001 - a missing optional file is not an error
        return None


class _LoadedModel:
    """The loaded network and what encoding needs to know about it."""

    def __init__(self, config: EncoderConfig, device: str):
        import torch

        self.device = device
        self.dtype = _torch_dtype(config.precision)
        if config.backend == "sentence-transformers":
            from sentence_transformers import SentenceTransformer

            st = SentenceTransformer(
                config.model,
                device=device,
                revision=config.revision,
                trust_remote_code=config.trust_remote_code,
            )
            if config.max_seq_length is not None:
                st.max_seq_length = config.max_seq_length
            first = st[0]
            self.tokenizer = st.tokenizer
            self.max_length = st.max_seq_length or self.tokenizer.model_max_length
            self.do_lower_case = bool(getattr(first, "do_lower_case", False))
            get_dimension = getattr(st, "get_embedding_dimension", None) or getattr(
                st, "get_sentence_embedding_dimension"
            )
            self.dimension = int(get_dimension())
            self.network = st
            self._forward = self._forward_sentence_transformers
        else:
            from transformers import AutoModel, AutoTokenizer

            subfolder = ""
            modules = _model_file(config, "modules.json")
            if modules is not None:
                for module in _read_json(modules) or []:
                    if module.get("type", "").endswith("Transformer"):
                        subfolder = module.get("path", "")
            kwargs = dict(revision=config.revision, trust_remote_code=config.trust_remote_code)
            if subfolder:
                kwargs["subfolder"] = subfolder
            self.tokenizer = AutoTokenizer.from_pretrained(config.model, **kwargs)
            model = AutoModel.from_pretrained(config.model, **kwargs)
            st_config = _model_file(config, "sentence_bert_config.json")
            st_config = (_read_json(st_config) if st_config else None) or {}
            limits = [
                self.tokenizer.model_max_length,
                getattr(model.config, "max_position_embeddings", None),
                st_config.get("max_seq_length"),
                config.max_seq_length,
            ]
            self.max_length = min(v for v in limits if isinstance(v, int) and v > 0)
            self.do_lower_case = bool(st_config.get("do_lower_case", False))
            self.dimension = int(model.config.hidden_size)
            self.network = model.to(device)
            self._forward = self._forward_transformers
        if config.precision != "float32":
            self.network.to(self.dtype)
        self.network.eval()
        self._no_grad = torch.inference_mode

    def _forward_sentence_transformers(self, input_ids, attention_mask):
        features = {"input_ids": input_ids, "attention_mask": attention_mask}
        return self.network(features)["sentence_embedding"]

    def _forward_transformers(self, input_ids, attention_mask):
        hidden = self.network(input_ids=input_ids, attention_mask=attention_mask)[0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        summed = (hidden * mask).sum(dim=1)
        return summed / mask.sum(dim=1).clamp(min=1e-9)

    def tokenize(self, texts: list) -> list:
        texts = [t.strip() for t in texts]
        if self.do_lower_case:
            texts = [t.lower() for t in texts]
        encoded = self.tokenizer(
            texts,
            truncation=True,
            max_length=self.max_length,
            padding=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        return encoded["input_ids"]

    def embed_batch(self, token_ids: list) -> np.ndarray:
        import torch

        width = max(len(ids) for ids in token_ids)
        pad = self.tokenizer.pad_token_id or 0
        input_ids = np.full((len(token_ids), width), pad, dtype=np.int64)
        attention = np.zeros((len(token_ids), width), dtype=np.int64)
        for row, ids in enumerate(token_ids):
            input_ids[row, : len(ids)] = ids
            attention[row, : len(ids)] = 1
        with self._no_grad():
            out = self._forward(
                torch.from_numpy(input_ids).to(self.device),
                torch.from_numpy(attention).to(self.device),
            )
        return out.float().cpu().numpy()


class Encoder:
    """Encode texts with one model; the weights load on first use.

    Parameters
    ----------
    config : EncoderConfig
        Which model, backend, device and precision.
    """

    def __init__(self, config: EncoderConfig):
        self.config = config
        self._lock = threading.Lock()
        self._loaded: _LoadedModel | None = None

    @property
    def loaded(self) -> _LoadedModel:
        global MODEL_LOADS
        with self._lock:
            if self._loaded is None:
                self._loaded = _LoadedModel(self.config, resolve_device(self.config.device))
                MODEL_LOADS += 1
            return self._loaded

    @property
    def is_loaded(self) -> bool:
        return self._loaded is not None

    @property
    def dimension(self) -> int:
        return self.loaded.dimension

    def encode(
        self,
        texts: list,
        *,
        batch_size: int = 32,
        normalize: bool = False,
        show_progress_bar: bool = False,
    ) -> np.ndarray:
        """Embed distinct ``texts`` into a float32 array, row ``i`` for ``texts[i]``.

        Texts are sorted by (token length, text) before batching, so a text's
        vector does not depend on the order of the others.
        """
        from tqdm.auto import tqdm

        model = self.loaded
        out = np.empty((len(texts), model.dimension), dtype=np.float32)
        if not texts:
            return out
        token_ids = model.tokenize(list(texts))
        order = sorted(range(len(texts)), key=lambda i: (len(token_ids[i]), texts[i]))
        starts = range(0, len(order), batch_size)
        for start in tqdm(
            starts, disable=not show_progress_bar, desc="Embedding", unit="batch", leave=False
        ):
            rows = order[start : start + batch_size]
            out[rows] = model.embed_batch([token_ids[i] for i in rows])
        if normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            np.divide(out, norms, out=out, where=norms > 0)
        return out


_ENCODERS: dict = {}
_ENCODERS_LOCK = threading.Lock()

#: How many times this process has loaded a model's weights (read by tests and
#: tools, e.g. on Dask workers, to check that a model loads once per process).
MODEL_LOADS = 0


def get_encoder(config: EncoderConfig) -> Encoder:
    """Return the process-wide encoder of ``config`` (created, not loaded, on first call)."""
    with _ENCODERS_LOCK:
        encoder = _ENCODERS.get(config)
        if encoder is None:
            encoder = _ENCODERS[config] = Encoder(config)
        return encoder
