"""Quality of fine-tuning on pairs: Spearman on STSb Spanish test, from all-MiniLM-L6-v2.

In one run, one after the other on the same machine, ``SimilarityRegressor`` fitted on
``train.csv`` with

1. the frozen (English) all-MiniLM-L6-v2 (and its raw cosine);
2. ``fine_tune=True`` and the defaults (``FineTuneConfig()``: the recipe chosen on dev);
3. ``fine_tune=True, fine_tune_params="card"``: the default model card's recipe.

Only ``train.csv`` is trained on; ``dev.csv`` is what recipes were chosen on, ``test.csv``
is reported once per recipe. Fine-tuning is timed (fit seconds: training and the head),
with the machine's load average and CPU alongside.

    python benchmarks/finetune_quality.py --out benchmarks/results/finetune_quality.json
    python benchmarks/finetune_quality.py --recipes default   # skip the (slow) card recipe
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pandas as pd  # noqa: E402

from skembed import EmbeddingVectorizer, SimilarityRegressor, evaluate_sts  # noqa: E402
from skembed._evaluation import spearman_score  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_labels import cpu_name  # noqa: E402
from bench_speed import DATA, minilm_path  # noqa: E402


def load_avg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def read(data: Path, split: str):
    frame = pd.read_csv(data / f"{split}.csv")
    return frame[["sentence1", "sentence2"]], frame["similarity_score"].to_numpy(float)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--recipes", default="default,card",
                        help="comma-separated FineTuneConfig recipe names")
    parser.add_argument("--overrides", type=json.loads, default={},
                        help="JSON overrides of the default recipe (not of the card's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the results as JSON to this file")
    args = parser.parse_args(argv)

    import torch

    from skembed import FineTuneConfig

    X_train, y_train = read(args.data, "train")
    X_dev, y_dev = read(args.data, "dev")
    X_test, y_test = read(args.data, "test")
    vectorizer = EmbeddingVectorizer(minilm_path(), device="cpu", batch_size=64)
    header = (f"finetune_quality: STSb-es, all-MiniLM-L6-v2; {cpu_name()}, torch "
              f"{torch.__version__} ({torch.get_num_threads()} threads)")
    print(header, flush=True)
    rows = []

    def report(name, dev, test, seconds=None, recipe=None):
        rows.append({"model": name, "dev_spearman": dev, "test_spearman": test,
                     "fit_seconds": seconds, "recipe": recipe, "load_average": load_avg()})
        print(f"{name:<44} dev {dev:.4f}  test {test:.4f}"
              + (f"  ({seconds:.0f} s, load {load_avg()})" if seconds else ""), flush=True)

    report("raw cosine (pretrained)",
           evaluate_sts(vectorizer, X_dev.sentence1, X_dev.sentence2, y_dev).spearman,
           evaluate_sts(vectorizer, X_test.sentence1, X_test.sentence2, y_test).spearman)
    frozen = SimilarityRegressor(vectorizer).fit(X_train, y_train)
    report("SimilarityRegressor, frozen encoder", spearman_score(y_dev, frozen.predict(X_dev)),
           spearman_score(y_test, frozen.predict(X_test)))
    for name in args.recipes.split(","):
        recipe = FineTuneConfig.from_params(name)
        if name == "default" and args.overrides:
            recipe = FineTuneConfig.from_params({**recipe.to_dict(), **args.overrides})
        tuned = SimilarityRegressor(vectorizer, fine_tune=True, fine_tune_params=recipe,
                                    random_state=args.seed)
        start = time.perf_counter()
        tuned.fit(X_train, y_train)
        seconds = time.perf_counter() - start
        report(f"SimilarityRegressor, fine-tuned ({name})",
               spearman_score(y_dev, tuned.predict(X_dev)),
               spearman_score(y_test, tuned.predict(X_test)), seconds, recipe.to_dict())
    print()
    print(header)
    print("| model | dev Spearman | test Spearman | fit seconds |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        seconds = "" if row["fit_seconds"] is None else f"{row['fit_seconds']:.0f}"
        print(f"| {row['model']} | {row['dev_spearman']:.4f} | {row['test_spearman']:.4f} | "
              f"{seconds} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"header": header, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
