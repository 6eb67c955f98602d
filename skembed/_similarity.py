"""Cosine similarity of text embeddings, computed here and nowhere else.

:func:`column_similarities` is the cosine of the texts of pairs of columns,
which the regressor predicts from, :func:`~skembed.evaluate_sts` correlates
and the command line prints; :func:`pair_similarity` is its public face.
:func:`fitted_vectorizer` is how the functions that take a vectorizer "as
configured" validate it: they fit a clone, as a meta-estimator would.
"""

from __future__ import annotations

import copy

import numpy as np
from sklearn.base import clone
from sklearn.preprocessing import normalize

from ._input import to_text_columns, unique_texts
from ._vectorizer import LIVE_PARAMETERS, EmbeddingVectorizer

#: Decimals a cosine keeps. The cosine of float32 vectors is exact to ~1e-7 at best;
#: float64 noise below 1e-12 would otherwise tell a text's similarity to itself
#: (1 + 2e-16) from another's (1.0), and a rank correlation would see it.
COSINE_DECIMALS = 12


def fitted_vectorizer(vectorizer, texts, **params) -> EmbeddingVectorizer:
    """A clone of ``vectorizer`` with ``params`` set, fitted on the text column ``texts``.

    Fitting validates every parameter (a clear ``InvalidParameterError``),
    opens the cache and loads the model; it embeds nothing. A vectorizer
    fitted with ``fine_tune=True`` is used with the encoder it fine-tuned.
    """
    if not isinstance(vectorizer, EmbeddingVectorizer):
        raise TypeError(
            f"vectorizer must be an EmbeddingVectorizer, got {type(vectorizer).__name__}."
        )
    if (getattr(vectorizer, "quantized_model_", None) is not None
            and vectorizer.n_features_in_ == 1 and set(params) <= LIVE_PARAMETERS):
        # Its int8 model was calibrated on the texts it was fitted with: fitting a clone
        # on these would calibrate another one. Used as fitted (live settings aside).
        return copy.deepcopy(vectorizer).set_params(**params)
    tuned = getattr(vectorizer, "fine_tuned_model_", None)
    if tuned is not None:
        params = {"model": tuned, "fine_tune": False, **params}
    return clone(vectorizer).set_params(**params).fit(texts)


def column_similarities(vectorizers: list, columns, pairs) -> np.ndarray:
    """Cosine similarity of the texts of each pair of columns, one feature per pair.

    Parameters
    ----------
    vectorizers : list of EmbeddingVectorizer
        The fitted vectorizer of each column. Columns that share one object
        share one embedding call, so each distinct text is embedded once
        per vectorizer. A missing cell is a zero vector (similarity 0)
        when the vectorizer's ``handle_missing`` is ``"zero"``.
    columns : TextColumns
        The validated columns.
    pairs : list of (int, int)
        Positions of the columns to compare.

    Returns
    -------
    ndarray of shape (n_rows, len(pairs)), float64
        Rounded to :data:`COSINE_DECIMALS` decimals.
    """
    vectors_of = [None] * columns.n_columns
    for vectorizer in {id(v): v for v in vectorizers}.values():
        members = [j for j, v in enumerate(vectorizers) if v is vectorizer]
        texts, positions = unique_texts([columns.columns[j] for j in members])
        vectors = normalize(vectorizer.embed_unique(texts).astype(np.float64), copy=False)
        for j, pos in zip(members, positions):
            vectors_of[j] = vectors[pos]
    out = np.empty((columns.n_rows, len(pairs)), dtype=np.float64)
    for k, (i, j) in enumerate(pairs):
        out[:, k] = np.einsum("ij,ij->i", vectors_of[i], vectors_of[j])
        for column in (i, j):
            if vectorizers[column].handle_missing == "zero":
                out[columns.missing[column], k] = 0.0
    return np.round(out, COSINE_DECIMALS, out=out)


def pair_similarity(X, vectorizer=None) -> np.ndarray:
    """Cosine similarity of the embeddings of the two texts of each row of ``X``.

    Parameters
    ----------
    X : array-like, list of pairs, pandas or polars DataFrame
        Two text columns (or more: then every pair of columns is compared).
    vectorizer : EmbeddingVectorizer or None, default=None
        How texts become vectors: a clone of it is fitted and used (fitted
        or not, it is left unchanged); None means ``EmbeddingVectorizer()``,
        the default model.

    Returns
    -------
    ndarray of shape (n_samples,), float64
        For more than two columns, shape (n_samples, n_pairs) with the pairs
        of columns in the order of ``itertools.combinations``.

    Examples
    --------
    >>> from skembed import EmbeddingVectorizer, pair_similarity
    >>> pair_similarity([["A dog runs.", "A dog is running."], ["A dog runs.", "Stocks fell."]],
    ...                 EmbeddingVectorizer(MINILM)).round(2)
    array([0.97, 0.04])
    """
    from itertools import combinations

    vectorizer = EmbeddingVectorizer() if vectorizer is None else vectorizer
    handle_missing = getattr(vectorizer, "handle_missing", "error")
    columns = to_text_columns(X, handle_missing=handle_missing, min_columns=2)
    fitted = fitted_vectorizer(vectorizer, columns.columns[0])
    pairs = list(combinations(range(columns.n_columns), 2))
    similarity = column_similarities([fitted] * columns.n_columns, columns, pairs)
    return similarity[:, 0] if len(pairs) == 1 else similarity
