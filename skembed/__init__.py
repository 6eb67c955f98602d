"""skembed: sentence embeddings as scikit-learn estimators."""

from ._cache import EmbeddingCache
from ._engine import DEFAULT_MODEL
from ._vectorizer import EmbeddingVectorizer

__all__ = ["DEFAULT_MODEL", "EmbeddingCache", "EmbeddingVectorizer"]
__version__ = "0.1.0"
