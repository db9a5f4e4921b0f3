"""Small int8 TFLite models for the firmware tests, made on the spot with the TFLite converter."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def convert_keras(model, input_shape, int8: bool) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        rng = np.random.default_rng(0)

        def representative():
            for _ in range(16):
                yield [rng.uniform(-1, 1, (1, *input_shape)).astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def tiny_classifier(size: int = 32, channels: int = 1, width: int = 8):
    """conv -> depthwise conv + residual add -> max pool -> global mean -> dense -> softmax."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((size, size, channels), batch_size=1)
    x = tf.keras.layers.Conv2D(width, 3, strides=2, padding="same", activation="relu")(inputs)
    y = tf.keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    x = tf.keras.layers.Add()([x, y])
    x = tf.keras.layers.MaxPooling2D(2)(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    x = tf.keras.layers.Dense(2)(x)
    return tf.keras.Model(inputs, tf.keras.layers.Softmax()(x))


def big_activation_classifier():
    """Fits flash easily but its 96x96x48 activations do not fit 384 KB of RAM."""
    import tensorflow as tf

    inputs = tf.keras.Input((96, 96, 1), batch_size=1)
    x = tf.keras.layers.Conv2D(48, 3, padding="same", activation="relu")(inputs)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    x = tf.keras.layers.Dense(2)(x)
    return tf.keras.Model(inputs, tf.keras.layers.Softmax()(x))


def big_weights_classifier():
    """About 1.2 MB of int8 weights: more than the Apollo3's 976 KB of application flash."""
    import tensorflow as tf

    inputs = tf.keras.Input((32, 32, 1), batch_size=1)
    x = tf.keras.layers.Flatten()(inputs)
    x = tf.keras.layers.Dense(1200)(x)
    x = tf.keras.layers.Dense(2)(x)
    return tf.keras.Model(inputs, tf.keras.layers.Softmax()(x))


MODELS = {
    "tiny_int8": lambda: convert_keras(tiny_classifier(), (32, 32, 1), int8=True),
    "tiny_float": lambda: convert_keras(tiny_classifier(), (32, 32, 1), int8=False),
    "big_activations": lambda: convert_keras(big_activation_classifier(), (96, 96, 1), int8=True),
    "big_weights": lambda: convert_keras(big_weights_classifier(), (32, 32, 1), int8=True),
}


def write_models(folder: Path, only: tuple[str, ...] | None = None) -> dict[str, Path]:
    """Convert the test models (or only some) into `folder`; returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, make in MODELS.items():
        if only is None or name in only:
            paths[name] = folder / f"{name}.tflite"
            paths[name].write_bytes(make())
    return paths


def with_op_replaced(data: bytes, old: str, new: str) -> bytes:
    """The same model with every `old` operator code turned into `new` (for refusal tests)."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    old_code, new_code = getattr(schema.BuiltinOperator, old), getattr(schema.BuiltinOperator, new)
    for code in model.operatorCodes:
        if max(code.builtinCode, code.deprecatedBuiltinCode) == old_code:
            code.builtinCode = new_code
            code.deprecatedBuiltinCode = min(new_code, 127)
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def reference_scores(data: bytes, tensors: np.ndarray) -> np.ndarray:
    """Scores from the tflite_micro Python runtime, one row per int8 input tensor."""
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(data)
    rows = []
    for tensor in tensors:
        interpreter.set_input(tensor[None].astype(np.int8), 0)
        interpreter.invoke()
        rows.append(np.asarray(interpreter.get_output(0)).reshape(-1))
    return np.stack(rows)


def require_firmware_deps(board: str = "qemu_m4") -> dict[str, Path]:
    """The cached TFLM sources; skips the test when they were never fetched (CI has no cache)."""
    import pytest

    from vwwtorch.plumbing.errors import UserError
    from vwwtorch.firmware.toolchain.deps import deps_root, require

    try:
        return require(board)
    except UserError:
        pytest.skip(f"TFLM and its dependencies are not in {deps_root()}: run `vwwtorch firmware deps`")


def require_tools(*programs: str) -> None:
    """The toolchain is installed from apt by .ci/run; missing here is a failure, not a skip."""
    import shutil

    missing = [p for p in programs if shutil.which(p) is None]
    assert not missing, (f"{', '.join(missing)} not installed: sudo apt-get install g++ make "
                         "gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib "
                         "qemu-system-arm")


def camera_bytes_to_int8(pixels: np.ndarray) -> np.ndarray:
    """The firmware's input convention: a pixel byte b is fed as b - 128."""
    return (pixels.astype(np.int16) - 128).astype(np.int8)
