"""Progress bars that draw only where someone watches, and that are where a stop signal lands.

`progress_bar` is tqdm with two changes. Asked to show (`disable=False`, the default), it shows only
when stderr is a terminal: logs, pipes and CI then get no bar fragments, so stderr stays for what
needs attention (a failing command prints exactly one line there). And every step calls
`stopping.check()`, so a Ctrl-C or SIGTERM whose exception some library swallowed still stops the
long loop that the bar counts.
"""

from __future__ import annotations

from functools import lru_cache

from vwwtorch.plumbing import stopping


@lru_cache(maxsize=None)
def _bar_class():
    from tqdm import tqdm

    class CheckedBar(tqdm):
        def update(self, n=1):
            stopping.check()
            return super().update(n)

    return CheckedBar


def progress_bar(*args, disable: bool | None = False, **kwargs):
    return _bar_class()(*args, disable=None if disable is False else disable, **kwargs)
