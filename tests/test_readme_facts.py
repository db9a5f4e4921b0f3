"""What the README quotes stays what the code and BENCHMARKS.md say: links and anchors resolve, the
SparkFun Edge log lines are what the firmware and `firmware monitor` print, and the Edge build's
figures are BENCHMARKS.md's."""

import re
from pathlib import Path

from vwwtorch.contract.detection_log import format_detection, parse_detection
from vwwtorch.firmware.boards.sparkfun_edge.monitor import format_score

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
LINK = re.compile(r"\]\(([^)\s]+)\)")
N = r"(\d{1,3}(?:,\d{3})*)"  # 818,916


def github_anchor(heading: str) -> str:
    """GitHub's heading id: lowercase, punctuation dropped (not - or _), spaces to '-'."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    lines = path.read_text().splitlines()
    return {github_anchor(line.lstrip("#")) for line in lines if re.match(r"#{1,6} ", line)}


def test_every_relative_link_and_anchor_resolves():
    for doc in ("README.md", "BENCHMARKS.md"):
        for target in LINK.findall((REPO / doc).read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            path, _, anchor = target.partition("#")
            file = REPO / (path or doc)
            assert file.exists(), (doc, target)
            if anchor:
                assert anchor in anchors(file), (doc, target)


def test_the_edge_log_lines_are_what_the_firmware_and_monitor_print():
    firmware_line = re.search(r"```\n(image \d+: scores:.*)\n```", README)[1]
    detection = parse_detection(firmware_line)
    assert detection is not None and format_detection(detection) == firmware_line
    monitor_line = re.search(r"```\n(PERSON .*)\n```", README)[1]
    assert monitor_line == format_score(detection)


def test_the_edge_build_figures_are_benchmarks():
    block = re.search(r"```\nbuilt build/edge/.*?```", README, re.S)[0]
    flash = re.search(rf"flash {N} of [\d,]+ B \(([\d.]+%)\): model {N}, packed weights {N}, TFLM \+ app {N}",
                      block).groups()
    ram, arena = re.search(rf"RAM +{N} of [\d,]+ B \([\d.]+%\): arena {N}", block).groups()
    benchmarks = (REPO / "BENCHMARKS.md").read_text()
    row = re.search(rf"\| quickstart \| as converted \| {N} \(([\d.]+%)\) \| {N} \| {N} \| {N} "
                    rf"\| {N} \([\d.]+%\) \| {N} \|", benchmarks).groups()
    assert (*flash, ram, arena) == row
