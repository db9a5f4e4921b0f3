"""A standing fuzz test: real model files and Wake Vision inputs, mutated by Hypothesis, through the
commands that read them. Every mutation must end in exit 0, 1 (a gate) or 2 with exactly one
`vwwtorch: error:` line -- never a traceback, never an exception out of `main`, never more memory than
`MEMORY_HEADROOM` above what the process held before the command.

Inputs, made here in their real formats:
- `.tflite`: a small int8 classifier (conv, depthwise + add, pools, dense, softmax) and an int8
  MobileNetV1 of MLPerf's structure, both from the TFLite converter; mutated by byte flips, truncation
  and extension, and field by field through the flatbuffer object API (tensor shapes, types, buffers,
  scales, zero points, quantized dimensions, operator indices and options, graph inputs and outputs);
  run through `predict --tflite` (LiteRT and the TFLM runtime), `firmware generate` and `import`;
- Keras `.h5`: MLPerf's MobileNetV1 structure saved by tf_keras; its model_config mutated key by key
  and its weight datasets replaced, deleted or retyped; run through `import`;
- Wake Vision: metadata CSVs, a `.tar.gz` archive and a Hugging Face style parquet shard, mutated by
  bytes, by cells and (archives) by members; run through `data wake-vision`.

The commands run in this process (fast). `VWWTORCH_FUZZ=long` runs many more examples, with fresh
random draws, for a local session; CI runs the derandomized default. Figures: BENCHMARKS.md.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import shutil
import tarfile
import tempfile
import traceback
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import model_mutations as mm
from vwwtorch.cli import main

LONG = os.environ.get("VWWTORCH_FUZZ") == "long"
EXAMPLES = int(os.environ.get("VWWTORCH_FUZZ_EXAMPLES", 2000 if LONG else 150))  # per test below
MEMORY_HEADROOM = 2 << 30         # a command may hold this much more data memory than before it ran

settings.register_profile("vwwtorch-fuzz", deadline=None, derandomize=not LONG, database=None,
                          max_examples=EXAMPLES, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                 HealthCheck.function_scoped_fixture])
FUZZ = settings.get_profile("vwwtorch-fuzz")


# --- the inputs ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """The unmutated files every example starts from."""
    import wake_vision_files as wvf
    from firmware_models import write_models
    from PIL import Image
    from test_foreign import build_keras_mobilenet

    root = tmp_path_factory.mktemp("fuzz")
    tiny = write_models(root / "models", only=("tiny_int8",))["tiny_int8"]
    h5 = build_keras_mobilenet(root / "mobilenet.h5")
    mobilenet = root / "mobilenet_int8.tflite"
    mobilenet.write_bytes(int8_from_keras(h5))
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(root / "gray.png")
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(root / "rgb.png")

    splits = wvf.make_splits(seed=5, train=6, val=6, test=0)
    del splits["test"]
    wake = root / "wake_vision"
    csvs = wvf.write_csvs(wake, splits)
    rows = [r for s in splits.values() for r in s.rows]
    archive = wvf.write_archives(wake, [[(r.filename, wvf.member_bytes(r)) for r in rows]])[0]
    parquet = wvf.write_parquet(wake / "hf" / "validation-00000.parquet", splits["val"].rows,
                                wvf.EVAL_HEADER[1:])
    return Originals({"tiny": tiny.read_bytes(), "mobilenet": mobilenet.read_bytes(), "h5": h5,
                      "gray": root / "gray.png", "rgb": root / "rgb.png", "csvs": csvs, "archive": archive,
                      "parquet": parquet, "rows": rows})


class Originals(dict):
    """The inputs, shown by name in a failing example's report (not megabytes of model bytes)."""

    def __repr__(self) -> str:
        return "originals"


def int8_from_keras(h5: Path) -> bytes:
    """MLPerf's int8 conversion of a Keras MobileNetV1: inputs in [0, 1] (scale 1/255, zero point -128)."""
    import tensorflow as tf
    import tf_keras
    from test_foreign import RESOLUTION

    rng = np.random.default_rng(0)

    def representative():
        for _ in range(8):
            batch = rng.uniform(0, 1, (1, RESOLUTION, RESOLUTION, 3)).astype(np.float32)
            batch.flat[:2] = 0.0, 1.0  # the whole byte range, exactly
            yield [batch]

    converter = tf.lite.TFLiteConverter.from_keras_model(tf_keras.models.load_model(h5, compile=False))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


# --- running one mutation -----------------------------------------------------------------------

def _data_memory() -> int:
    """VmData of this process: the private writable memory RLIMIT_DATA counts."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmData:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmData in /proc/self/status")


@contextlib.contextmanager
def memory_bound():
    """Allocations beyond MEMORY_HEADROOM fail (MemoryError in Python, an allocation failure in C)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    resource.setrlimit(resource.RLIMIT_DATA, (_data_memory() + MEMORY_HEADROOM, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


@pytest.fixture(autouse=True, scope="module")
def short_runtime_timeouts():
    """A mutated stride or shape can make a kernel run for hours; the child running it is given seconds
    here (a one-line error all the same)."""
    from vwwtorch.plumbing import isolation

    saved, isolation.TIMEOUT_SCALE = isolation.TIMEOUT_SCALE, 0.2
    yield
    isolation.TIMEOUT_SCALE = saved


def run(argv: list, what: str) -> int:
    """`vwwtorch argv` in this process: its exit code, after checking how it ended."""
    from vwwtorch.plumbing.native_output import captured_native_output

    err = io.StringIO()
    failure = None
    with warnings.catch_warnings(record=True) as caught, captured_native_output() as native:
        warnings.simplefilter("default")
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), memory_bound():
                code = main([os.fsdecode(a) if isinstance(a, (Path, bytes)) else str(a) for a in argv])
        except BaseException:  # noqa: BLE001 - anything out of main is the finding
            failure = traceback.format_exc()
    text = err.getvalue() + "".join(native) + "".join(f"{w.category.__name__}: {w.message}\n" for w in caught)
    assert failure is None, f"{what}: an exception escaped main:\n{failure}"
    lines = [line for line in text.splitlines() if line.strip()]
    assert code in (0, 1, 2), f"{what}: exit {code}\n{text[-3000:]}"
    assert "Traceback" not in text, f"{what}:\n{text[-3000:]}"
    if code:
        assert len(lines) == 1 and lines[0].startswith("vwwtorch: error:"), f"{what}: exit {code}\n{text[-3000:]}"
    else:
        assert not lines, f"{what}: exit 0 with stderr:\n{text[-3000:]}"
    return code


# --- .tflite ------------------------------------------------------------------------------------

def byte_mutations(size: int):
    """(description, mutate(bytes) -> bytes): flips, truncation, extension; flips favour the flatbuffer's
    tables at both ends of the file as much as the weights in between."""
    position = st.one_of(st.integers(0, min(size, 1024) - 1), st.integers(max(0, size - 2048), size - 1),
                         st.integers(0, size - 1))
    flips = st.lists(st.tuples(position, st.integers(0, 255)), min_size=1, max_size=8)
    return st.one_of(
        flips.map(lambda f: (f"flip {f}", lambda data: _flip(data, f))),
        st.integers(0, size - 1).map(lambda n: (f"truncate to {n}", lambda data: data[:n])),
        st.binary(min_size=1, max_size=64).map(lambda b: (f"extend by {b!r}", lambda data: data + b)),
    )


def _flip(data: bytes, flips) -> bytes:
    out = bytearray(data)
    for position, value in flips:
        out[position] = value
    return bytes(out)


INT32 = st.one_of(st.sampled_from([-1, 0, 1, 2, 3, 7, 255, 256, 1 << 16, 1 << 30, -(1 << 31), (1 << 31) - 1]),
                  st.integers(-(1 << 31), (1 << 31) - 1))
SCALES = st.one_of(st.sampled_from([0.0, -1.0, float("nan"), float("inf"), 1e-45, 1e30]),
                   st.floats(allow_nan=True, allow_infinity=True, width=32))


def field_edit(data: st.DataObject, model) -> str:
    """One field of `model` (a schema object tree) set to a drawn value; returns what was done."""
    graph = model.subgraphs[0]
    tensors, ops = graph.tensors, graph.operators
    kind = data.draw(st.sampled_from(["shape", "dim", "type", "buffer", "scale", "zero_point", "qdim",
                                      "op_input", "op_output", "opcode", "options", "graph_io", "buffer_data",
                                      "drop_quantization"]))
    t = data.draw(st.integers(0, len(tensors) - 1))
    tensor = tensors[t]
    o = data.draw(st.integers(0, len(ops) - 1))
    op = ops[o]
    if kind == "shape":
        value = data.draw(st.lists(st.integers(-2, 1 << 17), max_size=5))
        tensor.shape = np.asarray(value, dtype=np.int32)
    elif kind == "dim" and tensor.shape is not None and len(tensor.shape):
        value = data.draw(INT32)
        tensor.shape[data.draw(st.integers(0, len(tensor.shape) - 1))] = value
    elif kind == "type":
        value = data.draw(st.integers(-128, 127))
        tensor.type = value
    elif kind == "buffer":
        value = data.draw(st.one_of(st.integers(0, len(model.buffers) + 2), INT32.filter(lambda v: v >= 0)))
        tensor.buffer = value
    elif kind in ("scale", "zero_point", "qdim", "drop_quantization") and tensor.quantization is not None \
            and tensor.quantization.scale is not None and len(tensor.quantization.scale):
        q = tensor.quantization
        if kind == "scale":
            value = data.draw(SCALES)
            q.scale[data.draw(st.integers(0, len(q.scale) - 1))] = value
        elif kind == "zero_point":
            value = data.draw(st.integers(-(1 << 40), 1 << 40))
            q.zeroPoint[data.draw(st.integers(0, len(q.zeroPoint) - 1))] = value
        elif kind == "qdim":
            value = data.draw(st.integers(-5, 10))
            q.quantizedDimension = value
        else:
            value = None
            tensor.quantization = None
    elif kind in ("op_input", "op_output"):
        ends = op.inputs if kind == "op_input" else op.outputs
        value = data.draw(st.integers(-3, len(tensors) + 3))
        if ends is not None and len(ends):
            ends[data.draw(st.integers(0, len(ends) - 1))] = value
    elif kind == "opcode":
        value = data.draw(st.integers(-1, len(model.operatorCodes) + 2))
        op.opcodeIndex = value
    elif kind == "options" and op.builtinOptions is not None:
        names = [n for n in vars(op.builtinOptions) if not n.startswith("_")]
        if not names:
            return f"op {o}: no options"
        field = data.draw(st.sampled_from(sorted(names)))
        value = data.draw(st.integers(-3, 300))
        setattr(op.builtinOptions, field, value)
        return f"op {o} option {field} = {value}"
    elif kind == "graph_io":
        ends = data.draw(st.sampled_from(["inputs", "outputs"]))
        value = data.draw(st.lists(st.integers(-2, len(tensors) + 2), max_size=3))
        setattr(graph, ends, np.asarray(value, dtype=np.int32))
        return f"graph {ends} = {value}"
    elif kind == "buffer_data":
        b = data.draw(st.integers(0, len(model.buffers) - 1))
        buffer = model.buffers[b]
        if buffer.data is None:
            return f"buffer {b}: empty"
        cut = data.draw(st.integers(0, len(buffer.data)))
        buffer.data = buffer.data[:cut]
        return f"buffer {b} cut to {cut} bytes"
    else:
        return f"{kind}: not applicable to tensor {t}"
    return f"{kind} of tensor {t} / op {o} = {value!r}"


def tflite_commands(model: Path, image: Path, work: Path, mobilenet: bool) -> list[list]:
    commands = [["predict", "--tflite", model, image],
                ["firmware", "generate", "--tflite", model, "--out", work / "fw"]]
    if mobilenet:
        commands.append(["import", model, "--out", work / "m.ckpt"])
    return commands


def check_tflite(data: bytes, what: str, originals: dict, mobilenet: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = work / "model.tflite"
        model.write_bytes(data)
        image = originals["rgb" if mobilenet else "gray"]
        for argv in tflite_commands(model, image, work, mobilenet):
            run(argv, f"{what} | {' '.join(map(str, argv[:2]))}")


@pytest.mark.parametrize("which", ["tiny", "mobilenet"])
@FUZZ
@given(data=st.data())
def test_tflite_bytes(originals, which, data):
    original = originals[which]
    what, mutate = data.draw(byte_mutations(len(original)))
    check_tflite(mutate(original), f"{which}: {what}", originals, which == "mobilenet")


@pytest.mark.parametrize("which", ["tiny", "mobilenet"])
@FUZZ
@given(data=st.data())
def test_tflite_fields(originals, which, data):
    from vwwtorch.contract.tflite import pack, unpack

    model = unpack(originals[which])
    edits = [field_edit(data, model) for _ in range(data.draw(st.integers(1, 3)))]
    try:
        mutated = pack(model, size_hint=len(originals[which]))
    except Exception:  # noqa: BLE001 - a value the flatbuffer writer itself cannot hold: nothing to test
        return
    check_tflite(mutated, f"{which}: {edits}", originals, which == "mobilenet")


# --- Keras .h5 ----------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 40), 1 << 40) | st.floats(allow_nan=False, width=32)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6)


def h5_edit(data: st.DataObject, path: Path) -> str:
    """One drawn edit of the file; an edit that an earlier one made impossible (the config is no JSON
    any more, a weight is gone) is skipped."""
    try:
        return _h5_edit(data, path)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        return f"(edit skipped: {type(exc).__name__})"


def _h5_edit(data: st.DataObject, path: Path) -> str:
    import h5py

    kind = data.draw(st.sampled_from(["config_value", "config_delete", "config_layers", "config_text",
                                      "dataset_replace", "dataset_delete", "weight_names"]))
    config = mm.h5_config(path)
    layers = mm.h5_layers(config)
    number = data.draw(st.integers(0, len(layers) - 1))
    layer = layers[number]
    if kind == "config_value":
        key = data.draw(st.sampled_from(sorted(layer["config"]) + ["class_name", "inbound_nodes"]))
        value = data.draw(JSON_VALUES)
        (layer if key in ("class_name", "inbound_nodes") else layer["config"])[key] = value
        mm.set_h5_config(path, config)
        return f"layer {number} {key} = {value!r}"
    if kind == "config_delete":
        key = data.draw(st.sampled_from(sorted(layer) + sorted(layer["config"])))
        (layer if key in layer else layer["config"]).pop(key)
        mm.set_h5_config(path, config)
        return f"layer {number}: {key} deleted"
    if kind == "config_layers":
        other = data.draw(st.integers(0, len(layers) - 1))
        action = data.draw(st.sampled_from(["swap", "drop", "repeat"]))
        if action == "swap":
            layers[number], layers[other] = layers[other], layers[number]
        elif action == "drop":
            layers.pop(number)
        else:
            layers.insert(other, json.loads(json.dumps(layer)))
        mm.set_h5_config(path, config)
        return f"layers {action} {number} {other}"
    if kind == "config_text":
        text = json.dumps(config)
        cut = data.draw(st.integers(0, len(text)))
        mm.set_h5_config(path, data.draw(st.sampled_from([text[:cut], text[cut:] + text[:cut], "", "[]", "null"])))
        return f"model_config rewritten around {cut}"
    with h5py.File(path, "r+") as f:
        groups = [name for name in f["model_weights"] if len(f["model_weights"][name].attrs.get("weight_names", []))]
        name = data.draw(st.sampled_from(sorted(groups)))
        group = f["model_weights"][name]
        weights = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs["weight_names"]]
        weight = data.draw(st.sampled_from(weights))
        if kind == "weight_names":
            value = data.draw(st.lists(st.text(max_size=10), max_size=4))
            group.attrs["weight_names"] = np.asarray([v.encode() for v in value], dtype="S16") if value else []
            return f"{name} weight_names = {value!r}"
        del group[weight]
        if kind == "dataset_delete":
            return f"{name}/{weight} deleted"
        shape = tuple(data.draw(st.lists(st.integers(0, 40), max_size=4)))
        dtype = data.draw(st.sampled_from(["f4", "f8", "i4", "u1", "S3"]))
        group[weight] = np.zeros(shape, dtype=dtype)
        return f"{name}/{weight} = zeros{shape} {dtype}"


@FUZZ
@given(data=st.data())
def test_keras_h5(originals, data):
    with tempfile.TemporaryDirectory() as tmp:
        path = mm.copy_h5(originals["h5"], Path(tmp) / "model.h5")
        edits = [h5_edit(data, path) for _ in range(data.draw(st.integers(1, 3)))]
        run(["import", path, "--out", Path(tmp) / "m.ckpt"], f"h5: {edits}")


# --- Wake Vision --------------------------------------------------------------------------------

CELLS = st.one_of(st.sampled_from(["", "-1", "2", "1.5", "yes", "\x1b[31mred", '"', ",", "\n", "0" * 40]),
                  st.text(max_size=12))


def wake_vision_edit(data: st.DataObject, originals: dict, work: Path) -> tuple[str, list]:
    """Copies of the inputs with one mutated; returns (what, argv)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import wake_vision_files as wvf

    csvs = {split: Path(shutil.copy(path, work / path.name)) for split, path in originals["csvs"].items()}
    archive = Path(shutil.copy(originals["archive"], work / originals["archive"].name))
    parquet = Path(shutil.copy(originals["parquet"], work / originals["parquet"].name))
    kind = data.draw(st.sampled_from(["csv_bytes", "csv_cell", "archive_bytes", "archive_members",
                                      "parquet_bytes", "parquet_columns"]))
    from_csv = ["--metadata", *csvs.values(), "--images", archive]
    argv = ["data", "wake-vision", "--out", work / "out", "--workers", 1]
    if kind in ("csv_bytes", "archive_bytes", "parquet_bytes"):
        target = {"csv_bytes": data.draw(st.sampled_from(sorted(csvs.values()))), "archive_bytes": archive,
                  "parquet_bytes": parquet}[kind]
        original = target.read_bytes()
        what, mutate = data.draw(byte_mutations(len(original)))
        target.write_bytes(mutate(original))
        images = ["--images", parquet] if kind == "parquet_bytes" else from_csv
        return f"{target.name}: {what}", argv + images
    if kind == "csv_cell":
        path = data.draw(st.sampled_from(sorted(csvs.values())))
        lines = path.read_text().splitlines()
        row = data.draw(st.integers(0, len(lines) - 1))
        cells = lines[row].split(",")
        column = data.draw(st.integers(0, len(cells) - 1))
        cells[column] = data.draw(CELLS)
        lines[row] = ",".join(cells)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogateescape")
        return f"{path.name} row {row} column {column} = {cells[column]!r}", argv + from_csv
    if kind == "archive_members":
        rows = originals["rows"]
        entries = []
        for row in rows:
            name = data.draw(st.one_of(st.just(row.filename), st.sampled_from(
                ["../" + row.filename, "/" + row.filename, "", ".", "a/" * 30 + row.filename, row.filename + "/"]),
                st.text(min_size=1, max_size=20)))
            content = data.draw(st.one_of(st.just(wvf.member_bytes(row)), st.binary(max_size=64)))
            member_type = data.draw(st.sampled_from([tarfile.REGTYPE, tarfile.REGTYPE, tarfile.SYMTYPE,
                                                     tarfile.DIRTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE]))
            entries.append((name, content, member_type))
        with tarfile.open(archive, "w:gz") as out:
            for name, content, member_type in entries:
                info = tarfile.TarInfo(name)
                info.type = member_type
                info.linkname = "/etc/passwd" if member_type in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
                info.size = len(content) if member_type == tarfile.REGTYPE else 0
                out.addfile(info, io.BytesIO(content) if member_type == tarfile.REGTYPE else None)
        return f"archive members {[(n, t) for n, _, t in entries]}", argv + from_csv
    table = pq.read_table(parquet)
    column = data.draw(st.sampled_from(table.column_names))
    variant = data.draw(st.sampled_from(["drop", "nulls", "binary", "strings", "ints"]))
    n = table.num_rows
    replacement = {
        "nulls": pa.nulls(n),
        "binary": pa.array([data.draw(st.binary(max_size=32)) for _ in range(n)], pa.binary()),
        "strings": pa.array([data.draw(CELLS) for _ in range(n)], pa.string()),
        "ints": pa.array([data.draw(st.integers(-(1 << 62), 1 << 62)) for _ in range(n)], pa.int64()),
    }.get(variant)
    index = table.column_names.index(column)
    table = table.remove_column(index) if variant == "drop" else table.set_column(index, column, replacement)
    pq.write_table(table, parquet)
    return f"parquet column {column}: {variant}", argv + ["--images", parquet]


@FUZZ
@given(data=st.data())
def test_wake_vision(originals, data):
    with tempfile.TemporaryDirectory() as tmp:
        what, argv = wake_vision_edit(data, originals, Path(tmp))
        run(argv, f"wake vision: {what}")
