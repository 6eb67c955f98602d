"""The model options: what decides how a model is loaded and run, as one frozen value.

:class:`EncoderConfig` is what the engine, the model registry, fine-tuning
and the cache read of an :class:`~skembed.EmbeddingVectorizer`: its fields
are the vectorizer's parameters of the same names (the vectorizer is the one
place their defaults, constraints and documentation are written). Each field
says, in its metadata, what it is to the layers below:

``loads``
    It is a keyword argument of the loaders (``SentenceTransformer``,
    ``from_pretrained`` and the module loaders), so it is handed to them and
    is part of the model registry's key: two values are two loaded copies.
``cache_key``
    It changes the vectors, so it is part of the cache's model key. Default:
    True, so that a new option can never make two settings share vectors.
    ``model``, ``revision`` and ``device`` are not: the key holds the
    identity of the model's files (or hub commit) and the device's type.
``per_column``
    It may differ between the text columns a regressor compares (how texts
    are fed to the model, never the model or its space).
``fitted``
    It is no parameter: :meth:`~skembed.EmbeddingVectorizer.fit` sets it
    (the int8 model calibrated on the fit texts), so it has a default.

This module imports nothing of skembed: every layer may read it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace

DEFAULT_MODEL = "mrm8488/distiluse-base-multilingual-cased-v2-finetuned-stsb_multi_mt-es"
BACKENDS = ("sentence-transformers", "transformers", "openvino", "auto")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("float32", "bfloat16", "float16", "int8")
#: What the vectorizer does with a missing cell: raise, embed "", or give zeros.
MISSING_POLICIES = ("error", "empty", "zero")
#: What the vectorizer does with a text longer than the model reads: embed its first
#: window, or all of its windows pooled into one vector.
LONG_TEXT_POLICIES = ("truncate", "chunk")


def _option(*, loads: bool = False, cache_key: bool = True, per_column: bool = False,
            fitted: bool = False):
    metadata = {"loads": loads, "cache_key": cache_key, "per_column": per_column,
                "fitted": fitted}
    return field(default=None, metadata=metadata) if fitted else field(metadata=metadata)


@dataclass(frozen=True, kw_only=True)
class EncoderConfig:
    """Everything that decides how a model is loaded and run (the model options).

    Build it from an estimator's parameters with :meth:`from_params`; every
    field is required, so an option the estimator lacks fails loudly.
    """

    model: str = _option(cache_key=False)
    backend: str = _option()
    device: str = _option(cache_key=False)
    precision: str = _option()
    max_seq_length: int | None = _option(per_column=True)
    prompt: str | None = _option(per_column=True)
    prompt_name: str | None = _option(per_column=True)
    truncate_dim: int | None = _option()
    long_texts: str = _option()
    window_overlap: int = _option()
    max_windows: int | None = _option()
    revision: str | None = _option(loads=True, cache_key=False)
    trust_remote_code: bool = _option(loads=True)
    #: ``precision="int8"``: the OpenVINO model quantised at fit (a
    #: :class:`~skembed._tuned.QuantizedModel`, path-like); None before fit.
    int8_model: object = _option(fitted=True)

    @classmethod
    def from_params(cls, params: dict) -> EncoderConfig:
        """The config of a dict holding (at least) every model option.

        >>> params = dict.fromkeys(model_option_names())
        >>> EncoderConfig.from_params({**params, "model": "m", "batch_size": 8}).model
        'm'
        """
        values = {name: params[name] for name in model_option_names()}
        values["model"] = os.fspath(values["model"])
        return cls(**values)


def training_config(config: EncoderConfig) -> EncoderConfig:
    """The config torch fine-tunes ``config``'s model with: OpenVINO only runs what torch
    trained, so ``backend="openvino"`` and ``"auto"`` train with sentence-transformers, and
    ``precision="int8"`` (made after training) trains in float32."""
    if config.backend not in ("openvino", "auto"):
        return config
    precision = "float32" if config.precision == "int8" else config.precision
    return replace(config, backend="sentence-transformers", precision=precision,
                   int8_model=None)


def model_option_names() -> tuple:
    """The names of the model options, in the order of the fields (no fitted one)."""
    return tuple(f.name for f in fields(EncoderConfig) if not f.metadata["fitted"])


def _names_where(flag: str) -> tuple:
    return tuple(f.name for f in fields(EncoderConfig) if f.metadata[flag])


def load_arguments(config: EncoderConfig) -> dict:
    """The keyword arguments every loader of ``config``'s model takes (the ``loads`` options).

    >>> config = EncoderConfig.from_params({**dict.fromkeys(model_option_names()),
    ...                                     "model": "m", "trust_remote_code": False})
    >>> load_arguments(config)
    {'revision': None, 'trust_remote_code': False}
    """
    return {name: getattr(config, name) for name in _names_where("loads")}


def cache_key_options(config: EncoderConfig) -> dict:
    """The options of ``config`` that belong in the cache's model key (a fitted model, as
    its fingerprint: its folder's path differs between processes)."""
    return {name: getattr(getattr(config, name), "fingerprint", getattr(config, name))
            for name in _names_where("cache_key")}


def per_column_options() -> tuple:
    """The options that may differ between the columns a regressor compares."""
    return _names_where("per_column")
