"""The CUDA code paths of long texts and fine-tuning, checked on a GPU (CI has none).

On a machine with a CUDA device, with the tiny models of the test suite (``conftest``):

1. ``long_texts="chunk"`` on the GPU against the window-by-window reference (computed
   on the CPU from sentence-transformers' own modules, as ``tests/test_long_texts.py``
   does) for every model kind chunking serves, both backends; ``"truncate"`` against
   ``SentenceTransformer.encode`` on the GPU;
2. a 1,000,000-character text chunked on the GPU: its vector against the CPU's, and the
   GPU's peak memory;
3. ``precision="bfloat16"`` chunking against float32 (cosine);
4. fine-tuning on labels (``EmbeddingVectorizer(fine_tune=True)``) and on pairs
   (``SimilarityRegressor(fine_tune=True)``, the default recipe and ``"card"``) on the
   GPU: ``bf16="auto"`` resolved, the loss, the tuned vectors' reproducibility.

Prints one line per check and a summary; exits 1 when a check fails.

    SKEMBED_SHARED=../shared python benchmarks/cuda_check.py --out results.json
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
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402

#: The kinds whose vectors skembed's batching computes (chunking serves them).
SERVED = ("plain", "prompted", "matryoshka", "normalized", "dense", "cls", "lowercase",
          "metaspace")
TRANSFORMERS_REFUSES = {"cls"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="write the results as JSON")
    parser.add_argument("--device", default="cuda",
                        help="'cpu' runs the same checks here (a dry run of the script)")
    args = parser.parse_args(argv)
    import torch
    from conftest import STSB_DIR, build_model
    from sentence_transformers import SentenceTransformer
    from test_long_texts import MAX_LENGTH, OVERLAP, TEXTS, windowed_reference

    from skembed import EmbeddingVectorizer

    device = args.device
    on_cuda = device.startswith("cuda")
    if on_cuda and not torch.cuda.is_available():
        print("no CUDA device: nothing to check", file=sys.stderr)
        return 2
    results, failures = [], []

    def report(name, value, ok, **extra):
        results.append({"check": name, "value": value, "ok": bool(ok), **extra})
        if not ok:
            failures.append(name)
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {value}", flush=True)

    name = torch.cuda.get_device_name() if on_cuda else "cpu"
    print(f"cuda_check: {name}, torch {torch.__version__}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="skembed-cuda-check-"))
    models = {kind: str(build_model(work / kind, kind)) for kind in SERVED}

    # 1. Chunked vectors on the GPU, against the reference; truncated ones against encode.
    for kind in SERVED:
        reference = windowed_reference(SentenceTransformer(models[kind], device="cpu"), TEXTS)
        st_gpu = SentenceTransformer(models[kind], device=device)
        st_gpu.max_seq_length = MAX_LENGTH
        encoded = st_gpu.encode(TEXTS, convert_to_numpy=True)
        for backend in ("sentence-transformers", "transformers"):
            if backend == "transformers" and kind in TRANSFORMERS_REFUSES:
                continue
            common = dict(backend=backend, device=device, batch_size=5,
                          max_seq_length=MAX_LENGTH, warn_on_truncation=False)
            chunked = EmbeddingVectorizer(models[kind], long_texts="chunk",
                                          window_overlap=OVERLAP, **common).fit_transform(TEXTS)
            diff = float(np.abs(chunked - reference).max())
            report(f"chunk {kind} {backend} vs reference", f"max |diff| {diff:.2e}",
                   diff <= 1e-5, max_abs_diff=diff)
            truncated = EmbeddingVectorizer(models[kind], **common).fit_transform(TEXTS)
            diff = float(np.abs(truncated - encoded).max())
            report(f"truncate {kind} {backend} vs encode on {device}", f"max |diff| {diff:.2e}",
                   diff <= 1e-5, max_abs_diff=diff)

    # 2. A million characters, whole, on the GPU.
    huge = [" ".join(f"palabra{i % 97} y otra" for i in range(70_000))[:1_000_000]]
    options = dict(long_texts="chunk", max_seq_length=128, warn_on_truncation=False)
    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    on_gpu = EmbeddingVectorizer(models["plain"], device=device, **options).fit_transform(huge)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if on_cuda else 0.0
    on_cpu = EmbeddingVectorizer(models["plain"], device="cpu", **options).fit_transform(huge)
    diff = float(np.abs(on_gpu - on_cpu).max())
    report(f"1,000,000 characters chunked on {device} vs cpu",
           f"max |diff| {diff:.2e}, {seconds:.1f} s, peak GPU memory {peak:.0f} MiB",
           diff <= 1e-5 and peak < 1024, max_abs_diff=diff, seconds=seconds, peak_mib=peak)

    # 3. bfloat16 chunking against float32.
    kwargs = dict(device=device, long_texts="chunk", max_seq_length=MAX_LENGTH,
                  window_overlap=OVERLAP, warn_on_truncation=False)
    full = EmbeddingVectorizer(models["normalized"], **kwargs).fit_transform(TEXTS)
    half = EmbeddingVectorizer(models["normalized"], precision="bfloat16",
                               **kwargs).fit_transform(TEXTS)
    cosine = float((np.sum(full * half, axis=1) / np.linalg.norm(full, axis=1)
                    / np.linalg.norm(half, axis=1)).min())
    report(f"chunk bfloat16 vs float32 on {device}", f"min cosine {cosine:.4f}", cosine > 0.99,
           min_cosine=cosine)

    # 4. Fine-tuning on the GPU: labels, then pairs.
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from skembed import SimilarityRegressor
    from skembed._training import resolve_bf16

    if on_cuda:
        report("bf16='auto' on cuda", resolve_bf16("auto", device),
               resolve_bf16("auto", device) == torch.cuda.is_bf16_supported())
    words = {"deporte": "fútbol gol partido equipo", "salud": "médico hospital vacuna dieta",
             "viaje": "avión hotel playa maleta", "política": "gobierno ley voto congreso"}
    texts, labels = [], []
    for label, vocabulary in words.items():
        for i in range(12):
            texts.append(f"{vocabulary.split()[i % 4]} y {vocabulary.split()[(i + 1) % 4]} "
                         f"número {i}")
            labels.append(label)
    vectors = []
    for _ in range(2):
        tuner = EmbeddingVectorizer(models["plain"], device=device, fine_tune=True,
                                    fine_tune_params={"steps": 30, "batch_size": 16,
                                                      "learning_rate": 1e-3},
                                    random_state=0, show_progress_bar=False)
        pipe = make_pipeline(tuner, LogisticRegression(max_iter=1000))
        start = time.perf_counter()
        pipe.fit(texts, labels)
        seconds = time.perf_counter() - start
        history = tuner.fine_tune_history_["loss"]
        vectors.append(tuner.transform(texts))
    repeat = float(np.abs(vectors[0] - vectors[1]).max())
    report(f"fine-tune on labels on {device}",
           f"loss {history[0]:.4f} -> {history[-1]:.4f}, {seconds:.1f} s, train accuracy "
           f"{pipe.score(texts, labels):.3f}, same seed again: max |diff| {repeat:.2e}",
           np.isfinite(history).all() and history[-1] < history[0],
           seconds=seconds, loss_first=float(history[0]), loss_last=float(history[-1]),
           repeat_max_abs_diff=repeat)

    import pandas as pd

    pairs = pd.read_csv(STSB_DIR / "train.csv").head(256)
    X, y = pairs[["sentence1", "sentence2"]], pairs["similarity_score"].to_numpy(float)
    for name, params in (("default", {"epochs": 1}), ("card", "card")):
        reg = SimilarityRegressor(EmbeddingVectorizer(models["plain"], device=device,
                                                      show_progress_bar=False),
                                  fine_tune=True, fine_tune_params=params, random_state=0)
        start = time.perf_counter()
        reg.fit(X, y)
        seconds = time.perf_counter() - start
        loss = reg.fine_tune_history_["loss"]
        report(f"fine-tune on pairs on {device} ({name})",
               f"loss {loss[0]:.4f} -> {loss[-1]:.4f}, {seconds:.1f} s, train R2 "
               f"{reg.score(X, y):.3f}", np.isfinite(loss).all(), seconds=seconds)

    print(f"\n{len(results) - len(failures)} of {len(results)} checks passed"
          + (f"; failed: {failures}" if failures else ""))
    if args.out:
        Path(args.out).write_text(json.dumps({"device": name,
                                              "torch": torch.__version__,
                                              "results": results}, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
