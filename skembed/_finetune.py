"""Fine-tune a sentence-transformers model on scored sentence pairs.

This module knows nothing of scikit-learn. :class:`FineTuneConfig` holds the
recipe (by default the one of the default model's card), and
:func:`fine_tune` runs it with sentence-transformers' own
``SentenceTransformerTrainer``, then saves the model to a folder that both
``SentenceTransformer(folder)`` and ``EmbeddingVectorizer(model=folder)`` load.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, fields
from numbers import Real
from pathlib import Path

import numpy as np

from . import _engine

LOSSES = ("mnrl", "cosent", "angle", "cosine")
ATTENTION = ("auto", "model", "eager", "sdpa")
#: Fields of FineTuneConfig that must be numbers (dropout may also be None).
_NUMBERS = ("epochs", "learning_rate", "weight_decay", "max_grad_norm", "scale",
            "positive_threshold", "dropout", "in_batch_negatives")


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
    max_seq_length : int or None, default=None
        Truncate texts to this many tokens while training; the saved model
        keeps this limit. None keeps the model's own.
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
    in_batch_negatives : float, default=0.0
        Weight of an added MultipleNegativesRankingLoss term for the
        score-based losses: each pair whose normalised score is at least
        ``positive_threshold`` must rank its partner above the batch's other
        texts, in both directions. 0 adds nothing.
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
    epochs: int = 3
    batch_size: int = 16
    learning_rate: float = 2e-5
    weight_decay: float = 0.01
    warmup_steps: int = 271
    max_grad_norm: float = 1.0
    scale: float = 20.0
    positive_threshold: float = 0.5
    bf16: bool = False
    max_seq_length: int | None = None
    group_by_length: bool = False
    dropout: float | None = None
    freeze_embeddings: bool = False
    in_batch_negatives: float = 0.0
    attn_implementation: str = "auto"
    soup: int = 1

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}.")
        if self.attn_implementation not in ATTENTION:
            raise ValueError(
                f"attn_implementation must be one of {ATTENTION}, "
                f"got {self.attn_implementation!r}."
            )
        for name in _NUMBERS:
            value = getattr(self, name)
            if value is None and name == "dropout":
                continue
            if isinstance(value, bool) or not isinstance(value, Real):
                raise ValueError(f"{name} must be a number, got {value!r}.")
        if not isinstance(self.batch_size, int | np.integer) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}.")
        if not self.epochs > 0:
            raise ValueError(f"epochs must be a number > 0, got {self.epochs!r}.")
        if self.batch_size < 2 and self.loss == "mnrl":
            raise ValueError("loss='mnrl' needs batch_size >= 2: the batch holds the negatives.")
        soup = self.soup
        if isinstance(soup, bool) or not isinstance(soup, int | np.integer) or soup < 1:
            raise ValueError(f"soup must be a positive integer, got {self.soup!r}.")
        if not isinstance(self.warmup_steps, int | np.integer) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an integer >= 0, got {self.warmup_steps!r}.")
        for name in ("learning_rate", "scale", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}.")
        if self.group_by_length and self.loss == "mnrl":
            raise ValueError(
                "group_by_length=True cannot be used with loss='mnrl', whose batches "
                "must hold no duplicate text."
            )
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be None or in [0, 1), got {self.dropout!r}.")
        if not self.in_batch_negatives >= 0:
            raise ValueError(
                f"in_batch_negatives must be >= 0, got {self.in_batch_negatives!r}."
            )
        if self.in_batch_negatives and self.loss == "mnrl":
            raise ValueError(
                "in_batch_negatives adds a MultipleNegativesRankingLoss term to a "
                "score-based loss; loss='mnrl' is that loss already."
            )
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}.")
        if not 0 <= self.positive_threshold <= 1:
            raise ValueError(
                f"positive_threshold must be in [0, 1], got {self.positive_threshold!r}."
            )

    @classmethod
    def from_params(cls, params: dict | None) -> FineTuneConfig:
        """Build a config from a dict of overrides, naming any unknown key.

        >>> FineTuneConfig.from_params({"loss": "cosent"}).loss
        'cosent'
        """
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


def normalise_scores(scores, low: float, high: float) -> np.ndarray:
    """Map scores from [low, high] to [0, 1] (clipped); a constant scale maps to 1.

    >>> normalise_scores([0.0, 2.5, 5.0], 0.0, 5.0).tolist()
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
        loss = losses.CoSENTLoss(model, scale=config.scale)
    elif config.loss == "angle":
        loss = losses.AnglELoss(model, scale=config.scale)
    else:
        loss = losses.CosineSimilarityLoss(model)
    if config.in_batch_negatives:
        return _with_in_batch_negatives(loss, config)
    return loss


def in_batch_ranking_loss(embeddings1, embeddings2, positive, scale: float):
    """Cross-entropy of each positive pair ranking its partner first in the batch.

    ``positive`` marks the rows of the positive pairs; every text of the other
    column is a candidate, in both directions. Zero when no pair is positive.

    >>> import torch
    >>> e = torch.eye(3)
    >>> float(in_batch_ranking_loss(e, e, torch.tensor([True, True, False]), 20.0)) < 1e-6
    True
    """
    import torch
    import torch.nn.functional as F

    rows = torch.nonzero(positive).flatten()
    if rows.numel() == 0:
        return embeddings1.sum() * 0.0
    a = F.normalize(embeddings1, dim=-1)
    b = F.normalize(embeddings2, dim=-1)
    forward = F.cross_entropy(scale * a[rows] @ b.T, rows)
    backward = F.cross_entropy(scale * b[rows] @ a.T, rows)
    return (forward + backward) / 2


def _with_in_batch_negatives(score_loss, config: FineTuneConfig):
    import torch

    class ScoreLossWithInBatchNegatives(torch.nn.Module):
        """``score_loss`` plus ``config.in_batch_negatives`` times :func:`in_batch_ranking_loss`."""

        def __init__(self):
            super().__init__()
            self.model = score_loss.model
            self.score_loss = score_loss

        def forward(self, sentence_features, labels):
            embeddings = [self.model(f)["sentence_embedding"] for f in sentence_features]
            loss = self.score_loss.compute_loss_from_embeddings(embeddings, labels)
            ranking = in_batch_ranking_loss(
                embeddings[0], embeddings[1], labels >= config.positive_threshold, config.scale
            )
            return loss + config.in_batch_negatives * ranking

    return ScoreLossWithInBatchNegatives()


def _training_arguments(config: FineTuneConfig, output_dir: str, seed: int, device: str,
                        show_progress_bar: bool, n_examples: int):
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
    )


#: Pairs sorted by length together, as a multiple of the batch size.
MEGABATCH_BATCHES = 50


def length_grouped_batches(lengths, batch_size: int, rng) -> list:
    """Batches of indices of similar ``lengths``, in random order.

    Indices are shuffled, cut into megabatches of ``MEGABATCH_BATCHES``
    batches, sorted by length (longest first) within each, cut into batches,
    and the batches shuffled: little padding, and still a random curriculum.

    >>> import numpy as np
    >>> batches = length_grouped_batches([5, 1, 9, 2, 8, 1], 2, np.random.default_rng(0))
    >>> sorted(sorted(b) for b in batches)
    [[0, 3], [1, 5], [2, 4]]
    """
    lengths = np.asarray(lengths)
    order = rng.permutation(len(lengths))
    size = batch_size * MEGABATCH_BATCHES
    batches = []
    for start in range(0, len(order), size):
        group = order[start : start + size]
        group = group[np.argsort(-lengths[group], kind="stable")]
        batches += [group[i : i + batch_size].tolist() for i in range(0, len(group), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _length_grouped_sampler_class():
    try:
        from sentence_transformers.base.sampler import DefaultBatchSampler
    except ImportError:  # pragma: no cover - sentence-transformers < 5
        from sentence_transformers.sampler import DefaultBatchSampler

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
            rng = np.random.default_rng([self.seed, self.epoch])
            for batch in length_grouped_batches(self.lengths, self.batch_size, rng):
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


def forget_encoders(model_dir: str) -> None:
    """Drop the engine's cached encoders of ``model_dir``, whose weights just changed."""
    with _engine._ENCODERS_LOCK:
        for config in [c for c in _engine._ENCODERS if c.model == model_dir]:
            del _engine._ENCODERS[config]


def _train_one(model, loaded: dict, dataset, config: FineTuneConfig, seed: int, device: str,
               show_progress_bar: bool):
    """One fine-tuning run of ``model`` from its checkpoint; the trained model and its losses."""
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from transformers import set_seed

    set_seed(seed)
    st_model = SentenceTransformer(model, device=device, **loaded)
    # Train float32 weights (bf16=True autocasts), whatever dtype the checkpoint has.
    st_model.float()
    if config.max_seq_length is not None:
        st_model.max_seq_length = config.max_seq_length
    _prepare_for_training(st_model, config, device)
    with tempfile.TemporaryDirectory(prefix="skembed-trainer-") as scratch:
        trainer = SentenceTransformerTrainer(
            model=st_model,
            args=_training_arguments(
                config, scratch, seed, device, show_progress_bar, len(dataset)
            ),
            train_dataset=dataset,
            loss=_make_loss(st_model, config),
        )
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


def fine_tune(
    model: str,
    sentences1,
    sentences2,
    scores,
    output_dir: str | os.PathLike,
    *,
    config: FineTuneConfig | None = None,
    score_range: tuple | None = None,
    seed: int = 0,
    device: str = "auto",
    revision: str | None = None,
    trust_remote_code: bool = False,
    show_progress_bar: bool = True,
) -> dict:
    """Fine-tune ``model`` on scored pairs and save it to ``output_dir``.

    Parameters
    ----------
    model : str
        Hub name or local folder of a sentence-transformers model.
    sentences1, sentences2 : sequence of str
        The pairs, of equal length.
    scores : sequence of float
        Gold similarity of each pair, on any scale.
    output_dir : path
        Folder where the fine-tuned model is saved (created if needed).
    config : FineTuneConfig, optional
        The recipe; defaults to ``FineTuneConfig()``.
    score_range : (low, high), optional
        The scale of ``scores``, mapped to [0, 1]; defaults to their min and max.
    seed : int
        Seeds weights' dropout, shuffling and batching: equal seeds give equal
        models. A soup's members use ``seed``, ``seed + 1``, ...
    device : str
        Torch device, or ``"auto"``.
    show_progress_bar : bool
        Show the trainer's progress bar.

    Returns
    -------
    history : dict of ndarray
        The training loss as the trainer logged it: ``"step"`` (optimiser
        steps done), ``"epoch"`` (fractional) and ``"loss"`` (mean over the
        steps since the last log; for a soup, also the mean over its members),
        one entry per log. ``pandas.DataFrame(history)`` makes it a table.
    """
    config = config or FineTuneConfig()
    _engine.check_model_location(os.fspath(model))
    if not len(sentences1) == len(sentences2) == len(scores):
        raise ValueError(
            f"sentences1, sentences2 and scores must have equal lengths, got "
            f"{len(sentences1)}, {len(sentences2)} and {len(scores)}."
        )
    scores = np.asarray(scores, dtype=np.float64)
    low, high = score_range if score_range is not None else (scores.min(), scores.max())
    unit_scores = normalise_scores(scores, low, high)
    device = _engine.resolve_device(device)
    if config.bf16:
        _engine.warn_if_bfloat16_is_slow("bf16=True", "bf16=False", device)
    dataset = _training_dataset(sentences1, sentences2, unit_scores, config)
    loaded = {"revision": revision, "trust_remote_code": trust_remote_code}
    histories, weight_sum = [], None
    for member_seed in range(seed, seed + config.soup):
        st_model, history = _train_one(
            model, loaded, dataset, config, member_seed, device, show_progress_bar
        )
        histories.append(history)
        if config.soup > 1:
            weight_sum = _add_weights(weight_sum, st_model.state_dict())
    if config.soup > 1:
        st_model.load_state_dict(
            {name: total / config.soup if total.is_floating_point() else total
             for name, total in weight_sum.items()}
        )
    # Members log at the same steps: the soup's loss is their mean.
    logs = np.asarray(histories, dtype=np.float64).reshape(len(histories), -1, 3)
    history = {
        "step": logs[0, :, 0].astype(np.int64),
        "epoch": logs[0, :, 1],
        "loss": logs[:, :, 2].mean(axis=0),
    }
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    st_model.save(str(output_dir))
    forget_encoders(str(output_dir))
    return history
