"""backend="openvino": exact float32 vectors, int8 calibrated at fit that travels with the
estimator, a conversion made once per model, refusals that name the problem, no telemetry.

The exactness of every kind of model on it, with every setting and with long
texts, is in test_exactness.py and test_long_texts.py (openvino is one of the
backends there); here are MiniLM, int8, the cache of conversions and the rest.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED, build_model

import skembed
from skembed import CalibrationWarning, EmbeddingVectorizer, QuantizedModel, SavedEstimatorError
from skembed import _openvino, _registry

STSB = pd.read_csv(SHARED / "data" / "stsb_multi_mt_es" / "test.csv")
SENTENCES = STSB["sentence1"].tolist()[:120]


def _run(code: str, **env) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python process (the suite's environment, plus ``env``)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=300, check=False)


@pytest.fixture(scope="module")
def minilm_reference(minilm):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(minilm, device="cpu").encode(SENTENCES, batch_size=16)


@pytest.fixture(scope="module")
def int8_minilm(minilm):
    """MiniLM quantised on 120 STSb sentences (calibration is seconds, so once)."""
    return EmbeddingVectorizer(minilm, backend="openvino", precision="int8").fit(SENTENCES)


# -- float32 is exact -----------------------------------------------------------------
@pytest.mark.slow
def test_minilm_float32_equals_encode(minilm, minilm_reference):
    vectorizer = EmbeddingVectorizer(minilm, backend="openvino", batch_size=7)
    X = vectorizer.fit_transform(SENTENCES)
    np.testing.assert_allclose(X, minilm_reference, rtol=0, atol=1e-5)
    assert vectorizer.backend_ == "openvino" and vectorizer.engine_ == "skembed"


def test_auto_picks_openvino_on_a_cpu_for_a_model_it_converts(model_of_kind):
    from sentence_transformers import SentenceTransformer

    path = model_of_kind("normalized")
    vectorizer = EmbeddingVectorizer(path, backend="auto", device="cpu").fit(SENTENCES[:5])
    assert vectorizer.backend_ == "openvino"
    expected = SentenceTransformer(path, device="cpu").encode(SENTENCES[:5])
    np.testing.assert_allclose(vectorizer.transform(SENTENCES[:5]), expected, atol=1e-5)
    static = EmbeddingVectorizer(model_of_kind("static"), backend="auto").fit(["a"])
    assert static.backend_ == "sentence-transformers"  # it has no network to convert


def test_auto_never_picks_int8_and_keeps_float32_exact(tiny_model):
    vectorizer = EmbeddingVectorizer(tiny_model, backend="auto", device="cpu").fit(["a"])
    assert vectorizer.quantized_model_ is None
    assert vectorizer._fitted_config().precision == "float32"


# -- refusals ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind, module", [("layernorm", "LayerNorm"),
                                          ("static", "StaticEmbedding")])
def test_a_stack_it_cannot_convert_is_refused_naming_the_module(model_of_kind, kind, module):
    loads = _registry.MODEL_LOADS
    with pytest.raises(ValueError, match=f"backend='openvino'.*{module}"):
        EmbeddingVectorizer(model_of_kind(kind), backend="openvino").fit(["a"])
    assert not hasattr(EmbeddingVectorizer(model_of_kind(kind)), "backend_")
    assert _registry.MODEL_LOADS == loads  # nothing kept of the refused model


@pytest.mark.parametrize("params, message", [
    ({"backend": "openvino", "device": "cuda"}, "runs on the CPU"),
    ({"backend": "openvino", "precision": "float16"}, "not 'float16'"),
    ({"precision": "int8"}, "precision='int8' runs on backend='openvino'"),
    ({"backend": "transformers", "precision": "int8"}, "precision='int8' runs on"),
])
def test_settings_openvino_cannot_honour_are_refused(tiny_model, params, message):
    loads, conversions = _registry.MODEL_LOADS, _openvino.CONVERSIONS
    vectorizer = EmbeddingVectorizer(tiny_model, **params)
    with pytest.raises(ValueError, match=message):
        vectorizer.fit(["a"])
    assert not hasattr(vectorizer, "embedding_dim_")
    # Refused before any work: nothing loaded, converted or calibrated.
    assert (_registry.MODEL_LOADS, _openvino.CONVERSIONS) == (loads, conversions)


def test_a_conversion_that_differs_from_torch_is_refused(tmp_path, monkeypatch):
    model = str(build_model(tmp_path / "model", seed=7))  # loaded and converted by no one yet
    monkeypatch.setattr(_openvino, "EXACT_TOLERANCE", -1.0)  # nothing can be that close
    monkeypatch.setenv(_openvino.CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="differ from torch's by up to"):
        EmbeddingVectorizer(model, backend="openvino").fit(["a"])
    assert not list((_openvino.cache_dir()).glob("*/openvino_model.xml"))  # nothing kept


# -- the cache of conversions -----------------------------------------------------------
@pytest.mark.slow
def test_a_second_process_loads_the_conversion_and_a_changed_folder_converts_again(
        tmp_path):
    model = str(build_model(tmp_path / "model", seed=3))
    cache = str(tmp_path / "conversions")
    code = f"""
        import json, time
        from skembed import EmbeddingVectorizer, _openvino
        start = time.perf_counter()
        X = EmbeddingVectorizer({model!r}, backend="openvino").fit_transform(["hola", "adiós"])
        print(json.dumps({{"conversions": _openvino.CONVERSIONS, "X": X.tolist()}}))
    """
    first = _run(code, SKEMBED_OPENVINO_CACHE=cache)
    second = _run(code, SKEMBED_OPENVINO_CACHE=cache)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    first, second = json.loads(first.stdout), json.loads(second.stdout)
    assert (first["conversions"], second["conversions"]) == (1, 0)
    assert first["X"] == second["X"]
    build_model(tmp_path / "model", seed=4)  # the folder's weights change
    third = _run(code, SKEMBED_OPENVINO_CACHE=cache)
    assert third.returncode == 0, third.stderr
    third = json.loads(third.stdout)
    assert third["conversions"] == 1 and third["X"] != first["X"]
    assert len(os.listdir(cache)) == 2


@pytest.mark.slow
def test_processes_converting_one_model_at_once_share_one_cache_entry(tmp_path):
    model = str(build_model(tmp_path / "model", seed=9))
    cache = tmp_path / "conversions"
    code = textwrap.dedent(f"""
        import json
        from skembed import EmbeddingVectorizer
        X = EmbeddingVectorizer({model!r}, backend="openvino").fit_transform(["hola", "adiós"])
        print(json.dumps(X.tolist()))
    """)
    env = {**os.environ, "SKEMBED_OPENVINO_CACHE": str(cache)}
    runs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env) for _ in range(3)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], [err for _, err in outputs]
    vectors = [json.loads(out) for out, _ in outputs]
    assert vectors[0] == vectors[1] == vectors[2]
    assert len(os.listdir(cache)) == 1  # one entry, and no half-written folder left beside it


# -- int8 ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_int8_stays_close_to_float32(int8_minilm, minilm_reference):
    X = int8_minilm.transform(SENTENCES)
    cosines = np.sum(X * minilm_reference, axis=1) / np.linalg.norm(X, axis=1)
    assert cosines.mean() > 0.99 and cosines.min() > 0.97
    assert np.abs(X - minilm_reference).max() > 1e-4  # it is quantised: not float32
    assert isinstance(int8_minilm.quantized_model_, QuantizedModel)
    assert int8_minilm.quantized_model_.info["n_calibration_texts"] == len(set(SENTENCES))


def test_int8_is_the_same_for_the_same_fit_texts_whatever_their_order(tiny_model):
    texts = SENTENCES[:40]
    first = EmbeddingVectorizer(tiny_model, backend="openvino", precision="int8").fit(texts)
    again = EmbeddingVectorizer(tiny_model, backend="openvino",
                                precision="int8").fit(texts[::-1] + texts[:5])
    other = EmbeddingVectorizer(tiny_model, backend="openvino",
                                precision="int8").fit(SENTENCES[40:80])
    assert first.quantized_model_ == again.quantized_model_
    assert first.transform(texts).tobytes() == again.transform(texts).tobytes()
    assert other.quantized_model_ != first.quantized_model_


def test_few_fit_texts_calibrate_with_a_warning(tiny_model):
    with pytest.warns(CalibrationWarning, match="on 3 distinct texts"):
        vectorizer = EmbeddingVectorizer(tiny_model, backend="openvino",
                                         precision="int8").fit(["a", "b", "c", "a"])
    assert vectorizer.transform(["d"]).shape == (1, vectorizer.embedding_dim_)


def test_int8_fit_is_quiet(tiny_model, capfd):
    EmbeddingVectorizer(tiny_model, backend="openvino", precision="int8").fit(SENTENCES[:40])
    out, err = capfd.readouterr()
    assert out == "" and err == ""


@pytest.mark.slow
def test_an_int8_vectorizer_pickles_with_its_model_and_loads_in_a_fresh_process(tmp_path):
    model = tmp_path / "model"
    build_model(model, seed=5)
    vectorizer = EmbeddingVectorizer(str(model), backend="openvino",
                                     precision="int8").fit(SENTENCES[:40])
    expected = vectorizer.transform(SENTENCES[:10])
    (tmp_path / "v.pkl").write_bytes(pickle.dumps(vectorizer))
    shutil.rmtree(os.fspath(vectorizer.quantized_model_))  # nothing of this process is reused
    code = f"""
        import json, pickle, pathlib
        from skembed import _openvino
        from skembed import EmbeddingVectorizer
        vectorizer = pickle.loads(pathlib.Path({str(tmp_path / "v.pkl")!r}).read_bytes())
        X = vectorizer.transform({SENTENCES[:10]!r})
        conversions = _openvino.CONVERSIONS
        again = EmbeddingVectorizer({str(model)!r}, backend="openvino", precision="int8")
        again.fit({SENTENCES[:40]!r})
        print(json.dumps({{"X": X.tolist(), "conversions": conversions,
                          "same": again.quantized_model_ == vectorizer.quantized_model_}}))
    """
    result = _run(code, SKEMBED_OPENVINO_CACHE=str(tmp_path / "empty-cache"))
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    np.testing.assert_array_equal(np.asarray(found["X"], dtype=np.float32), expected)
    assert found["conversions"] == 0  # the int8 model came with the pickle
    assert found["same"]  # and calibrating again on the same texts makes the same files


def test_skembed_save_and_load_keep_the_int8_model_and_refuse_it_changed(tiny_model, tmp_path):
    vectorizer = EmbeddingVectorizer(tiny_model, backend="openvino",
                                     precision="int8").fit(SENTENCES[:40])
    folder = skembed.save(vectorizer, tmp_path / "saved")
    manifest = json.loads((tmp_path / "saved" / "skembed.json").read_text())
    (reference, entry), = manifest["encoders"].items()
    assert entry["info"]["kind"] == "openvino-int8"
    assert sorted(entry["files"]) == ["openvino_model.bin", "openvino_model.xml"]
    loaded = skembed.load(folder)
    assert loaded.quantized_model_ == vectorizer.quantized_model_
    np.testing.assert_array_equal(loaded.transform(SENTENCES[:5]),
                                  vectorizer.transform(SENTENCES[:5]))
    weights = tmp_path / "saved" / reference / "openvino_model.bin"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(SavedEstimatorError, match="changed"):
        skembed.load(folder)


def test_a_saved_openvino_folder_may_not_hold_anything_else(tiny_model, tmp_path):
    vectorizer = EmbeddingVectorizer(tiny_model, backend="openvino",
                                     precision="int8").fit(SENTENCES[:40])
    folder = tmp_path / "saved"
    skembed.save(vectorizer, folder)
    manifest = json.loads((folder / "skembed.json").read_text())
    (reference, entry), = manifest["encoders"].items()
    (folder / reference / "pytorch_model.bin").write_bytes(b"not a pickle, but named one")
    entry["files"]["pytorch_model.bin"] = skembed._persistence._sha256(
        folder / reference / "pytorch_model.bin")
    (folder / "skembed.json").write_text(json.dumps(manifest))
    with pytest.raises(SavedEstimatorError, match="pytorch_model.bin"):
        skembed.load(folder)


@pytest.mark.slow
@pytest.mark.extras  # fine-tuning needs datasets and accelerate
@pytest.mark.parametrize("precision", ["float32", "int8"])
@pytest.mark.filterwarnings("ignore::skembed.CalibrationWarning")  # 24 texts
def test_a_fine_tuned_encoder_runs_on_openvino(tiny_model, topics, precision):
    """torch tunes, OpenVINO runs what it made: float32 gives the tuned folder's encode."""
    from sentence_transformers import SentenceTransformer

    texts, labels = topics
    vectorizer = EmbeddingVectorizer(
        tiny_model, backend="openvino", precision=precision, fine_tune=True, random_state=0,
        fine_tune_params={"steps": 3, "batch_size": 8, "learning_rate": 1e-3})
    X = vectorizer.fit_transform(texts, labels)
    tuned = SentenceTransformer(os.fspath(vectorizer.fine_tuned_model_), device="cpu")
    expected = tuned.encode(texts)
    assert np.abs(expected - SentenceTransformer(tiny_model, device="cpu").encode(
        texts)).max() > 1e-4  # the tuning changed the encoder
    if precision == "float32":
        np.testing.assert_allclose(X, expected, rtol=0, atol=1e-5)
    else:
        assert vectorizer.quantized_model_.info["base_model"] == os.fspath(
            vectorizer.fine_tuned_model_)
        cosines = np.sum(X * expected, 1) / np.linalg.norm(X, axis=1) / np.linalg.norm(
            expected, axis=1)
        assert cosines.min() > 0.95


# -- serving --------------------------------------------------------------------------------
def test_threads_share_a_fitted_openvino_vectorizer(tiny_model):
    vectorizer = EmbeddingVectorizer(tiny_model, backend="openvino").fit(SENTENCES)
    expected = vectorizer.transform(SENTENCES)
    results, errors = {}, []

    def work(i):
        try:
            results[i] = [vectorizer.transform(SENTENCES[j:j + 1]) for j in range(i, 120, 8)]
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for i, rows in results.items():
        np.testing.assert_allclose(np.vstack(rows), expected[i::8], atol=1e-6)


@pytest.mark.filterwarnings("ignore::skembed.CalibrationWarning")  # 27 texts
def test_the_regressor_and_a_pipeline_run_on_openvino(tiny_model):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    pairs = STSB.head(30)
    regressor = skembed.SimilarityRegressor(
        vectorizer=EmbeddingVectorizer(tiny_model, backend="openvino"))
    regressor.fit(pairs[["sentence1", "sentence2"]], pairs["similarity_score"])
    assert regressor.vectorizer_.backend_ == "openvino"
    reference = skembed.SimilarityRegressor(vectorizer=EmbeddingVectorizer(tiny_model))
    reference.fit(pairs[["sentence1", "sentence2"]], pairs["similarity_score"])
    np.testing.assert_allclose(regressor.predict(pairs[["sentence1", "sentence2"]]),
                               reference.predict(pairs[["sentence1", "sentence2"]]), atol=1e-4)
    pipe = make_pipeline(EmbeddingVectorizer(tiny_model, backend="openvino", precision="int8"),
                         LogisticRegression())
    y = pairs["similarity_score"].to_numpy() > 2.5
    pipe.fit(pairs["sentence1"].tolist() * 2, np.r_[y, y])
    assert pipe.predict_proba(pairs["sentence1"].tolist()[:3]).shape == (3, 2)


@pytest.mark.filterwarnings("ignore::skembed.CalibrationWarning")  # 30 texts
def test_evaluate_sts_keeps_the_calibration_of_a_fitted_int8_vectorizer(tiny_model):
    """Calibrated on training texts, it is not calibrated again on the evaluation's texts."""
    train, test = STSB.head(60), STSB.tail(30)
    vectorizer = EmbeddingVectorizer(tiny_model, backend="openvino", precision="int8")
    vectorizer.fit(train["sentence1"].tolist())
    first, second = test["sentence1"].tolist(), test["sentence2"].tolist()
    result = skembed.evaluate_sts(vectorizer, first, second, test["similarity_score"],
                                  batch_size=4)
    a, b = vectorizer.transform(first), vectorizer.transform(second)
    cosine = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    np.testing.assert_allclose(result.similarity, cosine, atol=1e-5)
    unfitted = skembed.evaluate_sts(
        EmbeddingVectorizer(tiny_model, backend="openvino", precision="int8"), first, second,
        test["similarity_score"])
    assert np.abs(unfitted.similarity - result.similarity).max() > 1e-6  # calibrated on test


# -- nothing phones home -------------------------------------------------------------------
@pytest.mark.slow
def test_no_telemetry_and_no_network_while_converting_and_quantising(tiny_model, tmp_path):
    """In a process without pytest (NNCF quiets its telemetry under pytest by itself), with
    no CI variable set and an empty home folder: every network call is recorded and
    refused, and OpenVINO's telemetry must neither send nor write its files."""
    home = tmp_path / "home"
    home.mkdir()
    code = f"""
        import json, os, socket
        attempts = []
        def refuse(*args, **kwargs):
            attempts.append(repr(args[:2]))
            raise OSError("no network in this test")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        from skembed import EmbeddingVectorizer
        texts = ["hola mundo", "adiós", "una frase más larga que las otras", "gato"] * 10
        EmbeddingVectorizer({tiny_model!r}, backend="openvino", precision="int8").fit(texts)
        EmbeddingVectorizer({tiny_model!r}, backend="openvino").fit_transform(texts)
        import openvino_telemetry
        sent = openvino_telemetry.Telemetry().consent if hasattr(
            openvino_telemetry.Telemetry(), "consent") else None
        print(json.dumps({{"attempts": attempts, "consent": sent,
                          "ci_left_set": "CI" in os.environ or "NNCF_CI" in os.environ}}))
    """
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "NNCF_CI", "TF_BUILD",
                                                            "JENKINS_URL")}
    env.update(HOME=str(home), SKEMBED_OPENVINO_CACHE=str(tmp_path / "cache"))
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                            text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["attempts"] == []
    assert found["consent"] is False  # the telemetry singleton NNCF made declined
    assert not found["ci_left_set"]  # the switches were set for NNCF's import only
    assert not (home / "intel").exists()  # no client id, no consent file written


def test_a_conversion_that_gives_nan_is_refused(tmp_path, monkeypatch):
    """A broken conversion (an older OpenVINO gave NaN for all-MiniLM-L6-v2) is refused."""
    model = str(build_model(tmp_path / "model", seed=8))
    monkeypatch.setenv(_openvino.CACHE_ENV, str(tmp_path / "cache"))
    call = _openvino.CompiledModel.__call__
    monkeypatch.setattr(_openvino.CompiledModel, "__call__",
                        lambda self, ids, mask: call(self, ids, mask) * np.nan)
    with pytest.raises(ValueError, match="differ from torch's by up to inf"):
        EmbeddingVectorizer(model, backend="openvino").fit(["a"])
