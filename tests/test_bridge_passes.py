"""The .tflite passes of the bridge (vwwtorch.bridge.passes): what they remove from a converter's .tflite,
and that nothing computed changes."""

from __future__ import annotations

import numpy as np
import pytest

from vwwtorch.bridge.passes import apply as run_passes
from vwwtorch.contract.litert import TFLiteModel
from vwwtorch.contract.tflm import run_tflm


def _graph(data: bytes):
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    return model, model.subgraphs[0], schema


def _reshape_op(model, graph, schema):
    (op,) = [op for op in graph.operators
             if max(model.operatorCodes[op.opcodeIndex].builtinCode,
                    model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode) == schema.BuiltinOperator.RESHAPE]
    return op


@pytest.fixture(scope="module")
def converted():
    """A classifier head as the TFLite converter writes it: conv, average pool, RESHAPE, softmax, int8."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    kernel = tf.constant(rng.normal(0, 0.5, (3, 3, 1, 4)), tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 1], tf.float32)])
    def head(x):
        y = tf.nn.relu6(tf.nn.conv2d(x, kernel, strides=1, padding="SAME"))
        y = tf.nn.avg_pool2d(y, ksize=8, strides=8, padding="VALID")
        return tf.nn.softmax(tf.reshape(y, [1, 4]))

    def calibration():
        for _ in range(32):
            yield [rng.uniform(-1, 1, (1, 8, 8, 1)).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_concrete_functions([head.get_concrete_function()], head)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = calibration
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


def test_reshape_shape_tensor_is_folded_and_names_stripped(converted):
    model, graph, schema = _graph(converted)
    assert len(_reshape_op(model, graph, schema).inputs) == 2, "the converter should give a 2-input RESHAPE"
    assert any(t.name for t in graph.tensors)

    slim = run_passes(converted)
    model_s, graph_s, _ = _graph(slim)
    op = _reshape_op(model_s, graph_s, schema)
    assert len(op.inputs) == 1 and list(op.builtinOptions.newShape) == [1, 4]
    assert len(graph_s.tensors) == len(graph.tensors) - 1
    assert list(graph_s.tensors[op.outputs[0]].shape) == [1, 4]
    names = {graph_s.tensors[graph_s.inputs[0]].name, graph_s.tensors[graph_s.outputs[0]].name}
    assert names == {b"input", b"probabilities"}
    assert sum(1 for t in graph_s.tensors if t.name) == 2
    assert len(slim) < len(converted)
    assert run_passes(converted) == slim, "slimming must be deterministic"


def test_slimmed_model_computes_the_same_and_needs_less_arena(converted):
    inputs = np.random.default_rng(1).integers(-128, 128, (50, 8, 8, 1), dtype=np.int8)
    slim = run_passes(converted)
    before, after = TFLiteModel(converted), TFLiteModel(slim)
    np.testing.assert_array_equal(before.raw_outputs(inputs), after.raw_outputs(inputs))
    tflm_before, arena_before = run_tflm(converted, inputs)
    tflm_after, arena_after = run_tflm(slim, inputs)
    np.testing.assert_array_equal(tflm_before, tflm_after)
    # TFLM is bit-exact with TFLite's reference kernels (the default ones round differently).
    np.testing.assert_array_equal(tflm_after, TFLiteModel(slim, reference_kernels=True).raw_outputs(inputs))
    assert arena_after < arena_before, "one tensor fewer must show in the TFLM arena"


def test_a_shape_that_is_not_the_static_output_shape_is_kept(converted):
    """A shape with -1 (or any value that differs from the output's shape) stays an input."""
    model, graph, schema = _graph(converted)
    op = _reshape_op(model, graph, schema)
    shape_tensor = graph.tensors[op.inputs[1]]
    model.buffers[shape_tensor.buffer].data = np.frombuffer(np.array([-1, 4], "<i4").tobytes(), np.uint8)
    import flatbuffers

    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    model_s, graph_s, _ = _graph(run_passes(bytes(builder.Output())))
    assert len(_reshape_op(model_s, graph_s, schema).inputs) == 2
    assert len(graph_s.tensors) == len(graph.tensors)
