"""What a gate reports: a static check's verdict, or a seam's verdict with its figures and worst images."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

WORST = 5  # images listed per failed seam


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str

    def as_dict(self) -> dict:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


@dataclass
class Seam:
    key: str
    title: str
    passed: bool
    metrics: dict
    requirement: str
    worst: list[dict] = field(default_factory=list)   # [{"index", "id", "label", ...}]
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def not_run(key: str, title: str, requirement: str, reason: str) -> Seam:
    """A seam that could not run fails, saying why: a gate is never skipped."""
    return Seam(key, title, False, {}, requirement, [], f"not run: {reason}")


def worst_rows(order: np.ndarray, data, **columns: np.ndarray) -> list[dict]:
    """The first images of `order`, with their ids, labels and the given per-image columns."""
    rows = []
    for i in order[:WORST]:
        row = {"index": int(i), "id": _plain(data.ids[i]), "label": int(data.labels[i])}
        row.update({k: _plain(v[i]) for k, v in columns.items()})
        rows.append(row)
    return rows


def _plain(value):
    value = value.item() if hasattr(value, "item") else value
    return round(value, 8) if isinstance(value, float) else value
