"""Empty every tensor name but the input's and the output's.

The converter names each tensor after every TF op fused into it ("model/tf.nn.relu6_3/Relu6;
model/tf.nn.convolution_3/convolution"...), about 8 KB of flash for MobileNetV1 0.25, enough to
push the int8 model past the reference person_detect.tflite size. The input and output keep short
names (`input`, `probabilities`).
"""

from __future__ import annotations

from vwwtorch.contract.tflite import indices

INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"


def apply(model) -> None:
    for graph in model.subgraphs:
        inputs, outputs = set(indices(graph.inputs)), set(indices(graph.outputs))
        for index, tensor in enumerate(graph.tensors):
            tensor.name = (INPUT_NAME if index in inputs else OUTPUT_NAME if index in outputs else "").encode()
