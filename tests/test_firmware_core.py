"""The firmware's portable C++ pieces that need no TFLM, compiled with g++ and checked from Python.

- core/file_images.cc must turn every image file into the same int8 tensor that
  `vwwtorch.firmware.toolchain.images.load_tensors` (the Python side of `firmware run`) makes;
- core/tiny_format.cc (the boards' vsnprintf) must print what the C library prints.

TFLM's logging header is replaced by a two-line stand-in, so these run wherever g++ does (CI too).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vwwtorch.firmware.toolchain.compiler import firmware_dir
from vwwtorch.firmware.toolchain.images import load_tensors

TABLE = ((np.arange(256) * 7 + 3) % 256 - 128).astype(np.int8)  # the driver's byte table

MICRO_LOG_STUB = """
#pragma once
#include <cstddef>
void MicroPrintf(const char* format, ...);
"""

DRIVER = r"""
// image_dump ROWS COLS CHANNELS FILE...: every tensor GetImage() yields, one hex line each.
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "file_images.h"
#include "tiny_format.h"

void MicroPrintf(const char* format, ...) {
  va_list args;
  va_start(args, format);
  std::vprintf(format, args);
  va_end(args);
  std::printf("\n");
}

namespace {
void* Open(const char* path) { return std::fopen(path, "rb"); }
long Size(void* f) {
  FILE* file = static_cast<FILE*>(f);
  const long here = std::ftell(file);
  std::fseek(file, 0, SEEK_END);
  const long size = std::ftell(file);
  std::fseek(file, here, SEEK_SET);
  return size;
}
bool Read(void* f, uint8_t* dst, size_t n) { return std::fread(dst, 1, n, static_cast<FILE*>(f)) == n; }
void Close(void* f) { std::fclose(static_cast<FILE*>(f)); }

int Format(char* buffer, size_t size, const char* format, ...) {
  va_list args;
  va_start(args, format);
  const int n = vww::TinyVsnprintf(buffer, size, format, args);
  va_end(args);
  return n;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "format") {
#define SHOW(...) do { char ours[64]; char libc[64]; \
    const int a = Format(ours, sizeof(ours), __VA_ARGS__); \
    const int b = std::snprintf(libc, sizeof(libc), __VA_ARGS__); \
    std::printf("%d|%s|%d|%s\n", a, ours, b, libc); } while (0)
    SHOW("%d %i %u", -42, 7, 4000000000u);
    SHOW("%5d|%-5d|%05d", 42, 42, -42);
    SHOW("%ld %lld %zu", -1234567L, -123456789012345LL, static_cast<size_t>(99));
    SHOW("%x %X %o %08x", 0xbeefu, 0xbeefu, 8u, 0x1fu);
    SHOW("%s|%8s|%-8s|%.2s", "abc", "abc", "abc", "abc");
    SHOW("%c%c %%", 'o', 'k');
    SHOW("%f %.3f %.0f %8.2f", 3.14159, -2.5, 7.5, 1.005);
    SHOW("%d%%", -2147483647 - 1);
    // Truncation: the return value is the full length, the buffer ends in a NUL.
    char small[6];
    const int n = Format(small, sizeof(small), "%s-%d", "abcdef", 123);
    std::printf("%d|%s\n", n, small);
    return 0;
  }
  if (argc < 5) return 2;
  const int rows = std::atoi(argv[1]), cols = std::atoi(argv[2]), channels = std::atoi(argv[3]);
  // Not b - 128 on purpose: a reader that ignored the table would show.
  static int8_t table[256];
  for (int b = 0; b < 256; ++b) table[b] = static_cast<int8_t>((b * 7 + 3) % 256 - 128);
  vww::InitFileImages({Open, Size, Read, Close}, argv + 4, argc - 4, table);
  std::vector<int8_t> tensor(static_cast<size_t>(rows) * cols * channels);
  for (;;) {
    const vww::ImageStatus status = vww::GetImage(rows, cols, channels, tensor.data());
    if (status == vww::ImageStatus::kNoMoreImages) return 0;
    if (status == vww::ImageStatus::kError) return 1;
    for (int8_t v : tensor) std::printf("%02x", static_cast<uint8_t>(v));
    std::printf("\n");
  }
}
"""


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    assert shutil.which("g++"), "g++ is missing: sudo apt-get install g++"
    root = tmp_path_factory.mktemp("core")
    stub = root / "stub" / "tensorflow" / "lite" / "micro" / "micro_log.h"
    stub.parent.mkdir(parents=True)
    stub.write_text(MICRO_LOG_STUB)
    (root / "driver.cc").write_text(DRIVER)
    core = firmware_dir() / "core"
    program = root / "image_dump"
    done = subprocess.run(
        ["g++", "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", f"-I{core}", f"-I{root / 'stub'}",
         str(root / "driver.cc"), str(core / "file_images.cc"), str(core / "tiny_format.cc"),
         "-o", str(program)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return program


def dump(driver, shape, *files) -> tuple[int, list[np.ndarray], str]:
    done = subprocess.run([str(driver), *map(str, shape), *map(str, files)], capture_output=True,
                          text=True)
    tensors, messages = [], []
    for line in done.stdout.splitlines():
        if line.startswith("error:"):
            messages.append(line)
        else:
            tensors.append(np.frombuffer(bytes.fromhex(line), dtype=np.int8).reshape(shape))
    return done.returncode, tensors, "\n".join(messages)


def write_bmp8(path: Path, pixels: np.ndarray, top_down: bool = False, palette=None) -> None:
    """An 8-bit palettized BMP written by hand (PIL always writes bottom-up)."""
    rows, cols = pixels.shape
    stride = (cols + 3) // 4 * 4
    body = bytearray()
    order = range(rows) if top_down else range(rows - 1, -1, -1)
    for r in order:
        body += pixels[r].tobytes() + bytes(stride - cols)
    palette = palette if palette is not None else [(i, i, i) for i in range(256)]
    table = b"".join(bytes((b, g, r, 0)) for r, g, b in palette)
    offset = 14 + 40 + len(table)
    header = b"BM" + struct.pack("<IHHI", offset + len(body), 0, 0, offset)
    info = struct.pack("<IiiHHIIiiII", 40, cols, -rows if top_down else rows, 1, 8, 0, len(body),
                       2835, 2835, len(palette), 0)
    path.write_bytes(header + info + table + body)


@pytest.fixture(scope="module")
def pixels():
    rng = np.random.default_rng(5)
    return rng.integers(0, 256, size=(3, 6, 7, 3), dtype=np.uint8)  # odd widths exercise BMP padding


def test_every_file_type_gives_the_tensor_the_python_side_gives(driver, pixels, tmp_path):
    grey = pixels[..., 0]
    files = {
        "grey.pgm": lambda p: Image.fromarray(grey[0], "L").save(p),
        "pil.bmp": lambda p: Image.fromarray(grey[1], "L").save(p),
        "bottom_up.bmp": lambda p: write_bmp8(p, grey[2]),
        "top_down.bmp": lambda p: write_bmp8(p, grey[0], top_down=True),
        "one.npy": lambda p: np.save(p, grey[1]),
        "hwc.npy": lambda p: np.save(p, grey[2][..., None]),
        "batch.npy": lambda p: np.save(p, (grey.astype(np.int16) - 100).astype(np.int8)[..., None]),
        "tensors.bin": lambda p: (grey[:2].astype(np.int16) - 128).astype(np.int8).tofile(p),
    }
    paths = []
    for name, write in files.items():
        paths.append(tmp_path / name)
        write(paths[-1])
    code, tensors, errors = dump(driver, (6, 7, 1), *paths)
    assert code == 0, errors
    expected = np.concatenate([load_tensors(p, 6, 7, 1, TABLE) for p in paths])
    assert len(tensors) == len(expected) == 1 + 1 + 1 + 1 + 1 + 1 + 3 + 2
    np.testing.assert_array_equal(np.stack(tensors), expected)
    # Spot check, independent of both readers: a pixel byte b is fed as TABLE[b], int8 data as is.
    np.testing.assert_array_equal(tensors[0][..., 0], TABLE[grey[0]])
    np.testing.assert_array_equal(tensors[-1][..., 0], (grey[1].astype(np.int16) - 128).astype(np.int8))


def test_rgb_files_for_a_three_channel_model(driver, pixels, tmp_path):
    paths = [tmp_path / "rgb.ppm", tmp_path / "rgb.bmp", tmp_path / "rgb.npy"]
    Image.fromarray(pixels[0], "RGB").save(paths[0])
    Image.fromarray(pixels[1], "RGB").save(paths[1])
    np.save(paths[2], pixels)
    code, tensors, errors = dump(driver, (6, 7, 3), *paths)
    assert code == 0, errors
    expected = np.concatenate([load_tensors(p, 6, 7, 3, TABLE) for p in paths])
    np.testing.assert_array_equal(np.stack(tensors), expected)


@pytest.mark.parametrize("name, make, phrase", [
    ("big.pgm", lambda p: Image.new("L", (8, 6)).save(p), "image is 8x6x1, the model takes 7x6x1"),
    ("big.bmp", lambda p: Image.new("L", (7, 5)).save(p), "image is 7x5x1"),
    ("rgb.bmp", lambda p: Image.new("RGB", (7, 6)).save(p), "image is 7x6x3, the model takes 7x6x1"),
    ("colour.bmp", lambda p: write_bmp8(p, np.zeros((6, 7), np.uint8),
                                        palette=[(i, 0, 0) for i in range(256)]), "colour-palette"),
    ("float.npy", lambda p: np.save(p, np.zeros((6, 7), np.float32)), "another type"),
    ("shape.npy", lambda p: np.save(p, np.zeros((7, 6), np.uint8)), "shape does not hold"),
    ("odd.bin", lambda p: p.write_bytes(bytes(43)), "43 bytes is no image"),
])
def test_wrong_files_are_refused_with_one_clear_line(driver, tmp_path, name, make, phrase):
    path = tmp_path / name
    make(path)
    code, tensors, errors = dump(driver, (6, 7, 1), path)
    assert code == 1 and not tensors
    assert len(errors.splitlines()) == 1 and phrase in errors, errors


def test_missing_file(driver, tmp_path):
    code, _, errors = dump(driver, (6, 7, 1), tmp_path / "nope.pgm")
    assert code == 1 and "cannot open" in errors


def test_tiny_format_prints_what_the_c_library_prints(driver):
    done = subprocess.run([str(driver), "format"], capture_output=True, text=True, check=True)
    lines = done.stdout.splitlines()
    assert len(lines) == 9
    for line in lines[:-1]:
        # "length|text" from TinyVsnprintf, then the same from snprintf; the text may hold '|'.
        fields = line.split("|")
        middle = len(fields) // 2
        assert fields[:middle] == fields[middle:], line
    assert lines[-1] == "10|abcde"
