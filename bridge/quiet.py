"""Silence TensorFlow, onnx2tf and the TFLite converter, which log from C++ straight to fd 1 and 2.

Python-level redirection does not reach those, so the file descriptors themselves are pointed at a
temporary file. If the work inside fails, what was captured is replayed on stderr so that the
cause is not lost.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile


@contextlib.contextmanager
def quiet_output(enabled: bool = True):
    if not enabled:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            if failed:
                log.seek(0)
                tail = log.read()[-4000:].decode(errors="replace")
                if tail.strip():
                    print(tail, file=sys.stderr)
