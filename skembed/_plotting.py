"""Figures of evaluation results and training, drawn with matplotlib.

Files are drawn off-screen with the Agg backend, without pyplot: nothing is
displayed or left open. ``draw_*`` functions draw on any Axes (a notebook's).
"""

from __future__ import annotations

import os


def _matplotlib_import_error() -> ImportError:
    return ImportError("Plotting needs matplotlib: pip install 'skembed[plot]'.")


def _agg_figure():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise _matplotlib_import_error() from exc

    fig = Figure(figsize=(5.5, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def check_plot_path(path) -> None:
    """Raise before any work if ``path`` is not an image file matplotlib can write."""
    suffix = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    formats = _agg_figure().canvas.get_supported_filetypes()
    if suffix not in formats:
        raise ValueError(
            f"cannot draw to {os.fspath(path)!r}: the file name must end in one of "
            f"{', '.join('.' + f for f in sorted(formats))}"
        )
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    if not os.path.isdir(folder):
        raise ValueError(f"the folder of {os.fspath(path)!r} does not exist")


def save_figure(draw, path) -> str:
    """Call ``draw(ax)`` on a new off-screen figure and save it to ``path``."""
    fig = _agg_figure()
    draw(fig.add_subplot())
    path = os.fspath(path)
    fig.savefig(path, dpi=100)
    return path


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


def draw_history(history, ax, *, title: str | None = None):
    """Training loss against optimiser steps (a fine-tuning history); returns ``ax``."""
    ax.plot(history["step"], history["loss"], marker="o", markersize=3)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("training loss (mean since the previous point)")
    epochs = history["epoch"][-1] if len(history["epoch"]) else 0.0
    heading = f"{len(history['loss'])} logged points over {epochs:g} epoch(s)"
    ax.set_title(heading if title is None else f"{title}\n{heading}", fontsize=10)
    ax.grid(alpha=0.3)
    return ax


def new_axes():
    """Axes on a new pyplot figure, shown inline in notebooks."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise _matplotlib_import_error() from exc
    return plt.subplots(figsize=(5.5, 4.5), layout="constrained")[1]
