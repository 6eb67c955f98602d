"""EmbeddingVectorizer: text columns to sentence-embedding features.

The estimator orchestrates: input validation (:mod:`skembed._input`), the
cache (what is missing is encoded, then stored) and the engine. Its
parameters are written here, scikit-learn's way: the ``__init__`` argument,
the ``_parameter_constraints`` entry and the docstring entry of each one;
the model options among them are the fields of
:class:`~skembed._config.EncoderConfig`, which is what the layers below read.
"""

from __future__ import annotations

import os
import warnings
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.preprocessing import normalize as normalize_rows
from sklearn.utils.validation import check_is_fitted

from . import _engine
from ._cache import EmbeddingCache, resolve_cache
from ._config import BACKENDS, DEFAULT_MODEL, DEVICES, MISSING_POLICIES, PRECISIONS, EncoderConfig
from ._devices import device_type
from ._input import unique_texts, validate_text_columns
from ._sklearn import (
    Interval,
    MatchesPattern,
    StrOptions,
    _check_feature_names_in,
    _fit_context,
)

#: Encode with a progress bar from this many texts on, when ``show_progress_bar="auto"``.
AUTO_PROGRESS_MIN_TEXTS = 2048


class EmbeddingVectorizer(TransformerMixin, BaseEstimator):
    """Embed one or more text columns with a sentence-transformers model.

    Each text becomes the model's sentence embedding, exactly as
    ``SentenceTransformer.encode`` gives it with the same settings (mean-pooled
    token vectors for the default model, 768 dimensions). With ``k`` text
    columns the output has ``k * embedding_dim_`` features, column after
    column. Each distinct string is embedded once per call, and its vector
    does not depend on the order of the rows.

    The model is loaded on first use, once per process, and is never pickled:
    a fitted vectorizer pickles to a few kilobytes.

    Parameters
    ----------
    model : str or path-like, default="mrm8488/distiluse-base-multilingual-cased-v2-finetuned-stsb_multi_mt-es"
        A sentence-transformers model name on the Hugging Face Hub, or the path
        of a local folder saved by ``SentenceTransformer.save``.
    backend : {"sentence-transformers", "transformers"}, default="sentence-transformers"
        Which library runs the model. ``"sentence-transformers"`` runs the
        model's own modules, whatever they are. ``"transformers"`` runs ``AutoModel``, mean-pools the token
        vectors with the attention mask, then the folder's Dense and Normalize
        modules; it refuses, with a ValueError, a model with any other module.
    device : {"auto", "cpu", "cuda", "mps"} or "cuda:<index>", default="auto"
        Where the model runs: auto, cpu, cuda, cuda:<index> or mps (``"auto"``
        picks CUDA, then MPS, then the CPU).
    precision : {"float32", "bfloat16", "float16"}, default="float32"
        Floating-point type of the model's computation. The output is always
        float32.
    max_seq_length : int or None, default=None
        Truncate texts to this many tokens (never past the model's position
        embeddings); None keeps the model's limit.
    prompt : str or None, default=None
        A literal prefix put before every text, as ``encode(prompt=...)``;
        ``""`` means no prompt, even if the model has a default one.
    prompt_name : str or None, default=None
        The model's prompt of that name, as ``encode(prompt_name=...)``: a key
        of its ``prompts``, such as ``"query"``. With neither, the model's
        own ``default_prompt_name`` applies, as in ``encode``.
    truncate_dim : int or None, default=None
        Keep the first ``truncate_dim`` dimensions of each vector (Matryoshka
        models), before any normalisation; None keeps the model's own setting.
    revision : str or None, default=None
        Git revision (branch, tag or commit) of a hub model.
    trust_remote_code : bool, default=False
        Allow a hub model to run its own Python code.
    batch_size : int, default=32
        Texts per forward pass.
    normalize : bool, default=False
        Scale each vector to unit Euclidean norm.
    handle_missing : {"error", "empty", "zero"}, default="error"
        What to do with a missing cell (None, NaN, pd.NA): raise a ValueError
        naming its column and row, embed it as the empty string, or give it
        a vector of zeros.
    show_progress_bar : bool or "auto", default="auto"
        Show a progress bar while encoding; ``"auto"`` shows it when
        at least 2,048 texts need a model.
    warn_on_truncation : bool, default=True
        Warn when texts are longer than the model reads (a
        :class:`~skembed.TruncationWarning`, once per call: how many, and the
        longest length).
    cache : None, "memory", str, path-like or EmbeddingCache, default=None
        An embedding cache file or folder: texts met before are not embedded
        again. None computes every time,
        ``"memory"`` shares them between all estimators of this process, a
        path (or an :class:`~skembed.EmbeddingCache`) keeps them in an SQLite
        file that several processes can share; a folder holds the file
        ``skembed-cache.sqlite``. A cached vector is served only to the same
        model files, backend, precision, device type, max_seq_length, prompt
        and truncate_dim. It survives :func:`~sklearn.base.clone` and
        pickling, so a grid search embeds each text once; a fully cached call
        does not load the model. A cache that cannot be written is an error
        in :meth:`fit`, before any text is embedded.

    Attributes
    ----------
    n_features_in_ : int
        Number of text columns seen in :meth:`fit`.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Column names seen in :meth:`fit`, when ``X`` had string column names.
    embedding_dim_ : int
        Dimension of one text's vector.
    engine_ : {"skembed", "sentence-transformers"}
        Which code computes the vectors: skembed's own batching (a
        transformers network followed by pooling, dense and normalisation
        modules), or ``SentenceTransformer.encode`` (every other model, e.g.
        static embeddings). Reading it loads the model if it is not loaded.

    See Also
    --------
    SimilarityRegressor : Score sentence pairs on the user's scale.

    Examples
    --------
    >>> from skembed import EmbeddingVectorizer
    >>> vectorizer = EmbeddingVectorizer(model=MINILM)  # any model name or folder
    >>> X = vectorizer.fit_transform(["A man is playing a guitar.", "A dog runs."])
    >>> X.shape, X.dtype
    ((2, 384), dtype('float32'))
    >>> vectorizer.engine_
    'skembed'
    """

    _parameter_constraints: dict = {
        "model": [str, os.PathLike],
        "backend": [StrOptions(set(BACKENDS))],
        "device": [StrOptions(set(DEVICES)), MatchesPattern(r"cuda:\d+", "'cuda:<index>'")],
        "precision": [StrOptions(set(PRECISIONS))],
        "max_seq_length": [Interval(Integral, 1, None, closed="left"), None],
        "prompt": [str, None],
        "prompt_name": [str, None],
        "truncate_dim": [Interval(Integral, 1, None, closed="left"), None],
        "revision": [str, None],
        "trust_remote_code": ["boolean"],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "normalize": ["boolean"],
        "handle_missing": [StrOptions(set(MISSING_POLICIES))],
        "show_progress_bar": ["boolean", StrOptions({"auto"})],
        "warn_on_truncation": ["boolean"],
        "cache": [None, str, os.PathLike, EmbeddingCache],
    }

    def __init__(
        self,
        model=DEFAULT_MODEL,
        *,
        backend="sentence-transformers",
        device="auto",
        precision="float32",
        max_seq_length=None,
        prompt=None,
        prompt_name=None,
        truncate_dim=None,
        revision=None,
        trust_remote_code=False,
        batch_size=32,
        normalize=False,
        handle_missing="error",
        show_progress_bar="auto",
        warn_on_truncation=True,
        cache=None,
    ):
        self.model = model
        self.backend = backend
        self.device = device
        self.precision = precision
        self.max_seq_length = max_seq_length
        self.prompt = prompt
        self.prompt_name = prompt_name
        self.truncate_dim = truncate_dim
        self.revision = revision
        self.trust_remote_code = trust_remote_code
        self.batch_size = batch_size
        self.normalize = normalize
        self.handle_missing = handle_missing
        self.show_progress_bar = show_progress_bar
        self.warn_on_truncation = warn_on_truncation
        self.cache = cache

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.allow_nan = self.handle_missing != "error"
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    def _encoder_config(self) -> EncoderConfig:
        """The model options, as the engine, the registry and the cache read them."""
        return EncoderConfig.from_params(self.get_params(deep=False))

    def _validate_columns(self, X, *, reset: bool):
        return validate_text_columns(self, X, reset=reset, handle_missing=self.handle_missing)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Check ``X`` and learn the number and names of its text columns.

        No text is embedded: the model has nothing to learn from ``X``.

        Parameters
        ----------
        X : list, ndarray, pandas/polars Series or DataFrame
            One text column (1-D) or several (2-D).
        y : None
            Ignored.

        Returns
        -------
        self : EmbeddingVectorizer
        """
        self._validate_columns(X, reset=True)
        self._fit_model()
        return self

    def transform(self, X):
        """Embed each text column of ``X``.

        Parameters
        ----------
        X : list, ndarray, pandas/polars Series or DataFrame
            As many text columns as seen in :meth:`fit`.

        Returns
        -------
        ndarray of shape (n_samples, ``n_features_in_ * embedding_dim_``), float32
        """
        # embedding_dim_ is set last in fit: a fit that failed to load the model
        # leaves the vectorizer unfitted, whatever else it set.
        check_is_fitted(self, "embedding_dim_")
        columns = self._validate_columns(X, reset=False)
        return self._embed_columns(columns)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X, y=None):
        """Fit to ``X``, then embed it; the same as ``fit(X).transform(X)``."""
        columns = self._validate_columns(X, reset=True)
        self._fit_model()
        return self._embed_columns(columns)

    def _fit_model(self) -> None:
        """Open the cache and learn the dimension (from the cache when it knows it)."""
        cache = resolve_cache(self.cache)
        if cache is not None:
            cache.open()
        key = self._model_key(cache)
        dim = None if key is None else cache.dimension(key)
        self.embedding_dim_ = _engine.dimension(self._encoder_config()) if dim is None else dim

    @property
    def engine_(self) -> str:
        check_is_fitted(self, "embedding_dim_")
        return _engine.engine(self._encoder_config())

    def _model_key(self, cache):
        """The cache's key for this model; None without a cache or for an unknown hub model."""
        if cache is None:
            return None
        config = self._encoder_config()
        key = cache.model_key(config, device_type(config.device))
        if key is None:  # a hub model not downloaded yet: load it, then read its commit
            _engine.dimension(config)
            key = cache.model_key(config, device_type(config.device))
        if key is None:
            _warn_once(
                config.model,
                f"The commit of hub model {config.model!r} cannot be resolved, so its "
                "vectors are not cached.",
            )
        return key

    def embed_unique(self, texts: list) -> np.ndarray:
        """Embed distinct texts, row ``i`` for ``texts[i]`` (float32).

        The building block of :meth:`transform`, for code that needs vectors
        of texts it has already deduplicated (the regressor, the evaluation).
        Goes through the ``cache`` when there is one.
        """
        check_is_fitted(self, "embedding_dim_")
        cache = resolve_cache(self.cache)
        key = self._model_key(cache)
        if key is None:
            vectors = self._encode(texts)
        else:
            vectors, missing = cache.lookup(key, texts)
            if missing:
                todo = texts if vectors is None else [texts[i] for i in missing]
                computed = self._encode(todo)
                if vectors is None:
                    vectors = computed
                else:
                    vectors[missing] = computed
                cache.store(key, todo, computed)
        return normalize_rows(vectors, copy=False) if self.normalize else vectors

    def _encode(self, texts: list) -> np.ndarray:
        show = self.show_progress_bar
        if show == "auto":
            show = len(texts) >= AUTO_PROGRESS_MIN_TEXTS
        return _engine.encode(
            self._encoder_config(), texts, batch_size=self.batch_size, show_progress_bar=bool(show),
            warn_on_truncation=self.warn_on_truncation,
        )

    def _embed_columns(self, columns) -> np.ndarray:
        texts, positions = unique_texts(columns.columns)
        vectors = self.embed_unique(texts)
        dim = vectors.shape[1]
        if columns.n_columns == 1 and len(texts) == columns.n_rows:
            # Every row is distinct, so the vectors already are the output in row
            # order: no second copy (it would double the peak memory).
            if self.handle_missing == "zero":
                vectors[columns.missing[0]] = 0.0
            return vectors
        out = np.empty((columns.n_rows, columns.n_columns, dim), dtype=np.float32)
        for j, (pos, missing) in enumerate(zip(positions, columns.missing)):
            out[:, j, :] = vectors[pos]
            if self.handle_missing == "zero":
                out[missing, j, :] = 0.0
        return out.reshape(columns.n_rows, columns.n_columns * dim)

    def get_feature_names_out(self, input_features=None):
        """Names of the output features: ``<column>_<i>`` for each dimension ``i``.

        A single unnamed column gives ``embedding_<i>``.
        """
        check_is_fitted(self, "embedding_dim_")
        unnamed = input_features is None and not hasattr(self, "feature_names_in_")
        input_features = _check_feature_names_in(self, input_features)
        dims = range(self.embedding_dim_)
        if unnamed and self.n_features_in_ == 1:
            return np.asarray([f"embedding_{i}" for i in dims], dtype=object)
        return np.asarray([f"{col}_{i}" for col in input_features for i in dims], dtype=object)


_WARNED: set = set()


def _warn_once(topic: str, message: str) -> None:
    if topic not in _WARNED:
        _WARNED.add(topic)
        warnings.warn(message, RuntimeWarning, stacklevel=4)
