"""Scatter of predicted vs true accuracy beside the MACs baseline: a picture shows *where* ranking fails.

Uses matplotlib's Agg canvas directly (no pyplot, no display, no global backend switch) and
writes the PNG atomically.
"""

import io

import numpy as np
from matplotlib.figure import Figure

from infra.atomic import atomic_write_bytes

from . import metrics


def _title(label, pred, truth):
    try:
        return (f"{label}: Kendall tau {metrics.kendall_tau_b(pred, truth):.3f}, "
                f"Spearman {metrics.spearman(pred, truth):.3f}")
    except metrics.MetricError:
        return f"{label}: rank correlation undefined"


def scatter_png(path, truth, pred, macs, n_label=None):
    """Two panels (submission, MACs) of prediction vs ground truth; returns the PNG bytes written."""
    fig = Figure(figsize=(11, 4.8), dpi=100)
    size = 2 if len(truth) > 5000 else 8
    for ax, values, label, xlabel in (
        (fig.add_subplot(1, 2, 1), pred, "submission", "predicted accuracy (submission acc)"),
        (fig.add_subplot(1, 2, 2), np.asarray(macs, dtype=np.float64) / 1e9, "MACs baseline", "GMACs"),
    ):
        ax.scatter(values, truth, s=size, alpha=0.5, linewidths=0, rasterized=True)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("ground-truth accuracy")
        ax.set_title(_title(label, values, truth), fontsize=10)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{n_label or len(truth)} ground-truth architectures")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    return data
