"""Seam: TFLite Micro against TFLite's reference kernels, bit-exact on every image.

TFLite's default (optimized) kernels may round differently by one LSB; its reference kernels
(`OpResolverType.BUILTIN_REF`) do the same integer arithmetic as TFLM's, so any difference is a
real divergence of what the firmware would compute.
"""

from __future__ import annotations

import numpy as np

from vwwtorch.bridge.calibration import EvalImages
from vwwtorch.bridge.gates.check import Seam, worst_rows

KEY = "tflm_vs_tflite_ref"
TITLE = "TFLM vs TFLite int8 (reference kernels)"
REQUIREMENT = "bit-exact on every image"


def tflm_seam(tflm: np.ndarray, reference: np.ndarray, data: EvalImages) -> Seam:
    lsb = np.abs(tflm.astype(np.int32) - reference.astype(np.int32)).max(axis=1)
    mismatched = int((lsb > 0).sum())
    order = np.argsort(-lsb, kind="stable")
    worst = worst_rows(order[:mismatched], data, max_lsb_diff=lsb) if mismatched else []
    return Seam(KEY, TITLE, mismatched == 0,
                {"images": len(lsb), "mismatched_images": mismatched, "max_lsb_diff": int(lsb.max())},
                REQUIREMENT, worst,
                f"{mismatched} of {len(lsb)} images differ (up to {int(lsb.max())} LSB)" if mismatched else "")
