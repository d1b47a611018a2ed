"""Recognition metrics on whole-dataset score matrices.

scores: (N, K) float, one row per video (e.g. view-averaged softmax probabilities).
Single-label targets: (N,) long. Multi-label targets (ActivityNet): (N, K) multi-hot.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def top1_hits(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N,) float 1/0: the highest-scoring class is the label (single label, (N,) long) or one of the
    labels (multi-label, (N, K) multi-hot)."""
    top1 = scores.argmax(dim=1)
    if labels.dim() == 2:
        return (labels.float().gather(1, top1[:, None]).squeeze(1) > 0).float()
    return (top1 == labels).float()


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Fraction of rows whose label is among the k highest scores, for every k (capped at K)."""
    if len(labels) == 0:
        return {k: float("nan") for k in ks}
    out = {}
    ranked = scores.argsort(dim=1, descending=True)
    for k in ks:
        hit = (ranked[:, : min(k, scores.shape[1])] == labels[:, None]).any(dim=1)
        out[k] = hit.float().mean().item()
    return out


def mean_class_accuracy(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 recall of each class that occurs in ``labels``, averaged over those classes."""
    if len(labels) == 0:
        return float("nan")
    pred = scores.argmax(dim=1)
    accs = [(pred[labels == c] == c).float().mean() for c in labels.unique()]
    return torch.stack(accs).mean().item()


def average_precision(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """Area under the precision-recall step curve of one class (as sklearn's average_precision_score).

    scores (N,), targets (N,) bool/0-1. Tied scores form one threshold. NaN when there is no positive.
    """
    targets = targets.bool()
    positives = int(targets.sum())
    if positives == 0:
        return float("nan")
    order = scores.argsort(descending=True, stable=True)
    s, t = scores[order], targets[order].double()
    tps = t.cumsum(0)
    # Last position of each run of equal scores = one threshold of the curve.
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]
    tps = tps[last]
    seen = torch.arange(1, len(s) + 1, dtype=torch.float64)[last]
    precision = tps / seen
    recall = tps / positives
    d_recall = torch.diff(recall, prepend=recall.new_zeros(1))
    return float((d_recall * precision).sum())


def mean_average_precision(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean over classes with at least one positive of the per-class average precision (ActivityNet mAP)."""
    aps = [average_precision(scores[:, k], targets[:, k]) for k in range(scores.shape[1])]
    aps = [a for a in aps if a == a]  # drop NaN: classes without positives
    return float(sum(aps) / len(aps)) if aps else float("nan")


def classification_metrics(scores: torch.Tensor, labels: torch.Tensor, multi_label: bool = False) -> dict[str, float]:
    """All metrics of a task: top1/top5/mean_class_acc (single label) or mAP and top1 hit (multi-label)."""
    scores = scores.float()
    if multi_label:
        top1 = top1_hits(scores, labels).mean().item() if len(labels) else float("nan")
        return {"mAP": mean_average_precision(scores, labels), "top1": top1}
    acc = topk_accuracy(scores, labels.long(), (1, 5))
    return {"top1": acc[1], "top5": acc[5], "mean_class_acc": mean_class_accuracy(scores, labels.long())}


__all__ = [
    "top1_hits",
    "topk_accuracy",
    "mean_class_accuracy",
    "average_precision",
    "mean_average_precision",
    "classification_metrics",
]
