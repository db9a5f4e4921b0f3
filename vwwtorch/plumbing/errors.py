"""The exceptions that mean "tell the user in one line": never a traceback.

`UserError`: the user gave us something wrong (a path, a file, a flag); exit code 2.
`GateFailed`: the work was done but did not prove itself (a parity seam, a static check, firmware
scores); exit code 1. `Stopped`: Ctrl-C or SIGTERM ended resumable work (exit 130 or 143). The CLI
prints each as a single `vwwtorch: error: ...` (or `vwwtorch: stopped: ...`) line.
"""


class UserError(Exception):
    """A problem with the user's input, reported without a traceback (exit 2)."""

    exit_code = 2
    label = "error"


class GateFailed(UserError):
    """A verification gate failed (exit 1): the output exists but is not verified."""

    exit_code = 1


class Stopped(UserError):
    """Work stopped on request (Ctrl-C: exit 130, SIGTERM: exit 143), saying how to pick it up again."""

    label = "stopped"

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code
