"""Download one pinned file: to a temporary name beside the target, sha256-checked, then renamed."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from vwwtorch.plumbing.errors import UserError


def download_verified(url: str, target: Path, sha256: str, *, hint: str, quiet: bool = False) -> Path:
    """`url` saved as `target` if its sha256 is `sha256`; a one-line UserError otherwise (with `hint`,
    what to do without network). Never leaves a partial file."""
    import urllib.request

    from vwwtorch.plumbing.progress import progress_bar

    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{target.name}-", suffix=".download", dir=target.parent)
    digest = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=60)
            except OSError as exc:
                raise UserError(f"cannot download {url}: {getattr(exc, 'reason', exc)}; {hint}") from None
            total = int(response.headers.get("Content-Length") or 0) or None
            with response, progress_bar(total=total, unit="B", unit_scale=True, desc=target.name,
                                        disable=True if quiet else None) as bar:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        if digest.hexdigest() != sha256:
            raise UserError(f"{url} has sha256 {digest.hexdigest()}, not the pinned {sha256}; not installed")
        os.replace(tmp_name, target)
        return target
    finally:
        Path(tmp_name).unlink(missing_ok=True)
