"""Embed text collections that live on Dask, partition by partition.

:func:`embed` turns a Dask Series, DataFrame (one or more text columns),
Array or Bag of texts into a lazy Dask Array of embeddings in row order, or
a Dask DataFrame that keeps the index and divisions. It only calls Dask's own
``map_partitions`` / ``map_blocks`` with an explicit ``meta``, so it runs on
any Dask scheduler: threads, processes or a ``distributed`` cluster.

What travels in the task graph is the estimator, which pickles to a few
kilobytes: its model is never pickled, unless it was fine-tuned (then its
tuned weights travel with it, as in any pickle of it, and each worker writes
them to a folder of its own). Each worker process loads the model the first
time one of its tasks needs it and keeps it for the following tasks; a worker
that restarts loads it again by itself.

This module needs the optional dependencies of ``skembed[dask]``.
"""

from __future__ import annotations

import copy
from numbers import Integral

import numpy as np
import pandas as pd

try:
    import dask
    import dask.array as da
    import dask.bag as db
    import dask.dataframe as dd
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "skembed.dask needs Dask and distributed: pip install 'skembed[dask]'"
    ) from exc

from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from ._vectorizer import EmbeddingVectorizer

__all__ = ["embed"]

OUTPUTS = ("array", "dataframe")

#: Placeholder text of the one-row sample an unfitted vectorizer is fitted on;
#: fitting reads only the number and names of the columns, never the texts.
_PLACEHOLDER = "skembed"


def _set_torch_threads(n_threads):
    if n_threads is None:
        return
    import torch

    if torch.get_num_threads() != n_threads:
        torch.set_num_threads(n_threads)


def _partition_error(exc: Exception, number, total, part) -> Exception:
    """``exc`` with a message that names the partition it came from.

    Of the same class where its constructor takes a message, else of the
    nearest built-in class it derives from.
    """
    where = f"partition {number}" if total is None else f"partition {number} of {total}"
    index = getattr(part, "index", None)
    if index is not None and len(index):
        first, last = index[[0, -1]].tolist()
        where += f", index labels {first!r} to {last!r}"
    message = f"skembed could not embed {where}: {exc}"
    for cls in type(exc).__mro__:
        try:
            return cls(message)
        except Exception:  # noqa: BLE001 - a constructor that wants more than a message
            continue
    return RuntimeError(message)  # pragma: no cover - BaseException takes a message


def _embed_part(part, vectorizer, n_out, torch_threads, number, total) -> np.ndarray:
    _set_torch_threads(torch_threads)
    if len(part) == 0:
        return np.empty((0, n_out), dtype=np.float32)
    try:
        return vectorizer.transform(part)
    except Exception as exc:
        raise _partition_error(exc, number, total, part) from exc


def _embed_partition(part, vectorizer, n_out, torch_threads, total, partition_info=None):
    info = partition_info or {}
    return _embed_part(part, vectorizer, n_out, torch_threads, info.get("number"), total)


def _embed_partition_frame(part, vectorizer, names, torch_threads, total, partition_info=None):
    vectors = _embed_partition(part, vectorizer, len(names), torch_threads, total, partition_info)
    return pd.DataFrame(vectors, index=part.index, columns=names, copy=False)


def _embed_block(block, vectorizer, n_out, torch_threads, block_info=None):
    info = (block_info or {}).get(0, {})
    number = info.get("chunk-location", (None,))[0]
    total = info.get("num-chunks", (None,))[0]
    return _embed_part(block, vectorizer, n_out, torch_threads, number, total)


def _fit(vectorizer, sample):
    return vectorizer.fit(sample)


def _as_text_array(X):
    """A Dask Bag or Array of texts as a Dask Array whose columns are one chunk."""
    if isinstance(X, db.Bag):
        parts = [
            da.from_delayed(dask.delayed(np.array)(part, dtype=object), (np.nan,), dtype=object)
            for part in X.to_delayed()
        ]
        return da.concatenate(parts) if len(parts) > 1 else parts[0]
    if X.ndim not in (1, 2):
        raise ValueError(
            f"Expected a 1-D or 2-D Dask Array of texts, got one with {X.ndim} dimensions."
        )
    if X.ndim == 2 and X.numblocks[1] > 1:
        X = X.rechunk({1: -1})
    return X


def embed(vectorizer, X, *, columns=None, output="array", torch_threads=None):
    """Embed the texts of a Dask collection, lazily and in row order.

    Parameters
    ----------
    vectorizer : EmbeddingVectorizer
        Fitted or not. With a fitted vectorizer the call computes nothing.
        An unfitted one is not changed: a clone of it is fitted on a one-row
        placeholder with the columns of ``X`` (fitting reads no text), in one
        Dask task run during the call, because the width of the result (the
        model's dimension) must be known before it is computed; the model
        loads where the work runs, never in the client.
    X : dask Series, DataFrame, Array or Bag
        The texts: a Series or 1-D Array is one text column, a DataFrame or
        2-D Array has one text column per column, and a Bag holds one text
        per item. Partitions may be empty.
    columns : str or list of str, default=None
        The text columns of a DataFrame ``X``; None takes them all.
    output : {"array", "dataframe"}, default="array"
        Return a Dask Array, or a Dask DataFrame with the index and divisions
        of ``X`` and the columns ``vectorizer.get_feature_names_out()``. A Bag
        or Array has no index, so it gives an Array only.
    torch_threads : int or None, default=None
        Threads torch may use to embed a partition, set with
        ``torch.set_num_threads`` in the thread that runs it, just before.
        ``distributed`` starts its workers with one BLAS/OpenMP thread each;
        on a worker with ``t`` task threads and ``c`` cores, ``c // t`` lets
        torch use the cores. None leaves torch as it is.

    Returns
    -------
    dask Array of shape (n_samples, n_columns * dim), float32, or dask DataFrame
        ``dim`` is the vectorizer's ``embedding_dim_``. Row ``i`` embeds row
        ``i`` of ``X``; the row chunks follow the
        partitions of ``X`` (their sizes are unknown until computed, as for
        any Dask DataFrame turned into an Array).

    Raises
    ------
    ValueError
        At call time for a wrong ``output`` or ``columns`` or a fitted
        vectorizer with other columns. When computed, an error raised by a
        partition (say, a missing value with ``handle_missing="error"``) is
        re-raised with the partition's number and index labels in its message.

    Examples
    --------
    >>> import dask.dataframe as dd
    >>> import pandas as pd
    >>> from skembed import EmbeddingVectorizer
    >>> from skembed.dask import embed
    >>> texts = pd.Series(["A man plays a guitar.", "A dog runs.", "Hola"], name="text")
    >>> X = embed(EmbeddingVectorizer(MINILM), dd.from_pandas(texts, npartitions=2))
    >>> X.compute().shape
    (3, 384)
    """
    _check_arguments(vectorizer, output, torch_threads)
    X, frame_like, n_columns, sample = _text_collection(X, columns, output)
    vectorizer = _fitted(vectorizer, sample)
    _check_fitted_columns(vectorizer, X, n_columns)
    return _map(X, vectorizer, frame_like, n_columns, output, torch_threads)


def _check_arguments(vectorizer, output, torch_threads) -> None:
    if not isinstance(vectorizer, EmbeddingVectorizer):
        raise TypeError(
            f"vectorizer must be an EmbeddingVectorizer, got {type(vectorizer).__name__}."
        )
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}.")
    if torch_threads is not None and (
        not isinstance(torch_threads, Integral) or isinstance(torch_threads, bool)
        or torch_threads < 1
    ):
        raise ValueError(f"torch_threads must be a positive int or None, got {torch_threads!r}.")


def _text_collection(X, columns, output) -> tuple:
    """``X`` as the collection to map (selected columns; a Bag as an Array), whether it is a
    DataFrame or Series, its number of text columns and a one-row placeholder sample."""
    frame_like = isinstance(X, dd.DataFrame | dd.Series)
    if columns is not None:
        if not isinstance(X, dd.DataFrame):
            raise ValueError(
                f"columns= selects columns of a Dask DataFrame, not of a {type(X).__name__}."
            )
        names = [columns] if isinstance(columns, str) else list(columns)
        unknown = [c for c in names if c not in X.columns]
        if unknown:
            raise ValueError(f"columns {unknown} are not in X; it has {list(X.columns)}.")
        X = X[names]
    if frame_like:
        n_columns = len(X.columns) if isinstance(X, dd.DataFrame) else 1
        sample = X._meta.iloc[:0].reindex([0]).astype(object)
        sample[:] = _PLACEHOLDER
        return X, True, n_columns, sample
    if isinstance(X, db.Bag | da.Array):
        if output == "dataframe":
            raise ValueError(
                "output='dataframe' needs a Dask DataFrame or Series: a "
                f"{type(X).__name__} has no index to keep. Use output='array'."
            )
        X = _as_text_array(X)
        n_columns = 1 if X.ndim == 1 else X.shape[1]
        sample = np.full((1,) if X.ndim == 1 else (1, n_columns), _PLACEHOLDER, dtype=object)
        return X, False, n_columns, sample
    raise TypeError(
        "X must be a Dask DataFrame, Series, Array or Bag of texts, got "
        f"{type(X).__name__}; embed in-memory data with vectorizer.transform."
    )


def _fitted(vectorizer, sample):
    """``vectorizer`` if fitted; else a clone fitted on ``sample`` in one Dask task.

    A Dask collection's width must be known before it is computed, and the
    width of the vectors is the model's dimension: that one task (on a
    worker, where the model then stays) is all this call computes.
    """
    try:
        check_is_fitted(vectorizer)
    except NotFittedError:
        if vectorizer.precision == "int8":
            raise ValueError(
                "precision='int8' calibrates the model on the texts given to fit, and an "
                "unfitted vectorizer would be fitted on a placeholder here: fit it on a "
                "sample of your texts first (vectorizer.fit(sample)), then pass it fitted."
            ) from None
        vectorizer = dask.delayed(_fit, pure=False)(clone(vectorizer), sample).compute()
    if vectorizer.show_progress_bar == "auto":
        # Progress bars of workers end up in their logs: Dask has its own.
        vectorizer = copy.copy(vectorizer)
        vectorizer.show_progress_bar = False
    return vectorizer


def _check_fitted_columns(vectorizer, X, n_columns) -> None:
    if vectorizer.n_features_in_ != n_columns:
        raise ValueError(
            f"X has {n_columns} text columns, but the vectorizer was fitted on "
            f"{vectorizer.n_features_in_}."
        )
    fitted_names = getattr(vectorizer, "feature_names_in_", None)
    if fitted_names is not None and isinstance(X, dd.DataFrame):
        if [str(c) for c in X.columns] != list(fitted_names):
            raise ValueError(
                f"X has the text columns {list(X.columns)}, but the vectorizer was fitted "
                f"on {list(fitted_names)}; select them with columns=."
            )


def _map(X, vectorizer, frame_like, n_columns, output, torch_threads):
    """The lazy collection of the vectors of ``X``, partition by partition."""
    n_out = n_columns * vectorizer.embedding_dim_
    meta = np.empty((0, n_out), dtype=np.float32)
    if not frame_like:
        kwargs = {"new_axis": 1} if X.ndim == 1 else {}
        return X.map_blocks(
            _embed_block, vectorizer, n_out, torch_threads, dtype=np.float32, meta=meta,
            chunks=(X.chunks[0], (n_out,)), token="skembed-embed", **kwargs,
        )
    if output == "array":
        return X.map_partitions(
            _embed_partition, vectorizer, n_out, torch_threads, X.npartitions, meta=meta,
            token="skembed-embed",
        )
    names = [str(name) for name in vectorizer.get_feature_names_out()]
    frame_meta = pd.DataFrame(meta, index=X._meta.index, columns=names)
    return X.map_partitions(
        _embed_partition_frame, vectorizer, names, torch_threads, X.npartitions, meta=frame_meta,
        token="skembed-embed",
    )
