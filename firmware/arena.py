"""Tensor arena sizing: measure with the `tflite_micro` Python runtime, then add a margin.

The runtime is TFLM itself (reference kernels, x86-64). It records every arena allocation; after
`AllocateTensors()` in a generous arena its "Arena allocation total" is exactly the smallest arena
the model fits in (tests/test_firmware_generate.py checks that total - 16 bytes fails). We read
that figure rather than search for the smallest arena by trial: the runtime crashes on some
failed allocations instead of raising.

The margin. The runtime is a 64-bit build; a Cortex-M build differs in two ways: 32-bit pointers
make TFLM's bookkeeping smaller, and CMSIS-NN kernels keep slightly bigger per-op data and ask for
scratch buffers the reference kernels do not. For TFLM's person_detect.tflite (vwwtorch's default
architecture) the runtime measures 85,264 B while qemu_m4 uses 82,292 B (reference kernels) and
82,308 B (CMSIS-NN). The configured arena is the measurement plus max(5 %, 2 KB), rounded to 16 B,
so a model whose CMSIS-NN scratch outgrows the 32-bit savings still fits; the firmware prints the
arena it really uses at start-up (`vwwtorch firmware run` shows it).
"""

from __future__ import annotations

import re

from vwwtorch.contract.errors import UserError
from vwwtorch.contract.native_output import captured_native_output

ALIGN = 16
ARENA_MARGIN_FRACTION = 0.05   # of the measured size
ARENA_MARGIN_MIN = 2048        # bytes
MEASURE_ARENA = 64 << 20       # the generous arena the measurement allocates in (16-aligned:
                               # an odd size would add alignment loss to the total)
TOTAL_LINE = re.compile(r"Arena allocation total (\d+) bytes")


def measure_arena(model: bytes) -> int:
    """The arena bytes the TFLM runtime allocates for the model (a multiple of 16)."""
    from tflite_micro.python.tflite_micro import runtime

    with captured_native_output() as captured:
        try:
            interpreter = runtime.Interpreter.from_bytes(model, arena_size=MEASURE_ARENA)
            interpreter.print_allocations()
            failure = None
        except RuntimeError as exc:
            failure = exc
    sink_text = "".join(captured)
    if failure is not None:
        detail = next((line for line in sink_text.splitlines() if line.strip()), str(failure))
        raise UserError(f"the TFLM runtime cannot allocate this model: {detail.strip()}")
    match = TOTAL_LINE.search(sink_text)
    if match is None:
        raise UserError("the tflite_micro runtime did not report its arena use; "
                        "is the installed tflite_micro package too old?")
    return int(match.group(1))


def arena_with_margin(measured: int) -> int:
    margin = max(ARENA_MARGIN_MIN, int(measured * ARENA_MARGIN_FRACTION))
    return (measured + margin + ALIGN - 1) // ALIGN * ALIGN
