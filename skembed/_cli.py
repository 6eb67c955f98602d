"""The ``skembed`` command line: quick jobs without writing Python.

Each sub-command is one ``_add_<name>`` function that declares its arguments
and sets ``func``; :func:`main` dispatches.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._engine import BACKENDS, DEFAULT_MODEL, DEVICES, PRECISIONS
from ._input import MISSING_POLICIES


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


def _add_file_job_arguments(parser: argparse.ArgumentParser) -> None:
    """What every command that embeds a file into another file takes."""
    parser.add_argument("--cache", metavar="PATH",
                        help="an embedding cache file: texts met before are not re-embedded")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    _add_model_arguments(parser)


def _short_name(model_or_file: str) -> str:
    """A local path's last part (a figure's title has no room for the rest), a hub name whole."""
    path = Path(model_or_file)
    return path.name if path.exists() else model_or_file


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


#: The column ``skembed similarity --data`` adds to the pairs it scores.
SIMILARITY_COLUMN = "similarity"


def _cosines(vectorizer, pairs):
    """Cosine similarity of the two texts of each row of ``pairs`` (2 columns)."""
    import numpy as np

    vectors = vectorizer.set_params(normalize=True).fit_transform(pairs)
    half = vectors.shape[1] // 2
    return np.einsum("ij,ij->i", vectors[:, :half], vectors[:, half:])


def _similarity(args) -> int:
    if args.data is None:
        if args.sentence2 is None or args.out is not None:
            raise ValueError("give two sentences, or --data FILE --out FILE to score the "
                             "pairs of a file")
        print(f"{_cosines(_vectorizer_from_args(args), [[args.sentence1, args.sentence2]])[0]:.4f}")
        return 0
    if args.sentence1 is not None:
        raise ValueError("give two sentences or --data FILE, not both")
    if args.out is None:
        raise ValueError("--data needs --out FILE: where to write the similarities")

    from ._files import check_columns, check_output, read_table, write_output

    suffix = check_output(args.out, overwrite=args.overwrite, inputs=[args.data])
    table = read_table(args.data)
    check_columns(table, args.columns, args.data)
    if suffix != ".npy" and SIMILARITY_COLUMN in table.columns:
        raise ValueError(f"{args.data} already has a column {SIMILARITY_COLUMN!r}, the column "
                         "this command adds; rename it, or write a .npy file")
    pairs = list(zip(*_pair_texts(table, args.columns)))
    similarity = _cosines(_vectorizer_from_args(args, cache=args.cache), pairs)
    if suffix == ".npy":
        write_output(similarity, args.out)
    else:
        write_output(table.assign(**{SIMILARITY_COLUMN: similarity}), args.out)
    print(f"scored {len(similarity)} pair(s) -> {args.out}")
    return 0


def _add_similarity(subparsers) -> None:
    parser = subparsers.add_parser(
        "similarity", help="cosine similarity of two sentences, or of the pairs of a file",
        description="Print the cosine similarity of the embeddings of two sentences, or "
        "write the similarity of each pair of texts of a file (--data) next to its "
        f"columns, as a column {SIMILARITY_COLUMN!r} (or to a .npy array).",
    )
    parser.add_argument("sentence1", nargs="?")
    parser.add_argument("sentence2", nargs="?")
    parser.add_argument("--data", metavar="FILE",
                        help="a CSV, TSV, Parquet or JSON-lines file of text pairs")
    parser.add_argument("--columns", nargs=2, metavar=("S1", "S2"),
                        default=["sentence1", "sentence2"],
                        help="the two text columns of --data (default: %(default)s)")
    parser.add_argument("--out", help="with --data: the file to write (a table or .npy)")
    _add_file_job_arguments(parser)
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


PAIR_COLUMNS = ("sentence1", "sentence2", "similarity_score")


def _add_pair_arguments(parser: argparse.ArgumentParser, option: str, what: str) -> None:
    parser.add_argument(
        option,
        required=True,
        metavar="FILE",
        help=f"{what}: a CSV, TSV, Parquet or JSON-lines file of scored sentence pairs",
    )
    parser.add_argument(
        "--columns",
        nargs=3,
        metavar=("S1", "S2", "SCORE"),
        default=PAIR_COLUMNS,
        help="the two text columns and the score column (default: %(default)s)",
    )


def _pair_texts(table, columns) -> tuple:
    """The two text columns of ``table``, as lists; a missing text is an error."""
    from ._input import to_text_columns

    texts = to_text_columns(
        table[list(columns)],
        missing_remedy="Fill it or drop its row: every pair needs both texts.",
    )
    return texts.columns[0].tolist(), texts.columns[1].tolist()


def _read_pairs(path, columns):
    """The two text columns (validated, no missing cell) and the scores of a file."""
    from ._files import check_columns, numeric_column, read_table

    table = read_table(path)
    check_columns(table, columns, path)
    return (*_pair_texts(table, columns[:2]), numeric_column(table, columns[2], path))


def _evaluate(args) -> int:
    import json

    from ._evaluation import evaluate_sts

    if args.plot:
        from ._plotting import check_plot_path

        check_plot_path(args.plot)
    sentences1, sentences2, scores = _read_pairs(args.data, args.columns)
    result = evaluate_sts(_vectorizer_from_args(args), sentences1, sentences2, scores)
    if args.json:
        print(json.dumps({"model": args.model, "data": args.data, **result.as_dict()}))
    else:
        _print_sts(result)
    if args.plot:
        from ._plotting import draw_sts, save_figure

        title = f"{_short_name(args.model)} on {_short_name(args.data)}"
        save_figure(lambda ax: draw_sts(result, ax, title=title), args.plot)
        print(f"plot:     {args.plot}")
    return 0


def _print_sts(result) -> None:
    print(f"pairs:    {result.n_pairs}")
    print(f"pearson:  {result.pearson:.4f}")
    print(f"spearman: {result.spearman:.4f}")


def _add_evaluate(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="STS evaluation: correlation of cosine similarity with gold scores",
        description="Pearson and Spearman correlations of the cosine similarity of "
        "sentence pairs with gold scores, as sentence-transformers' "
        "EmbeddingSimilarityEvaluator reports them.",
    )
    _add_pair_arguments(parser, "--data", "the pairs to score")
    parser.add_argument("--plot", metavar="FILE", help="also draw a scatter plot to FILE (PNG)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_model_arguments(parser)
    parser.set_defaults(func=_evaluate)


def _embed(args) -> int:
    import time

    import pandas as pd

    from ._files import check_columns, check_output, read_table, write_output
    from ._input import to_text_columns

    suffix = check_output(args.out, overwrite=args.overwrite, inputs=[args.input])
    if suffix == ".npy" and args.keep is not None:
        raise ValueError("a .npy file holds only the vectors: --keep needs a table output "
                         "(.parquet, .csv, .tsv or .jsonl)")
    table = read_table(args.input)
    columns = args.column or _only_column(table, args.input)
    check_columns(table, columns, args.input)
    keep = list(table.columns) if args.keep is None else args.keep
    check_columns(table, keep, args.input)

    vectorizer = _vectorizer_from_args(
        args,
        max_seq_length=args.max_seq_length,
        normalize=args.normalize,
        handle_missing=args.handle_missing,
        cache=args.cache,
    )
    texts = table[columns]
    to_text_columns(  # a missing cell is reported with this command's option, before any work
        texts,
        handle_missing=args.handle_missing,
        missing_remedy="Fill it, drop its row, or pass --handle-missing empty or zero.",
    )
    # fit() loads the model and learns the output's column names; nothing is embedded yet.
    names = vectorizer.fit(texts).get_feature_names_out()
    clash = sorted(set(keep) & set(names)) if suffix != ".npy" else []
    if clash:
        raise ValueError(f"kept column(s) {clash} would clash with the vector columns; "
                         "rename them or leave them out of --keep")
    start = time.perf_counter()
    vectors = vectorizer.transform(texts)
    seconds = time.perf_counter() - start
    if suffix == ".npy":
        write_output(vectors, args.out)
    else:
        features = pd.DataFrame(vectors, columns=names, index=table.index)
        write_output(pd.concat([table[keep], features], axis=1), args.out)
    print(f"embedded {len(table)} row(s) x {len(columns)} column(s) in {seconds:.1f} s: "
          f"{vectors.shape[0]} x {vectors.shape[1]} float32 -> {args.out}")
    return 0


def _only_column(table, path) -> list:
    if table.shape[1] == 1:
        return [table.columns[0]]
    raise ValueError(f"{path} has {table.shape[1]} columns {list(table.columns)}: "
                     "say which to embed with --column")


def _add_embed(subparsers) -> None:
    parser = subparsers.add_parser(
        "embed",
        help="embed the text columns of a file",
        description="Embed one or more text columns of a CSV, TSV, Parquet, JSON-lines or "
        "text file (one text per line) and write the vectors to a .npy array or, "
        "next to the table's columns, to a .parquet, .csv, .tsv or .jsonl table "
        "(vector columns named <column>_<i>).",
    )
    parser.add_argument("input", help="the file to read")
    parser.add_argument("--out", required=True, help="the file to write (.npy or a table)")
    parser.add_argument("--column", action="append", metavar="NAME",
                        help="a text column to embed; repeat for several (default: "
                        "the only column)")
    parser.add_argument("--keep", nargs="*", metavar="NAME",
                        help="columns to copy into a table output (default: all; "
                        "--keep alone: none)")
    parser.add_argument("--normalize", action="store_true", help="unit-length vectors")
    parser.add_argument("--max-seq-length", type=int, help="truncate texts to N tokens")
    parser.add_argument("--handle-missing", choices=MISSING_POLICIES, default="error",
                        help="an empty cell: an error (default), the empty text, or zeros")
    _add_file_job_arguments(parser)
    parser.set_defaults(func=_embed)


def _json_object(text: str | None, option: str) -> dict:
    """The JSON object given as ``text`` or in the file it names; {} for None."""
    import json

    if text is None:
        return {}
    if Path(text).is_file():
        text = Path(text).read_text(encoding="utf-8")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{option} is neither a JSON object nor a JSON file: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"{option} must be a JSON object, got {value!r}")
    return value


def _fine_tune(args) -> int:
    import time

    import numpy as np

    from ._evaluation import evaluate_sts
    from ._finetune import FineTuneConfig, fine_tune, trainer_seed

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{args.out!r} is a file; --out names the folder to save the model to")
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise ValueError(f"{args.out!r} is a folder that is not empty; pass --overwrite "
                         "to save the model into it anyway")
    config = FineTuneConfig.from_params(_json_object(args.params, "--params"))
    if args.plot:
        from ._plotting import check_plot_path

        check_plot_path(args.plot)
    sentences1, sentences2, scores = _read_pairs(args.train, args.columns)
    dev = _read_pairs(args.dev, args.columns) if args.dev else None
    start = time.perf_counter()
    history = fine_tune(args.model, sentences1, sentences2, scores, out, config=config,
                        seed=trainer_seed(np.random.RandomState(args.seed)), device=args.device)
    print(f"fine-tuned on {len(scores)} pairs in {time.perf_counter() - start:.0f} s; "
          f"saved to {out}")
    if args.plot:
        from ._plotting import draw_history, save_figure

        title = f"fine-tuning {_short_name(args.model)} on {_short_name(args.train)}"
        save_figure(lambda ax: draw_history(history, ax, title=title), args.plot)
        print(f"plot:     {args.plot}")
    if dev is not None:
        from ._vectorizer import EmbeddingVectorizer

        print(f"dev ({args.dev}):")
        _print_sts(evaluate_sts(EmbeddingVectorizer(str(out), device=args.device), *dev))
    return 0


def _add_fine_tune(subparsers) -> None:
    parser = subparsers.add_parser(
        "fine-tune",
        help="fine-tune a model on scored sentence pairs",
        description="Fine-tune a sentence-transformers model on scored sentence pairs "
        "and save it to a folder that EmbeddingVectorizer(model=DIR) and "
        "SentenceTransformer(DIR) load. The recipe is FineTuneConfig's (the default "
        "model card's by default); --params overrides any of it.",
    )
    _add_pair_arguments(parser, "--train", "the training pairs")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to save the model to")
    parser.add_argument("--dev", metavar="FILE",
                        help="pairs to evaluate the fine-tuned model on (same columns)")
    parser.add_argument("--params", metavar="JSON",
                        help='FineTuneConfig fields as a JSON object or a JSON file, e.g. '
                        '\'{"loss": "cosent", "epochs": 2}\'')
    parser.add_argument("--plot", metavar="FILE",
                        help="also draw the training loss against the steps to FILE (PNG)")
    parser.add_argument("--seed", type=int, default=0,
                        help="random state: SimilarityRegressor(random_state=SEED, "
                        "fine_tune=True) trains the same model (default: 0)")
    parser.add_argument("--overwrite", action="store_true",
                        help="save into --out even if it holds files")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="the model to start from (default: %(default)s)")
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.set_defaults(func=_fine_tune)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="skembed", description="Sentence embeddings for scikit-learn users."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_similarity(subparsers)
    _add_cache(subparsers)
    _add_evaluate(subparsers)
    _add_embed(subparsers)
    _add_fine_tune(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError, ImportError) as exc:
        print(f"skembed {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
