"""Convolutions rewritten as VWW_CONV_CHAIN custom ops (firmware/core/kernels/conv_chain.h).

`rewrite(data, streamed)`: the first `streamed` layers (when 2 or more) become one chain that runs
row by row, so their intermediate maps never exist whole; every other int8 convolution becomes a
chain of one layer. Either way each layer's requantization table becomes two constant int32
tensors (in flash), and its padding and activation range go into the op's options, as TFLM's
preparation would have computed them (vwwtorch.contract.int8_arithmetic). Other ops are left as they are; tensors
no op uses any more are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vwwtorch.contract.int8_arithmetic import activation_range, channel_multipliers
from vwwtorch.contract.tflite import operator_names, pack, unpack
from vwwtorch.firmware.codegen.memory_plan.requantization import leading_padding, output_size

CHAIN_OP = "VWW_CONV_CHAIN"
CHAIN_OP_NAME = f"CUSTOM:{CHAIN_OP}"
OPTIONS_VERSION = 1
MAX_CHAIN_LAYERS = 16  # kMaxLayers in conv_chain.cc; tests/test_chain_wire_format.py keeps them equal
CONVOLUTIONS = ("CONV_2D", "DEPTHWISE_CONV_2D")


@dataclass(frozen=True)
class Layer:
    """One convolution, in the words of conv_chain.cc's ChainLayer (window_rows set by the chain)."""
    depthwise: int
    in_h: int
    in_w: int
    in_c: int
    out_h: int
    out_w: int
    out_c: int
    kh: int
    kw: int
    stride_h: int
    stride_w: int
    pad_h: int
    pad_w: int
    depth_multiplier: int
    input_offset: int
    output_offset: int
    act_min: int
    act_max: int

    def words(self, window_rows: int) -> list[int]:
        return [*(getattr(self, f) for f in self.__dataclass_fields__), window_rows]


def _tensor(graph, index: int):
    return graph.tensors[int(index)] if int(index) >= 0 else None


def _quant(tensor) -> tuple[list[float], list[int]]:
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return [], []
    return [float(s) for s in q.scale], [int(z) for z in (q.zeroPoint if q.zeroPoint is not None else [0])]


def layer_of(model, graph, op, name: str) -> Layer | None:
    """The op as a chain layer, or None when the chain op cannot run it (it then stays as it is)."""
    from vwwtorch.contract.tflite import schema

    if name not in CONVOLUTIONS or op.inputs is None or len(op.inputs) < 2 or len(op.outputs) != 1:
        return None
    x, w, y = _tensor(graph, op.inputs[0]), _tensor(graph, op.inputs[1]), _tensor(graph, op.outputs[0])
    b = _tensor(graph, op.inputs[2]) if len(op.inputs) > 2 else None
    int8 = schema().TensorType.INT8
    if x is None or w is None or {x.type, w.type, y.type} != {int8}:
        return None
    if b is not None and b.type != schema().TensorType.INT32:
        return None
    shapes = [list(t.shape) if t.shape is not None else [] for t in (x, w, y)]
    if any(len(s) != 4 for s in shapes) or shapes[0][0] != 1 or shapes[2][0] != 1:
        return None
    o = op.builtinOptions
    if o is None or (o.dilationHFactor or 1) != 1 or (o.dilationWFactor or 1) != 1:
        return None
    (in_scales, in_zps), (w_scales, _), (out_scales, out_zps) = _quant(x), _quant(w), _quant(y)
    if len(in_scales) != 1 or len(out_scales) != 1 or not w_scales:
        return None
    (_, in_h, in_w, in_c), (_, out_h, out_w, out_c) = shapes[0], shapes[2]
    kh, kw = shapes[1][1], shapes[1][2]
    depthwise = name == "DEPTHWISE_CONV_2D"
    multiplier = int(o.depthMultiplier or 1) if depthwise else 1
    if depthwise and (in_c * multiplier != out_c or shapes[1][3] != out_c):
        return None
    if not depthwise and (shapes[1][0] != out_c or shapes[1][3] != in_c):
        return None
    padding, sh, sw = int(o.padding), int(o.strideH), int(o.strideW)
    if (output_size(padding, in_h, kh, sh), output_size(padding, in_w, kw, sw)) != (out_h, out_w):
        return None
    try:
        act_min, act_max = activation_range(int(o.fusedActivationFunction), out_scales[0], out_zps[0])
    except ValueError:
        return None
    return Layer(int(depthwise), in_h, in_w, in_c, out_h, out_w, out_c, kh, kw, sh, sw,
                 leading_padding(padding, in_h, kh, sh), leading_padding(padding, in_w, kw, sw), multiplier,
                 -in_zps[0], out_zps[0], act_min, act_max)


def streamable_prefix(data: bytes) -> int:
    """How many leading ops can run as one row-by-row chain: convolutions the chain op runs, each
    feeding only the next, none a model output (at most MAX_CHAIN_LAYERS)."""
    model = unpack(data)
    graph = model.subgraphs[0]
    names = operator_names(model)
    outputs = {int(i) for i in graph.outputs}
    users: dict[int, int] = {}
    for op in graph.operators:
        for i in op.inputs if op.inputs is not None else []:
            users[int(i)] = users.get(int(i), 0) + 1
    count = 0
    for k, op in enumerate(graph.operators[:MAX_CHAIN_LAYERS]):
        if layer_of(model, graph, op, names[op.opcodeIndex]) is None:
            break
        if k > 0 and int(graph.operators[k - 1].outputs[0]) != int(op.inputs[0]):
            break
        count += 1
        out = int(op.outputs[0])
        if out in outputs or users.get(out, 0) != 1:
            break
    return count


def _const_tensor(model, graph, values: np.ndarray, name: str) -> int:
    from vwwtorch.contract.tflite import schema

    s = schema()
    buffer = s.BufferT()
    buffer.data = np.frombuffer(values.astype("<i4").tobytes(), dtype=np.uint8)
    model.buffers.append(buffer)
    tensor = s.TensorT()
    tensor.shape = [len(values)]
    tensor.type = s.TensorType.INT32
    tensor.buffer = len(model.buffers) - 1
    tensor.name = name
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def _chain_operator(model, graph, opcode: int, ops: list, layers: list[Layer], number: int):
    from vwwtorch.contract.tflite import schema

    s = schema()
    inputs = [int(ops[0].inputs[0])]
    for j, (op, layer) in enumerate(zip(ops, layers)):
        x, w, y = (_tensor(graph, i) for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
        multipliers, shifts = channel_multipliers(_quant(x)[0][0], _quant(w)[0], _quant(y)[0][0], layer.out_c)
        bias = int(op.inputs[2]) if len(op.inputs) > 2 else -1
        inputs += [int(op.inputs[1]), bias,
                   _const_tensor(model, graph, multipliers, f"chain{number}/{j}/multipliers"),
                   _const_tensor(model, graph, shifts, f"chain{number}/{j}/shifts")]
    words = [OPTIONS_VERSION, len(layers)]
    for j, layer in enumerate(layers):
        consumer = layers[j + 1] if j + 1 < len(layers) else None
        words += layer.words(min(consumer.kh, layer.out_h) if consumer else 0)
    chain = s.OperatorT()
    chain.opcodeIndex = opcode
    chain.inputs = inputs
    chain.outputs = [int(ops[-1].outputs[0])]
    chain.customOptions = np.frombuffer(np.array(words, dtype="<i4").tobytes(), dtype=np.uint8)
    chain.customOptionsFormat = s.CustomOptionsFormat.FLEXBUFFERS  # the schema's only value
    chain.builtinOptionsType = 0
    return chain


def rewrite(data: bytes, streamed: int = 0) -> bytes:
    """The model with its convolutions as VWW_CONV_CHAIN ops, the first `streamed` in one chain."""
    from vwwtorch.contract.tflite import schema

    s = schema()
    if streamed > streamable_prefix(data):
        raise ValueError(f"the first {streamed} ops cannot run as one chain")
    model = unpack(data)
    graph = model.subgraphs[0]
    names = operator_names(model)
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.CUSTOM
    code.customCode = CHAIN_OP
    code.version = 1
    model.operatorCodes.append(code)
    opcode = len(model.operatorCodes) - 1
    old = list(graph.operators)
    new_ops = []
    if streamed >= 2:
        head = old[:streamed]
        layers = [layer_of(model, graph, op, names[op.opcodeIndex]) for op in head]
        new_ops.append(_chain_operator(model, graph, opcode, head, layers, 0))
        old = old[streamed:]
    for op in old:
        layer = layer_of(model, graph, op, names[op.opcodeIndex])
        new_ops.append(op if layer is None else
                       _chain_operator(model, graph, opcode, [op], [layer], len(new_ops)))
    graph.operators = new_ops
    _drop_unused(model, graph)
    return pack(model, size_hint=len(data) + 64 * 1024)


def _drop_unused(model, graph) -> None:
    """Removes tensors and operator codes no op refers to, renumbering the rest."""
    used = {int(i) for i in graph.inputs} | {int(i) for i in graph.outputs}
    for op in graph.operators:
        used |= {int(i) for i in (op.inputs if op.inputs is not None else []) if int(i) >= 0}
        used |= {int(i) for i in op.outputs}
    keep = sorted(used)
    index = {old: new for new, old in enumerate(keep)}
    graph.tensors = [graph.tensors[i] for i in keep]
    remap = lambda ids: [index[int(i)] if int(i) >= 0 else -1 for i in ids]  # noqa: E731
    graph.inputs, graph.outputs = remap(graph.inputs), remap(graph.outputs)
    for op in graph.operators:
        op.inputs, op.outputs = remap(op.inputs), remap(op.outputs)
        if op.intermediates is not None:
            op.intermediates = remap(op.intermediates)
    codes = sorted({op.opcodeIndex for op in graph.operators})
    code_index = {old: new for new, old in enumerate(codes)}
    model.operatorCodes = [model.operatorCodes[i] for i in codes]
    for op in graph.operators:
        op.opcodeIndex = code_index[op.opcodeIndex]


def chain_layers(op) -> list[tuple[Layer, int]]:
    """(layer, window rows) of each layer of a VWW_CONV_CHAIN op (a schema OperatorT, or its options)."""
    options = op if isinstance(op, bytes) else bytes(bytearray(op.customOptions))
    words = np.frombuffer(options, dtype="<i4").tolist()
    fields = len(Layer.__dataclass_fields__) + 1
    if len(words) < 2 or words[0] != OPTIONS_VERSION or len(words) != 2 + words[1] * fields:
        raise ValueError("not VWW_CONV_CHAIN options of this version")
    return [(Layer(*words[2 + j * fields:1 + (j + 1) * fields]), words[1 + (j + 1) * fields])
            for j in range(words[1])]


def layer_macs(layer: Layer) -> int:
    per_output = layer.kh * layer.kw * (1 if layer.depthwise else layer.in_c)
    return layer.out_h * layer.out_w * layer.out_c * per_output


def _kernel_scratch(layer: Layer) -> int:
    """What CMSIS-NN's wrappers ask for on a Cortex-M4 (arm_*_wrapper_s8_get_buffer_size_dsp)."""
    if layer.depthwise:
        three_by_three = layer.kh == layer.kw == 3 and layer.pad_h <= 1 and layer.pad_w <= 1
        return 0 if layer.in_c != layer.out_c or three_by_three else 2 * layer.in_c * layer.kh * layer.kw
    if layer.kh == layer.kw == 1 and layer.pad_h == layer.pad_w == 0:
        return 0
    columns = layer.kh * layer.kw * layer.in_c
    return 4 * (columns + (-columns) % 4)


def chain_scratch(op) -> int:
    """Arena bytes the op asks for: the windows between its layers and CMSIS-NN's largest buffer."""
    layers = chain_layers(op)
    windows = sum((rows * layer.out_w * layer.out_c + 3) // 4 * 4 for layer, rows in layers[:-1])
    return windows + (max(_kernel_scratch(layer) for layer, _ in layers) + 3) // 4 * 4
