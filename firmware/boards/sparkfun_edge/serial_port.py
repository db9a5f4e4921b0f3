"""Opening the board's serial port, with its usual failures said in one line (flash and monitor)."""

from __future__ import annotations

import errno

from vwwtorch.plumbing.errors import UserError


def open_port(name: str, baud: int, timeout: float):
    """Open `name` exclusively, turning the usual failures into one clear line."""
    import serial

    try:
        return serial.Serial(name, baud, timeout=timeout, write_timeout=timeout, exclusive=True)
    except ValueError as exc:
        raise UserError(f"cannot use serial port {name} at {baud} baud: {exc}") from None
    except serial.SerialException as exc:
        raise UserError(describe_open_error(name, exc)) from None


def describe_open_error(name: str, exc: Exception) -> str:
    code = getattr(exc, "errno", None)
    text = str(exc)
    listing = "list ports with `python -m serial.tools.list_ports`"
    if code in (errno.ENOENT, errno.ENXIO, errno.ENODEV) or "FileNotFoundError" in text:
        return f"serial port {name} does not exist; is the board plugged in? ({listing})"
    if code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EBUSY) or "exclusively lock" in text:
        return (f"serial port {name} is busy: another program (a serial monitor, screen, "
                f"`vwwtorch firmware monitor`) has it open; close it and try again")
    if code in (errno.EACCES, errno.EPERM) or "Access is denied" in text:
        return (f"no permission to open {name} (on Linux: sudo usermod -aG dialout $USER, then log "
                f"in again); on Windows the port may be open in another program")
    return f"cannot open serial port {name}: {text}"
