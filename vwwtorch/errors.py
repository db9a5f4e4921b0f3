"""The one exception type that means "the user gave us something wrong".

The CLI turns a `UserError` into a single line on stderr and exit code 2; anything else is a bug
and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input (paths, files, flags), reported without a traceback."""

    exit_code = 2
