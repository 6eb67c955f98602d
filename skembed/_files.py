"""Tables on disk for the command line: read and write them by file extension.

Reading keeps text as the user wrote it: in CSV and TSV files every cell is
read as a string and only an empty cell counts as missing, so texts such as
``"NA"``, ``"null"`` or ``"007"`` arrive unchanged. Writing goes to a
temporary file first and is renamed into place, so an interrupted job never
leaves a half-written output.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".jsonl")
READ_SUFFIXES = TABLE_SUFFIXES + (".txt",)
WRITE_SUFFIXES = TABLE_SUFFIXES + (".npy",)

#: The column of a ``.txt`` file, one text per line.
TEXT_COLUMN = "text"


def _suffix(path, allowed, verb: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in allowed:
        raise ValueError(
            f"cannot {verb} {os.fspath(path)!r}: the file name must end in one of "
            f"{', '.join(allowed)}"
        )
    return suffix


def _parquet_engine_error(exc: ImportError) -> ImportError:
    return ImportError(f"Parquet files need pyarrow: pip install pyarrow ({exc})")


def read_table(path) -> pd.DataFrame:
    """Read a ``.csv``, ``.tsv``, ``.parquet``, ``.jsonl`` or ``.txt`` file.

    A ``.txt`` file gives one row per line, in a column named ``"text"``.

    Examples
    --------
    >>> import pathlib
    >>> path = pathlib.Path(TMP) / "t.csv"  # TMP: a folder (here pytest's)
    >>> _ = path.write_text("id,text\\n007,NA\\n008,\\n")
    >>> read_table(path).to_dict("list")
    {'id': ['007', '008'], 'text': ['NA', nan]}
    """
    suffix = _suffix(path, READ_SUFFIXES, "read")
    if suffix == ".txt":
        # Universal newlines: "\r\n" and "\r" end lines too; other separators
        # that str.splitlines() would cut at (form feed, U+2028, ...) stay in the text.
        with open(path, encoding="utf-8", newline=None) as handle:
            lines = handle.read().split("\n")
        if lines[-1] == "":  # the newline that ends the last line
            lines.pop()
        return pd.DataFrame({TEXT_COLUMN: lines})
    if suffix in (".csv", ".tsv"):
        return pd.read_csv(
            path,
            sep="\t" if suffix == ".tsv" else ",",
            dtype=str,
            keep_default_na=False,
            na_values=[""],
        )
    if suffix == ".jsonl":
        return pd.read_json(path, lines=True, dtype=False)
    try:
        return pd.read_parquet(path)
    except ImportError as exc:
        raise _parquet_engine_error(exc) from exc


def check_columns(table: pd.DataFrame, columns, path) -> None:
    """Raise a ValueError naming the columns of ``columns`` that ``table`` lacks."""
    absent = [c for c in columns if c not in table.columns]
    if absent:
        raise ValueError(
            f"{os.fspath(path)} has no column(s) {absent}; its columns are "
            f"{list(table.columns)}"
        )


def check_texts(table: pd.DataFrame, columns) -> None:
    """Raise a :class:`~skembed.MissingTextError` for the first empty cell of ``columns``.

    For files read before long work (fine-tuning), so that a hole in a
    later file is found before the work, not after.
    """
    from . import MissingTextError

    for column in columns:
        missing = table[column].isna().to_numpy()
        if missing.any():
            row = int(np.flatnonzero(missing)[0])
            raise MissingTextError(f"column {column!r}, row {row}", int(missing.sum()))


def numeric_column(table: pd.DataFrame, column: str, path) -> np.ndarray:
    """``table[column]`` as float64, or a ValueError naming the first bad cell."""
    values = pd.to_numeric(table[column], errors="coerce")
    bad = np.flatnonzero(values.isna().to_numpy())
    if len(bad):
        row = bad[0]
        raise ValueError(
            f"{os.fspath(path)}: column {column!r} needs a number in every row; row "
            f"{row} holds {table[column].iloc[row]!r} ({len(bad)} such row(s))"
        )
    return values.to_numpy(np.float64)


def check_output(path, *, overwrite: bool, inputs=()) -> str:
    """Validate an output path before any work; returns its suffix."""
    suffix = _suffix(path, WRITE_SUFFIXES, "write")
    target = Path(path)
    if any(target.resolve() == Path(p).resolve() for p in inputs):
        raise ValueError(f"the output {os.fspath(path)!r} is also an input; choose another file")
    if target.exists() and not overwrite:
        raise ValueError(f"{os.fspath(path)!r} already exists; pass --overwrite to replace it")
    if not target.parent.is_dir():
        raise ValueError(f"the folder of {os.fspath(path)!r} does not exist")
    return suffix


def write_output(data, path) -> None:
    """Write an array (``.npy``) or a DataFrame (the table formats) atomically."""
    suffix = _suffix(path, WRITE_SUFFIXES, "write")
    target = Path(path)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        if suffix == ".npy":
            with open(partial, "wb") as handle:
                np.save(handle, data)
        elif suffix == ".parquet":
            try:
                data.to_parquet(partial, index=False)
            except ImportError as exc:
                raise _parquet_engine_error(exc) from exc
        elif suffix == ".jsonl":
            data.to_json(partial, orient="records", lines=True, force_ascii=False)
        else:
            data.to_csv(partial, index=False, sep="\t" if suffix == ".tsv" else ",")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
