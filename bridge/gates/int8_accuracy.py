"""Seam for a model without its float checkpoint (`parity --tflite X --data D`): the int8 model's
accuracy on the dataset's labels, reported, and gated by `--min-accuracy` when given."""

from __future__ import annotations

import numpy as np

from vwwtorch.bridge.calibration import EvalImages
from vwwtorch.bridge.gates.check import Seam, worst_rows

KEY = "tflite_int8_accuracy"
TITLE = "TFLite int8 accuracy"


def requirement(t) -> str:
    return f"accuracy >= {t.min_int8_accuracy:.0%}" if t.min_int8_accuracy else "reported (no --min-accuracy)"


def accuracy_seam(int8_probs: np.ndarray, data: EvalImages, t) -> Seam:
    top = int8_probs.argmax(1)
    right = top == data.labels
    accuracy = float(right.mean())
    passed = accuracy >= t.min_int8_accuracy
    # Wrong answers first, the most confident of them first.
    order = np.lexsort((-int8_probs.max(1), right))
    per_class = {int(c): float(right[data.labels == c].mean()) for c in np.unique(data.labels)}
    return Seam(KEY, TITLE, passed, {"int8_accuracy": accuracy, "errors": int((~right).sum()),
                                     "accuracy_per_class": per_class},
                requirement(t), worst_rows(order, data, int8_top1=top, confidence=int8_probs.max(1)),
                "" if passed else f"accuracy {accuracy:.2%} (need >= {t.min_int8_accuracy:.2%})")
