"""Read what the gates need from a `.tflite` flatbuffer, without running it.

Op histogram, input/output tensor types and quantization, whether conv weights are quantized per
channel, and the scale of the softmax input (TFLite's int8 softmax aborts the whole process when it
is too small, so the gate must see it before any runtime touches the model). Parsed with the
flatbuffer schema that ships with the `tflite_micro` package.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from vwwtorch.contract.errors import UserError

WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


@dataclass(frozen=True)
class TensorQuant:
    name: str
    dtype: str                  # schema name: INT8, FLOAT32, ...
    shape: tuple[int, ...]
    scales: tuple[float, ...]   # empty when not quantized
    zero_points: tuple[int, ...]

    @property
    def scale(self) -> float | None:
        return self.scales[0] if len(self.scales) == 1 else None

    @property
    def zero_point(self) -> int | None:
        return self.zero_points[0] if len(self.zero_points) == 1 else None


@dataclass
class TFLiteInfo:
    size: int
    input: TensorQuant
    output: TensorQuant
    ops: list[str] = field(default_factory=list)             # in graph order
    weights: list[tuple[str, TensorQuant]] = field(default_factory=list)  # (op, weight tensor)
    softmax_inputs: list[TensorQuant] = field(default_factory=list)

    @property
    def op_histogram(self) -> dict[str, int]:
        return dict(sorted(Counter(self.ops).items()))

    @property
    def is_int8(self) -> bool:
        return self.input.dtype == "INT8" and self.output.dtype == "INT8"


def _names(enum_class) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_") and isinstance(v, int)}


def inspect_tflite(data: bytes, source: str = "model") -> TFLiteInfo:
    """Parse a TFLite flatbuffer; a one-line UserError if it is not a single-input classifier model."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    if len(data) < 8 or data[4:8] != b"TFL3":
        raise UserError(f"{source} is not a TFLite model (no TFL3 identifier)")
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as exc:  # a corrupt flatbuffer can fail anywhere in the generated code
        raise UserError(f"{source} is not a readable TFLite model ({type(exc).__name__})") from None
    if not model.subgraphs or len(model.subgraphs) != 1:
        raise UserError(f"{source} has {len(model.subgraphs or [])} subgraphs; a classifier has one")
    op_names, type_names = _names(schema.BuiltinOperator), _names(schema.TensorType)
    graph = model.subgraphs[0]

    def tensor(index: int) -> TensorQuant:
        t = graph.tensors[index]
        q = t.quantization
        scales = tuple(float(s) for s in (q.scale if q is not None and q.scale is not None else ()))
        zps = tuple(int(z) for z in (q.zeroPoint if q is not None and q.zeroPoint is not None else ()))
        name = t.name.decode(errors="replace") if isinstance(t.name, bytes) else str(t.name or "")
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else ()))
        return TensorQuant(name, type_names.get(t.type, str(t.type)), shape, scales, zps)

    inputs, outputs = list(graph.inputs if graph.inputs is not None else []), \
        list(graph.outputs if graph.outputs is not None else [])
    if len(inputs) != 1 or len(outputs) != 1:
        raise UserError(f"{source} has {len(inputs)} inputs and {len(outputs)} outputs; "
                        "a classifier has one of each")
    info = TFLiteInfo(size=len(data), input=tensor(int(inputs[0])), output=tensor(int(outputs[0])))
    for op in graph.operators or []:
        code = model.operatorCodes[op.opcodeIndex]
        # Newer converters fill builtin_code; older ones only the deprecated 8-bit field.
        builtin = max(int(code.builtinCode or 0), int(code.deprecatedBuiltinCode or 0))
        name = op_names.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM":
            custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
            name = f"CUSTOM:{custom}"
        info.ops.append(name)
        op_inputs = [int(i) for i in (op.inputs if op.inputs is not None else [])]
        if name in WEIGHTED_OPS and len(op_inputs) > 1 and op_inputs[1] >= 0:
            info.weights.append((name, tensor(op_inputs[1])))
        if name == "SOFTMAX" and op_inputs:
            info.softmax_inputs.append(tensor(op_inputs[0]))
    return info
