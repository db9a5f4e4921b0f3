"""Where vwwtorch keeps what it downloads: `$VWWTORCH_CACHE`, default `~/.cache/vwwtorch`.

    firmware/deps/<name>/     pinned third-party sources (`vwwtorch firmware deps`)
    pretrained/<name>/        pinned trained models and the checkpoints made from them
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("VWWTORCH_CACHE") or Path.home() / ".cache" / "vwwtorch")


def deps_root() -> Path:
    return cache_root() / "firmware" / "deps"
