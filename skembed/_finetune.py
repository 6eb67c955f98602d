"""Fine-tune a sentence-transformers model on scored sentence pairs.

:class:`FineTuneConfig` holds the recipe: by default the best one measured on
STSb Spanish dev in this project, the default model card's by the name
``"card"``. :func:`train_encoder` runs it through :func:`~skembed._training.run_training`
(sentence-transformers' own trainer), then saves the model to a folder that both
``SentenceTransformer(folder)`` and ``EmbeddingVectorizer(model=folder)`` load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from numbers import Real
from typing import ClassVar

import numpy as np

from ._loading import check_model_location
from ._sklearn import Interval, StrOptions
from ._training import TrainingRecipe, TrainingRun, run_training, settings_doc

LOSSES = ("mnrl", "cosent", "angle", "cosine")


@dataclass(frozen=True)
class FineTuneConfig(TrainingRecipe):
    """How to fine-tune an encoder on scored pairs; the defaults are the best recipe measured.

    The defaults are the recipe chosen on STSb Spanish dev (docs: "Fine-tuning
    the encoder"): CoSENT at scale 5, 2 epochs of length-grouped batches of
    32, learning rate 1e-4 with 10% warm-up, no dropout, frozen token
    embeddings, bfloat16 where it is native, a soup of 3.
    ``FineTuneConfig.from_params("card")`` is the default model card's recipe,
    exactly (MultipleNegativesRankingLoss, 3 epochs of 16, learning rate 2e-5,
    271 warm-up steps, float32, the model's own dropout and attention).

    Parameters
    ----------
{common}    loss : {{"mnrl", "cosent", "angle", "cosine"}}, default="cosent"
        ``"mnrl"``: MultipleNegativesRankingLoss (cosine similarity, ``scale``)
        on the pairs whose normalised score is at least ``positive_threshold``,
        the other texts of the batch being the negatives; batches hold no
        duplicate text. ``"cosent"``: CoSENTLoss (``scale``), ``"angle"``:
        AnglELoss (``scale``) and ``"cosine"``: CosineSimilarityLoss, all on
        every pair with its score normalised to [0, 1].
    epochs : float, default=2
        Passes over the pairs; a fraction stops part-way through the last one.
    scale : float, default=5.0
        Inverse temperature of the ``"mnrl"``, ``"cosent"`` and ``"angle"`` losses.
    positive_threshold : float, default=0.5
        Smallest normalised score of a pair used as a positive by ``"mnrl"``.
    group_by_length : bool or "auto", default="auto"
        Batch pairs of similar length together (batches still come in random
        order), as transformers' ``group_by_length`` does: much less padding,
        so an epoch costs about half as much on short, uneven sentences.
        Not with ``"mnrl"``, whose batches must hold no duplicate text;
        ``"auto"`` is True for every other loss.
    """

    soup: int = 3
    loss: str = "cosent"
    epochs: float = 2
    scale: float = 5.0
    positive_threshold: float = 0.5
    group_by_length: bool | str = "auto"

    #: Recipes by name: ``fine_tune_params="card"``.
    NAMED: ClassVar[dict] = {
        "default": {},
        "card": {"loss": "mnrl", "epochs": 3, "batch_size": 16, "learning_rate": 2e-5,
                 "weight_decay": 0.01, "warmup_steps": 271, "max_grad_norm": 1.0,
                 "scale": 20.0, "positive_threshold": 0.5, "bf16": False,
                 "group_by_length": False, "dropout": None, "freeze_embeddings": False,
                 "attn_implementation": "model", "soup": 1},
    }
    _parameter_constraints: ClassVar[dict] = {
        **TrainingRecipe._parameter_constraints,
        "loss": [StrOptions(set(LOSSES))],
        "epochs": [Interval(Real, 0, None, closed="neither")],
        "scale": [Interval(Real, 0, None, closed="neither")],
        "positive_threshold": [Interval(Real, 0, 1, closed="both")],
        "group_by_length": ["boolean", StrOptions({"auto"})],
    }

    def __post_init__(self):
        super().__post_init__()
        if self.batch_size < 2 and self.loss == "mnrl":
            raise ValueError("loss='mnrl' needs batch_size >= 2: the batch holds the negatives.")
        if self.group_by_length is True and self.loss == "mnrl":
            raise ValueError(
                "group_by_length=True cannot be used with loss='mnrl', whose batches "
                "must hold no duplicate text."
            )

    N_COLUMNS: ClassVar[int] = 2

    def texts_read(self, n_examples: int) -> int:
        return int(np.ceil(n_examples * self.epochs)) * 2 * self.soup

    def training_run(self, examples, seed: int) -> TrainingRun:
        """``examples``: ``(sentences1, sentences2, scores in [0, 1])``."""
        sentences1, sentences2, unit_scores = examples
        return TrainingRun(
            dataset=_training_dataset(sentences1, sentences2, unit_scores, self),
            make_loss=_make_loss(self), batch_sampler=_batch_sampler(self), epochs=self.epochs,
        )


FineTuneConfig.__doc__ = FineTuneConfig.__doc__.format(common=settings_doc(FineTuneConfig))


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


def _make_loss(config: FineTuneConfig):
    from sentence_transformers.sentence_transformer import losses

    def make(model):
        if config.loss == "mnrl":
            return losses.MultipleNegativesRankingLoss(model, scale=config.scale)
        if config.loss == "cosent":
            return losses.CoSENTLoss(model, scale=config.scale)
        if config.loss == "angle":
            return losses.AnglELoss(model, scale=config.scale)
        return losses.CosineSimilarityLoss(model)

    return make


def _batch_sampler(config: FineTuneConfig):
    from sentence_transformers.base.sampler import BatchSamplers

    if config.loss == "mnrl":
        return BatchSamplers.NO_DUPLICATES
    return _length_grouped_sampler_class() if config.group_by_length else (  # "auto" too
        BatchSamplers.BATCH_SAMPLER)


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
        first says, its texts cut to their ``max_seq_length``; each column is
        trained with the prompt it is encoded with.
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
        Show one progress bar on stderr; quiet otherwise.

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
    run = recipe.training_run((sentences1, sentences2, rescale_scores(scores, low, high)), seed)
    return run_training(configs, run, recipe, output_dir, seed=seed,
                        show_progress_bar=show_progress_bar)
