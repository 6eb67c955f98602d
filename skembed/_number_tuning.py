"""Fine-tune a sentence-transformers model on a numeric target: texts with close values get
close vectors (what ``fit(X, y)`` of the vectorizer does with a continuous ``y``).

:class:`NumericFineTuneConfig` is the recipe. By default each batch of texts is
trained with Rank-N-Contrast (Zha et al., 2023): for every anchor and every
other text, that text must be more similar to the anchor than each text whose
target is farther from the anchor's. Other losses learn from a linear head
(``"regression"``) or from pairs drawn uniformly (in memory that grows with the
pairs, :mod:`skembed._sampling`) and scored by how close their targets are.
Whatever regressor follows the vectorizer in the pipeline then reads the target
from the tuned vectors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ._loading import check_model_location
from ._sampling import sample_any_pairs
from ._sklearn import StrOptions
from ._training import POSITIVE, STEPS, TrainingRecipe, TrainingRun, run_training, settings_doc

NUMERIC_LOSSES = ("rank", "regression", "cosent", "angle", "cosine")


@dataclass(frozen=True)
class NumericFineTuneConfig(TrainingRecipe):
    """How to fine-tune an encoder on a numeric target; the defaults are the best recipe measured.

    The defaults were chosen on EmoBank valence train and dev (docs:
    "Fine-tuning on numbers, at any size"): Rank-N-Contrast at scale 10 on
    batches of 32 texts, 100 steps, learning rate 1e-4 with 10% warm-up, no
    dropout, frozen token embeddings, bfloat16 where it is native.

    Parameters
    ----------
{common}    loss : {{"rank", "regression", "cosent", "angle", "cosine"}}, default="rank"
        ``"regression"``: a linear head on the sentence embedding, started
        from the ridge regression of the standardised target on the
        untuned embeddings, trained with the encoder on the mean squared
        error (then dropped: the pipeline's own regressor reads the tuned
        vectors). ``"rank"``: Rank-N-Contrast (Zha et al., 2023) on the
        batch: for each pair of texts, the cosine (times ``scale``) must beat
        that of every text whose target is farther from the anchor's. The others learn from pairs of texts scored by how close
        their targets are, ``1 - |y_i - y_j| / (max(y) - min(y))``:
        ``"cosent"``: CoSENTLoss, ``"angle"``: AnglELoss (both rank the pairs
        of a batch, ``scale``), ``"cosine"``: CosineSimilarityLoss.
    steps : int, default=100
        Optimiser steps: ``steps * batch_size`` pairs are drawn, whatever the
        number of texts.
    scale : float, default=10.0
        Inverse temperature of ``"rank"``, ``"cosent"`` and ``"angle"``.
    """

    batch_size: int = 32
    learning_rate: float = 1e-4
    loss: str = "rank"
    steps: int = 100
    scale: float = 10.0

    _parameter_constraints: ClassVar[dict] = {
        **TrainingRecipe._parameter_constraints,
        "loss": [StrOptions(set(NUMERIC_LOSSES))],
        "steps": STEPS, "scale": POSITIVE,
    }

    @property
    def n_columns(self) -> int:
        return 1 if self.loss in ("regression", "rank") else 2

    def texts_read(self, n_examples: int = 0) -> int:
        return self.steps * self.batch_size * self.soup * self.n_columns

    def training_run(self, examples, seed: int) -> TrainingRun:
        from datasets import Dataset
        from sentence_transformers.base.sampler import BatchSamplers

        texts, values = examples
        if self.loss == "regression":
            standard = (values - values.mean()) / values.std()
            return TrainingRun(
                dataset=Dataset.from_dict({"sentence": list(texts), "label": standard.tolist()}),
                make_loss=lambda model: _regression_loss_class()(model, texts, standard),
                batch_sampler=BatchSamplers.BATCH_SAMPLER, max_steps=self.steps,
            )
        if self.loss == "rank":
            return TrainingRun(
                dataset=Dataset.from_dict({"sentence": list(texts), "label": values.tolist()}),
                make_loss=lambda model: _rank_loss_class()(model, self.scale),
                batch_sampler=BatchSamplers.BATCH_SAMPLER, max_steps=self.steps,
            )
        first, second = sample_any_pairs(len(texts), self.steps * self.batch_size, seed)
        closeness = 1.0 - np.abs(values[first] - values[second]) / np.ptp(values)
        dataset = Dataset.from_dict({
            "sentence1": [texts[k] for k in first], "sentence2": [texts[k] for k in second],
            "score": closeness.tolist(),
        })
        return TrainingRun(dataset=dataset, make_loss=self._make_loss,
                           batch_sampler=BatchSamplers.BATCH_SAMPLER, max_steps=self.steps)

    def _make_loss(self, model):
        from sentence_transformers.sentence_transformer import losses

        if self.loss == "cosent":
            return losses.CoSENTLoss(model, scale=self.scale)
        if self.loss == "angle":
            return losses.AnglELoss(model, scale=self.scale)
        return losses.CosineSimilarityLoss(model)


def _rank_loss_class():
    import torch
    import torch.nn.functional as F

    class RankNContrastLoss(torch.nn.Module):
        """Rank-N-Contrast on a batch: for anchor ``i`` and each other text ``j``, the
        cross-entropy of picking ``j`` among ``j`` and every ``k`` whose target is at least
        as far from ``i``'s as ``j``'s is (Zha et al., 2023, cosine similarity)."""

        def __init__(self, model, scale: float):
            super().__init__()
            self.model = model
            self.scale = scale

        def forward(self, sentence_features, labels):
            (features,) = sentence_features
            embeddings = F.normalize(self.model(features)["sentence_embedding"].float(), dim=-1)
            logits = self.scale * embeddings @ embeddings.T
            distance = (labels[:, None] - labels[None, :]).abs().float()
            n = len(labels)
            others = ~torch.eye(n, dtype=torch.bool, device=logits.device)
            # rivals[i, j, k]: k competes with j as i's neighbour (k is not nearer than j).
            rivals = (distance[:, None, :] >= distance[:, :, None]) & others[:, None, :]
            denominators = torch.logsumexp(
                logits[:, None, :].expand(n, n, n).masked_fill(~rivals, float("-inf")), dim=-1)
            return (denominators - logits)[others].mean()

    return RankNContrastLoss


def _regression_loss_class():
    import torch

    class RegressionHeadLoss(torch.nn.Module):
        """Mean squared error of a linear head on the sentence embedding.

        The head starts at the ridge regression of the target on the untuned
        embeddings (a linear probe, then fine-tuning: the encoder learns from
        what the probe gets wrong, not from a random head's noise).
        """

        def __init__(self, model, texts, target):
            from sklearn.linear_model import RidgeCV

            super().__init__()
            self.model = model
            with torch.no_grad():
                vectors = model.encode(list(texts), batch_size=64, convert_to_numpy=True)
            probe = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(vectors, target)
            self.head = torch.nn.Linear(vectors.shape[1], 1)
            with torch.no_grad():
                self.head.weight.copy_(torch.as_tensor(probe.coef_, dtype=torch.float32)[None])
                self.head.bias.fill_(float(probe.intercept_))

        def forward(self, sentence_features, labels):
            (features,) = sentence_features
            embeddings = self.model(features)["sentence_embedding"]
            predicted = self.head(embeddings.float()).squeeze(-1)
            return torch.nn.functional.mse_loss(predicted, labels.float())

    return RegressionHeadLoss


NumericFineTuneConfig.__doc__ = NumericFineTuneConfig.__doc__.format(
    common=settings_doc(NumericFineTuneConfig))


def check_numeric_target(values) -> np.ndarray:
    """``values`` as float64, or a ValueError naming what makes them no target to learn."""
    values = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"Fine-tuning on a numeric target needs finite numbers; y has {int(bad.sum())} "
            f"NaN or infinite value(s) (the first at row {first}: {values[first]})."
        )
    if np.ptp(values) == 0:
        raise ValueError(
            f"Fine-tuning on a numeric target needs values that differ; every y is "
            f"{float(values[0])!r}, so there is nothing to learn."
        )
    return values


def train_on_numbers(config, texts, values, output_dir: str | os.PathLike, *,
                     recipe: NumericFineTuneConfig | None = None, seed: int = 0,
                     show_progress_bar: bool = False) -> dict:
    """Fine-tune the model of ``config`` so that ``texts`` with close ``values`` get close
    vectors; save it. Returns the history, as :func:`~skembed._training.run_training` does."""
    recipe = recipe or NumericFineTuneConfig()
    check_model_location(config.model)
    texts = [str(t) for t in texts]
    values = check_numeric_target(values)
    if len(set(texts)) < 2:
        raise ValueError("Fine-tuning on a numeric target needs at least two distinct texts.")
    run = recipe.training_run((texts, values), seed)
    return run_training((config,) * recipe.n_columns, run, recipe, output_dir, seed=seed,
                        show_progress_bar=show_progress_bar)
