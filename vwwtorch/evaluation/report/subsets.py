"""Fine-grained figures: accuracy, person precision and recall on each subset of a split.

A subset is the images whose attribute column is 1 (Wake Vision: `predominantly_female`, `far`,
`dark`...; 0 and -1 = not in it / unknown). `--by` names columns or the paper's families of them
(`gender`, `age`, `distance`, `lighting`, `depiction`). For each family the report gives the
largest accuracy gap between two of its subsets, the fairness figure the Wake Vision paper reports.
Everything is plain counting, so each figure reads exactly as stated.
"""

from __future__ import annotations

import numpy as np

from vwwtorch.plumbing.errors import UserError
from vwwtorch.data.wake_vision_metadata import ATTRIBUTE_GROUPS


def resolve(by: list[str] | None, names: list[str]) -> dict[str, list[str]]:
    """{family: columns} for `--by` (None: every family the dataset has, else every column)."""
    if by is None:
        families = {g: [c for c in cols if c in names] for g, cols in ATTRIBUTE_GROUPS.items()}
        families = {g: cols for g, cols in families.items() if cols}
        grouped = {c for cols in families.values() for c in cols}
        return families | {c: [c] for c in names if c not in grouped}
    families: dict[str, list[str]] = {}
    items = [part.strip() for entry in by for part in entry.split(",") if part.strip()]
    if not items:
        raise UserError(f"--by {' '.join(map(repr, by))} names no attribute; choose from: {_choices(names)}")
    for item in items:
        if item in ATTRIBUTE_GROUPS:
            columns = [c for c in ATTRIBUTE_GROUPS[item] if c in names]
            if not columns:
                raise UserError(f"--by {item}: the dataset has none of its columns "
                                f"({', '.join(ATTRIBUTE_GROUPS[item])})")
            families[item] = columns
        elif item in names:
            families[item] = [item]
        else:
            raise UserError(f"--by {item!r} is not an attribute of the dataset; choose from: {_choices(names)}")
    return families


def _choices(names: list[str]) -> str:
    """The families, then the columns; a column named like a family (Wake Vision's `depiction`) once."""
    return ", ".join(dict.fromkeys([*ATTRIBUTE_GROUPS, *names]))


def require_known(families: dict[str, list[str]], names: list[str], flags: np.ndarray, split: str) -> None:
    """`--by` asked for families of which the split knows nothing (every value -1: Wake Vision's train)."""
    for family, columns in families.items():
        if not np.any(flags[:, [names.index(c) for c in columns]] >= 0):
            raise UserError(f"--by {family}: split {split!r} has no known value of {', '.join(columns)} (all "
                            "unknown); Wake Vision labels these in its val and test splits")


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def subset_figures(name: str, member: np.ndarray, predicted: np.ndarray, labels: np.ndarray,
                   positive_index: int) -> dict:
    y, p = labels[member], predicted[member]
    is_pos, said_pos = y == positive_index, p == positive_index
    tp = int(np.sum(is_pos & said_pos))
    return {
        "name": name,
        "images": int(member.sum()),
        "positives": int(is_pos.sum()),
        "accuracy": _ratio(int(np.sum(y == p)), len(y)),
        "precision": _ratio(tp, int(said_pos.sum())),
        "recall": _ratio(tp, int(is_pos.sum())),
    }


def _gap(subsets: list[dict]) -> dict | None:
    measured = [s for s in subsets if s["accuracy"] is not None]
    if len(measured) < 2:
        return None
    best = max(measured, key=lambda s: s["accuracy"])
    worst = min(measured, key=lambda s: s["accuracy"])
    return {"accuracy": best["accuracy"] - worst["accuracy"], "best": best["name"], "worst": worst["name"]}


def fine_grained(probs: np.ndarray, labels: np.ndarray, names: list[str], flags: np.ndarray,
                 families: dict[str, list[str]], positive_index: int) -> dict:
    """The `fine_grained` section of report.json."""
    predicted = np.asarray(probs).argmax(axis=1)
    labels = np.asarray(labels)
    flags = np.asarray(flags)
    groups = []
    for family, columns in families.items():
        subsets = [subset_figures(c, flags[:, names.index(c)] == 1, predicted, labels, positive_index)
                   for c in columns]
        groups.append({"name": family, "subsets": subsets, "gap": _gap(subsets)})
    gaps = [(g["gap"]["accuracy"], g["name"]) for g in groups if g["gap"] is not None]
    largest = max(gaps) if gaps else None
    return {
        "rule": "a subset is the images whose column is 1; accuracy of the arg-max prediction, precision and "
                "recall of the positive class; gap = best minus worst subset accuracy within a family",
        "groups": groups,
        "largest_gap": {"group": largest[1], "accuracy": largest[0]} if largest else None,
    }


def text_table(section: dict) -> list[str]:
    """Lines for the terminal: one per subset."""
    def show(value):
        return "   n/a" if value is None else f"{value:.4f}"

    lines = [f"  {'subset':<28} {'images':>7} {'accuracy':>8} {'precision':>9} {'recall':>7}"]
    for group in section["groups"]:
        for s in group["subsets"]:
            lines.append(f"  {group['name'] + '/' + s['name']:<28} {s['images']:>7} {show(s['accuracy']):>8} "
                         f"{show(s['precision']):>9} {show(s['recall']):>7}")
        if group["gap"] is not None:
            lines.append(f"  {'':<28} gap {group['gap']['accuracy']:.4f} ({group['gap']['best']} vs "
                         f"{group['gap']['worst']})")
    return lines
