"""The one TFLM runner: an int8 `.tflite` through TensorFlow Lite Micro itself (the `tflite_micro`
Python runtime), and the tensor arena it really uses.

The runtime is the interpreter and reference kernels the firmware compiles, built for the host, so
its outputs are what the firmware must print. Its recording allocator reports every arena byte;
after `AllocateTensors()` in a generous arena the "Arena allocation total" is exactly the smallest
arena the model fits in, so that figure is read instead of searching by trial (the runtime crashes
on some failed allocations instead of raising). The runtime only prints that report, and logs from
C++ to fd 1 and 2, so both are captured.
"""

from __future__ import annotations

import re

import numpy as np

from vwwtorch.plumbing.errors import UserError
from vwwtorch.plumbing.native_output import captured_native_output

# Generous, 16-aligned (an odd size would add alignment loss to the measured total).
MEASURE_ARENA = 64 << 20
TOTAL_LINE = re.compile(r"Arena allocation total (\d+) bytes")


def interpreter(model: bytes, arena_size: int = MEASURE_ARENA):
    """A TFLM interpreter with its tensors allocated; a one-line UserError if the model cannot be."""
    from tflite_micro.python.tflite_micro import runtime

    with captured_native_output() as captured:
        try:
            return runtime.Interpreter.from_bytes(model, arena_size=arena_size)
        except RuntimeError as exc:
            failure = exc
    detail = next((line.strip() for line in "".join(captured).splitlines() if line.strip()), str(failure))
    raise UserError(f"the TFLM runtime cannot allocate this model: {detail}")


def arena_used(tflm) -> int:
    """The arena bytes an allocated interpreter uses (a multiple of 16)."""
    with captured_native_output() as captured:
        tflm.print_allocations()
    match = TOTAL_LINE.search("".join(captured))
    if match is None:
        raise UserError("the tflite_micro runtime did not report its arena use; "
                        "is the installed tflite_micro package too old?")
    return int(match.group(1))


RUNTIME = "the TFLM runtime"
# Bounds for a model in the child process: allocating takes milliseconds, and an inference of the
# largest MobileNetV1 (1.0 at 224x224, 569 M MACs) well under a second with the reference kernels.
ALLOCATION_SECONDS = 60
SECONDS_PER_IMAGE = 10


def _measure_here(model: bytes) -> int:
    return arena_used(interpreter(model))


def measure_arena(model: bytes) -> int:
    """The arena bytes the model uses, measured in a child process (`vwwtorch.plumbing.isolation`)."""
    from vwwtorch.plumbing.isolation import run_isolated

    return run_isolated(RUNTIME, _measure_here, bytes(model), timeout=ALLOCATION_SECONDS)


def run_tflm(model: bytes, inputs: np.ndarray) -> tuple[np.ndarray, int]:
    """(raw int8 outputs [N, classes], arena bytes used) for int8 input tensors [N, H, W, C]."""
    tflm = interpreter(model)
    details = tflm.get_output_details(0)
    classes = int(np.prod(details["shape"][1:]))
    out = np.empty((len(inputs), classes), dtype=details["dtype"])
    for i in range(len(inputs)):
        tflm.set_input(np.ascontiguousarray(inputs[i:i + 1]), 0)
        tflm.invoke()
        out[i] = tflm.get_output(0).reshape(-1)
    return out, arena_used(tflm)


def _scores_here(model: bytes, inputs: np.ndarray) -> np.ndarray:
    return run_tflm(model, inputs)[0]


def tflm_scores(model: bytes, inputs: np.ndarray) -> np.ndarray:
    """Raw int8 outputs [N, classes] of the TFLM runtime, run in a child process (see `measure_arena`)."""
    from vwwtorch.plumbing.isolation import run_isolated

    return run_isolated(RUNTIME, _scores_here, bytes(model), np.ascontiguousarray(inputs),
                        timeout=ALLOCATION_SECONDS + SECONDS_PER_IMAGE * len(inputs))
