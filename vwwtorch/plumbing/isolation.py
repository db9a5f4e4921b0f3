"""Native runtimes run in a child process, so that their crash is one line, not the end of vwwtorch.

TFLM's and LiteRT's kernels trust the model: a malformed file that passes every check that can be
made without running it (`vwwtorch.contract.tflite.check_model`) can still make them fault or abort
(`tests/test_fuzz.py` finds such files in seconds). Run in a child, such a crash becomes a
`UserError` saying so. One child is spawned on first use (about 0.4 s: no torch, no inherited state)
and kept for the rest of the command; a child that died is replaced. Its own stdout and stderr go
nowhere: the runtimes' last words before an abort are not vwwtorch's one line. An exception raised
in the child comes back as a `UserError` (one the runtime wrapper raised as itself, any other with its
type and first line). When the command stops
while the child works (Ctrl-C, SIGTERM), the child is killed with it.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from vwwtorch.plumbing.errors import UserError

_state: dict = {"pool": None}
TIMEOUT_SCALE = 1.0  # the tests' fuzzing shortens every timeout


def _silence_child() -> None:
    sink = os.open(os.devnull, os.O_WRONLY)
    os.dup2(sink, 1)
    os.dup2(sink, 2)
    os.close(sink)


def _pool() -> ProcessPoolExecutor:
    if _state["pool"] is None:
        _state["pool"] = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_silence_child)
    return _state["pool"]


def _discard() -> None:
    """Kill the child (whatever it is doing) and forget it; the next call starts a new one."""
    pool, _state["pool"] = _state["pool"], None
    if pool is None:
        return
    for process in list(getattr(pool, "_processes", {}).values()):
        process.kill()
    pool.shutdown(wait=True, cancel_futures=True)


def run_isolated(what: str, func, *args, timeout: float):
    """`func(*args)` in the child; `what` names the runtime in the message when it crashes there or
    does not finish within `timeout` seconds (a mutated stride or shape can make a kernel loop for hours)."""
    from concurrent.futures import TimeoutError as Timeout

    try:
        return _pool().submit(func, *args).result(timeout=timeout * TIMEOUT_SCALE)
    except Timeout:
        _discard()
        raise UserError(f"{what} did not finish within {timeout * TIMEOUT_SCALE:g} s on this model; it asks for "
                        "far more work than a microcontroller model does") from None
    except BrokenProcessPool:
        _discard()
        raise UserError(f"{what} crashed on this model (its process was killed by a fault or an abort): the "
                        "file is damaged or asks the runtime for something it cannot do") from None
    except UserError:
        raise
    except Exception as exc:  # raised in the child by the runtime (or by what it returned): about the model
        raise UserError(f"{what} failed on this model ({type(exc).__name__}: {_first_line(exc)})") from None
    except BaseException:  # a stop signal: the child may be mid-model
        _discard()
        raise


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else "no detail"
