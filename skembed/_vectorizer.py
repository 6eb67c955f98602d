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
from dataclasses import replace
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.preprocessing import normalize as normalize_rows
from sklearn.utils.validation import check_consistent_length, check_is_fitted

from . import _engine
from ._cache import EmbeddingCache, resolve_cache
from ._config import (
    BACKENDS,
    DEFAULT_MODEL,
    DEVICES,
    LONG_TEXT_POLICIES,
    MISSING_POLICIES,
    PRECISIONS,
    EncoderConfig,
    load_arguments,
    training_config,
)
from ._devices import device_type
from ._fingerprint import model_identity
from ._input import unique_texts, validate_text_columns
from ._label_tuning import train_on_labels
from ._lifecycle import (
    FINE_TUNING_DOC,
    FrozenParameters,
    all_or_nothing,
    fine_tune,
    fine_tuning_constraints,
)
from ._loading import check_model_location, load_request
from ._number_tuning import NumericFineTuneConfig, train_on_numbers
from ._recipes import RECIPE_CLASSES, vectorizer_recipe
from ._registry import save_model
from ._sklearn import (
    Interval,
    MatchesPattern,
    StrOptions,
    _check_feature_names_in,
    _check_y,
    _fit_context,
)
from ._tuned import QuantizedModel, TunedEncoder
from ._windows import WINDOW_OVERLAP

#: The parameters that may change after fit: how vectors are computed, never what they
#: are. Every other parameter is frozen at fit (see FrozenParameters).
LIVE_PARAMETERS = frozenset({
    "device", "batch_size", "show_progress_bar", "warn_on_truncation", "cache", "fine_tune_dir",
})

#: Show a progress bar from this many texts on, when ``show_progress_bar="auto"``: texts to
#: encode, or texts a fine-tuning feeds the model.
AUTO_PROGRESS_MIN_TEXTS = 2048


def wants_progress_bar(setting, n_texts: int) -> bool:
    """Whether ``show_progress_bar=setting`` shows a bar for work on ``n_texts`` texts.

    >>> wants_progress_bar("auto", 100), wants_progress_bar("auto", 5000), wants_progress_bar(True, 1)
    (False, True, True)
    """
    return n_texts >= AUTO_PROGRESS_MIN_TEXTS if setting == "auto" else bool(setting)


class EmbeddingVectorizer(TransformerMixin, BaseEstimator):
    """Embed one or more text columns with a sentence-transformers model.

    Each text becomes the model's sentence embedding, exactly as
    ``SentenceTransformer.encode`` gives it with the same settings (mean-pooled
    token vectors for the default model, 768 dimensions). With ``k`` text
    columns the output has ``k * embedding_dim_`` features, column after
    column. Each distinct string is embedded once per call, and its vector
    does not depend on the order of the rows.

    The model is loaded on first use, once per process, and is never pickled:
    a fitted vectorizer pickles to a few kilobytes (its model's name or folder
    and the fingerprint that proves it is the same), unless it fine-tuned its
    encoder: then the pickle carries the tuned weights, and loads anywhere.

    What :meth:`fit` decides is frozen: every parameter but ``device``,
    ``batch_size``, ``show_progress_bar``, ``warn_on_truncation``, ``cache``
    and ``fine_tune_dir`` (how vectors are computed, not what they are) is
    captured at fit, and :meth:`transform` refuses, with a
    :class:`~skembed.ParameterChangedError` naming it, to run after one of
    them changed. A hub model is pinned to the commit it had at fit.

    Parameters
    ----------
    model : str or path-like, default="mrm8488/distiluse-base-multilingual-cased-v2-finetuned-stsb_multi_mt-es"
        A sentence-transformers model name on the Hugging Face Hub, or the path
        of a local folder saved by ``SentenceTransformer.save``.
    backend : {"sentence-transformers", "transformers", "openvino", "auto"}, default="sentence-transformers"
        Which library runs the model. ``"sentence-transformers"`` runs the
        model's own modules, whatever they are. ``"transformers"`` runs ``AutoModel``, mean-pools the token
        vectors with the attention mask, then the folder's Dense and Normalize
        modules; it refuses, with a ValueError, a model with any other module.
        ``"openvino"`` (``pip install 'skembed[openvino]'``) converts the
        loaded model (network, pooling, Dense) to OpenVINO once, keeps the
        conversion on disk for later processes, and runs it on the CPU, faster
        than torch and as exact in float32 (docs/openvino); it refuses, with a
        ValueError naming the module, a model whose modules skembed's batching
        cannot run (see :attr:`engine_`). ``"auto"`` is ``"openvino"`` where
        it runs the model on this machine's CPU, else
        ``"sentence-transformers"``; :attr:`backend_` says which.
    device : {"auto", "cpu", "cuda", "mps"} or "cuda:<index>", default="auto"
        Where the model runs: auto, cpu, cuda, cuda:<index> or mps (``"auto"``
        picks CUDA, then MPS, then the CPU). OpenVINO runs on the CPU.
    precision : {"float32", "bfloat16", "float16", "int8"}, default="float32"
        Floating-point type of the model's computation. The output is always
        float32. ``"int8"`` (OpenVINO only) quantises the model in
        :meth:`fit`, calibrated on a deterministic sample of at most 300 of
        the distinct texts given to fit (fewer than 32 still calibrate it,
        with a :class:`~skembed.CalibrationWarning`): faster, and close to
        float32 but not equal (docs/openvino); the quantised model is
        :attr:`quantized_model_` and travels with the vectorizer. No
        ``"auto"`` setting ever picks int8.
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
    long_texts : {"truncate", "chunk"}, default="truncate"
        What becomes of a text longer than the model reads at once.
        ``"truncate"`` embeds its first ``max_seq_length`` tokens only, as
        ``SentenceTransformer.encode`` does. ``"chunk"`` embeds it whole: its
        tokens are cut into windows of ``max_seq_length`` tokens (each with
        the model's special tokens and the prompt) that overlap by
        ``window_overlap`` tokens, each window is embedded as a text of those
        tokens would be, and the windows' vectors are averaged, weighted by
        their tokens, before the model's final normalisation. A text that
        fits one window gets the same vector either way. Only for models that
        skembed's own batching runs (see :attr:`engine_`).
    window_overlap : int, default=0
        Tokens that consecutive windows of ``long_texts="chunk"`` share.
    max_windows : int or None, default=None
        At most this many windows per text with ``long_texts="chunk"``; the
        rest of a longer text is left out, with a
        :class:`~skembed.TruncationWarning`. None: no limit.
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
    fine_tune : bool, default=False
        Fine-tune a copy of the model on the target ``y`` in :meth:`fit`,
        then embed with it: ``fit(X, y)`` of a ``Pipeline`` with a classifier
        or a regressor after it adapts the encoder to the task. Class labels
        (binary or multiclass, strings or numbers): texts of one class pulled
        together, of different classes pushed apart, batch by batch
        (:class:`~skembed.LabelFineTuneConfig`). A continuous ``y`` (a price, a
        rating, a score): texts with close values pulled together
        (:class:`~skembed.NumericFineTuneConfig`). With several text columns,
        one encoder is tuned on the texts of all of them, each with its row's
        target. Memory and time grow with the steps of the recipe, not with
        the number of texts.
    fine_tune_params : dict, str, recipe or None, default=None
        The recipe of ``fine_tune``: None for the best recipe measured for the
        kind of ``y``, a dict of overrides of it, a recipe's name
        (``"labels"``, ``"setfit"``, ``"numbers"``: integer ratings tuned as
        numbers), or a :class:`~skembed.LabelFineTuneConfig`,
        :class:`~skembed.SetFitConfig` or :class:`~skembed.NumericFineTuneConfig`.
{fine_tuning}
    Attributes
    ----------
    n_features_in_ : int
        Number of text columns seen in :meth:`fit`.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Column names seen in :meth:`fit`, when ``X`` had string column names.
    embedding_dim_ : int
        Dimension of one text's vector.
    backend_ : {"sentence-transformers", "transformers", "openvino"}
        The backend that runs the model: ``backend``, with ``"auto"`` resolved
        at fit (on this machine).
    quantized_model_ : QuantizedModel or None
        With ``precision="int8"``, the OpenVINO model quantised in :meth:`fit`
        (it pickles and saves with the vectorizer); None otherwise.
    engine_ : {"skembed", "sentence-transformers"}
        Which code computes the vectors: skembed's own batching (a
        transformers network followed by pooling, dense and normalisation
        modules), or ``SentenceTransformer.encode`` (every other model, e.g.
        static embeddings). Reading it loads the model if it is not loaded.
    fine_tuned_model_ : TunedEncoder or None
        The encoder fine-tuned in :meth:`fit` (what :meth:`transform` embeds
        with), or None without ``fine_tune``: ``os.fspath`` of it is a folder
        that ``SentenceTransformer`` loads, and it pickles with its weights.
    fine_tune_history_ : dict of ndarray or None
        The training loss of that fine-tuning: arrays ``"step"``, ``"epoch"``,
        ``"loss"`` and ``"stopped"`` (empty but at the log where early
        stopping ended training, which says why), one entry per log
        (``pandas.DataFrame(...)`` makes it a table).

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
        "long_texts": [StrOptions(set(LONG_TEXT_POLICIES))],
        "window_overlap": [Interval(Integral, 0, None, closed="left")],
        "max_windows": [Interval(Integral, 1, None, closed="left"), None],
        "revision": [str, None],
        "trust_remote_code": ["boolean"],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "normalize": ["boolean"],
        "handle_missing": [StrOptions(set(MISSING_POLICIES))],
        "show_progress_bar": ["boolean", StrOptions({"auto"})],
        "warn_on_truncation": ["boolean"],
        "cache": [None, str, os.PathLike, EmbeddingCache],
        **fine_tuning_constraints(*RECIPE_CLASSES),
    }

    def __init__(
        self,
        model=DEFAULT_MODEL,
        *,
        backend="sentence-transformers", device="auto", precision="float32",
        max_seq_length=None, prompt=None, prompt_name=None, truncate_dim=None,
        long_texts="truncate", window_overlap=WINDOW_OVERLAP, max_windows=None,
        revision=None, trust_remote_code=False,
        batch_size=32, normalize=False, handle_missing="error",
        show_progress_bar="auto", warn_on_truncation=True, cache=None,
        fine_tune=False, fine_tune_params=None, fine_tune_dir=None, random_state=None,
    ):
        self.model = model
        self.backend = backend
        self.device = device
        self.precision = precision
        self.max_seq_length = max_seq_length
        self.prompt = prompt
        self.prompt_name = prompt_name
        self.truncate_dim = truncate_dim
        self.long_texts = long_texts
        self.window_overlap = window_overlap
        self.max_windows = max_windows
        self.revision = revision
        self.trust_remote_code = trust_remote_code
        self.batch_size = batch_size
        self.normalize = normalize
        self.handle_missing = handle_missing
        self.show_progress_bar = show_progress_bar
        self.warn_on_truncation = warn_on_truncation
        self.cache = cache
        self.fine_tune = fine_tune
        self.fine_tune_params = fine_tune_params
        self.fine_tune_dir = fine_tune_dir
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.allow_nan = self.handle_missing != "error"
        tags.target_tags.required = bool(self.fine_tune)
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    def _encoder_config(self) -> EncoderConfig:
        """The model options of the parameters as they are now (what fit reads)."""
        return EncoderConfig.from_params(self.get_params(deep=False))

    def _fitted_config(self) -> EncoderConfig:
        """The model options fixed at fit, on the device asked now: what transform encodes
        with. A fine-tuned encoder's folder, or a hub model pinned to its commit at fit."""
        config = EncoderConfig.from_params({**self._frozen.values, "device": self.device})
        config = replace(config, backend=getattr(self, "backend_", None) or config.backend,
                         int8_model=getattr(self, "quantized_model_", None))
        if self.fine_tuned_model_ is not None:
            return replace(config, model=os.fspath(self.fine_tuned_model_), revision=None)
        identity = self._model_identity
        if identity is not None and identity.startswith("hub:"):
            return replace(config, revision=identity.rpartition("@")[2])
        return config

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_runtime", None)  # the loaded model's plan: this process's alone
        return state

    def _validate_columns(self, X, *, reset: bool):
        handle_missing = self.handle_missing if reset else self._frozen["handle_missing"]
        return validate_text_columns(self, X, reset=reset, handle_missing=handle_missing)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Check ``X`` and learn the number and names of its text columns.

        No text is embedded: the model has nothing to learn from ``X``.
        With ``fine_tune=True``, first fine-tune a copy of the model on the
        class labels ``y``. A fit that fails leaves the vectorizer as it was.

        Parameters
        ----------
        X : list, ndarray, pandas/polars Series or DataFrame
            One text column (1-D) or several (2-D).
        y : array-like of shape (n_samples,) or None
            Class labels, with ``fine_tune=True``; ignored otherwise.

        Returns
        -------
        self : EmbeddingVectorizer
        """
        self._fit(X, y)
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
        self._check_fitted()
        columns = self._validate_columns(X, reset=False)
        return self._embed_columns(columns)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X, y=None):
        """Fit to ``X`` (and ``y``), then embed it; the same as ``fit(X, y).transform(X)``."""
        return self._embed_columns(self._fit(X, y))

    def _fit(self, X, y):
        """Fit, all or nothing; returns the validated columns."""
        with all_or_nothing(self):
            columns = self._validate_columns(X, reset=True)
            check_model_location(os.fspath(self.model))  # a mistyped path before any work
            load_request(self._encoder_config())  # and settings no backend can honour
            cache = resolve_cache(self.cache)
            if cache is not None:
                cache.open()  # a cache that cannot be written fails now, not after training
            self._frozen = FrozenParameters(self, LIVE_PARAMETERS)
            self.fine_tuned_model_ = self.fine_tune_history_ = None
            self.backend_ = self.quantized_model_ = self._model_identity = None
            if self.fine_tune:
                self.fine_tuned_model_, self.fine_tune_history_ = self._fine_tune(columns, y)
            self.backend_ = _engine.resolve_backend(self._fitted_config())
            if self.precision == "int8":
                self.quantized_model_ = self._quantize(columns)
            self._runtime = {}
            # The key first: a cache file knows the digests of the model's files, which
            # identifying the model would otherwise compute again.
            key = self._model_key(cache, warn=False)
            self._model_identity = self._identify_model()
            key = key or self._model_key(cache)
            dim = None if key is None else cache.dimension(key)
            # Set last: a fit that failed to load the model leaves no embedding_dim_.
            self.embedding_dim_ = self._plan().dimension if dim is None else dim
        return columns

    def _quantize(self, columns) -> QuantizedModel:
        """The fitted model quantised to int8, calibrated on the distinct fit texts."""
        from ._openvino import nncf_version, versions

        texts = [t for column, missing in zip(columns.columns, columns.missing)
                 for t in column[~missing].tolist()]
        config = self._fitted_config()
        folder, n_texts = _engine.calibrate(config, texts,
                                            show_progress_bar=self.show_progress_bar is True)
        info = {"kind": "openvino-int8", "base_model": config.model,
                "n_calibration_texts": n_texts, "openvino": versions()["openvino"],
                "nncf": nncf_version()}
        return QuantizedModel.adopt(folder, info)

    def _identify_model(self) -> str | None:
        """The identity of the fitted model's files: a folder's digest or a hub commit
        (loading the model first if the hub commit is not known yet)."""
        config = self._fitted_config()
        identity = model_identity(config.model, load_arguments(config))
        if identity is None:  # a hub model not downloaded yet: load it, then read its commit
            self._plan()
            identity = model_identity(config.model, load_arguments(config))
        return identity

    def _fine_tune(self, columns, y) -> tuple:
        if y is None:
            raise ValueError(
                f"{type(self).__name__} with fine_tune=True requires y to be passed, but the "
                "target y is None: it learns from class labels or numbers, call fit(X, y)."
            )
        y = _check_y(y, estimator=self)
        check_consistent_length(columns.columns[0], y)
        recipe, targets = vectorizer_recipe(self.fine_tune_params, y)
        numeric = isinstance(recipe, NumericFineTuneConfig)
        base = training_config(self._encoder_config())
        _engine.dimension(base)  # every model setting is checked on the model before training
        # Every column's texts, each with its row's target; a missing cell is no text.
        texts, rows = [], []
        for column, missing in zip(columns.columns, columns.missing):
            texts.extend(column[~missing].tolist())
            rows.append(targets[~missing])
        targets = np.concatenate(rows)
        show = wants_progress_bar(self.show_progress_bar, recipe.texts_read(len(texts)))
        train_on = train_on_numbers if numeric else train_on_labels

        def train(folder, seed):
            return train_on(base, texts, targets, folder, recipe=recipe, seed=seed,
                            show_progress_bar=show)

        info = {"base_model": base.model, "target": "numbers" if numeric else "class labels",
                "n_examples": len(texts), "recipe": {"name": type(recipe).__name__,
                                                     **recipe.to_dict()}}
        return fine_tune(train, info=info, random_state=self.random_state,
                         copy_to=self.fine_tune_dir)

    def _check_fitted(self) -> None:
        """Fitted, and with the parameters it was fitted with."""
        check_is_fitted(self, "embedding_dim_")
        self._frozen.check(self)

    def _plan(self) -> _engine.Plan:
        """The engine's plan of the fitted model on the device asked now: prepared once,
        again only when the device changes or its model was released."""
        runtime = self.__dict__.setdefault("_runtime", {})
        plan = runtime.get("plan")
        if plan is not None and plan.live and runtime.get("asked") == self.device:
            return plan  # the per-call path: nothing to resolve again
        config = self._fitted_config()
        device = load_request(config).device  # resolved, and checked against the backend
        plan = runtime.get("plan")
        if plan is None or not plan.live or runtime.get("device") != device:
            if self.fine_tuned_model_ is not None:
                self.fine_tuned_model_.check_folder()
            found = model_identity(config.model, load_arguments(config))
            if self._model_identity is not None and found != self._model_identity:
                raise ValueError(
                    f"The model {config.model!r} is not the one this {type(self).__name__} "
                    f"was fitted with: its files changed since fit ({self._model_identity} "
                    f"then, {found} now). Fit it again, or restore the model's files."
                )
            runtime["plan"], runtime["device"] = _engine.prepare(config), device
        runtime["asked"] = self.device
        return runtime["plan"]

    @property
    def engine_(self) -> str:
        self._check_fitted()
        return self._plan().engine

    def save_encoder(self, path) -> str:
        """Save the encoder this fitted vectorizer embeds with to a folder.

        The folder is an ordinary sentence-transformers folder:
        ``SentenceTransformer(path)`` and ``EmbeddingVectorizer(model=path)``
        load it. A fine-tuned encoder's files are copied exactly; a hub model
        is saved from its weights.

        Parameters
        ----------
        path : str or path-like
            Destination folder; created, or its files replaced.

        Returns
        -------
        path : str
            The absolute path of the folder.
        """
        self._check_fitted()
        if self.fine_tuned_model_ is not None:
            return self.fine_tuned_model_.save(path)
        model = self._frozen["model"]
        if isinstance(model, TunedEncoder):
            return model.save(path)
        return save_model(self._fitted_config(), path)

    def _model_key(self, cache, warn: bool = True):
        """The cache's key for the fitted model; None without a cache or for an unknown hub
        model."""
        if cache is None:
            return None
        config = self._fitted_config()
        key = cache.model_key(config, device_type(config.device))
        if key is None and warn:
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
        self._check_fitted()
        return self._embed_unique(texts)

    def _embed_unique(self, texts: list) -> np.ndarray:
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
        return normalize_rows(vectors, copy=False) if self._frozen["normalize"] else vectors

    def _encode(self, texts: list) -> np.ndarray:
        return _engine.encode(
            None, texts, plan=self._plan(), batch_size=self.batch_size,
            show_progress_bar=wants_progress_bar(self.show_progress_bar, len(texts)),
            warn_on_truncation=self.warn_on_truncation,
        )

    def _embed_columns(self, columns) -> np.ndarray:
        texts, positions = unique_texts(columns.columns)
        vectors = self._embed_unique(texts)
        dim = vectors.shape[1]
        if columns.n_columns == 1 and len(texts) == columns.n_rows:
            # Every row is distinct, so the vectors already are the output in row
            # order: no second copy (it would double the peak memory).
            if self._frozen["handle_missing"] == "zero":
                vectors[columns.missing[0]] = 0.0
            return vectors
        out = np.empty((columns.n_rows, columns.n_columns, dim), dtype=np.float32)
        for j, (pos, missing) in enumerate(zip(positions, columns.missing)):
            out[:, j, :] = vectors[pos]
            if self._frozen["handle_missing"] == "zero":
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


EmbeddingVectorizer.__doc__ = EmbeddingVectorizer.__doc__.replace("{fine_tuning}\n",
                                                                  FINE_TUNING_DOC)

_WARNED: set = set()


def _warn_once(topic: str, message: str) -> None:
    if topic not in _WARNED:
        _WARNED.add(topic)
        warnings.warn(message, RuntimeWarning, stacklevel=4)
