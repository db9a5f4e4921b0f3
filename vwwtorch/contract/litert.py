"""Run a `.tflite` classifier with the TFLite interpreter of `ai_edge_litert` (LiteRT).

`TFLiteModel` feeds a batch one image at a time (the models have a static batch of 1) and returns
raw or dequantized outputs. Images are NHWC (or NHW for a one-channel model) and come as
- uint8 camera bytes at the model's size: an int8 model gets them through the deployment rule's
  byte-to-int8 table derived from its own input quantization (`vwwtorch.contract.deployment`), a
  float model gets them normalized ([-1, 1] unless told otherwise);
- int8, already the int8 model's own input tensors (passed through unchanged);
- float32 for a float model, already normalized.

`reference_kernels=True` selects TFLite's reference kernels (`OpResolverType.BUILTIN_REF`), whose
integer arithmetic matches TFLite Micro's bit for bit, except FULLY_CONNECTED's requantization (one
rounding where TFLM rounds twice: up to 1 LSB). The default optimized kernels (XNNPACK, ruy) round
differently: up to 11 LSB on a third of the quickstart model's validation images, 7 LSB on two
thirds of random inputs. `device_kernels=True` (what `report` and `predict` use) runs an int8 model in TFLM's
own runtime (`vwwtorch.contract.tflm`), the interpreter and kernels the firmware compiles, so its
outputs are the device's, bit for bit; a float model in LiteRT. Either runs in a child process
(`vwwtorch.plumbing.isolation`), where a crash on a malformed model is one line.

LiteRT validates some things TFLM does not: TFLM's own person_detect.tflite quantizes its 1-D bias
tensors per channel along dimension 3, which LiteRT refuses ("quantized_dimension out of range").
`repair_for_litert` rewrites such a file into the equivalent one LiteRT accepts (the dimension of a
1-D tensor's per-channel quantization can only be 0) and lists what it changed; `TFLiteModel` applies
it and keeps the list in `repairs`, so reports can say so. The integer data is not touched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vwwtorch.contract.deployment import SYMMETRIC, Normalization, byte_to_int8
from vwwtorch.plumbing.errors import UserError
from vwwtorch.plumbing.names import printable


DEVICE_CHUNK = 256  # images per call into the TFLM child process


@dataclass(frozen=True)
class Quantization:
    scale: float
    zero_point: int


def repair_for_litert(data: bytes) -> tuple[bytes, list[str]]:
    """(bytes LiteRT loads, what was changed); the input unchanged and [] when nothing needed it."""
    from vwwtorch.contract.tflite import pack, unpack

    model = unpack(bytes(data))
    repairs = []
    for graph in model.subgraphs or []:
        for tensor in graph.tensors or []:
            q = tensor.quantization
            rank = len(tensor.shape) if tensor.shape is not None else 0
            if q is not None and q.scale is not None and len(q.scale) > 1 and q.quantizedDimension >= max(rank, 1):
                name = tensor.name.decode(errors="replace") if isinstance(tensor.name, bytes) else str(tensor.name)
                repairs.append(f"per-channel quantization of {rank}-D tensor {name or '(unnamed)'} along "
                               f"dimension {q.quantizedDimension} set to dimension 0")
                q.quantizedDimension = 0
    if not repairs:
        return bytes(data), []
    return pack(model, size_hint=len(data)), repairs


class TFLiteModel:
    """One `.tflite` classifier loaded into an `ai_edge_litert` interpreter (batch 1, NHWC)."""

    def __init__(self, model: str | os.PathLike | bytes, *, reference_kernels: bool = False,
                 name: str | None = None, normalization: Normalization = SYMMETRIC, device_kernels: bool = False):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        from vwwtorch.plumbing.native_output import quiet_output

        original = model if isinstance(model, (bytes, bytearray)) else _read(Path(model))
        self.name = name or ("TFLite model" if isinstance(model, (bytes, bytearray)) else printable(model))
        self.normalization = normalization
        self._device = None
        self._reference = reference_kernels
        if device_kernels:
            from vwwtorch.contract.tflite import read_tflite

            # Nothing is loaded here: the runtime (TFLM for an int8 model, LiteRT for a float one)
            # runs in a child process, where a crash on a malformed model is one line.
            self._take_details(read_tflite(bytes(original), self.name).require_classifier(self.name),
                               bytes(original))
            return
        content, self.repairs = repair_for_litert(original)
        resolver = OpResolverType.BUILTIN_REF if self._reference else OpResolverType.AUTO
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

    def _take_details(self, info, model: bytes) -> None:
        """The model's input and output as the file states them (already validated)."""
        from vwwtorch.contract.tflite import NUMPY_TYPES

        self._device, self.repairs = model, []
        self.input_shape = tuple(int(d) for d in info.input.shape)
        if len(self.input_shape) != 4 or self.input_shape[0] != 1 or self.input_shape[3] not in (1, 3):
            raise UserError(f"{self.name} takes input of shape {list(self.input_shape)}, not one grey or RGB image "
                            "[1, H, W, 1 or 3]")
        for tensor in (info.input, info.output):
            if tensor.dtype not in ("INT8", "FLOAT32"):
                raise UserError(f"{self.name}: {tensor.dtype} {'input' if tensor is info.input else 'output'} is not "
                                "supported (float32 or int8)")
        if len(info.output.shape) < 2 or info.output.shape[0] != 1:
            raise UserError(f"{self.name} gives output of shape {list(info.output.shape)}, not one row of class "
                            "scores [1, classes]")
        self.input_dtype = np.dtype(NUMPY_TYPES[info.input.dtype])
        self.output_dtype = np.dtype(NUMPY_TYPES[info.output.dtype])
        self.num_classes = int(np.prod(info.output.shape[1:]))
        self.input_quant = Quantization(info.input.scale or 0.0, info.input.zero_point or 0)
        self.output_quant = Quantization(info.output.scale or 0.0, info.output.zero_point or 0)

    @property
    def kernels(self) -> str:
        """Which kernels compute the outputs, for reports."""
        if self._device is not None and self.is_int8:
            return "TFLM runtime (tflite_micro: the firmware's interpreter and reference kernels)"
        return "LiteRT " + ("reference" if self._reference else "optimized") + " kernels"

    @property
    def is_int8(self) -> bool:
        return self.input_dtype == np.int8 and self.output_dtype == np.int8

    def model_inputs(self, images: np.ndarray) -> np.ndarray:
        """The batch as the model's input tensor type: float32, or int8 through the byte-to-int8 table."""
        images = self._check_shape(np.asarray(images))
        if images.dtype == self.input_dtype == np.int8:
            return images  # already the model's own input tensors
        if self.input_dtype == np.float32:
            return self.normalization.real(images) if images.dtype == np.uint8 else images.astype(np.float32)
        if self.input_dtype != np.int8:
            raise UserError(f"{self.name}: input type {self.input_dtype} is not supported (float32 or int8)")
        if images.dtype != np.uint8:
            raise UserError(f"{self.name} takes camera bytes (uint8) or int8 tensors, not {images.dtype}")
        return byte_to_int8(self.input_quant.scale, self.input_quant.zero_point, self.name)[images]

    def raw_outputs(self, images: np.ndarray, progress: bool = False) -> np.ndarray:
        """Output tensors as the model returns them (int8 for an int8 model), shape (N, classes)."""
        inputs = self.model_inputs(images)
        if self._device is not None:
            return self._device_outputs(inputs, progress)
        out = np.empty((len(inputs), self.num_classes), dtype=self.output_dtype)
        items = range(len(inputs))
        if progress:
            from vwwtorch.plumbing.progress import progress_bar

            items = progress_bar(items, desc=Path(self.name).name, unit="img", leave=False)
        for i in items:
            self._interp.set_tensor(self._in["index"], inputs[i:i + 1])
            self._interp.invoke()
            out[i] = self._interp.get_tensor(self._out["index"]).reshape(-1)
        return out

    def _device_outputs(self, inputs: np.ndarray, progress: bool) -> np.ndarray:
        """Outputs computed in a child process (a crash there is one line), a chunk at a time: TFLM's for
        an int8 model, LiteRT's for a float one."""
        from vwwtorch.plumbing.isolation import run_isolated
        from vwwtorch.plumbing.progress import progress_bar
        from vwwtorch.contract.tflm import ALLOCATION_SECONDS, SECONDS_PER_IMAGE, tflm_scores

        out = np.empty((len(inputs), self.num_classes), dtype=self.output_dtype)
        with progress_bar(total=len(inputs), desc=Path(self.name).name, unit="img", leave=False,
                          disable=not progress) as bar:
            for start in range(0, len(inputs), DEVICE_CHUNK):
                chunk = inputs[start:start + DEVICE_CHUNK]
                rows = tflm_scores(self._device, chunk) if self.is_int8 else \
                    run_isolated("LiteRT", raw_outputs, self._device, chunk, self._reference,
                                 timeout=ALLOCATION_SECONDS + SECONDS_PER_IMAGE * len(chunk))
                out[start:start + len(chunk)] = rows.reshape(len(chunk), -1)
                bar.update(len(chunk))
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


def raw_outputs(model: bytes, images: np.ndarray, reference_kernels: bool = False) -> np.ndarray:
    """Module-level form of `TFLiteModel.raw_outputs`, for running in a child process."""
    return TFLiteModel(model, reference_kernels=reference_kernels).raw_outputs(images)


def _read(path: Path) -> bytes:
    from vwwtorch.contract.tflite import load_tflite

    return load_tflite(path)[0]


def _quant(details: dict) -> tuple[float, int]:
    scale, zero_point = details.get("quantization", (0.0, 0))
    return float(scale), int(zero_point)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
