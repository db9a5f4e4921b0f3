"""Silence TensorFlow, onnx2tf and the TFLite converter, which log from C++ straight to fd 1 and 2.

Python-level redirection does not reach those, so the file descriptors themselves are pointed at a
temporary file. If the work inside fails, what was captured is replayed on stderr so that the
cause is not lost.
"""

from __future__ import annotations

import contextlib
import sys

from vwwtorch.contract.native_output import captured_native_output


@contextlib.contextmanager
def quiet_output(enabled: bool = True):
    if not enabled:
        yield
        return
    failed, captured = False, []
    try:
        with captured_native_output() as captured:
            try:
                yield
            except BaseException:
                failed = True
                raise
    finally:
        tail = "".join(captured)[-4000:] if failed else ""
        if tail.strip():
            print(tail, file=sys.stderr)
