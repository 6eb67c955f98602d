"""Fine-tune a sentence-transformers model on class labels (what ``fit(X, y)`` of the vectorizer does).

Texts of one class are pulled together and texts of different classes pushed
apart, as SetFit does, but batch by batch: each optimiser step sees a batch
in which every class present has at least two texts, and the loss compares
every pair of the batch. So the work is a budget of steps, whatever the
number of texts (SetFit's sampled pairs grow with the square of it), no text
is ever its own positive, and no pair repeats within a step.

:class:`LabelFineTuneConfig` holds the recipe (the defaults are the best one
measured on SIB-200 English train and dev, see the docs) and
:func:`train_on_labels` runs it through :func:`~skembed._training.run_training`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from numbers import Integral, Real
from typing import ClassVar

import numpy as np

from ._loading import check_model_location
from ._sklearn import Interval, StrOptions
from ._training import TrainingRecipe, TrainingRun, run_training, settings_doc

LABEL_LOSSES = ("batch_all", "supcon", "batch_semi_hard", "batch_hard_soft_margin", "pairs")


@dataclass(frozen=True)
class LabelFineTuneConfig(TrainingRecipe):
    """How to fine-tune an encoder on class labels; the defaults are the best recipe measured.

    The defaults were chosen on SIB-200 English train and dev (docs: "Fine-tuning
    on your labels"): BatchAllTripletLoss (cosine distance, margin 0.25), 100
    steps of batches of 32 in which every class has two texts or more,
    learning rate 1e-4 with 10% warm-up, no dropout, frozen token embeddings,
    bfloat16 where it is native. ``LabelFineTuneConfig.from_params("setfit")``
    is SetFit's recipe within a budget of steps.

    Parameters
    ----------
{common}    loss : {{"batch_all", "supcon", "batch_semi_hard", "batch_hard_soft_margin", "pairs"}}, default="batch_all"
        ``"batch_all"``: sentence-transformers' BatchAllTripletLoss on the
        batch, every (anchor, positive, negative) triplet of it, cosine
        distance, ``margin``. ``"batch_semi_hard"``,
        ``"batch_hard_soft_margin"``: its other triplet losses of those names.
        ``"supcon"``: the supervised contrastive loss (Khosla et al., 2020):
        for each text of a batch, every other text of its class must be more
        similar to it than the texts of other classes (cosine similarity,
        ``scale``). ``"pairs"``: SetFit's recipe, CosineSimilarityLoss on
        sampled pairs (1 for two texts of one class, 0 otherwise), half of
        them positive.
    steps : int, default=100
        Optimiser steps: the budget of the fine-tuning, whatever the number
        of texts.
    scale : float, default=20.0
        Inverse temperature of ``"supcon"``.
    margin : float, default=0.25
        Margin of the triplet losses (cosine distance).
    """

    batch_size: int = 32
    learning_rate: float = 1e-4
    soup: int = 1
    loss: str = "batch_all"
    steps: int = 100
    scale: float = 20.0
    margin: float = 0.25

    #: Recipes by name: ``fine_tune_params="setfit"``.
    NAMED: ClassVar[dict] = {
        "default": {},
        # setfit 1.2's defaults, with its number of pairs replaced by a budget of steps.
        "setfit": {"loss": "pairs", "batch_size": 16, "learning_rate": 2e-5, "warmup_steps": 0.1,
                   "weight_decay": 0.0, "dropout": None, "freeze_embeddings": False,
                   "attn_implementation": "model", "bf16": False, "steps": 168},
    }
    _parameter_constraints: ClassVar[dict] = {
        **TrainingRecipe._parameter_constraints,
        "loss": [StrOptions(set(LABEL_LOSSES))],
        "steps": [Interval(Integral, 1, None, closed="left")],
        "scale": [Interval(Real, 0, None, closed="neither")],
        "margin": [Interval(Real, 0, None, closed="neither")],
    }

    def __post_init__(self):
        super().__post_init__()
        if self.loss != "pairs" and (self.batch_size < 4 or self.batch_size % 2):
            raise ValueError(
                f"loss={self.loss!r} compares the texts of a batch, two or more of each class: "
                f"batch_size must be an even number >= 4, got {self.batch_size}."
            )

    def texts_read(self) -> int:
        """Texts this recipe feeds the model (what ``show_progress_bar="auto"`` counts)."""
        return self.steps * self.batch_size * self.soup * (2 if self.loss == "pairs" else 1)


LabelFineTuneConfig.__doc__ = LabelFineTuneConfig.__doc__.format(
    common=settings_doc(LabelFineTuneConfig))


def _supcon_loss_class():
    import torch
    import torch.nn.functional as F

    class SupervisedContrastiveLoss(torch.nn.Module):
        """Khosla et al.'s supervised contrastive loss on the cosine similarities of a batch.

        For each anchor, the mean over its positives (the other texts of its
        class) of the cross-entropy of picking that positive among every other
        text of the batch. Anchors without a positive in the batch are left out.
        """

        def __init__(self, model, scale: float):
            super().__init__()
            self.model = model
            self.scale = scale

        def forward(self, sentence_features, labels):
            (features,) = sentence_features
            embeddings = F.normalize(self.model(features)["sentence_embedding"], dim=-1)
            logits = self.scale * embeddings @ embeddings.T
            self_mask = torch.eye(len(labels), dtype=torch.bool, device=logits.device)
            logits = logits.masked_fill(self_mask, float("-inf"))
            log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
            positive = (labels[:, None] == labels[None, :]) & ~self_mask
            counts = positive.sum(dim=1)
            anchors = counts > 0
            if not anchors.any():
                return logits.new_zeros((), requires_grad=True)
            mean_log_prob = log_prob.masked_fill(~positive, 0.0).sum(dim=1)[anchors] / counts[
                anchors]
            return -mean_log_prob.mean()

    return SupervisedContrastiveLoss


def _make_loss(config: LabelFineTuneConfig):
    from sentence_transformers.sentence_transformer import losses

    def make(model):
        cosine = losses.BatchHardTripletLossDistanceFunction.cosine_distance
        if config.loss == "supcon":
            return _supcon_loss_class()(model, scale=config.scale)
        if config.loss == "batch_all":
            return losses.BatchAllTripletLoss(model, distance_metric=cosine, margin=config.margin)
        if config.loss == "batch_semi_hard":
            return losses.BatchSemiHardTripletLoss(model, distance_metric=cosine,
                                                   margin=config.margin)
        if config.loss == "batch_hard_soft_margin":
            return losses.BatchHardSoftMarginTripletLoss(model, distance_metric=cosine)
        return losses.CosineSimilarityLoss(model)

    return make


def sample_pairs(label_ids: np.ndarray, n_pairs: int, seed: int) -> tuple:
    """``(first, second, same)``: ``n_pairs`` pairs of distinct rows, half of one class.

    Pairs are drawn without replacement (no pair twice, in either order, while
    unused ones remain; then the draw starts again), a row is never paired with
    itself, and half of the pairs (rounded up) are of one class, as SetFit's
    oversampling makes them.

    >>> first, second, same = sample_pairs(np.array([0, 0, 1, 1]), 4, seed=0)
    >>> sorted(zip(first.tolist(), second.tolist(), same.tolist()))[:2]
    [(0, 1, True), (0, 2, False)]
    """
    rng = np.random.default_rng(seed)
    i, j = np.triu_indices(len(label_ids), k=1)
    same = label_ids[i] == label_ids[j]
    n_positive = (n_pairs + 1) // 2
    chosen = []
    for pool, count in ((np.flatnonzero(same), n_positive),
                        (np.flatnonzero(~same), n_pairs - n_positive)):
        if count and not len(pool):
            raise ValueError("Sampling pairs needs two texts of one class and two classes.")
        rounds = -(-count // len(pool)) if count else 0
        draws = np.concatenate([rng.permutation(pool) for _ in range(rounds)] or [[]])
        chosen.append(draws[:count].astype(np.intp))
    rows = rng.permutation(np.concatenate(chosen))
    return i[rows], j[rows], same[rows]


def _dataset(texts: list, label_ids: np.ndarray, config: LabelFineTuneConfig, seed: int):
    from datasets import Dataset

    if config.loss == "pairs":
        first, second, same = sample_pairs(label_ids, config.steps * config.batch_size, seed)
        return Dataset.from_dict({
            "sentence1": [texts[k] for k in first], "sentence2": [texts[k] for k in second],
            "score": same.astype(np.float64).tolist(),
        })
    return Dataset.from_dict({"sentence": list(texts), "label": label_ids.tolist()})


def train_on_labels(config, texts, labels, output_dir: str | os.PathLike, *,
                    recipe: LabelFineTuneConfig | None = None, seed: int = 0,
                    show_progress_bar: bool = False) -> dict:
    """Fine-tune the model of ``config`` on ``texts`` and their class ``labels``; save it.

    Identical (text, label) rows count once. Returns the history, as
    :func:`~skembed._training.run_training` does.
    """
    from sentence_transformers.base.sampler import BatchSamplers

    recipe = recipe or LabelFineTuneConfig()
    check_model_location(config.model)
    texts = [str(t) for t in texts]
    classes, label_ids = np.unique(np.asarray(labels), return_inverse=True)
    rows = {}
    for text, label in zip(texts, label_ids.tolist()):
        rows.setdefault((text, label), None)
    texts = [text for text, _ in rows]
    label_ids = np.array([label for _, label in rows], dtype=np.int64)
    counts = np.bincount(label_ids, minlength=len(classes))
    if (counts >= 2).sum() < 2:
        raise ValueError(
            f"Fine-tuning on labels compares texts of one class with texts of others: it "
            f"needs at least two classes of two distinct texts each; got {len(classes)} "
            f"class(es) with {sorted(counts.tolist(), reverse=True)} distinct texts."
        )
    run = TrainingRun(
        dataset=_dataset(texts, label_ids, recipe, seed),
        make_loss=_make_loss(recipe),
        batch_sampler=(BatchSamplers.BATCH_SAMPLER if recipe.loss == "pairs"
                       else BatchSamplers.GROUP_BY_LABEL),
        max_steps=recipe.steps,
    )
    columns = 2 if recipe.loss == "pairs" else 1
    return run_training((config,) * columns, run, recipe, output_dir, seed=seed,
                        show_progress_bar=show_progress_bar)
