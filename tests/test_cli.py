"""The ``skembed`` command line, run as a user runs it."""

import subprocess
import sys

import numpy as np
import pytest

from skembed import EmbeddingVectorizer
from skembed._cli import main


def test_similarity_prints_the_cosine_of_two_sentences(tiny_model, capsys):
    a, b = "Nerea va a comprar un cuadro usando bitcoins", "Se puede comprar arte con bitcoins"
    assert main(["similarity", a, b, "--model", tiny_model]) == 0
    printed = float(capsys.readouterr().out.strip())
    vectors = EmbeddingVectorizer(tiny_model, normalize=True).fit_transform([a, b])
    assert printed == pytest.approx(float(np.dot(vectors[0], vectors[1])), abs=1e-4)


def test_similarity_of_a_paraphrase_beats_an_unrelated_sentence(minilm, capsys):
    def similarity(a, b):
        assert main(["similarity", a, b, "--model", minilm]) == 0
        return float(capsys.readouterr().out)

    anchor = "A man is playing a guitar."
    assert similarity(anchor, "Someone plays an instrument.") > similarity(
        anchor, "The stock market fell today."
    )


def test_a_missing_model_folder_is_a_clear_error(tmp_path, capsys):
    status = main(["similarity", "a", "b", "--model", str(tmp_path / "nope")])
    assert status == 2
    assert "skembed similarity: error" in capsys.readouterr().err


def test_the_console_script_runs(tiny_model):
    result = subprocess.run(
        [sys.executable, "-m", "skembed", "similarity", "hola", "adiós", "--model", tiny_model],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert -1.0 <= float(result.stdout) <= 1.0
