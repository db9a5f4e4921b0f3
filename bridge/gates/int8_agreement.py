"""Seam: torch against TFLite int8, by top-1 agreement and accuracy drop on the same images.

Both are counts on a sample (see `binomial`). The gate fails when the images seen show, at the
thresholds' confidence, that the true agreement is below `min_top1_agreement` (too many flips to be
chance at the allowed rate) or that the true accuracy drop exceeds `max_accuracy_drop` (more images
broken than mended by quantization, beyond chance: an exact test on the discordant images, as
McNemar's). The report gives the observed figures with their intervals. On 1,000 images a real 1%
disagreement shows as about 10 flips, and 16 or more refute it; on 158 photos, two flips are chance.
"""

from __future__ import annotations

import numpy as np

from vwwtorch.bridge.calibration import EvalImages
from vwwtorch.bridge.gates.binomial import clopper_pearson, too_many, upper_tail
from vwwtorch.bridge.gates.check import Seam, worst_rows

KEY = "torch_vs_tflite_int8"
TITLE = "torch vs TFLite int8"


def requirement(t) -> str:
    return (f"top-1 agreement >= {t.min_top1_agreement:.0%}, accuracy drop <= {t.max_accuracy_drop:g} point "
            f"(not refuted at {t.confidence:.0%} confidence)")


def drop_refuted(broken: int, mended: int, images: int, max_drop_points: float, confidence: float) -> bool:
    """Whether `broken` images (float right, int8 wrong) against `mended` (the reverse) show a true
    accuracy drop above `max_drop_points`: conditional on the discordant images, broken ~ Binomial(
    broken + mended, pi), and the allowed drop bounds pi."""
    discordant = broken + mended
    if discordant == 0:
        return False
    pi = (max_drop_points / 100 * images / discordant + 1) / 2
    return pi < 1 and upper_tail(broken, discordant, pi) < 1.0 - confidence


def drop_interval(broken: int, mended: int, images: int, confidence: float) -> tuple[float, float]:
    """The accuracy drop's interval in points, from the discordant images' split."""
    discordant = broken + mended
    if discordant == 0:
        return 0.0, 0.0
    low, high = clopper_pearson(broken, discordant, confidence)
    return tuple(100 * discordant * (2 * p - 1) / images for p in (low, high))


def int8_seam(torch_probs: np.ndarray, int8_probs: np.ndarray, data: EvalImages, t) -> Seam:
    torch_top, int8_top = torch_probs.argmax(1), int8_probs.argmax(1)
    agree = torch_top == int8_top
    diff = np.abs(torch_probs.astype(np.float64) - int8_probs.astype(np.float64)).max(axis=1)
    n = len(agree)
    flips = int((~agree).sum())
    torch_right, int8_right = torch_top == data.labels, int8_top == data.labels
    broken, mended = int((torch_right & ~int8_right).sum()), int((~torch_right & int8_right).sum())
    float_acc, int8_acc = float(torch_right.mean()), float(int8_right.mean())
    drop = (float_acc - int8_acc) * 100
    agreement = float(agree.mean())
    disagreement_interval = clopper_pearson(flips, n, t.confidence)
    agreement_interval = (1 - disagreement_interval[1], 1 - disagreement_interval[0])
    drop_low, drop_high = drop_interval(broken, mended, n, t.confidence)
    too_few_agree = too_many(flips, n, 1 - t.min_top1_agreement, t.confidence)
    too_much_drop = drop_refuted(broken, mended, n, t.max_accuracy_drop, t.confidence)
    passed = not (too_few_agree or too_much_drop)
    # Disagreements first, then the largest probability differences.
    order = np.lexsort((-diff, agree))
    note = ""
    if not passed:
        reasons = []
        if too_few_agree:
            reasons.append(f"top-1 agreement {agreement:.2%} ({flips} of {n} differ; {t.confidence:.0%} interval "
                           f"{agreement_interval[0]:.2%}-{agreement_interval[1]:.2%}, need >= "
                           f"{t.min_top1_agreement:.2%})")
        if too_much_drop:
            reasons.append(f"accuracy drop {drop:.2f} points ({broken} images broken, {mended} mended; interval "
                           f"{drop_low:.2f} to {drop_high:.2f}, allowed {t.max_accuracy_drop:g})")
        note = "; ".join(reasons)
    return Seam(KEY, TITLE, passed,
                {"top1_agreement": agreement, "disagreements": flips, "images": n,
                 "top1_agreement_interval": list(agreement_interval),
                 "mean_abs_diff": float(diff.mean()), "max_abs_diff": float(diff.max()),
                 "float_accuracy": float_acc, "int8_accuracy": int8_acc, "accuracy_drop_points": drop,
                 "accuracy_drop_interval_points": [drop_low, drop_high],
                 "broken_by_int8": broken, "mended_by_int8": mended, "confidence": t.confidence},
                requirement(t),
                worst_rows(order, data, torch_top1=torch_top, int8_top1=int8_top, abs_diff=diff), note)
