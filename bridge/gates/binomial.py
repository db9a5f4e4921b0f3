"""How sure a gate can be from n images: exact binomial tails and Clopper-Pearson intervals.

A gate that counts images (how many flip between float and int8) sees a sample, not the model's
true rate: on 158 photos two flips are 1.3%, and a faithful export can show that by chance when
its true rate is well below 1%. The agreement and accuracy-drop gates therefore fail only when the
count is unlikely (below `1 - confidence`) under the allowed rate, and report the interval of the
true rate that the count leaves open. Exact sums in log space (math.lgamma): no normal approximation,
which is poor for the few flips these gates see.
"""

from __future__ import annotations

import math


def _log_pmf(i: int, n: int, p: float) -> float:
    if p <= 0.0:
        return 0.0 if i == 0 else -math.inf
    if p >= 1.0:
        return 0.0 if i == n else -math.inf
    return (math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
            + i * math.log(p) + (n - i) * math.log1p(-p))


def upper_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    terms = [_log_pmf(i, n, p) for i in range(k, n + 1)]
    top = max(terms)
    if top == -math.inf:
        return 0.0
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def _solve(f, target: float) -> float:
    """The p in [0, 1] where the increasing function f(p) crosses target (bisection)."""
    low, high = 0.0, 1.0
    for _ in range(60):
        mid = (low + high) / 2
        if f(mid) < target:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided exact interval of a binomial proportion from k successes in n trials."""
    if n <= 0:
        return 0.0, 1.0
    alpha = 1.0 - confidence
    low = 0.0 if k == 0 else _solve(lambda p: upper_tail(k, n, p), alpha / 2)
    high = 1.0 if k == n else _solve(lambda p: upper_tail(k + 1, n, p), 1 - alpha / 2)
    return low, high


def too_many(k: int, n: int, allowed_rate: float, confidence: float) -> bool:
    """Whether k events in n trials show, at `confidence`, a true rate above `allowed_rate`."""
    return upper_tail(k, n, allowed_rate) < 1.0 - confidence
