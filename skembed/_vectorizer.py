"""EmbeddingVectorizer: text columns to sentence-embedding features."""

from __future__ import annotations

import os
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_feature_names, _check_feature_names_in, check_is_fitted

from ._cache import EmbeddingCache, resolve_cache
from ._engine import BACKENDS, DEFAULT_MODEL, DEVICES, PRECISIONS, EncoderConfig, get_encoder
from ._input import MISSING_POLICIES, to_text_columns, unique_texts

#: Encode with a progress bar from this many texts on, when ``show_progress_bar="auto"``.
AUTO_PROGRESS_MIN_TEXTS = 2048


def validate_text_columns(estimator, X, *, reset: bool, handle_missing: str, min_columns: int = 1):
    """Check ``X``'s column names and count against ``estimator`` and read its texts.

    With ``reset=True`` the estimator learns them (``n_features_in_``,
    ``feature_names_in_``); warnings and errors name the estimator the user called.
    """
    # Names first, as scikit-learn does: a renamed column is reported as
    # such, not as the missing values a reindexed dataframe would hold.
    _check_feature_names(estimator, X, reset=reset)
    columns = to_text_columns(X, handle_missing=handle_missing, min_columns=min_columns)
    if reset:
        estimator.n_features_in_ = columns.n_columns
    elif columns.n_columns != estimator.n_features_in_:
        hint = (
            " A 1-D input is read as one text column: Reshape your data to 2-D "
            "with one column per text field."
            if columns.n_columns == 1
            else ""
        )
        raise ValueError(
            f"X has {columns.n_columns} features, but {type(estimator).__name__} is "
            f"expecting {estimator.n_features_in_} features as input.{hint}"
        )
    return columns


class EmbeddingVectorizer(TransformerMixin, BaseEstimator):
    """Embed one or more text columns with a sentence-transformers model.

    Each text becomes the model's sentence embedding (mean-pooled token
    vectors for the default model, 768 dimensions). With ``k`` text columns
    the output has ``k * embedding_dim_`` features, column after column.
    Each distinct string is embedded once per call, and its vector does not
    depend on the order of the rows.

    The model is loaded on first use, once per process, and is never pickled:
    a fitted vectorizer pickles to a few kilobytes.

    Parameters
    ----------
    model : str or path-like, default="mrm8488/distiluse-base-multilingual-cased-v2-finetuned-stsb_multi_mt-es"
        A sentence-transformers model name on the Hugging Face Hub, or the path
        of a local folder saved by ``SentenceTransformer.save``.
    backend : {"sentence-transformers", "transformers"}, default="sentence-transformers"
        ``"sentence-transformers"`` runs the model's own modules (pooling,
        dense and normalisation layers included). ``"transformers"`` runs
        ``AutoModel`` and mean-pools the token vectors with the attention mask.
    device : {"auto", "cpu", "cuda", "mps"}, default="auto"
        Where the model runs; ``"auto"`` picks CUDA, then MPS, then the CPU.
    precision : {"float32", "bfloat16", "float16"}, default="float32"
        Floating-point type of the model's computation. The output is always
        float32.
    batch_size : int, default=32
        Texts per forward pass.
    max_seq_length : int or None, default=None
        Truncate texts to this many tokens; None keeps the model's limit.
    normalize : bool, default=False
        Scale each vector to unit Euclidean norm.
    handle_missing : {"error", "empty", "zero"}, default="error"
        What to do with a missing cell (None, NaN, pd.NA): raise a ValueError
        naming its column and row, embed it as the empty string, or give it
        a vector of zeros.
    show_progress_bar : bool or "auto", default="auto"
        Show a progress bar while encoding; ``"auto"`` shows it when
        at least 2,048 texts need a model.
    revision : str or None, default=None
        Git revision (branch, tag or commit) of a hub model.
    trust_remote_code : bool, default=False
        Allow a hub model to run its own Python code.
    cache : None, "memory", str, path-like or EmbeddingCache, default=None
        Keep vectors to skip recomputing them: None computes every time,
        ``"memory"`` shares them between all estimators of this process, a
        path (or an :class:`~skembed.EmbeddingCache`) keeps them in an SQLite
        file that several processes can share. A cached vector is served only
        to the same model files, backend, precision, device type,
        max_seq_length and normalisation. It survives :func:`~sklearn.base.clone`
        and pickling, so a grid search embeds each text once; a fully cached
        call does not load the model.

    Attributes
    ----------
    n_features_in_ : int
        Number of text columns seen in :meth:`fit`.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Column names seen in :meth:`fit`, when ``X`` had string column names.
    embedding_dim_ : int
        Dimension of one text's vector.

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
    """

    _parameter_constraints: dict = {
        "model": [str, os.PathLike],
        "backend": [StrOptions(set(BACKENDS))],
        "device": [StrOptions(set(DEVICES))],
        "precision": [StrOptions(set(PRECISIONS))],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_seq_length": [Interval(Integral, 1, None, closed="left"), None],
        "normalize": ["boolean"],
        "handle_missing": [StrOptions(set(MISSING_POLICIES))],
        "show_progress_bar": ["boolean", StrOptions({"auto"})],
        "revision": [str, None],
        "trust_remote_code": ["boolean"],
        "cache": [None, str, os.PathLike, EmbeddingCache],
    }

    def __init__(
        self,
        model=DEFAULT_MODEL,
        *,
        backend="sentence-transformers",
        device="auto",
        precision="float32",
        batch_size=32,
        max_seq_length=None,
        normalize=False,
        handle_missing="error",
        show_progress_bar="auto",
        revision=None,
        trust_remote_code=False,
        cache=None,
    ):
        self.model = model
        self.backend = backend
        self.device = device
        self.precision = precision
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.normalize = normalize
        self.handle_missing = handle_missing
        self.show_progress_bar = show_progress_bar
        self.revision = revision
        self.trust_remote_code = trust_remote_code
        self.cache = cache

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.allow_nan = self.handle_missing != "error"
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    def _encoder_config(self) -> EncoderConfig:
        return EncoderConfig(
            model=os.fspath(self.model),
            backend=self.backend,
            device=self.device,
            precision=self.precision,
            max_seq_length=self.max_seq_length,
            revision=self.revision,
            trust_remote_code=self.trust_remote_code,
        )

    def _validate_columns(self, X, *, reset: bool):
        return validate_text_columns(self, X, reset=reset, handle_missing=self.handle_missing)

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
        self._validate_params()
        self._validate_columns(X, reset=True)
        self.embedding_dim_ = self._embedding_dim()
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

    def fit_transform(self, X, y=None):
        """Fit to ``X``, then embed it; the same as ``fit(X).transform(X)``."""
        self._validate_params()
        columns = self._validate_columns(X, reset=True)
        self.embedding_dim_ = self._embedding_dim()
        return self._embed_columns(columns)

    def _embedding_dim(self) -> int:
        """The model's dimension, read from the cache when it knows it (no model load)."""
        cache = resolve_cache(self.cache)
        config = self._encoder_config()
        if cache is None:
            return get_encoder(config).dimension
        return cache.dimension(config, normalize=self.normalize)

    def embed_unique(self, texts: list) -> np.ndarray:
        """Embed distinct texts, row ``i`` for ``texts[i]`` (float32).

        The building block of :meth:`transform`, for estimators that need
        vectors of texts they have already deduplicated. Goes through the
        ``cache`` when there is one.
        """
        cache = resolve_cache(self.cache)
        if cache is None:
            return self._encode(texts)
        return cache.embed(
            self._encoder_config(), texts, normalize=self.normalize, encode=self._encode
        )

    def _encode(self, texts: list) -> np.ndarray:
        show = self.show_progress_bar
        if show == "auto":
            show = len(texts) >= AUTO_PROGRESS_MIN_TEXTS
        return get_encoder(self._encoder_config()).encode(
            texts,
            batch_size=self.batch_size,
            normalize=self.normalize,
            show_progress_bar=bool(show),
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
        out = out.reshape(columns.n_rows, columns.n_columns * dim)
        return out

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
