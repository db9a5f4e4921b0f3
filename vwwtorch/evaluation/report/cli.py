"""`vwwtorch report`: evaluate a checkpoint or a deployed .tflite model on a dataset split."""

from __future__ import annotations

import argparse

from vwwtorch.evaluation.report import options


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="evaluation report: metrics, ROC/PR curves, thresholds, worst errors",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Evaluate a trained checkpoint (--ckpt) or the deployed model (--tflite, e.g. model_int8.tflite,\n"
                    "fed exactly as the firmware feeds it: int8 = byte - 128) on one split of a dataset, and write to\n"
                    "--out: report.json (every figure; schema in docs/report_json.md), confusion_matrix.txt/.png,\n"
                    "roc.png and pr.png for the positive class with AUC, misclassified.png (the most confidently\n"
                    "misclassified images with their ids) and predictions.csv (every image's probabilities).\n"
                    "The threshold table gives TPR/FPR at score thresholds and the threshold for each --fpr target.\n"
                    "On a dataset with per-image attributes (Wake Vision's fine-grained flags) it adds accuracy, person\n"
                    "precision and recall per subset, the largest gap within each family, and fine_grained.png.",
        epilog="examples:\n"
               "  vwwtorch report --ckpt runs/vww/version_0/checkpoints/last.ckpt --data data/vww --out reports/float\n"
               "  vwwtorch report --tflite export/model_int8.tflite --data data/vww --split test --out reports/int8\n"
               "  vwwtorch report --ckpt last.ckpt --data data/wake_vision --split test --out reports/wv \\\n"
               "      --by gender,age,distance,lighting,depiction")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--ckpt", help="Lightning checkpoint from `vwwtorch fit` (its EMA weights)")
    model.add_argument("--tflite", help=".tflite model (int8 or float32), e.g. from `vwwtorch export`")
    p.add_argument("--data", required=True, help="dataset folder in the vwwtorch format")
    p.add_argument("--split", default=options.SPLIT, help="split to evaluate, e.g. val or test (default: %(default)s)")
    p.add_argument("--out", required=True, help="output folder for the report")
    p.add_argument("--positive-class", metavar="NAME",
                   help="class whose score the ROC/PR curves and thresholds are about "
                        "(default: the class with label 1, 'person' for VWW)")
    p.add_argument("--fpr", type=float, nargs="+", default=list(options.FPR_TARGETS), metavar="RATE",
                   help="false-positive rates to find thresholds for (default: %(default)s)")
    p.add_argument("--thresholds", type=float, nargs="+", metavar="T",
                   default=list(options.THRESHOLDS),
                   help="score thresholds for the threshold table (default: %(default)s)")
    p.add_argument("--max-errors", type=int, default=options.MAX_ERRORS, metavar="N",
                   help="misclassified images on the contact sheet and in report.json (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=options.BATCH_SIZE,
                   help="images per forward pass (default: %(default)s)")
    p.add_argument("--by", nargs="+", metavar="ATTRIBUTE",
                   help="fine-grained section for these attribute columns or families (gender, age, distance, "
                        "lighting, depiction; comma or space separated); default: all, when the dataset has "
                        "per-image attributes (Wake Vision)")
    p.add_argument("--convert-channels", action="store_true",
                   help="convert RGB data for a grayscale model (or the reverse) instead of refusing it")
    p.add_argument("--overwrite", action="store_true", help="replace an existing, non-empty --out folder")
    p.set_defaults(func=_run)


def _check_args(args) -> None:
    from vwwtorch.plumbing.errors import UserError

    if any(not 0 <= f <= 1 for f in args.fpr):
        raise UserError(f"--fpr rates must be in [0, 1], got {args.fpr}")
    if any(not 0 <= t <= 1 for t in args.thresholds):
        raise UserError(f"--thresholds must be in [0, 1], got {args.thresholds}")
    if args.max_errors < 0 or args.batch_size < 1:
        raise UserError("--max-errors must be >= 0 and --batch-size >= 1")


def _run(args) -> None:
    from vwwtorch.evaluation.report.writer import write_report

    _check_args(args)
    report, out = write_report(args)
    print(f"{report['model']['kind']} {report['model']['path']} on {report['data']['split']} of "
          f"{report['data']['dir']}: {report['images']} images, accuracy {report['accuracy']:.4f}")
    width = max(len(c) for c in report["per_class"])
    print(f"  {'class':<{width}}  precision  recall     f1  support")
    for name, m in report["per_class"].items():
        print(f"  {name:<{width}}  {m['precision']:9.4f}  {m['recall']:6.4f}  {m['f1']:.4f}  {m['support']:7d}")
    if report["roc"] is not None:
        print(f"  positive class {report['positive_class']!r}: ROC AUC {report['roc']['auc']:.4f}, "
              f"PR AUC (average precision) {report['pr']['average_precision']:.4f}")
        for t in report["fpr_targets"]:
            print(f"  FPR <= {t['target_fpr']:g}: threshold {t['threshold']:.4f} -> TPR {t['tpr']:.4f} "
                  f"(FPR {t['fpr']:.4f})")
    if "fine_grained" in report:
        from vwwtorch.evaluation.report.subsets import text_table

        print("  fine-grained subsets:")
        for line in text_table(report["fine_grained"]):
            print(line)
    print(f"wrote {out}/ ({', '.join(report['files'].values())})")
