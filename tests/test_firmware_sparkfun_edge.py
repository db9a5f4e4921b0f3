"""The SparkFun Edge port (firmware/boards/sparkfun_edge) without a board.

* The frame reduction (camera 324x244 -> model input) is compiled with g++ and compared with an
  independent NumPy formulation of the same area filter, and with vwwtorch's own eval
  preprocessing (torchvision) applied the way the training data was made.
* The image provider and the detection responder run on the host against a simulated camera and
  simulated LEDs: start-up, frames dropped while exposure settles, camera errors and recovery,
  LED meanings, and a log line that `vwwtorch firmware monitor` parses.
* With the Ambiq SDK and the SparkFun BSP in the cache (`vwwtorch firmware deps --board
  sparkfun_edge`), the real build: flash and RAM use against the Apollo3 limits, the vector table
  and entry point at 0xC000 in the .axf and in the .bin, hard-float Cortex-M4 code, the .bin
  through the blob writer (`flash --dry-run`) and through the simulated bootloader on a pty, and a
  flash budget too small for every packed layer: the image still builds, those layers unpacked, and
  the build says which.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from cli_asserts import assert_one_line_error
from fake_apollo3_bootloader import FakeBootloader  # noqa: E402
from vwwtorch.firmware.boards.sparkfun_edge import apollo3_image as img  # noqa: E402

from vwwtorch.cli import main as cli_main  # noqa: E402
from vwwtorch.contract.detection_log import parse_detection  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EDGE = ROOT / "firmware" / "boards" / "sparkfun_edge"
CORE = ROOT / "firmware" / "core"
FRAME_W, FRAME_H = 324, 244
INSTALL_GCC = ("apt-get install g++ gcc-arm-none-eabi libnewlib-arm-none-eabi "
               "libstdc++-arm-none-eabi-newlib")


def need(tool: str) -> str:
    path = shutil.which(tool)
    assert path, f"{tool} is missing: {INSTALL_GCC}"
    return path


def compile_host(sources: list[Path], includes: list[Path], out: Path) -> Path:
    need("g++")
    done = subprocess.run(["g++", "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror",
                           *[f"-I{i}" for i in includes], *map(str, sources), "-o", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return out


# --- the frame reduction ------------------------------------------------------------------------

REDUCE_DRIVER = r"""
#include <cstdio>
#include <cstdlib>
#include <vector>
#include "frame_reduce.h"
// reduce W H ROWS COLS CHANNELS [odd] < frame > tensor
// The byte table is TFLM's b - 128, or with "odd" a scrambled one (to show the table is applied).
int main(int argc, char** argv) {
  if (argc != 6 && argc != 7) return 2;
  int8_t table[256];
  for (int b = 0; b < 256; ++b) table[b] = static_cast<int8_t>(argc == 7 ? (b * 7 + 3) % 256 - 128 : b - 128);
  const int w = std::atoi(argv[1]), h = std::atoi(argv[2]), rows = std::atoi(argv[3]),
            cols = std::atoi(argv[4]), channels = std::atoi(argv[5]);
  std::vector<uint8_t> frame(static_cast<size_t>(w > 0 ? w : 0) * (h > 0 ? h : 0));
  if (std::fread(frame.data(), 1, frame.size(), stdin) != frame.size()) return 3;
  std::vector<int8_t> out(static_cast<size_t>(rows > 0 ? rows : 0) * (cols > 0 ? cols : 0) *
                          (channels > 0 ? channels : 0));
  if (!edge::ReduceFrame(frame.data(), w, h, rows, cols, channels, table, out.data())) return 4;
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}
"""


@pytest.fixture(scope="module")
def reducer(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("reduce")
    (work / "driver.cc").write_text(REDUCE_DRIVER)
    return compile_host([work / "driver.cc", EDGE / "frame_reduce.cc"], [EDGE], work / "reduce")


def reduce_on_host(reducer: Path, frame: np.ndarray, rows=96, cols=96, channels=1, odd=False) -> np.ndarray:
    h, w = frame.shape
    done = subprocess.run([str(reducer), str(w), str(h), str(rows), str(cols), str(channels)] + (["odd"] if odd else []),
                          input=np.ascontiguousarray(frame, np.uint8).tobytes(), capture_output=True)
    assert done.returncode == 0, done.returncode
    return np.frombuffer(done.stdout, np.int8).reshape(rows, cols, channels)


def coverage(length: int, outputs: int) -> tuple[np.ndarray, int]:
    """outputs x length matrix: how much of each source pixel falls in each output's interval of
    the central 7/8 window, in exact units of 1/(16 * outputs) pixel; and the units per output."""
    window_start, window = length / 16, length * 7 / 8
    scale = 16 * outputs                        # makes every edge below an integer
    weights = np.zeros((outputs, length), np.int64)
    per_output = round(window / outputs * scale)
    for i in range(outputs):
        lo = round((window_start + i * window / outputs) * scale)
        hi = lo + per_output
        for k in range(length):
            weights[i, k] = max(0, min(hi, (k + 1) * scale) - max(lo, k * scale))
    return weights, per_output


def reference_reduce(frame: np.ndarray, rows: int, cols: int) -> np.ndarray:
    wy, sy = coverage(frame.shape[0], rows)
    wx, sx = coverage(frame.shape[1], cols)
    total = sx * sy
    sums = wy @ frame.astype(np.int64) @ wx.T
    return ((sums + total // 2) // total - 128).astype(np.int8)


@pytest.mark.parametrize("shape", [(FRAME_H, FRAME_W, 96, 96), (FRAME_H, FRAME_W, 32, 32),
                                   (FRAME_H, FRAME_W, 50, 70), (40, 30, 60, 45)])
def test_reduction_matches_the_reference_area_filter(reducer, shape):
    h, w, rows, cols = shape
    for seed in range(2):
        frame = np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)
        ours = reduce_on_host(reducer, frame, rows, cols)
        np.testing.assert_array_equal(ours[..., 0], reference_reduce(frame, rows, cols))


def test_the_models_byte_table_is_applied(reducer):
    frame = np.random.default_rng(4).integers(0, 256, (FRAME_H, FRAME_W), dtype=np.uint8)
    grey = reference_reduce(frame, 96, 96).astype(np.int16) + 128        # the reduced bytes
    scrambled = ((np.arange(256) * 7 + 3) % 256 - 128).astype(np.int8)
    np.testing.assert_array_equal(reduce_on_host(reducer, frame, odd=True)[..., 0], scrambled[grey])


def test_three_channel_models_get_the_grey_value_in_each_channel(reducer):
    frame = np.random.default_rng(3).integers(0, 256, (FRAME_H, FRAME_W), dtype=np.uint8)
    ours = reduce_on_host(reducer, frame, 96, 96, 3)
    for ch in range(3):
        np.testing.assert_array_equal(ours[..., ch], reference_reduce(frame, 96, 96))


def test_only_the_central_seven_eighths_of_the_frame_count(reducer):
    # The window is x in [20.25, 303.75), y in [15.25, 228.75): pixels 0..19, 304.., rows 0..14,
    # 229.. lie wholly outside it and must not change any output.
    frame = np.full((FRAME_H, FRAME_W), 255, np.uint8)
    frame[15:229, 20:304] = 0
    assert (reduce_on_host(reducer, frame) == -128).all()
    frame[:, 20] = 255            # three quarters inside the window, all in output column 0
    out = reduce_on_host(reducer, frame)[..., 0]
    assert (out[:, 0] > -128).all() and (out[:, 1:] == -128).all()
    # uint8 -> int8 is b - 128: a flat grey frame gives exactly that value everywhere.
    assert (reduce_on_host(reducer, np.full((FRAME_H, FRAME_W), 200, np.uint8)) == 72).all()


def test_refuses_empty_sizes(reducer):
    done = subprocess.run([str(reducer), str(FRAME_W), str(FRAME_H), "0", "96", "1"],
                          input=bytes(FRAME_W * FRAME_H), capture_output=True)
    assert done.returncode == 4 and done.stdout == b""


def test_reduction_is_close_to_the_models_eval_preprocessing(reducer):
    """The dataset squashes each picture to a square (bilinear, 128 px here) and evaluation takes
    the central 87.5% and resizes it to 96 (torchvision, antialiased). On a 4:3 camera frame the
    firmware's reduction must land within a few grey levels of that; TFLM's original method (a
    192 x 192 centre window decimated by 2) sees another part of the scene and is far off."""
    import torch
    from PIL import Image

    from vwwtorch.data.transforms import eval_transform

    transform = eval_transform(96, 1)
    for seed in range(3):
        coarse = np.random.default_rng(seed).integers(0, 256, (12, 16), dtype=np.uint8)
        frame = np.asarray(Image.fromarray(coarse).resize((FRAME_W, FRAME_H), Image.BICUBIC))
        square = np.array(Image.fromarray(frame).resize((128, 128), Image.BILINEAR))
        expected = (transform(torch.from_numpy(square)[None])[0].numpy() + 1) * 127.5
        ours = reduce_on_host(reducer, frame)[..., 0].astype(float) + 128
        decimated = frame[27:27 + 192:2, 67:67 + 192:2].astype(float)
        error = np.abs(ours - expected)
        assert error.mean() < 1.5 and error.max() <= 8, (error.mean(), error.max())
        assert np.abs(decimated - expected).mean() > 10 * error.mean()


# --- image provider and responder on the host, with a simulated camera and LEDs ----------------

LOG_HEADER = """// Stand-in for TFLM's micro_log.h: the host harness prints through vww::TinyVsnprintf.
#pragma once
#include <cstdarg>
#include <cstddef>
void MicroPrintf(const char* format, ...);
int MicroSnprintf(char* buffer, size_t size, const char* format, ...);
"""

HARNESS = r"""
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "detection_responder.h"
#include "edge_board.h"
#include "hm01b0_camera.h"
#include "image_provider.h"
#include "model_settings.h"
#include "tiny_format.h"

namespace {
bool leds[4];
int starts = 0;
int captures = 0;
int failing_starts = 0;       // StartCamera fails this many times first
int failing_capture = -1;     // CaptureFrame fails on this capture (0-based), once
}  // namespace

int MicroSnprintf(char* buffer, size_t size, const char* format, ...) {
  va_list args;
  va_start(args, format);
  const int n = vww::TinyVsnprintf(buffer, size, format, args);
  va_end(args);
  return n;
}

void MicroPrintf(const char* format, ...) {
  char line[256];
  va_list args;
  va_start(args, format);
  vww::TinyVsnprintf(line, sizeof(line), format, args);
  va_end(args);
  std::printf("log: %s\n", line);
}

namespace edge {
void InitBoard() {}
void SetLed(Led led, bool on) { leds[static_cast<int>(led)] = on; }
void ToggleLed(Led led) { leds[static_cast<int>(led)] = !leds[static_cast<int>(led)]; }
uint32_t TimerTicks() { return 0; }
void DelayMs(uint32_t) {}
void Halt() { std::exit(9); }
const char* DescribeCameraStatus(CameraStatus status) {
  return status == CameraStatus::kOk ? "ok" : "simulated failure";
}
CameraStatus StartCamera() {
  ++starts;
  if (failing_starts > 0) {
    --failing_starts;
    return CameraStatus::kBusError;
  }
  return CameraStatus::kOk;
}
// Capture n is a flat frame of grey level 10 + n, so the tensor tells which frame it came from.
CameraStatus CaptureFrame(uint8_t* frame) {
  const int n = captures++;
  if (n == failing_capture) return CameraStatus::kNoFrame;
  std::memset(frame, 10 + n, kFrameWidth * kFrameHeight);
  return CameraStatus::kOk;
}
}  // namespace edge

void PrintLeds() {
  std::printf("leds red=%d blue=%d green=%d yellow=%d\n", leds[0], leds[1], leds[2], leds[3]);
}

// harness FAILING_STARTS FAILING_CAPTURE CALLS
int main(int argc, char** argv) {
  if (argc != 4) return 2;
  failing_starts = std::atoi(argv[1]);
  failing_capture = std::atoi(argv[2]);
  const int calls = std::atoi(argv[3]);
  static int8_t tensor[vww::kInputBytes];
  for (int i = 0; i < calls; ++i) {
    const vww::ImageStatus status =
        vww::GetImage(vww::kNumRows, vww::kNumCols, vww::kNumChannels, tensor);
    std::printf("get ok=%d starts=%d captures=%d first=%d last=%d\n",
                status == vww::ImageStatus::kOk, starts, captures, tensor[0],
                tensor[vww::kInputBytes - 1]);
    PrintLeds();
  }
  int8_t scores[vww::kNumLabels] = {};
  const int8_t person_scores[2] = {90, -70};
  const int64_t micros[2] = {153249, 98760};
  for (int k = 0; k < 2; ++k) {
    scores[vww::kPersonIndex] = person_scores[k];
    scores[vww::kNoPersonIndex] = static_cast<int8_t>(-person_scores[k]);
    vww::Detection detection;
    detection.image_index = k;
    detection.scores = scores;
    detection.num_scores = vww::kNumLabels;
    detection.person_index = vww::kPersonIndex;
    detection.threshold = vww::kPersonThreshold;
    detection.person = scores[vww::kPersonIndex] >= vww::kPersonThreshold;
    detection.inference_us = micros[k];
    vww::RespondToDetection(detection);
    PrintLeds();
  }
  return 0;
}
"""


def mini_mobilenet():
    """A few MobileNetV1 blocks at 96x96x1: the op set of the real model (CONV_2D,
    DEPTHWISE_CONV_2D, AVERAGE_POOL_2D, RESHAPE, SOFTMAX), small enough to convert in seconds."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    layers = tf.keras.layers
    inputs = tf.keras.Input((96, 96, 1), batch_size=1)
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(inputs)
    for filters, stride in ((16, 1), (32, 2)):
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", activation="relu6")(x)
        x = layers.Conv2D(filters, 1, activation="relu6")(x)
    x = layers.AveragePooling2D(24)(x)
    x = layers.Conv2D(2, 1)(x)
    x = layers.Reshape((2,))(x)
    return tf.keras.Model(inputs, layers.Softmax()(x))


def convert_int8(model) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    rng = np.random.default_rng(0)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: (
        [rng.uniform(-1, 1, (1, 96, 96, 1)).astype(np.float32)] for _ in range(16))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("edge_model")
    tflite = work / "mini_mobilenet_int8.tflite"
    tflite.write_bytes(convert_int8(mini_mobilenet()))
    out = work / "model"
    assert cli_main(["firmware", "generate", "--tflite", str(tflite), "--out", str(out),
                     "--board", "sparkfun_edge"]) == 0
    return out


@pytest.fixture(scope="module")
def harness(model_dir, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("edge_harness")
    stubs = work / "stubs" / "tensorflow" / "lite" / "micro"
    stubs.mkdir(parents=True)
    (stubs / "micro_log.h").write_text(LOG_HEADER)
    (work / "harness.cc").write_text(HARNESS)
    sources = [work / "harness.cc", EDGE / "image_provider.cc", EDGE / "detection_responder.cc",
               EDGE / "frame_reduce.cc", CORE / "detection_log.cc", CORE / "tiny_format.cc",
               model_dir / "model_settings.cc"]
    return compile_host(sources, [EDGE, CORE, model_dir, work / "stubs"], work / "harness")


def run_harness(harness: Path, failing_starts: int, failing_capture: int, calls: int):
    done = subprocess.run([str(harness), str(failing_starts), str(failing_capture), str(calls)],
                          capture_output=True, text=True, check=True)
    gets, leds, logs = [], [], []
    for line in done.stdout.splitlines():
        fields = dict(re.findall(r"(\w+)=(-?\d+)", line))
        if line.startswith("get "):
            gets.append({k: int(v) for k, v in fields.items()})
        elif line.startswith("leds "):
            leds.append({k: int(v) for k, v in fields.items()})
        else:
            logs.append(line.removeprefix("log: "))
    return gets, leds, logs


def test_camera_starts_once_and_drops_frames_while_exposure_settles(harness):
    gets, leds, logs = run_harness(harness, 0, -1, 2)
    # First call: start, 4 dropped frames (grey 10..13), the 5th (grey 14) is the image.
    assert gets[0] == dict(ok=1, starts=1, captures=5, first=14 - 128, last=14 - 128)
    assert gets[1] == dict(ok=1, starts=1, captures=6, first=15 - 128, last=15 - 128)
    assert leds[0]["red"] == 0 and leds[1]["red"] == 0
    assert any("camera ready" in line and "4 frames dropped" in line for line in logs)


def test_camera_that_does_not_start_lights_red_and_is_retried(harness):
    gets, leds, logs = run_harness(harness, 2, -1, 3)
    assert [g["ok"] for g in gets] == [0, 0, 1]
    assert [g["starts"] for g in gets] == [1, 2, 3]
    assert [led["red"] for led in leds[:3]] == [1, 1, 0]
    assert sum("error: camera start-up failed: simulated failure" in line for line in logs) == 2


def test_capture_error_lights_red_and_restarts_the_camera(harness):
    # Captures 0-4 (start-up), 5 (second image); capture 6 fails; the next call starts over.
    gets, leds, logs = run_harness(harness, 0, 6, 4)
    assert [g["ok"] for g in gets] == [1, 1, 0, 1]
    assert [g["starts"] for g in gets] == [1, 1, 1, 2]
    assert gets[3]["captures"] == 12 and gets[3]["first"] == 10 + 11 - 128
    assert [led["red"] for led in leds[:4]] == [0, 0, 1, 0]
    assert any("error: camera capture failed" in line for line in logs)


def test_responder_leds_and_a_log_line_the_monitor_parses(harness, model_dir):
    import json

    threshold = json.loads((model_dir / "model_info.json").read_text())["threshold_int8"]
    _, leds, logs = run_harness(harness, 0, -1, 0)
    # Person (90 >= threshold): blue toggled on, green on, yellow off; then no person.
    assert leds[0] == dict(red=0, blue=1, green=1, yellow=0)
    assert leds[1] == dict(red=0, blue=0, green=0, yellow=1)
    lines = [line for line in logs if "scores:" in line]
    first, second = (parse_detection(line) for line in lines)
    assert (first.scores, first.label) == ((-90, 90), "person")  # 90 >= the threshold
    assert (second.scores, second.label) == ((70, -70), "no_person")
    assert -70 < threshold <= 90
    assert (first.inference_us, second.inference_us) == (153249, 98760)


# --- the real build (needs the Ambiq SDK and the SparkFun BSP in the cache) ---------------------

def missing_dependencies() -> list[str]:
    from vwwtorch.firmware.toolchain.deps import installed, needed

    return [dep.name for dep in needed("sparkfun_edge") if installed(dep) is None]


@pytest.fixture(scope="module")
def edge_build(model_dir, tmp_path_factory):
    missing = missing_dependencies()
    if missing:
        pytest.skip(f"{', '.join(missing)} not in the cache: run "
                    "`vwwtorch firmware deps --board sparkfun_edge` to build for the SparkFun Edge")
    need("arm-none-eabi-g++")
    out = tmp_path_factory.mktemp("edge_build")
    done = subprocess.run([sys.executable, "-m", "vwwtorch", "firmware", "build", "--board",
                           "sparkfun_edge", "--model-dir", str(model_dir), "--out", str(out),
                           "--jobs", "2"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done.stdout


def symbols(elf: Path) -> dict[str, int]:
    listing = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True,
                             check=True).stdout
    return {parts[2]: int(parts[0], 16) for parts in map(str.split, listing.splitlines())
            if len(parts) == 3}


def test_deps_in_the_cache_are_the_pinned_trees():
    import json

    from vwwtorch.firmware.toolchain.deps import DEPENDENCIES, STAMP, deps_root

    if missing_dependencies():
        pytest.skip("run `vwwtorch firmware deps --board sparkfun_edge` to check the pinned trees")
    from vwwtorch.firmware.toolchain.deps import tree_digest

    for name in ("ambiq-sdk", "sparkfun-bsp"):
        # The files themselves, not the stamp the installer wrote: their digest is the pinned one.
        dep = DEPENDENCIES[name]
        assert tree_digest(deps_root() / name, dep.keep) == dep.tree_sha256
        assert json.loads((deps_root() / name / STAMP).read_text())["verified"]


def test_build_reports_flash_and_ram_against_the_apollo3_limits(edge_build):
    from vwwtorch.firmware.boards import APOLLO3_APP_FLASH, APOLLO3_SRAM, BOARDS

    out, stdout = edge_build
    assert (out / "vww_sparkfun_edge.axf").is_file() and (out / "vww_sparkfun_edge.bin").is_file()
    # The .axf is the linked program itself (no second name for it).
    assert json.loads((out / "build.json").read_text())["program"] == str(out / "vww_sparkfun_edge.axf")
    assert not list(out.glob("*.elf"))
    flash = re.search(r"flash ([\d,]+) of ([\d,]+) B", stdout)
    ram = re.search(r"RAM\s+([\d,]+) of ([\d,]+) B", stdout)
    assert flash and ram, stdout
    used_flash, flash_limit, used_ram, ram_limit = (int(g.replace(",", ""))
                                                    for g in (*flash.groups(), *ram.groups()))
    # Flash: what the bootloader can flash (the image is staged at 0x20000, below 0xFE000).
    assert (flash_limit, ram_limit) == (APOLLO3_APP_FLASH, APOLLO3_SRAM) == (909_184, 393_216)
    assert "0x20000" in stdout and "0xFE000" in stdout
    assert 0 < used_flash < flash_limit and 0 < used_ram < ram_limit
    # The early estimates `generate` checks against are honest for this board: code besides the
    # model and RAM besides the arena and the stack stay under them.
    edge = BOARDS["sparkfun_edge"]
    other = re.search(r"model ([\d,]+), packed weights [\d,]+, TFLM \+ app ([\d,]+)", stdout)
    static = re.search(r"arena ([\d,]+), stack ([\d,]+), other ([\d,]+)", stdout)
    code_bytes, other_ram = int(other[2].replace(",", "")), int(static[3].replace(",", ""))
    assert code_bytes <= edge.code_flash_estimate and other_ram <= edge.static_ram_estimate
    assert other_ram > 79 * 1024, "the camera frame buffer lives in static RAM"
    sizes = subprocess.run(["arm-none-eabi-size", str(out / "vww_sparkfun_edge.axf")],
                           capture_output=True, text=True, check=True).stdout.splitlines()[1]
    text, data, bss = (int(x) for x in sizes.split()[:3])
    assert used_flash == text + data and used_ram == data + bss
    # The raw image is exactly what goes to flash: code, constants, then the .data initial values.
    assert (out / "vww_sparkfun_edge.bin").stat().st_size == text + data


def test_run_refuses_the_board_build(edge_build, capsys):
    out, _ = edge_build
    image = out / "zeros.npy"
    np.save(image, np.zeros((96, 96, 1), np.uint8))
    code = cli_main(["firmware", "run", "--build", str(out), "--image", str(image)])
    assert_one_line_error(code, capsys.readouterr().err, "firmware flash --build", "firmware monitor")


def test_vector_table_and_entry_point_sit_at_0xC000(edge_build):
    out, _ = edge_build
    axf = out / "vww_sparkfun_edge.axf"
    header = subprocess.run(["arm-none-eabi-readelf", "-h", str(axf)], capture_output=True,
                            text=True, check=True).stdout
    entry = int(re.search(r"Entry point address:\s+0x([0-9a-f]+)", header)[1], 16)
    assert "hard-float ABI" in header
    sym = symbols(axf)
    assert sym["g_vww_vectors"] == 0xC000
    assert entry == sym["Reset_Handler"] | 1 and 0xC000 < entry < 0xC000 + 0xF4000   # Thumb bit
    # Sections: code from 0xC000, everything writable inside the 384 KB SRAM at 0x10000000.
    sections = subprocess.run(["arm-none-eabi-readelf", "-S", "-W", str(axf)],
                              capture_output=True, text=True, check=True).stdout
    found = dict(re.findall(r"\]\s+(\.\w+)\s+\w+\s+([0-9a-f]{8})", sections))
    assert int(found[".text"], 16) == 0xC000
    for name in (".stack", ".data", ".bss"):
        assert 0x10000000 <= int(found[name], 16) < 0x10000000 + 384 * 1024
    # The .bin starts with that vector table: initial SP = top of the stack, then the entry point;
    # the flasher's own sanity check agrees.
    app = (out / "vww_sparkfun_edge.bin").read_bytes()
    sp, reset = struct.unpack_from("<II", app)
    assert sp == sym["__stack_top"] and reset == entry
    assert img.describe_app_problem(app) is None
    attributes = subprocess.run(["arm-none-eabi-readelf", "-A", str(axf)], capture_output=True,
                                text=True, check=True).stdout
    assert "Tag_ABI_VFP_args: VFP registers" in attributes and "VFPv4-D16" in attributes


def test_apollo3_flags_reach_the_vendor_and_board_code(edge_build):
    out, _ = edge_build
    lines = [line for line in (out / "build.log").read_text().splitlines() if " -c " in line]
    board = [line for line in lines if "/boards/sparkfun_edge/" in line]
    assert len(board) >= 7
    for line in board:
        for flag in ("-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard",
                     "-DAM_PART_APOLLO3", "-DAM_PACKAGE_BGA"):
            assert flag in line, (flag, line)
    # The vendor library is compiled by our rules (or was, into the shared cache folder).
    map_text = (out / "vww_sparkfun_edge.map").read_text()
    assert "libambiq.a(am_hal_gpio.o)" in map_text and "libambiq.a(HM01B0.o)" in map_text


def test_edge_bin_goes_through_the_blob_writer(edge_build, tmp_path, capsys):
    out, _ = edge_build
    app = (out / "vww_sparkfun_edge.bin").read_bytes()
    blobs = tmp_path / "blobs"
    code = cli_main(["firmware", "flash", "--build", str(out), "--dry-run", "--out", str(blobs)])
    assert code == 0, capsys.readouterr().err
    ota = (blobs / "ota.bin").read_bytes()
    assert ota == img.make_ota_image(app)
    assert (blobs / "wire.bin").read_bytes() == img.make_wire_blob(ota)
    header = img.OtaHeader.parse(ota)
    assert header.crc_ok and header.load_address == 0xC000 and ota[128:128 + len(app)] == app


def test_edge_bin_flashes_through_the_simulated_bootloader(edge_build, capsys):
    out, _ = edge_build
    app = (out / "vww_sparkfun_edge.bin").read_bytes()
    wire = img.make_wire_blob(img.make_ota_image(app))
    fake = FakeBootloader()
    with fake:
        code = cli_main(["firmware", "flash", "--port", fake.port, "--build", str(out),
                         "--timeout", "2", "--hello-timeout", "2", "--no-prompt"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert fake.errors == [] and fake.reset_mode == 1
    assert fake.wire_image() == wire
    installed = b"".join(block[96:] for block in fake.blocks[::-1])   # arrived last block first
    assert img.OtaHeader.parse(installed).load_address == 0xC000
    assert installed[128:128 + len(app)] == app
    assert "done:" in captured.out


def test_build_without_the_sdk_names_the_deps_command(model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VWWTORCH_CACHE", str(tmp_path / "empty-cache"))
    code = cli_main(["firmware", "build", "--board", "sparkfun_edge", "--model-dir",
                     str(model_dir), "--out", str(tmp_path / "build")])
    err = capsys.readouterr().err
    assert code == 2 and "firmware deps" in err and "ambiq-sdk" in err and "Traceback" not in err


def test_a_flash_budget_too_small_for_every_packed_layer_builds_and_says_which(edge_build, model_dir, tmp_path):
    """The packed weights fill the flash budget the layers with the most MACs per byte first; what
    does not fit stays unpacked (CMSIS-NN, the same scores), and `firmware build` names it."""
    from vwwtorch.firmware.boards import BOARDS
    from vwwtorch.firmware.codegen.generate import generate, load_settings

    everything = load_settings(model_dir).packed_weights
    assert everything["layers"] and not everything["left_out"]  # the default budget packs them all
    tflite = model_dir.parent / "mini_mobilenet_int8.tflite"  # what model_dir was generated from
    smallest = min(layer["bytes"] for layer in everything["layers"])
    budget = len(tflite.read_bytes()) + BOARDS["sparkfun_edge"].code_flash_estimate + everything["bytes"] - smallest
    settings = generate(tflite, tmp_path / "model", board="sparkfun_edge", flash_budget=budget)
    left_out = [layer["layer"] for layer in settings.packed_weights["left_out"]]
    assert left_out and settings.packed_weights["bytes"] < everything["bytes"]
    done = subprocess.run([sys.executable, "-m", "vwwtorch", "firmware", "build", "--board", "sparkfun_edge",
                           "--model-dir", str(tmp_path / "model"), "--out", str(tmp_path / "build"), "--jobs", "2"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"packed weights {settings.packed_weights['bytes']:,}," in done.stdout
    assert "left out by the flash budget" in done.stdout and all(name in done.stdout for name in left_out)
    assert "left out" not in edge_build[1]
