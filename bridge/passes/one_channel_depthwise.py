"""Convolutions over a one-channel input, rewritten as the equivalent depthwise convolutions.

MobileNetV1 on grayscale images starts with a 3x3 stride-2 convolution over ONE input channel.
The TFLite converter keeps it a CONV_2D; TFLM's reference person_detect.tflite holds the same layer
as a DEPTHWISE_CONV_2D with depth multiplier C_out. Both compute the same sums of the same products
(one input channel: every output channel sees the same 3x3 window), and int8 requantization is per
output channel in both, so the scores are identical; but CMSIS-NN's depthwise kernel runs this layer
with fewer instructions (about 0.45 M fewer per inference on a Cortex-M4 for the default model:
23.38 M -> 22.93 M, what the reference model takes).

With one input channel a TF Conv2D filter [kh, kw, 1, C_out] is already laid out as a
DepthwiseConv2dNative filter [kh, kw, in_channels=1, multiplier=C_out], and both ops take the same
strides, padding, dilations and data format; so the rewrite only changes the op type of the node in
the frozen TF graph. It runs before the TFLite converter, so the float32 and the int8 model both
carry the depthwise layer, and the converter quantizes it (per channel) like any other.
"""

from __future__ import annotations

# Conv2D attributes DepthwiseConv2dNative does not have.
_CONV_ONLY_ATTRS = ("use_cudnn_on_gpu",)


def one_channel_convs_as_depthwise(function):
    """(function, names of the rewritten nodes) for a TF concrete function with one input and output.

    Returns the function itself, unchanged, when no Conv2D reads a one-channel tensor.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    frozen = convert_variables_to_constants_v2(function)
    graph_def = frozen.graph.as_graph_def()
    rewritten = []
    for node in graph_def.node:
        if node.op == "Conv2D" and _channels(frozen.graph, node.input[0]) == 1:
            node.op = "DepthwiseConv2dNative"
            for attr in _CONV_ONLY_ATTRS:
                if attr in node.attr:
                    del node.attr[attr]
            rewritten.append(node.name)
    if not rewritten:
        return function, []

    inputs = [t.name for t in frozen.inputs]
    outputs = [t.name for t in frozen.outputs]
    imported = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    pruned = imported.prune([imported.graph.get_tensor_by_name(n) for n in inputs],
                            [imported.graph.get_tensor_by_name(n) for n in outputs])
    return pruned, rewritten


def _channels(graph, tensor_name: str) -> int | None:
    name = tensor_name if ":" in tensor_name else f"{tensor_name}:0"
    shape = graph.get_tensor_by_name(name).shape
    return shape[-1] if shape.rank else None
