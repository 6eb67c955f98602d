"""skembed: sentence embeddings as scikit-learn estimators."""

from ._cache import EmbeddingCache
from ._engine import DEFAULT_MODEL
from ._evaluation import (
    STSResult,
    evaluate_sts,
    pearson_score,
    pearson_scorer,
    spearman_score,
    spearman_scorer,
)
from ._finetune import FineTuneConfig
from ._regressor import SimilarityRegressor
from ._vectorizer import EmbeddingVectorizer

__all__ = [
    "DEFAULT_MODEL",
    "EmbeddingCache",
    "EmbeddingVectorizer",
    "FineTuneConfig",
    "STSResult",
    "SimilarityRegressor",
    "evaluate_sts",
    "pearson_score",
    "pearson_scorer",
    "spearman_score",
    "spearman_scorer",
]
__version__ = "0.1.0"
