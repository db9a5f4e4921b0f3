"""Gate failures: reported like user errors (one clear message, no traceback) but with exit code 1.

Exit code 2 stays reserved for "you gave us something wrong"; 1 means the model was converted but
did not prove itself (a parity seam or a static check failed).
"""

from vwwtorch.errors import UserError


class GateFailed(UserError):
    exit_code = 1
