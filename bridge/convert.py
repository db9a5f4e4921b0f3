"""ONNX -> TensorFlow (onnx2tf, NCHW -> NHWC) -> TFLite float32 and full-integer int8.

onnx2tf turns the ONNX graph into an NHWC Keras model; the two `.tflite` files are then made with
the TFLite converter directly, from that model:

Both start from the same frozen TF graph, in which a convolution over a one-channel input (the
grayscale model's first layer) is rewritten as the equivalent depthwise convolution, as TFLM's
reference model has it (`vwwtorch.bridge.passes.one_channel_depthwise`).

- float32: plain conversion;
- int8: full-integer quantization (int8 input and output, per-channel weights, TFLITE_BUILTINS_INT8
  only, so a float fallback op is an error rather than a silent QUANTIZE/DEQUANTIZE pair),
  calibrated on the arrays we pass in.

Why not onnx2tf's own int8 output: it calibrates with `-cind` data *normalised by a mean and std*
and, without it, on ImageNet-normalised sample images it downloads; a slip in either silently
calibrates on the wrong distribution. Feeding our preprocessed images straight to the converter
leaves no such step (the input quantization gate still verifies the outcome).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from vwwtorch.bridge.onnx_export import INPUT_NAME
from vwwtorch.plumbing.native_output import quiet_output


# For 3-channel inputs onnx2tf runs a trial inference on sample images that it downloads from
# GitHub unless a file of this name is in the working directory; we put our own images there, so
# the conversion works offline and its trial inference sees real data.
ONNX2TF_SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"


def onnx_to_keras(onnx_path: str | Path, sample_images: np.ndarray | None = None, verbose: bool = False):
    """The onnx2tf Keras model (NHWC input [1, H, W, C]) of an ONNX file.

    `sample_images`: a few preprocessed NHWC float images for onnx2tf's trial inference.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    onnx_path = Path(onnx_path).resolve()
    with quiet_output(not verbose), tempfile.TemporaryDirectory(prefix="vwwtorch-onnx2tf-") as scratch:
        import onnx2tf

        np.save(Path(scratch) / ONNX2TF_SAMPLE_FILE, _rgb_samples(sample_images))
        previous = os.getcwd()
        os.chdir(scratch)
        try:
            # disable_model_save: return the Keras model, write nothing (we convert it ourselves).
            # not_use_onnxsim: onnxsim is an optional external tool; the exported graph is already folded.
            return onnx2tf.convert(input_onnx_file_path=str(onnx_path), output_folder_path=scratch,
                                   disable_model_save=True, not_use_onnxsim=True,
                                   verbosity="info" if verbose else "error")
        finally:
            os.chdir(previous)


def _rgb_samples(images: np.ndarray | None) -> np.ndarray:
    if images is None or len(images) == 0:
        return np.zeros((1, 128, 128, 3), dtype=np.float32)
    samples = np.asarray(images[:20], dtype=np.float32)
    return samples if samples.shape[-1] == 3 else np.repeat(samples[..., :1], 3, axis=-1)


def _concrete_function(keras_model):
    """The TF function both converters start from, one-input-channel convs made depthwise."""
    import tensorflow as tf

    from vwwtorch.bridge.passes.one_channel_depthwise import one_channel_convs_as_depthwise

    spec = keras_model.inputs[0]
    run = tf.function(lambda x: keras_model(x), input_signature=[tf.TensorSpec(spec.shape, tf.float32, INPUT_NAME)])
    function, _ = one_channel_convs_as_depthwise(run.get_concrete_function())
    return function


def to_float32_tflite(keras_model, verbose: bool = False) -> bytes:
    import tensorflow as tf

    with quiet_output(not verbose):
        converter = tf.lite.TFLiteConverter.from_concrete_functions([_concrete_function(keras_model)], keras_model)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        return converter.convert()


def to_int8_tflite(keras_model, calibration: np.ndarray, verbose: bool = False) -> bytes:
    """Full-integer int8 model calibrated on `calibration` (float32 NHWC, the model's real inputs)."""
    import tensorflow as tf

    expected = tuple(int(d) for d in keras_model.inputs[0].shape[1:])
    if calibration.ndim != 4 or tuple(calibration.shape[1:]) != expected:
        raise ValueError(f"calibration images {calibration.shape} do not fit the model input {expected}")

    def representative():
        for i in range(len(calibration)):
            yield [calibration[i:i + 1].astype(np.float32)]

    with quiet_output(not verbose):
        converter = tf.lite.TFLiteConverter.from_concrete_functions([_concrete_function(keras_model)], keras_model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        converter._experimental_disable_per_channel = False  # per-channel weights (the default, pinned)
        # Dense layers per tensor, as MLPerf's reference model has its classifier (and as every
        # TFLM port, CMSIS-NN's included, has long supported).
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
        return converter.convert()
