"""Run an int8 `.tflite` with TensorFlow Lite Micro itself (the `tflite_micro` Python runtime).

This is the interpreter and the reference kernels the firmware builds, compiled for the host. It
also measures the arena: the runtime's recording allocator reports the bytes it really used, which
is the figure a board's tensor arena must hold (plus per-target scratch, see vwwtorch/firmware).
"""

from __future__ import annotations

import numpy as np

from vwwtorch.firmware.arena import TOTAL_LINE
from vwwtorch.contract.native_output import captured_native_output

# Big enough for any model the firmware could hold; the recording allocator reports what is used.
DEFAULT_ARENA = 4 << 20


def run_tflm(model: bytes, inputs: np.ndarray, arena_size: int = DEFAULT_ARENA) -> tuple[np.ndarray, int]:
    """(raw int8 outputs [N, classes], arena bytes used) for int8 inputs [N, H, W, C]."""
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena_size)
    details = interpreter.get_output_details(0)
    classes = int(np.prod(details["shape"][1:]))
    out = np.empty((len(inputs), classes), dtype=details["dtype"])
    for i in range(len(inputs)):
        interpreter.set_input(np.ascontiguousarray(inputs[i:i + 1]), 0)
        interpreter.invoke()
        out[i] = interpreter.get_output(0).reshape(-1)
    return out, arena_used_bytes(interpreter)


def arena_used_bytes(interpreter) -> int:
    """Parse the recording allocator's report, which the runtime only prints (to fd 1 or 2)."""
    with captured_native_output() as captured:
        interpreter.print_allocations()
    text = captured[0]
    match = TOTAL_LINE.search(text)
    if not match:
        raise RuntimeError(f"the TFLM runtime did not report its arena use: {text[:200]!r}")
    return int(match.group(1))
