"""Turn whatever a scikit-learn user passes as ``X`` into columns of text.

Knows nothing of models: it validates cells, applies the missing-value policy
and reports every problem with its column and row. It imports nothing of
skembed but the scikit-learn shim :mod:`skembed._sklearn`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import issparse

from ._sklearn import _check_feature_names


@dataclass
class TextColumns:
    """Text columns of equal length, as validated from the user's ``X``.

    Attributes
    ----------
    columns : list of ndarray of object
        One array of ``str`` per column; missing cells hold ``""``.
    missing : list of ndarray of bool
        Where each column had a missing value (None, NaN, pd.NA, NaT).
    names : list of str or None
        Column names when ``X`` was a dataframe with string column names.
    index : sequence or None
        Row labels of a pandas input, used in error messages.
    """

    columns: list
    missing: list
    names: list | None
    index: object = None

    @property
    def n_rows(self) -> int:
        return len(self.columns[0])

    @property
    def n_columns(self) -> int:
        return len(self.columns)


class MissingTextError(ValueError):
    """A missing cell (None, NaN, pd.NA, NaT) where a text is required.

    Attributes
    ----------
    where : str
        The first missing cell, as "column ..., row ...".
    n_missing : int
        How many cells of that column are missing.
    """

    def __init__(self, where: str, n_missing: int,
                 remedy: str = "Fill it, drop it, or set handle_missing='empty' or 'zero'."):
        self.where = where
        self.n_missing = n_missing
        super().__init__(
            f"Input contains NaN (a missing value) in {where}; {n_missing} missing in that "
            f"column. {remedy}"
        )


def _module_name(obj) -> str:
    return type(obj).__module__.split(".")[0]


def _describe_row(row: int, index) -> str:
    if index is None:
        return f"row {row}"
    label = index[row]
    label = label.item() if isinstance(label, np.generic) else label  # 7, not np.int64(7)
    return f"row {row} (index label {label!r})"


def _describe_column(col: int, names) -> str:
    if names is None:
        return f"column {col}"
    return f"column {names[col]!r} (position {col})"


def _cell_to_text(value, where: str) -> str:
    """Return the text of one non-missing cell that is not a plain str, or raise."""
    if isinstance(value, str):
        return str(value)  # np.str_ and other str subclasses become plain str
    if isinstance(value, bytes | np.bytes_):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"Bytes at {where} are not valid UTF-8: {exc}") from None
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, numbers.Complex) and not isinstance(value, numbers.Real):
        raise ValueError(f"Complex data not supported: {value!r} at {where}.")
    if isinstance(value, numbers.Real):
        if math.isinf(float(value)):
            raise ValueError(
                f"Input contains infinity ({value!r}) at {where}; a text column "
                "cannot hold an infinite number."
            )
        return str(value)
    raise TypeError(
        f"Expected text at {where}, got {type(value).__name__} {value!r:.80}. "
        "Each cell must be a str (numbers are read as their text)."
    )


def _check_unicode(texts: np.ndarray, where) -> None:
    """Raise a ValueError naming the first text that is not valid Unicode.

    A lone surrogate (``"\\ud800"``, left by bytes decoded with
    ``errors="surrogateescape"``) cannot be encoded as UTF-8, so no tokenizer
    can read it.
    """
    for row, text in enumerate(texts):
        if text.isascii():
            continue
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"Invalid text at {where(row)}: character {exc.start} is "
                f"{text[exc.start]!r}, a lone surrogate, which is not valid Unicode (the trace "
                "of bytes decoded with errors='surrogateescape'). Repair or drop that text."
            ) from None


#: Columns of at most this many cells are first checked for holding plain strings only.
_FAST_CHECK_ROWS = 64


def _column_from_array(values: np.ndarray, col, names, index, handle_missing):
    n = len(values)

    def where(row: int) -> str:
        return f"{_describe_column(col, names)}, {_describe_row(row, index)}"

    if values.dtype.kind == "U":
        texts = values.astype(object)
        _check_unicode(texts, where)
        return texts, np.zeros(n, dtype=bool)
    if values.dtype.kind == "c":
        raise ValueError(f"Complex data not supported in {_describe_column(col, names)}.")
    values = values.astype(object, copy=False)
    if n <= _FAST_CHECK_ROWS and all(type(v) is str for v in values):
        # Plain strings (a service's few texts): nothing is missing, nothing to convert.
        _check_unicode(values, where)
        return values.copy(), np.zeros(n, dtype=bool)
    missing = np.asarray(pd.isna(values), dtype=bool)
    if missing.any() and handle_missing == "error":
        raise MissingTextError(where(int(np.flatnonzero(missing)[0])), int(missing.sum()))
    texts = values.copy()
    texts[missing] = ""
    for row in np.flatnonzero([type(v) is not str for v in texts]):
        texts[row] = _cell_to_text(texts[row], where(int(row)))
    _check_unicode(texts, where)
    return texts, missing


def _raw_columns(X):
    """Split X into (list of 1-D arrays, names, index) without checking cells."""
    if isinstance(X, str | bytes):
        raise ValueError(
            "Iterable over raw text documents expected, string object received. "
            "Wrap a single text in a list: ['my text']."
        )
    if issparse(X):
        raise TypeError(
            "Sparse input is not supported: skembed embeds text, "
            "pass a dense array, list or dataframe of strings."
        )
    if isinstance(X, pd.DataFrame):
        names = [str(c) for c in X.columns]
        if not all(isinstance(c, str) for c in X.columns):
            names = None
        cols = [X.iloc[:, j].to_numpy(dtype=object) for j in range(X.shape[1])]
        return cols, names, X.index
    if isinstance(X, pd.Series):
        return [X.to_numpy(dtype=object)], None, X.index
    if _module_name(X) == "polars":
        import polars as pl

        if isinstance(X, pl.DataFrame):
            cols = [np.array(X.get_column(c).to_list(), dtype=object) for c in X.columns]
            return cols, list(X.columns), None
        if isinstance(X, pl.Series):
            return [np.array(X.to_list(), dtype=object)], None, None
    if isinstance(X, dict):
        raise TypeError("A dict is not a table of texts: pass a DataFrame or a list.")
    if not hasattr(X, "__len__") and not hasattr(X, "__array__"):
        if hasattr(X, "__iter__"):
            X = list(X)
        else:
            raise TypeError(
                f"Expected a list, array, Series or DataFrame of text, got {type(X).__name__}."
            )
    if isinstance(X, list | tuple) and X and all(isinstance(v, str) for v in X):
        return [np.array(X, dtype=object)], None, None
    try:
        array = np.asarray(X) if hasattr(X, "__array__") else np.array(X, dtype=object)
    except ValueError as exc:
        raise ValueError(f"Rows of X have different numbers of columns: {exc}") from None
    if array.dtype.kind == "O" and array.ndim == 1 and any(
        isinstance(v, list | tuple | np.ndarray) for v in array
    ):
        raise ValueError("Rows of X have different numbers of columns.")
    if array.ndim == 0:
        raise ValueError(f"Expected a 1-D or 2-D collection of text, got a scalar {X!r}.")
    if array.ndim == 1:
        return [array], None, None
    if array.ndim == 2:
        return [array[:, j] for j in range(array.shape[1])], None, None
    raise ValueError(f"Expected 1-D or 2-D input, got an array with {array.ndim} dimensions.")


def to_text_columns(X, *, handle_missing: str = "error", min_columns: int = 1) -> TextColumns:
    """Validate ``X`` and return its text columns.

    Parameters
    ----------
    X : list, tuple, ndarray, pandas/polars Series or DataFrame
        A single text column (1-D) or several (2-D).
    handle_missing : {"error", "empty", "zero"}
        ``"error"`` raises a :class:`MissingTextError` naming the first
        missing cell; the other policies (see ``_config.MISSING_POLICIES``)
        record missing cells in :attr:`TextColumns.missing`.
    min_columns : int
        Raise if ``X`` has fewer columns (pairs need two).

    Examples
    --------
    >>> cols = to_text_columns([["a", "b"], ["c", None]], handle_missing="empty")
    >>> cols.n_rows, cols.n_columns, cols.missing[1].tolist()
    (2, 2, [False, True])
    """
    raw, names, index = _raw_columns(X)
    # With no column at all, the rows are counted on X itself (shape (n, 0)).
    n_rows = len(raw[0]) if raw else int(getattr(X, "shape", (len(X),))[0])
    if len(raw) < max(min_columns, 1):
        raise ValueError(
            f"Found array with {len(raw)} feature(s) (shape=({n_rows}, {len(raw)})) while "
            f"a minimum of {max(min_columns, 1)} is required: X needs at least "
            f"{max(min_columns, 1)} text column(s)."
        )
    if n_rows == 0:
        raise ValueError(
            f"Found array with 0 sample(s) (shape=(0, {len(raw)})) while a minimum of 1 is "
            "required."
        )
    columns, missing = [], []
    for col, values in enumerate(raw):
        texts, miss = _column_from_array(np.asarray(values), col, names, index, handle_missing)
        columns.append(texts)
        missing.append(miss)
    return TextColumns(columns=columns, missing=missing, names=names, index=index)


def validate_text_columns(estimator, X, *, reset: bool, handle_missing: str, min_columns: int = 1):
    """Check ``X``'s column names and count against ``estimator`` and read its texts.

    With ``reset=True`` the estimator learns them (``n_features_in_``,
    ``feature_names_in_``); warnings and errors name the estimator the user called.
    """
    # Names first, as scikit-learn does: a renamed column is reported as
    # such, not as the missing values a reindexed dataframe would hold. A plain list
    # has none, and with none seen at fit there is nothing to check (nor to warn about).
    if reset or not isinstance(X, list | tuple) or hasattr(estimator, "feature_names_in_"):
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


def unique_texts(columns) -> tuple[list, list]:
    """Distinct texts of all columns, and for each column the position of each cell.

    Examples
    --------
    >>> texts, positions = unique_texts([np.array(["b", "a", "b"], dtype=object)])
    >>> texts, positions[0].tolist()
    (['b', 'a'], [0, 1, 0])
    """
    position_of: dict = {}
    positions = []
    for column in columns:
        positions.append(
            np.fromiter(
                (position_of.setdefault(t, len(position_of)) for t in column),
                dtype=np.intp,
                count=len(column),
            )
        )
    return list(position_of), positions
