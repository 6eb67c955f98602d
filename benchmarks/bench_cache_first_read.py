"""First fully cached read of a cache file by a new process, texts/s.

Fills a cache file with the vectors of the distinct STSb Spanish sentences
(all splits), then starts ``--runs`` new Python processes that each time one
``EmbeddingVectorizer(cache=FILE).fit_transform`` of all of them: opening the
file, the model's identity, reading every vector, no model load (checked).
The time excludes the interpreter's start and imports, and includes
everything skembed does for the call.

Run::

    python benchmarks/bench_cache_first_read.py --models minilm distiluse
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_speed import DATA, DEFAULT_MODEL_DIR, ensure_model, minilm_path  # noqa: E402

CHILD = """
import json, time
from skembed import EmbeddingVectorizer, _models
texts = json.load(open({texts!r}))
start = time.perf_counter()
X = EmbeddingVectorizer({model!r}, device="cpu", cache={path!r}).fit_transform(texts)
seconds = time.perf_counter() - start
assert _registry.MODEL_LOADS == 0 and X.shape == (len(texts), {dim})
print(json.dumps({{"seconds": seconds}}))
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["minilm", "distiluse"])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    import pandas as pd

    from skembed import EmbeddingVectorizer

    frames = [pd.read_csv(DATA / f"{split}.csv") for split in ("train", "dev", "test")]
    texts = sorted({t for f in frames for t in list(f.sentence1) + list(f.sentence2)})
    models = {"minilm": minilm_path, "distiluse": lambda: str(ensure_model(DEFAULT_MODEL_DIR))}
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        texts_file = os.path.join(workdir, "texts.json")
        Path(texts_file).write_text(json.dumps(texts))
        for name in args.models:
            model = models[name]()
            path = os.path.join(workdir, f"{name}.sqlite")
            vectors = EmbeddingVectorizer(model, device="cpu", cache=path,
                                          batch_size=64).fit_transform(texts)
            code = textwrap.dedent(CHILD).format(texts=texts_file, model=model, path=path,
                                                 dim=vectors.shape[1])
            seconds = []
            for _ in range(args.runs):
                run = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                     text=True)
                if run.returncode != 0:
                    raise RuntimeError(run.stderr[-2000:])
                seconds.append(json.loads(run.stdout.strip().splitlines()[-1])["seconds"])
            row = {"model": name, "texts": len(texts), "dim": vectors.shape[1],
                   "file_mb": sum(os.path.getsize(path + suffix) for suffix in ("", "-wal")
                                  if os.path.exists(path + suffix)) / 2**20, "seconds": seconds,
                   "texts_s": len(texts) / statistics.median(seconds)}
            rows.append(row)
            print(f"{name}: {len(texts):,} texts x {row['dim']} dims, file {row['file_mb']:.0f} MB: "
                  f"first read by a new process {row['texts_s']:,.0f} texts/s "
                  f"(median of {args.runs}; {', '.join(f'{s:.3f}' for s in seconds)} s)",
                  flush=True)
    print(f"load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
