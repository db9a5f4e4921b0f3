"""Capture what native code (TensorFlow, onnx2tf, the TFLM runtime) writes to file descriptors 1 and 2.

Those libraries log from C/C++ straight to the process's stdout/stderr, which Python-level
redirection does not reach, and the TFLM runtime reports its arena use only by printing it. So the
descriptors themselves are pointed at a temporary file for the duration of the block.

`quiet_output` silences such a block; if the work inside fails, what was captured is replayed on
stderr so that the cause is not lost.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import tempfile

from vwwtorch.plumbing.errors import UserError


@contextlib.contextmanager
def captured_native_output():
    """Yields a list that holds the captured text (one string) once the block has ended."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    captured: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield captured
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            libc.fflush(None)  # C stdio buffers too, before the descriptors go back
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sink.seek(0)
            captured.append(sink.read().decode(errors="replace"))


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
            except UserError:
                raise  # already one clear line; the library chatter would only bury it
            except BaseException:
                failed = True
                raise
    finally:
        tail = "".join(captured)[-4000:] if failed else ""
        if tail.strip():
            print(tail, file=sys.stderr)
