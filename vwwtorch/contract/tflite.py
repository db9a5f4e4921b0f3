"""The one reader of `.tflite` files: tensors, quantization and operators, without running anything,
and the one writer that packs a modified model back.

Parsed with the flatbuffer schema that ships with the `tflite_micro` package (no TensorFlow import).
The gates and passes (bridge), the importers (training), firmware generation and the runtimes'
callers all read models through here. The schema asks for constant buffers aligned to 16 bytes
(`force_align: 16`), which the generated Python code ignores, so `pack` aligns them, as the TFLite
converter does.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from vwwtorch.contract.errors import UserError

WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
FILE_IDENTIFIER = b"TFL3"
BUFFER_ALIGNMENT = 16
NUMPY_TYPES = {"INT8": "<i1", "UINT8": "<u1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FLOAT32": "<f4"}


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


def read_tflite(data: bytes, source: str = "model") -> ModelFile:
    """Parse a TFLite flatbuffer; a UserError if it is not one."""
    s = schema()
    model = unpack(data, source)
    if not model.subgraphs:
        raise UserError(f"{source} has no subgraph")
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


def load_tflite(path: str | Path) -> tuple[bytes, ModelFile]:
    """(file bytes, parsed model) of a `.tflite` file."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"TFLite model {path} is a folder, not a file")
    if not path.is_file():
        raise UserError(f"TFLite model {path} does not exist")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read TFLite model {path}: {exc.strerror or exc}") from None
    return data, read_tflite(data, str(path))
