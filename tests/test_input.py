"""Input normalisation: every accepted container, every refused one, every cell policy."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from conftest import polars
import scipy.sparse as sp

from skembed._input import to_text_columns, unique_texts


def _texts(columns):
    return [column.tolist() for column in columns.columns]


@pytest.mark.parametrize(
    "X",
    [
        ["a", "b", "c"],
        ("a", "b", "c"),
        np.array(["a", "b", "c"]),
        np.array(["a", "b", "c"], dtype=object),
        pd.Series(["a", "b", "c"]),
        (t for t in ["a", "b", "c"]),
    ],
    ids=["list", "tuple", "str-array", "object-array", "series", "generator"],
)
def test_one_text_column(X):
    columns = to_text_columns(X)
    assert (columns.n_rows, columns.n_columns) == (3, 1)
    assert _texts(columns) == [["a", "b", "c"]]
    assert all(type(t) is str for t in columns.columns[0])
    assert not columns.missing[0].any()


@pytest.mark.parametrize(
    "X, names",
    [
        ([["a", "x"], ["b", "y"]], None),
        (np.array([["a", "x"], ["b", "y"]]), None),
        (pd.DataFrame({"title": ["a", "b"], "body": ["x", "y"]}), ["title", "body"]),
        (pd.DataFrame([["a", "x"], ["b", "y"]]), None),  # integer column labels
    ],
    ids=["list-of-rows", "2d-array", "pandas", "pandas-int-columns"],
)
def test_several_text_columns(X, names):
    columns = to_text_columns(X)
    assert (columns.n_rows, columns.n_columns) == (2, 2)
    assert _texts(columns) == [["a", "b"], ["x", "y"]]
    assert columns.names == names


def test_series_keeps_row_order_and_index_labels():
    series = pd.Series(["c", "a", "b"], index=[30, 10, 20])
    columns = to_text_columns(series)
    assert _texts(columns) == [["c", "a", "b"]]
    assert list(columns.index) == [30, 10, 20]


def test_cells_that_are_not_str_become_their_text():
    X = np.array(["text", 3, 2.5, True, b"caf\xc3\xa9", np.str_("np")], dtype=object)
    assert _texts(to_text_columns(X)) == [["text", "3", "2.5", "True", "café", "np"]]
    assert all(type(t) is str for t in to_text_columns(X).columns[0])


def test_pandas_string_and_categorical_dtypes():
    df = pd.DataFrame(
        {
            "s": pd.Series(["a", "b"], dtype="string"),
            "c": pd.Series(["x", "y"], dtype="category"),
        }
    )
    assert _texts(to_text_columns(df)) == [["a", "b"], ["x", "y"]]


@pytest.mark.parametrize("missing", [None, np.nan, float("nan"), pd.NA, pd.NaT, np.float32("nan")])
def test_missing_value_is_an_error_naming_column_and_row_label(missing):
    df = pd.DataFrame({"title": ["a", "b", "c"], "body": ["x", "y", "z"]}, index=["r1", "r2", "r3"])
    df["body"] = df["body"].astype(object)
    df.loc["r2", "body"] = missing
    with pytest.raises(ValueError, match=r"NaN.*column 'body'.*row 1 \(index label 'r2'\)"):
        to_text_columns(df)


def test_missing_value_in_unnamed_input_names_position():
    with pytest.raises(ValueError, match=r"column 1, row 2; 1 missing in that column"):
        to_text_columns([["a", "x"], ["b", "y"], ["c", None]])


@pytest.mark.extras
def test_polars_series_and_frames_are_text_columns():
    pl = polars()
    assert _texts(to_text_columns(pl.Series(["a", "b", "c"]))) == [["a", "b", "c"]]
    columns = to_text_columns(pl.DataFrame({"title": ["a", "b"], "body": ["x", "y"]}))
    assert _texts(columns) == [["a", "b"], ["x", "y"]] and columns.names == ["title", "body"]
    with pytest.raises(ValueError, match=re.escape("0 sample(s) (shape=(0, 1))")):
        to_text_columns(pl.DataFrame({"a": []}, schema={"a": pl.String}))


@pytest.mark.extras
def test_missing_in_polars_is_an_error():
    pl = polars()
    with pytest.raises(ValueError, match=r"column 'body'.*row 0"):
        to_text_columns(pl.DataFrame({"title": ["a", "b"], "body": [None, "y"]}))


@pytest.mark.parametrize("policy", ["empty", "zero"])
def test_missing_policies_record_the_cells(policy):
    X = pd.Series(["a", None, np.nan, "d", pd.NA], dtype=object)
    columns = to_text_columns(X, handle_missing=policy)
    assert _texts(columns) == [["a", "", "", "d", ""]]
    assert columns.missing[0].tolist() == [False, True, True, False, True]


@pytest.mark.parametrize("X", ["one text", b"one text", np.str_("one text")])
def test_bare_string_is_refused_as_in_sklearn(X):
    with pytest.raises(ValueError, match="Iterable over raw text documents expected"):
        to_text_columns(X)


@pytest.mark.parametrize(
    "X",
    [sp.csr_matrix(np.ones((2, 2))), sp.csr_array(np.ones((2, 2))), sp.coo_matrix(np.ones((2, 2)))],
    ids=["csr_matrix", "csr_array", "coo_matrix"],
)
def test_sparse_input_is_refused(X):
    with pytest.raises(TypeError, match="Sparse input is not supported"):
        to_text_columns(X)


def test_three_dimensional_input_is_refused():
    with pytest.raises(ValueError, match="1-D or 2-D input, got an array with 3 dimensions"):
        to_text_columns(np.full((2, 2, 2), "a"))


def test_scalar_is_refused():
    with pytest.raises(ValueError, match="scalar"):
        to_text_columns(np.array(3))
    with pytest.raises(TypeError, match="Expected a list, array, Series or DataFrame"):
        to_text_columns(3)


@pytest.mark.parametrize(
    "X",
    [np.array([1 + 2j, 3j]), np.array(["a", 1j], dtype=object)],
    ids=["complex-array", "complex-cell"],
)
def test_complex_is_refused(X):
    with pytest.raises(ValueError, match="Complex data not supported"):
        to_text_columns(X)


@pytest.mark.parametrize("value", [np.inf, -np.inf, float("inf"), np.float32("-inf")])
def test_infinity_is_refused_with_its_position(value):
    with pytest.raises(ValueError, match=r"infinity.*column 0, row 1"):
        to_text_columns(np.array(["a", value], dtype=object))


def test_dict_cell_is_refused_with_its_position():
    with pytest.raises(TypeError, match=r"Expected text at column 0, row 1, got dict"):
        to_text_columns(np.array(["a", {"foo": "bar"}], dtype=object))


def test_dict_input_is_refused():
    with pytest.raises(TypeError, match="A dict is not a table of texts"):
        to_text_columns({"title": ["a", "b"]})


def test_list_cell_is_refused():
    with pytest.raises(TypeError, match="got list"):
        to_text_columns(pd.Series(["a", ["b", "c"]]))


@pytest.mark.parametrize(
    "X",
    [[["a", "b"], ["c"]], ["a", ["b", "c"]], [("a", "b"), ("c",)]],
    ids=["rows", "mixed", "tuples"],
)
def test_ragged_rows_are_refused(X):
    with pytest.raises(ValueError, match="different numbers of columns"):
        to_text_columns(X)


@pytest.mark.parametrize(
    "X, shape",
    [
        ([], "(0, 1)"),
        (np.empty((0, 2), dtype=object), "(0, 2)"),
        (pd.DataFrame({"a": [], "b": []}), "(0, 2)"),
    ],
    ids=["list", "array", "pandas"],
)
def test_no_rows_is_refused(X, shape):
    with pytest.raises(ValueError, match=re.escape(f"0 sample(s) (shape={shape})")):
        to_text_columns(X)


@pytest.mark.parametrize(
    "X", [np.empty((3, 0), dtype=object), pd.DataFrame(index=[1, 2, 3]), [[], [], []]]
)
def test_no_columns_is_refused(X):
    with pytest.raises(ValueError, match=r"0 feature\(s\) \(shape=\(3, 0\)\)"):
        to_text_columns(X)


def test_min_columns():
    with pytest.raises(ValueError, match="at least 2 text column"):
        to_text_columns(["a", "b"], min_columns=2)
    assert to_text_columns([["a", "b"]], min_columns=2).n_columns == 2


def test_invalid_utf8_bytes_are_refused():
    with pytest.raises(ValueError, match="not valid UTF-8"):
        to_text_columns(np.array([b"\xff\xfe"], dtype=object))


def test_unique_texts_are_shared_across_columns_in_first_seen_order():
    columns = [np.array(["b", "a", "b"], dtype=object), np.array(["a", "c", "b"], dtype=object)]
    texts, positions = unique_texts(columns)
    assert texts == ["b", "a", "c"]
    assert [p.tolist() for p in positions] == [[0, 1, 0], [1, 2, 0]]
    for column, pos in zip(columns, positions):
        assert [texts[i] for i in pos] == column.tolist()


def test_a_numeric_index_label_is_shown_as_a_plain_number():
    series = pd.Series(["a", None], index=np.array([10, 1006], dtype=np.int64))
    with pytest.raises(ValueError, match=r"row 1 \(index label 1006\)"):
        to_text_columns(series)


@pytest.mark.parametrize(
    "X, where",
    [
        (["ok", "bad \ud800 text"], r"column 0, row 1"),
        (pd.DataFrame({"title": ["ok", "fine"], "body": ["x", "\udcff"]}, index=[5, 9],
                      dtype=object),
         r"column 'body' \(position 1\), row 1 \(index label 9\)"),
        (np.array(["ok", "a\udc80"]), r"column 0, row 1"),
    ],
    ids=["list", "dataframe", "str-array"],
)
def test_a_lone_surrogate_is_named_with_its_column_and_row(X, where):
    with pytest.raises(ValueError, match=rf"Invalid text at {where}: character \d+ is .*lone "
                                         r"surrogate.*not valid Unicode"):
        to_text_columns(X)


def test_text_that_is_valid_unicode_passes_untouched():
    texts = ["ñandú", "emoji 🦜", "中文", "\u2028 separador", "tab\tand\nnewline"]
    assert _texts(to_text_columns(texts)) == [texts]
