"""`vwwtorch data ...`: build datasets in the vwwtorch format (docs/dataset_format.md)."""

from __future__ import annotations

import argparse
import os

from vwwtorch.plumbing.defaults import HelpFormatter, default
from vwwtorch.data.coco_vww_builder import build_vww
from vwwtorch.data.contact_sheet import write_contact_sheet
from vwwtorch.data.folder import build_folder_dataset
from vwwtorch.data.synthetic import generate


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="build, check and inspect datasets",
                                 description="Build, check and inspect datasets in the vwwtorch format.")
    sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)

    synth = sub.add_parser(
        "synthetic", help="generate the built-in dataset (grayscale scenes with/without a person figure)",
        formatter_class=HelpFormatter,
        description="Generate the built-in demo dataset: 128x128 grayscale scenes with and without "
                    "person-like figures, deterministic by seed.")
    synth.add_argument("--out", required=True, help="output dataset folder")
    synth.add_argument("--train", type=int, default=default(generate, "train"), help="training images")
    synth.add_argument("--val", type=int, default=default(generate, "val"), help="validation images")
    synth.add_argument("--test", type=int, default=default(generate, "test"), help="test images")
    synth.add_argument("--seed", type=int, default=default(generate, "seed"),
                       help="random seed (same seed, same dataset)")
    synth.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    synth.set_defaults(func=_synthetic)
    _register_vww(sub)
    _register_wake_vision(sub)
    _register_folder(sub)
    _register_verify(sub)
    _register_show(sub)


def _synthetic(args) -> None:
    out = generate(args.out, train=args.train, val=args.val, test=args.test, seed=args.seed,
                   overwrite=args.overwrite)
    print(f"wrote built-in dataset to {out} (train {args.train}, val {args.val}, test {args.test})")


def _register_vww(sub) -> None:
    vww = sub.add_parser(
        "vww", help="build the Visual Wake Words dataset from a COCO 2014 download",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Build the Visual Wake Words dataset from your COCO 2014 download, as tf.slim's builder\n"
                    "(TinyML book, VWW paper) defines it: an image is labelled 1 when it has an annotation of\n"
                    "--class-name whose segmentation area is at least --small-object-area-threshold of the image\n"
                    "area (crowd annotations included), else 0. Images are decoded once, converted to grayscale\n"
                    "or RGB and resized (whole image, no crop) to --image-size.\n\n"
                    "The build runs in chunks committed to OUT.chunks/; if it is interrupted, run the same\n"
                    "command again and it resumes. Unreadable or missing images are skipped and listed in\n"
                    "OUT/report.json. Needs free disk space for about twice the output size while it runs.",
        epilog="example: vwwtorch data vww --coco-dir ~/data/coco2014 --out data/vww_person --workers 8")
    src = vww.add_argument_group("input (the standard COCO 2014 tree, or each part given explicitly)")
    src.add_argument("--coco-dir", help="folder with train2014/, val2014/ and annotations/instances_*2014.json")
    src.add_argument("--train-images", help="train2014 image folder (default: COCO_DIR/train2014)")
    src.add_argument("--val-images", help="val2014 image folder (default: COCO_DIR/val2014)")
    src.add_argument("--train-annotations",
                     help="train annotations (default: COCO_DIR/annotations/instances_train2014.json)")
    src.add_argument("--val-annotations",
                     help="val annotations (default: COCO_DIR/annotations/instances_val2014.json)")
    vww.add_argument("--out", required=True, help="output dataset folder")
    vww.add_argument("--class-name", default=default(build_vww, "class_name"),
                     help="COCO category that makes label 1, e.g. person or car (default: %(default)s)")
    vww.add_argument("--small-object-area-threshold", type=float, default=default(build_vww, "threshold"),
                     metavar="FRACTION",
                     help="annotations covering less than this fraction of the image are ignored "
                          "(default: %(default)s)")
    vww.add_argument("--split", choices=("book", "minival"), default=default(build_vww, "split"),
                     help="book: train2014 -> train, val2014 -> val; minival: the ids in --minival-ids -> val, "
                          "all other train2014+val2014 images -> train (VWW paper) (default: %(default)s)")
    vww.add_argument("--minival-ids", metavar="FILE",
                     help="for --split minival: text file with one COCO image id per line "
                          "(the VWW paper's mscoco_minival_ids.txt)")
    _add_build_options(vww, build_vww, "fail (exit 2) when more than this fraction of images is unreadable or "
                                       "missing (default: %(default)s)")
    vww.set_defaults(func=_vww)


def _add_build_options(parser, builder, bad_fraction_help: str) -> None:
    """The options of the chunked, resumable builders (`vwwtorch.data.coco_vww_builder`), defaults from `builder`."""
    parser.add_argument("--image-size", type=int, default=default(builder, "image_size"),
                        help="stored image side in pixels; the trainer crops and resizes from it, so use at least "
                             "the model's resolution (default: %(default)s)")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=default(builder, "channels"),
                        help="1 = grayscale, 3 = RGB (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="decoding processes (default: the number of CPUs, %(default)s)")
    parser.add_argument("--chunk-size", type=int, default=default(builder, "chunk_size"),
                        help="images per committed chunk; resuming needs the same value (default: %(default)s)")
    parser.add_argument("--max-bad-fraction", type=float, default=default(builder, "max_bad_fraction"),
                        metavar="FRACTION", help=bad_fraction_help)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--restart", action="store_true",
                        help="discard an interrupted build in OUT.chunks/ instead of resuming it")


def _vww(args) -> None:
    from vwwtorch.data.coco_vww import coco_sources

    sources = coco_sources(args.coco_dir, train_images=args.train_images, val_images=args.val_images,
                           train_annotations=args.train_annotations, val_annotations=args.val_annotations)
    result = build_vww(args.out, sources, class_name=args.class_name, threshold=args.small_object_area_threshold,
                       split=args.split, minival_ids=args.minival_ids, image_size=args.image_size,
                       channels=args.channels, workers=args.workers, chunk_size=args.chunk_size,
                       max_bad_fraction=args.max_bad_fraction, overwrite=args.overwrite, restart=args.restart)
    parts = []
    for split, per_class in result.counts.items():
        total = sum(per_class.values())
        positive = list(per_class.values())[1]
        parts.append(f"{split} {total} ({100 * positive / total:.1f}% {list(per_class)[1]})")
    print(f"wrote VWW dataset to {result.out}: {', '.join(parts)}")
    if result.bad:
        print(f"skipped {result.bad} of {result.listed} images (unreadable or missing): "
              f"see {result.out / 'report.json'}")
    if result.decoded:
        print(f"decoded {result.decoded} images in {result.seconds:.1f} s ({result.images_per_second:.0f} img/s)")


def _register_wake_vision(sub) -> None:
    from vwwtorch.data import wake_vision as wv

    p = sub.add_parser(
        "wake-vision", help="build the Wake Vision person dataset from its published files",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Build Wake Vision (Banbury et al.: 6M Open Images photos, person / no person, fine-grained\n"
                    "fairness and robustness flags on validation and test) from the files you downloaded:\n"
                    "the metadata CSVs from Harvard Dataverse (wake_vision_train_large.csv, wake_vision_train_bbox.csv\n"
                    "= train_quality, wake_vision_validation.csv, wake_vision_test.csv) and the image archives\n"
                    "(*.tar.gz, read as a stream, never unpacked), folders of images, or the Hugging Face parquet\n"
                    "shards (which carry their labels: --metadata is then optional).\n\n"
                    "Each CSV's split comes from its name (train/validation/test) or is given as SPLIT=PATH.\n"
                    "The fine-grained columns are kept per image in SPLIT/attributes.npy (-1 = unknown) for\n"
                    "`vwwtorch report --by`. Images are resized whole (no crop) to --image-size.\n\n"
                    "The build runs in chunks committed to OUT.chunks/; if it is interrupted, run the same command\n"
                    "again and it resumes. Listed images that no source holds (missing) or that cannot be decoded\n"
                    "and archive members no CSV lists (unlisted) are counted in OUT/report.json.",
        epilog="examples:\n"
               "  vwwtorch data wake-vision --metadata wake_vision_validation.csv wake_vision_test.csv \\\n"
               "      --images wake-vision-validation.tar.gz wake-vision-test.tar.gz --out data/wv_eval\n"
               "  vwwtorch data wake-vision --metadata wake_vision_train_bbox.csv wake_vision_validation.csv \\\n"
               "      --images wake-vision-train-*.tar.gz wake-vision-validation.tar.gz --allow-unlisted \\\n"
               "      --out data/wake_vision --workers 8\n"
               "  vwwtorch data wake-vision --images hf/data/validation-*.parquet hf/data/test-*.parquet "
               "--out data/wv_eval")
    p.add_argument("--metadata", nargs="+", default=[], metavar="CSV",
                   help="metadata CSVs (split from the name, or SPLIT=PATH with SPLIT train, val or test)")
    p.add_argument("--images", nargs="+", required=True, metavar="PATH",
                   help="image sources: .tar.gz/.tar archives, .parquet shards or folders, read in this order")
    p.add_argument("--out", required=True, help="output dataset folder")
    _add_build_options(p, wv.build_wake_vision,
                       "fail (exit 2) when more than this fraction of the listed images is missing or unreadable, "
                       "or of the archive members is unlisted (default: %(default)s)")
    p.add_argument("--allow-unlisted", action="store_true",
                   help="accept any number of archive members that no CSV lists (building train_quality from "
                        "the train archives it shares with train_large)")
    p.set_defaults(func=_wake_vision)


def _wake_vision(args) -> None:
    from vwwtorch.data.wake_vision import build_wake_vision

    result = build_wake_vision(args.out, args.metadata, args.images, image_size=args.image_size,
                               channels=args.channels, workers=args.workers, chunk_size=args.chunk_size,
                               max_bad_fraction=args.max_bad_fraction, allow_unlisted=args.allow_unlisted,
                               overwrite=args.overwrite, restart=args.restart)
    parts = []
    for split, per_class in result.counts.items():
        total = sum(per_class.values())
        parts.append(f"{split} {total} ({100 * list(per_class.values())[1] / total:.1f}% person)")
    print(f"wrote Wake Vision dataset to {result.out}: {', '.join(parts)}")
    report = result.report
    for key, what in (("missing_count", "listed images in no --images source"),
                      ("unreadable_count", "unreadable images"),
                      ("unlisted_count", "images in --images that no CSV lists"),
                      ("duplicate_count", "duplicate images (skipped)"),
                      ("unlabelled_rows", "rows without a 0/1 person label (skipped)")):
        if report[key]:
            print(f"  {report[key]} {what}: see {result.out / 'report.json'}")
    if result.decoded:
        print(f"decoded {result.decoded} images in {result.seconds:.1f} s ({result.images_per_second:.0f} img/s)")


def _register_folder(sub) -> None:
    folder = sub.add_parser(
        "folder", help="build a dataset from one sub-folder of images per class",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Build a dataset from your own images: IMAGE_DIR/<class>/... with one sub-folder per class\n"
                    "(class names = folder names, sorted; written to OUT/labels.txt). Each file goes to train,\n"
                    "val or test by a hash of its name, so adding images never moves an existing one to another\n"
                    "split; files named NAME_nohash_* share NAME's split. Images are decoded once (EXIF\n"
                    "orientation applied) and resized whole to --image-size. Files that are not images and\n"
                    "images that cannot be read are skipped and listed in OUT/report.json.",
        epilog="example: vwwtorch data folder --image-dir ~/photos/flowers --out data/flowers --channels 3")
    folder.add_argument("--image-dir", required=True, help="folder with one sub-folder of images per class")
    folder.add_argument("--out", required=True, help="output dataset folder")
    folder.add_argument("--validation-percentage", type=float, metavar="PCT",
                        default=default(build_folder_dataset, "validation_percentage"),
                        help="share of images for the val split (default: %(default)s)")
    folder.add_argument("--testing-percentage", type=float, metavar="PCT",
                        default=default(build_folder_dataset, "testing_percentage"),
                        help="share of images for the test split (default: %(default)s)")
    folder.add_argument("--image-size", type=int, default=default(build_folder_dataset, "image_size"),
                        help="stored image side in pixels; the model crops and resizes from it (default: %(default)s)")
    folder.add_argument("--channels", type=int, choices=(1, 3), default=default(build_folder_dataset, "channels"),
                        help="1 = grayscale (the book's model), 3 = RGB (default: %(default)s)")
    folder.add_argument("--min-per-class", type=int, default=default(build_folder_dataset, "min_per_class"),
                        metavar="N",
                        help="fail when a class has fewer readable images than this (default: %(default)s)")
    folder.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="decoding processes (default: the number of CPUs, %(default)s)")
    folder.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    folder.set_defaults(func=_folder)


def _folder(args) -> None:
    from vwwtorch.data.folder import LABELS_FILE, REPORT_FILE

    result = build_folder_dataset(args.image_dir, args.out, validation_percentage=args.validation_percentage,
                                  testing_percentage=args.testing_percentage, image_size=args.image_size,
                                  channels=args.channels, min_per_class=args.min_per_class,
                                  workers=args.workers, overwrite=args.overwrite)
    print(f"wrote dataset with {len(result.classes)} classes to {result.out} "
          f"(class names in {result.out / LABELS_FILE})")
    for split, per_class in result.counts.items():
        print(f"  {split:<5} {sum(per_class.values()):>6}  " + ", ".join(f"{c} {n}" for c, n in per_class.items()))
        empty = [c for c, n in per_class.items() if n == 0]
        if empty:
            print(f"  warning: no {split} image for class(es) {', '.join(empty)}; add images or raise the percentage")
    if result.skipped:
        print(f"skipped {len(result.skipped)} file(s) (not images or unreadable), e.g. "
              f"{result.skipped[0]['file']}: {result.skipped[0]['reason']}; list in {result.out / REPORT_FILE}")


def _register_verify(sub) -> None:
    verify = sub.add_parser(
        "verify", help="check a built dataset and print its class balance",
        description="Check a dataset folder: meta.json, array shapes and counts, labels in range, per-class "
                    "counts and ids against meta.json; print a summary with the class balance. Exit 2 on "
                    "any problem.")
    verify.add_argument("dataset", metavar="DIR", help="dataset folder")
    verify.set_defaults(func=_verify)


def _verify(args) -> None:
    from vwwtorch.data.verify import print_summary, verify_dataset
    from vwwtorch.plumbing.errors import UserError

    report = verify_dataset(args.dataset)
    print_summary(report)
    if not report.ok:
        count = len(report.problems)
        more = f" (and {count - 1} more, listed above)" if count > 1 else ""
        raise UserError(f"{args.dataset} failed verification: {report.problems[0]}{more}")


def _register_show(sub) -> None:
    show = sub.add_parser(
        "show", help="write a labelled contact sheet of dataset images",
        formatter_class=HelpFormatter,
        description="Write a grid of randomly chosen images of one split, each captioned with its label and "
                    "id and framed in the label's colour, so labels can be checked by eye.")
    show.add_argument("dataset", metavar="DIR", help="dataset folder")
    show.add_argument("--out", required=True, help="image file to write (.png or .jpg)")
    show.add_argument("--n", type=int, default=default(write_contact_sheet, "n"), help="number of images")
    show.add_argument("--split", help="split to show (default: val if present, else the first split)")
    show.add_argument("--seed", type=int, default=default(write_contact_sheet, "seed"),
                      help="random seed for choosing images")
    show.set_defaults(func=_show)


def _show(args) -> None:
    from vwwtorch.data.contact_sheet import write_contact_sheet

    out, shown, split = write_contact_sheet(args.dataset, args.out, n=args.n, split=args.split, seed=args.seed)
    print(f"wrote {out} ({shown} images of split {split!r})")
