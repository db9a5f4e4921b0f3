"""Broken copies of real model files, made field by field through the formats' own writers: the
flatbuffer object API for `.tflite` (the schema vwwtorch reads with), h5py for Keras `.h5`.

Shared by the fault matrix (one named mutation per defect) and the fuzz test (random ones).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np


# --- .tflite --------------------------------------------------------------------------------------

def edit_tflite(data: bytes, edit: Callable) -> bytes:
    """`data` unpacked into the schema's object tree, changed by `edit(model)`, packed again."""
    from vwwtorch.contract.tflite import pack, unpack

    model = unpack(data)
    edit(model)
    return pack(model, size_hint=len(data))


def tensors(model, graph: int = 0) -> list:
    return model.subgraphs[graph].tensors


def operator_index(model, name: str) -> int:
    """Position of the first operator called `name` (CONV_2D...) in the main graph."""
    from vwwtorch.contract.tflite import operator_names

    names = operator_names(model)
    return next(i for i, op in enumerate(model.subgraphs[0].operators) if names[op.opcodeIndex] == name)


def weight_tensor(model, op: str = "CONV_2D"):
    graph = model.subgraphs[0]
    return graph.tensors[graph.operators[operator_index(model, op)].inputs[1]]


def nan_weight_scale(model) -> None:
    """One per-channel weight scale of the first convolution made NaN."""
    weight_tensor(model).quantization.scale[0] = np.nan


def input_tensor(model):
    graph = model.subgraphs[0]
    return graph.tensors[graph.inputs[0]]


def input_scale(value: float) -> Callable:
    def edit(model) -> None:
        input_tensor(model).quantization.scale[0] = value
    return edit


def input_shape(*shape: int) -> Callable:
    def edit(model) -> None:
        input_tensor(model).shape = np.asarray(shape, dtype=np.int32)
    return edit


def tensor_index_out_of_range(model) -> None:
    graph = model.subgraphs[0]
    graph.operators[0].inputs[0] = len(graph.tensors) + 7


def opcode_index_out_of_range(model) -> None:
    model.subgraphs[0].operators[0].opcodeIndex = len(model.operatorCodes) + 3


def weight_shape_against_buffer(model) -> None:
    tensor = weight_tensor(model)
    tensor.shape = np.asarray([*tensor.shape[:-1], tensor.shape[-1] + 1], dtype=np.int32)


def quantized_dimension(value: int) -> Callable:
    def edit(model) -> None:
        weight_tensor(model).quantization.quantizedDimension = value
    return edit


def conv_with_one_input(model) -> None:
    op = model.subgraphs[0].operators[operator_index(model, "CONV_2D")]
    op.inputs = op.inputs[:1]


def conv_weight_index(value: int) -> Callable:
    def edit(model) -> None:
        model.subgraphs[0].operators[operator_index(model, "CONV_2D")].inputs[1] = value
    return edit


def custom_op_at(position: int, code: str = "MY_OP") -> Callable:
    """Operator `position` of the main graph turned into a custom op (a new operator code)."""
    def edit(model) -> None:
        from vwwtorch.contract.tflite import schema

        s = schema()
        custom = s.OperatorCodeT()
        custom.builtinCode = custom.deprecatedBuiltinCode = s.BuiltinOperator.CUSTOM
        custom.customCode = code
        model.operatorCodes.append(custom)
        op = model.subgraphs[0].operators[position]
        op.opcodeIndex = len(model.operatorCodes) - 1
        op.builtinOptionsType, op.builtinOptions = 0, None
    return edit


# --- Keras .h5 ------------------------------------------------------------------------------------

def copy_h5(source: Path, target: Path) -> Path:
    shutil.copyfile(source, target)
    return target


def h5_config(path: Path) -> dict:
    import h5py

    with h5py.File(path, "r") as f:
        return json.loads(f.attrs["model_config"])


def set_h5_config(path: Path, config) -> None:
    import h5py

    with h5py.File(path, "r+") as f:
        f.attrs["model_config"] = config if isinstance(config, (str, bytes)) else json.dumps(config)


def edit_h5_config(path: Path, edit: Callable[[dict], None]) -> Path:
    config = h5_config(path)
    edit(config)
    set_h5_config(path, config)
    return path


def h5_layers(config: dict) -> list[dict]:
    return config["config"]["layers"]


def h5_layer(config: dict, class_name: str, nth: int = 0) -> dict:
    return [layer for layer in h5_layers(config) if layer["class_name"] == class_name][nth]


def rewire_h5(config: dict) -> None:
    """The first depthwise layer reads the model's input instead of the stem's output: the layers are
    still listed in the same order, but the graph is not a chain any more."""
    first_input = h5_layers(config)[0]["config"]["name"]
    depthwise = h5_layer(config, "DepthwiseConv2D")
    depthwise["inbound_nodes"] = [[[first_input, 0, 0, {}]]]


def h5_weight_group(path: Path, class_name: str, nth: int = 0):
    """(layer name, its weight names) of the nth layer of a kind."""
    import h5py

    name = h5_layer(h5_config(path), class_name, nth)["config"]["name"]
    with h5py.File(path, "r") as f:
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["model_weights"][name].attrs["weight_names"]]
    return name, names


def replace_h5_dataset(path: Path, class_name: str, value, nth: int = 0, which: int = 0) -> Path:
    import h5py

    layer, names = h5_weight_group(path, class_name, nth)
    with h5py.File(path, "r+") as f:
        group = f["model_weights"][layer]
        del group[names[which]]
        if value is not None:
            group[names[which]] = value
    return path
