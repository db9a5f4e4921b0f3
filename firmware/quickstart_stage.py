"""The firmware stage of `vwwtorch quickstart`: generate, then build and run when possible.

`firmware_stage(tflite, out, pixels)` always writes the generated model sources. When the
dependencies are in the cache and the tools are installed, it also builds the firmware of every
board that runs here (natively or emulated), runs each on the given images and checks their scores
against the `tflite_micro` runtime. What cannot run is reported with the command that fixes it, never raised: quickstart
must finish on a machine without the cross toolchain. A build or run that fails for another reason
is reported too (`failed`), so the caller decides; `problems()` lists failures and mismatches.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vwwtorch.plumbing.errors import UserError



@dataclass
class BoardOutcome:
    board: str
    build_dir: Path | None = None
    scores_match: bool | None = None     # None: not run
    failed: bool = False                 # the build or the run failed (note says why)
    flash_bytes: int | None = None
    ram_bytes: int | None = None
    arena_used: int | None = None
    note: str = ""


@dataclass
class StageOutcome:
    model_dir: Path
    boards: list[BoardOutcome] = field(default_factory=list)
    skipped: str = ""                    # why nothing was built, with the command that fixes it

    def lines(self) -> list[str]:
        text = [f"firmware sources  {self.model_dir}"]
        if self.skipped:
            text.append(f"firmware build    skipped: {self.skipped}")
        for b in self.boards:
            if b.scores_match is None:
                text.append(f"firmware {b.board:<8} {'FAILED' if b.failed else 'skipped'}: {b.note}")
                continue
            size = f", flash {b.flash_bytes:,} B, RAM {b.ram_bytes:,} B" if b.flash_bytes else ""
            arena = f", arena used {b.arena_used:,} B" if b.arena_used else ""
            verdict = "scores equal the TFLM runtime" if b.scores_match else "SCORES DIFFER from the TFLM runtime"
            text.append(f"firmware {b.board:<8} {verdict}{size}{arena}  ({b.build_dir})")
        return text

    def problems(self) -> list[str]:
        """Boards whose firmware failed or disagreed with the runtime (not those skipped)."""
        return [f"{b.board}: {b.note}" if b.failed else f"{b.board}: scores differ from the TFLM runtime"
                for b in self.boards if b.failed or b.scores_match is False]


def _missing_tool(board) -> str | None:
    needed = [f"{board.toolchain_prefix}g++", "make"] + ([board.emulator] if board.emulator else [])
    missing = [tool for tool in needed if shutil.which(tool) is None]
    return f"{', '.join(missing)} not installed ({board.install_hint})" if missing else None


def firmware_stage(tflite: str | Path, out: str | Path, pixels: np.ndarray, *,
                   boards: tuple[str, ...] | None = None, jobs: int | None = None) -> StageOutcome:
    """Generate into out/model; build out/<board>; run each on `pixels` (uint8, N x H x W x C)."""
    from vwwtorch.firmware.boards import boards_that_run_here, get_board
    from vwwtorch.firmware.toolchain.compiler import build
    from vwwtorch.firmware.toolchain.deps import deps_command, installed, needed
    from vwwtorch.firmware.codegen.generate import generate
    from vwwtorch.contract.tflm import tflm_scores
    from vwwtorch.firmware.toolchain.run import run_tensors

    out = Path(out)
    settings = generate(tflite, out / "model")  # checked against the default target board
    outcome = StageOutcome(model_dir=out / "model")
    pixels = np.asarray(pixels, dtype=np.uint8).reshape(-1, settings.rows, settings.cols,
                                                         settings.channels)
    tensors = np.asarray(settings.byte_to_input, dtype=np.int8)[pixels]
    expected = tflm_scores(Path(tflite).read_bytes(), tensors)
    for name in boards if boards is not None else [b.name for b in boards_that_run_here()]:
        board = get_board(name)
        result = BoardOutcome(board=name)
        outcome.boards.append(result)
        missing_deps = [d for d in needed(name) if installed(d) is None]
        if missing_deps:
            result.note = (f"{', '.join(d.name for d in missing_deps)} not in the cache; run "
                           f"`{deps_command(name, missing_deps)}` to build and run it")
            continue
        missing = _missing_tool(board)
        if missing:
            result.note = missing
            continue
        try:
            built = build(name, out / "model", out / name, jobs=jobs, quiet=True)
            run = run_tensors(out / name, tensors, timeout=600)
        except UserError as exc:
            result.failed, result.note = True, str(exc)
            continue
        result.build_dir = out / name
        result.scores_match = bool(np.array_equal([i.scores for i in run.images], expected))
        result.flash_bytes, result.ram_bytes = built.flash_bytes, built.ram_bytes
        result.arena_used = run.arena_used
    return outcome


def dataset_pixels(data_dir: str | Path, count: int, resolution: int, channels: int,
                   split: str = "val") -> np.ndarray:
    """The first `count` images of a dataset split as the camera path gives them to the firmware."""
    from vwwtorch.data.format import eval_pixels, open_split, read_meta

    meta = read_meta(data_dir)
    arrays = open_split(data_dir, split, meta)
    return eval_pixels(arrays, range(min(count, len(arrays))), resolution, channels)
