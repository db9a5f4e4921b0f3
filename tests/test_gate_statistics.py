"""The counted gates on small sets: exact binomial tails against their definition, and the agreement and
accuracy-drop gate passing a faithful export's chance flips while failing real damage."""

from __future__ import annotations

from fractions import Fraction
from math import comb

import numpy as np
import pytest

from vwwtorch.bridge.calibration import EvalImages
from vwwtorch.bridge.gates import int8_agreement
from vwwtorch.bridge.gates.binomial import clopper_pearson, too_many, upper_tail
from vwwtorch.bridge.parity import Thresholds


def exact_tail(k: int, n: int, p: Fraction) -> Fraction:
    return sum(comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k, n + 1))


@pytest.mark.parametrize("k, n, p", [(0, 10, "1/10"), (3, 20, "1/100"), (2, 158, "1/100"), (7, 40, "1/5"),
                                     (40, 40, "1/2"), (17, 1000, "1/100")])
def test_upper_tail_is_the_binomial_sum(k, n, p):
    assert upper_tail(k, n, float(Fraction(p))) == pytest.approx(float(exact_tail(k, n, Fraction(p))), rel=1e-9)


def test_clopper_pearson_bounds_are_where_the_tails_reach_the_level():
    low, high = clopper_pearson(3, 50, 0.95)
    assert upper_tail(3, 50, low) == pytest.approx(0.025, abs=1e-6)
    assert 1 - upper_tail(4, 50, high) == pytest.approx(0.025, abs=1e-6)
    assert clopper_pearson(0, 100, 0.95)[1] == pytest.approx(1 - 0.025 ** (1 / 100), rel=1e-6)


def test_too_many_is_a_one_sided_test_at_the_allowed_rate():
    # At 1% allowed: 2 of 158 is chance (p = 0.47); 7 of 158 is not (p < 0.01).
    assert not too_many(2, 158, 0.01, 0.95) and too_many(7, 158, 0.01, 0.95)
    # On 1000 images the first count that refutes 1% at 95% is 16 (P(X >= 16) = 0.049).
    assert [k for k in range(30) if too_many(k, 1000, 0.01, 0.95)][0] == 16


def seam(flips: int, n: int = 158, broken: int | None = None):
    """An int8 seam where int8 flips `flips` of n float predictions; `broken` of them turn a right
    answer wrong (the rest turn a wrong one right)."""
    labels = np.arange(n) % 2
    torch_top = labels.copy()
    torch_top[: n // 5] ^= 1                        # the float model is wrong on a fifth of the images
    int8_top = torch_top.copy()
    broken = flips if broken is None else broken
    right = np.flatnonzero(torch_top == labels)[:broken]
    wrong = np.flatnonzero(torch_top != labels)[:flips - broken]
    int8_top[np.concatenate([right, wrong])] ^= 1
    probs = lambda top: np.eye(2, dtype=np.float32)[top] * 0.8 + 0.1  # noqa: E731
    data = EvalImages(np.zeros((n, 1, 1, 1), np.uint8), labels, np.arange(n), "val")
    return int8_agreement.int8_seam(probs(torch_top), probs(int8_top), data, Thresholds())


def test_a_faithful_export_with_two_flips_of_158_passes_and_shows_its_interval():
    result = seam(2)   # 98.73% agreement, 1.27 points dropped: the MLPerf export on 158 COCO photos
    assert result.passed
    m = result.metrics
    assert m["top1_agreement"] == pytest.approx(156 / 158) and m["accuracy_drop_points"] == pytest.approx(200 / 158)
    low, high = m["top1_agreement_interval"]
    assert low < 0.99 < high and high <= 1.0
    drop_low, drop_high = m["accuracy_drop_interval_points"]
    assert drop_low < 0 < 1 < drop_high


def test_damage_fails_the_same_gate():
    assert not seam(8).passed                        # agreement 94.9%: refuted
    broken = seam(6, n=1000, broken=6)               # agreement fine (99.4%), but every flip breaks an answer
    assert broken.passed                             # 0.6 points, allowed 1
    many = seam(40, n=1000, broken=40)
    assert not many.passed and "accuracy drop" in many.note and "top-1 agreement" in many.note
    mended = seam(25, n=1000, broken=0)              # flips that only mend: no drop, but too many flips
    assert not mended.passed and "accuracy drop" not in mended.note


def test_a_drop_is_judged_on_the_images_that_changed():
    assert int8_agreement.drop_refuted(20, 0, 1000, 1.0, 0.95)        # 2 points, all one way: refuted
    assert not int8_agreement.drop_refuted(20, 12, 1000, 1.0, 0.95)   # 0.8 points net
    assert not int8_agreement.drop_refuted(3, 0, 158, 1.0, 0.95)      # 1.9 points on 3 images: chance
