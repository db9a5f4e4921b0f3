"""`vwwtorch firmware generate`: turn an int8 `.tflite` into the model sources of a firmware build.

Writes into one folder (replaced as a whole, never left half-written):
    model_data.h/.cc       the model bytes as a 16-byte-aligned const array (flash, no copy)
    model_settings.h/.cc   input size, labels, person index, quantization, threshold, arena size
    model_ops.h/.cc        a MicroMutableOpResolver<N> with exactly the model's ops
    model_kernels.cc       convolution weights packed for the Cortex-M4 kernels (packed_weights.py)
    model.mk               the TFLM kernel sources those ops need (read by firmware/Makefile)
    model_info.json        the same facts for the Python side (`firmware build` / `firmware run`)

The checks, settings and the command are here; the text of the C++ files is model_sources.py's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from dataclasses import asdict
from pathlib import Path

from vwwtorch.contract.deployment import byte_to_int8
from vwwtorch.plumbing.defaults import default
from vwwtorch.plumbing.errors import UserError
from vwwtorch.plumbing.names import printable
from vwwtorch.plumbing.outputs import check_folder, staged_folder
from vwwtorch.plumbing.records import load_record
from vwwtorch.plumbing.text_files import read_lines
from vwwtorch.firmware.codegen.model_sources import (
    GENERATED_BY,
    ModelSettings,
    render_makefile,
    render_model_data,
    render_ops,
    render_settings,
)

DEFAULT_LABELS = ("no_person", "person")
MEMORY_REPORT = "memory_plan.json"   # with --memory-budget: the plan, and live bytes per layer
MEMORY_CHART = "memory_plan.png"
MEMORY_MODEL = "memory_plan.tflite"  # the rewritten model the firmware runs (needs its VWW_CONV_CHAIN op)


# --- checks -----------------------------------------------------------------------------------

def _check_int8_io(info, source: str) -> None:
    if len(info.inputs) != 1 or len(info.outputs) != 1:
        raise UserError(f"{source} has {len(info.inputs)} inputs and {len(info.outputs)} outputs; "
                        "the firmware runs single-input, single-output image classifiers")
    for kind, tensor in (("input", info.inputs[0]), ("output", info.outputs[0])):
        if tensor.dtype != "INT8":
            raise UserError(f"{source} has a {tensor.dtype} {kind}; the firmware needs an int8-in, "
                            "int8-out model (full-integer quantization, e.g. `vwwtorch export`)")
        if tensor.scale is None:
            raise UserError(f"{source}: the {kind} tensor has no per-tensor quantization")
    shape = info.inputs[0].shape
    if len(shape) != 4 or shape[0] != 1 or shape[3] not in (1, 3):
        raise UserError(f"{source}: input shape {list(shape)} is not [1, rows, cols, 1 or 3]")


def _check_ops(info, source: str) -> None:
    from vwwtorch.firmware.codegen.ops import SUPPORTED_OPS

    missing = [op for op in info.op_names if op not in SUPPORTED_OPS]
    if missing:
        raise UserError(f"{source} uses op(s) the firmware's TFLM build does not support: "
                        f"{', '.join(missing)} (supported: {', '.join(sorted(SUPPORTED_OPS))})")


def _resolver_calls(info) -> list[str]:
    """One Add<Op>() call per op; the int8-only registration when every use of the op is int8, wrapped
    in firmware/core/kernels/fast_kernels.h where this firmware has faster kernels for some of its shapes."""
    from vwwtorch.firmware.codegen.ops import SUPPORTED_OPS

    calls = []
    for name in info.op_names:
        support = SUPPORTED_OPS[name]
        if support.call:
            calls.append(support.call)
            continue
        uses = [u for u in info.operators if u.op == name]
        all_int8 = support.int8_registration is not None and all(
            all(u.input_types[i] == "INT8" for i in support.int8_inputs if i < len(u.input_types))
            and all(t == "INT8" for t in u.output_types) for u in uses)
        argument = f"tflite::{support.int8_registration}()" if all_int8 else ""
        if all_int8 and support.fast:  # this firmware's kernels first, for the shapes they cover
            argument = f"{support.fast}({argument})"
        calls.append(f"resolver.{support.method}({argument})")
    return calls


def _labels(tflite: Path, count: int, labels: list[str] | None) -> list[str]:
    if labels is None:
        labels_file = tflite.with_name("labels.txt")
        if labels_file.is_file():
            labels = read_lines(labels_file)
        elif count == 2:
            labels = list(DEFAULT_LABELS)
        else:
            raise UserError(f"the model has {count} outputs: name them with --labels")
    if len(labels) != count:
        raise UserError(f"{len(labels)} labels given for a model with {count} outputs")
    if any(not label or '"' in label or "\\" in label or not label.isprintable() for label in labels):
        raise UserError("labels must be non-empty and free of quotes, backslashes and control characters")
    return labels


def _board(name: str | None):
    """The board a model is generated for: `name`, or the registry's default target."""
    from vwwtorch.firmware.boards import default_target, get_board

    return get_board(name) if name else default_target()


# --- the command ------------------------------------------------------------------------------

def build_settings(tflite: Path, data: bytes, info, *, board: str, labels: list[str] | None,
                   person_index: int | None, threshold: float, arena_size: int | None,
                   memory=None) -> ModelSettings:
    from vwwtorch.contract.tflm import measure_arena
    from vwwtorch.firmware.codegen.arena import arena_with_margin
    from vwwtorch.firmware.boards import check_fits
    from vwwtorch.firmware.codegen.ops import kernel_sources

    board_spec = _board(board)
    _check_int8_io(info, str(tflite))
    _check_ops(info, str(tflite))
    inp, out = info.inputs[0], info.outputs[0]
    count = math.prod(out.shape) if out.shape else 1
    if count < 2:
        raise UserError(f"{tflite}: output has {count} value; expected one score per label (>= 2)")
    names = _labels(tflite, count, labels)
    if person_index is None:
        person_index = names.index("person") if "person" in names else 1
    if not 0 <= person_index < count:
        raise UserError(f"--person-index {person_index} is outside 0..{count - 1}")
    no_person = next(i for i in range(count) if i != person_index)
    if not 0.0 <= threshold <= 1.0:
        raise UserError("--threshold is a probability between 0 and 1")
    threshold_q = math.ceil(threshold / out.scale + out.zero_point - 1e-9)
    # A memory-planned model runs ops only this firmware has: its arena is the plan's estimate.
    measured = memory.chosen.arena_estimate if memory is not None else measure_arena(data)
    if arena_size is None:
        arena_size = arena_with_margin(measured)
    elif arena_size < measured:
        raise UserError(f"--arena-size {arena_size} is below the {measured} B the model needs")
    check_fits(board_spec, len(data), arena_size)
    settings = ModelSettings(
        source=printable(tflite.name), sha256=hashlib.sha256(data).hexdigest(), model_bytes=len(data),
        rows=inp.shape[1], cols=inp.shape[2], channels=inp.shape[3], labels=names,
        person_index=person_index, no_person_index=no_person,
        input_scale=inp.scale, input_zero_point=inp.zero_point,
        byte_to_input=byte_to_int8(inp.scale, inp.zero_point, str(tflite)).tolist(),
        output_scale=out.scale, output_zero_point=out.zero_point,
        threshold=threshold, threshold_int8=max(-128, min(127, threshold_q)),
        arena_measured=measured, arena_size=arena_size, ops=info.op_names,
        resolver=_resolver_calls(info), kernel_sources=kernel_sources(info.op_names),
        board_checked=board_spec.name, memory_plan=memory.summary() if memory is not None else None)
    return settings


def check_output(out_dir: str | Path, overwrite: bool = True) -> Path:
    """The checked output folder: empty, new, or an earlier `firmware generate` folder."""
    target = check_folder(out_dir, overwrite=True)
    if target.exists() and any(target.iterdir()):
        if not (target / "model_info.json").exists():
            raise UserError(f"{target} exists and is not a `firmware generate` folder; choose another --out")
        if not overwrite:
            raise UserError(f"{target} exists (pass --overwrite to replace it)")
    return target


def write_sources(out_dir: Path, data: bytes, settings: ModelSettings, overwrite: bool = True,
                  memory=None, packing=None) -> Path:
    """Write every file into a staging folder beside `out_dir`, then swap it in."""
    from vwwtorch.firmware.codegen.packed_weights import Packing, render as render_packed

    target = check_output(out_dir, overwrite)
    files = {}
    files["model_data.h"], files["model_data.cc"] = render_model_data(data, settings.source)
    files["model_settings.h"], files["model_settings.cc"] = render_settings(settings)
    files["model_ops.h"], files["model_ops.cc"] = render_ops(settings)
    files["model_kernels.cc"] = render_packed(packing if packing is not None else Packing(0), GENERATED_BY)
    files["model.mk"] = render_makefile(settings)
    files["model_info.json"] = json.dumps(asdict(settings), indent=2) + "\n"
    with staged_folder(target, checked=True) as staging:
        for name, text in files.items():
            (staging / name).write_text(text, encoding="utf-8")
        if memory is not None:
            from vwwtorch.firmware.codegen.memory_plan.chart import layer_rows, save_chart

            report = {**memory.summary(), "layers": layer_rows(memory)}
            (staging / MEMORY_REPORT).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
            save_chart(memory, staging / MEMORY_CHART)
            (staging / MEMORY_MODEL).write_bytes(data)
    return target


def packed_weights_budget(board_name: str | None, model_bytes: int, flash_budget: int | None) -> int | None:
    """Bytes the packed weights may take: the flash budget (default: the board's flash) less the
    model and the board's estimate for the code; None when the board sets no limit."""
    board = _board(board_name)
    limit = flash_budget if flash_budget is not None else board.flash_bytes
    if limit is None:
        return None
    if flash_budget is not None and board.flash_bytes is not None and flash_budget > board.flash_bytes:
        raise UserError(f"--flash-budget {flash_budget // 1024} KiB is more than the {board.flash_bytes:,} B of "
                        f"flash {board.name} can use")
    return max(0, limit - model_bytes - board.code_flash_estimate)


def generate(tflite: str | Path, out_dir: str | Path, *, board: str | None = None,
             labels: list[str] | None = None, person_index: int | None = None,
             threshold: float = 0.5, arena_size: int | None = None,
             memory_budget: int | None = None, stream_layers: int | None = None,
             flash_budget: int | None = None, overwrite: bool = True) -> ModelSettings:
    """`memory_budget` (bytes): rewrite the model's convolutions for this firmware's chain op
    (firmware/codegen/memory_plan/) so that the arena fits, bit-exactly, and report per layer;
    `stream_layers`: the same rewrite with exactly that many leading layers row by row.
    `flash_budget` (bytes, default: the board's flash): what the image may take with the
    convolutions' weights packed for the Cortex-M4 kernels (packed_weights.py)."""
    from vwwtorch.contract.tflite import load_tflite, read_tflite

    tflite = Path(tflite)
    check_output(out_dir, overwrite)
    data, info = load_tflite(tflite)
    memory = None
    if memory_budget is not None or stream_layers is not None:
        from vwwtorch.firmware.codegen.memory_plan.budget import plan_for_budget

        _check_int8_io(info, str(tflite))
        memory = plan_for_budget(data, memory_budget, str(tflite), streamed=stream_layers)
        data = memory.chosen.data
        info = read_tflite(data, str(tflite))
    settings = build_settings(tflite, data, info, board=board, labels=labels,
                              person_index=person_index, threshold=threshold, arena_size=arena_size,
                              memory=memory)
    from vwwtorch.firmware.codegen.packed_weights import pack_model

    packing = pack_model(data, packed_weights_budget(board, len(data), flash_budget))
    settings.packed_weights = packing.summary()
    write_sources(Path(out_dir), data, settings, overwrite=overwrite, memory=memory, packing=packing)
    return settings


def load_settings(model_dir: str | Path) -> ModelSettings:
    return load_record(Path(model_dir) / "model_info.json", ModelSettings, remedy="generate the folder again",
                       missing=f"{model_dir} is not a `vwwtorch firmware generate` folder (no model_info.json)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tflite", required=True, help="int8 model (e.g. model_int8.tflite)")
    parser.add_argument("--out", required=True, help="folder for the generated sources")
    from vwwtorch.firmware.boards import BOARDS, default_target

    parser.add_argument("--board", default=default_target().name, metavar="BOARD",
                        help=f"board whose flash and RAM the model must fit ({', '.join(BOARDS)})")
    parser.add_argument("--labels", help="comma-separated label names, in output order "
                        "(default: labels.txt next to the model, else no_person,person)")
    parser.add_argument("--person-index", type=int,
                        help="output index of the person score (default: the 'person' label, else 1)")
    parser.add_argument("--threshold", type=float, default=default(generate, "threshold"),
                        help="person when the dequantized person score reaches this")
    parser.add_argument("--arena-size", type=int,
                        help="tensor arena bytes (default: measured + margin, see firmware/codegen/arena.py)")
    add_memory_arguments(parser)
    add_flash_arguments(parser)


def add_flash_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--flash-budget", type=_kibibytes, metavar="KB",
                        help="flash the image may take, in KiB (default: all the board's flash): within "
                        "it, the 1x1 and first-layer convolutions' weights are also stored widened to 16 "
                        "bits for the Cortex-M4 kernels (2 B per weight), and the constants of a streamed "
                        "chain's depthwise layers (40 B per channel), the layers with the most MACs per byte "
                        "first; the rest run unpacked, with the same scores")


def add_memory_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--memory-budget", type=_kibibytes, metavar="KB",
                        help="fit the tensor arena into KB KiB (1 KiB = 1024 B): convolutions keep their "
                        "requantization tables in flash and the first layers run row by row, as few as fit; "
                        "bit-exact, a few percent more instructions at most; writes memory_plan.json/.png")
    parser.add_argument("--stream-layers", type=int, metavar="N",
                        help="the same rewrite with exactly the first N layers row by row (0: tables in "
                        "flash only), to pick the trade-off by hand")


def _kibibytes(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of KiB") from None
    if not 1 <= value <= 1 << 20:
        raise argparse.ArgumentTypeError(f"{text} KiB is not a budget (1 to 1048576)")
    return int(value * 1024)


def run_command(args) -> int:
    labels = [x.strip() for x in args.labels.split(",")] if args.labels else None
    s = generate(args.tflite, args.out, board=args.board, labels=labels,
                 person_index=args.person_index, threshold=args.threshold,
                 arena_size=args.arena_size, memory_budget=args.memory_budget,
                 stream_layers=args.stream_layers, flash_budget=args.flash_budget)
    print(f"wrote firmware model sources to {printable(args.out)}")
    print(f"  input {s.rows}x{s.cols}x{s.channels} int8, labels {', '.join(s.labels)} "
          f"(person = {s.person_index}, threshold {s.threshold:g} -> int8 {s.threshold_int8})")
    print(f"  ops ({len(s.ops)}): {', '.join(s.ops)}")
    print(f"  model {s.model_bytes:,} B, arena {s.arena_size:,} B "
          f"({'estimated' if s.memory_plan else 'measured'} {s.arena_measured:,} B + margin); "
          f"fits {s.board_checked}")
    if s.memory_plan:
        m = s.memory_plan
        budget = f"budget {m['budget']:,} B" if m["budget"] else "no budget"
        print(f"  memory plan: arena {m['arena_before_with_margin']:,} B -> {s.arena_size:,} B ({budget}); "
              f"peak live activations {m['head_before']:,} B -> {m['head_after']:,} B; "
              f"first {m['streamed_layers']} layers row by row; requantization tables in flash")
        print(f"  per layer: {Path(args.out) / MEMORY_REPORT}, {Path(args.out) / MEMORY_CHART}")
    packed = s.packed_weights
    if packed and (packed["layers"] or packed["left_out"]):
        left_out = f"; {len(packed['left_out'])} left out by the flash budget" if packed["left_out"] else ""
        print(f"  packed weights: {len(packed['layers'])} convolutions, {packed['bytes']:,} B of flash{left_out}")
    return 0
