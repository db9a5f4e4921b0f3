"""Stopping on request: SIGTERM and Ctrl-C become exceptions where the program is, so that every
staged output is removed on the way out, and long work that can stop cleanly (training) asks to be
told instead of interrupted.

Outside such work SIGTERM raises `Terminated` (exit 143) and Ctrl-C raises `KeyboardInterrupt`
(exit 130). Inside `graceful()`, the first signal only records the request, which the work polls
with `requested()` at a safe point (the end of a training batch); a second Ctrl-C interrupts at once.

An exception raised from a signal handler lands wherever Python happens to be, and some library code
there swallows it (an import inside a compiled module was seen to). So the signal is also remembered,
and `check()`, called on every progress-bar step, raises it again.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
SIGNAL_EXIT_CODES = {"SIGINT": EXIT_INTERRUPTED, "SIGTERM": EXIT_TERMINATED}


class Terminated(BaseException):
    """SIGTERM outside graceful work."""


_state = {"graceful": False, "requested": None, "raised": None}
_EXCEPTIONS = {"SIGTERM": Terminated, "SIGINT": KeyboardInterrupt}


def _on_sigterm(signum, frame) -> None:
    if _state["graceful"]:
        _state["requested"] = _state["requested"] or "SIGTERM"
        return
    _state["raised"] = "SIGTERM"
    raise Terminated()


def _on_sigint(signum, frame) -> None:
    if _state["graceful"] and _state["requested"] is None:
        _state["requested"] = "SIGINT"
        return
    _state["raised"] = "SIGINT"
    raise KeyboardInterrupt()


def check() -> None:
    """Raise again a stop signal whose exception was swallowed where it landed."""
    if _state["raised"] is not None:
        raise _EXCEPTIONS[_state["raised"]]()


def requested() -> str | None:
    """"SIGTERM" or "SIGINT" once a graceful stop was asked for, else None."""
    return _state["requested"]


@contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """For the whole command: SIGTERM and SIGINT raise where the program is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm), signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
        _state.update(graceful=False, requested=None, raised=None)


@contextmanager
def graceful() -> Iterator[None]:
    """Signals only record a stop request while this block runs (see `requested`)."""
    saved = dict(_state)
    _state.update(graceful=True, requested=None)
    try:
        yield
    finally:
        _state.update(graceful=saved["graceful"], requested=saved["requested"])
