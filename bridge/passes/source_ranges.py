"""Give a converted int8 model the int8 ranges of the model its checkpoint was imported from.

An imported checkpoint (`vwwtorch import`) keeps its source's input quantization and every
operator's output (scale, zero point), in graph order. The converter calibrates its own ranges;
this pass puts the source's back, so that a re-export reproduces the source's quantization: a
quantization-aware-trained model (TFLM's person_detect, ReLU6 ranges of exactly [0, 6]) keeps the
ranges it was trained for, whatever the calibration images. Weights, dequantized from the source's
int8 with their per-channel scales, quantize back to the same integers; they are put back on the
source's exact scales too (kept in the record). Each layer's int32 bias has the scale
input_scale x weight_scale, so biases are requantized to the new scales (round(q x old / new)), and
where that lands one step from the source's own integer (the same real value, rounded by another
float computation) the source's is taken.

A QAT checkpoint's record (`vwwtorch.bridge.qat_record`) is exact: it carries the int8 weights and
biases of its simulated network, which are written as they are (no requantization, nothing rounded
again), so the file is the network the simulation computed.

The operators must be those of the source, in the same order (a RESHAPE before FULLY_CONNECTED
may be on one side only); anything else is refused.
"""

from __future__ import annotations

import numpy as np

from vwwtorch.plumbing.errors import UserError
from vwwtorch.contract.tflite import WEIGHTED_OPS, indices, operator_names

INT32 = np.iinfo(np.int32)


def _set(tensor, scale: float, zero_point: int) -> None:
    tensor.quantization.scale = np.array([scale], dtype=np.float32)
    tensor.quantization.zeroPoint = np.array([zero_point], dtype=np.int64)


def _scales(tensor) -> np.ndarray:
    return np.asarray(tensor.quantization.scale, dtype=np.float64)


def apply(model, record: dict) -> None:
    """Set `record`'s ranges on `model` (the schema object tree of the converted int8 model)."""
    graph = model.subgraphs[0]
    names = operator_names(model)
    ours = [names[op.opcodeIndex] for op in graph.operators]
    pairs = _align(ours, [entry["op"] for entry in record["operators"]], record["source"])
    tensors = graph.tensors
    _set(tensors[indices(graph.inputs)[0]], record["input"]["scale"], record["input"]["zero_point"])
    for index, op in enumerate(graph.operators):
        entry = record["operators"][pairs[index]] if pairs[index] is not None else None
        if entry is None:  # a RESHAPE the source does not have: it passes its input's range on
            source = tensors[indices(op.inputs)[0]].quantization
            entry = {"scale": float(source.scale[0]), "zero_point": int(source.zeroPoint[0])}
        _set(tensors[indices(op.outputs)[0]], entry["scale"], entry["zero_point"])
    for index, (op, name) in enumerate(zip(graph.operators, ours)):
        if name in WEIGHTED_OPS:
            entry = record["operators"][pairs[index]]
            if record.get("exact"):
                _write_exact(model, tensors, indices(op.inputs), entry, f"operator {index} ({name})")
                continue
            if entry.get("weight_scales"):
                _requantize_weights(model, tensors[indices(op.inputs)[1]], entry["weight_scales"])
            _requantize_bias(model, tensors, indices(op.inputs), entry.get("bias"))


def _write_exact(model, tensors, inputs: list[int], entry: dict, what: str) -> None:
    """A record that carries the int8 network itself (a QAT checkpoint's): its weights, weight scales
    and int32 biases go into the file as they are."""
    weight = tensors[inputs[1]]
    values = np.asarray(entry["weights"], dtype=np.int8)
    if tuple(values.shape) != tuple(indices(weight.shape)):
        raise UserError(f"the quantization to keep does not fit the converted model at {what}: weights "
                        f"{list(values.shape)} where the converter made {list(indices(weight.shape))}")
    scales = np.asarray(entry["weight_scales"], dtype=np.float32)
    if len(scales) != len(_scales(weight)):
        raise UserError(f"the quantization to keep does not fit the converted model at {what}: {len(scales)} "
                        f"weight scales where the converter made {len(_scales(weight))}")
    _store(model, weight, values)
    weight.quantization.scale = scales
    weight.quantization.zeroPoint = np.zeros(len(scales), dtype=np.int64)
    if len(inputs) < 3 or inputs[2] < 0:
        raise UserError(f"the converted model has no bias at {what}, which the quantization to keep has")
    bias = tensors[inputs[2]]
    values = np.asarray(entry["bias"], dtype="<i4")
    if len(values) != len(_buffer_values(model, bias, "<i4")):
        raise UserError(f"the quantization to keep does not fit the converted model at {what}: {len(values)} "
                        "biases")
    _store(model, bias, values)
    # The bias's own scale: input scale x weight scale, in float32 as the converter writes it.
    input_scale = np.float32(_scales(tensors[inputs[0]])[0])
    bias.quantization.scale = (input_scale * scales).astype(np.float32)
    bias.quantization.zeroPoint = np.zeros(len(scales), dtype=np.int64)


def _align(ours: list[str], theirs: list[str], source: str) -> list[int | None]:
    """For each of our operators, the index of the source's that computes it (None: a RESHAPE of ours
    the source does without). A RESHAPE may be on one side only: FULLY_CONNECTED flattens its input
    itself, so one converter writes RESHAPE + FULLY_CONNECTED where another writes FULLY_CONNECTED."""
    pairs: list[int | None] = []
    i = j = 0
    while i < len(ours) or j < len(theirs):
        if i < len(ours) and j < len(theirs) and ours[i] == theirs[j]:
            pairs.append(j)
            i, j = i + 1, j + 1
        elif j < len(theirs) and theirs[j] == "RESHAPE":
            j += 1
        elif i < len(ours) and ours[i] == "RESHAPE":
            pairs.append(None)
            i += 1
        else:
            raise UserError(f"the converted model's operators differ from {source}'s at operator {i} "
                            f"({ours[i] if i < len(ours) else 'end'} vs {theirs[j] if j < len(theirs) else 'end'}); "
                            "export with --calibrate to quantize it on --data instead")
    return pairs


def _buffer_values(model, tensor, dtype: str) -> np.ndarray:
    return np.frombuffer(np.asarray(model.buffers[tensor.buffer].data, dtype=np.uint8).tobytes(), dtype=dtype)


def _store(model, tensor, values: np.ndarray) -> None:
    model.buffers[tensor.buffer].data = np.frombuffer(values.tobytes(), dtype=np.uint8).copy()


def _requantize_weights(model, weight, scales: list[float]) -> None:
    """The weights on the source's own scales: the same integers up to float rounding of the scale
    (a scale computed from dequantized weights differs from the source's in the 7th digit, which is
    enough to move a requantization multiplier and round an output the other way)."""
    old = _scales(weight)
    if len(old) != len(scales):
        return                  # per tensor on one side, per channel on the other: keep ours
    new = np.asarray(scales, dtype=np.float64)
    values = _buffer_values(model, weight, "i1").astype(np.float64)
    axis = int(weight.quantization.quantizedDimension or 0) if len(old) > 1 else 0
    shape = [1] * len(indices(weight.shape))
    if len(old) > 1:
        shape[axis] = len(old)
    values = values.reshape(indices(weight.shape))
    requantized = np.clip(np.round(values * (old / np.where(new > 0, new, old)).reshape(shape)), -127, 127)
    _store(model, weight, requantized.astype(np.int8))
    weight.quantization.scale = np.where(new > 0, new, old).astype(np.float32)


def _requantize_bias(model, tensors, inputs: list[int], theirs: list[int] | None) -> None:
    if len(inputs) < 3 or inputs[2] < 0:
        return
    activation, weight, bias = tensors[inputs[0]], tensors[inputs[1]], tensors[inputs[2]]
    old = _scales(bias)
    new = _scales(activation)[0] * _scales(weight)
    values = _buffer_values(model, bias, "<i4").astype(np.float64)
    ours = np.clip(np.round(values * old / new), INT32.min, INT32.max).astype(np.int64)
    if theirs is not None and len(theirs) == len(ours):
        # The same real bias, rounded by another float computation of the BatchNorm fold: where the
        # two integers are one step apart, the source's rounding is taken (one step of a bias moves
        # an output by up to 1 LSB, and such steps compound through 14 layers).
        theirs_array = np.asarray(theirs, dtype=np.int64)
        ours = np.where(np.abs(ours - theirs_array) <= 1, theirs_array, ours)
    _store(model, bias, ours.astype("<i4"))
    bias.quantization.scale = new.astype(np.float32)
    bias.quantization.zeroPoint = np.zeros(len(new), dtype=np.int64)
