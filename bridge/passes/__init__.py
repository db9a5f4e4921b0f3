"""Graph passes of the export, one per module, each with its test; they never change what the model
computes (the parity gate runs on their output).

    one_channel_depthwise  (TF graph, before conversion) a conv over one input channel as the
                           equivalent depthwise conv, as TFLM's reference model has it
    fold_reshape_shape     (.tflite) RESHAPE's constant shape input into its options
    strip_tensor_names     (.tflite) every tensor name but the input's and the output's

`TFLITE_PASSES` runs on each converted `.tflite` in this order (`apply`); the flatbuffer is unpacked
and packed once (`flatbuffer`).
"""

from __future__ import annotations

from vwwtorch.bridge.passes import fold_reshape_shape, strip_tensor_names
from vwwtorch.bridge.passes.flatbuffer import pack, unpack

TFLITE_PASSES = (fold_reshape_shape.apply, strip_tensor_names.apply)


def apply(data: bytes) -> bytes:
    """`data` through every .tflite pass."""
    model = unpack(data)
    for run_pass in TFLITE_PASSES:
        run_pass(model)
    return pack(model, size_hint=len(data))
