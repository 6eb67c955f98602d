"""skembed.dask on a real distributed.LocalCluster with two worker processes.

One module-scoped cluster serves every test; the workers are separate
processes that import the installed skembed, load the tiny model from disk
and count their loads in ``skembed._registry.MODEL_LOADS``.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys

import joblib
import numpy as np
import pandas as pd
import pytest

# The dask extra: without it (the minimum-versions run) the module is skipped.
pytest.importorskip("dask", reason="skembed.dask needs the dask extra, not installed")
pytest.importorskip("distributed", reason="skembed.dask needs the dask extra, not installed")
import cloudpickle  # noqa: E402 - after the skip
import dask.array as da  # noqa: E402
import dask.bag as db  # noqa: E402
import dask.dataframe as dd  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402
from sklearn.linear_model import Ridge  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

from skembed import EmbeddingVectorizer  # noqa: E402
from skembed._registry import is_loaded  # noqa: E402
from skembed.dask import embed  # noqa: E402

pytestmark = [pytest.mark.extras, pytest.mark.slow]  # dask; a two-worker cluster

N_ROWS = 36
ATOL = 1e-5  # other batches, other torch threads: float rounding only


def _worker_loads():
    import skembed._registry

    return skembed._registry.MODEL_LOADS


def _import_model_libraries():
    import sentence_transformers  # noqa: F401

    import skembed._vectorizer  # noqa: F401


def _worker_torch_threads():
    import torch

    return torch.get_num_threads()


# The workers cannot import this test module: send its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def client():
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.CRITICAL,
    ) as cluster, Client(cluster) as client:
        # Import the libraries on both workers at once (no model is loaded).
        client.run(_import_model_libraries)
        yield client


@pytest.fixture(scope="module")
def frame():
    """Distinct texts of uneven lengths under a shuffled, non-default index."""
    rng = np.random.default_rng(0)
    first = [f"frase {i}: " + "palabra " * int(rng.integers(0, 12)) for i in range(N_ROWS)]
    second = [f"otra {i} " + "y más " * (i % 5) for i in range(N_ROWS)]
    index = pd.Index(rng.permutation(np.arange(1000, 1000 + N_ROWS)), name="id")
    return pd.DataFrame({"a": first, "b": second, "n": range(N_ROWS)}, index=index)


def _vectorizer(tiny_model, **params):
    return EmbeddingVectorizer(tiny_model, device="cpu", **params)


def test_long_texts_are_chunked_on_the_workers_as_locally(client, tiny_model):
    texts = pd.Series([" ".join(f"palabra{i} y" for i in range(n)) for n in (3, 80, 150, 5)],
                      name="text")
    vectorizer = _vectorizer(tiny_model).set_params(long_texts="chunk", max_seq_length=16,
                                                     window_overlap=4)
    local = vectorizer.fit_transform(texts)
    out = embed(vectorizer, dd.from_pandas(texts, npartitions=2)).compute()
    np.testing.assert_allclose(out, local, atol=ATOL, rtol=0)
    truncated = _vectorizer(tiny_model).set_params(max_seq_length=16, warn_on_truncation=False)
    assert not np.allclose(truncated.fit_transform(texts)[1], local[1], atol=1e-3)


def test_matches_local_transform_in_row_order(client, tiny_model, frame):
    local = _vectorizer(tiny_model).fit_transform(frame[["a", "b"]])
    ddf = dd.from_pandas(frame, npartitions=5, sort=False)

    # Unfitted vectorizer, Dask Array out.
    unfitted = _vectorizer(tiny_model)
    out = embed(unfitted, ddf, columns=["a", "b"], torch_threads=1)
    assert out.dtype == np.float32 and out.shape[1] == 64
    np.testing.assert_allclose(out.compute(), local, atol=ATOL, rtol=0)
    assert not hasattr(unfitted, "n_features_in_"), "embed must not fit the user's estimator"

    # Fitted vectorizer, Dask DataFrame out: index, divisions and names kept.
    fitted = _vectorizer(tiny_model).fit(frame[["a", "b"]])
    out_frame = embed(fitted, ddf, columns=["a", "b"], output="dataframe")
    assert out_frame.divisions == ddf.divisions
    result = out_frame.compute()
    assert result.index.equals(frame.index)
    assert list(result.columns) == list(fitted.get_feature_names_out())
    assert (result.dtypes == np.float32).all()
    np.testing.assert_allclose(result.to_numpy(), local, atol=ATOL, rtol=0)

    # A Series is one column.
    series = embed(_vectorizer(tiny_model), ddf["b"]).compute()
    np.testing.assert_allclose(series, local[:, 32:], atol=ATOL, rtol=0)


def test_an_int8_vectorizer_runs_fitted_and_is_refused_unfitted(client, tiny_model, frame):
    """int8 calibrates on the fit texts: fitted on the user's sample, the workers embed with
    the quantised model it carries; unfitted, it would calibrate on a placeholder."""
    ddf = dd.from_pandas(frame, npartitions=3, sort=False)
    fitted = _vectorizer(tiny_model, backend="openvino", precision="int8").fit(frame["a"])
    out = embed(fitted, ddf["a"]).compute()
    np.testing.assert_allclose(out, fitted.transform(frame["a"]), atol=ATOL, rtol=0)
    with pytest.raises(ValueError, match="fit it on a sample of your texts first"):
        embed(_vectorizer(tiny_model, backend="openvino", precision="int8"), ddf["a"])


def test_bag_array_and_empty_partitions(client, tiny_model, frame):
    local = _vectorizer(tiny_model).fit_transform(frame[["a", "b"]])
    bag = db.from_sequence(frame["a"].tolist(), npartitions=4)
    np.testing.assert_allclose(
        embed(_vectorizer(tiny_model), bag).compute(), local[:, :32], atol=ATOL, rtol=0
    )
    # Columns split over chunks are joined before embedding.
    array = da.from_array(frame[["a", "b"]].to_numpy(dtype=object), chunks=(7, 1))
    np.testing.assert_allclose(
        embed(_vectorizer(tiny_model), array).compute(), local, atol=ATOL, rtol=0
    )
    ddf = dd.from_pandas(frame, npartitions=4, sort=False)
    kept = ddf[ddf["n"] % 9 == 0]  # most partitions keep a row or two, some none
    result = embed(_vectorizer(tiny_model), kept, columns=["a", "b"], output="dataframe")
    result = result.compute()
    expected = frame[frame["n"] % 9 == 0]
    assert result.index.equals(expected.index)
    np.testing.assert_allclose(result.to_numpy(), local[frame["n"] % 9 == 0], atol=ATOL, rtol=0)
    assert embed(_vectorizer(tiny_model), ddf[ddf["n"] < 0]["a"]).compute().shape == (0, 32)


def test_model_loads_once_per_worker_never_in_client(client, tiny_model_copy, frame):
    # A model folder no other test uses, so that its load is new on every process.
    vectorizer = _vectorizer(str(tiny_model_copy))
    before = client.run(_worker_loads)
    ddf = dd.from_pandas(frame, npartitions=8, sort=False)
    first = embed(vectorizer, ddf, columns=["a", "b"]).compute()
    second = embed(vectorizer, ddf["a"]).compute()
    after = client.run(_worker_loads)
    assert sorted(after) == sorted(before)
    assert {w: after[w] - before[w] for w in after} == {w: 1 for w in after}
    assert not is_loaded(vectorizer._encoder_config())  # never in the client
    np.testing.assert_allclose(first[:, :32], second, atol=ATOL, rtol=0)


def test_task_graph_carries_no_weights(client, tiny_model, frame):
    fitted = _vectorizer(tiny_model).fit(frame[["a", "b"]])
    fitted.transform(frame[["a", "b"]])  # the model is loaded in this process now
    assert len(pickle.dumps(fitted)) < 4_000
    ddf = dd.from_pandas(frame, npartitions=6, sort=False)[["a", "b"]]
    embedded = embed(fitted, ddf, output="dataframe")

    def graph_size(collection):
        return len(cloudpickle.dumps(dict(collection.__dask_graph__())))

    # The tiny model alone weighs 15 MB; the graph grows by a few KB a partition.
    assert graph_size(embedded) - graph_size(ddf) < 6 * 4_000


def test_torch_threads_set_where_partitions_run(client, tiny_model, frame):
    ddf = dd.from_pandas(frame, npartitions=4, sort=False)

    def threads_after(block):  # runs in the worker thread that embedded the block
        return np.full((len(block), 1), _worker_torch_threads())

    for n_threads in (2, 1):
        job = embed(_vectorizer(tiny_model), ddf["a"], torch_threads=n_threads)
        seen = job.map_blocks(threads_after, chunks=(job.chunks[0], (1,)), dtype=int).compute()
        assert set(seen.ravel()) == {n_threads}


def test_poison_partition_names_it(client, tiny_model, frame):
    poisoned = frame.copy()
    poisoned["a"] = poisoned["a"].astype(object)
    label = poisoned.index[20]
    poisoned.loc[label, "a"] = None
    ddf = dd.from_pandas(poisoned, npartitions=4, sort=False)
    future = client.compute(embed(_vectorizer(tiny_model), ddf, columns=["a", "b"]))
    first, last = poisoned.index[[18, 26]].tolist()
    pattern = rf"partition 2 of 4, index labels {first} to {last}: .* column 'a'.*{label}"
    with pytest.raises(ValueError, match=pattern):
        future.result(timeout=60)


def test_grid_search_on_dask_backend_matches_local(client, tiny_model_copy, frame):
    texts = frame[["a"]]
    y = frame["a"].str.len().to_numpy(dtype=float)
    # A model folder no other test uses: loads on workers prove the search ran there.
    pipe = make_pipeline(_vectorizer(str(tiny_model_copy)), Ridge())
    search = GridSearchCV(
        pipe, {"ridge__alpha": [0.1, 1.0, 10.0]}, cv=KFold(3), error_score="raise"
    )
    local = search.fit(texts, y).cv_results_["mean_test_score"]  # in this process
    before = sum(client.run(_worker_loads).values())
    with joblib.parallel_config(backend="dask", n_jobs=-1):
        remote = search.fit(texts, y).cv_results_["mean_test_score"]
    assert sum(client.run(_worker_loads).values()) > before
    np.testing.assert_allclose(remote, local, rtol=1e-5)
    assert search.best_params_ == {"ridge__alpha": [0.1, 1.0, 10.0][int(np.argmax(local))]}


def test_workers_share_a_persistent_cache(client, tiny_model_copy, frame, tmp_path):
    from skembed import EmbeddingCache

    cache = EmbeddingCache(tmp_path / "embeddings.sqlite")
    # A model folder no other test uses: a model load on a worker would show.
    model = str(tiny_model_copy)
    vectorizer = _vectorizer(model, cache=cache)
    expected = _vectorizer(model).fit_transform(frame[["a", "b"]])
    vectorizer.fit_transform(frame[["a"]])  # fills the file from this process: 36 misses
    ddf = dd.from_pandas(frame, npartitions=6, sort=False)

    loads = client.run(_worker_loads)
    only_a = embed(vectorizer, ddf[["a"]]).compute()  # every vector read from the file
    assert client.run(_worker_loads) == loads, "a fully cached job must not load the model"
    np.testing.assert_allclose(only_a, expected[:, :32], atol=ATOL, rtol=0)

    both = _vectorizer(model, cache=cache)
    first = embed(both, ddf, columns=["a", "b"]).compute()  # workers write column b at once
    again = embed(both, ddf, columns=["a", "b"]).compute()  # all hits
    np.testing.assert_allclose(first, expected, atol=ATOL, rtol=0)
    np.testing.assert_array_equal(again, first)
    info = cache.info()
    assert info["n_vectors"] == 2 * N_ROWS
    # A read never writes to the file: the workers' hits reach its lifetime counters with
    # their next write (column b's vectors), the last job's when they store again or exit.
    assert (info["hits"], info["misses"]) == (N_ROWS + N_ROWS, N_ROWS + N_ROWS)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"output": "table"}, "output must be one of"),
        ({"columns": ["a", "zz"]}, r"columns \['zz'\] are not in X"),
        ({"torch_threads": 0}, "torch_threads must be a positive int"),
    ],
)
def test_bad_arguments(tiny_model, frame, kwargs, message):
    ddf = dd.from_pandas(frame, npartitions=2)
    with pytest.raises(ValueError, match=message):
        embed(_vectorizer(tiny_model), ddf, **kwargs)


def test_bad_inputs(tiny_model, frame):
    bag = db.from_sequence(["a", "b"], npartitions=1)
    with pytest.raises(ValueError, match="output='dataframe' needs a Dask DataFrame"):
        embed(_vectorizer(tiny_model), bag, output="dataframe")
    with pytest.raises(TypeError, match="X must be a Dask DataFrame"):
        embed(_vectorizer(tiny_model), frame)
    fitted = _vectorizer(tiny_model).fit(frame[["a", "b"]])
    ddf = dd.from_pandas(frame, npartitions=2)
    with pytest.raises(ValueError, match="X has 1 text columns, but the vectorizer was fitted on 2"):
        embed(fitted, ddf["a"])
    with pytest.raises(ValueError, match=r"fitted on \['a', 'b'\]; select them"):
        embed(fitted, ddf[["b", "a"]])


# Last: the worker that replaces the killed one starts cold.
def test_killed_worker_job_completes_identically(client, tiny_model, frame, tmp_path):
    local = _vectorizer(tiny_model).fit_transform(frame[["a", "b"]])
    flag = str(tmp_path / "killed-one-worker")

    def die_once(block):
        # The first block to get here kills its worker process, mid-job.
        if not len(block):
            return block
        try:
            os.close(os.open(flag, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return block
        os._exit(1)

    pids = set(client.run(os.getpid).values())
    ddf = dd.from_pandas(frame, npartitions=6, sort=False)
    clean = embed(_vectorizer(tiny_model), ddf, columns=["a", "b"]).compute()  # no fault
    job = embed(_vectorizer(tiny_model), ddf, columns=["a", "b"]).map_blocks(
        die_once, dtype=np.float32, meta=np.empty((0, 64), dtype=np.float32)
    )
    result = client.compute(job).result(timeout=120)
    assert os.path.exists(flag)
    np.testing.assert_array_equal(result, clean)  # same partitions, same batches: same bits
    np.testing.assert_allclose(result, local, atol=ATOL, rtol=0)
    client.wait_for_workers(2, timeout=60)
    new_pids = client.run(os.getpid)
    assert len(pids - set(new_pids.values())) == 1  # one worker was replaced
    (replacement,) = [w for w, pid in new_pids.items() if pid not in pids]
    # The replacement loads the model by itself, once, when it gets work.
    again = embed(_vectorizer(tiny_model), ddf, columns=["a", "b"]).compute()
    np.testing.assert_allclose(again, local, atol=ATOL, rtol=0)
    assert client.run(_worker_loads, workers=[replacement]) == {replacement: 1}


@pytest.mark.slow
def test_a_fine_tuned_vectorizer_embeds_on_the_workers_with_its_weights_once(client, tiny_model,
                                                                             frame):
    texts = frame["a"].tolist()[:24]
    tuned = _vectorizer(tiny_model, fine_tune=True, random_state=0,
                        fine_tune_params={"steps": 2, "batch_size": 8}).fit(texts, [0, 1] * 12)
    weights = len(pickle.dumps(tuned))
    ddf = dd.from_pandas(frame, npartitions=6, sort=False)["a"]
    embedded = embed(tuned, ddf)
    graph = len(cloudpickle.dumps(dict(embedded.__dask_graph__())))
    assert graph < 1.5 * weights  # one copy of the weights, not one a partition
    np.testing.assert_allclose(embedded.compute(), tuned.transform(frame["a"]), atol=ATOL, rtol=0)
