"""Fine-tune a sentence-transformers model on a numeric target: texts with close values get
close vectors (what ``fit(X, y)`` of the vectorizer does with a continuous ``y``).

:class:`NumericFineTuneConfig` is the recipe: pairs of texts are drawn
uniformly (in memory that grows with the pairs, :mod:`skembed._sampling`), each
scored by how close their targets are (``1 - |y_i - y_j| / (max(y) - min(y))``),
and a pair loss (CoSENT by default: the cosine of the closer pairs must be the
larger) teaches the encoder that order. Whatever regressor follows the
vectorizer in the pipeline then reads the target from the tuned vectors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from numbers import Integral, Real
from typing import ClassVar

import numpy as np

from ._loading import check_model_location
from ._sampling import sample_any_pairs
from ._sklearn import Interval, StrOptions
from ._training import TrainingRecipe, TrainingRun, run_training, settings_doc

NUMERIC_LOSSES = ("cosent", "angle", "cosine")


@dataclass(frozen=True)
class NumericFineTuneConfig(TrainingRecipe):
    """How to fine-tune an encoder on a numeric target; the defaults are the best recipe measured.

    The defaults were chosen on EmoBank valence train and dev (docs:
    "Fine-tuning on numbers"): CoSENT on pairs scored by the closeness of
    their targets, 100 steps of 32 pairs, learning rate 1e-4 with 10%
    warm-up, no dropout, frozen token embeddings, bfloat16 where it is native.

    Parameters
    ----------
{common}    loss : {{"cosent", "angle", "cosine"}}, default="cosent"
        ``"cosent"``: CoSENTLoss, ``"angle"``: AnglELoss (both rank the
        pairs of a batch, ``scale``); ``"cosine"``: CosineSimilarityLoss (the
        cosine of a pair regressed on its closeness).
    steps : int, default=100
        Optimiser steps: ``steps * batch_size`` pairs are drawn, whatever the
        number of texts.
    scale : float, default=20.0
        Inverse temperature of ``"cosent"`` and ``"angle"``.
    """

    batch_size: int = 32
    learning_rate: float = 1e-4
    loss: str = "cosent"
    steps: int = 100
    scale: float = 20.0

    NAMED: ClassVar[dict] = {"default": {}}
    N_COLUMNS: ClassVar[int] = 2
    _parameter_constraints: ClassVar[dict] = {
        **TrainingRecipe._parameter_constraints,
        "loss": [StrOptions(set(NUMERIC_LOSSES))],
        "steps": [Interval(Integral, 1, None, closed="left")],
        "scale": [Interval(Real, 0, None, closed="neither")],
    }

    def texts_read(self, n_examples: int = 0) -> int:
        return self.steps * self.batch_size * self.soup * 2

    def training_run(self, examples, seed: int) -> TrainingRun:
        from datasets import Dataset
        from sentence_transformers.base.sampler import BatchSamplers

        texts, values = examples
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
    return run_training((config,) * recipe.N_COLUMNS, run, recipe, output_dir, seed=seed,
                        show_progress_bar=show_progress_bar)
