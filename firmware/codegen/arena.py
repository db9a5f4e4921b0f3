"""Tensor arena sizing: the TFLM runtime's measurement (`vwwtorch.contract.tflm.measure_arena`) plus
a margin.

The runtime is a 64-bit build; a Cortex-M build differs in two ways: 32-bit pointers make TFLM's
bookkeeping smaller, and CMSIS-NN kernels keep slightly bigger per-op data and ask for scratch
buffers the reference kernels do not. For TFLM's person_detect.tflite (vwwtorch's default
architecture) the runtime measures 85,264 B while the emulated Cortex-M4 uses 82,292 B (reference
kernels) and 82,308 B (CMSIS-NN). The configured arena is the measurement plus max(5 %, 2 KB),
rounded to 16 B, so a model whose CMSIS-NN scratch outgrows the 32-bit savings still fits; the
firmware prints the arena it really uses at start-up (`vwwtorch firmware run` shows it).
"""

from __future__ import annotations

ALIGN = 16
ARENA_MARGIN_FRACTION = 0.05   # of the measured size
ARENA_MARGIN_MIN = 2048        # bytes


def arena_with_margin(measured: int) -> int:
    margin = max(ARENA_MARGIN_MIN, int(measured * ARENA_MARGIN_FRACTION))
    return (measured + margin + ALIGN - 1) // ALIGN * ALIGN
