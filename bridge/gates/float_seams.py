"""Seams: torch against ONNX Runtime and against TFLite float32, by the largest probability difference.

Both run the same preprocessed images; a conversion that changed what the model computes shows as
a difference far above float rounding (1e-4 by default).
"""

from __future__ import annotations

import numpy as np

from vwwtorch.bridge.calibration import EvalImages
from vwwtorch.bridge.gates.check import Seam, worst_rows


def probability_seam(key: str, title: str, reference: np.ndarray, other: np.ndarray, limit: float,
                      data: EvalImages) -> Seam:
    diff = np.abs(reference.astype(np.float64) - other.astype(np.float64)).max(axis=1)
    worst = np.argsort(-diff, kind="stable")
    max_diff = float(diff.max())
    return Seam(key, title, max_diff <= limit, {"max_abs_diff": max_diff, "mean_abs_diff": float(diff.mean())},
                f"max |p diff| <= {limit:g}", worst_rows(worst, data, abs_diff=diff))
