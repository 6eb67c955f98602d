"""Fine-tuning on labels, measured: SIB-200 English topics with all-MiniLM-L6-v2.

On the same draws of N labelled texts per class from train (5 seeds each), and on the
whole train set: the accuracy on test (204 texts, 7 topics) and the training time of

* frozen embeddings + LogisticRegression (``EmbeddingVectorizer()``),
* skembed's fine-tuning on the labels (``EmbeddingVectorizer(fine_tune=True)``, its
  default recipe, chosen on train and dev with benchmarks/label_sweep.py), and the
  same recipe without early stopping (``early_stopping=None``: the default before it),
* setfit itself (optional: ``pip install setfit``), with its defaults,

each followed by the same ``LogisticRegression`` (setfit: its own default head). The
seconds are those of ``fit`` (encoding, training and the head), one method after the other
on an otherwise idle machine; the CPU is printed with the figures.

    python benchmarks/bench_labels.py --out benchmarks/results/labels.json
    python benchmarks/bench_labels.py --quick   # 8 per class, 1 seed, no full set
"""

from __future__ import annotations

import argparse
import json
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from label_sweep import draw, minilm_path, read  # noqa: E402


def cpu_name() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def skembed_pipeline(fine_tune: bool, seed: int, params=None):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from skembed import EmbeddingVectorizer

    vectorizer = EmbeddingVectorizer(minilm_path(), device="cpu", fine_tune=fine_tune,
                                     fine_tune_params=params, random_state=seed,
                                     show_progress_bar=False, batch_size=64)
    return make_pipeline(vectorizer, LogisticRegression(max_iter=2000))


def run_skembed(fine_tune: bool, train, test, seed: int, params=None) -> dict:
    pipe = skembed_pipeline(fine_tune, seed, params)
    start = time.perf_counter()
    pipe.fit(train.text.tolist(), train.category.to_numpy())
    seconds = time.perf_counter() - start
    accuracy = float((pipe.predict(test.text.tolist()) == test.category.to_numpy()).mean())
    return {"accuracy": accuracy, "seconds": seconds}


def run_setfit(train, test, seed: int, num_iterations=None) -> dict:
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    model = SetFitModel.from_pretrained(minilm_path(), device="cpu")
    with tempfile.TemporaryDirectory(prefix="setfit-") as checkpoints:
        args = TrainingArguments(output_dir=checkpoints, seed=seed, show_progress_bar=False,
                                 report_to="none", **({} if num_iterations is None
                                                      else {"num_iterations": num_iterations}))
        data = Dataset.from_dict({"text": train.text.tolist(),
                                  "label": train.category.tolist()})
        trainer = Trainer(model=model, args=args, train_dataset=data)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    accuracy = float((np.asarray(model.predict(test.text.tolist())) == test.category.to_numpy()
                      ).mean())
    return {"accuracy": accuracy, "seconds": seconds}


METHODS = ("frozen + LogisticRegression", "skembed fine_tune=True",
           "skembed fine_tune=True, no early stopping", "setfit")


def table(rows: list) -> str:
    lines = ["| texts per class | method | accuracy (mean ± sd) | fit seconds (mean) | runs |",
             "| --- | --- | --- | --- | --- |"]
    for setting in dict.fromkeys(r["setting"] for r in rows):
        for method in METHODS:
            found = [r for r in rows if r["setting"] == setting and r["method"] == method]
            if not found:
                continue
            acc = np.array([r["accuracy"] for r in found])
            sec = np.array([r["seconds"] for r in found])
            lines.append(f"| {setting} | {method} | {acc.mean():.3f} ± {acc.std():.3f} | "
                         f"{sec.mean():.1f} | {len(found)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", default="8,16", help="comma-separated")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--no-full", action="store_true", help="skip the whole train set")
    parser.add_argument("--no-setfit", action="store_true")
    parser.add_argument("--no-old-default", action="store_true",
                        help="leave out the default recipe without early stopping")
    parser.add_argument("--full-setfit-iterations", type=int, default=5,
                        help="setfit's num_iterations on the whole train set (its default "
                        "sampling there makes 420,000 pairs: hours)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", help="write the results as JSON (after every run)")
    parser.add_argument("--resume", help="a JSON file of an earlier --out of this script: "
                        "its runs are kept, only the missing ones run")
    args = parser.parse_args(argv)
    if args.quick:
        args.per_class, args.seeds, args.no_full = "8", 1, True
    try:
        import setfit  # noqa: F401
    except ImportError:
        args.no_setfit = True
        print("setfit is not installed: its rows are left out (pip install setfit)",
              file=sys.stderr)
    import torch

    from skembed._devices import cpu_has_fast_bfloat16

    header = (f"bench_labels: SIB-200 eng_Latn, all-MiniLM-L6-v2; {cpu_name()}, "
              f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} "
              f"threads), native bfloat16: {cpu_has_fast_bfloat16()}")
    print(header, flush=True)
    train, test = read("eng_Latn", "train"), read("eng_Latn", "test")
    settings = [(int(n), seed) for n in args.per_class.split(",") for seed in range(args.seeds)]
    if not args.no_full:
        settings.append((None, 0))
    rows = json.loads(Path(args.resume).read_text())["rows"] if args.resume else []
    done = {(r["setting"], r["seed"], r["method"]) for r in rows}
    for per_class, seed in settings:
        part = draw(train, per_class, seed)
        setting = "all (701)" if per_class is None else str(per_class)
        runs = [("frozen + LogisticRegression", lambda: run_skembed(False, part, test, seed)),
                ("skembed fine_tune=True", lambda: run_skembed(True, part, test, seed))]
        if not args.no_old_default:
            runs.append(("skembed fine_tune=True, no early stopping",
                         lambda: run_skembed(True, part, test, seed, {"early_stopping": None})))
        if not args.no_setfit:
            iterations = args.full_setfit_iterations if per_class is None else None
            runs.append(("setfit", lambda: run_setfit(part, test, seed, iterations)))
        for method, run in runs:
            if (setting, seed, method) in done:
                continue
            row = {"setting": setting, "seed": seed, "method": method, **run(),
                   "load_average": os.getloadavg()[0]}
            rows.append(row)
            print(f"{setting:>9} seed {seed} {method:<28} accuracy {row['accuracy']:.3f} "
                  f"{row['seconds']:7.1f} s (load {row['load_average']:.2f})", flush=True)
            if args.out:
                Path(args.out).write_text(json.dumps({"header": header, "rows": rows}, indent=2))
    print()
    print(header)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
