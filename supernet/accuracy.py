"""Counting a classifier's hits: the one place the kit counts top-1, top-5 and cross-entropy (standalone
training's validation and the shared-weight evaluation both sum these)."""

import paddle
import paddle.nn.functional as F


def batch_counts(logits, labels):
    """[top-1 hits, top-5 hits (top-k, k = min(5, classes)), summed cross-entropy] of one batch, as a
    float64 tensor on the device: the one place the kit counts accuracy (evaluation and pretrain.py)."""
    logits = logits.astype("float32")
    k = min(5, logits.shape[1])
    hits = (paddle.topk(logits, k=k, axis=1).indices == labels.unsqueeze(1)).astype("float64")
    loss = F.cross_entropy(logits, labels, reduction="sum").astype("float64")
    return paddle.stack([hits[:, 0].sum(), hits.sum(), loss.reshape([])])
