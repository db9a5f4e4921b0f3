"""Write a complete report folder: staged beside `<out>` and renamed into place when complete."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from vwwtorch.plumbing.errors import UserError
from vwwtorch.plumbing.outputs import check_folder, staged_folder
from vwwtorch.data.format import open_attributes, read_meta
from vwwtorch.evaluation.report.metrics import compute_report
from vwwtorch.evaluation.report.subsets import fine_grained, require_known, resolve
from vwwtorch.evaluation.report.plots import (confusion_matrix_figure, fine_grained_figure, pr_figure, roc_figure,
                                              save_png)
from vwwtorch.evaluation.report.predictions import Predictions, predict_checkpoint, predict_tflite
from vwwtorch.evaluation.report.sheet import write_error_sheet

FILES = {
    "report_json": "report.json",
    "confusion_matrix_txt": "confusion_matrix.txt",
    "confusion_matrix_png": "confusion_matrix.png",
    "roc_png": "roc.png",
    "pr_png": "pr.png",
    "errors_png": "misclassified.png",
    "predictions_csv": "predictions.csv",
}
FINE_GRAINED_PNG = "fine_grained.png"  # only when the dataset has per-image attributes
SCHEMA = "vwwtorch-report"
VERSION = 1


def confusion_text(report: dict) -> str:
    labels = report["confusion_matrix"]["labels"]
    counts = report["confusion_matrix"]["counts"]
    width = max(8, *(len(n) for n in labels), *(len(str(c)) for row in counts for c in row))
    lines = [f"rows: true class, columns: predicted class ({report['images']} images, "
             f"accuracy {report['accuracy']:.4f})",
             " " * width + " " + " ".join(f"{n:>{width}}" for n in labels)]
    lines += [f"{name:>{width}} " + " ".join(f"{c:>{width}}" for c in row) for name, row in zip(labels, counts)]
    return "\n".join(lines) + "\n"


def write_predictions_csv(path: Path, predictions: Predictions) -> None:
    predicted = predictions.probs.argmax(axis=1)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "id", "label", "predicted", *[f"p_{c}" for c in predictions.classes]])
        for i, (ident, label, pred, probs) in enumerate(zip(predictions.ids, predictions.labels, predicted,
                                                            predictions.probs)):
            writer.writerow([i, ident, predictions.classes[label], predictions.classes[pred],
                             *[f"{p:.6f}" for p in probs]])


def positive_index(classes: list[str], name: str | None) -> int:
    if name is None:
        return 1  # VWW: label 1 is the object ("person"); for other data, pass --positive-class
    if name not in classes:
        raise UserError(f"--positive-class {name!r} is not a class of the dataset ({', '.join(classes)})")
    return classes.index(name)


def _fine_grained_plan(args) -> tuple[list[str], np.ndarray, dict[str, list[str]]] | None:
    """(columns, flags, families) of the split's attributes that the report covers, checked before any work."""
    attributes = open_attributes(args.data, args.split, read_meta(args.data)) \
        if args.split in read_meta(args.data)["splits"] else None
    by = getattr(args, "by", None)
    if attributes is None:
        if by:
            raise UserError(f"--by needs per-image attributes; {args.data} has none (build Wake Vision with "
                            "`vwwtorch data wake-vision` to get them)")
        return None
    names, flags = attributes
    families = resolve(by, names)
    if by:
        require_known(families, names, np.asarray(flags), args.split)
    return names, flags, families


def write_report(args) -> tuple[dict, Path]:
    out = check_folder(args.out, overwrite=args.overwrite)
    plan = _fine_grained_plan(args)
    if args.ckpt:
        predictions = predict_checkpoint(args.ckpt, args.data, args.split, batch_size=args.batch_size,
                                         convert_channels=args.convert_channels)
    else:
        predictions = predict_tflite(args.tflite, args.data, args.split, batch_size=args.batch_size,
                                     convert_channels=args.convert_channels)
    pos = positive_index(predictions.classes, args.positive_class)
    figures = compute_report(predictions.probs, predictions.labels, predictions.ids, predictions.classes, pos,
                             thresholds=args.thresholds, fpr_targets=args.fpr, max_errors=args.max_errors)
    report = {
        "schema": SCHEMA, "version": VERSION,
        "model": predictions.model,
        "data": {"dir": str(args.data), "split": args.split, "classes": predictions.classes},
        **figures,
        "files": dict(FILES),
    }
    if plan is not None:
        names, flags, families = plan
        report["fine_grained"] = fine_grained(predictions.probs, predictions.labels, names, np.asarray(flags),
                                              families, pos)
        report["files"]["fine_grained_png"] = FINE_GRAINED_PNG

    with staged_folder(out, checked=True) as tmp:
        (tmp / FILES["confusion_matrix_txt"]).write_text(confusion_text(report), encoding="utf-8")
        save_png(confusion_matrix_figure(report), tmp / FILES["confusion_matrix_png"])
        save_png(roc_figure(report), tmp / FILES["roc_png"])
        save_png(pr_figure(report), tmp / FILES["pr_png"])
        write_error_sheet(predictions.arrays.images, report["most_confident_errors"], tmp / FILES["errors_png"])
        write_predictions_csv(tmp / FILES["predictions_csv"], predictions)
        if "fine_grained" in report:
            save_png(fine_grained_figure(report), tmp / FINE_GRAINED_PNG)
        (tmp / FILES["report_json"]).write_text(json.dumps(report, indent=1, default=_json_default) + "\n",
                                                encoding="utf-8")
    return report, out


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
