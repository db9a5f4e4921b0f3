"""Every figure of the evaluation report, from class probabilities and true labels.

Class metrics (accuracy, per-class precision / recall / F1, confusion matrix) use the arg-max
prediction. Curves and the threshold table look at one class, the positive one (VWW: "person"),
one-vs-rest: its probability is the score, and an image counts as positive when
`score >= threshold`. Everything is computed with torchmetrics, except the threshold table, which
is plain counting so that each row reads exactly as stated.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from vwwtorch.evaluation.report import options
import torch
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    binary_precision_recall_curve,
    binary_roc,
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)



def class_metrics(probs: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> dict:
    k = len(classes)
    p, y = torch.as_tensor(probs, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.long)
    per_class = {
        name: {"precision": float(pr), "recall": float(rc), "f1": float(f1), "support": int(n)}
        for name, pr, rc, f1, n in zip(
            classes,
            multiclass_precision(p, y, num_classes=k, average=None),
            multiclass_recall(p, y, num_classes=k, average=None),
            multiclass_f1_score(p, y, num_classes=k, average=None),
            np.bincount(labels, minlength=k),
        )
    }
    return {
        "accuracy": float(multiclass_accuracy(p, y, num_classes=k, average="micro")),
        "per_class": per_class,
        "macro": {m: float(np.mean([c[m] for c in per_class.values()])) for m in ("precision", "recall", "f1")},
        "confusion_matrix": {
            "rows": "true class", "columns": "predicted class", "labels": list(classes),
            "counts": multiclass_confusion_matrix(p, y, num_classes=k).tolist(),
        },
    }


def curves(scores: np.ndarray, positive: np.ndarray) -> tuple[Optional[dict], Optional[dict]]:
    """ROC and precision-recall curves of `scores` for the boolean `positive`; None without both kinds."""
    if positive.all() or not positive.any():
        return None, None
    s, t = torch.as_tensor(scores, dtype=torch.float32), torch.as_tensor(positive, dtype=torch.long)
    fpr, tpr, roc_thresholds = binary_roc(s, t)
    roc_thresholds = roc_thresholds.tolist()
    roc_thresholds[0] = None  # torchmetrics' first point (0, 0) means "nothing predicted positive"
    precision, recall, pr_thresholds = binary_precision_recall_curve(s, t)
    roc = {"auc": float(binary_auroc(s, t)), "fpr": fpr.tolist(), "tpr": tpr.tolist(),
           "thresholds": roc_thresholds}
    pr = {"average_precision": float(binary_average_precision(s, t)), "precision": precision.tolist(),
          "recall": recall.tolist(), "thresholds": pr_thresholds.tolist()}
    return roc, pr


def _row(threshold: float, scores: np.ndarray, positive: np.ndarray) -> dict:
    predicted = scores >= threshold
    tp = int(np.sum(predicted & positive))
    fp = int(np.sum(predicted & ~positive))
    fn = int(np.sum(~predicted & positive))
    tn = int(np.sum(~predicted & ~positive))
    return {
        "threshold": float(threshold), "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        "tpr": tp / (tp + fn) if tp + fn else 0.0,
        "fpr": fp / (fp + tn) if fp + tn else 0.0,
        "precision": tp / (tp + fp) if tp + fp else 1.0,
    }


def threshold_for_fpr(scores: np.ndarray, positive: np.ndarray, target: float) -> float:
    """The lowest threshold (highest recall) whose false-positive rate is at most `target`.

    Candidates are the scores themselves; if even the highest one lets too many negatives through,
    the threshold is just above it and nothing is predicted positive.
    """
    negatives = np.sort(scores[~positive])[::-1]
    allowed = int(np.floor(target * len(negatives) + 1e-9))  # false positives the target permits
    candidates = np.unique(scores)[::-1]  # descending
    # Negatives at or above each candidate threshold, counted with a search in the sorted scores.
    fp = len(negatives) - np.searchsorted(negatives[::-1], candidates, side="left")
    ok = np.flatnonzero(fp <= allowed)
    if len(ok) == 0:
        return float(np.nextafter(np.float32(candidates[0]), np.float32(np.inf)))
    return float(candidates[ok[-1]])


def threshold_table(scores: np.ndarray, positive: np.ndarray, thresholds: Sequence[float] = options.THRESHOLDS,
                    fpr_targets: Sequence[float] = options.FPR_TARGETS) -> tuple[list[dict], list[dict]]:
    table = [_row(t, scores, positive) for t in thresholds]
    targets = []
    if positive.any() and not positive.all():
        for target in fpr_targets:
            targets.append({"target_fpr": float(target),
                            **_row(threshold_for_fpr(scores, positive, target), scores, positive)})
    return table, targets


def most_confident_errors(probs: np.ndarray, labels: np.ndarray, ids: np.ndarray, classes: Sequence[str],
                          positive_index: int, limit: int) -> list[dict]:
    """Misclassified images, the most confident (highest predicted-class probability) first."""
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probs[wrong, predicted[wrong]]
    order = wrong[np.argsort(-confidence, kind="stable")][:limit]
    return [{"index": int(i), "id": _plain(ids[i]), "true": classes[labels[i]], "predicted": classes[predicted[i]],
             "confidence": float(probs[i, predicted[i]]), "positive_score": float(probs[i, positive_index])}
            for i in order]


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def compute_report(probs: np.ndarray, labels: np.ndarray, ids: np.ndarray, classes: Sequence[str],
                   positive_index: int, thresholds: Sequence[float] = options.THRESHOLDS,
                   fpr_targets: Sequence[float] = options.FPR_TARGETS, max_errors: int = options.MAX_ERRORS) -> dict:
    """The figures of report.json (without the model/data description the CLI adds)."""
    probs = np.asarray(probs, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    scores = probs[:, positive_index]
    positive = labels == positive_index
    roc, pr = curves(scores, positive)
    table, targets = threshold_table(scores, positive, thresholds, fpr_targets)
    return {
        "images": int(len(labels)),
        **class_metrics(probs, labels, classes),
        "positive_class": classes[positive_index],
        "positive_index": int(positive_index),
        "roc": roc,
        "pr": pr,
        "threshold_table": table,
        "fpr_targets": targets,
        "most_confident_errors": most_confident_errors(probs, labels, ids, classes, positive_index, max_errors),
    }
