"""The TFLite ops the firmware can run, and what each one costs the build.

For every supported builtin op: the `MicroMutableOpResolver` method that registers it, the TFLM
kernel sources (in tensorflow/lite/micro/kernels/) that implement it, and the int8-only
registration that keeps other type paths out of the binary when every use of the op is int8.
`kernel_util.cc` and the rest of the runtime are always built (firmware/tflm.mk). With
`--kernels cmsis_nn` the build swaps in kernels/cmsis_nn/<file> wherever that file exists.

An op missing here is refused by `vwwtorch firmware generate`: TFLM either lacks it or this
firmware has not been checked with it (tests/test_firmware_targets.py links every entry).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OpSupport:
    method: str                           # MicroMutableOpResolver<N>::<method>()
    kernels: tuple[str, ...]              # sources under tensorflow/lite/micro/kernels/
    int8_registration: str | None = None  # tflite::Register_<...>_INT8, if TFLM has one
    int8_inputs: tuple[int, ...] = (0,)   # inputs that must be int8 to use it (outputs always)
    header: str | None = None             # kernel header declaring it, if the resolver's doesn't
    fast: str | None = None               # firmware/core/kernels/fast_kernels.h wrapper of the int8 registration
    call: str | None = None               # the whole registration statement, for this firmware's custom ops


def _op(method: str, *kernels: str, int8: str | None = None, int8_inputs: tuple[int, ...] = (0,),
        header: str | None = None, fast: str | None = None):
    return OpSupport(method, kernels, int8, int8_inputs, header, fast)


SUPPORTED_OPS: dict[str, OpSupport] = {
    "ADD": _op("AddAdd", "add.cc", "add_common.cc", int8="Register_ADD_INT8", int8_inputs=(0, 1)),
    "AVERAGE_POOL_2D": _op("AddAveragePool2D", "pooling.cc", "pooling_common.cc",
                           int8="Register_AVERAGE_POOL_2D_INT8"),
    "CONCATENATION": _op("AddConcatenation", "concatenation.cc"),
    # firmware/core/kernels/conv_chain.h, written by `firmware generate --memory-budget` (firmware/codegen/memory_plan/)
    "CUSTOM:VWW_CONV_CHAIN": OpSupport("AddCustom", (), call="vww::AddConvChain(resolver)"),
    "CONV_2D": _op("AddConv2D", "conv.cc", "conv_common.cc", int8="Register_CONV_2D_INT8",
                   int8_inputs=(0, 1), fast="vww::FastConv2D"),
    "DEPTHWISE_CONV_2D": _op("AddDepthwiseConv2D", "depthwise_conv.cc", "depthwise_conv_common.cc",
                             int8="Register_DEPTHWISE_CONV_2D_INT8", int8_inputs=(0, 1),
                             fast="vww::FastDepthwiseConv2D"),
    "DEQUANTIZE": _op("AddDequantize", "dequantize.cc", "dequantize_common.cc"),
    "EXPAND_DIMS": _op("AddExpandDims", "expand_dims.cc"),
    "FULLY_CONNECTED": _op("AddFullyConnected", "fully_connected.cc", "fully_connected_common.cc",
                           int8="Register_FULLY_CONNECTED_INT8", int8_inputs=(0, 1)),
    "HARD_SWISH": _op("AddHardSwish", "hard_swish.cc", "hard_swish_common.cc"),
    "LEAKY_RELU": _op("AddLeakyRelu", "leaky_relu.cc", "leaky_relu_common.cc"),
    "LOGISTIC": _op("AddLogistic", "logistic.cc", "logistic_common.cc"),
    "MAXIMUM": _op("AddMaximum", "maximum_minimum.cc", int8="Register_MAXIMUM_INT8",
                   int8_inputs=(0, 1)),
    "MAX_POOL_2D": _op("AddMaxPool2D", "pooling.cc", "pooling_common.cc",
                       int8="Register_MAX_POOL_2D_INT8"),
    "MEAN": _op("AddMean", "reduce.cc", "reduce_common.cc"),
    "MINIMUM": _op("AddMinimum", "maximum_minimum.cc", int8="Register_MINIMUM_INT8",
                   int8_inputs=(0, 1)),
    "MUL": _op("AddMul", "mul.cc", "mul_common.cc", int8="Register_MUL_INT8", int8_inputs=(0, 1)),
    "PAD": _op("AddPad", "pad.cc", "pad_common.cc", int8="Register_PAD_INT8",
               header="pad.h"),
    "PADV2": _op("AddPadV2", "pad.cc", "pad_common.cc"),
    "QUANTIZE": _op("AddQuantize", "quantize.cc", "quantize_common.cc"),
    "REDUCE_MAX": _op("AddReduceMax", "reduce.cc", "reduce_common.cc"),
    "RELU": _op("AddRelu", "activations.cc", "activations_common.cc"),
    "RELU6": _op("AddRelu6", "activations.cc", "activations_common.cc"),
    "RESHAPE": _op("AddReshape", "reshape.cc", "reshape_common.cc"),
    "SHAPE": _op("AddShape", "shape.cc"),
    "SOFTMAX": _op("AddSoftmax", "softmax.cc", "softmax_common.cc", int8="Register_SOFTMAX_INT8"),
    "SQUEEZE": _op("AddSqueeze", "squeeze.cc"),
    "STRIDED_SLICE": _op("AddStridedSlice", "strided_slice.cc", "strided_slice_common.cc"),
    "SUB": _op("AddSub", "sub.cc", "sub_common.cc"),
    "SUM": _op("AddSum", "reduce.cc", "reduce_common.cc"),
    "TANH": _op("AddTanh", "tanh.cc"),
    "TRANSPOSE": _op("AddTranspose", "transpose.cc", "transpose_common.cc",
                     int8="Register_TRANSPOSE_INT8", header="transpose.h"),
}


def kernel_sources(op_names) -> list[str]:
    """The kernel files a set of ops needs, each once, in a stable order."""
    files: list[str] = []
    for name in sorted(op_names):
        for source in SUPPORTED_OPS[name].kernels:
            if source not in files:
                files.append(source)
    return files
