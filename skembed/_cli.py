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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skembed", description="Sentence embeddings for scikit-learn users."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_similarity(subparsers)
    _add_cache(subparsers)
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
