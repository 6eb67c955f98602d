"""SimilarityRegressor: score text pairs (or a query against fields) on the user's scale."""

from __future__ import annotations

from itertools import combinations
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import Ridge
from sklearn.utils.validation import check_consistent_length, check_is_fitted

from ._config import per_column_options
from ._finetune import FineTuneConfig, train_encoder
from ._heads import MonotoneInterpolation
from ._input import validate_text_columns
from ._lifecycle import FINE_TUNING_DOC, FrozenParameters, all_or_nothing, fine_tune, fine_tuning_constraints
from ._similarity import column_similarities, fitted_vectorizer
from ._sklearn import Interval, StrOptions, _check_y, _fit_context
from ._vectorizer import LIVE_PARAMETERS, EmbeddingVectorizer, wants_progress_bar

HEADS = ("auto", "monotone", "isotonic", "ridge")
#: The regressor's parameters that may change after fit: its vectorizer's live ones (they
#: reach the fitted vectorizers at predict) and where a copy of the tuned encoder goes.
LIVE = frozenset({"fine_tune_dir", *(f"vectorizer__{name}" for name in LIVE_PARAMETERS)})


class SimilarityRegressor(RegressorMixin, BaseEstimator):
    """Predict a similarity score from the cosine similarity of text embeddings.

    With two text columns this is the classic sentence-pair scorer: the
    cosine similarity of the two embeddings is mapped to the scale of ``y``
    (0-5 for STSb) by a strictly increasing calibration, so ``predict`` ranks
    pairs exactly as the cosine does. With ``k > 2`` columns the features are
    the ``k * (k - 1) / 2`` cosine similarities between all pairs of columns,
    mapped to ``y`` by a ridge regression: compare a query with several fields
    of a table. Each distinct text is embedded once per call.

    Optionally, :meth:`fit` first fine-tunes the encoder on the training pairs
    with sentence-transformers' trainer (by default the best recipe measured on
    STSb Spanish dev; ``fine_tune_params="card"`` is the model card's), then fits
    the head on the fine-tuned similarities.

    Parameters
    ----------
    vectorizer : EmbeddingVectorizer or None, default=None
        Turns texts into vectors; None means ``EmbeddingVectorizer()`` (the
        default model). Its parameters are tunable as ``vectorizer__<name>``.
        Missing cells follow its ``handle_missing`` policy.
    head : {"auto", "monotone", "isotonic", "ridge"}, default="auto"
        How similarities become scores. ``"monotone"``: a strictly increasing
        interpolation through the steps of an isotonic regression of ``y`` on
        the one similarity of two columns (ties none, so the ranking is the
        cosine's). ``"isotonic"``: that isotonic regression itself, a
        staircase, clipped outside the range seen in fit. ``"ridge"``: a ridge
        regression on all similarities. ``"auto"``: monotone for two columns,
        ridge for more.
    alpha : float, default=1.0
        Regularisation strength of the ridge head.
    column_params : dict or None, default=None
        Vectorizer parameters for the texts of single columns, keyed by column
        name (or position): ``{"query": {"prompt_name": "query"}}`` gives the
        query column the model's query prompt and the other columns the
        vectorizer's own settings. Only ``prompt``, ``prompt_name`` and
        ``max_seq_length`` may differ, so that every vector lives in the same
        space.
    fine_tune : bool, default=False
        Fine-tune the encoder on the training pairs (two columns only)
        before fitting the head; each column is trained with the prompt it is
        encoded with. The fine-tuned model is saved to a folder (see
        ``fine_tune_dir``) and :attr:`vectorizer_` points to it. The
        vectorizer's ``show_progress_bar`` shows one progress bar, the loss in
        its postfix, on stderr (``"auto"``: when training feeds the model
        2,048 texts or more, as for encoding); training is silent otherwise.
    fine_tune_params : dict, str, FineTuneConfig or None, default=None
        The fine-tuning recipe (see :class:`FineTuneConfig` for every field):
        None for the best recipe measured (the defaults), a dict of overrides
        of it, a recipe's name (``"card"``: the default model card's), or a
        :class:`FineTuneConfig`. The scores given to the losses are
        ``y`` scaled from its [min, max] in fit to [0, 1]. The texts are cut
        to the vectorizer's own ``max_seq_length`` while training, as they
        are when encoded.
{fine_tuning}
    Attributes
    ----------
    vectorizer_ : EmbeddingVectorizer
        The fitted clone of ``vectorizer``; after fine-tuning, its ``model``
        is the folder of the fine-tuned encoder.
    head_ : MonotoneInterpolation, IsotonicRegression or Ridge
        The fitted map from similarities to scores.
    pairs_ : list of tuple of int
        The pairs of columns compared, in the order of the features.
    column_params_ : list of dict
        The vectorizer parameters of each column that differ from
        :attr:`vectorizer_`'s (empty dicts without ``column_params``).
    fine_tuned_model_ : TunedEncoder or None
        The fine-tuned encoder, or None without fine-tuning: ``os.fspath``
        of it is a folder that ``SentenceTransformer`` loads, and it pickles
        with its weights.
    fine_tune_history_ : dict of ndarray or None
        The training loss logged during fine-tuning, as scikit-learn's
        ``cv_results_``: arrays ``"step"``, ``"epoch"``, ``"loss"`` and
        ``"stopped"`` (why training stopped early, at that log), one entry per log; ``pandas.DataFrame(fine_tune_history_)`` makes it a
        table, ``.plot(x="step", y="loss")`` a figure.
    n_features_in_ : int
        Number of text columns seen in :meth:`fit`.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Column names seen in :meth:`fit`, when ``X`` had string column names.

    See Also
    --------
    EmbeddingVectorizer : The embeddings behind the similarities.
    evaluate_sts : Pearson and Spearman of raw cosine similarity against gold scores.

    Notes
    -----
    A fitted regressor is frozen as its vectorizer is: after :meth:`fit`,
    only the vectorizer's ``device``, ``batch_size``, ``show_progress_bar``,
    ``warn_on_truncation`` and ``cache`` may change (they reach the fitted
    vectorizers at predict); any other parameter changed makes
    :meth:`predict` raise :class:`~skembed.ParameterChangedError`. A pickle
    of a fine-tuned regressor carries the tuned weights; see also
    :func:`skembed.save`.

    Examples
    --------
    >>> from skembed import EmbeddingVectorizer, SimilarityRegressor
    >>> X = [("A man is playing a guitar.", "A man plays the guitar."),
    ...      ("A man is playing a guitar.", "A woman is slicing onions."),
    ...      ("A dog runs in the park.", "A dog is running on the grass."),
    ...      ("A dog runs in the park.", "The stock market fell today.")]
    >>> y = [4.8, 0.2, 4.0, 0.0]
    >>> reg = SimilarityRegressor(EmbeddingVectorizer(MINILM)).fit(X, y)
    >>> reg.predict([("A girl plays the violin.", "A girl is playing a violin.")]).round(1)
    array([4.8])
    >>> reg.predict_similarity([("A cat.", "A cat.")]).round(3)
    array([1.])

    A query column with its own prompt (for models that have prompts, such as
    the E5, BGE or GTE families):

    >>> reg = SimilarityRegressor(
    ...     EmbeddingVectorizer(MINILM), column_params={0: {"prompt": "query: "}}).fit(X, y)
    >>> reg.column_params_
    [{'prompt': 'query: '}, {}]
    """

    _parameter_constraints: dict = {
        "vectorizer": [EmbeddingVectorizer, None],
        "head": [StrOptions(set(HEADS))],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "column_params": [dict, None],
        **fine_tuning_constraints(FineTuneConfig),
    }

    def __init__(
        self,
        vectorizer=None,
        *,
        head="auto", alpha=1.0, column_params=None,
        fine_tune=False, fine_tune_params=None, fine_tune_dir=None, random_state=None,
    ):
        self.vectorizer = vectorizer
        self.head = head
        self.alpha = alpha
        self.column_params = column_params
        self.fine_tune = fine_tune
        self.fine_tune_params = fine_tune_params
        self.fine_tune_dir = fine_tune_dir
        self.random_state = random_state

    def _base_vectorizer(self) -> EmbeddingVectorizer:
        return self.vectorizer if self.vectorizer is not None else EmbeddingVectorizer()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        vectorizer = self.vectorizer if self.vectorizer is not None else EmbeddingVectorizer()
        tags.input_tags.allow_nan = vectorizer.handle_missing != "error"
        tags.regressor_tags.poor_score = True
        return tags

    def _validate_columns(self, X, *, reset: bool):
        vectorizer = self._base_vectorizer() if reset else self.vectorizer_
        return validate_text_columns(
            self, X, reset=reset, handle_missing=vectorizer.handle_missing,
            min_columns=2 if reset else 1,
        )

    def _make_head(self, n_similarities: int):
        head = self.head
        if head == "auto":
            head = "monotone" if n_similarities == 1 else "ridge"
        if head in ("monotone", "isotonic"):
            if n_similarities != 1:
                raise ValueError(
                    f"head={head!r} maps a single similarity, but X has "
                    f"{self.n_features_in_} columns ({n_similarities} similarities); "
                    "use head='ridge' or 'auto'."
                )
            if head == "monotone":
                return MonotoneInterpolation()
            return IsotonicRegression(increasing=True, out_of_bounds="clip")
        return Ridge(alpha=self.alpha)

    def _resolve_column_params(self, columns) -> list:
        """``column_params`` as one dict per column position, checked."""
        settings = [{} for _ in range(columns.n_columns)]
        for column, params in (self.column_params or {}).items():
            if isinstance(column, str) and columns.names is not None and column in columns.names:
                position = columns.names.index(column)
            elif isinstance(column, int | np.integer) and 0 <= column < columns.n_columns:
                position = int(column)
            else:
                known = columns.names if columns.names is not None else list(range(columns.n_columns))
                raise ValueError(
                    f"column_params names the column {column!r}, which X does not have; its "
                    f"columns are {known}."
                )
            allowed = per_column_options()
            unknown = sorted(set(params) - set(allowed)) if isinstance(params, dict) else None
            if unknown is None or unknown:
                raise ValueError(
                    f"column_params[{column!r}] must be a dict of {allowed} (what may "
                    f"differ between columns), got {params!r}."
                )
            settings[position] = dict(params)
        return settings

    @_fit_context(prefer_skip_nested_validation=False)  # it validates its vectorizer
    def fit(self, X, y):
        """Fit a clone of the vectorizer, optionally fine-tune it, and fit the head.

        A fit that fails (or is interrupted) leaves the regressor as it was.

        Parameters
        ----------
        X : array-like, list of tuples, pandas or polars DataFrame
            At least two text columns, one pair (or group) per row.
        y : array-like of shape (n_samples,)
            Target score of each row, on any scale.

        Returns
        -------
        self : SimilarityRegressor
        """
        with all_or_nothing(self):
            self._fit(X, y)
        return self

    def _fit(self, X, y) -> None:
        y = _check_y(y, y_numeric=True, estimator=self).astype(np.float64, copy=False)
        if self._base_vectorizer().fine_tune:
            raise ValueError(
                "The vectorizer of a SimilarityRegressor cannot fine-tune on class labels "
                "(its fine_tune=True); fine-tune on the pairs with "
                "SimilarityRegressor(fine_tune=True) instead."
            )
        columns = self._validate_columns(X, reset=True)
        check_consistent_length(columns.columns[0], y)
        self.column_params_ = self._resolve_column_params(columns)
        # Every setting of the vectorizer and of each column is validated here,
        # before any work: fitting a vectorizer embeds nothing (and opens the cache).
        self._fit_vectorizers(columns, self._base_vectorizer())
        self.pairs_ = list(combinations(range(columns.n_columns), 2))
        head = self._make_head(len(self.pairs_))
        self._frozen = FrozenParameters(self, LIVE)
        self.fine_tuned_model_ = self.fine_tune_history_ = None
        if self.fine_tune:
            self.fine_tuned_model_, self.fine_tune_history_ = self._fine_tune(columns, y)
            self._fit_vectorizers(columns, self.vectorizer_, model=self.fine_tuned_model_)
        similarities = self._similarities(columns)
        self.head_ = head.fit(similarities[:, 0] if self._one_similarity(head) else similarities, y)

    def _fit_vectorizers(self, columns, vectorizer, **params) -> None:
        """Fit ``vectorizer_`` (a clone of ``vectorizer`` with ``params``) and one per column."""
        texts = columns.columns[0]
        self.vectorizer_ = fitted_vectorizer(vectorizer, texts, **params)
        by_setting: dict = {}
        for settings in self.column_params_:
            key = tuple(sorted(settings.items()))
            if key not in by_setting:
                by_setting[key] = (fitted_vectorizer(self.vectorizer_, texts, **settings)
                                   if settings else self.vectorizer_)
        self._column_vectorizers = [by_setting[tuple(sorted(p.items()))]
                                    for p in self.column_params_]

    @staticmethod
    def _one_similarity(head) -> bool:
        return isinstance(head, IsotonicRegression | MonotoneInterpolation)

    def _similarities(self, columns) -> np.ndarray:
        return column_similarities(self._column_vectorizers, columns, self.pairs_)

    def _fine_tune(self, columns, y) -> tuple:
        if columns.n_columns != 2:
            raise ValueError(
                f"fine_tune=True trains on sentence pairs: X needs exactly 2 text "
                f"columns, got {columns.n_columns}."
            )
        recipe = FineTuneConfig.from_params(self.fine_tune_params)
        show = wants_progress_bar(self.vectorizer_.show_progress_bar,
                                  recipe.texts_read(columns.n_rows))
        configs = tuple(v._encoder_config() for v in self._column_vectorizers)

        def train(folder, seed):
            return train_encoder(configs, columns.columns[0].tolist(),
                                 columns.columns[1].tolist(), y, folder, recipe=recipe,
                                 seed=seed, show_progress_bar=bool(show))

        info = {"base_model": configs[0].model, "target": "scored pairs",
                "n_examples": columns.n_rows, "recipe": recipe.to_dict()}
        return fine_tune(train, info=info, random_state=self.random_state,
                         copy_to=self.fine_tune_dir)

    def _fitted_vectorizers(self) -> list:
        """The fitted vectorizers, checked unchanged, with the live settings of
        ``vectorizer`` as they are now (device, batch size, progress bar, cache)."""
        check_is_fitted(self)
        self._frozen.check(self)
        if self.vectorizer is not None:
            live = {name: value for name, value in self.vectorizer.get_params(deep=False).items()
                    if name in LIVE_PARAMETERS}
            for vectorizer in {id(v): v for v in [self.vectorizer_, *self._column_vectorizers]
                               }.values():
                vectorizer.set_params(**live)
        return self._column_vectorizers

    def predict_similarity(self, X):
        """Cosine similarity of the embeddings of the columns of ``X``.

        Parameters
        ----------
        X : array-like, list of tuples, pandas or polars DataFrame
            As many text columns as seen in :meth:`fit`.

        Returns
        -------
        ndarray of shape (n_samples,) for two columns, else (n_samples, n_pairs)
            Similarities in [-1, 1], one column per pair of ``pairs_``.
        """
        vectorizers = self._fitted_vectorizers()
        columns = self._validate_columns(X, reset=False)
        similarities = column_similarities(vectorizers, columns, self.pairs_)
        return similarities[:, 0] if len(self.pairs_) == 1 else similarities

    def predict(self, X):
        """Predict the score of each row of ``X``, in the units of ``y``.

        Parameters
        ----------
        X : array-like, list of tuples, pandas or polars DataFrame
            The pairs (or groups) of texts to score, in the columns seen in :meth:`fit`.

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        similarities = self.predict_similarity(X)
        if self._one_similarity(self.head_) or similarities.ndim == 2:
            return self.head_.predict(similarities)
        return self.head_.predict(similarities[:, None])

    def score(self, X, y, sample_weight=None):
        """R² of :meth:`predict` against ``y``: ``RegressorMixin.score``, documented here.

        STS is usually reported as a correlation: pass ``scoring=spearman_scorer``
        or ``pearson_scorer`` to model selection for that.

        Parameters
        ----------
        X : array-like, list of tuples, pandas or polars DataFrame
            As many text columns as seen in :meth:`fit`.
        y : array-like of shape (n_samples,)
            True scores.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each row.

        Returns
        -------
        score : float
        """
        return super().score(X, y, sample_weight=sample_weight)

    def save_encoder(self, path) -> str:
        """Save the encoder of this fitted regressor (fine-tuned or not) to a folder that
        ``SentenceTransformer(path)`` and ``EmbeddingVectorizer(model=path)`` load; see
        :meth:`EmbeddingVectorizer.save_encoder`. Returns its absolute path."""
        check_is_fitted(self)
        return self.vectorizer_.save_encoder(path)


SimilarityRegressor.__doc__ = SimilarityRegressor.__doc__.replace("{fine_tuning}\n",
                                                                  FINE_TUNING_DOC)
