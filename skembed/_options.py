"""The options of :class:`~skembed.EmbeddingVectorizer`, each declared once.

Everything else is derived from these declarations: the vectorizer's
signature and ``_parameter_constraints``, the command line's flags, what the
regressor hands to fine-tuning (an :class:`EncoderConfig`) and the cache's
model key. To add an option, declare it here, document it in the
vectorizer's docstring and test it; nothing else changes.

The declarations are plain data that import nothing: the engine, the cache
and the command line read them as well as the estimators.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

DEFAULT_MODEL = "mrm8488/distiluse-base-multilingual-cased-v2-finetuned-stsb_multi_mt-es"
BACKENDS = ("sentence-transformers", "transformers")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("float32", "bfloat16", "float16")
#: What the vectorizer does with a missing cell: raise, embed "", or give zeros.
MISSING_POLICIES = ("error", "empty", "zero")


# -- what a value may be ---------------------------------------------------------
@dataclass(frozen=True)
class Choice:
    """One of ``values`` (strings)."""

    values: tuple


@dataclass(frozen=True)
class Integer:
    """An int of at least ``minimum``."""

    minimum: int


@dataclass(frozen=True)
class Pattern:
    """A str matching the regular expression ``regex``, described as ``description``."""

    regex: str
    description: str


class Text:
    """Any str."""


class PathLike:
    """A str or an ``os.PathLike``."""


class Flag:
    """A bool."""


class CacheHandle:
    """An :class:`~skembed.EmbeddingCache`."""


#: ``None`` as an accepted value, in an ``accepts`` tuple.
NONE = None


@dataclass(frozen=True)
class Option:
    """One parameter of the vectorizer.

    Attributes
    ----------
    name : str
        The parameter's name (a flag ``--name-with-dashes`` on the command line).
    default : object
        Its default value.
    accepts : tuple
        What it may be: :class:`Choice`, :class:`Integer`, :class:`Pattern`,
        :class:`Text`, :class:`PathLike`, :class:`Flag`, :class:`CacheHandle`
        or ``None``; any one of them will do.
    help : str
        One line for the command line's ``--help``.
    cli : {"every", "files", "embed"} or None
        Which commands take it: every command that embeds text, those that
        embed a file into another file (``embed``, ``similarity --data``), or
        ``embed`` alone; None for none.
    key : bool
        Whether the value is part of the cache's model key (it changes the
        vectors). The model's name, revision and device are not: the key
        holds the identity of the model's files and the device's type instead.
    per_column : bool
        Whether it may differ between the text columns a regressor compares
        (how texts are fed to the model, never the model or its space).
    """

    name: str
    default: object
    accepts: tuple
    help: str
    cli: str | None = "every"
    key: bool = True
    per_column: bool = False


def _option(default, *accepts, help: str, cli: str | None = "every", key: bool = True,
            per_column: bool = False):
    """A dataclass field of :class:`EncoderConfig` that carries its :class:`Option`."""
    return field(
        default=default,
        metadata={"option": Option("", default, accepts, help, cli, key, per_column)},
    )


@dataclass(frozen=True)
class EncoderConfig:
    """Everything that decides how a model is loaded and run (the model options)."""

    model: str = _option(
        DEFAULT_MODEL, PathLike,
        help="sentence-transformers model name or local folder (default: %(default)s)",
        key=False,
    )
    backend: str = _option(
        "sentence-transformers", Choice(BACKENDS),
        help="run the model's own modules, or transformers' AutoModel with mean pooling",
    )
    device: str = _option(
        "auto", Choice(DEVICES), Pattern(r"cuda:\d+", "'cuda:<index>'"),
        help="where the model runs: auto, cpu, cuda, cuda:<index> or mps", key=False,
    )
    precision: str = _option(
        "float32", Choice(PRECISIONS), help="floating-point type of the model's computation",
    )
    max_seq_length: int | None = _option(
        None, Integer(1), NONE, help="truncate texts to N tokens (default: the model's limit)",
        per_column=True,
    )
    prompt: str | None = _option(
        None, Text, NONE,
        help="a literal prefix for every text (overrides --prompt-name and the model's default)",
        per_column=True,
    )
    prompt_name: str | None = _option(
        None, Text, NONE,
        help="the model's prompt of that name (default: the model's default prompt, if any)",
        per_column=True,
    )
    truncate_dim: int | None = _option(
        None, Integer(1), NONE,
        help="keep the first N dimensions of each vector (default: the model's setting)",
    )
    revision: str | None = _option(
        None, Text, NONE, help="git revision (branch, tag or commit) of a hub model", key=False,
    )
    trust_remote_code: bool = _option(
        False, Flag, help="allow a hub model to run its own Python code",
    )


MODEL_OPTIONS: tuple = tuple(
    replace(f.metadata["option"], name=f.name) for f in fields(EncoderConfig)
)

#: The vectorizer's other parameters: how texts are fed to the model and what
#: becomes of the vectors. None of them changes a stored vector (``key`` is unused).
RUN_OPTIONS: tuple = (
    Option("batch_size", 32, (Integer(1),), "texts per forward pass (default: %(default)s)"),
    Option("normalize", False, (Flag,), "scale each vector to unit length", cli="embed"),
    Option("handle_missing", "error", (Choice(MISSING_POLICIES),),
           "an empty cell: an error (default), the empty text, or zeros", cli="embed"),
    Option("show_progress_bar", "auto", (Flag, Choice(("auto",))),
           "show a progress bar", cli=None),
    Option("warn_on_truncation", True, (Flag,),
           "warn when texts are longer than the model reads (default: on)"),
    Option("cache", None, (NONE, Text, PathLike, CacheHandle),
           "an embedding cache file or folder: texts met before are not re-embedded",
           cli="files"),
)

#: Every parameter of EmbeddingVectorizer, in the order of its signature.
VECTORIZER_OPTIONS: tuple = MODEL_OPTIONS + RUN_OPTIONS


def encoder_config(params: dict) -> EncoderConfig:
    """The :class:`EncoderConfig` of a dict holding (at least) the model options.

    >>> encoder_config({"model": "m", "batch_size": 8}).backend
    'sentence-transformers'
    """
    import os

    values = {o.name: params[o.name] for o in MODEL_OPTIONS if o.name in params}
    if "model" in values:
        values["model"] = os.fspath(values["model"])
    return EncoderConfig(**values)


#: The options that may differ between the columns a regressor compares.
PER_COLUMN_OPTIONS: tuple = tuple(o.name for o in MODEL_OPTIONS if o.per_column)


def key_options(config: EncoderConfig) -> dict:
    """The options of ``config`` that belong in the cache's model key."""
    return {o.name: getattr(config, o.name) for o in MODEL_OPTIONS if o.key}
