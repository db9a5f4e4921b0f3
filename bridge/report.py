"""parity.json, parity.md and the table printed on the console.

`parity.json` carries the marker `"verified": true` only when every check and seam passed; a failed
run writes the same content without it (and with `"passed": false` and the list of failures).
"""

from __future__ import annotations

import json
from pathlib import Path

from vwwtorch.bridge.parity import ParityResult
from vwwtorch.plumbing.outputs import write_file

REFERENCE = {"int8_bytes": 300_568, "tflm_arena_bytes": 85_264}  # TFLM person_detect.tflite


def build_report(result: ParityResult, context: dict) -> dict:
    report = {"verified": True} if result.passed else {}
    report["passed"] = result.passed
    report.update(context)
    report["checks"] = [c.as_dict() for c in result.checks]
    report["seams"] = [s.as_dict() for s in result.seams]
    report["footprint"] = dict(result.footprint, reference=REFERENCE)
    report["notes"] = result.notes
    if not result.passed:
        report["failures"] = result.failures()
    return report


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 and value else f"{value:.4f}".rstrip("0").rstrip(".") or "0"
    return str(value)


def _seam_figures(seam: dict) -> str:
    m = seam["metrics"]
    if seam["key"] == "torch_vs_tflite_int8" and m:
        low, high = m["top1_agreement_interval"]
        drop_low, drop_high = m["accuracy_drop_interval_points"]
        return (f"agreement {m['top1_agreement']:.2%} ({m['disagreements']} of {m['images']} differ; "
                f"{m['confidence']:.0%} interval {low:.2%}-{high:.2%}), "
                f"acc {m['float_accuracy']:.2%} -> {m['int8_accuracy']:.2%} "
                f"(drop {m['accuracy_drop_points']:.2f} pt, interval {drop_low:.2f} to {drop_high:.2f}), "
                f"|p diff| mean {m['mean_abs_diff']:.4f} max {m['max_abs_diff']:.4f}")
    if seam["key"] == "kept_quantization" and m:
        return (f"{m['images_differing']} of {m['images']} images differ from {m['reference']} "
                f"(max {m['max_lsb_diff']} LSB)")
    if seam["key"] == "tflite_int8_accuracy" and m:
        per_class = ", ".join(f"class {k} {v:.2%}" for k, v in m["accuracy_per_class"].items())
        return f"accuracy {m['int8_accuracy']:.2%} ({m['errors']} wrong; {per_class})"
    if seam["key"] == "tflm_vs_tflite_ref" and m:
        return f"{m['mismatched_images']} of {m['images']} images differ (max {m['max_lsb_diff']} LSB)"
    if m:
        return f"max |p diff| {m['max_abs_diff']:.2e}, mean {m['mean_abs_diff']:.2e}"
    return seam["note"]


def table_rows(report: dict) -> list[tuple[str, str, str, str]]:
    """(gate, result, measured, requirement) for every check and seam."""
    rows = [(c["name"], "pass" if c["passed"] else "FAIL", c["detail"], "") for c in report["checks"]]
    rows += [(s["title"], "pass" if s["passed"] else "FAIL", _seam_figures(s), s["requirement"])
             for s in report["seams"]]
    return rows


def footprint_rows(report: dict) -> list[tuple[str, str, str]]:
    fp, ref = report["footprint"], report["footprint"]["reference"]
    arena = fp.get("tflm_arena_bytes")
    return [
        ("int8 file", f"{fp['int8_bytes']:,} B", f"{ref['int8_bytes']:,} B"),
        ("TFLM arena used", f"{arena:,} B" if arena is not None else "not measured", f"{ref['tflm_arena_bytes']:,} B"),
        ("ops", ", ".join(f"{k} x{v}" for k, v in fp["op_histogram"].items()), "CONV_2D, DEPTHWISE_CONV_2D, "
         "AVERAGE_POOL_2D, RESHAPE, SOFTMAX"),
    ]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # "|p diff|" must not end the table cell


def to_markdown(report: dict) -> str:
    lines = [f"# Parity report: {'VERIFIED' if report['passed'] else 'FAILED'}", ""]
    data = report.get("data", {})
    if data:
        lines += [f"Parity on {data.get('parity_images')} images of split `{data.get('parity_split')}` of "
                  f"`{data.get('dir')}`" + (f"; calibrated on {data['calibration_images']} images of split "
                                            f"`{data['calibration_split']}`" if data.get("calibration_images")
                                            else "") + ".", ""]
    lines += ["| gate | result | measured | requirement |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table_rows(report)]
    lines += ["", "| footprint | this model | TFLM person_detect reference |", "|---|---|---|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in footprint_rows(report)]
    worst = [(s["title"], s["worst"]) for s in report["seams"] if s["worst"]]
    if worst:
        lines += ["", "## Worst images per seam", ""]
        for title, rows in worst:
            cells = "; ".join(", ".join(f"{k} {_fmt(v)}" for k, v in row.items()) for row in rows)
            lines.append(f"- {title}: {cells}")
    if report.get("notes", {}).get("litert_repairs"):
        lines += ["", "## Repaired for LiteRT on load (TFLM runs the file as it is)", ""]
        lines += [f"- {r}" for r in report["notes"]["litert_repairs"]]
    if report.get("failures"):
        lines += ["", "## Failures", ""] + [f"- {f}" for f in report["failures"]]
    return "\n".join(lines) + "\n"


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"parity: {'VERIFIED' if report['passed'] else 'FAILED'}", title_justify="left")
    for column in ("gate", "result", "measured", "requirement"):
        table.add_column(column, overflow="fold")
    for gate, result, measured, requirement in table_rows(report):
        style = "green" if result == "pass" else "bold red"
        table.add_row(gate, f"[{style}]{result}[/]", measured, requirement)
    foot = Table(title="footprint", title_justify="left")
    for column in ("", "this model", "TFLM person_detect"):
        foot.add_column(column, overflow="fold")
    for row in footprint_rows(report):
        foot.add_row(*row)
    console = Console(width=max(Console().width, 120), soft_wrap=False)
    console.print(table)
    console.print(foot)


def write_reports(folder: Path, report: dict) -> None:
    """parity.json and parity.md in `folder`, each written to a temporary name then renamed."""
    write_file(folder / "parity.md", to_markdown(report), checked=True)
    write_file(folder / "parity.json", json.dumps(report, indent=2) + "\n", checked=True)
