"""The ``skembed`` command line: quick jobs without writing Python.

Each sub-command is one ``_add_<name>`` function that declares its arguments
and sets ``func``; :func:`main` dispatches.
"""

from __future__ import annotations

import argparse
import sys

from ._engine import BACKENDS, DEFAULT_MODEL, DEVICES, PRECISIONS


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="sentence-transformers model name or local folder (default: %(default)s)",
    )
    parser.add_argument("--backend", choices=BACKENDS, default="sentence-transformers")
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32")
    parser.add_argument("--batch-size", type=int, default=32)


def _vectorizer_from_args(args, **extra):
    from ._vectorizer import EmbeddingVectorizer

    return EmbeddingVectorizer(
        model=args.model,
        backend=args.backend,
        device=args.device,
        precision=args.precision,
        batch_size=args.batch_size,
        **extra,
    )


def _similarity(args) -> int:
    import numpy as np

    vectorizer = _vectorizer_from_args(args, normalize=True)
    vectors = vectorizer.fit_transform([args.sentence1, args.sentence2])
    print(f"{float(np.dot(vectors[0], vectors[1])):.4f}")
    return 0


def _add_similarity(subparsers) -> None:
    parser = subparsers.add_parser(
        "similarity", help="cosine similarity of two sentences", description="Print the "
        "cosine similarity of the embeddings of two sentences."
    )
    parser.add_argument("sentence1")
    parser.add_argument("sentence2")
    _add_model_arguments(parser)
    parser.set_defaults(func=_similarity)


def _cache_command(args) -> int:
    import json
    import os

    from ._cache import EmbeddingCache

    if not os.path.isfile(args.path):
        raise ValueError(f"no cache file at {args.path!r}")
    cache = EmbeddingCache(args.path)
    if args.action == "clear":
        n_vectors = cache.clear()
        what = "a cache of another skembed version" if n_vectors is None else f"{n_vectors} vectors"
        print(f"cleared {what} from {cache.path}")
        return 0
    info = cache.info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"path:     {info['path']}")
    print(f"size:     {info['size_bytes'] / 2**20:.2f} MiB on disk")
    print(f"vectors:  {info['n_vectors']}")
    print(f"lookups:  {info['hits']} hits, {info['misses']} misses")
    for model in info["models"]:
        print(
            f"model:    {model['model']} ({model['backend']}, {model['precision']}, "
            f"{model['device_type']}, normalize={model['normalize']}, "
            f"max_seq_length={model['max_seq_length']}): {model['n_vectors']} vectors "
            f"of {model['dim']} dims [{model['identity']}]"
        )
    return 0


def _add_cache(subparsers) -> None:
    parser = subparsers.add_parser(
        "cache",
        help="inspect or empty an embedding cache file",
        description="Show what an embedding cache file holds, or delete its vectors.",
    )
    parser.add_argument("action", choices=("info", "clear"))
    parser.add_argument("path", help="the cache file (SQLite) given as cache=PATH")
    parser.add_argument("--json", action="store_true", help="info as JSON")
    parser.set_defaults(func=_cache_command)


def _evaluate(args) -> int:
    import json

    import pandas as pd

    from ._evaluation import evaluate_sts

    data = pd.read_csv(args.data)
    needed = ["sentence1", "sentence2", "similarity_score"]
    absent = [c for c in needed if c not in data.columns]
    if absent:
        raise ValueError(
            f"{args.data} lacks column(s) {absent}; it needs {needed}, "
            f"found {list(data.columns)}"
        )
    result = evaluate_sts(
        _vectorizer_from_args(args),
        data["sentence1"].tolist(),
        data["sentence2"].tolist(),
        data["similarity_score"].tolist(),
    )
    if args.json:
        print(json.dumps({"model": args.model, "data": args.data, **result.as_dict()}))
    else:
        print(f"pairs:    {result.n_pairs}")
        print(f"pearson:  {result.pearson:.4f}")
        print(f"spearman: {result.spearman:.4f}")
    if args.plot:
        from ._plotting import plot_sts

        plot_sts(result, args.plot, title=f"{args.model} on {args.data}")
        print(f"plot:     {args.plot}")
    return 0


def _add_evaluate(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="STS evaluation: correlation of cosine similarity with gold scores",
        description="Pearson and Spearman correlations of the cosine similarity of "
        "sentence pairs with gold scores, as sentence-transformers' "
        "EmbeddingSimilarityEvaluator reports them.",
    )
    parser.add_argument(
        "--data",
        required=True,
        help="CSV file with columns sentence1, sentence2, similarity_score",
    )
    parser.add_argument("--plot", metavar="FILE", help="also draw a scatter plot to FILE (PNG)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_model_arguments(parser)
    parser.set_defaults(func=_evaluate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skembed", description="Sentence embeddings for scikit-learn users."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_similarity(subparsers)
    _add_cache(subparsers)
    _add_evaluate(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError) as exc:
        print(f"skembed {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
