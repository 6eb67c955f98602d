"""The ``skembed`` command line, run as a user runs it."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import skembed
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


@pytest.mark.slow
def test_the_console_script_runs(tiny_model):
    result = subprocess.run(
        [sys.executable, "-m", "skembed", "similarity", "hola", "adiós", "--model", tiny_model],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert -1.0 <= float(result.stdout) <= 1.0


# ``skembed embed``: a file's text columns to vectors.


@pytest.fixture
def table_csv(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text(
        "id,title,body\n"
        "007,NA,Un perro corre por el parque.\n"
        "008,Hola,\"Dos hombres, un coche.\"\n"
        "009,null,Una mujer canta.\n",
        encoding="utf-8",
    )
    return path


#: Table outputs the CLI tests write: parquet needs the optional pyarrow.
TABLE_OUTPUTS = [pytest.param(".parquet", marks=pytest.mark.extras), ".jsonl"]


def _read_output(path):
    """A table the CLI wrote, its texts as written."""
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_json(path, lines=True, dtype=False)


def _embed(tiny_model, *args):
    return main(["embed", *map(str, args), "--model", tiny_model, "--device", "cpu"])


@pytest.mark.parametrize("suffix", TABLE_OUTPUTS)
def test_embed_writes_vectors_next_to_kept_columns(tiny_model, table_csv, tmp_path, capsys,
                                                   suffix):
    out = tmp_path / f"vectors{suffix}"
    assert _embed(tiny_model, table_csv, "--column", "body", "--column", "title",
                  "--keep", "id", "--out", out) == 0
    assert "3 row(s) x 2 column(s)" in capsys.readouterr().out
    written = _read_output(out)
    # Ids come back as written ("007", not 7); texts such as "NA" are texts, not missing.
    assert written["id"].tolist() == ["007", "008", "009"]
    titles = ["NA", "Hola", "null"]
    bodies = ["Un perro corre por el parque.", "Dos hombres, un coche.", "Una mujer canta."]
    expected = EmbeddingVectorizer(tiny_model, device="cpu").fit_transform(
        pd.DataFrame({"body": bodies, "title": titles})
    )
    dim = expected.shape[1] // 2
    assert list(written.columns) == (
        ["id"] + [f"body_{i}" for i in range(dim)] + [f"title_{i}" for i in range(dim)]
    )
    np.testing.assert_allclose(written.drop(columns="id").to_numpy(), expected, atol=1e-6)


def test_embed_text_lines_to_npy_and_a_table_keeps_every_column(tiny_model, tmp_path):
    lines = tmp_path / "texts.txt"
    lines.write_text("Un gato duerme.\nDos perros juegan.\n\nEl cielo es azul.\n", encoding="utf-8")
    npy = tmp_path / "vectors.npy"
    assert _embed(tiny_model, lines, "--out", npy, "--normalize") == 0
    vectors = np.load(npy)
    texts = ["Un gato duerme.", "Dos perros juegan.", "", "El cielo es azul."]
    expected = EmbeddingVectorizer(tiny_model, device="cpu", normalize=True).fit_transform(texts)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    jsonl = tmp_path / "vectors.jsonl"
    assert _embed(tiny_model, lines, "--out", jsonl) == 0
    table = pd.read_json(jsonl, lines=True)
    assert table["text"].tolist() == texts and table.shape[1] == 1 + vectors.shape[1]


@pytest.mark.filterwarnings("ignore::skembed.CalibrationWarning")  # int8 on 4 texts
def test_embed_runs_on_openvino_in_float32_and_int8(tiny_model, tmp_path):
    from sentence_transformers import SentenceTransformer

    lines = tmp_path / "texts.txt"
    texts = ["Un gato duerme.", "Dos perros juegan en el parque.", "El cielo es azul.", "Hola"]
    lines.write_text("\n".join(texts) + "\n", encoding="utf-8")
    expected = SentenceTransformer(tiny_model, device="cpu").encode(texts)
    assert _embed(tiny_model, lines, "--out", tmp_path / "fp32.npy", "--backend",
                  "openvino") == 0
    np.testing.assert_allclose(np.load(tmp_path / "fp32.npy"), expected, rtol=0, atol=1e-5)
    assert _embed(tiny_model, lines, "--out", tmp_path / "int8.npy", "--backend", "openvino",
                  "--precision", "int8") == 0
    int8 = np.load(tmp_path / "int8.npy")
    assert int8.shape == expected.shape and not np.array_equal(int8, expected)


def test_embed_missing_cells_follow_handle_missing(tiny_model, table_csv, tmp_path, capsys):
    table_csv.write_text("id,body\n1,Un perro.\n2,\n", encoding="utf-8")
    out = tmp_path / "v.npy"
    assert _embed(tiny_model, table_csv, "--column", "body", "--out", out) == 2
    err = capsys.readouterr().err
    assert "column 'body'" in err and "pass --handle-missing empty or zero" in err
    assert "handle_missing=" not in err and not out.exists()
    assert _embed(tiny_model, table_csv, "--column", "body", "--out", out,
                  "--handle-missing", "zero") == 0
    vectors = np.load(out)
    assert vectors[0].any() and not vectors[1].any()


def test_embed_fills_the_cache_it_is_given(tiny_model, table_csv, tmp_path):
    from skembed import EmbeddingCache

    cache = tmp_path / "cache.sqlite"
    assert _embed(tiny_model, table_csv, "--column", "body", "--out", tmp_path / "v.npy",
                  "--cache", cache) == 0
    assert EmbeddingCache(cache).info()["n_vectors"] == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["--out", "{tmp}/v.npy"], "has 3 columns ['id', 'title', 'body']: say which"),
        (["--column", "nope", "--out", "{tmp}/v.npy"], "has no column(s) ['nope']"),
        (["--column", "body", "--out", "{tmp}/v.xlsx"], "must end in one of"),
        (["--column", "body", "--out", "{tmp}/v.npy", "--keep", "id"], "--keep needs a table"),
        (["--column", "body", "--out", "{tmp}/no/v.npy"], "does not exist"),
        (["--column", "body", "--out", "{input}"], "is also an input"),
    ],
)
def test_embed_refuses_bad_requests_before_any_work(tiny_model, table_csv, tmp_path, capsys,
                                                     args, message):
    before = table_csv.read_bytes()
    args = [a.format(tmp=tmp_path, input=table_csv) for a in args]
    assert _embed(tiny_model, table_csv, *args) == 2
    assert message in capsys.readouterr().err
    assert table_csv.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reviews.csv"]


def test_embed_never_replaces_a_file_unless_asked(tiny_model, table_csv, tmp_path, capsys):
    out = tmp_path / "v.npy"
    out.write_bytes(b"precious")
    assert _embed(tiny_model, table_csv, "--column", "body", "--out", out) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    assert _embed(tiny_model, table_csv, "--column", "body", "--out", out, "--overwrite") == 0
    assert np.load(out).shape[0] == 3


def test_embed_refuses_a_kept_column_named_like_a_vector_column(tiny_model, tmp_path, capsys,
                                                              monkeypatch):
    from skembed import _engine

    def no_encoding(*args, **kwargs):
        raise AssertionError("embedded texts before refusing the request")

    monkeypatch.setattr(_engine, "encode", no_encoding)
    path = tmp_path / "t.csv"
    path.write_text("body,body_0\nhola,x\n", encoding="utf-8")
    out = tmp_path / "v.csv"
    assert _embed(tiny_model, path, "--column", "body", "--out", out) == 2
    assert "['body_0'] would clash" in capsys.readouterr().err and not out.exists()


# ``skembed fine-tune``: a model fine-tuned on a file of scored pairs.

FAST = {"loss": "cosent", "epochs": 2, "learning_rate": 1e-3, "warmup_steps": 0, "soup": 1,
        "bf16": False}


@pytest.fixture
def pairs_csv(stsb_dir, tmp_path):
    path = tmp_path / "train.csv"
    pd.read_csv(stsb_dir / "train.csv").head(48).to_csv(path, index=False)
    return path


@pytest.mark.slow
@pytest.mark.extras  # needs matplotlib, or datasets and accelerate
def test_fine_tune_saves_the_model_the_regressor_trains(tiny_model, pairs_csv, tmp_path, capsys):
    import json

    from skembed import SimilarityRegressor, evaluate_sts

    params = tmp_path / "recipe.json"
    params.write_text(json.dumps(FAST))
    out = tmp_path / "tuned"
    png = tmp_path / "loss.png"
    assert main(["fine-tune", "--train", str(pairs_csv), "--dev", str(pairs_csv),
                 "--out", str(out), "--params", str(params), "--seed", "3",
                 "--model", tiny_model, "--device", "cpu", "--plot", str(png)]) == 0
    printed = capsys.readouterr().out
    assert f"plot:     {png}" in printed and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = pd.read_csv(pairs_csv)
    X, y = data[["sentence1", "sentence2"]], data["similarity_score"]
    reg = SimilarityRegressor(
        EmbeddingVectorizer(tiny_model, device="cpu", show_progress_bar=False),
        fine_tune=True, fine_tune_params=FAST, fine_tune_dir=tmp_path / "ref", random_state=3,
    ).fit(X, y)
    texts = data.sentence1.tolist()
    encoder = str(out / "encoders" / "encoder-0")  # a plain sentence-transformers folder
    cli_vectors = EmbeddingVectorizer(encoder, device="cpu").fit_transform(texts)
    # The command trains the regressor's model, bit for bit (its vectors, from another load
    # of equal files, may differ in the last bit).
    assert skembed.load(out).fine_tuned_model_ == reg.fine_tuned_model_
    np.testing.assert_allclose(
        cli_vectors,
        EmbeddingVectorizer(reg.fine_tuned_model_, device="cpu").fit_transform(texts), atol=1e-6,
    )
    assert not np.allclose(
        cli_vectors, EmbeddingVectorizer(tiny_model, device="cpu").fit_transform(texts)
    )
    dev = evaluate_sts(encoder, texts, data.sentence2, y)
    assert f"spearman: {dev.spearman:.4f}" in printed and f"saved to {out}" in printed
    # The folder is the fitted regressor (skembed.save), its card holds the dev figures.
    np.testing.assert_allclose(skembed.load(out).predict(X), reg.predict(X), atol=1e-5)
    assert f"| dev Spearman (train.csv) | {dev.spearman:.4f}" in (out / "README.md").read_text()
    # embed --pipeline embeds with the saved regressor's encoder.
    lines = tmp_path / "lines.txt"
    lines.write_text("\n".join(texts[:5]) + "\n")
    assert main(["embed", str(lines), "--pipeline", str(out), "--out", str(tmp_path / "v.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "v.npy"), cli_vectors[:5], atol=1e-6)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--params", "{'loss': 1}"], "neither a JSON object nor a JSON file"),
        (["--params", "[1, 2]"], "must be a JSON object"),
        (["--params", '{"loss": "hinge"}'], "loss"),
        (["--columns", "s1", "s2", "score"], "has no column(s) ['s1', 's2', 'score']"),
    ],
)
def test_fine_tune_refuses_bad_requests_before_training(tiny_model, pairs_csv, tmp_path, capsys,
                                                        extra, message):
    out = tmp_path / "tuned"
    assert main(["fine-tune", "--train", str(pairs_csv), "--out", str(out),
                 "--model", tiny_model, *extra]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_fine_tune_keeps_a_full_folder(tiny_model, pairs_csv, tmp_path, capsys):
    out = tmp_path / "tuned"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["fine-tune", "--train", str(pairs_csv), "--out", str(out),
                 "--model", tiny_model]) == 2
    assert "is a folder that is not empty" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"


# ``skembed similarity --data``: the pairs of a file, scored.


@pytest.mark.parametrize("suffix", TABLE_OUTPUTS)
def test_similarity_scores_the_pairs_of_a_file(tiny_model, pairs_csv, tmp_path, capsys, suffix):
    out = tmp_path / f"scored{suffix}"
    assert main(["similarity", "--data", str(pairs_csv), "--out", str(out),
                 "--model", tiny_model, "--device", "cpu"]) == 0
    assert "scored 48 pair(s)" in capsys.readouterr().out
    scored = _read_output(out)
    data = pd.read_csv(pairs_csv, dtype=str)
    assert list(scored.columns) == [*data.columns, "similarity"]
    assert scored.drop(columns="similarity").astype(object).equals(data.astype(object))
    vectorizer = EmbeddingVectorizer(tiny_model, device="cpu", normalize=True)
    a = vectorizer.fit_transform(data.sentence1.tolist())
    b = vectorizer.transform(data.sentence2.tolist())
    np.testing.assert_allclose(scored["similarity"], (a * b).sum(axis=1), atol=1e-5)
    # Other column names, and the scores alone.
    renamed = tmp_path / "renamed.csv"
    data.rename(columns={"sentence1": "query", "sentence2": "title"}).to_csv(renamed, index=False)
    npy = tmp_path / "scores.npy"
    assert main(["similarity", "--data", str(renamed), "--columns", "query", "title",
                 "--out", str(npy), "--model", tiny_model, "--device", "cpu"]) == 0
    np.testing.assert_allclose(np.load(npy), scored["similarity"], atol=1e-6)


@pytest.mark.parametrize(
    "args, message",
    [
        (["only one"], "give two sentences, or --data FILE --out FILE"),
        ([], "give two sentences, or --data FILE --out FILE"),
        (["a", "b", "--out", "{tmp}/s.csv"], "give two sentences, or --data FILE --out FILE"),
        (["a", "b", "--data", "{input}", "--out", "{tmp}/s.csv"], "not both"),
        (["--data", "{input}"], "--data needs --out FILE"),
        (["--data", "{input}", "--out", "{tmp}/s.csv", "--columns", "x", "y"],
         "has no column(s) ['x', 'y']"),
    ],
)
def test_similarity_refuses_bad_requests(tiny_model, pairs_csv, tmp_path, capsys, args, message):
    args = [a.format(tmp=tmp_path, input=pairs_csv) for a in args]
    assert main(["similarity", *args, "--model", tiny_model]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()


def test_similarity_keeps_a_column_of_the_same_name(tiny_model, tmp_path, capsys):
    path = tmp_path / "pairs.csv"
    path.write_text("sentence1,sentence2,similarity\na,b,0.5\n", encoding="utf-8")
    out = tmp_path / "s.csv"
    assert main(["similarity", "--data", str(path), "--out", str(out),
                 "--model", tiny_model]) == 2
    assert "already has a column 'similarity'" in capsys.readouterr().err and not out.exists()


def test_version(capsys):
    import skembed

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"skembed {skembed.__version__}"


@pytest.mark.parametrize(
    "command",
    [["similarity", "--data"], ["evaluate", "--data"], ["fine-tune", "--out", "{out}", "--train"]],
)
def test_pair_commands_name_a_pair_missing_a_text(tiny_model, tmp_path, capsys, command):
    path = tmp_path / "pairs.csv"
    path.write_text("sentence1,sentence2,similarity_score\na,b,1\nc,,2\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    if command[0] == "similarity":
        command = [*command, str(path), "--out", str(out)]
    else:
        command = [c.format(out=tmp_path / "tuned") for c in command] + [str(path)]
    assert main([*command, "--model", tiny_model]) == 2
    err = capsys.readouterr().err
    assert "column 'sentence2'" in err and "row 1" in err
    assert "every pair needs both texts" in err and "handle_missing" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.csv"]


@pytest.mark.parametrize("command", [["fine-tune", "--out", "{tmp}/tuned", "--train"],
                                     ["evaluate", "--data"]])
@pytest.mark.extras  # needs matplotlib, or datasets and accelerate
def test_an_unwritable_plot_is_refused_before_any_work(tiny_model, pairs_csv, tmp_path, capsys,
                                                       monkeypatch, command):
    from skembed import _engine

    def no_encoding(*args, **kwargs):
        raise AssertionError("embedded texts before refusing the request")

    monkeypatch.setattr(_engine, "encode", no_encoding)
    command = [c.format(tmp=tmp_path) for c in command]
    for plot, message in [("loss.txt", "must end in one of"), ("no/loss.png", "does not exist")]:
        assert main([*command, str(pairs_csv), "--model", tiny_model,
                     "--plot", str(tmp_path / plot)]) == 2
        assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.csv"]


@pytest.mark.filterwarnings("ignore::skembed.TruncationWarning")  # cut on purpose
def test_embed_passes_the_truncation_length_on(tiny_model, table_csv, tmp_path):
    out = tmp_path / "v.npy"
    assert _embed(tiny_model, table_csv, "--column", "body", "--out", out,
                  "--max-seq-length", "3") == 0
    bodies = pd.read_csv(table_csv)["body"].tolist()
    short = EmbeddingVectorizer(tiny_model, device="cpu", max_seq_length=3).fit_transform(bodies)
    full = EmbeddingVectorizer(tiny_model, device="cpu").fit_transform(bodies)
    np.testing.assert_allclose(np.load(out), short, atol=1e-6)
    assert not np.allclose(short, full)


@pytest.mark.slow
@pytest.mark.extras  # needs matplotlib, or datasets and accelerate
def test_params_take_json_of_any_length(tiny_model, pairs_csv, tmp_path, capsys):
    import json

    out = tmp_path / "tuned"
    recipe = json.dumps({**FAST, "epochs": 0.25}, indent=2000)  # longer than any file name
    assert len(recipe) > 4096
    assert main(["fine-tune", "--train", str(pairs_csv), "--out", str(out), "--params", recipe,
                 "--model", tiny_model, "--device", "cpu"]) == 0
    assert (out / "encoders" / "encoder-0" / "modules.json").is_file()


def test_every_vectorizer_parameter_is_a_flag_of_the_commands_of_its_scope():
    from skembed._cli import SCOPES, build_parser, parameter_scopes
    from skembed._config import model_option_names

    scopes = parameter_scopes()
    assert sorted(scopes) == sorted(EmbeddingVectorizer().get_params())
    assert all(scopes[name] == "every" for name in model_option_names())
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for command, taken in SCOPES.items():
        flags = {flag for action in commands[command]._actions for flag in action.option_strings}
        for name, scope in scopes.items():
            flag = "--" + name.replace("_", "-")
            assert (flag in flags) == (scope in taken), (command, flag)


def test_a_parameter_without_a_command_line_scope_is_named(monkeypatch):
    from skembed import _cli

    monkeypatch.delitem(_cli.RUN_PARAMETER_SCOPES, "batch_size")
    with pytest.raises(KeyError, match="'batch_size' has no command-line scope"):
        _cli.parameter_scopes()


def test_flags_take_the_vectorizer_defaults_and_help(capsys):
    with pytest.raises(SystemExit):
        main(["embed", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--batch-size N Texts per forward pass (default: 32)" in out
    assert "--handle-missing {empty,error,zero}" in out
    assert "--precision {bfloat16,float16,float32,int8}" in out


@pytest.mark.parametrize("flags, message", [
    (["--batch-size", "0"], "The 'batch_size' parameter of EmbeddingVectorizer must be"),
    (["--max-seq-length", "0"], "The 'max_seq_length' parameter of EmbeddingVectorizer"),
])
def test_a_bad_setting_is_the_vectorizers_own_error(tiny_model, flags, message, capsys):
    assert main(["similarity", "a", "b", "--model", tiny_model, *flags]) == 2
    assert message in capsys.readouterr().err


def test_prompt_and_truncation_flags_reach_the_vectorizer(model_of_kind, tmp_path):
    lines = tmp_path / "texts.txt"
    lines.write_text("Un gato duerme.\nDos perros juegan.\n", encoding="utf-8")
    out = tmp_path / "v.npy"
    model = model_of_kind("prompted")
    assert main(["embed", str(lines), "--out", str(out), "--model", model, "--device", "cpu",
                 "--prompt-name", "document", "--truncate-dim", "8"]) == 0
    expected = EmbeddingVectorizer(model, device="cpu", prompt_name="document",
                                   truncate_dim=8).fit_transform(["Un gato duerme.",
                                                                  "Dos perros juegan."])
    np.testing.assert_array_equal(np.load(out), expected)


def test_long_texts_are_reported_and_the_report_can_be_turned_off(tiny_model, tmp_path, capfd):
    lines = tmp_path / "texts.txt"
    lines.write_text(" ".join(["palabra"] * 40) + "\ncorto\n", encoding="utf-8")
    for extra, reported in (([], True), (["--no-warn-on-truncation"], False)):
        out = tmp_path / f"v{len(extra)}.npy"
        assert main(["embed", str(lines), "--out", str(out), "--model", tiny_model,
                     "--max-seq-length", "8", *extra]) == 0
        err = capfd.readouterr().err
        assert ("1 of 2 texts are longer than the 8 tokens" in err) is reported


def test_fine_tune_takes_a_recipe_name(tiny_model, tmp_path, monkeypatch):
    from skembed import SimilarityRegressor

    pairs = tmp_path / "pairs.csv"
    pairs.write_text("sentence1,sentence2,similarity_score\na,b,1\nc,d,4\n")
    seen = []

    def fit(self, X, y):
        seen.append(self.fine_tune_params)
        raise RuntimeError("stop before training")

    monkeypatch.setattr(SimilarityRegressor, "fit", fit)
    with pytest.raises(RuntimeError, match="stop before training"):
        main(["fine-tune", "--train", str(pairs), "--out", str(tmp_path / "out"),
              "--params", "card", "--model", tiny_model])
    assert seen[0].loss == "mnrl" and seen[0].warmup_steps == 271  # the card's recipe


def test_embed_with_a_saved_pipeline_uses_its_feature_steps_and_columns(tiny_model, tmp_path,
                                                                        capsys):
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    table = pd.DataFrame({"id": [1, 2, 3, 4], "title": ["uno", "dos", "tres", "cuatro"]})
    features = make_column_transformer((EmbeddingVectorizer(tiny_model, device="cpu"),
                                        ["title"]))
    pipeline = make_pipeline(features, LogisticRegression()).fit(table[["title"]], [0, 1, 0, 1])
    saved = skembed.save(pipeline, tmp_path / "saved")
    path = tmp_path / "table.csv"
    table.to_csv(path, index=False)
    out = tmp_path / "v.npy"
    assert main(["embed", str(path), "--pipeline", saved, "--out", str(out)]) == 0
    np.testing.assert_array_equal(np.load(out), pipeline[0].transform(table[["title"]]))
    assert main(["embed", str(path), "--pipeline", saved, "--out", str(tmp_path / "w.npy"),
                 "--truncate-dim", "8"]) == 2
    assert "--truncate-dim cannot change it" in capsys.readouterr().err
