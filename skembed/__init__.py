"""skembed: sentence embeddings as scikit-learn estimators."""

from ._cache import CacheError, CacheWarning, EmbeddingCache
from ._engine import TruncationWarning
from ._evaluation import (
    STSResult,
    evaluate_sts,
    pearson_score,
    pearson_scorer,
    spearman_score,
    spearman_scorer,
)
from ._finetune import FineTuneConfig
from ._input import MissingTextError
from ._label_tuning import LabelFineTuneConfig, SetFitConfig
from ._number_tuning import NumericFineTuneConfig
from ._config import DEFAULT_MODEL
from ._lifecycle import ParameterChangedError
from ._loading import ModelLoadError
from ._openvino import CalibrationWarning
from ._persistence import SavedEstimatorError, load, save
from ._registry import unload_models
from ._regressor import SimilarityRegressor
from ._similarity import pair_similarity
from ._tuned import QuantizedModel, TunedEncoder
from ._vectorizer import EmbeddingVectorizer

__all__ = [
    "DEFAULT_MODEL",
    "CacheError",
    "CacheWarning",
    "CalibrationWarning",
    "EmbeddingCache",
    "EmbeddingVectorizer",
    "FineTuneConfig",
    "LabelFineTuneConfig",
    "MissingTextError",
    "ModelLoadError",
    "NumericFineTuneConfig",
    "ParameterChangedError",
    "QuantizedModel",
    "STSResult",
    "SavedEstimatorError",
    "SetFitConfig",
    "SimilarityRegressor",
    "TruncationWarning",
    "TunedEncoder",
    "evaluate_sts",
    "load",
    "pair_similarity",
    "pearson_score",
    "pearson_scorer",
    "save",
    "spearman_score",
    "spearman_scorer",
    "unload_models",
]
__version__ = "0.1.0"

# Public classes say where users import them from (tracebacks, reprs, pickles).
for _public in (CacheError, CacheWarning, CalibrationWarning, MissingTextError, ModelLoadError,
                ParameterChangedError, SavedEstimatorError, TruncationWarning):
    _public.__module__ = __name__
del _public
