"""The one reader of `.tflite` files: tensors, quantization and operators, without running anything,
and the one writer that packs a modified model back.

Parsed with the flatbuffer schema that ships with the `tflite_micro` package (no TensorFlow import).
The gates and passes (bridge), the importers (training), firmware generation and the runtimes'
callers all read models through here, and so all of them get its one validator (`check_model`):
every index in range, every shape consistent with its buffer, every quantization scale finite and
positive, every zero point in its type's range, no tensor above `MAX_TENSOR_BYTES`. A model file it
refuses is refused in one line before any gate or generation runs, so it can never be VERIFIED;
a file above `MAX_MODEL_BYTES` is refused before it is read. The schema asks for constant buffers aligned to 16 bytes
(`force_align: 16`), which the generated Python code ignores, so `pack` aligns them, as the TFLite
converter does.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from vwwtorch.plumbing.errors import UserError
from vwwtorch.plumbing.names import printable

WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
FILE_IDENTIFIER = b"TFL3"
BUFFER_ALIGNMENT = 16
NUMPY_TYPES = {"INT8": "<i1", "UINT8": "<u1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FLOAT32": "<f4"}
ITEM_BYTES = {"FLOAT32": 4, "FLOAT16": 2, "FLOAT64": 8, "INT32": 4, "UINT8": 1, "INT64": 8, "BOOL": 1,
              "INT16": 2, "COMPLEX64": 8, "INT8": 1, "UINT64": 8, "UINT32": 4, "UINT16": 2, "COMPLEX128": 16}
ZERO_POINT_RANGES = {"INT8": (-128, 127), "UINT8": (0, 255), "INT16": (-32768, 32767)}
# A microcontroller model is kilobytes to a few megabytes; a float32 MobileNetV1-1.0 is 17 MB.
MAX_MODEL_BYTES = 256 << 20
# The arena the TFLM runtime measures a model in (`vwwtorch.contract.tflm.MEASURE_ARENA`): no tensor
# of a model that runs there is larger, and a 98304x98304 input would ask for gigabytes.
MAX_TENSOR_BYTES = 64 << 20


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str                   # schema name: INT8, FLOAT32, ...
    scales: tuple[float, ...]    # empty when not quantized; one per channel when per-channel
    zero_points: tuple[int, ...]
    quantized_dimension: int = 0
    raw: bytes | None = field(default=None, repr=False, compare=False)  # a constant's buffer

    def values(self):
        """A constant tensor's values as a numpy array of its shape (None when it has no data)."""
        import numpy as np

        if not self.raw or self.dtype not in NUMPY_TYPES:
            return None
        return np.frombuffer(self.raw, dtype=NUMPY_TYPES[self.dtype]).reshape(self.shape)

    @property
    def scale(self) -> float | None:
        """The per-tensor scale, None when absent or per-channel."""
        return self.scales[0] if len(self.scales) == 1 else None

    @property
    def zero_point(self) -> int | None:
        return self.zero_points[0] if len(self.zero_points) == 1 else (0 if len(self.scales) == 1 else None)


@dataclass(frozen=True)
class Operator:
    op: str                                # builtin name (CONV_2D) or "CUSTOM:<code>"
    inputs: tuple[Tensor | None, ...]      # None for an omitted optional input
    outputs: tuple[Tensor, ...]
    options: object = field(default=None, repr=False, compare=False)  # the schema's *OptionsT
    custom_options: bytes | None = field(default=None, repr=False, compare=False)  # a custom op's

    @property
    def input_types(self) -> tuple[str | None, ...]:
        return tuple(None if t is None else t.dtype for t in self.inputs)

    @property
    def output_types(self) -> tuple[str, ...]:
        return tuple(t.dtype for t in self.outputs)


@dataclass
class ModelFile:
    size: int
    inputs: list[Tensor]
    outputs: list[Tensor]
    operators: list[Operator] = field(default_factory=list)   # every subgraph, in graph order
    subgraphs: int = 1

    @property
    def input(self) -> Tensor:
        return self.inputs[0]

    @property
    def output(self) -> Tensor:
        return self.outputs[0]

    @property
    def ops(self) -> list[str]:
        """Operator names in graph order."""
        return [o.op for o in self.operators]

    @property
    def op_names(self) -> list[str]:
        """The distinct operator names, sorted."""
        return sorted(set(self.ops))

    @property
    def op_histogram(self) -> dict[str, int]:
        return dict(sorted(Counter(self.ops).items()))

    @property
    def weights(self) -> list[tuple[str, Tensor]]:
        """(op, weight tensor) of every convolution and fully connected layer."""
        return [(o.op, o.inputs[1]) for o in self.operators
                if o.op in WEIGHTED_OPS and len(o.inputs) > 1 and o.inputs[1] is not None]

    @property
    def softmax_inputs(self) -> list[Tensor]:
        return [o.inputs[0] for o in self.operators if o.op == "SOFTMAX" and o.inputs and o.inputs[0] is not None]

    @property
    def is_int8(self) -> bool:
        return self.input.dtype == "INT8" and self.output.dtype == "INT8"

    def require_classifier(self, source: str) -> "ModelFile":
        """One subgraph, one input and one output, or a one-line UserError."""
        if self.subgraphs != 1:
            raise UserError(f"{source} has {self.subgraphs} subgraphs; a classifier has one")
        if len(self.inputs) != 1 or len(self.outputs) != 1:
            raise UserError(f"{source} has {len(self.inputs)} inputs and {len(self.outputs)} outputs; "
                            "a classifier has one of each")
        return self


def schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated

    return schema_py_generated


def _names(enum_class) -> dict[int, str]:
    return {value: name for name, value in vars(enum_class).items()
            if not name.startswith("_") and isinstance(value, int)}


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value or "")


def unpack(data: bytes, source: str = "model"):
    """The flatbuffer as the schema's object tree (`ModelT`), or a one-line UserError."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise UserError(f"{source} is not a TFLite model (no TFL3 identifier)")
    try:
        return schema().ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as exc:  # a corrupt flatbuffer can fail anywhere in the generated code
        raise UserError(f"{source} is not a readable TFLite model ({type(exc).__name__})") from None


def operator_names(model) -> list[str]:
    """The name of each operator code of a schema object tree (`unpack`), by code index."""
    s = schema()
    op_names = _names(s.BuiltinOperator)
    codes = []
    for code in model.operatorCodes or []:
        # Newer converters fill builtin_code; older ones only the deprecated 8-bit field.
        builtin = max(int(code.builtinCode or 0), int(code.deprecatedBuiltinCode or 0))
        codes.append(f"CUSTOM:{_text(code.customCode)}" if builtin == s.BuiltinOperator.CUSTOM
                     else op_names.get(builtin, f"BUILTIN_{builtin}"))
    return codes


def _tensor_label(index: int, tensor) -> str:
    return f"tensor {index} ({printable(_text(tensor.name)) or 'unnamed'})"


def _check_quantization(tensor, shape: list[int], dtype: str, what: str) -> None:
    import numpy as np

    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return
    scales = np.asarray(q.scale, dtype=np.float64).reshape(-1)
    bad = scales[~(np.isfinite(scales) & (scales > 0))]
    if bad.size:
        raise UserError(f"{what} has quantization scale {bad[0]:g}; every scale must be a finite positive number")
    zero_points = indices(q.zeroPoint)
    if zero_points and len(zero_points) != len(scales):
        raise UserError(f"{what} has {len(scales)} quantization scales and {len(zero_points)} zero points")
    low, high = ZERO_POINT_RANGES.get(dtype, (-(1 << 31), (1 << 31) - 1))
    outside = [z for z in zero_points if not low <= z <= high]
    if outside:
        raise UserError(f"{what} has zero point {outside[0]}, outside {dtype}'s range {low}..{high}")
    if len(scales) > 1:
        axis = int(q.quantizedDimension or 0)
        if len(shape) == 1:
            axis = 0  # TFLM's person_detect quantizes 1-D biases "along dimension 3": it can only mean 0
        if not 0 <= axis < len(shape) or shape[axis] != len(scales):
            raise UserError(f"{what} of shape {shape} has {len(scales)} per-channel scales along dimension "
                            f"{q.quantizedDimension}, which does not match")


def _has_data(buffers, tensor) -> bool:
    data = buffers[tensor.buffer].data if buffers else None
    return data is not None and len(data) > 0


def check_model(model, source: str = "model") -> None:
    """The one model validator (see the module docstring): a one-line UserError for the first thing
    in the schema object tree `model` (from `unpack`) that no runtime could run safely."""
    if not model.subgraphs:
        raise UserError(f"{source} has no subgraph")
    buffers = model.buffers or []
    op_names = operator_names(model)
    type_names = _names(schema().TensorType)
    for number, graph in enumerate(model.subgraphs):
        where = source if number == 0 else f"{source} subgraph {number}"
        tensors = graph.tensors or []
        _check_tensors(tensors, buffers, type_names, where)
        _check_operators(graph, tensors, buffers, op_names, where)
        _check_ends(graph, tensors, where, main=number == 0)


def _check_tensors(tensors, buffers, type_names: dict, where: str) -> None:
    """Shapes, sizes, buffer references and quantization of every tensor of one subgraph."""
    for index, tensor in enumerate(tensors):
        what = f"{where}: {_tensor_label(index, tensor)}"
        shape = indices(tensor.shape)
        if any(d < 0 for d in shape):
            raise UserError(f"{what} has shape {shape}, with a negative dimension")
        dtype = type_names.get(tensor.type, str(tensor.type))
        size = math.prod(shape) * ITEM_BYTES.get(dtype, 1)
        if size > MAX_TENSOR_BYTES:
            raise UserError(f"{what} of shape {shape} takes {size:,} bytes, more than the "
                            f"{MAX_TENSOR_BYTES >> 20} MiB vwwtorch allows one tensor")
        if not 0 <= int(tensor.buffer) < max(len(buffers), 1):
            raise UserError(f"{what} names buffer {tensor.buffer}; the model has {len(buffers)}")
        data = buffers[tensor.buffer].data if buffers else None
        if data is not None and len(data) and dtype in ITEM_BYTES and len(data) != size:
            raise UserError(f"{what} of shape {shape} ({dtype}) needs {size:,} bytes; its buffer holds "
                            f"{len(data):,}")
        _check_quantization(tensor, shape, dtype, what)


def _check_operators(graph, tensors, buffers, op_names: list[str], where: str) -> None:
    """Every operator of one subgraph names a known operator code and tensors that exist."""
    count = len(tensors)
    for position, op in enumerate(graph.operators or []):
        if not 0 <= int(op.opcodeIndex) < len(op_names):
            raise UserError(f"{where}: operator {position} names operator code {op.opcodeIndex}; the model "
                            f"has {len(op_names)}")
        name = op_names[op.opcodeIndex]
        ins, outs = indices(op.inputs), indices(op.outputs)
        if any(not -1 <= i < count for i in ins) or any(not 0 <= i < count for i in outs):
            raise UserError(f"{where}: operator {position} ({name}) names tensors {ins} -> {outs}; the "
                            f"graph has {count}")
        if not outs:
            raise UserError(f"{where}: operator {position} ({name}) has no output")
        if name in WEIGHTED_OPS:
            _check_weighted(ins, tensors, buffers, f"{where}: operator {position} ({name})")


def _check_weighted(ins: list[int], tensors, buffers, what: str) -> None:
    """A convolution or fully connected op names its input and weights, and its constants hold data."""
    if len(ins) < 2 or ins[0] < 0 or ins[1] < 0:
        raise UserError(f"{what} lacks its input or its weights (inputs {ins})")
    # A weight tensor without data would be allocated in the arena and read as whatever is there:
    # a damaged file, not a model (the fuzz test found one TFLM ran on one CPU only).
    for role, i in (("weights", ins[1]), ("bias", ins[2] if len(ins) > 2 else -1)):
        if i >= 0 and not _has_data(buffers, tensors[i]):
            raise UserError(f"{what} has no data for its {role} ({_tensor_label(i, tensors[i])}); "
                            "the file is damaged")


def _check_ends(graph, tensors, where: str, *, main: bool) -> None:
    """The subgraph's inputs and outputs name tensors that exist; the main graph's hold values."""
    count = len(tensors)
    for kind, ends in (("input", graph.inputs), ("output", graph.outputs)):
        for i in indices(ends):
            if not 0 <= i < count:
                raise UserError(f"{where}: its {kind} names tensor {i}; the graph has {count}")
            shape = indices(tensors[i].shape)
            if main and (not shape or 0 in shape):
                raise UserError(f"{where}: its {kind} {_tensor_label(i, tensors[i])} has shape {shape}, "
                                "which holds no values")


def read_tflite(data: bytes, source: str = "model") -> ModelFile:
    """Parse a TFLite flatbuffer; a UserError if it is not one, or not one `check_model` accepts."""
    s = schema()
    model = unpack(data, source)
    check_model(model, source)
    type_names = _names(s.TensorType)
    codes = operator_names(model)

    def tensors_of(graph) -> list[Tensor]:
        out = []
        for t in graph.tensors or []:
            q = t.quantization
            scales = tuple(float(v) for v in (q.scale if q is not None and q.scale is not None else ()))
            zps = tuple(int(v) for v in (q.zeroPoint if q is not None and q.zeroPoint is not None else ()))
            shape = tuple(int(d) for d in (t.shape if t.shape is not None else ()))
            buffer = model.buffers[t.buffer] if model.buffers and 0 < t.buffer < len(model.buffers) else None
            raw = bytes(bytearray(buffer.data)) if buffer is not None and buffer.data is not None else None
            out.append(Tensor(_text(t.name), shape, type_names.get(t.type, str(t.type)), scales, zps,
                              int(q.quantizedDimension or 0) if q is not None else 0, raw))
        return out

    main = model.subgraphs[0]
    main_tensors = tensors_of(main)
    info = ModelFile(size=len(data),
                     inputs=[main_tensors[int(i)] for i in (main.inputs if main.inputs is not None else [])],
                     outputs=[main_tensors[int(i)] for i in (main.outputs if main.outputs is not None else [])],
                     subgraphs=len(model.subgraphs))
    for graph in model.subgraphs:
        tensors = main_tensors if graph is main else tensors_of(graph)
        for op in graph.operators or []:
            ins = tuple(None if int(i) < 0 else tensors[int(i)] for i in (op.inputs if op.inputs is not None else ()))
            outs = tuple(tensors[int(i)] for i in (op.outputs if op.outputs is not None else ()))
            custom = bytes(bytearray(op.customOptions)) if op.customOptions is not None else None
            info.operators.append(Operator(codes[op.opcodeIndex], ins, outs, op.builtinOptions, custom))
    return info


def pack(model, size_hint: int = 0) -> bytes:
    """A schema object tree (from `unpack`, maybe modified) as `.tflite` bytes, buffers 16-aligned."""
    import flatbuffers

    aligned_buffer = _aligned_buffer_class(schema())
    for i, buffer in enumerate(model.buffers):
        model.buffers[i] = aligned = aligned_buffer()
        aligned.data, aligned.offset, aligned.size = buffer.data, buffer.offset, buffer.size
    builder = flatbuffers.Builder(size_hint + 4096)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def indices(array) -> list[int]:
    """A flatbuffer int vector (or None) as a list."""
    return [int(i) for i in (array if array is not None else [])]


def _aligned_buffer_class(schema):
    import numpy as np

    class AlignedBufferT(schema.BufferT):
        def Pack(self, builder):  # noqa: N802 (flatbuffers naming)
            vector = None
            if self.data is not None:
                raw = np.asarray(self.data, dtype=np.uint8).tobytes()
                builder.StartVector(1, len(raw), BUFFER_ALIGNMENT)
                builder.head = builder.head - len(raw)
                builder.Bytes[builder.head:builder.head + len(raw)] = raw
                vector = builder.EndVector()
            schema.BufferStart(builder)
            if vector is not None:
                schema.BufferAddData(builder, vector)
            schema.BufferAddOffset(builder, self.offset)
            schema.BufferAddSize(builder, self.size)
            return schema.BufferEnd(builder)

    return AlignedBufferT


def read_model_bytes(path: str | Path, what: str = "TFLite model") -> bytes:
    """A `.tflite` file's bytes, its size and identifier checked before the whole file is read."""
    path = Path(path)
    shown = printable(path)
    if path.is_dir():
        raise UserError(f"{what} {shown} is a folder, not a file")
    if not path.is_file():
        raise UserError(f"{what} {shown} does not exist")
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > MAX_MODEL_BYTES:
                raise UserError(f"{what} {shown} is {size:,} bytes, more than the {MAX_MODEL_BYTES >> 20} MiB "
                                "vwwtorch reads as a model")
            header = handle.read(8)
            if len(header) < 8 or header[4:8] != FILE_IDENTIFIER:
                raise UserError(f"{shown} is not a TFLite model (no TFL3 identifier)")
            return header + handle.read(size - len(header))
    except OSError as exc:
        raise UserError(f"cannot read {what} {shown}: {exc.strerror or exc}") from None


def load_tflite(path: str | Path) -> tuple[bytes, ModelFile]:
    """(file bytes, parsed and validated model) of a `.tflite` file."""
    data = read_model_bytes(path)
    return data, read_tflite(data, printable(path))
