"""Fine-tune a sentence-transformers model on class labels (what ``fit(X, y)`` of the vectorizer does).

Two recipes, each one small strategy (its parameters, its sampling, its loss):

- :class:`LabelFineTuneConfig`, the default: texts of one class are pulled
  together and texts of different classes pushed apart, batch by batch. Each
  optimiser step sees a batch in which every class present has at least two
  texts, and the loss compares every pair of the batch. So the work is a
  budget of steps whatever the number of texts, no text is ever its own
  positive, and no pair repeats within a step.
- :class:`SetFitConfig`: SetFit's recipe, CosineSimilarityLoss on sampled
  pairs (1 for two texts of one class, 0 otherwise), within a budget of steps;
  the pairs are drawn in memory that grows with the pairs, not with the
  square of the texts (:mod:`skembed._sampling`).

:func:`train_on_labels` runs either through :func:`~skembed._training.run_training`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ._loading import check_model_location
from ._sampling import sample_pairs
from ._sklearn import StrOptions
from ._training import POSITIVE, STEPS, TrainingRecipe, TrainingRun, run_training, settings_doc

LABEL_LOSSES = ("batch_all", "supcon", "batch_semi_hard", "batch_hard_soft_margin")


@dataclass(frozen=True)
class LabelFineTuneConfig(TrainingRecipe):
    """How to fine-tune an encoder on class labels; the defaults are the best recipe measured.

    The defaults were chosen on SIB-200 English train and dev (docs: "Fine-tuning
    on your labels"): BatchAllTripletLoss (cosine distance, margin 0.25), at
    most 100 steps of batches of 32 in which every class has two texts or more,
    stopping once the loss has been zero for 2 logs in a row, learning rate
    1e-4 with 10% warm-up, no dropout, frozen token embeddings, bfloat16 where
    it is native. SetFit's recipe is :class:`SetFitConfig`
    (``fine_tune_params="setfit"``).

    Parameters
    ----------
{common}    loss : {{"batch_all", "supcon", "batch_semi_hard", "batch_hard_soft_margin"}}, default="batch_all"
        ``"batch_all"``: sentence-transformers' BatchAllTripletLoss on the
        batch, every (anchor, positive, negative) triplet of it, cosine
        distance, ``margin``. ``"batch_semi_hard"``,
        ``"batch_hard_soft_margin"``: its other triplet losses of those names.
        ``"supcon"``: the supervised contrastive loss (Khosla et al., 2020),
        pytorch-metric-learning's ``SupConLoss``: for each text of a batch,
        every other text of its class must be more similar to it than the
        texts of other classes (cosine similarity, ``scale``).
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
    early_stopping: int | None = 2
    loss: str = "batch_all"
    steps: int = 100
    scale: float = 20.0
    margin: float = 0.25

    _parameter_constraints: ClassVar[dict] = {
        **TrainingRecipe._parameter_constraints,
        "loss": [StrOptions(set(LABEL_LOSSES))],
        "steps": STEPS, "scale": POSITIVE, "margin": POSITIVE,
    }

    def __post_init__(self):
        super().__post_init__()
        if self.batch_size < 4 or self.batch_size % 2:
            raise ValueError(
                f"loss={self.loss!r} compares the texts of a batch, two or more of each class: "
                f"batch_size must be an even number >= 4, got {self.batch_size}."
            )

    def texts_read(self, n_examples: int = 0) -> int:
        return self.steps * self.batch_size * self.soup

    def training_run(self, examples, seed: int) -> TrainingRun:
        from datasets import Dataset
        from sentence_transformers.base.sampler import BatchSamplers

        texts, label_ids = examples
        return TrainingRun(
            dataset=Dataset.from_dict({"sentence": list(texts), "label": label_ids.tolist()}),
            make_loss=self._make_loss, batch_sampler=BatchSamplers.GROUP_BY_LABEL,
            max_steps=self.steps,
        )

    def _make_loss(self, model):
        from sentence_transformers.sentence_transformer import losses

        cosine = losses.BatchHardTripletLossDistanceFunction.cosine_distance
        if self.loss == "supcon":
            return _supcon_loss_class()(model, scale=self.scale)
        if self.loss == "batch_all":
            return losses.BatchAllTripletLoss(model, distance_metric=cosine, margin=self.margin)
        if self.loss == "batch_semi_hard":
            return losses.BatchSemiHardTripletLoss(model, distance_metric=cosine,
                                                   margin=self.margin)
        return losses.BatchHardSoftMarginTripletLoss(model, distance_metric=cosine)


LabelFineTuneConfig.__doc__ = LabelFineTuneConfig.__doc__.format(
    common=settings_doc(LabelFineTuneConfig))


@dataclass(frozen=True)
class SetFitConfig(TrainingRecipe):
    """SetFit's recipe within a budget of steps: pairs of texts, 1 if of one class, else 0.

    CosineSimilarityLoss on pairs drawn from the labelled texts, half of them
    of one class (SetFit's oversampling), none twice while unused ones remain.
    The defaults are setfit 1.2's, with its number of pairs replaced by a
    budget of steps. ``fine_tune_params="setfit"`` is this recipe.

    Parameters
    ----------
{common}    steps : int, default=168
        Optimiser steps: ``steps * batch_size`` pairs are drawn.
    """

    batch_size: int = 16
    learning_rate: float = 2e-5
    weight_decay: float = 0.0
    bf16: bool | str = False
    dropout: float | None = None
    freeze_embeddings: bool = False
    attn_implementation: str = "model"
    steps: int = 168

    N_COLUMNS: ClassVar[int] = 2
    _parameter_constraints: ClassVar[dict] = {**TrainingRecipe._parameter_constraints,
                                              "steps": STEPS}

    def texts_read(self, n_examples: int = 0) -> int:
        return self.steps * self.batch_size * self.soup * 2

    def training_run(self, examples, seed: int) -> TrainingRun:
        from datasets import Dataset
        from sentence_transformers.base.sampler import BatchSamplers
        from sentence_transformers.sentence_transformer import losses

        texts, label_ids = examples
        first, second, same = sample_pairs(label_ids, self.steps * self.batch_size, seed)
        dataset = Dataset.from_dict({
            "sentence1": [texts[k] for k in first], "sentence2": [texts[k] for k in second],
            "score": same.astype(np.float64).tolist(),
        })
        return TrainingRun(dataset=dataset, make_loss=losses.CosineSimilarityLoss,
                           batch_sampler=BatchSamplers.BATCH_SAMPLER, max_steps=self.steps)


SetFitConfig.__doc__ = SetFitConfig.__doc__.format(common=settings_doc(SetFitConfig))

#: The label recipes by name (``fine_tune_params="setfit"``).
LABEL_RECIPES = {"default": LabelFineTuneConfig, "setfit": SetFitConfig}


def _supcon_loss_class():
    import torch
    import torch.nn.functional as F

    class SupervisedContrastiveLoss(torch.nn.Module):
        """pytorch-metric-learning's ``SupConLoss`` on the sentence embeddings of a batch."""

        def __init__(self, model, scale: float):
            super().__init__()
            try:
                from pytorch_metric_learning.losses import SupConLoss
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise ImportError("loss='supcon' needs pytorch-metric-learning: "
                                  "pip install 'skembed[train]'.") from exc
            self.model = model
            self.loss = SupConLoss(temperature=1.0 / scale)

        def forward(self, sentence_features, labels):
            (features,) = sentence_features
            embeddings = F.normalize(self.model(features)["sentence_embedding"], dim=-1)
            return self.loss(embeddings, labels)

    return SupervisedContrastiveLoss


def train_on_labels(config, texts, labels, output_dir: str | os.PathLike, *,
                    recipe: TrainingRecipe | None = None, seed: int = 0,
                    show_progress_bar: bool = False) -> dict:
    """Fine-tune the model of ``config`` on ``texts`` and their class ``labels`` with a label
    recipe (:class:`LabelFineTuneConfig` or :class:`SetFitConfig`); save it.

    Identical (text, label) rows count once. Returns the history, as
    :func:`~skembed._training.run_training` does.
    """
    recipe = recipe or LabelFineTuneConfig()
    check_model_location(config.model)
    texts = [str(t) for t in texts]
    classes, label_ids = np.unique(np.asarray(labels), return_inverse=True)
    rows = dict.fromkeys(zip(texts, label_ids.tolist()))
    texts = [text for text, _ in rows]
    label_ids = np.array([label for _, label in rows], dtype=np.int64)
    counts = np.bincount(label_ids, minlength=len(classes))
    if (counts >= 2).sum() < 2:
        raise ValueError(
            f"Fine-tuning on labels compares texts of one class with texts of others: it "
            f"needs at least two classes of two distinct texts each; got {len(classes)} "
            f"class(es) with {sorted(counts.tolist(), reverse=True)} distinct texts."
        )
    run = recipe.training_run((texts, label_ids), seed)
    return run_training((config,) * recipe.n_columns, run, recipe, output_dir, seed=seed,
                        show_progress_bar=show_progress_bar)
