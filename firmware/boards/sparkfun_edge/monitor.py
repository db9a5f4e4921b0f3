"""`vwwtorch firmware monitor`: read the board's UART log and show its detection scores.

The board logs one detection line per inference (`vwwtorch.contract.detection_log`: the line every
board prints, and its parser, which also reads TFLM's own example line). Everything else the board
prints (boot banner, camera errors) is passed through unchanged.
"""

from __future__ import annotations

import argparse
import sys
import time

from vwwtorch.contract.detection_log import Detection, parse_detection

DEFAULT_BAUD = 115200      # the application's printf UART, not the bootloader's 921600


def format_score(d: Detection) -> str:
    label = "PERSON   " if d.is_person else "no person"
    parts = [label, "scores " + " ".join(f"{s:4d}" for s in d.scores)]
    if d.inference_us is not None:
        parts.append(f"{d.inference_us / 1000:.1f} ms")
    return "  ".join(parts)


def monitor(port, *, count: int | None = None, duration: float | None = None,
            scores_only: bool = False, out=print) -> tuple[int, int]:
    """Print lines from an open port until `count` score lines, `duration` seconds or Ctrl-C.

    Returns (score lines, of which person).
    """
    seen = persons = 0
    pending = b""
    deadline = None if duration is None else time.monotonic() + duration
    try:
        while (count is None or seen < count) and (deadline is None or time.monotonic() < deadline):
            pending += port.readline()
            if not pending.endswith(b"\n"):
                continue                   # read timeout, maybe mid-line: keep what came so far
            line = pending.decode("utf-8", errors="replace").rstrip("\r\n")
            pending = b""
            score = parse_detection(line)
            if score is None:
                if not scores_only and line.strip():
                    out(line)
                continue
            seen += 1
            persons += score.is_person
            out(format_score(score))
    except KeyboardInterrupt:
        pass                               # Ctrl-C is the normal way to stop watching
    return seen, persons


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "monitor", help="print the detection scores the board logs on its UART",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Open the board's serial port and print its score lines; other lines (start-up,\n"
                    "errors) pass through unchanged. Opening the port resets the SparkFun Edge, so\n"
                    "the first lines are its start-up. Stop with Ctrl-C.\n\n"
                    "Score lines are the firmware's `image N: scores: S0 S1 -> LABEL (T us)` (TFLM's own\n"
                    "`Person score: .. No person score: ..` is understood too).")
    p.add_argument("--port", required=True, help="serial port of the board (e.g. /dev/ttyUSB0, COM3)")
    p.add_argument("--baud", type=int, default=DEFAULT_BAUD, metavar="RATE",
                   help="baud rate of the application's log (default %(default)s)")
    p.add_argument("--count", type=int, metavar="N", help="stop after N score lines")
    p.add_argument("--duration", type=float, metavar="SEC", help="stop after SEC seconds")
    p.add_argument("--scores-only", action="store_true", help="hide lines that carry no scores")
    p.set_defaults(func=run_monitor)


def run_monitor(args) -> int:
    from vwwtorch.plumbing.errors import UserError
    from vwwtorch.firmware.boards.sparkfun_edge.serial_port import open_port

    if args.count is not None and args.count < 1:
        raise UserError("--count must be at least 1")
    if args.duration is not None and args.duration <= 0:
        raise UserError("--duration must be positive")
    with open_port(args.port, args.baud, timeout=0.2) as port:
        print(f"listening on {args.port} at {args.baud} baud (Ctrl-C to stop)", file=sys.stderr)
        try:
            seen, persons = monitor(port, count=args.count, duration=args.duration,
                                    scores_only=args.scores_only)
        except OSError as exc:
            raise UserError(f"serial port {args.port} failed: {exc}") from None
    print(f"{seen} score line(s), {persons} with a person", file=sys.stderr)
    return 0
