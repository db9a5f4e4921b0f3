"""`vwwtorch import` and `vwwtorch pretrained list|get`."""

from __future__ import annotations

import argparse
from pathlib import Path

from vwwtorch.models.mobilenet_v1 import INPUT_RANGES, named_variant

IMPORT_HELP = """\
Turn a trained model into a vwwtorch checkpoint that validate, test, predict, report, export and
--model.init_from load like one from `vwwtorch fit`.

Accepted: MobileNetV1 classifiers of any width, resolution (a multiple of 32), 1 or 3 channels and
class count, as
  - a full-integer int8 .tflite of slim's structure (TFLM's person_detect.tflite, vwwtorch exports)
    or of MLPerf Tiny's (ReLU, dense head); weights and biases are dequantized, BatchNorm set to
    identity, and the model's int8 ranges kept so that `vwwtorch export` reproduces its quantization;
  - a Keras .h5 (MLPerf's vww_96.h5 and its kind), read with h5py: real BatchNorm statistics. With
    --ranges-from INT8.tflite (the same model quantized) its int8 ranges are kept too.
Anything else is refused in one line naming the first operator or layer that does not fit.

examples:
  vwwtorch import person_detect.tflite --out person.ckpt
  vwwtorch import vww_96.h5 --ranges-from vww_96_int8.tflite --out person_rgb.ckpt
"""


def register(subparsers) -> None:
    i = subparsers.add_parser("import", help="turn a trained int8 .tflite or Keras .h5 MobileNetV1 into a checkpoint",
                              formatter_class=argparse.RawDescriptionHelpFormatter, description=IMPORT_HELP)
    i.add_argument("source", type=Path, help="int8 .tflite or Keras .h5 file")
    i.add_argument("--out", required=True, type=Path, help="checkpoint to write (.ckpt)")
    i.add_argument("--ranges-from", type=Path, metavar="INT8_TFLITE",
                   help="(.h5 only) keep the int8 ranges of this quantized copy of the same model")
    i.add_argument("--input-range", choices=INPUT_RANGES,
                   help="(.h5 only) the range camera bytes map to: [0, 1] is x/255 (MLPerf), [-1, 1] is "
                        "x/127.5-1 (slim); default: --ranges-from's input quantization, else [0, 1]")
    i.add_argument("--class-names", help="comma-separated class names, in output order (default for 2 classes: "
                                         "no_person,person, as VWW models order them)")
    i.set_defaults(func=_run_import)

    p = subparsers.add_parser(
        "pretrained", help="real trained person detectors, pinned: list them, or get one as a checkpoint",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Pinned real person detectors (URL and sha256), cached in $VWWTORCH_CACHE/pretrained like "
                    "the firmware dependencies.\n\nexamples:\n  vwwtorch pretrained list\n"
                    "  vwwtorch pretrained get person-gray-96 --out person.ckpt\n"
                    "  vwwtorch pretrained get person-rgb-96 --from vww_96.h5 --from vww_96_int8.tflite --out rgb.ckpt\n"
                    "  vwwtorch fit --config configs/folder_transfer.yaml --model.init_from pretrained:person-gray-96 "
                    "--data.data_dir data/my_classes")
    sub = p.add_subparsers(dest="pretrained_command", metavar="PRETRAINED_COMMAND", required=True)
    sub.add_parser("list", help="the registry: names, sources, whether cached").set_defaults(func=_run_list)
    g = sub.add_parser("get", help="install a pretrained model (download, cache or --from) and write its checkpoint")
    g.add_argument("name", help="registry name (see `vwwtorch pretrained list`)")
    g.add_argument("--out", required=True, type=Path, help="checkpoint to write (.ckpt)")
    g.add_argument("--from", dest="from_files", type=Path, action="append", default=[], metavar="FILE",
                   help="a copy of one of the model's files fetched elsewhere (matched by sha256); repeat for each")
    g.set_defaults(func=_run_get)


def _class_names(text: str | None) -> list[str] | None:
    from vwwtorch.plumbing.errors import UserError

    if text is None:
        return None
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise UserError(f"--class-names {text!r} has an empty name")
    return names


def _run_import(args) -> None:
    from vwwtorch.plumbing.errors import UserError
    from vwwtorch.plumbing.outputs import check_file
    from vwwtorch.training.foreign import importer

    out = check_file(args.out)
    suffix = args.source.suffix.lower()
    if suffix == ".tflite":
        if args.ranges_from or args.input_range:
            raise UserError("--ranges-from and --input-range are for .h5 sources; a .tflite keeps its own")
        imported = importer.from_tflite(args.source)
    elif suffix in (".h5", ".hdf5", ".keras"):
        input_range = args.input_range
        if args.ranges_from is not None:
            encoded = importer.input_range_of(args.ranges_from)
            if input_range is not None and input_range != encoded:
                raise UserError(f"--input-range {input_range} conflicts with --ranges-from {args.ranges_from}, whose "
                                f"input quantization encodes {encoded}; drop --input-range (it follows --ranges-from)")
            input_range = encoded
        imported = importer.from_keras(args.source, input_range or named_variant("mlperf")["input_range"])
        if args.ranges_from is not None:
            imported = importer.with_ranges_from(imported, args.ranges_from)
    else:
        raise UserError(f"{args.source}: import takes an int8 .tflite or a Keras .h5 file (by its suffix)")
    checkpoint = importer.build_checkpoint(imported, _class_names(args.class_names))
    importer.write_checkpoint(checkpoint, out)
    arch = checkpoint["hyper_parameters"]
    kept = "int8 ranges kept" if "quantization" in checkpoint else "no int8 ranges (export calibrates)"
    print(f"wrote {out}: MobileNetV1 width {arch['width']:g}, {arch['in_channels']}x{arch['resolution']}x"
          f"{arch['resolution']}, classes {', '.join(arch['class_names'])}, activation {arch['activation']}, "
          f"head {arch['head']}, inputs {arch['input_range']}; {kept}")


def _run_list(args) -> None:
    from vwwtorch.training.foreign.pretrained import REGISTRY

    for entry in REGISTRY.values():
        print(f"{entry.name:<16} {'cached' if entry.cached() else 'not cached':<11} {entry.title}")
        print(f"{'':<16} {'':<11} from {entry.source}")


def _run_get(args) -> None:
    import shutil

    from vwwtorch.plumbing.outputs import check_file, staged_path
    from vwwtorch.training.foreign.pretrained import checkpoint_path, get_entry

    entry = get_entry(args.name)
    out = check_file(args.out)
    ckpt = checkpoint_path(entry.name, args.from_files)
    with staged_path(out, checked=True) as tmp:
        shutil.copyfile(ckpt, tmp)
    print(f"wrote {out}: {entry.name} ({entry.title})")
