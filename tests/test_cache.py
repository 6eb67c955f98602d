"""The embedding cache: correct keys, safe files, shared by clones and processes."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError

from conftest import encoder_config, pairwise_cosine

from skembed import EmbeddingCache, EmbeddingVectorizer, _cache, _registry, unload_models
from skembed import ModelLoadError
from skembed._cache import FILE_IN_FOLDER, CacheError
from skembed._cli import main
from skembed._fingerprint import hub_commit, model_identity

from conftest import build_model


@pytest.fixture(scope="module")
def texts(stsb_dir) -> list:
    frame = pd.read_csv(stsb_dir / "dev.csv")
    return list(dict.fromkeys(frame["sentence1"].tolist() + frame["sentence2"].tolist()))[:120]


@pytest.fixture(scope="module")
def other_model(tmp_path_factory) -> str:
    """The tiny model's architecture with other random weights (seed 1)."""
    return str(build_model(tmp_path_factory.mktemp("models") / "tiny-seed1", seed=1))


@pytest.fixture
def db(tmp_path) -> str:
    return str(tmp_path / "cache" / "embeddings.sqlite")


@pytest.fixture
def memory():
    """The process-wide in-memory cache, empty for each test."""
    EmbeddingCache(None).clear()
    yield "memory"
    EmbeddingCache(None).clear()


def fresh(model, texts, **params):
    return EmbeddingVectorizer(model, device="cpu", **params).fit_transform(texts)


def stored_vectors(path) -> dict:
    """Every vector of a cache file, as {(model, text key): array}, read with plain sqlite3."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT model, text, vector FROM skembed_vectors").fetchall()
    return {(m, t): np.frombuffer(v, dtype="<f4") for m, t, v in rows}


@pytest.mark.parametrize("where", ["memory", "disk"])
def test_cached_vectors_are_bit_identical_and_counted(tiny_model, texts, db, memory, where):
    cache = EmbeddingCache(db if where == "disk" else None)
    X = texts[:40] + texts[:10]  # duplicates are embedded once
    expected = fresh(tiny_model, X)
    vectorizer = EmbeddingVectorizer(tiny_model, device="cpu", cache=cache)
    cold = vectorizer.fit_transform(X)
    assert cache.stats() == {"hits": 0, "misses": 40}
    warm = vectorizer.transform(X)
    assert cache.stats() == {"hits": 40, "misses": 40}
    assert cold.tobytes() == expected.tobytes()
    assert warm.tobytes() == expected.tobytes()
    # Some new texts: only those are computed.
    more = vectorizer.transform(texts[30:60])
    assert cache.stats() == {"hits": 50, "misses": 60}
    np.testing.assert_allclose(more, fresh(tiny_model, texts[30:60]), rtol=1e-5, atol=1e-6)
    assert more[:10].tobytes() == expected[30:40].tobytes()
    info = cache.info()
    assert info["n_vectors"] == 60 and len(info["models"]) == 1
    assert info["models"][0]["dim"] == 32 and info["size_bytes"] >= 60 * 32 * 4
    if where == "disk":
        assert (info["hits"], info["misses"]) == (50, 60)  # lifetime counts, in the file
        assert len(stored_vectors(cache.path)) == 60


@pytest.mark.slow
def test_a_new_process_reads_the_file_without_computing(tiny_model, texts, db):
    expected = EmbeddingVectorizer(tiny_model, device="cpu", cache=db).fit_transform(texts[:30])
    code = textwrap.dedent(
        f"""
        import numpy as np, sys
        from skembed import EmbeddingCache, EmbeddingVectorizer, _registry
        X = EmbeddingVectorizer({tiny_model!r}, device="cpu", cache={db!r}).fit_transform(
            {texts[:30]!r})
        assert _registry.MODEL_LOADS == 0, _registry.MODEL_LOADS
        print(EmbeddingCache({db!r}).stats())
        sys.stdout.buffer.write(X.tobytes())
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout
    line, _, data = out.partition(b"\n")
    assert json.loads(line.decode().replace("'", '"')) == {"hits": 30, "misses": 0}
    assert data == expected.tobytes()


def test_fully_cached_fit_transform_does_not_load_the_model(tiny_model, texts, db, monkeypatch):
    params = dict(device="cpu", cache=db)
    expected = EmbeddingVectorizer(tiny_model, **params).fit_transform(texts[:20])

    unload_models()  # as in a process that never loaded it
    loads = _registry.MODEL_LOADS
    vectorizer = EmbeddingVectorizer(tiny_model, **params)
    assert vectorizer.fit_transform(texts[:20]).tobytes() == expected.tobytes()
    assert vectorizer.embedding_dim_ == 32
    assert vectorizer.fit(texts[:3]).transform(texts[5:10]).shape == (5, 32)
    assert len(vectorizer.get_feature_names_out()) == 32
    assert _registry.MODEL_LOADS == loads
    vectorizer.transform(["a text never embedded"])  # the spy sees a real load
    assert _registry.MODEL_LOADS == loads + 1


def test_clone_and_pickle_keep_the_cache(tiny_model, texts, db, memory):
    for cache in (db, memory, EmbeddingCache(db)):
        vectorizer = EmbeddingVectorizer(tiny_model, device="cpu", cache=cache)
        vectorizer.fit_transform(texts[:15])
        twin = clone(vectorizer)
        assert twin.get_params()["cache"] == cache
        revived = pickle.loads(pickle.dumps(vectorizer))
        assert revived.get_params()["cache"] == cache
        counts = _cache.resolve_cache(cache)._state
        before = counts.hits
        twin.fit_transform(texts[:15])
        revived.transform(texts[:15])
        assert counts.hits == before + 30 and counts.misses == 15
        EmbeddingCache(None).clear()
    # The handle pickles as its path, never as a connection.
    used = EmbeddingCache(db)
    assert used.info()["n_vectors"] == 15
    payload = pickle.dumps(used)
    assert len(payload) < 200 and pickle.loads(payload) == used


def test_grid_search_embeds_each_text_once(tiny_model, stsb_dir, memory):
    frame = pd.read_csv(stsb_dir / "dev.csv").drop_duplicates("sentence1").head(90)
    X, y = frame[["sentence1"]], frame["similarity_score"] >= 2.5

    def search(cache):
        pipe = make_pipeline(
            EmbeddingVectorizer(tiny_model, device="cpu", cache=cache),
            LogisticRegression(max_iter=200),
        )
        grid = {"logisticregression__C": [0.1, 1.0, 10.0]}
        return GridSearchCV(pipe, grid, cv=3).fit(X, y)

    cached = search(memory)
    stats = EmbeddingCache(None).stats()
    # 3 candidates x 3 folds x (60 train + 30 test texts), then the refit on
    # all 90: 900 lookups, and each text computed once.
    assert stats["misses"] == 90
    assert stats["hits"] == 3 * 3 * (60 + 30) + 90 - 90
    plain = search(None)
    np.testing.assert_allclose(
        cached.cv_results_["mean_test_score"], plain.cv_results_["mean_test_score"], atol=1e-12
    )


@pytest.mark.slow
def test_grid_search_with_four_processes_shares_one_file(tiny_model, stsb_dir, db):
    frame = pd.read_csv(stsb_dir / "dev.csv").drop_duplicates("sentence1").head(90)
    X, y = frame[["sentence1"]], frame["similarity_score"] >= 2.5

    def search(cache, n_jobs):
        pipe = make_pipeline(
            EmbeddingVectorizer(tiny_model, device="cpu", cache=cache),
            LogisticRegression(max_iter=200),
        )
        grid = {"logisticregression__C": [0.1, 1.0, 10.0, 100.0]}
        return GridSearchCV(pipe, grid, cv=3, n_jobs=n_jobs).fit(X, y)

    parallel = search(db, n_jobs=4)
    info = EmbeddingCache(db).info()
    assert info["n_vectors"] == 90  # every text once, whoever computed it first
    plain = search(None, n_jobs=1)
    np.testing.assert_allclose(
        parallel.cv_results_["mean_test_score"], plain.cv_results_["mean_test_score"],
        atol=1e-12,
    )
    _cache._STATES.clear()
    search(db, n_jobs=1)
    assert EmbeddingCache(db).stats()["misses"] == 0


@pytest.mark.parametrize(
    "change",
    [
        {"precision": "bfloat16"},
        {"max_seq_length": 8},
        {"backend": "transformers"},
        {"backend": "openvino"},
        {"backend": "openvino", "precision": "int8"},
        {"prompt": "consulta: "},
        {"truncate_dim": 16},
        "other weights",
    ],
    ids=str,
)
@pytest.mark.filterwarnings("ignore::skembed.TruncationWarning")  # cut on purpose
@pytest.mark.filterwarnings("ignore::skembed.CalibrationWarning")  # int8 on 10 texts
def test_anything_that_changes_a_vector_changes_the_key(
    tiny_model, other_model, texts, db, change
):
    base = dict(device="cpu", cache=db)
    EmbeddingVectorizer(tiny_model, **base).fit_transform(texts[:10])
    model, params = (other_model, {}) if change == "other weights" else (tiny_model, change)
    cache = EmbeddingCache(db)
    before = cache.stats()
    X = EmbeddingVectorizer(model, **base, **params).fit_transform(texts[:10])
    assert cache.stats()["misses"] == before["misses"] + 10
    assert cache.stats()["hits"] == before["hits"]
    assert X.tobytes() == fresh(model, texts[:10], **params).tobytes()
    assert len(cache.info()["models"]) == 2


def test_normalised_and_raw_uses_share_the_stored_vectors(tiny_model, texts, db):
    raw = EmbeddingVectorizer(tiny_model, device="cpu", cache=db).fit_transform(texts[:10])
    cache = EmbeddingCache(db)
    before = cache.stats()
    unit = EmbeddingVectorizer(tiny_model, device="cpu", cache=db, normalize=True)
    X = unit.fit_transform(texts[:10])
    assert cache.stats() == {"hits": before["hits"] + 10, "misses": before["misses"]}
    np.testing.assert_allclose(X, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-7)
    assert X.tobytes() == fresh(tiny_model, texts[:10], normalize=True).tobytes()
    assert len(cache.info()["models"]) == 1


@pytest.mark.slow
def test_a_new_process_reuses_the_model_file_digests_kept_in_the_file(
    tiny_model_copy, texts, db
):
    EmbeddingVectorizer(tiny_model_copy, device="cpu", cache=db).fit_transform(texts[:5])
    code = textwrap.dedent(
        f"""
        from skembed import EmbeddingVectorizer, _fingerprint, _registry
        hashed = []
        real = _fingerprint._hash_file
        _fingerprint._hash_file = lambda path: hashed.append(path) or real(path)
        EmbeddingVectorizer({str(tiny_model_copy)!r}, device="cpu", cache={db!r}).fit_transform(
            {texts[:5]!r})
        assert _registry.MODEL_LOADS == 0
        print(len(hashed))
        """
    )

    def files_hashed_by_a_new_process() -> int:
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        return int(run.stdout.split()[-1])

    assert files_hashed_by_a_new_process() == 0
    # A file touched since is hashed again (and found unchanged: still no model load).
    weights = Path(tiny_model_copy) / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert files_hashed_by_a_new_process() == 1
    assert files_hashed_by_a_new_process() == 0


def test_new_files_have_pages_that_hold_a_vector(tiny_model, texts, db):
    EmbeddingVectorizer(tiny_model, device="cpu", cache=db).fit_transform(texts[:3])
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == _cache.PAGE_SIZE >= 16384


def test_first_read_of_the_file_fills_the_process_store(tiny_model, texts, db):
    expected = EmbeddingVectorizer(tiny_model, device="cpu", cache=db).fit_transform(texts[:20])
    _cache._STATES.clear()  # a new process: nothing in memory
    cache = EmbeddingCache(db)
    key = cache.model_key(encoder_config(tiny_model), "cpu")
    # Part in front already, part from the file, one unknown text.
    cache._state.front.store(key.digest, key.description, texts[:5], expected[:5])
    wanted = texts[:20] + ["never embedded"]
    out, missing = cache.lookup(key, wanted)
    assert missing == [20]
    assert out[:20].tobytes() == expected.tobytes()
    again = np.empty((20, expected.shape[1]), dtype=np.float32)
    assert cache._state.front.lookup(key.digest, wanted[:20], again) == []
    assert again.tobytes() == expected.tobytes()


def test_a_copied_model_folder_shares_its_vectors(tiny_model_copy, tiny_model, texts, db):
    EmbeddingVectorizer(tiny_model, device="cpu", cache=db).fit_transform(texts[:10])
    EmbeddingVectorizer(tiny_model_copy, device="cpu", cache=db).fit_transform(texts[:10])
    assert EmbeddingCache(db).stats() == {"hits": 10, "misses": 10}


def test_rewritten_weights_invalidate_the_cache(tiny_model_copy, other_model, texts, db):
    old = EmbeddingVectorizer(tiny_model_copy, device="cpu", cache=db).fit_transform(texts[:10])
    weights = "model.safetensors"
    shutil.copyfile(Path(other_model) / weights, Path(tiny_model_copy) / weights)
    # The process loads the new weights, and files their vectors under the new identity.
    new = EmbeddingVectorizer(tiny_model_copy, device="cpu", cache=db).fit_transform(texts[:10])
    assert not np.allclose(new, old)
    assert new.tobytes() == fresh(other_model, texts[:10]).tobytes()
    assert EmbeddingCache(db).info()["n_vectors"] == 20


def test_hub_models_are_identified_by_their_commit(tmp_path, tiny_model, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--someone--tiny"
    commits = ["a" * 40, "b" * 40]
    for commit in commits:
        shutil.copytree(tiny_model, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commits[0])
    assert model_identity("someone/tiny", {}) == f"hub:someone/tiny@{commits[0]}"
    assert hub_commit("someone/tiny", commits[1]) == commits[1]
    assert model_identity("someone/unknown", {}) is None
    assert model_identity("someone/tiny", {"revision": "no-such-branch"}) is None
    (repo / "refs" / "v2").write_text(commits[1])
    assert model_identity("someone/tiny", {"revision": "v2"}) == f"hub:someone/tiny@{commits[1]}"


def test_unloadable_unknown_model_raises_instead_of_caching(tmp_path, db):
    vectorizer = EmbeddingVectorizer(str(tmp_path / "no-such-model"), device="cpu", cache=db)
    with pytest.raises(FileNotFoundError, match="No model folder at"):
        vectorizer.fit_transform(["hola"])
    assert not os.path.exists(db) or EmbeddingCache(db).info()["n_vectors"] == 0
    missing_hub = EmbeddingVectorizer("someone/not-cached", device="cpu", cache=db)
    with pytest.raises(ModelLoadError, match="'someone/not-cached'"):
        missing_hub.fit_transform(["hola"])
    assert EmbeddingCache(db).info()["n_vectors"] == 0


# Subprocesses run the cache itself (keys, transactions, reads) on the tiny
# model's real vectors, computed once by the test process and handed over in a
# file, so that they need not import torch: several can start in seconds.
HELPER = """
import os, signal, sys
import numpy as np
from skembed import EmbeddingCache, EmbeddingVectorizer, _sqlite_store
ref = np.load(sys.argv[1])
reference = dict(zip(ref["texts"].tolist(), ref["vectors"]))
config = EmbeddingVectorizer(sys.argv[2], device="cpu")._encoder_config()
cache = EmbeddingCache(sys.argv[3])
key = cache.model_key(config, "cpu")
texts = ref["texts"].tolist()

def encode(batch):
    return np.stack([reference[t] for t in batch])

def embed(batch):
    out, missing = cache.lookup(key, batch)
    if missing:  # as the vectorizer does: encode what is missing, then store it
        todo = [batch[i] for i in missing]
        if out is None:
            out = encode(batch)
        else:
            out[missing] = encode(todo)
        cache.store(key, todo, encode(todo))
    assert out.tobytes() == encode(batch).tobytes()
"""

WORKER = HELPER + """
rng = np.random.default_rng(int(sys.argv[4]))
for _ in range(8):
    embed([texts[i] for i in sorted(rng.choice(len(texts), size=25, replace=False))])
"""

KILLED = HELPER + """
embed(texts[:20])  # committed
rows = _sqlite_store.vector_rows

def rows_then_die(*args):
    for i, row in enumerate(rows(*args)):
        if i == 15:
            os.kill(os.getpid(), signal.SIGKILL)  # mid-transaction
        yield row

_sqlite_store.vector_rows = rows_then_die
embed(texts[20:50])
"""


@pytest.fixture
def reference(tiny_model, texts, tmp_path) -> tuple:
    """The tiny model's vectors of 60 texts, in a file for subprocesses."""
    vectors = fresh(tiny_model, texts[:60])
    path = tmp_path / "reference.npz"
    np.savez(path, texts=np.array(texts[:60]), vectors=vectors)
    return str(path), dict(zip(texts[:60], vectors))


def check_file(db, reference):
    """Every vector stored in the file is exactly the model's vector of its text."""
    by_key = {_cache.text_key(t): v for t, v in reference.items()}
    stored = stored_vectors(db)
    for (_, key), vector in stored.items():
        assert vector.tobytes() == by_key[key].tobytes()
    return len(stored)


@pytest.mark.slow
def test_several_processes_share_one_file(tiny_model, db, reference):
    ref_file, vectors = reference
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, ref_file, tiny_model, db, str(seed)],
            stderr=subprocess.PIPE,
        )
        for seed in range(3)
    ]
    for worker in workers:
        assert worker.wait(timeout=300) == 0, worker.stderr.read().decode()[-2000:]
    seen = set()
    for seed in range(3):
        rng = np.random.default_rng(seed)
        for _ in range(8):
            seen.update(sorted(rng.choice(60, size=25, replace=False)))
    assert check_file(db, vectors) == len(seen)
    info = EmbeddingCache(db).info()
    assert info["n_vectors"] == len(seen) and info["hits"] + info["misses"] == 3 * 8 * 25
    # What the file holds is what a fresh vectorizer reads back.
    _cache._STATES.clear()
    texts = list(vectors)
    warm = EmbeddingVectorizer(tiny_model, device="cpu", cache=db).fit_transform(
        [texts[i] for i in sorted(seen)]
    )
    assert warm.tobytes() == np.stack([vectors[texts[i]] for i in sorted(seen)]).tobytes()
    assert EmbeddingCache(db).stats()["misses"] == 0


@pytest.mark.slow
def test_a_process_killed_mid_write_leaves_only_whole_vectors(tiny_model, texts, db, reference):
    ref_file, vectors = reference
    result = subprocess.run(
        [sys.executable, "-c", KILLED, ref_file, tiny_model, db], capture_output=True
    )
    assert result.returncode == -9, result.stderr.decode()[-2000:]
    assert os.path.getsize(db + "-wal") > 0  # the dead writer's journal is left behind
    assert check_file(db, vectors) == 20
    X = EmbeddingVectorizer(tiny_model, device="cpu", cache=db).fit_transform(texts[:50])
    assert EmbeddingCache(db).stats() == {"hits": 20, "misses": 30}
    np.testing.assert_allclose(X, fresh(tiny_model, texts[:50]), rtol=1e-5, atol=1e-6)
    assert len(stored_vectors(db)) == 50


def test_garbage_and_foreign_files_are_clear_errors(tiny_model, tmp_path):
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(os.urandom(8192))
    with pytest.raises(CacheError, match="not a usable skembed embedding cache.*not a database"):
        EmbeddingVectorizer(tiny_model, device="cpu", cache=str(garbage)).fit_transform(["a"])
    assert main(["cache", "clear", str(garbage)]) == 2
    assert garbage.stat().st_size == 8192  # never deleted behind the user's back
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE customers (name TEXT)")
    with pytest.raises(CacheError, match="other tables \\(customers\\)"):
        EmbeddingCache(foreign).info()


def test_a_cache_of_another_version_asks_to_be_cleared(tiny_model, texts, db):
    EmbeddingVectorizer(tiny_model, device="cpu", cache=db).fit_transform(texts[:5])
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE skembed_meta SET value='999' WHERE name='version'")
    _cache._STATES.clear()  # as a new process would
    with pytest.raises(CacheError, match="cache schema 999.*skembed cache clear"):
        EmbeddingVectorizer(tiny_model, device="cpu", cache=db).fit_transform(texts[:5])
    assert main(["cache", "clear", db]) == 0
    assert EmbeddingCache(db).info()["n_vectors"] == 0


def test_damaged_vectors_are_detected_and_recomputed(tiny_model, texts, db):
    expected = EmbeddingVectorizer(tiny_model, device="cpu", cache=db).fit_transform(texts[:6])
    with sqlite3.connect(db) as conn:
        keys = [row[0] for row in conn.execute("SELECT text FROM skembed_vectors LIMIT 2")]
        flipped = bytearray(32 * 4)
        conn.execute("UPDATE skembed_vectors SET vector=? WHERE text=?", (bytes(flipped), keys[0]))
        conn.execute("UPDATE skembed_vectors SET vector=x'00' WHERE text=?", (keys[1],))
    _cache._STATES.clear()  # a new process: nothing held in memory
    cache = EmbeddingCache(db)
    with pytest.warns(RuntimeWarning, match="2 vector\\(s\\).*checksum"):
        X = EmbeddingVectorizer(tiny_model, device="cpu", cache=db).fit_transform(texts[:6])
    assert cache.stats() == {"hits": 4, "misses": 2}
    np.testing.assert_allclose(X, expected, rtol=1e-5, atol=1e-6)
    _cache._STATES.clear()
    again = EmbeddingVectorizer(tiny_model, device="cpu", cache=db).fit_transform(texts[:6])
    assert EmbeddingCache(db).stats() == {"hits": 6, "misses": 0}
    np.testing.assert_array_equal(again, X)


@pytest.mark.filterwarnings("ignore::skembed.TruncationWarning")  # cut on purpose
def test_cli_info_and_clear(tiny_model, texts, db, capsys):
    EmbeddingVectorizer(tiny_model, device="cpu", cache=db).fit_transform(texts[:12])
    EmbeddingVectorizer(tiny_model, device="cpu", cache=db, max_seq_length=8).fit_transform(
        texts[:4]
    )
    assert main(["cache", "info", db]) == 0
    out = capsys.readouterr().out
    assert "vectors:  16" in out and "max_seq_length=8" in out and "32 dims" in out
    assert main(["cache", "info", db, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert sorted(m["n_vectors"] for m in info["models"]) == [4, 12]
    assert info["misses"] == 16 and info["size_bytes"] > 0
    assert main(["cache", "clear", db]) == 0
    assert "cleared 16 vectors" in capsys.readouterr().out
    assert EmbeddingCache(db).info()["n_vectors"] == 0
    assert main(["cache", "info", db + ".missing"]) == 2
    assert "no cache file" in capsys.readouterr().err


def test_bad_cache_parameters_are_rejected(tiny_model):
    with pytest.raises(InvalidParameterError, match="'cache' parameter"):
        EmbeddingVectorizer(tiny_model, cache=3).fit(["a"])
    with pytest.raises(TypeError, match="takes a str, a path-like or None"):
        EmbeddingCache(3)


# --- where the cache lives ------------------------------------------------------------


def test_a_folder_means_a_file_inside_it(tiny_model, texts, tmp_path):
    folder = tmp_path / "embeddings"
    folder.mkdir()
    X = EmbeddingVectorizer(tiny_model, device="cpu", cache=folder).fit_transform(texts[:4])
    assert (folder / "skembed-cache.sqlite").is_file()
    assert EmbeddingCache(folder).path == str(folder / "skembed-cache.sqlite")
    assert EmbeddingCache(folder).info()["n_vectors"] == 4
    # A path ending in a separator is a folder too, created if needed.
    new = EmbeddingCache(str(tmp_path / "new") + os.sep)
    assert new.path == str(tmp_path / "new" / "skembed-cache.sqlite")
    assert X.shape == (4, 32)


@pytest.fixture
def no_encoding(monkeypatch):
    from skembed import _engine

    def refuse(*args, **kwargs):
        raise AssertionError("embedded texts before refusing the cache")

    monkeypatch.setattr(_engine, "encode", refuse)


@pytest.mark.parametrize(
    "where, message",
    [
        ("under-a-file", "Cannot create the folder"),
        ("proc", "Cannot create the folder"),
        ("read-only", "is read-only"),
        ("a-folder-named-like-the-file", "is not a file"),
    ],
)
def test_a_cache_out_of_reach_is_named_before_any_text_is_embedded(
    tiny_model, texts, tmp_path, no_encoding, where, message
):
    if where == "under-a-file":
        (tmp_path / "notes.txt").write_text("a file, not a folder")
        path = tmp_path / "notes.txt" / "cache.sqlite"
    elif where == "proc":  # a read-only file system, even for root
        path = Path("/proc/skembed-test/cache.sqlite")
    elif where == "read-only":
        path = tmp_path / "cache.sqlite"
        EmbeddingCache(path).open()
        path.chmod(0o444)
    else:
        path = tmp_path / "cache.sqlite"
        (path / FILE_IN_FOLDER).parent.mkdir(parents=True)
        (path / FILE_IN_FOLDER).mkdir()
    vectorizer = EmbeddingVectorizer(tiny_model, device="cpu", cache=path)
    with pytest.raises(CacheError, match=message) as error:
        vectorizer.fit_transform(texts[:3])
    assert str(path if where != "a-folder-named-like-the-file" else path / FILE_IN_FOLDER) in \
        str(error.value) or str(path.parent) in str(error.value)
    assert "Choose another path for the cache" in str(error.value)


def test_the_similarity_command_reuses_the_vectors_embed_stored(tiny_model, tmp_path, capsys):
    table = tmp_path / "pairs.csv"
    pd.DataFrame({"sentence1": ["Un perro corre.", "Hola"],
                  "sentence2": ["Un gato duerme.", "Adiós"]}).to_csv(table, index=False)
    cache = tmp_path / "cache.sqlite"
    for column in ("sentence1", "sentence2"):
        assert main(["embed", str(table), "--column", column, "--out",
                     str(tmp_path / f"{column}.npy"), "--model", tiny_model,
                     "--cache", str(cache)]) == 0
    _cache._STATES.clear()  # as in a new process
    assert main(["similarity", "--data", str(table), "--out", str(tmp_path / "s.csv"),
                 "--model", tiny_model, "--cache", str(cache)]) == 0
    counts = EmbeddingCache(cache).stats()
    assert counts == {"hits": 4, "misses": 0}  # normalised after reading, not in the key
    a, b = np.load(tmp_path / "sentence1.npy"), np.load(tmp_path / "sentence2.npy")
    np.testing.assert_allclose(pd.read_csv(tmp_path / "s.csv")["similarity"],
                               pairwise_cosine(a, b), atol=1e-6)


# --- faults that must never cost a fit: a new file opened at once, a full disk, a lock --------

OPEN_AT_ONCE = """
import multiprocessing, os, sys, tempfile
from skembed import EmbeddingCache

def open_cache(path, barrier, failures):
    barrier.wait()  # the processes open the new file together
    try:
        EmbeddingCache(path).open()
    except Exception as exc:
        failures.put(repr(exc))

if __name__ == "__main__":
    context = multiprocessing.get_context("fork")
    failures, n_processes = context.Queue(), int(sys.argv[3])
    for round in range(int(sys.argv[2])):
        path = os.path.join(sys.argv[1], f"round{round}", "cache.sqlite")
        barrier = context.Barrier(n_processes)
        processes = [context.Process(target=open_cache, args=(path, barrier, failures))
                     for _ in range(n_processes)]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
            assert process.exitcode == 0
    found = []
    while not failures.empty():
        found.append(failures.get())
    print(len(found), found[:3])
"""


@pytest.mark.slow
def test_processes_opening_one_new_file_at_once_all_succeed(tmp_path):
    result = subprocess.run([sys.executable, "-c", OPEN_AT_ONCE, str(tmp_path), "100", "4"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("0 []"), result.stdout  # 400 opens, 0 failures


FULL_DISK = """
import json, os, resource, signal, sys, warnings
from skembed import CacheWarning, EmbeddingVectorizer
model, path, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
expected = EmbeddingVectorizer(model, device="cpu").fit_transform(texts[10:])
vectorizer = EmbeddingVectorizer(model, device="cpu", cache=path).fit(texts)
vectorizer.transform(texts[:10])  # stored while the disk has room
largest = max(os.path.getsize(path + suffix) for suffix in ("", "-wal")
              if os.path.exists(path + suffix))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (largest + 1000, resource.RLIM_INFINITY))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    X = vectorizer.transform(texts[10:])
assert X.tobytes() == expected.tobytes()
print(json.dumps([(w.category.__name__, str(w.message)) for w in caught]))
"""


@pytest.mark.slow
def test_a_full_disk_returns_the_vectors_with_one_warning_and_keeps_the_file(
        tiny_model, texts, db):
    import json
    import sqlite3

    result = subprocess.run(
        [sys.executable, "-c", FULL_DISK, tiny_model, db, json.dumps(texts[:110])],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (category, message), = json.loads(result.stdout.splitlines()[-1])
    assert category == "CacheWarning"
    assert f"The embedding cache {db!r} could not store 100 new vectors" in message
    assert "They were computed and are returned; the file is intact" in message
    assert "Delete" not in message
    # The file passes SQLite's check, holds the earlier vectors, and takes new ones.
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    cache = EmbeddingCache(db)
    assert cache.info()["n_vectors"] == 10
    vectorizer = EmbeddingVectorizer(tiny_model, device="cpu", cache=db).fit(texts)
    # (Other batches than one call of 110 texts: equal to float rounding.)
    np.testing.assert_allclose(vectorizer.transform(texts[:110]), fresh(tiny_model, texts[:110]),
                               atol=1e-6)
    assert cache.info()["n_vectors"] == 110


def test_a_file_locked_past_the_timeout_is_a_warning_not_a_corrupt_file(
        tiny_model, texts, db, monkeypatch):
    import sqlite3

    from skembed import CacheWarning, _sqlite_store

    EmbeddingVectorizer(tiny_model, device="cpu", cache=db).fit_transform(texts[:5])
    _cache._STATES.clear()  # a new process: it connects with the short timeout below
    monkeypatch.setattr(_sqlite_store, "WRITE_TIMEOUT", 0.2)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing for a long time
    try:
        vectorizer = EmbeddingVectorizer(tiny_model, device="cpu", cache=db).fit(texts)
        with pytest.warns(CacheWarning, match="could not store 5 new vectors .database is locked"):
            X = vectorizer.transform(texts[:10])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    np.testing.assert_allclose(X, fresh(tiny_model, texts[:10]), atol=1e-6)
    # Once free, the next write stores what the failed one could not.
    vectorizer.transform(texts[10:12])
    assert EmbeddingCache(db).info()["n_vectors"] == 12


def test_the_memory_front_counts_the_room_it_holds(tiny_model):
    from skembed._memory_store import MemoryStore

    rng = np.random.default_rng(0)
    cap = 3 * 1024 * 32 * 4  # three pools of 1024 rows of 32 float32
    store = MemoryStore(max_bytes=cap)
    for step in range(40):
        vectors = rng.standard_normal((100, 32)).astype(np.float32)
        store.store(b"model", {}, [f"{step}-{i}" for i in range(100)], vectors)
        held = sum(pool.nbytes for pool in store._pools.values())
        assert store.nbytes == held <= cap, step
