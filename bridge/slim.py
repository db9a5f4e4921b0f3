"""Drop the converter's tensor names from a `.tflite` file: flash the microcontroller does not need.

The converter names each tensor after every TF op fused into it ("model/tf.nn.relu6_3/Relu6;
model/tf.nn.convolution_3/convolution"...), about 8 KB for MobileNetV1 0.25, enough to push the
int8 model past the reference person_detect.tflite size. The input and output keep short names
(`input`, `probabilities`); every other name is emptied. Nothing the runtimes compute depends on
names; the parity gate runs on the slimmed file.

The model is re-serialized with the flatbuffers object API. The schema asks for constant buffers
aligned to 16 bytes (`force_align: 16`), which the generated Python code ignores, so buffers are
packed here with that alignment, as the TFLite converter writes them.
"""

from __future__ import annotations

import numpy as np

FILE_IDENTIFIER = b"TFL3"
BUFFER_ALIGNMENT = 16


def strip_tensor_names(data: bytes, input_name: str = "input", output_name: str = "probabilities") -> bytes:
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    class AlignedBufferT(schema.BufferT):
        def Pack(self, builder):  # noqa: N802 (flatbuffers naming)
            vector = None
            if self.data is not None:
                raw = np.asarray(self.data, dtype=np.uint8).tobytes()
                builder.StartVector(1, len(raw), BUFFER_ALIGNMENT)
                builder.head = builder.head - len(raw)
                builder.Bytes[builder.head:builder.head + len(raw)] = raw
                vector = builder.EndVector()
            schema.BufferStart(builder)
            if vector is not None:
                schema.BufferAddData(builder, vector)
            schema.BufferAddOffset(builder, self.offset)
            schema.BufferAddSize(builder, self.size)
            return schema.BufferEnd(builder)

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    for graph in model.subgraphs:
        inputs = set(int(i) for i in (graph.inputs if graph.inputs is not None else []))
        outputs = set(int(i) for i in (graph.outputs if graph.outputs is not None else []))
        for index, tensor in enumerate(graph.tensors):
            tensor.name = (input_name if index in inputs else output_name if index in outputs else "").encode()
    for i, buffer in enumerate(model.buffers):
        aligned = AlignedBufferT()
        aligned.data, aligned.offset, aligned.size = buffer.data, buffer.offset, buffer.size
        model.buffers[i] = aligned
    builder = flatbuffers.Builder(len(data) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())
