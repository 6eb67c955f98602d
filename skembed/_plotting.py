"""Figures of evaluation results, drawn with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

import os


def _matplotlib_import_error(exc: ImportError) -> ImportError:
    return ImportError("Plotting needs matplotlib: pip install 'skembed[plot]'.")


def draw_sts(result, ax, *, title: str | None = None):
    """Scatter of cosine similarity against gold scores on the Axes ``ax``; returns ``ax``."""
    many = result.n_pairs > 300  # small, faint points where they would hide each other
    ax.scatter(result.gold, result.similarity, s=8 if many else 30, alpha=0.4 if many else 0.8,
               edgecolors="none")
    ax.set_xlabel("gold similarity score")
    ax.set_ylabel("cosine similarity of the embeddings")
    heading = f"Spearman {result.spearman:.4f}, Pearson {result.pearson:.4f}"
    heading += f" ({result.n_pairs} pairs)"
    ax.set_title(heading if title is None else f"{title}\n{heading}", fontsize=10)
    ax.grid(alpha=0.3)
    return ax


def new_axes():
    """Axes on a new pyplot figure, shown inline in notebooks."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise _matplotlib_import_error(exc) from exc
    return plt.subplots(figsize=(5.5, 4.5), layout="constrained")[1]


def plot_sts(result, path, *, title: str | None = None) -> str:
    """Scatter of predicted similarity against gold scores, saved as an image.

    Drawn off-screen, without pyplot: nothing is displayed or left open.

    Parameters
    ----------
    result : STSResult
        What :func:`skembed.evaluate_sts` returned.
    path : str or path-like
        Image file to write; the format follows its extension (``.png``).
    title : str or None
        First line of the title; the correlations make the second.

    Returns
    -------
    path : str
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise _matplotlib_import_error(exc) from exc

    fig = Figure(figsize=(5.5, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    draw_sts(result, fig.add_subplot(), title=title)
    path = os.fspath(path)
    fig.savefig(path, dpi=100)
    return path
