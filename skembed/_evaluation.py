"""Semantic textual similarity evaluation and correlation scorers.

:func:`evaluate_sts` computes what sentence-transformers'
``EmbeddingSimilarityEvaluator`` reports: the Pearson and Spearman
correlations of the cosine similarity of each pair's embeddings with the gold
scores. ``spearman_scorer`` and ``pearson_scorer`` rank any regressor's
predictions the same way inside ``GridSearchCV`` or ``cross_validate``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import make_scorer

from ._input import to_text_columns
from ._similarity import column_similarities, fitted_vectorizer
from ._sklearn import _check_y
from ._vectorizer import EmbeddingVectorizer


def spearman_score(y_true, y_pred) -> float:
    """Spearman rank correlation of predictions with targets.

    Examples
    --------
    >>> spearman_score([1, 2, 3, 4], [0.1, 0.4, 0.3, 0.9])
    0.8
    """
    return float(spearmanr(y_true, y_pred).statistic)


def pearson_score(y_true, y_pred) -> float:
    """Pearson linear correlation of predictions with targets.

    Examples
    --------
    >>> round(pearson_score([1, 2, 3], [2, 4, 7]), 4)
    0.9934
    """
    return float(pearsonr(np.asarray(y_true, float), np.asarray(y_pred, float)).statistic)


#: Scorer for ``scoring=`` in model selection: Spearman of ``predict`` with ``y``.
spearman_scorer = make_scorer(spearman_score)
#: Scorer for ``scoring=`` in model selection: Pearson of ``predict`` with ``y``.
pearson_scorer = make_scorer(pearson_score)


@dataclass
class STSResult:
    """Correlations of cosine similarity with gold scores.

    Attributes
    ----------
    pearson, spearman : float
        Correlations of :attr:`similarity` with :attr:`gold`.
    similarity : ndarray of shape (n_pairs,)
        Cosine similarity of each pair's embeddings.
    gold : ndarray of shape (n_pairs,)
        The gold scores.
    """

    pearson: float
    spearman: float
    similarity: np.ndarray
    gold: np.ndarray

    @property
    def n_pairs(self) -> int:
        return len(self.gold)

    def plot(self, ax=None, *, title: str | None = None):
        """Draw :attr:`similarity` against :attr:`gold`, correlations in the title.

        Parameters
        ----------
        ax : matplotlib Axes or None
            Where to draw; None draws on a new pyplot figure (shown inline in
            a notebook).
        title : str or None
            First line of the title; the correlations make the second.

        Returns
        -------
        ax : matplotlib Axes

        Examples
        --------
        >>> result = STSResult(0.5, 0.4, np.array([0.1, 0.8, 0.3]), np.array([0.0, 5.0, 4.0]))
        >>> result.plot(title="my model").get_title()
        'my model\\nSpearman 0.4000, Pearson 0.5000 (3 pairs)'
        """
        from ._plotting import draw_sts, new_axes

        return draw_sts(self, new_axes() if ax is None else ax, title=title)

    def as_dict(self) -> dict:
        return {"pearson": self.pearson, "spearman": self.spearman, "n_pairs": self.n_pairs}


def _as_vectorizer(model):
    if isinstance(model, str | os.PathLike):
        return EmbeddingVectorizer(model=os.fspath(model))
    if isinstance(model, EmbeddingVectorizer):
        return model
    raise TypeError(
        "evaluate_sts expects a model name or folder, an EmbeddingVectorizer or a "
        f"fitted SimilarityRegressor, got {type(model).__name__}."
    )


def evaluate_sts(model, sentences1, sentences2, scores, *, batch_size=None) -> STSResult:
    """Pearson and Spearman of cosine similarity against gold similarity scores.

    The same figures as sentence-transformers'
    ``EmbeddingSimilarityEvaluator`` (``*_cosine`` metrics) on the same model
    and pairs; each distinct sentence is embedded once.

    Parameters
    ----------
    model : str, path-like, EmbeddingVectorizer or SimilarityRegressor
        A model name or folder, a vectorizer (a clone of it is fitted and
        used; it is left unchanged), or a fitted :class:`SimilarityRegressor`
        whose (possibly fine-tuned) encoder is evaluated.
    sentences1, sentences2 : sequence of str
        The pairs.
    scores : sequence of float
        Gold similarity of each pair, on any scale.
    batch_size : int or None, default=None
        Overrides the vectorizer's batch size (not a regressor's).

    Returns
    -------
    STSResult
        ``pearson``, ``spearman``, and the ``similarity`` and ``gold`` arrays.

    Examples
    --------
    >>> from skembed import evaluate_sts
    >>> result = evaluate_sts(MINILM,
    ...     ["A man plays a guitar.", "A dog runs.", "A child is eating."],
    ...     ["A man is playing the guitar.", "A cat sleeps.", "Stocks fell today."],
    ...     [4.9, 1.0, 0.0])
    >>> result.spearman
    1.0
    """
    if not len(sentences1) == len(sentences2) == len(scores):
        raise ValueError(
            f"sentences1, sentences2 and scores must have equal lengths, got "
            f"{len(sentences1)}, {len(sentences2)} and {len(scores)}."
        )
    gold = _check_y(scores, y_numeric=True).astype(np.float64)
    if len(gold) < 2:
        raise ValueError(f"Correlations need at least 2 pairs, got {len(gold)}.")
    pairs = np.empty((len(gold), 2), dtype=object)
    pairs[:, 0] = list(sentences1)
    pairs[:, 1] = list(sentences2)
    if hasattr(model, "predict_similarity"):
        names = getattr(model, "feature_names_in_", None)
        if names is not None:  # fitted on a dataframe: same column names
            import pandas as pd

            pairs = pd.DataFrame(pairs, columns=names)
        similarity = np.asarray(model.predict_similarity(pairs), dtype=np.float64)
        if similarity.ndim != 1:
            raise ValueError("evaluate_sts needs a SimilarityRegressor fitted on 2 columns.")
    else:
        vectorizer = _as_vectorizer(model)
        columns = to_text_columns(pairs, handle_missing=vectorizer.handle_missing, min_columns=2)
        overrides = {} if batch_size is None else {"batch_size": batch_size}
        fitted = fitted_vectorizer(vectorizer, columns.columns[0], **overrides)
        similarity = column_similarities([fitted, fitted], columns, [(0, 1)])[:, 0]
    return STSResult(
        pearson=pearson_score(gold, similarity),
        spearman=spearman_score(gold, similarity),
        similarity=similarity,
        gold=gold,
    )
