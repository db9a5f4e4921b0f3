"""Run a `.tflite` classifier with the TFLite interpreter from `ai_edge_litert`.

`run_tflite(path, images)` is the one call other parts of vwwtorch use: it feeds a batch of images
through a float32 or int8 model one at a time (the models have a static batch of 1) and returns
float probabilities. Images are NHWC (or NHW for a one-channel model) and come either as

- uint8 bytes, as a camera delivers them (already resized to the model resolution), or
- float32 in [-1, 1], the eval preprocessing (x / 127.5 - 1) of `vwwtorch.data.transforms`, or
- int8, already the int8 model's own input tensors (passed through unchanged).

For an int8 model, inputs are quantized the way the firmware does it: when the input quantization
is the reference one (scale 1/127.5, zero point -1) a byte b becomes int8 b - 128 exactly; float
inputs that lie on the byte grid are mapped back to their bytes first, so both input forms give the
same int8 tensor. Outputs are dequantized with the model's own output parameters.

`reference_kernels=True` selects TFLite's reference kernels (`OpResolverType.BUILTIN_REF`), whose
integer arithmetic matches TFLite Micro's bit for bit; the default optimized kernels may differ by
one LSB.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vwwtorch.contract.errors import UserError

# The reference input quantization: a camera byte b maps to int8 b - 128.
INPUT_SCALE = 1 / 127.5
INPUT_ZERO_POINT = -1


@dataclass(frozen=True)
class Quantization:
    scale: float
    zero_point: int

    def is_reference_input(self) -> bool:
        return abs(self.scale * 127.5 - 1) < 1e-6 and self.zero_point == INPUT_ZERO_POINT


def bytes_to_unit_range(images: np.ndarray) -> np.ndarray:
    """uint8 bytes -> float32 [-1, 1], exactly as the training eval preprocessing does it."""
    return images.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def unit_range_to_bytes(images: np.ndarray) -> np.ndarray | None:
    """The uint8 bytes behind float inputs made by `x / 127.5 - 1`, or None if they are not on that grid."""
    raw = (np.asarray(images, dtype=np.float64) + 1.0) * 127.5
    grid = np.rint(raw)
    if raw.size and (np.abs(raw - grid).max() > 1e-3 or grid.min() < 0 or grid.max() > 255):
        return None
    return grid.astype(np.uint8)


class TFLiteModel:
    """One `.tflite` classifier loaded into an `ai_edge_litert` interpreter (batch 1, NHWC)."""

    def __init__(self, model: str | os.PathLike | bytes, *, reference_kernels: bool = False,
                 name: str | None = None):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        from vwwtorch.bridge.quiet import quiet_output

        content = model if isinstance(model, (bytes, bytearray)) else _read(Path(model))
        self.name = name or ("TFLite model" if isinstance(model, (bytes, bytearray)) else str(model))
        resolver = OpResolverType.BUILTIN_REF if reference_kernels else OpResolverType.AUTO
        try:
            # One thread: results must not depend on how work is split. Quiet: the runtime
            # announces its XNNPACK delegate on stderr.
            with quiet_output():
                self._interp = Interpreter(model_content=bytes(content), num_threads=1,
                                           experimental_op_resolver_type=resolver)
                self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise UserError(f"{self.name} is not a loadable TFLite model ({_first_line(exc)})") from None
        inputs, outputs = self._interp.get_input_details(), self._interp.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise UserError(f"{self.name} has {len(inputs)} inputs and {len(outputs)} outputs; "
                            "a classifier has one of each")
        self._in, self._out = inputs[0], outputs[0]
        self.input_shape = tuple(int(d) for d in self._in["shape"])  # (1, H, W, C)
        self.input_dtype = np.dtype(self._in["dtype"])
        self.output_dtype = np.dtype(self._out["dtype"])
        self.num_classes = int(np.prod(self._out["shape"][1:]))
        self.input_quant = Quantization(*_quant(self._in))
        self.output_quant = Quantization(*_quant(self._out))

    @property
    def is_int8(self) -> bool:
        return self.input_dtype == np.int8 and self.output_dtype == np.int8

    def model_inputs(self, images: np.ndarray) -> np.ndarray:
        """The batch as the model's input tensor type: float32, or int8 quantized like the firmware."""
        images = self._check_shape(np.asarray(images))
        if images.dtype == self.input_dtype == np.int8:
            return images  # already the model's own input tensors
        if self.input_dtype == np.float32:
            return bytes_to_unit_range(images) if images.dtype == np.uint8 else images.astype(np.float32)
        if self.input_dtype != np.int8:
            raise UserError(f"{self.name}: input type {self.input_dtype} is not supported (float32 or int8)")
        data = images if images.dtype == np.uint8 else unit_range_to_bytes(images)
        if data is not None and self.input_quant.is_reference_input():
            return (data.astype(np.int16) - 128).astype(np.int8)
        real = bytes_to_unit_range(data) if data is not None else images.astype(np.float64)
        q = self.input_quant
        return np.clip(np.rint(real / q.scale) + q.zero_point, -128, 127).astype(np.int8)

    def raw_outputs(self, images: np.ndarray, progress: bool = False) -> np.ndarray:
        """Output tensors as the model returns them (int8 for an int8 model), shape (N, classes)."""
        inputs = self.model_inputs(images)
        out = np.empty((len(inputs), self.num_classes), dtype=self.output_dtype)
        items = range(len(inputs))
        if progress:
            from vwwtorch.contract.progress import progress_bar

            items = progress_bar(items, desc=Path(self.name).name, unit="img", leave=False)
        for i in items:
            self._interp.set_tensor(self._in["index"], inputs[i:i + 1])
            self._interp.invoke()
            out[i] = self._interp.get_tensor(self._out["index"]).reshape(-1)
        return out

    def dequantize(self, raw: np.ndarray) -> np.ndarray:
        if self.output_dtype == np.float32:
            return raw.astype(np.float32)
        q = self.output_quant
        return ((raw.astype(np.float32) - q.zero_point) * q.scale).astype(np.float32)

    def probabilities(self, images: np.ndarray, progress: bool = False) -> np.ndarray:
        return self.dequantize(self.raw_outputs(images, progress=progress))

    def _check_shape(self, images: np.ndarray) -> np.ndarray:
        _, h, w, c = self.input_shape
        if images.ndim == 3 and c == 1:
            images = images[..., None]
        if images.ndim != 4 or images.shape[1:] != (h, w, c):
            raise UserError(f"{self.name} expects images of shape [N, {h}, {w}, {c}], "
                            f"got {list(images.shape)}")
        return images


def run_tflite(tflite_path: str | os.PathLike, images: np.ndarray, *, reference_kernels: bool = False,
               progress: bool = False) -> np.ndarray:
    """Float probabilities (N, classes) of a float32 or int8 `.tflite` classifier.

    `images`: NHWC uint8 bytes or float32 in [-1, 1] (see the module docstring).
    """
    return TFLiteModel(tflite_path, reference_kernels=reference_kernels).probabilities(images, progress)


def raw_outputs(model: bytes, images: np.ndarray, reference_kernels: bool = False) -> np.ndarray:
    """Module-level form of `TFLiteModel.raw_outputs`, for running in a child process."""
    return TFLiteModel(model, reference_kernels=reference_kernels).raw_outputs(images)


def _read(path: Path) -> bytes:
    if not path.is_file():
        raise UserError(f"TFLite model {path} does not exist")
    return path.read_bytes()


def _quant(details: dict) -> tuple[float, int]:
    scale, zero_point = details.get("quantization", (0.0, 0))
    return float(scale), int(zero_point)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
