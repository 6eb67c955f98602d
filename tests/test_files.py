"""Tables on disk for the command line: formats, texts kept as written, atomic writes."""

import numpy as np
import pandas as pd
import pytest

from skembed._files import read_table, write_output


@pytest.mark.parametrize(
    "suffix",
    [".csv", ".tsv", pytest.param(".parquet", marks=pytest.mark.extras), ".jsonl"],
)
def test_tables_round_trip_with_their_texts_unchanged(tmp_path, suffix):
    frame = pd.DataFrame({"id": ["007", "010"], "text": ["NA", "Él dijo: «sí, null»\tya"]})
    path = tmp_path / f"t{suffix}"
    write_output(frame, path)
    back = read_table(path)
    assert back.astype(object).to_dict("list") == frame.to_dict("list")


def test_text_files_give_one_row_per_line_whatever_the_line_ending(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes("uno\r\ndos\n\ntrés\rcuatro\x0cpage\u2028sep".encode())
    assert read_table(path)["text"].tolist() == [
        "uno", "dos", "", "trés", "cuatro\x0cpage\u2028sep"
    ]


def test_an_unknown_extension_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"'.*t\.xlsx'.*must end in one of \.csv"):
        read_table(tmp_path / "t.xlsx")


@pytest.mark.extras
def test_a_failed_write_leaves_neither_output_nor_partial_file(tmp_path):
    pa = pytest.importorskip("pyarrow", reason="parquet needs the optional pyarrow")
    # pyarrow cannot store a column mixing numbers and strings.
    frame = pd.DataFrame({"mixed": [1, "a"]})
    with pytest.raises((pa.ArrowTypeError, pa.ArrowInvalid)):
        write_output(frame, tmp_path / "t.parquet")
    assert list(tmp_path.iterdir()) == []
    # An existing file survives a failed replacement untouched.
    kept = tmp_path / "t.parquet"
    kept.write_bytes(b"old")
    with pytest.raises((pa.ArrowTypeError, pa.ArrowInvalid)):
        write_output(frame, kept)
    assert kept.read_bytes() == b"old" and list(tmp_path.iterdir()) == [kept]


def test_arrays_are_written_as_npy(tmp_path):
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3)
    write_output(vectors, tmp_path / "v.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy"), vectors)
