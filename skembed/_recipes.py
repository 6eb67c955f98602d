"""The vectorizer's fine-tuning recipes, and which one a ``fine_tune_params`` and a target pick.

Each recipe is one small strategy object (:class:`~skembed._training.TrainingRecipe`):
its parameters, its sampling and its loss. The vectorizer tunes on class labels
(:class:`~skembed.LabelFineTuneConfig`, :class:`~skembed.SetFitConfig`) or on a
number (:class:`~skembed.NumericFineTuneConfig`); the regressor's recipe for
scored pairs is :class:`~skembed.FineTuneConfig`.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.multiclass import type_of_target

from ._label_tuning import LabelFineTuneConfig, SetFitConfig
from ._number_tuning import NumericFineTuneConfig, check_numeric_target
from ._training import TrainingRecipe

#: The vectorizer's recipes by name (``fine_tune_params="setfit"``).
RECIPES = {"labels": LabelFineTuneConfig, "setfit": SetFitConfig,
           "numbers": NumericFineTuneConfig}
#: The recipe classes ``fine_tune_params`` may be an instance of.
RECIPE_CLASSES = tuple(dict.fromkeys(RECIPES.values()))


def vectorizer_recipe(params, y) -> tuple:
    """``(recipe, targets)`` for ``fine_tune_params=params`` and the target ``y``.

    A recipe (or a recipe's name) says what it learns from; otherwise (None or
    a dict of overrides) ``y`` does: class labels (binary or multiclass) get
    :class:`LabelFineTuneConfig`, a continuous ``y`` :class:`NumericFineTuneConfig`.
    ``targets`` are the class labels, or the numbers as float64.
    """
    kind = type_of_target(y, input_name="y")
    if kind == "unknown":
        raise ValueError(f"Unknown label type: fine_tune=True learns from class labels or "
                         f"numbers, got y of dtype {np.asarray(y).dtype}.")
    if isinstance(params, TrainingRecipe):
        recipe = params
    elif isinstance(params, str):
        if params not in RECIPES:
            raise ValueError(f"Unknown fine-tuning recipe {params!r}; the named recipes are "
                             f"{sorted(RECIPES)}.")
        recipe = RECIPES[params]()
    else:
        default = NumericFineTuneConfig if kind == "continuous" else LabelFineTuneConfig
        recipe = default.from_params(params)
    if isinstance(recipe, NumericFineTuneConfig):
        if kind not in ("continuous", "binary", "multiclass"):
            raise ValueError(f"A numeric target is one number per row; y is {kind!r}.")
        return recipe, check_numeric_target(y)
    if kind not in ("binary", "multiclass"):
        raise ValueError(
            f"{type(recipe).__name__} learns from class labels; y is {kind!r}. For a "
            "continuous target leave fine_tune_params None (or a dict of "
            "NumericFineTuneConfig fields, or 'numbers'); for scores of sentence pairs use "
            "SimilarityRegressor(fine_tune=True)."
        )
    return recipe, np.asarray(y)
