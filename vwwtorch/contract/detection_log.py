"""The detection line every board logs, written once: its format and its one parser.

Each board prints one line per inference through core's `LogDetection`
(firmware/core/detection_log.cc), on stdout, semihosting or a UART, whatever the board:

    image <n>: scores: <score 0> <score 1> ... -> <label> (<microseconds> us)

with `(no timer)` instead of the time on a board without one. Scores are the int8 outputs, in label
order; the label is the board's decision against the model's threshold. `parse_detection` also reads
TFLM's own person_detection example line, `Person score: <p> No person score: <n>`, so a board
flashed with TFLM's example can be watched too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

LINE = re.compile(r"image (?P<image>\d+): scores:(?P<scores>(?: -?\d+)+) -> (?P<label>.+?) "
                  r"\((?:(?P<us>\d+) us|no timer)\)\s*$")
TFLM_EXAMPLE = re.compile(r"person score\s*:\s*(?P<person>-?\d+)[\s,;]*no[ _]person score\s*:\s*(?P<no>-?\d+)",
                          re.I)


@dataclass(frozen=True)
class Detection:
    scores: tuple[int, ...]
    label: str | None = None          # the board's decision (None: the line does not say)
    image: int | None = None
    inference_us: int | None = None

    @property
    def is_person(self) -> bool:
        if self.label is not None:
            return self.label == "person"
        return self.scores[1] > self.scores[0]  # TFLM's example: no person first, then person


def format_detection(d: Detection) -> str:
    """The line as `LogDetection` prints it."""
    timing = f"{d.inference_us} us" if d.inference_us is not None else "no timer"
    return f"image {d.image}: scores: {' '.join(map(str, d.scores))} -> {d.label} ({timing})"


def parse_detection(line: str) -> Detection | None:
    """The detection in one log line, or None when the line carries none."""
    match = LINE.search(line)
    if match is not None:
        us = match["us"]
        return Detection(tuple(int(x) for x in match["scores"].split()), match["label"], int(match["image"]),
                         int(us) if us is not None else None)
    match = TFLM_EXAMPLE.search(line)
    if match is not None:
        return Detection((int(match["no"]), int(match["person"])))
    return None
