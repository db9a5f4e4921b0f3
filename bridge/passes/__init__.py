"""Graph passes of the export, one per module, each with its test. All but one never change what the
model computes (the parity gate runs on their output); `source_ranges` changes its int8 ranges on
purpose, to those of the model an imported checkpoint came from.

    one_channel_depthwise  (TF graph, before conversion) a conv over one input channel as the
                           equivalent depthwise conv, as TFLM's reference model has it
    fold_reshape_shape     (.tflite) RESHAPE's constant shape input into its options
    strip_tensor_names     (.tflite) every tensor name but the input's and the output's
    source_ranges          (int8 .tflite, imported checkpoints only) the source's int8 ranges

`TFLITE_PASSES` runs on each converted `.tflite` in this order (`apply`); the flatbuffer is unpacked
and packed once (`vwwtorch.contract.tflite`).
"""

from __future__ import annotations

from vwwtorch.bridge.passes import fold_reshape_shape, source_ranges, strip_tensor_names
from vwwtorch.contract.tflite import pack, unpack

TFLITE_PASSES = (fold_reshape_shape.apply, strip_tensor_names.apply)


def apply(data: bytes, ranges: dict | None = None) -> bytes:
    """`data` through every .tflite pass; with `ranges` (an imported checkpoint's "quantization"
    record) also through `source_ranges`."""
    model = unpack(data, "the converted model")
    for run_pass in TFLITE_PASSES:
        run_pass(model)
    if ranges is not None:
        source_ranges.apply(model, ranges)
    return pack(model, size_hint=len(data))
