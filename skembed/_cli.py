"""The ``skembed`` command line: quick jobs without writing Python.

Each sub-command is one ``_add_<name>`` function that declares its arguments
and sets ``func``; :func:`main` dispatches. The flags that configure the
vectorizer are derived from :class:`~skembed.EmbeddingVectorizer` itself: its
signature (the defaults), its ``_parameter_constraints`` (the kind of value)
and its docstring (the help line). Every model option is a flag of every
command that embeds text; :data:`RUN_PARAMETER_SCOPES` says which commands
take each other parameter. The commands use the public API and their file
helpers only.
"""

from __future__ import annotations

import argparse
import inspect
import numbers
import re
import sys
from pathlib import Path

from ._config import model_option_names

#: Which scopes of parameters each command takes.
SCOPES = {
    "similarity": ("every", "files"),
    "evaluate": ("every",),
    "embed": ("every", "files", "embed"),
    "fine-tune": ("every",),
}
#: The vectorizer's parameters that are not model options, and the scope of
#: commands that take each: "every" command that embeds text, those that embed
#: a file into another file ("files"), "embed" alone, or None (no flag).
RUN_PARAMETER_SCOPES = {
    "batch_size": "every",
    "normalize": "embed",
    "handle_missing": "embed",
    "show_progress_bar": None,
    "warn_on_truncation": "every",
    "cache": "files",
    # Fine-tuning on labels is fit(X, y) in Python; the command line fine-tunes on pairs.
    "fine_tune": None,
    "fine_tune_params": None,
    "fine_tune_dir": None,
    "random_state": None,
}


#: The column ``skembed similarity --data`` adds to the pairs it scores.
SIMILARITY_COLUMN = "similarity"
#: Each command's one-line help and description, as ``skembed CMD --help`` shows them.
COMMANDS = {
    "similarity": (
        "cosine similarity of two sentences, or of the pairs of a file",
        "Print the cosine similarity of the embeddings of two sentences, or "
        "write the similarity of each pair of texts of a file (--data) next to its "
        f"columns, as a column {SIMILARITY_COLUMN!r} (or to a .npy array).",
    ),
    "cache": (
        "inspect or empty an embedding cache file",
        "Show what an embedding cache file holds, or delete its vectors.",
    ),
    "evaluate": (
        "STS evaluation: correlation of cosine similarity with gold scores",
        "Pearson and Spearman correlations of the cosine similarity of "
        "sentence pairs with gold scores, as sentence-transformers' "
        "EmbeddingSimilarityEvaluator reports them.",
    ),
    "embed": (
        "embed the text columns of a file",
        "Embed one or more text columns of a CSV, TSV, Parquet, JSON-lines or "
        "text file (one text per line) and write the vectors to a .npy array or, "
        "next to the table's columns, to a .parquet, .csv, .tsv or .jsonl table "
        "(vector columns named <column>_<i>).",
    ),
    "fine-tune": (
        "fine-tune a model on scored sentence pairs",
        "Fine-tune a sentence-transformers model on scored sentence pairs: "
        "the regressor SimilarityRegressor(fine_tune=True) fits, saved with skembed.save "
        "to a folder that skembed.load and 'skembed embed --pipeline DIR' read; its "
        "encoder, DIR/encoders/encoder-0, is a folder that SentenceTransformer and "
        "--model load. The recipe is FineTuneConfig's (the best measured by default; "
        "--params card for the default model card's); --params overrides any of it.",
    ),
}


def _command(subparsers, name: str) -> argparse.ArgumentParser:
    """The sub-parser of command ``name``, with its help and description."""
    help_line, description = COMMANDS[name]
    return subparsers.add_parser(name, help=help_line, description=description)


def parameter_scopes() -> dict:
    """The scope of every parameter of EmbeddingVectorizer, in the order of its signature."""
    from . import EmbeddingVectorizer

    models = set(model_option_names())
    scopes = {}
    for name in inspect.signature(EmbeddingVectorizer).parameters:
        if name not in models and name not in RUN_PARAMETER_SCOPES:
            raise KeyError(f"EmbeddingVectorizer's {name!r} has no command-line scope: "
                           "add it to RUN_PARAMETER_SCOPES")
        scopes[name] = "every" if name in models else RUN_PARAMETER_SCOPES[name]
    return scopes


def parameter_help(estimator_class) -> dict:
    """The first sentence of each entry of a numpydoc ``Parameters`` section, as plain text."""
    doc = inspect.getdoc(estimator_class) or ""
    section = re.search(r"^Parameters\n-+\n(.*?)(?:^\S[^\n]*\n-+\n|\Z)", doc, re.M | re.S)
    entries = re.findall(r"^(\w+) : [^\n]*\n((?:^(?: {4}[^\n]*)?\n?)*)",
                         section.group(1) if section else "", re.M)
    helps = {}
    for name, body in entries:
        text = re.sub(r":\w+:`~?(?:[\w]+\.)*(\w+)`", r"\1", " ".join(body.split()))
        text = text.replace("``", "")
        sentence = re.match(r"(.+?(?<!e\.g)\.)(?:\s|$)", text)
        helps[name] = (sentence.group(1) if sentence else text).rstrip(".")
    return helps


def _add_vectorizer_options(parser: argparse.ArgumentParser, command: str) -> None:
    """A flag for each vectorizer parameter of ``command``'s scopes: ``--max-seq-length`` ..."""
    from . import EmbeddingVectorizer

    defaults = {name: p.default for name, p in
                inspect.signature(EmbeddingVectorizer).parameters.items()}
    helps = parameter_help(EmbeddingVectorizer)
    for name, scope in parameter_scopes().items():
        if scope not in SCOPES[command]:
            continue
        flag = "--" + name.replace("_", "-")
        default, text = defaults[name], helps[name].replace("%", "%%")
        constraints = [c for c in EmbeddingVectorizer._parameter_constraints[name]
                       if c is not None]
        if constraints == ["boolean"]:
            action = "store_true" if default is False else argparse.BooleanOptionalAction
            parser.add_argument(flag, action=action, default=default, help=text)
            continue
        integer = any(isinstance(getattr(c, "type", None), type)
                      and issubclass(c.type, numbers.Integral) for c in constraints)
        only_choices = len(constraints) == 1 and hasattr(constraints[0], "options")
        parser.add_argument(
            flag, default=default, type=int if integer else str,
            choices=sorted(constraints[0].options) if only_choices else None,
            metavar=None if only_choices else "N" if integer else name.upper(),
            help=f"{text} (default: %(default)s)",
        )


def _vectorizer(args, **overrides):
    """The EmbeddingVectorizer the flags of ``args`` describe."""
    from . import EmbeddingVectorizer

    params = {name: getattr(args, name) for name in parameter_scopes() if hasattr(args, name)}
    return EmbeddingVectorizer(**{**params, **overrides})


def _short_name(model_or_file: str) -> str:
    """A local path's last part (a figure's title has no room for the rest), a hub name whole."""
    path = Path(model_or_file)
    return path.name if path.exists() else model_or_file




def _similarity(args) -> int:
    from . import pair_similarity

    if args.data is None:
        if args.sentence2 is None or args.out is not None:
            raise ValueError("give two sentences, or --data FILE --out FILE to score the "
                             "pairs of a file")
        print(f"{pair_similarity([[args.sentence1, args.sentence2]], _vectorizer(args))[0]:.4f}")
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
    similarity = pair_similarity(table[list(args.columns)], _vectorizer(args))
    if suffix == ".npy":
        write_output(similarity, args.out)
    else:
        write_output(table.assign(**{SIMILARITY_COLUMN: similarity}), args.out)
    print(f"scored {len(similarity)} pair(s) -> {args.out}")
    return 0


def _add_similarity(subparsers) -> None:
    parser = _command(subparsers, "similarity")
    parser.add_argument("sentence1", nargs="?")
    parser.add_argument("sentence2", nargs="?")
    parser.add_argument("--data", metavar="FILE",
                        help="a CSV, TSV, Parquet or JSON-lines file of text pairs")
    parser.add_argument("--columns", nargs=2, metavar=("S1", "S2"),
                        default=["sentence1", "sentence2"],
                        help="the two text columns of --data (default: %(default)s)")
    parser.add_argument("--out", help="with --data: the file to write (a table or .npy)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    _add_vectorizer_options(parser, "similarity")
    parser.set_defaults(func=_similarity, missing_remedy=PAIR_REMEDY)


def _cache_command(args) -> int:
    import json
    import os

    from . import EmbeddingCache

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
    hidden = {"model", "identity", "dim", "n_vectors", "key_version"}
    for model in info["models"]:
        settings = ", ".join(f"{k}={v}" for k, v in model.items() if k not in hidden)
        print(f"model:    {model['model']} ({settings}): {model['n_vectors']} vectors "
              f"of {model['dim']} dims [{model['identity']}]")
    return 0


def _add_cache(subparsers) -> None:
    parser = _command(subparsers, "cache")
    parser.add_argument("action", choices=("info", "clear"))
    parser.add_argument("path", help="the cache file (SQLite) given as cache=PATH")
    parser.add_argument("--json", action="store_true", help="info as JSON")
    parser.set_defaults(func=_cache_command)


PAIR_COLUMNS = ("sentence1", "sentence2", "similarity_score")
#: What the error about a missing text of a pair tells the user to do.
PAIR_REMEDY = "Fill it or drop its row: every pair needs both texts."


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


def _read_pairs(path, columns) -> tuple:
    """The two text columns (a DataFrame, no missing cell) and the scores of a file."""
    from ._files import check_columns, check_texts, numeric_column, read_table

    table = read_table(path)
    check_columns(table, columns, path)
    check_texts(table, columns[:2])
    return table[list(columns[:2])], numeric_column(table, columns[2], path)


def _evaluate(args) -> int:
    import json

    from . import evaluate_sts

    if args.plot:
        from ._plotting import check_plot_path

        check_plot_path(args.plot)
    pairs, scores = _read_pairs(args.data, args.columns)
    result = evaluate_sts(_vectorizer(args), pairs.iloc[:, 0], pairs.iloc[:, 1], scores)
    if args.json:
        print(json.dumps({"model": args.model, "data": args.data, **result.as_dict()}))
    else:
        _print_sts(result)
    if args.plot:
        from ._plotting import save_figure

        title = f"{_short_name(args.model)} on {_short_name(args.data)}"
        save_figure(lambda ax: result.plot(ax, title=title), args.plot)
        print(f"plot:     {args.plot}")
    return 0


def _print_sts(result) -> None:
    print(f"pairs:    {result.n_pairs}")
    print(f"pearson:  {result.pearson:.4f}")
    print(f"spearman: {result.spearman:.4f}")


def _add_evaluate(subparsers) -> None:
    parser = _command(subparsers, "evaluate")
    _add_pair_arguments(parser, "--data", "the pairs to score")
    parser.add_argument("--plot", metavar="FILE", help="also draw a scatter plot to FILE (PNG)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_vectorizer_options(parser, "evaluate")
    parser.set_defaults(func=_evaluate, missing_remedy=PAIR_REMEDY)


def _embed(args) -> int:
    import time

    import pandas as pd

    from ._files import check_columns, check_output, read_table, write_output

    suffix = check_output(args.out, overwrite=args.overwrite, inputs=[args.input])
    if suffix == ".npy" and args.keep is not None:
        raise ValueError("a .npy file holds only the vectors: --keep needs a table output "
                         "(.parquet, .csv, .tsv or .jsonl)")
    table = read_table(args.input)
    if args.pipeline is not None:
        vectorizer = _saved_features(args)
        fitted_on = getattr(vectorizer, "feature_names_in_", None)
        columns = args.column or (list(fitted_on) if fitted_on is not None
                                  else _only_column(table, args.input))
    else:
        vectorizer = _vectorizer(args)
        columns = args.column or _only_column(table, args.input)
    check_columns(table, columns, args.input)
    keep = list(table.columns) if args.keep is None else args.keep
    check_columns(table, keep, args.input)

    texts = table[columns]
    if args.pipeline is None:
        vectorizer.fit(texts)  # checks every cell; nothing is embedded yet
    names = vectorizer.get_feature_names_out()
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


def _saved_features(args):
    """The part of the estimator saved in ``--pipeline`` that makes features: all of it
    if it transforms, a pipeline's steps before its final predictor, a regressor's
    vectorizer."""
    import inspect

    from . import EmbeddingVectorizer, SimilarityRegressor, load

    defaults = {name: p.default for name, p in
                inspect.signature(EmbeddingVectorizer).parameters.items()}
    changed = sorted(f"--{name.replace('_', '-')}" for name in parameter_scopes()
                     if getattr(args, name, defaults[name]) != defaults[name])
    if changed:
        raise ValueError(f"--pipeline embeds as the saved estimator was fitted; "
                         f"{', '.join(changed)} cannot change it")
    estimator = load(args.pipeline)
    if isinstance(estimator, SimilarityRegressor):
        return estimator.vectorizer_
    if hasattr(estimator, "transform"):
        return estimator
    if hasattr(estimator, "steps") and len(estimator.steps) > 1:
        return estimator[:-1]
    raise ValueError(f"the estimator saved in {args.pipeline} ({type(estimator).__name__}) "
                     "makes no features to write")


def _only_column(table, path) -> list:
    if table.shape[1] == 1:
        return [table.columns[0]]
    raise ValueError(f"{path} has {table.shape[1]} columns {list(table.columns)}: "
                     "say which to embed with --column")


def _add_embed(subparsers) -> None:
    parser = _command(subparsers, "embed")
    parser.add_argument("input", help="the file to read")
    parser.add_argument("--out", required=True, help="the file to write (.npy or a table)")
    parser.add_argument("--column", action="append", metavar="NAME",
                        help="a text column to embed; repeat for several (default: "
                        "the only column)")
    parser.add_argument("--keep", nargs="*", metavar="NAME",
                        help="columns to copy into a table output (default: all; "
                        "--keep alone: none)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--pipeline", metavar="DIR",
                        help="embed with an estimator saved by skembed.save or skembed "
                        "fine-tune (a vectorizer, a pipeline's feature steps, a regressor's "
                        "vectorizer), as it was fitted; --column defaults to its columns")
    _add_vectorizer_options(parser, "embed")
    parser.set_defaults(
        func=_embed,
        missing_remedy="Fill it, drop its row, or pass --handle-missing empty or zero.",
    )


def _json_object(text: str | None, option: str) -> dict:
    """The JSON object given as ``text`` (of any length) or in the file it names; {} for None."""
    import json

    if text is None:
        return {}
    if not text.lstrip().startswith(("{", "[")) and Path(text).is_file():
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

    from . import FineTuneConfig, SimilarityRegressor, evaluate_sts, save

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{args.out!r} is a file; --out names the folder to save the model to")
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise ValueError(f"{args.out!r} is a folder that is not empty; pass --overwrite "
                         "to save the model into it anyway")
    named = args.params in FineTuneConfig.NAMED
    recipe = FineTuneConfig.from_params(args.params if named
                                        else _json_object(args.params, "--params"))
    if args.plot:
        from ._plotting import check_plot_path

        check_plot_path(args.plot)
    pairs, scores = _read_pairs(args.train, args.columns)
    dev = _read_pairs(args.dev, args.columns) if args.dev else None
    start = time.perf_counter()
    regressor = SimilarityRegressor(
        _vectorizer(args, show_progress_bar=True), fine_tune=True, fine_tune_params=recipe,
        random_state=args.seed,
    ).fit(pairs, scores)
    print(f"fine-tuned on {len(scores)} pairs in {time.perf_counter() - start:.0f} s")
    metrics = {}
    if dev is not None:
        (dev_pairs, dev_scores) = dev
        result = evaluate_sts(regressor, dev_pairs.iloc[:, 0], dev_pairs.iloc[:, 1], dev_scores)
        print(f"dev ({args.dev}):")
        _print_sts(result)
        metrics = {f"dev Spearman ({Path(args.dev).name})": round(result.spearman, 4),
                   f"dev Pearson ({Path(args.dev).name})": round(result.pearson, 4)}
    save(regressor, out, metrics=metrics, overwrite=True)
    print(f"saved to {out} (skembed.load); its encoder: {_saved_encoder(out)}")
    if args.plot:
        from ._plotting import draw_history, save_figure

        title = f"fine-tuning {_short_name(args.model)} on {_short_name(args.train)}"
        save_figure(lambda ax: draw_history(regressor.fine_tune_history_, ax, title=title),
                    args.plot)
        print(f"plot:     {args.plot}")
    return 0


def _saved_encoder(folder: Path) -> Path:
    """The encoder folder of a saved regressor (its skembed.json lists it)."""
    import json

    (reference,) = json.loads((folder / "skembed.json").read_text(encoding="utf-8"))["encoders"]
    return folder / reference


def _add_fine_tune(subparsers) -> None:
    parser = _command(subparsers, "fine-tune")
    _add_pair_arguments(parser, "--train", "the training pairs")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="folder to save the fitted regressor to")
    parser.add_argument("--dev", metavar="FILE",
                        help="pairs to evaluate the fine-tuned model on (same columns)")
    parser.add_argument("--params", metavar="JSON",
                        help="the recipe: a name ('card': the default model card's), or "
                        "FineTuneConfig fields overriding the defaults (the best recipe "
                        "measured) as a JSON object or a JSON file, e.g. "
                        '\'{"soup": 1, "epochs": 1}\'')
    parser.add_argument("--plot", metavar="FILE",
                        help="also draw the training loss against the steps to FILE (PNG)")
    parser.add_argument("--seed", type=int, default=0,
                        help="random state: SimilarityRegressor(random_state=SEED, "
                        "fine_tune=True) trains the same model (default: 0)")
    parser.add_argument("--overwrite", action="store_true",
                        help="save into --out even if it holds files")
    _add_vectorizer_options(parser, "fine-tune")
    parser.set_defaults(func=_fine_tune, missing_remedy=PAIR_REMEDY)


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
    import warnings

    from . import MissingTextError

    parser = build_parser()
    args = parser.parse_args(argv)

    def show(message, category, *_args, **_kwargs):
        print(f"skembed {args.command}: warning: {message}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = show
            return args.func(args)
    except MissingTextError as exc:  # the command's own remedy, not the Python parameter's
        print(f"skembed {args.command}: error: a missing text at {exc.where} ({exc.n_missing} "
              f"in that column). {args.missing_remedy}", file=sys.stderr)
    except (ValueError, TypeError, OSError, ImportError) as exc:
        print(f"skembed {args.command}: error: {exc}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
