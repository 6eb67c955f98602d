"""Cosine similarity of text embeddings, computed here and nowhere else.

:func:`unit_rows` scales vectors to unit length (``normalize=True``);
:func:`column_similarities` is the cosine of the texts of pairs of columns,
which the regressor predicts from, :func:`~skembed.evaluate_sts` correlates
and the command line prints; :func:`pair_similarity` is its public face.
"""

from __future__ import annotations

import numpy as np

from ._input import to_text_columns, unique_texts


#: Decimals a cosine keeps. The cosine of float32 vectors is exact to ~1e-7 at best;
#: float64 noise below 1e-12 would otherwise tell a text's similarity to itself
#: (1 + 2e-16) from another's (1.0), and a rank correlation would see it.
COSINE_DECIMALS = 12


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` scaled to unit Euclidean norm, in place; a zero row stays zero.

    >>> unit_rows(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6, 0.8], [0.0, 0.0]]
    """
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.divide(vectors, norms, out=vectors, where=norms > 0)
    return vectors


def column_similarities(vectorizer, columns, pairs, column_params=None) -> np.ndarray:
    """Cosine similarity of the texts of each pair of columns, one feature per pair.

    Parameters
    ----------
    vectorizer : EmbeddingVectorizer
        Embeds the texts (``embed_unique``); its ``handle_missing`` says
        whether a missing cell is a zero vector, whose similarity is 0.
    columns : TextColumns
        The validated columns.
    pairs : list of (int, int)
        Positions of the columns to compare.
    column_params : list of dict or None
        Per column, vectorizer parameters that differ for its texts (a
        prompt); columns with the same parameters share one embedding call,
        so each distinct text is embedded once per setting.

    Returns
    -------
    ndarray of shape (n_rows, len(pairs)), float64
        Rounded to :data:`COSINE_DECIMALS` decimals.
    """
    settings = column_params or [{}] * columns.n_columns
    vectors_of = [None] * columns.n_columns
    for params in _distinct(settings):
        members = [j for j, p in enumerate(settings) if p == params]
        texts, positions = unique_texts([columns.columns[j] for j in members])
        embedder = _with(vectorizer, params) if params else vectorizer
        vectors = unit_rows(embedder.embed_unique(texts).astype(np.float64))
        for j, pos in zip(members, positions):
            vectors_of[j] = vectors[pos]
    zero = vectorizer.handle_missing == "zero"
    out = np.empty((columns.n_rows, len(pairs)), dtype=np.float64)
    for k, (i, j) in enumerate(pairs):
        out[:, k] = np.einsum("ij,ij->i", vectors_of[i], vectors_of[j])
        if zero:
            out[columns.missing[i] | columns.missing[j], k] = 0.0
    return np.round(out, COSINE_DECIMALS, out=out)


def _distinct(settings: list) -> list:
    distinct = []
    for params in settings:
        if params not in distinct:
            distinct.append(params)
    return distinct


def _with(vectorizer, params: dict):
    from sklearn.base import clone

    return clone(vectorizer).set_params(**params)


def pair_similarity(X, vectorizer=None) -> np.ndarray:
    """Cosine similarity of the embeddings of the two texts of each row of ``X``.

    Parameters
    ----------
    X : array-like, list of pairs, pandas or polars DataFrame
        Two text columns (or more: then every pair of columns is compared).
    vectorizer : EmbeddingVectorizer or None, default=None
        How texts become vectors, used as configured (it needs no fit);
        None means ``EmbeddingVectorizer()``, the default model.

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

    from ._vectorizer import EmbeddingVectorizer

    vectorizer = EmbeddingVectorizer() if vectorizer is None else vectorizer
    columns = to_text_columns(X, handle_missing=vectorizer.handle_missing, min_columns=2)
    pairs = list(combinations(range(columns.n_columns), 2))
    similarity = column_similarities(vectorizer, columns, pairs)
    return similarity[:, 0] if len(pairs) == 1 else similarity
