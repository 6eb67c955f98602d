"""What every fine-tuning shares: the recipe's common settings and one way to run the trainer.

:class:`TrainingRecipe` holds the settings both recipes have (optimiser,
schedule, precision, dropout, frozen embeddings, attention kernel, soup),
validated in scikit-learn's vocabulary. :func:`run_training` loads the model
as the vectorizer describes it (the one loader of :mod:`skembed._loading`,
the vectorizer's ``max_seq_length``), prepares it, runs
sentence-transformers' ``SentenceTransformerTrainer`` once per soup member,
averages the members and saves the result. It is quiet unless asked: then it
shows one progress bar on stderr, the loss in its postfix, and never writes
to stdout.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import asdict, dataclass, fields
from numbers import Integral, Real
from typing import ClassVar

import numpy as np

from ._config import training_config
from ._devices import has_native_bfloat16, warn_if_bfloat16_is_slow
from ._loading import (
    capped_max_length,
    load_request,
    open_sentence_transformer,
    position_limit,
    quiet_transformers,
)
from ._prompts import resolve_prompt
from ._registry import unload_models
from ._sklearn import Interval, InvalidParameterError, StrOptions, validate_parameter_constraints

ATTENTION = ("auto", "model", "eager", "sdpa")

#: The docstring entries of the settings every recipe has: (name, type, description).
_COMMON_SETTINGS = (
    ("batch_size", "int", "Examples per optimiser step."),
    ("learning_rate", "float", "Peak learning rate of AdamW."),
    ("weight_decay", "float", "AdamW's weight decay."),
    ("warmup_steps", "int or float", "Linear warm-up, then linear decay to zero: a number "
     "of steps, or a float in [0, 1) for that share of all the steps."),
    ("max_grad_norm", "float", "Gradient norm clipping."),
    ("bf16", 'bool or "auto"', "Train under bfloat16 autocast (the saved weights stay "
     'float32). ``"auto"``: where this machine computes bfloat16 natively (a CPU with AMX '
     "or AVX512-BF16, a GPU that supports it); elsewhere it is emulated and several times "
     "slower than float32 (``True`` then warns)."),
    ("dropout", "float or None", "Dropout probability of every dropout layer while "
     "training; None keeps the model's own (0.1 for BERT-like models); 0 also saves drawing "
     "the masks. The saved model keeps its own configuration."),
    ("freeze_embeddings", "bool", "Keep the token embedding matrix as it is: no gradient "
     "and no optimiser work for it (half the weights of a small model like "
     "all-MiniLM-L6-v2)."),
    ("attn_implementation", '{"auto", "model", "eager", "sdpa"}', "Attention kernel while "
     'training. ``"auto"``: ``"eager"`` on a CPU, where PyTorch\'s fused attention trains '
     "slowly (its backward pass took over half of a bfloat16 training step), the model's "
     'own elsewhere. ``"model"`` keeps the model\'s own. The saved model keeps its own.'),
    ("soup", "int", "Fine-tune this many models from the same start, with seeds ``seed``, "
     "``seed + 1``, ..., and keep the average of their weights (a uniform \"model soup\"): "
     "usually better than any one of them, at ``soup`` times the training time and no "
     "extra cost to use."),
    ("early_stopping", "int or None", "Stop when the logged training loss has been zero "
     "(below 1e-6: no example left inside the margin) for this many logs in a row (a log "
     "every eighth of the steps, at most every 50); None trains for every step. The "
     "history's ``\"stopped\"`` says where and why it stopped."),
)

#: Constraints shared by the recipes' own fields: a budget of optimiser steps, a scale.
STEPS = [Interval(Integral, 1, None, closed="left")]
POSITIVE = [Interval(Real, 0, None, closed="neither")]

#: A logged loss at most this is zero: every example of the interval is already learned.
ZERO_LOSS = 1e-6


def settings_doc(recipe_class) -> str:
    """The numpydoc entries of the common settings, with ``recipe_class``'s defaults."""
    import textwrap

    defaults = {f.name: f.default for f in fields(recipe_class)}
    entries = []
    for name, kind, text in _COMMON_SETTINGS:
        body = textwrap.fill(text, 78, initial_indent=" " * 8, subsequent_indent=" " * 8)
        entries.append(f"    {name} : {kind}, default={defaults[name]!r}\n{body}\n")
    return "".join(entries)


@dataclass(frozen=True)
class TrainingRecipe:
    """The settings every fine-tuning recipe has; see its subclasses for the defaults."""

    batch_size: int = 32
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int | float = 0.1
    max_grad_norm: float = 1.0
    bf16: bool | str = "auto"
    dropout: float | None = 0.0
    freeze_embeddings: bool = True
    attn_implementation: str = "auto"
    soup: int = 1
    early_stopping: int | None = None

    #: Recipes by name (``fine_tune_params="card"``): each recipe class has its own.
    NAMED: ClassVar[dict] = {"default": {}}
    #: How many text columns the recipe's examples have (pairs: 2).
    N_COLUMNS: ClassVar[int] = 1

    #: The constraints of the common settings; each recipe adds its own.
    _parameter_constraints: ClassVar[dict] = {
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "warmup_steps": [Interval(Integral, 0, None, closed="left"),
                         Interval(Real, 0, 1, closed="left")],
        "max_grad_norm": [Interval(Real, 0, None, closed="neither")],
        "bf16": ["boolean", StrOptions({"auto"})],
        "dropout": [Interval(Real, 0, 1, closed="left"), None],
        "freeze_embeddings": ["boolean"],
        "attn_implementation": [StrOptions(set(ATTENTION))],
        "soup": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __post_init__(self):
        values = self.to_dict()
        validate_parameter_constraints(self._parameter_constraints, values,
                                       caller_name=type(self).__name__)
        for name, constraints in self._parameter_constraints.items():
            # A bool is an int to Python, never a number of steps or a rate here.
            if isinstance(values[name], bool) and "boolean" not in constraints:
                raise InvalidParameterError(
                    f"The {name!r} parameter of {type(self).__name__} must be a number, "
                    f"got {values[name]!r}."
                )

    @classmethod
    def from_params(cls, params):
        """A recipe from a dict of overrides of the defaults, a recipe's name, or a recipe."""
        if isinstance(params, cls):
            return params
        if isinstance(params, str):
            named = getattr(cls, "NAMED", {})
            if params not in named:
                raise ValueError(f"Unknown {cls.__name__} recipe {params!r}; the named recipes "
                                 f"are {sorted(named)}.")
            return cls(**named[params])
        params = dict(params or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(
                f"Unknown fine-tuning parameter(s) {unknown}; valid ones are {sorted(known)}."
            )
        return cls(**params)

    def to_dict(self) -> dict:
        return asdict(self)

    # -- what each recipe says for itself: its examples, its loss, its budget ----------
    def training_run(self, examples, seed: int) -> TrainingRun:
        """The :class:`TrainingRun` of this recipe on ``examples`` (the recipe's own kind
        of data: scored pairs, labelled texts, texts with numbers)."""
        raise NotImplementedError

    def texts_read(self, n_examples: int) -> int:
        """Texts this recipe feeds the model for ``n_examples`` examples (what
        ``show_progress_bar="auto"`` counts)."""
        raise NotImplementedError

    @property
    def n_columns(self) -> int:
        """How many text columns each example has (each trained as its config says)."""
        return self.N_COLUMNS


def resolve_bf16(setting, device: str) -> bool:
    """``bf16`` as the trainer takes it: ``"auto"`` is on where bfloat16 is native here.

    >>> resolve_bf16(False, "cpu")
    False
    """
    if setting == "auto":
        return has_native_bfloat16(device)
    if setting:
        warn_if_bfloat16_is_slow("bf16=True", "bf16=False", device)
    return bool(setting)


def training_attention(recipe: TrainingRecipe, device: str) -> str | None:
    """The attention kernel to train with on ``device``; None keeps the model's own.

    >>> training_attention(TrainingRecipe(), "cpu")
    'eager'
    >>> training_attention(TrainingRecipe(), "cuda") is None
    True
    """
    choice = recipe.attn_implementation
    if choice == "auto":
        return "eager" if device == "cpu" else None
    return None if choice == "model" else choice


def _transformers_networks(st_model, option: str) -> list:
    """The transformers models inside ``st_model``; an error naming ``option`` if none."""
    from transformers import PreTrainedModel

    networks = [m for m in st_model.modules() if isinstance(m, PreTrainedModel)]
    if not networks:
        raise ValueError(
            f"{option} needs a transformers model inside the sentence-transformers "
            "model; this one has none."
        )
    return networks


def _prepare_for_training(st_model, recipe: TrainingRecipe, device: str) -> None:
    """Apply the recipe's dropout, embedding freeze and attention to ``st_model``, in place."""
    import torch

    if recipe.dropout is not None:
        for module in st_model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = recipe.dropout
    if recipe.freeze_embeddings:
        for network in _transformers_networks(st_model, "freeze_embeddings=True"):
            network.get_input_embeddings().weight.requires_grad_(False)
    attention = training_attention(recipe, device)
    if attention is None:
        return
    explicit = recipe.attn_implementation != "auto"
    option = f"attn_implementation={attention!r}"
    if explicit:
        networks = _transformers_networks(st_model, option)
    else:  # "auto" is best effort: it leaves other models as they are
        from transformers import PreTrainedModel

        networks = [m for m in st_model.modules() if isinstance(m, PreTrainedModel)]
    for network in networks:
        if hasattr(network, "set_attn_implementation"):
            network.set_attn_implementation(attention)
        elif explicit:
            raise ValueError(
                f"{option} needs a transformers version whose models have "
                "set_attn_implementation; upgrade transformers or use 'model'."
            )


def load_for_training(configs: tuple, device: str):
    """The model of ``configs`` as the trainer takes it: float32 weights on ``device``,
    reading the vectorizer's ``max_seq_length`` (one for every column)."""
    lengths = {config.max_seq_length for config in configs}
    if len(lengths) > 1:
        raise ValueError(
            f"Fine-tuning trains every column with one max_seq_length, but the columns ask "
            f"for {sorted(lengths, key=str)}; give them one value (column_params)."
        )
    st_model = open_sentence_transformer(load_request(configs[0], device=device))
    (asked,) = lengths
    if asked is not None:
        st_model.max_seq_length = capped_max_length(
            asked, st_model.max_seq_length, position_limit(st_model[0].auto_model.config))
    # Train float32 weights (bf16 autocasts), whatever dtype the checkpoint has.
    return st_model.float()


def _progress_callback(bar, n_members: int):
    from transformers import TrainerCallback

    class TrainingBar(TrainerCallback):
        """Moves one tqdm bar a step at a time; the last logged loss is its postfix."""

        def on_train_begin(self, args, state, control, **kwargs):
            if bar.total is None:
                bar.total = state.max_steps * n_members
                bar.refresh()

        def on_step_end(self, args, state, control, **kwargs):
            bar.update(1)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                bar.set_postfix(loss=f"{float(logs['loss']):.4f}")

    return TrainingBar()


@dataclass
class TrainingRun:
    """What one fine-tuning trains on, and how: the parts that differ between recipes.

    Attributes
    ----------
    dataset : datasets.Dataset
        Its text columns are encoded as the matching config of ``configs``.
    make_loss : callable
        ``make_loss(model)``: the sentence-transformers loss.
    batch_sampler : object
        A ``BatchSamplers`` value or a ``DefaultBatchSampler`` subclass.
    epochs, max_steps : float or None
        How long: passes over the dataset, or optimiser steps (which wins).
    """

    dataset: object
    make_loss: object
    batch_sampler: object
    epochs: float | None = None
    max_steps: int | None = None


def run_training(configs: tuple, run: TrainingRun, recipe: TrainingRecipe, output_dir, *,
                 seed: int, show_progress_bar: bool) -> dict:
    """Fine-tune the model of ``configs`` as ``run`` and ``recipe`` say; save it to ``output_dir``.

    ``configs`` are the encoder configs of the dataset's text columns, in
    order: the same model, loaded as the first says; each column is trained
    with the prompt it is encoded with.

    Returns
    -------
    history : dict of ndarray
        ``"step"``, ``"epoch"`` and ``"loss"`` (mean since the previous log; for
        a soup, also the mean over its members), one entry per log.
    """
    from tqdm.auto import tqdm

    configs = tuple(map(training_config, configs))
    device = load_request(configs[0]).device
    bf16 = resolve_bf16(recipe.bf16, device)
    histories, stops, weight_sum = [], [], None
    bar = tqdm(total=None, desc="Fine-tuning", unit="step", leave=False, file=sys.stderr,
               disable=not show_progress_bar)
    with bar, quiet_transformers():
        for member_seed in range(seed, seed + recipe.soup):
            stopper = _EarlyStopping(recipe.early_stopping)
            st_model, history = _train_one(configs, run, recipe, member_seed, device, bf16,
                                           [_progress_callback(bar, recipe.soup), stopper])
            histories.append(history)
            stops.append(stopper.stopped_at)
            if recipe.soup > 1:
                weight_sum = _add_weights(weight_sum, st_model.state_dict())
        if recipe.soup > 1:
            st_model.load_state_dict(
                {name: total / recipe.soup if total.is_floating_point() else total
                 for name, total in weight_sum.items()}
            )
        os.makedirs(output_dir, exist_ok=True)
        st_model.save(os.fspath(output_dir))
    unload_models(output_dir)  # this process may hold the folder's previous weights
    # Members log at the same steps (until one stops early): the soup's loss is their mean.
    n_logs = min(len(history) for history in histories)
    logs = np.asarray([history[:n_logs] for history in histories],
                      dtype=np.float64).reshape(len(histories), -1, 3)
    stopped = np.full(n_logs, "", dtype=object)
    if n_logs and any(step is not None for step in stops):
        last = max(step for step in stops if step is not None)
        stopped[-1] = (f"stopped early at step {last} of {stopper.max_steps}: the loss was "
                       f"zero for {recipe.early_stopping} logs in a row")
    return {
        "step": logs[0, :, 0].astype(np.int64),
        "epoch": logs[0, :, 1],
        "loss": logs[:, :, 2].mean(axis=0),
        "stopped": stopped,
    }


class _EarlyStopping:
    """A trainer callback: stop once ``patience`` logs in a row have a zero loss."""

    def __init__(self, patience: int | None):
        self.patience = patience
        self.zeros = 0
        self.stopped_at = self.max_steps = None

    def callback(self):
        from transformers import TrainerCallback

        owner = self

        class StopOnZeroLoss(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                owner.max_steps = state.max_steps
                if owner.patience is None or not logs or "loss" not in logs:
                    return
                owner.zeros = owner.zeros + 1 if float(logs["loss"]) <= ZERO_LOSS else 0
                if owner.zeros >= owner.patience:
                    owner.stopped_at = state.global_step
                    control.should_training_stop = True

        return StopOnZeroLoss()


def _train_one(configs: tuple, run: TrainingRun, recipe: TrainingRecipe, seed: int,
               device: str, bf16: bool, callbacks: list):
    """One fine-tuning run from the checkpoint; the trained model and its losses."""
    from sentence_transformers import SentenceTransformerTrainer
    from transformers import PrinterCallback, ProgressCallback, set_seed

    class Trainer(SentenceTransformerTrainer):
        def add_model_card_callback(self, default_args_dict):
            """No model-card tracking: it draws a progress bar of its own at every start."""

    set_seed(seed)
    st_model = load_for_training(configs, device)
    _prepare_for_training(st_model, recipe, device)
    # Each column is trained with the prompt it is encoded with (the model's default too).
    prompts = {
        column: prompt
        for column, column_config in zip(_text_columns(run.dataset), configs)
        if (prompt := resolve_prompt(column_config.prompt, column_config.prompt_name,
                                     st_model.prompts, st_model.default_prompt_name))
    }
    with tempfile.TemporaryDirectory(prefix="skembed-trainer-") as scratch:
        trainer = Trainer(
            model=st_model,
            args=_training_arguments(run, recipe, scratch, seed, device, bf16, prompts),
            train_dataset=run.dataset,
            loss=run.make_loss(st_model),
        )
        # Neither the trainer's bar (it writes its logs to stdout) nor its printer.
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        for callback in callbacks:
            trainer.add_callback(callback.callback() if hasattr(callback, "callback")
                                 else callback)
        trainer.train()
        history = [(log["step"], log["epoch"], log["loss"])
                   for log in trainer.state.log_history if "loss" in log]
    return st_model, history


def _text_columns(dataset) -> list:
    return [c for c in dataset.column_names if c not in ("score", "label")]


def _training_arguments(run: TrainingRun, recipe: TrainingRecipe, output_dir: str, seed: int,
                        device: str, bf16: bool, prompts: dict):
    from sentence_transformers import SentenceTransformerTrainingArguments

    if run.max_steps is not None:
        steps = run.max_steps
    else:
        steps = max(1, int(np.ceil(run.epochs * len(run.dataset) / recipe.batch_size)))
    return SentenceTransformerTrainingArguments(
        output_dir=output_dir,
        num_train_epochs=run.epochs if run.epochs is not None else 1,
        max_steps=run.max_steps if run.max_steps is not None else -1,
        per_device_train_batch_size=recipe.batch_size,
        learning_rate=recipe.learning_rate,
        weight_decay=recipe.weight_decay,
        warmup_steps=recipe.warmup_steps,
        lr_scheduler_type="linear",
        max_grad_norm=recipe.max_grad_norm,
        bf16=bf16,
        seed=seed,
        data_seed=seed,
        batch_sampler=run.batch_sampler,
        use_cpu=device == "cpu",
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        logging_strategy="steps",
        logging_steps=max(1, min(50, steps // 8)),
        disable_tqdm=True,
        dataloader_num_workers=0,
        prompts=prompts or None,
    )


def _add_weights(total: dict | None, state: dict) -> dict:
    """``total`` plus a model's ``state`` (float tensors summed in float32, others kept)."""
    if total is None:
        return {name: t.detach().float().clone() if t.is_floating_point() else t.clone()
                for name, t in state.items()}
    for name, t in state.items():
        if t.is_floating_point():
            total[name] += t.detach().float()
    return total
