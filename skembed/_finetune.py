"""Fine-tune a sentence-transformers model on scored sentence pairs.

:class:`FineTuneConfig` holds the recipe (by default the one of the default
model's card), validated with scikit-learn's parameter constraints; and
:func:`train_encoder` runs it with sentence-transformers' own
``SentenceTransformerTrainer``, then saves the model to a folder that both
``SentenceTransformer(folder)`` and ``EmbeddingVectorizer(model=folder)`` load.
Training is quiet unless a progress bar is asked for.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, fields
from numbers import Integral, Real
from typing import ClassVar

import numpy as np

from ._devices import warn_if_bfloat16_is_slow
from ._loading import (
    capped_max_length,
    check_model_location,
    load_request,
    open_sentence_transformer,
    position_limit,
    quiet_transformers,
)
from ._prompts import resolve_prompt
from ._registry import unload_models
from ._sklearn import Interval, InvalidParameterError, StrOptions, validate_parameter_constraints

LOSSES = ("mnrl", "cosent", "angle", "cosine")
ATTENTION = ("auto", "model", "eager", "sdpa")


@dataclass(frozen=True)
class FineTuneConfig:
    """How to fine-tune; the defaults are the default model card's recipe.

    Parameters
    ----------
    loss : {"mnrl", "cosent", "angle", "cosine"}, default="mnrl"
        ``"mnrl"``: MultipleNegativesRankingLoss (cosine similarity, ``scale``)
        on the pairs whose normalised score is at least ``positive_threshold``,
        the other texts of the batch being the negatives; batches hold no
        duplicate text. ``"cosent"``: CoSENTLoss (``scale``), ``"angle"``:
        AnglELoss (``scale``) and ``"cosine"``: CosineSimilarityLoss, all on
        every pair with its score normalised to [0, 1].
    epochs : float, default=3
        Passes over the pairs; a fraction stops part-way through the last one.
    batch_size : int, default=16
    learning_rate : float, default=2e-5
        Peak learning rate of AdamW.
    weight_decay : float, default=0.01
    warmup_steps : int, default=271
        Linear warm-up, then linear decay to zero.
    max_grad_norm : float, default=1.0
    scale : float, default=20.0
        Inverse temperature of the ``"mnrl"`` and ``"cosent"`` losses.
    positive_threshold : float, default=0.5
        Smallest normalised score of a pair used as a positive by ``"mnrl"``.
    bf16 : bool, default=False
        Train under bfloat16 autocast (fast on CPUs with AMX or AVX512-BF16
        and on recent GPUs; emulated and slow on other CPUs, with a warning);
        the saved weights stay float32.
    group_by_length : bool, default=False
        Batch pairs of similar length together (batches still come in random
        order), as transformers' ``group_by_length`` does: much less padding,
        so an epoch costs about half as much on short, uneven sentences.
        Not with ``"mnrl"``, whose batches must hold no duplicate text.
    dropout : float or None, default=None
        Dropout probability of every dropout layer while training; None keeps
        the model's own (0.1 for BERT-like models). 0 trains without dropout,
        which also saves the time of drawing the masks.
    freeze_embeddings : bool, default=False
        Keep the token embedding matrix as it is: no gradient and no optimiser
        work for it (half the weights of a small model like all-MiniLM-L6-v2).
    attn_implementation : {"auto", "model", "eager", "sdpa"}, default="auto"
        Attention kernel while training. ``"auto"``: ``"eager"`` on a CPU,
        where PyTorch's fused attention trains slowly (its backward pass took
        over half of a bfloat16 training step), the model's own elsewhere.
        ``"model"`` keeps the model's own. The saved model keeps its own.
    soup : int, default=1
        Fine-tune this many models from the same start, with seeds ``seed``,
        ``seed + 1``, ..., and keep the average of their weights (a uniform
        "model soup"): usually better than any one of them, at ``soup`` times
        the training time and no extra cost to use.
    """

    loss: str = "mnrl"
    epochs: float = 3
    batch_size: int = 16
    learning_rate: float = 2e-5
    weight_decay: float = 0.01
    warmup_steps: int = 271
    max_grad_norm: float = 1.0
    scale: float = 20.0
    positive_threshold: float = 0.5
    bf16: bool = False
    group_by_length: bool = False
    dropout: float | None = None
    freeze_embeddings: bool = False
    attn_implementation: str = "auto"
    soup: int = 1

    #: Each field's constraints, in scikit-learn's vocabulary (as an estimator's parameters).
    _parameter_constraints: ClassVar[dict] = {
        "loss": [StrOptions(set(LOSSES))],
        "epochs": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "warmup_steps": [Interval(Integral, 0, None, closed="left")],
        "max_grad_norm": [Interval(Real, 0, None, closed="neither")],
        "scale": [Interval(Real, 0, None, closed="neither")],
        "positive_threshold": [Interval(Real, 0, 1, closed="both")],
        "bf16": ["boolean"],
        "group_by_length": ["boolean"],
        "dropout": [Interval(Real, 0, 1, closed="left"), None],
        "freeze_embeddings": ["boolean"],
        "attn_implementation": [StrOptions(set(ATTENTION))],
        "soup": [Interval(Integral, 1, None, closed="left")],
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
        if self.batch_size < 2 and self.loss == "mnrl":
            raise ValueError("loss='mnrl' needs batch_size >= 2: the batch holds the negatives.")
        if self.group_by_length and self.loss == "mnrl":
            raise ValueError(
                "group_by_length=True cannot be used with loss='mnrl', whose batches "
                "must hold no duplicate text."
            )

    @classmethod
    def from_params(cls, params) -> FineTuneConfig:
        """Build a config from a dict of overrides (naming any unknown key), or take one as is.

        >>> FineTuneConfig.from_params({"loss": "cosent"}).loss
        'cosent'
        """
        if isinstance(params, cls):
            return params
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


def rescale_scores(scores, low: float, high: float) -> np.ndarray:
    """Map scores from [low, high] to [0, 1] (clipped); a constant scale maps to 1.

    >>> rescale_scores([0.0, 2.5, 5.0], 0.0, 5.0).tolist()
    [0.0, 0.5, 1.0]
    """
    scores = np.asarray(scores, dtype=np.float64)
    if high <= low:
        return np.ones_like(scores)
    return np.clip((scores - low) / (high - low), 0.0, 1.0)


def _training_dataset(sentences1, sentences2, unit_scores, config: FineTuneConfig):
    try:
        from datasets import Dataset
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Fine-tuning needs the datasets and accelerate packages: "
            "pip install 'skembed[train]'."
        ) from exc

    s1 = [str(s) for s in sentences1]
    s2 = [str(s) for s in sentences2]
    if config.loss == "mnrl":
        keep = np.flatnonzero(np.asarray(unit_scores) >= config.positive_threshold)
        if len(keep) < 2:
            raise ValueError(
                f"loss='mnrl' needs at least 2 positive pairs (normalised score >= "
                f"{config.positive_threshold}); found {len(keep)}."
            )
        return Dataset.from_dict(
            {"anchor": [s1[i] for i in keep], "positive": [s2[i] for i in keep]}
        )
    return Dataset.from_dict(
        {"sentence1": s1, "sentence2": s2, "score": [float(s) for s in unit_scores]}
    )


def _make_loss(model, config: FineTuneConfig):
    from sentence_transformers.sentence_transformer import losses

    if config.loss == "mnrl":
        return losses.MultipleNegativesRankingLoss(model, scale=config.scale)
    if config.loss == "cosent":
        return losses.CoSENTLoss(model, scale=config.scale)
    if config.loss == "angle":
        return losses.AnglELoss(model, scale=config.scale)
    return losses.CosineSimilarityLoss(model)


def _training_arguments(config: FineTuneConfig, output_dir: str, seed: int, device: str,
                        show_progress_bar: bool, n_examples: int, prompts: dict):
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers

    steps_per_epoch = max(1, -(-n_examples // config.batch_size))
    return SentenceTransformerTrainingArguments(
        output_dir=output_dir,
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_steps,
        lr_scheduler_type="linear",
        max_grad_norm=config.max_grad_norm,
        bf16=config.bf16,
        seed=seed,
        data_seed=seed,
        batch_sampler=(
            BatchSamplers.NO_DUPLICATES if config.loss == "mnrl"
            else _length_grouped_sampler_class() if config.group_by_length
            else BatchSamplers.BATCH_SAMPLER
        ),
        use_cpu=device == "cpu",
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        logging_strategy="steps",
        logging_steps=max(1, min(50, steps_per_epoch // 4)),
        disable_tqdm=not show_progress_bar,
        dataloader_num_workers=0,
        prompts=prompts or None,
    )


#: Pairs sorted by length together, as a multiple of the batch size.
MEGABATCH_BATCHES = 50


def length_grouped_batches(lengths, batch_size: int, seed: int) -> list:
    """Batches of indices of similar ``lengths``, in random order.

    transformers' ``get_length_grouped_indices`` shuffles the indices, cuts
    them into megabatches of ``MEGABATCH_BATCHES`` batches and sorts each by
    length; its order is cut into batches, and the batches are shuffled:
    little padding, and still a random curriculum.

    >>> batches = length_grouped_batches([5, 1, 9, 2, 8, 1], 2, seed=0)
    >>> sorted(sorted(b) for b in batches)
    [[0, 3], [1, 5], [2, 4]]
    """
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    generator = torch.Generator().manual_seed(int(seed))
    order = get_length_grouped_indices(
        [int(n) for n in lengths], batch_size, mega_batch_mult=MEGABATCH_BATCHES,
        generator=generator,
    )
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def _length_grouped_sampler_class():
    from sentence_transformers.base.sampler import DefaultBatchSampler

    class LengthGroupedBatchSampler(DefaultBatchSampler):
        """sentence-transformers batch sampler of :func:`length_grouped_batches`.

        A pair's length is the characters of its longest text: a cheap,
        tokenizer-free proxy that orders pairs almost as token counts do.
        """

        def __init__(self, dataset, batch_size, drop_last, valid_label_columns=None,
                     generator=None, seed=0):
            super().__init__(dataset, batch_size=batch_size, drop_last=drop_last,
                             valid_label_columns=valid_label_columns, generator=generator,
                             seed=seed)
            labels = set(valid_label_columns or []) | {"score", "label"}
            columns = [c for c in dataset.column_names if c not in labels]
            self.lengths = np.max([[len(t) for t in dataset[c]] for c in columns], axis=0)

        def __iter__(self):
            seed = self.seed * 1_000_003 + self.epoch
            for batch in length_grouped_batches(self.lengths, self.batch_size, seed):
                if len(batch) == self.batch_size or not self.drop_last:
                    yield batch

        def __len__(self):
            full, rest = divmod(len(self.lengths), self.batch_size)
            return full + (1 if rest and not self.drop_last else 0)

    return LengthGroupedBatchSampler


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


def training_attention(config: FineTuneConfig, device: str) -> str | None:
    """The attention kernel to train with on ``device``; None keeps the model's own.

    >>> training_attention(FineTuneConfig(), "cpu")
    'eager'
    >>> training_attention(FineTuneConfig(), "cuda") is None
    True
    """
    choice = config.attn_implementation
    if choice == "auto":
        return "eager" if device == "cpu" else None
    return None if choice == "model" else choice


def _prepare_for_training(st_model, config: FineTuneConfig, device: str) -> None:
    """Apply the recipe's dropout, embedding freeze and attention to ``st_model``, in place."""
    import torch

    if config.dropout is not None:
        for module in st_model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = config.dropout
    if config.freeze_embeddings:
        for network in _transformers_networks(st_model, "freeze_embeddings=True"):
            network.get_input_embeddings().weight.requires_grad_(False)
    attention = training_attention(config, device)
    if attention is None:
        return
    explicit = config.attn_implementation != "auto"
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


def _load_for_training(configs: tuple, device: str):
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
    # Train float32 weights (bf16=True autocasts), whatever dtype the checkpoint has.
    return st_model.float()


def _train_one(configs: tuple, dataset, config: FineTuneConfig, seed: int, device: str,
               show_progress_bar: bool):
    """One fine-tuning run from the checkpoint; the trained model and its losses."""
    from sentence_transformers import SentenceTransformerTrainer
    from transformers import PrinterCallback, set_seed

    set_seed(seed)
    st_model = _load_for_training(configs, device)
    _prepare_for_training(st_model, config, device)
    # Each column is trained with the prompt it is encoded with (the model's default too).
    prompts = {
        column: prompt
        for column, column_config in zip(dataset.column_names, configs)
        if (prompt := resolve_prompt(column_config.prompt, column_config.prompt_name,
                                     st_model.prompts, st_model.default_prompt_name))
    }
    with tempfile.TemporaryDirectory(prefix="skembed-trainer-") as scratch:
        trainer = SentenceTransformerTrainer(
            model=st_model,
            args=_training_arguments(
                config, scratch, seed, device, show_progress_bar, len(dataset), prompts
            ),
            train_dataset=dataset,
            loss=_make_loss(st_model, config),
        )
        if not show_progress_bar:  # it prints every log when there is no bar
            trainer.remove_callback(PrinterCallback)
        trainer.train()
        history = [(log["step"], log["epoch"], log["loss"])
                   for log in trainer.state.log_history if "loss" in log]
    return st_model, history


def _add_weights(total: dict | None, state: dict) -> dict:
    """``total`` plus a model's ``state`` (float tensors summed in float32, others kept)."""
    if total is None:
        return {name: t.detach().float().clone() if t.is_floating_point() else t.clone()
                for name, t in state.items()}
    for name, t in state.items():
        if t.is_floating_point():
            total[name] += t.detach().float()
    return total


def trainer_seed(random_state) -> int:
    """The training seed drawn from a NumPy ``RandomState``.

    ``SimilarityRegressor(random_state=n)`` and ``skembed fine-tune --seed n``
    both draw it from ``RandomState(n)``, so they train the same model.

    Examples
    --------
    >>> import numpy as np
    >>> trainer_seed(np.random.RandomState(0)) == trainer_seed(np.random.RandomState(0))
    True
    """
    return int(random_state.randint(np.iinfo(np.int32).max))


def train_encoder(
    configs: tuple,
    sentences1,
    sentences2,
    scores,
    output_dir: str | os.PathLike,
    *,
    recipe: FineTuneConfig | None = None,
    score_range: tuple | None = None,
    seed: int = 0,
    show_progress_bar: bool = False,
) -> dict:
    """Fine-tune a model on scored pairs and save it to ``output_dir``.

    Parameters
    ----------
    configs : (EncoderConfig, EncoderConfig)
        How each column's texts are encoded: the same model, loaded as the
        first says; each column is trained with the prompt it is encoded with.
    sentences1, sentences2 : sequence of str
        The pairs, of equal length.
    scores : sequence of float
        Gold similarity of each pair, on any scale.
    output_dir : path
        Folder where the fine-tuned model is saved (created if needed).
    recipe : FineTuneConfig, optional
        How to train; defaults to ``FineTuneConfig()``.
    score_range : (low, high), optional
        The scale of ``scores``, mapped to [0, 1]; defaults to their min and max.
    seed : int
        Seeds weights' dropout, shuffling and batching: equal seeds give equal
        models. A soup's members use ``seed``, ``seed + 1``, ...
    show_progress_bar : bool
        Show the trainer's progress bar and log lines; quiet otherwise.

    Returns
    -------
    history : dict of ndarray
        The training loss as the trainer logged it: ``"step"`` (optimiser
        steps done), ``"epoch"`` (fractional) and ``"loss"`` (mean over the
        steps since the last log; for a soup, also the mean over its members),
        one entry per log. ``pandas.DataFrame(history)`` makes it a table.
    """
    recipe = recipe or FineTuneConfig()
    check_model_location(configs[0].model)  # a mistyped path fails before any work
    if not len(sentences1) == len(sentences2) == len(scores):
        raise ValueError(
            f"sentences1, sentences2 and scores must have equal lengths, got "
            f"{len(sentences1)}, {len(sentences2)} and {len(scores)}."
        )
    scores = np.asarray(scores, dtype=np.float64)
    low, high = score_range if score_range is not None else (scores.min(), scores.max())
    unit_scores = rescale_scores(scores, low, high)
    device = load_request(configs[0]).device
    if recipe.bf16:
        warn_if_bfloat16_is_slow("bf16=True", "bf16=False", device)
    dataset = _training_dataset(sentences1, sentences2, unit_scores, recipe)
    histories, weight_sum = [], None
    for member_seed in range(seed, seed + recipe.soup):
        st_model, history = _train_one(
            configs, dataset, recipe, member_seed, device, show_progress_bar
        )
        histories.append(history)
        if recipe.soup > 1:
            weight_sum = _add_weights(weight_sum, st_model.state_dict())
    if recipe.soup > 1:
        st_model.load_state_dict(
            {name: total / recipe.soup if total.is_floating_point() else total
             for name, total in weight_sum.items()}
        )
    # Members log at the same steps: the soup's loss is their mean.
    logs = np.asarray(histories, dtype=np.float64).reshape(len(histories), -1, 3)
    history = {
        "step": logs[0, :, 0].astype(np.int64),
        "epoch": logs[0, :, 1],
        "loss": logs[:, :, 2].mean(axis=0),
    }
    os.makedirs(output_dir, exist_ok=True)
    with quiet_transformers():
        st_model.save(os.fspath(output_dir))
    unload_models(output_dir)  # this process may hold the folder's previous weights
    return history
