"""The report's charts as matplotlib figures (bare `Figure`s rendered by Agg, no display or pyplot).

Every figure has a fixed size in pixels (`FIGURE_PIXELS`): no tight bounding box, so tools and
tests can rely on the PNG's dimensions.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

DPI = 100
FIGURE_PIXELS = (640, 560)  # width, height of every chart PNG


def _figure():
    from matplotlib.figure import Figure

    # A bare Figure (not pyplot): nothing global to close, safe in long-running processes.
    return Figure(figsize=(FIGURE_PIXELS[0] / DPI, FIGURE_PIXELS[1] / DPI), dpi=DPI, layout="constrained")


def confusion_matrix_figure(report: dict):
    matrix = np.asarray(report["confusion_matrix"]["counts"])
    labels = report["confusion_matrix"]["labels"]
    fig = _figure()
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, label="images")
    slanted = len(labels) > 3  # long rows of names would overlap
    ax.set_xticks(range(len(labels)), labels, rotation=45 if slanted else 0, ha="right" if slanted else "center")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    ax.set_title(f"Confusion matrix (accuracy {report['accuracy']:.2%}, {report['images']} images)")
    if len(labels) <= 20:
        threshold = matrix.max() / 2 if matrix.size else 0
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(count), ha="center", va="center", color="white" if count > threshold else "black")
    return fig


def _mark_targets(ax, report: dict, x_key: str, y_key: str) -> None:
    for target in report["fpr_targets"]:
        ax.plot(target[x_key], target[y_key], "o", markersize=6,
                label=f"FPR <= {target['target_fpr']:g}: threshold {target['threshold']:.3f}")


def roc_figure(report: dict):
    fig = _figure()
    ax = fig.add_subplot()
    roc = report["roc"]
    name = report["positive_class"]
    if roc is not None:
        ax.plot(roc["fpr"], roc["tpr"], lw=2, label=f"ROC, AUC = {roc['auc']:.4f}")
        _mark_targets(ax, report, "fpr", "tpr")
    else:
        ax.text(0.5, 0.5, "undefined: the split lacks positive or negative images", ha="center")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="chance")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("False positive rate")
    ax.set_ylabel(f"True positive rate (recall of {name})")
    ax.set_title(f"ROC curve, positive class {name!r}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return fig


def pr_figure(report: dict):
    fig = _figure()
    ax = fig.add_subplot()
    pr = report["pr"]
    name = report["positive_class"]
    if pr is not None:
        ax.step(pr["recall"], pr["precision"], where="post", lw=2,
                label=f"precision-recall, AUC (average precision) = {pr['average_precision']:.4f}")
        _mark_targets(ax, report, "tpr", "precision")
        base = report["per_class"][name]["support"] / report["images"]
        ax.axhline(base, ls="--", color="grey", lw=1, label=f"chance ({base:.2f})")
    else:
        ax.text(0.5, 0.5, "undefined: the split lacks positive or negative images", ha="center")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"Recall (true positive rate of {name})")
    ax.set_ylabel("Precision")
    ax.set_title(f"Precision-recall curve, positive class {name!r}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    return fig


def save_png(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    fig.savefig(path, dpi=DPI, format="png")
    return path


def fine_grained_figure(report: dict):
    """Accuracy per fine-grained subset, grouped by family, with each subset's image count."""
    section = report["fine_grained"]
    rows = [(g["name"], s) for g in section["groups"] for s in g["subsets"]]
    fig = _figure()
    ax = fig.add_subplot()
    colors = {name: f"C{i % 10}" for i, name in enumerate(dict.fromkeys(g for g, _ in rows))}
    values = [s["accuracy"] if s["accuracy"] is not None else 0.0 for _, s in rows]
    positions = np.arange(len(rows))[::-1]
    ax.barh(positions, values, color=[colors[g] for g, _ in rows])
    ax.set_yticks(positions, [f"{s['name']} ({s['images']})" for _, s in rows], fontsize=8)
    ax.axvline(report["accuracy"], color="black", linestyle="--", linewidth=1,
               label=f"whole split {report['accuracy']:.2%}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("Accuracy (images in the subset in brackets)")
    largest = section["largest_gap"]
    gap = f"; largest gap {largest['accuracy']:.2%} ({largest['group']})" if largest else ""
    ax.set_title(f"Accuracy per subset{gap}", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    return fig
