"""Seam: an export that keeps a quantization against the int8 network that quantization defines.

When the export does not calibrate, it claims to reproduce an int8 network that exists apart from
it: a QAT checkpoint's simulated integer network (`vwwtorch.models.int8_simulation`), or the int8
file an imported checkpoint came from. Then agreement on the top-1 class is not the proof; equal
int8 outputs are. TFLM's outputs of the export must lie within 1 LSB of that network's on every
image (1 LSB: the simulation's softmax is computed in float, TFLM's in fixed point; a source file
through TFLM is compared exactly the same way and is in practice 0 LSB away).
"""

from __future__ import annotations

import numpy as np

from vwwtorch.bridge.calibration import EvalImages
from vwwtorch.bridge.gates.check import Seam, worst_rows

KEY = "kept_quantization"
MAX_LSB = 1


def title(reference: str) -> str:
    return f"{reference} vs TFLite int8"


def requirement() -> str:
    return f"int8 outputs within {MAX_LSB} LSB on every image"


def kept_seam(expected: np.ndarray, tflm: np.ndarray, data: EvalImages, reference: str) -> Seam:
    """`expected`: the reference network's int8 outputs; `tflm`: the export's, as TFLM computes them."""
    lsb = np.abs(expected.astype(np.int32) - tflm.astype(np.int32)).max(axis=1)
    differing = int((lsb > 0).sum())
    passed = int(lsb.max()) <= MAX_LSB
    order = np.argsort(-lsb, kind="stable")
    note = "" if passed else (f"{int((lsb > MAX_LSB).sum())} images more than {MAX_LSB} LSB from {reference} "
                              f"(max {int(lsb.max())} LSB): the export is not the network it claims to keep")
    return Seam(KEY, title(reference), passed,
                {"reference": reference, "images": len(lsb), "images_differing": differing,
                 "max_lsb_diff": int(lsb.max()), "top1_agreement": float((expected.argmax(1) == tflm.argmax(1)).mean())},
                requirement(), worst_rows(order, data, lsb_diff=lsb), note)
