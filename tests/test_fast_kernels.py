"""firmware/core/kernels/fast_kernels.cc: the Cortex-M4 kernels in front of CMSIS-NN are bit-exact and used.

Each model runs under QEMU (qemu_m4, CMSIS-NN build, so the fast kernels are registered) on 100
int8 inputs, and every score must equal the tflite_micro runtime's (TFLM's reference kernels on the
host). The models: TFLM's person_detect (the default architecture), MLPerf Tiny's vww_96_int8 when
cached, and small models made to hit every path of the kernels: the packed first layers (the
one-input depthwise layer; a 3x3 convolution over RGB, stride 2, SAME), the
transposed depthwise 3x3 at stride 1 and 2 with SAME and VALID padding on odd sizes, packed 1x1
convolutions with 8 to 128 inputs (128: the 32-step chunks), channel counts the kernels leave to
CMSIS-NN; then copies whose requantization shifts left (the GENERAL form), where left and right
shifts alternate by channel, where half the channels carry biases past 2^30 and shifts past 22 (the
EXACT form), and whose activation ranges are narrower than int8 (the clamp). Each copy must reach the
packed form it is made for. The per-operator profile shows the fast paths ran and the totals the
acceptance asks for (12.0 M instructions).

Needs the pinned TFLM sources in the cache (`vwwtorch firmware deps`); skipped without them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from firmware_models import convert_keras, reference_scores, require_firmware_deps, require_tools

from vwwtorch.contract.tflite import load_tflite, pack, read_tflite, unpack
from vwwtorch.firmware.toolchain.compiler import build
from vwwtorch.firmware.codegen.generate import generate
from vwwtorch.firmware.toolchain.profile import profile_model
from vwwtorch.firmware.toolchain.run import run_tensors

IMAGES = 100


@pytest.fixture(scope="module")
def deps():
    require_tools("make", "arm-none-eabi-g++", "qemu-system-arm")
    return require_firmware_deps("qemu_m4")


def kernel_shapes_model() -> bytes:
    """Every shape class of the fast kernels over one gray channel, and some they must hand back to
    CMSIS-NN."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(1)
    layers = tf.keras.layers
    inputs = tf.keras.Input((21, 21, 1), batch_size=1)
    x = layers.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=8, activation="relu6")(inputs)
    x = layers.Conv2D(16, 1, activation="relu6")(x)                       # 1x1, 8 inputs
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu6")(x)  # stride 1, SAME, 11x11
    x = layers.Conv2D(32, 1, activation="relu")(x)                        # 1x1, 16 inputs
    x = layers.DepthwiseConv2D(3, strides=2, padding="valid")(x)          # stride 2, VALID, no activation
    x = layers.Conv2D(12, 1, activation="relu6")(x)                       # 1x1, 32 inputs
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu6")(x)  # 12 channels
    x = layers.Conv2D(6, 1)(x)                                            # 1x1, 12 inputs: CMSIS-NN
    x = layers.DepthwiseConv2D(3, padding="same")(x)                      # 6 channels: CMSIS-NN
    x = layers.Conv2D(4, 1)(x)
    # A 2x2x4 map is the output (16 scores, as many as the firmware prints): a pooled, softmaxed head
    # of random weights would print the same two scores whatever the layers computed.
    model = tf.keras.Model(inputs, layers.Flatten()(layers.MaxPooling2D(2)(x)))
    return convert_keras(model, (21, 21, 1), int8=True)


def rgb_shapes_model() -> bytes:
    """The first layer over RGB (stride 2, SAME on an odd size), the transposed depthwise layer
    with 64 and 128 channels (VALID; stride 2 on an odd width), 1x1 convolutions with 64 and 128
    inputs."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(2)
    layers = tf.keras.layers
    inputs = tf.keras.Input((23, 23, 3), batch_size=1)
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(inputs)   # 12x12x8
    x = layers.Conv2D(64, 1, activation="relu6")(x)                                   # 1x1, 8 inputs
    x = layers.DepthwiseConv2D(3, padding="valid", activation="relu")(x)             # 10x10, 64 channels
    x = layers.Conv2D(128, 1, activation="relu6")(x)                                  # 1x1, 64 inputs
    x = layers.DepthwiseConv2D(3, strides=2, padding="same")(x)                       # 5x5, stride 2, odd
    x = layers.Conv2D(16, 1)(x)                                                       # 1x1, 128 inputs
    x = layers.Conv2D(4, 1)(x)                                                        # 16 inputs
    model = tf.keras.Model(inputs, layers.Flatten()(layers.MaxPooling2D(2)(x)))      # 2x2x4
    return convert_keras(model, (23, 23, 3), int8=True)


def edit_convolutions(data: bytes, edit, kinds=("CONV_2D", "DEPTHWISE_CONV_2D")) -> bytes:
    """The model with `edit(graph, op)` (or `edit(graph, op, model)`) applied to each operator of
    `kinds`; MAX_POOL_2D then takes its input's quantization again (TFLM requires them equal)."""
    import inspect

    from vwwtorch.contract.tflite import operator_names

    model = unpack(data)
    graph = model.subgraphs[0]
    names = operator_names(model)
    with_model = len(inspect.signature(edit).parameters) == 3
    for op in graph.operators:
        if names[op.opcodeIndex] in kinds:
            edit(graph, op, model) if with_model else edit(graph, op)
    for op in graph.operators:
        if names[op.opcodeIndex] == "MAX_POOL_2D":
            source = graph.tensors[int(op.inputs[0])].quantization
            target = graph.tensors[int(op.outputs[0])].quantization
            target.scale, target.zeroPoint = list(source.scale), list(source.zeroPoint)
    return pack(model, size_hint=len(data))


def with_left_shifts(data: bytes) -> bytes:
    """Every CONV_2D output's scale divided by 256: multipliers of 0.5 and more, so the
    requantization shifts left first, or not at all (the packed GENERAL form, a path the other
    models never take)."""
    def edit(graph, op):
        quant = graph.tensors[int(op.outputs[0])].quantization
        quant.scale = [float(s) / 256 for s in quant.scale]
    return edit_convolutions(data, edit, kinds=("CONV_2D",))


def with_mixed_shifts(data: bytes) -> bytes:
    """Every second channel's weight scale times 1024 in each convolution: channels whose
    requantization shifts left sit beside channels that shift right, in the same group of 4."""
    def edit(graph, op):
        quant = graph.tensors[int(op.inputs[1])].quantization
        quant.scale = [float(s) * (1024 if c % 2 else 1) for c, s in enumerate(quant.scale)]
    return edit_convolutions(data, edit)


def with_exact_channels(data: bytes) -> bytes:
    """Every fourth channel of each convolution with a weight scale 2^16 times smaller (shifts past
    22) and a bias past 2^30, as in MLPerf's vww_96_int8 (its FAST form cannot hold them)."""
    def edit(graph, op, model):
        weights = graph.tensors[int(op.inputs[1])].quantization
        weights.scale = [float(s) / (1 << 16) if c % 4 == 1 else float(s) for c, s in enumerate(weights.scale)]
        if len(op.inputs) > 2 and int(op.inputs[2]) >= 0:
            buffer = model.buffers[graph.tensors[int(op.inputs[2])].buffer]
            bias = np.frombuffer(bytes(bytearray(buffer.data)), dtype="<i4").astype(np.int64)
            bias[1::4] = np.where(np.arange(len(bias))[1::4] % 8 == 1, 1, -1) * ((1 << 30) + 1000)
            buffer.data = np.frombuffer(bias.astype("<i4").tobytes(), dtype=np.uint8)
    return edit_convolutions(data, edit)


def with_narrow_activations(data: bytes) -> bytes:
    """Every convolution's output with twice the scale and zero point -100: fused ReLU and ReLU6 then
    clamp below at -100 and ReLU6 above at about -1, the bytewise clamp the other models never need."""
    def edit(graph, op):
        quant = graph.tensors[int(op.outputs[0])].quantization
        quant.scale = [float(s) * 2 for s in quant.scale]
        quant.zeroPoint = [-100 for _ in quant.zeroPoint]
    return edit_convolutions(data, edit)


def run_qemu(tflite: Path, tensors: np.ndarray, out: Path) -> tuple[np.ndarray, list[str]]:
    """Scores under QEMU, and the forms of the layers `firmware generate` packed."""
    outputs = int(np.prod(read_tflite(tflite.read_bytes()).output.shape))
    labels = None if outputs == 2 else [f"score{i}" for i in range(outputs)]
    settings = generate(tflite, out / "model", board="qemu_m4", labels=labels, person_index=0 if labels else None)
    build("qemu_m4", out / "model", out / "build", kernels="cmsis_nn", jobs=2, quiet=True)
    result = run_tensors(out / "build", tensors, timeout=600)
    return np.array([image.scores for image in result.images]), [p["form"] for p in settings.packed_weights["layers"]]


def inputs_for(data: bytes, extra: np.ndarray | None = None) -> np.ndarray:
    shape = read_tflite(data).input.shape[1:]
    tensors = np.random.default_rng(0).integers(-128, 128, size=(IMAGES, *shape), dtype=np.int8)
    if extra is not None:
        tensors[:len(extra)] = extra
    return tensors


def assert_bit_exact(tflite: Path, tmp_path: Path, extra: np.ndarray | None = None,
                     distinct: int = 0) -> list[str]:
    """Firmware scores equal the runtime's on 100 inputs, of which at least `distinct` score apart;
    returns the packed layers' forms."""
    data = tflite.read_bytes()
    tensors = inputs_for(data, extra)
    ours, forms = run_qemu(tflite, tensors, tmp_path)
    reference = reference_scores(data, tensors)
    assert len(np.unique(reference, axis=0)) >= distinct  # the outputs do depend on the inputs
    np.testing.assert_array_equal(ours, reference)
    return forms


def camera_frames(frames: list[np.ndarray], data: bytes, channels: int) -> np.ndarray:
    """Real camera frames (uint8 [96, 96]) as the model's int8 input, through its byte mapping."""
    from vwwtorch.contract.deployment import byte_to_int8

    model = read_tflite(data)
    table = byte_to_int8(model.input.scale, model.input.zero_point, "the model")
    return np.stack([np.repeat(table[f][:, :, None], channels, axis=2) for f in frames])


def test_person_detect_is_bit_exact_on_100_inputs(deps, tmp_path):
    from vwwtorch.training.foreign.frames import tflm_testdata_frame

    tflm = deps["tflite-micro"] / "tensorflow" / "lite" / "micro"
    testdata = tflm / "examples" / "person_detection" / "testdata"
    model = tflm / "models" / "person_detect.tflite"
    frames = [tflm_testdata_frame(testdata / f"{name}.bmp") for name in ("person", "no_person")]
    assert_bit_exact(model, tmp_path, extra=camera_frames(frames, model.read_bytes(), 1))


def test_mlperf_vww_is_bit_exact_on_100_inputs(deps, tmp_path):
    from vwwtorch.training.foreign.frames import mlperf_input_frames
    from vwwtorch.training.foreign.pretrained import fetch_command, folder

    model, inputs = folder("person-rgb-96") / "vww_96_int8.tflite", folder("person-rgb-96") / "vww_inputs.cc"
    if not (model.is_file() and inputs.is_file()):
        pytest.skip(f"MLPerf's vww_96_int8.tflite is not cached: run `{fetch_command('person-rgb-96')}`")
    frames = camera_frames(mlperf_input_frames(inputs), model.read_bytes(), 3)
    forms = assert_bit_exact(model, tmp_path, extra=frames)
    assert len(forms) == 14 and "exact" in forms  # the first layer and every 1x1; biases of 2^30


VARIANTS = {"as-converted": lambda data: data, "left-shifts": with_left_shifts,
            "mixed-shifts": with_mixed_shifts, "exact-channels": with_exact_channels,
            "narrow-activations": with_narrow_activations}
# The packed form each variant must reach in some layer.
FORMS = {"as-converted": "fast", "left-shifts": "general", "mixed-shifts": "general", "exact-channels": "exact",
         "narrow-activations": "fast"}


@pytest.mark.parametrize("model", ["gray", "rgb"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_kernel_path_is_bit_exact(deps, tmp_path, variant, model):
    data = VARIANTS[variant](kernel_shapes_model() if model == "gray" else rgb_shapes_model())
    tflite = tmp_path / "shapes.tflite"
    tflite.write_bytes(data)
    forms = assert_bit_exact(tflite, tmp_path, distinct=IMAGES)  # every input gives its own 16 scores
    assert FORMS[variant] in forms, forms


def test_the_profile_shows_the_fast_kernels_ran(deps, tmp_path):
    tflm = deps["tflite-micro"] / "tensorflow" / "lite" / "micro"
    profile = profile_model(tflm / "models" / "person_detect.tflite", tmp_path / "p", quiet=True)
    depthwise = [o for o in profile["ops"] if o["op"] == "DEPTHWISE_CONV_2D" and o["output_shape"][1] >= 12]
    # CMSIS-NN: 7.9 to 11.3 instructions per MAC on these maps.
    assert all(o["instructions_per_mac"] < 5.0 for o in depthwise), [o["instructions_per_mac"] for o in depthwise]
    pointwise = [o for o in profile["ops"] if o["op"] == "CONV_2D" and o["macs"] >= 294_912]
    # CMSIS-NN: 1.8 to 6.6; packed, 1.0 a MAC (16 MACs in 14 instructions) plus requantization.
    assert all(o["instructions_per_mac"] < 2.5 for o in pointwise), [o["instructions_per_mac"] for o in pointwise]
    assert all(o["instructions_per_mac"] < 1.3 for o in pointwise if o["output_shape"][3] >= 64)
    assert profile["instructions_per_inference"] <= 12.0e6  # stock CMSIS-NN: 22.93 M
    assert profile["cycles_per_inference"] <= 14.0e6
    _, info = load_tflite(tflm / "models" / "person_detect.tflite")
    assert len(profile["ops"]) == len(info.operators)
