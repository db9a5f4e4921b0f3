"""Child programs (make, compilers, QEMU, git) that end when the command ends.

`make -j` starts compilers as its own children. Killing `make` alone (what `subprocess.run` does when
an exception interrupts it) leaves those compilers running under PID 1, still writing objects into
`--out` after the command has reported. So every child starts its own session, which makes it the
leader of a new process group that its whole tree inherits, and when the block around it is left by
an exception (SIGTERM and Ctrl-C arrive as exceptions, see `stopping`) the whole group is ended --
SIGTERM, then SIGKILL after a grace period -- before the exception goes on to be reported.

A new session also means a Ctrl-C typed in the terminal reaches only vwwtorch, which then ends the
group itself: one place decides, so no child sees the signal before the cleanup is ready.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from typing import Iterator

GRACE_SECONDS = 3.0      # for a group to exit after SIGTERM before it is killed
GONE_SECONDS = 5.0       # for a killed group to disappear (zombies wait for their new parent to reap them)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _wait_gone(process: subprocess.Popen, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        try:
            process.wait(timeout=max(0.0, min(0.05, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            pass
        if process.returncode is not None and not _group_alive(process.pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


@contextmanager
def _stop_signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM are only recorded while the block runs, then delivered as they would have
    been; a second Ctrl-C cannot cut a cleanup short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: pending.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if pending:
            signal.raise_signal(pending[0])


def end_group(process: subprocess.Popen) -> None:
    """End `process` and every process in its group; returns once they are gone (or after a bound)."""
    with _stop_signals_held():
        if process.returncode is None or _group_alive(process.pid):
            for sig, seconds in ((signal.SIGTERM, GRACE_SECONDS), (signal.SIGKILL, GONE_SECONDS)):
                try:
                    os.killpg(process.pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
                if _wait_gone(process, seconds):
                    break


@contextmanager
def child_group(args: list[str], **popen_kwargs) -> Iterator[subprocess.Popen]:
    """`subprocess.Popen(args, ...)` as the leader of its own process group; the group is ended
    whenever the block is left, by an exception or with something of the group still running."""
    process = subprocess.Popen(args, start_new_session=True, **popen_kwargs)
    try:
        yield process
    finally:
        end_group(process)
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def run_child(args: list[str], *, capture_output: bool = False, text: bool = False, check: bool = False,
              timeout: float | None = None, input=None, **popen_kwargs) -> subprocess.CompletedProcess:
    """`subprocess.run` for a child in its own process group (see the module docstring)."""
    if capture_output:
        popen_kwargs.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if input is not None:
        popen_kwargs["stdin"] = subprocess.PIPE
    with child_group(args, text=text, **popen_kwargs) as process:
        out, err = process.communicate(input, timeout=timeout)
    done = subprocess.CompletedProcess(args, process.returncode, out, err)
    if check:
        done.check_returncode()
    return done
