"""What the firmware needs to know about a `.tflite` file: ops, input/output tensors, quantization.

Read with the flatbuffer schema that ships with the `tflite_micro` package (no TensorFlow import).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vwwtorch.contract.errors import UserError


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str                 # schema name: INT8, FLOAT32, ...
    scale: float | None        # per-tensor quantization, None when absent
    zero_point: int | None


@dataclass(frozen=True)
class OperatorUse:
    op: str                    # builtin name (CONV_2D) or "CUSTOM:<code>"
    input_types: tuple[str | None, ...]   # None for an omitted optional input
    output_types: tuple[str, ...]


@dataclass
class ModelInfo:
    size: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    operators: list[OperatorUse] = field(default_factory=list)

    @property
    def op_names(self) -> list[str]:
        return sorted({use.op for use in self.operators})


def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    return schema


def _names(enum_class) -> dict[int, str]:
    return {value: name for name, value in vars(enum_class).items()
            if not name.startswith("_") and isinstance(value, int)}


def _tensor(schema, subgraph, index: int, type_names: dict[int, str]) -> TensorInfo:
    tensor = subgraph.tensors[index]
    quant = tensor.quantization
    scale = zero_point = None
    if quant is not None and quant.scale is not None and len(quant.scale) == 1:
        scale = float(quant.scale[0])
        zero_point = int(quant.zeroPoint[0]) if quant.zeroPoint is not None else 0
    name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name or "")
    shape = tuple(int(d) for d in (tensor.shape if tensor.shape is not None else ()))
    return TensorInfo(name, shape, type_names.get(tensor.type, str(tensor.type)), scale, zero_point)


def read_model(data: bytes, source: str = "model") -> ModelInfo:
    """Parse a TFLite flatbuffer; a UserError if it is not one."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise UserError(f"{source} is not a TFLite model (no TFL3 identifier)")
    schema = _schema()
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as exc:  # a corrupt flatbuffer can fail anywhere in the generated code
        raise UserError(f"{source} is not a readable TFLite model: {exc}") from None
    op_names = _names(schema.BuiltinOperator)
    type_names = _names(schema.TensorType)
    if not model.subgraphs:
        raise UserError(f"{source} has no subgraph")
    codes = []
    for code in model.operatorCodes or []:
        # Newer converters fill builtin_code; old ones only the deprecated int8 field.
        builtin = max(int(code.builtinCode or 0), int(code.deprecatedBuiltinCode or 0))
        if builtin == schema.BuiltinOperator.CUSTOM:
            custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
            codes.append(f"CUSTOM:{custom}")
        else:
            codes.append(op_names.get(builtin, f"BUILTIN_{builtin}"))
    main = model.subgraphs[0]
    info = ModelInfo(
        size=len(data),
        inputs=[_tensor(schema, main, i, type_names) for i in main.inputs],
        outputs=[_tensor(schema, main, i, type_names) for i in main.outputs])
    for subgraph in model.subgraphs:
        for op in subgraph.operators or []:
            def type_of(i):
                return None if i < 0 else type_names.get(subgraph.tensors[i].type)
            info.operators.append(OperatorUse(
                op=codes[op.opcodeIndex],
                input_types=tuple(type_of(int(i)) for i in (op.inputs if op.inputs is not None else ())),
                output_types=tuple(type_of(int(i)) for i in (op.outputs if op.outputs is not None else ()))))
    return info


def load_model(path: str | Path) -> tuple[bytes, ModelInfo]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    data = path.read_bytes()
    return data, read_model(data, str(path))
