"""Seam: torch against TFLite int8, by top-1 agreement and accuracy drop on the same images."""

from __future__ import annotations

import numpy as np

from vwwtorch.bridge.calibration import EvalImages
from vwwtorch.bridge.gates.check import Seam, worst_rows


KEY = "torch_vs_tflite_int8"
TITLE = "torch vs TFLite int8"


def requirement(t) -> str:
    return f"top-1 agreement >= {t.min_top1_agreement:.0%}, accuracy drop <= {t.max_accuracy_drop:g} point"


def int8_seam(torch_probs: np.ndarray, int8_probs: np.ndarray, data: EvalImages, t) -> Seam:
    torch_top, int8_top = torch_probs.argmax(1), int8_probs.argmax(1)
    agree = torch_top == int8_top
    diff = np.abs(torch_probs.astype(np.float64) - int8_probs.astype(np.float64)).max(axis=1)
    float_acc = float((torch_top == data.labels).mean())
    int8_acc = float((int8_top == data.labels).mean())
    drop = (float_acc - int8_acc) * 100
    agreement = float(agree.mean())
    # Disagreements first, then the largest probability differences.
    order = np.lexsort((-diff, agree))
    passed = agreement >= t.min_top1_agreement and drop <= t.max_accuracy_drop
    note = ""
    if not passed:
        note = (f"top-1 agreement {agreement:.2%} (need >= {t.min_top1_agreement:.2%}), "
                f"accuracy drop {drop:.2f} points (allowed {t.max_accuracy_drop:g})")
    return Seam(KEY, TITLE, passed,
                {"top1_agreement": agreement, "disagreements": int((~agree).sum()),
                 "mean_abs_diff": float(diff.mean()), "max_abs_diff": float(diff.max()),
                 "float_accuracy": float_acc, "int8_accuracy": int8_acc, "accuracy_drop_points": drop},
                requirement(t),
                worst_rows(order, data, torch_top1=torch_top, int8_top1=int8_top, abs_diff=diff), note)
