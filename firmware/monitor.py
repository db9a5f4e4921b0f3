"""`vwwtorch firmware monitor`: read the board's UART log and show its detection scores.

The detector logs one line per inference. `parse_score_line` understands the vwwtorch form

    scores: <no_person> <person> [person|no_person] [threshold <t>] [<ms> ms]

(the same `scores:` prefix as the host build, int8 scores, decision against the model's threshold,
inference time from the hardware timer) and TFLM's original example form

    Person score: <person> No person score: <no_person>

Everything else the board prints (boot banner, camera errors) is passed through unchanged.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass

DEFAULT_BAUD = 115200      # the application's printf UART, not the bootloader's 921600

_VWW = re.compile(r"\bscores?\s*:\s*(?P<no_person>[-+]?\d+)[\s,;]+(?P<person>[-+]?\d+)", re.I)
_TFLM = re.compile(r"\bperson score\s*:\s*(?P<person>[-+]?\d+)[\s,;]*"
                   r"no[ _]person score\s*:\s*(?P<no_person>[-+]?\d+)", re.I)
_DECISION = re.compile(r"\b(no[ _-]?person|person)\b", re.I)
_THRESHOLD = re.compile(r"\bthreshold\W{0,3}(?P<t>[-+]?\d+)", re.I)
_TIME = re.compile(r"(?P<ms>\d+(?:\.\d+)?)\s*ms\b", re.I)


@dataclass(frozen=True)
class ScoreLine:
    no_person: int
    person: int
    decision: str | None = None       # "person" / "no_person" as the board decided, if it says
    threshold: int | None = None
    time_ms: float | None = None

    @property
    def is_person(self) -> bool:
        if self.decision is not None:
            return self.decision == "person"
        return self.person > self.no_person


def parse_score_line(line: str) -> ScoreLine | None:
    """The scores in one log line, or None if the line carries none."""
    match = _VWW.search(line) or _TFLM.search(line)
    if match is None:
        return None
    rest = line[match.end():]
    decision = _DECISION.search(rest)
    threshold = _THRESHOLD.search(rest)
    elapsed = _TIME.search(rest)
    return ScoreLine(
        no_person=int(match["no_person"]), person=int(match["person"]),
        decision=None if decision is None else
        ("person" if decision[1].lower() == "person" else "no_person"),
        threshold=None if threshold is None else int(threshold["t"]),
        time_ms=None if elapsed is None else float(elapsed["ms"]))


def format_score(score: ScoreLine) -> str:
    label = "PERSON   " if score.is_person else "no person"
    parts = [label, f"person {score.person:4d}", f"no person {score.no_person:4d}"]
    if score.threshold is not None:
        parts.append(f"threshold {score.threshold}")
    if score.time_ms is not None:
        parts.append(f"{score.time_ms:g} ms")
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
            score = parse_score_line(line)
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
                    "Score lines look like `scores: <no_person> <person> person threshold <t> <ms> ms`\n"
                    "(TFLM's `Person score: .. No person score: ..` is understood too).")
    p.add_argument("--port", required=True, help="serial port of the board (e.g. /dev/ttyUSB0, COM3)")
    p.add_argument("--baud", type=int, default=DEFAULT_BAUD, metavar="RATE",
                   help="baud rate of the application's log (default %(default)s)")
    p.add_argument("--count", type=int, metavar="N", help="stop after N score lines")
    p.add_argument("--duration", type=float, metavar="SEC", help="stop after SEC seconds")
    p.add_argument("--scores-only", action="store_true", help="hide lines that carry no scores")
    p.set_defaults(func=run_monitor)


def run_monitor(args) -> int:
    from vwwtorch.contract.errors import UserError
    from vwwtorch.firmware.flasher import open_port

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
