"""Small JSON records a stage writes for the next (a firmware build's build.json, a generated model's
model_info.json), read back as their dataclass with one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

from vwwtorch.plumbing.errors import UserError

T = TypeVar("T")


def load_record(path: str | Path, cls: type[T], *, missing: str, remedy: str) -> T:
    path = Path(path)
    try:
        return cls(**json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise UserError(missing) from None
    except (ValueError, TypeError) as exc:
        raise UserError(f"{path} is damaged ({exc}); {remedy}") from None
