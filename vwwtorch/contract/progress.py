"""Progress bars that draw only where someone watches.

`progress_bar` is tqdm with one change: asked to show (`disable=False`, the default), it shows only
when stderr is a terminal. Logs, pipes and CI then get no bar fragments, so stderr stays for what
needs attention (a failing command prints exactly one line there).
"""

from __future__ import annotations


def progress_bar(*args, disable: bool | None = False, **kwargs):
    from tqdm import tqdm

    return tqdm(*args, disable=None if disable is False else disable, **kwargs)
