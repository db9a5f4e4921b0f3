"""Remove from a `.tflite` file what the microcontroller pays for and never uses.

Two things, neither of which changes what the model computes (the parity gate runs on the slimmed
file):

- Tensor names. The converter names each tensor after every TF op fused into it
  ("model/tf.nn.relu6_3/Relu6;model/tf.nn.convolution_3/convolution"...), about 8 KB of flash for
  MobileNetV1 0.25, enough to push the int8 model past the reference person_detect.tflite size.
  The input and output keep short names (`input`, `probabilities`); every other name is emptied.
- RESHAPE's constant shape input. TFLite and TFLM both take a one-input RESHAPE (the target shape
  in ReshapeOptions, the output tensor's static shape), and TFLM keeps a TfLiteEvalTensor in the
  arena for every tensor of the graph: dropping the shape tensor saves 16 B of arena on Cortex-M for
  MobileNetV1 0.25 (82,308 -> 82,292 B with CMSIS-NN). Only a shape that is a constant int32
  vector, used by that one op and equal to the output's static shape, is folded.

The model is re-serialized with the flatbuffers object API. The schema asks for constant buffers
aligned to 16 bytes (`force_align: 16`), which the generated Python code ignores, so buffers are
packed here with that alignment, as the TFLite converter writes them.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

FILE_IDENTIFIER = b"TFL3"
BUFFER_ALIGNMENT = 16


def slim_tflite(data: bytes, input_name: str = "input", output_name: str = "probabilities") -> bytes:
    """`data` with tensor names stripped and constant RESHAPE shapes folded into the op's options."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    _fold_reshape_shapes(model, schema)
    for graph in model.subgraphs:
        inputs, outputs = set(_indices(graph.inputs)), set(_indices(graph.outputs))
        for index, tensor in enumerate(graph.tensors):
            tensor.name = (input_name if index in inputs else output_name if index in outputs else "").encode()
    aligned_buffer = _aligned_buffer_class(schema)
    for i, buffer in enumerate(model.buffers):
        model.buffers[i] = aligned = aligned_buffer()
        aligned.data, aligned.offset, aligned.size = buffer.data, buffer.offset, buffer.size
    builder = flatbuffers.Builder(len(data) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def _indices(array) -> list[int]:
    return [int(i) for i in (array if array is not None else [])]


def _fold_reshape_shapes(model, schema) -> None:
    reshape_codes = {i for i, code in enumerate(model.operatorCodes or [])
                     if max(int(code.builtinCode or 0), int(code.deprecatedBuiltinCode or 0))
                     == schema.BuiltinOperator.RESHAPE}
    for graph_index, graph in enumerate(model.subgraphs):
        uses = Counter(i for op in graph.operators or [] for i in _indices(op.inputs))
        graph_io = set(_indices(graph.inputs)) | set(_indices(graph.outputs))
        folded: list[int] = []
        for op in graph.operators or []:
            op_inputs, op_outputs = _indices(op.inputs), _indices(op.outputs)
            if op.opcodeIndex not in reshape_codes or len(op_inputs) != 2 or len(op_outputs) != 1:
                continue
            shape_index = op_inputs[1]
            shape = _constant_int32_vector(model, graph.tensors[shape_index], schema)
            output_shape = _indices(graph.tensors[op_outputs[0]].shape)
            if shape_index in graph_io or uses[shape_index] != 1 or shape != output_shape:
                continue
            options = schema.ReshapeOptionsT()
            options.newShape = shape
            op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.ReshapeOptions, options
            op.inputs = np.array(op_inputs[:1], dtype=np.int32)
            folded.append(shape_index)
        if folded:
            _remove_tensors(model, graph_index, folded, schema)


def _constant_int32_vector(model, tensor, schema) -> list[int] | None:
    buffer = model.buffers[tensor.buffer] if 0 < tensor.buffer < len(model.buffers) else None
    if tensor.type != schema.TensorType.INT32 or buffer is None or buffer.data is None \
            or len(_indices(tensor.shape)) != 1:
        return None
    return [int(v) for v in np.frombuffer(np.asarray(buffer.data, dtype=np.uint8).tobytes(), dtype="<i4")]


def _remove_tensors(model, graph_index: int, removed: list[int], schema) -> None:
    """Delete tensors of one subgraph, renumber every reference to the rest, empty orphaned buffers."""
    graph = model.subgraphs[graph_index]
    gone = set(removed)
    new_index = {}
    for old in range(len(graph.tensors)):
        if old not in gone:
            new_index[old] = len(new_index)

    def renumber(array):
        # -1 marks an omitted optional input and stays as it is.
        return None if array is None else np.array([new_index[i] if i >= 0 else i for i in _indices(array)],
                                                   dtype=np.int32)

    buffers = {graph.tensors[i].buffer for i in gone}
    graph.tensors = [t for i, t in enumerate(graph.tensors) if i not in gone]
    graph.inputs, graph.outputs = renumber(graph.inputs), renumber(graph.outputs)
    for op in graph.operators or []:
        op.inputs, op.outputs = renumber(op.inputs), renumber(op.outputs)
        op.intermediates = renumber(op.intermediates)
    for signature in model.signatureDefs or []:
        if signature.subgraphIndex == graph_index:
            for entry in (signature.inputs or []) + (signature.outputs or []):
                entry.tensorIndex = new_index[entry.tensorIndex]
    still_used = {t.buffer for g in model.subgraphs for t in g.tensors}
    for index in buffers - still_used:
        model.buffers[index] = schema.BufferT()


def _aligned_buffer_class(schema):
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

    return AlignedBufferT
