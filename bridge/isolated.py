"""Run the int8 interpreters in child processes.

Two reasons. TFLite and TFLM kernels abort the whole process on some malformed or unusual models
(a failed TFLITE_CHECK is `abort()`, not an exception), and a gate must report that, not die with
it. And the TFLM run and the reference-kernel TFLite run are independent, so on a multi-core
machine they run side by side.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool


class RuntimeCrashed(RuntimeError):
    """The child running an interpreter died (abort, segfault) instead of returning."""


class Isolated:
    """Start calls in fresh processes (spawned: no inherited torch/TF state); collect them later."""

    def __init__(self):
        self._pools: list[ProcessPoolExecutor] = []

    def submit(self, func, *args) -> Future:
        pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        self._pools.append(pool)
        return pool.submit(func, *args)

    @staticmethod
    def result(future: Future, what: str):
        try:
            return future.result()
        except BrokenProcessPool:
            raise RuntimeCrashed(f"{what} crashed (the process aborted) on this model") from None

    def close(self) -> None:
        for pool in self._pools:
            pool.shutdown(wait=True, cancel_futures=True)
        self._pools.clear()

    def __enter__(self) -> "Isolated":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
