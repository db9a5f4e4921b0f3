"""Seam: TFLite Micro against TFLite's reference kernels, bit-exact on every image.

TFLite's default (optimized) kernels may round differently by one LSB; its reference kernels
(`OpResolverType.BUILTIN_REF`) do the same integer arithmetic as TFLM's, so any difference is a
real divergence of what the firmware would compute.

One exception, measured and explained: FULLY_CONNECTED. LiteRT's reference kernel requantizes its
int8 accumulators with one rounding (TFLITE_SINGLE_ROUNDING), TFLM's with gemmlowp's two (the
rounding every convolution of both runtimes uses); on MLPerf's VWW model the two differ by one LSB
on about 3 images in 1000, and TFLM's result is the exact two-rounding one. A model with a
FULLY_CONNECTED layer must therefore match within 1 LSB, every other model bit for bit.
"""

from __future__ import annotations

import numpy as np

from vwwtorch.bridge.calibration import EvalImages
from vwwtorch.bridge.gates.check import Seam, worst_rows

KEY = "tflm_vs_tflite_ref"
TITLE = "TFLM vs TFLite int8 (reference kernels)"
REQUIREMENT = "bit-exact on every image"
DENSE_REQUIREMENT = "within 1 LSB on every image (FULLY_CONNECTED rounds once in LiteRT, twice in TFLM)"


def tolerance(ops: list[str]) -> int:
    """LSB allowed between TFLM and LiteRT's reference kernels for a model with these operators."""
    return 1 if "FULLY_CONNECTED" in ops else 0


def requirement(ops: list[str]) -> str:
    return DENSE_REQUIREMENT if tolerance(ops) else REQUIREMENT


def tflm_seam(tflm: np.ndarray, reference: np.ndarray, data: EvalImages, ops: list[str]) -> Seam:
    lsb = np.abs(tflm.astype(np.int32) - reference.astype(np.int32)).max(axis=1)
    mismatched = int((lsb > 0).sum())
    order = np.argsort(-lsb, kind="stable")
    worst = worst_rows(order[:mismatched], data, max_lsb_diff=lsb) if mismatched else []
    allowed = tolerance(ops)
    passed = int(lsb.max(initial=0)) <= allowed
    return Seam(KEY, TITLE, passed,
                {"images": len(lsb), "mismatched_images": mismatched, "max_lsb_diff": int(lsb.max(initial=0)),
                 "allowed_lsb_diff": allowed},
                requirement(ops), worst,
                f"{mismatched} of {len(lsb)} images differ (up to {int(lsb.max())} LSB)" if mismatched else "")
