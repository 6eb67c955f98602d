"""Where the time goes when skembed encodes short sentences on a GPU.

Times, on one model and one set of texts, the stages of ``skembed._engine.encode``
apart and together, so the settings of the fast path can be chosen from
figures rather than guesses:

* tokenisation alone (skembed's path straight to the Rust tokenizer, and the
  ``tokenizer(...)`` call of transformers), texts/s;
* the model alone on batches already on the device, per backend, precision
  and batch size, sentences/s (the ceiling the pipeline can reach);
* ``_engine.encode`` end to end, per backend, precision and batch size, and
  with the background chunk preparation switched off.

Run (``--copies``: the distinct STSb test sentences, that many times over)::

    python benchmarks/gpu_profile.py --model ~/.cache/skembed-benchmarks/distiluse-random --device cuda --json out.json

Every figure is the median of ``--repeats`` timed runs after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_speed import short_texts  # noqa: E402


def timed(function, repeats: int, sync) -> float:
    """Median seconds of ``function()`` over ``repeats`` runs, after one warm-up."""
    function()
    sync()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        function()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--copies", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", default="512,1024,2048,4096",
                        help="for the first backend and precision")
    parser.add_argument("--other-batch-sizes", default="1024,4096",
                        help="for the other backends and precisions")
    parser.add_argument("--precisions", default="float16,bfloat16")
    parser.add_argument("--backends", default="sentence-transformers,transformers")
    parser.add_argument("--json", default=None)
    parser.add_argument(
        "--encode-only", action="store_true",
        help="time _engine.encode alone, first backend and precision, at --batch-sizes",
    )
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="set an integer constant of skembed._engine first")
    parser.add_argument("--switchinterval", type=float, default=None)
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from skembed import EmbeddingVectorizer, _engine, unload_models

    def encode(config, batch_size):
        return _engine.encode(config, texts, batch_size=batch_size, warn_on_truncation=False)

    cuda = args.device.startswith("cuda")
    for assignment in args.set:
        name, value = assignment.split("=")
        setattr(_engine, name, int(value))
    if args.switchinterval:
        sys.setswitchinterval(args.switchinterval)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    texts = short_texts(None) * args.copies
    n = len(texts)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    other_batch_sizes = [int(b) for b in args.other_batch_sizes.split(",")]
    precisions = args.precisions.split(",")
    backends = args.backends.split(",")
    results = {"texts": n, "device": args.device, "torch": torch.__version__,
               "cpus": os.cpu_count(), "tokenize": {}, "forward": [], "encode": []}
    if cuda:
        results["gpu"] = torch.cuda.get_device_name()
    print(f"{n:,} texts; torch {torch.__version__}; {os.cpu_count()} CPUs; "
          f"{results.get('gpu', 'no GPU')}", flush=True)

    def report(section, row):
        results[section].append(row)
        print(f"{section:8s} " + " ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))

    if args.encode_only:
        config = EmbeddingVectorizer(args.model, device=args.device, precision=precisions[0],
                               backend=backends[0])._encoder_config()
        for batch_size in batch_sizes:
            seconds = timed(lambda: encode(config, batch_size), args.repeats, sync)
            report("encode", {"batch_size": batch_size, "set": ",".join(args.set),
                              "switchinterval": args.switchinterval,
                              "rayon": os.environ.get("RAYON_NUM_THREADS"),
                              "sentences_s": round(n / seconds)})
        return 0

    # Tokenisation alone.
    plan = _engine.prepare(EmbeddingVectorizer(args.model, device=args.device,
                                       precision=precisions[0])._encoder_config())
    seconds = timed(lambda: _engine.tokenize(plan, texts), args.repeats, lambda: None)
    results["tokenize"]["rust"] = n / seconds
    tokenizer = plan.model.tokenizer
    seconds = timed(lambda: tokenizer(texts, truncation=True, max_length=plan.max_length), 1,
                    lambda: None)
    results["tokenize"]["transformers_call"] = n / seconds
    order = sorted(range(n), key=lambda i: (len(texts[i]), texts[i]))
    seconds = timed(lambda: sorted(range(n), key=lambda i: (len(texts[i]), texts[i])), 1,
                    lambda: None)
    results["tokenize"]["sort"] = n / seconds
    print("tokenize " + json.dumps(results["tokenize"]), flush=True)

    ordered = [texts[i] for i in order]
    tokens = _engine.tokenize(plan, ordered)
    by_length = np.argsort(tokens.lengths, kind="stable")
    real_tokens = int(tokens.lengths.sum())

    for backend in backends:
        for precision in precisions:
            if backend != backends[0] and precision != precisions[0]:
                continue
            config = EmbeddingVectorizer(args.model, device=args.device, precision=precision,
                                   backend=backend)._encoder_config()
            model = _engine.prepare(config).model
            pad_id = model.tokenizer.pad_token_id or 0
            first = backend == backends[0] and precision == precisions[0]
            for batch_size in batch_sizes if first else other_batch_sizes:
                batches = []
                padded_tokens = 0
                for offset in range(0, n, batch_size):
                    rows = by_length[offset : offset + batch_size]
                    ids, mask = tokens.padded(rows, pad_id)
                    padded_tokens += ids.size
                    batches.append((
                        torch.from_numpy(ids).to(args.device),
                        None if mask.all() else torch.from_numpy(mask).to(args.device),
                    ))

                def forward_all(batches=batches, model=model):
                    with torch.inference_mode():
                        for ids, mask in batches:
                            model.forward(ids, mask)

                seconds = timed(forward_all, args.repeats, sync)
                report("forward", {
                    "backend": backend, "precision": precision, "batch_size": batch_size,
                    "sentences_s": round(n / seconds), "padding": round(padded_tokens / real_tokens, 3),
                    "unmasked_batches": sum(m is None for _, m in batches), "batches": len(batches),
                })
                del batches
                seconds = timed(lambda: encode(config, batch_size), args.repeats, sync)
                report("encode", {"backend": backend, "precision": precision,
                                  "batch_size": batch_size, "sentences_s": round(n / seconds)})
            if first:
                best = max((r for r in results["encode"] if r["backend"] == backend),
                           key=lambda r: r["sentences_s"])["batch_size"]
                for name, value in [("PREFETCH_CHUNKS", 0), ("PREFETCH_CHUNKS", 2),
                                    ("TOKENIZE_CHUNK", 16384), ("TOKENIZE_CHUNK", 1024)]:
                    saved = getattr(_engine, name)
                    setattr(_engine, name, value)
                    try:
                        seconds = timed(lambda: encode(config, best), args.repeats, sync)
                    finally:
                        setattr(_engine, name, saved)
                    report("encode", {"backend": backend, "precision": precision,
                                      "batch_size": best, name: value,
                                      "sentences_s": round(n / seconds)})
                interval = sys.getswitchinterval()
                sys.setswitchinterval(0.0005)
                seconds = timed(lambda: encode(config, best), args.repeats, sync)
                sys.setswitchinterval(interval)
                report("encode", {"backend": backend, "precision": precision,
                                  "batch_size": best, "switchinterval": 0.0005,
                                  "sentences_s": round(n / seconds)})
            del model
            unload_models()
            if cuda:
                torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
