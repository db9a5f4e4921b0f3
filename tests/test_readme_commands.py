"""Every ```bash block of README.md runs, or is excluded here with its reason, so the docs cannot drift.

The blocks are parsed from README.md when the tests are collected, so a new block is picked up by
itself: each command of each block must then be run, or excluded in EXCLUDED (a stable substring of
the command -> why it cannot run here: COCO, a network download, a SparkFun board, ...), or the
coverage test fails. An EXCLUDED or SHRINK key that no longer matches any command fails too.

Commands run as a user types them: `vwwtorch` (the one beside this Python), in one shared folder laid
out like a checkout with its data (`configs/`, `data/synthetic`, a trained checkpoint, `export/`),
through the CLI only; the one module imported is the dependency registry, to know what is cached.
- Placeholders of the README (`runs/.../best-....ckpt`, `someone_elses_int8.tflite`, `NAME`, ...)
  become the shared folder's real files by PLACEHOLDERS.
- Expensive commands are shrunk by SHRINK: arguments appended (a later flag wins) for fewer epochs,
  batches and images; each entry says why.
- A command identical (after both) to one already run is not run again: README repeats `export`.
- Commands needing the firmware dependencies that `vwwtorch firmware deps [--board sparkfun_edge]`
  downloads (TFLM, or the Ambiq SDK) are skipped, naming that command, when they are not in the cache:
  CI starts without them.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
VWWTORCH = str(Path(sys.executable).parent / "vwwtorch")

# --- the README's blocks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    line: int              # line of the opening ```bash
    commands: tuple[str, ...]  # one per command, whitespace normalised, comments dropped

    @property
    def id(self) -> str:
        return f"L{self.line}:{self.commands[0][:40] if self.commands else ''}"


def split_commands(text: str) -> list[str]:
    """A block's commands: `\\` continuations joined, comments (`#` to the end of a line: no command
    here holds one) dropped, `&&` chains split, whitespace normalised."""
    joined = re.sub(r"\\\n", " ", text)
    commands = []
    for line in joined.splitlines():
        line = re.sub(r"(^|\s)#.*", "", line)
        for part in line.split("&&"):
            if part.strip():
                commands.append(" ".join(part.split()))
    return commands


def readme_blocks() -> list[Block]:
    lines = README.read_text().splitlines()
    blocks, start = [], None
    for number, line in enumerate(lines, 1):
        if start is None and line.strip() == "```bash":
            start, body = number, []
        elif start is not None and line.strip().startswith("```"):
            blocks.append(Block(start, tuple(split_commands("\n".join(body)))))
            start = None
        elif start is not None:
            body.append(line)
    return blocks


BLOCKS = readme_blocks()

# --- what is not run, and why -----------------------------------------------------------------------

CI_CHECKED = {
    # The set-up installs packages (checked against .ci/run, which CI runs); its quickstart runs.
    "python3 -m venv .venv": "creates the virtual environment: .ci/run's own line",
    ".venv/bin/pip install -e": "pip install: .ci/run's own line",
    # The test command would run this file again.
    ".venv/bin/python -m pytest -q": "the suite itself (would recurse): .ci/run runs exactly this",
}

EXCLUDED = {
    "vwwtorch data vww --coco-dir": "needs a COCO 2014 download (~40 GB)",
    "vwwtorch data wake-vision": "needs the Wake Vision CSVs and archives or parquet shards (downloads)",
    "--by gender,age,distance,lighting,depiction": "needs Wake Vision's fine-grained attributes (a download)",
    "--trainer.devices 4 --trainer.strategy ddp": "needs 4 accelerators",
    "pretrained get person-rgb-96 --from vww_96.h5": "reads MLPerf's vww_96.h5 and vww_96_int8.tflite, which the user downloads",
    "sudo apt install": "a system install (.ci/run installs these packages)",
    "vwwtorch firmware flash --port": "needs a SparkFun Edge on a serial port",
    "vwwtorch firmware monitor --port": "needs a SparkFun Edge on a serial port",
}

# Needs the cache that a fetching command fills at user time: skipped, naming it, when absent.
NEEDS_DEPS = {
    "firmware deps --board sparkfun_edge": "sparkfun_edge",
    "firmware build --board sparkfun_edge": "sparkfun_edge",
    "vwwtorch firmware deps": "tflm",                  # fetches them when absent (checks them here)
    "vwwtorch firmware build": "tflm",                 # `firmware generate` needs none of them
    "vwwtorch firmware run": "tflm",
    "vwwtorch firmware profile": "tflm",
    "pretrained get person-gray-96": "tflm",          # from the TFLM tree, else it downloads
    "--ckpt person.ckpt": "tflm",                       # the checkpoint that command writes
    "configs/finetune_person.yaml": "tflm",             # init_from pretrained:person-gray-96
    "runs/finetune_person/": "tflm",
}
FETCH = {"tflm": "vwwtorch firmware deps", "sparkfun_edge": "vwwtorch firmware deps --board sparkfun_edge"}

# --- how the rest runs here -------------------------------------------------------------------------

# README token -> this folder's file (exact token match).
PLACEHOLDERS = {
    "runs/.../best-....ckpt": "{best}",                       # "your checkpoint": the shared one
    "runs/NAME/version_0/checkpoints/best-....ckpt": "{best}",
    "runs/.../last.ckpt": "{last}",
    "runs/vww/version_0/checkpoints/last.ckpt": "{last}",     # a person detector trained on VWW
    "...": "quickstart",                                      # `fit --config ...`: any config
    "someone_elses_int8.tflite": "export/model_int8.tflite",  # any int8 model
    "runs/quickstart/export/model_int8.tflite": "export/model_int8.tflite",  # the quickstart is shrunk to --no-export
    "~/photos/my_classes": "photos/my_classes",               # written by the fixture
    "NAME": "person",                                         # --positive-class: a class of photos/my_classes
}

TINY_FIT = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
            "--trainer.limit_test_batches", "1", "--data.batch_size", "32"]
TINY_EXPORT = ["--num-calibration", "32", "--num-parity", "64"]

# (substring of the command, arguments appended). Every matching entry applies, in this order.
SHRINK = [
    # 5 minutes of data, training and export: one epoch on a small split; the export and firmware it
    # would run are the README's own export and firmware blocks below (tests/test_quickstart.py runs
    # the whole quickstart).
    ("vwwtorch quickstart", ["--epochs", "1", "--train-images", "300", "--no-export"]),
    # 8,000 scenes take ~40 s to draw; a few hundred serve every later command.
    ("vwwtorch data synthetic", ["--train", "300", "--val", "64", "--test", "64", "--overwrite"]),
    # Training runs for minutes to hours: a few batches prove the command and write its checkpoints.
    ("vwwtorch fit", TINY_FIT),
    ("--ckpt_path runs/.../last.ckpt", ["--trainer.max_epochs", "2"]),  # resume: past the epoch saved
    ("vwwtorch validate", ["--trainer.limit_val_batches", "1"]),
    ("vwwtorch test ", ["--trainer.limit_test_batches", "1"]),
    # Calibration and parity on 300 + 1,000 images take minutes; the gates run the same on fewer.
    ("vwwtorch export", TINY_EXPORT),
    ("vwwtorch parity", ["--num-parity", "64"]),
    ("vwwtorch parity --tflite", ["--out", "parity_no_ckpt/"]),  # the line above it wrote parity/
    # A second output folder for the fine-tuned export: export/ is the shared model later blocks use.
    ("--data data/my_photos --out export/", ["--out", "export_finetuned/"]),
    ("--out fw/model --memory-budget", ["--out", "fw/model_planned"]),  # fw/model is the block above's
    ("data show data/vww --n 64", ["--n", "16"]),
]

# (substring of the command, text its stdout must hold): the README's claims, where cheap.
EXPECT = [
    ("vwwtorch config list", "quickstart"),
    ("--print_config", "max_epochs"),
    ("vwwtorch pretrained list", "person-gray-96"),
    ("vwwtorch data verify", "train"),
]

ALREADY_RUN: dict[str, subprocess.CompletedProcess] = {}


def classify(command: str) -> str:
    if any(key in command for key in CI_CHECKED):
        return "ci"
    if any(key in command for key in EXCLUDED):
        return "excluded"
    return "run"


def deps_needed(command: str) -> set[str]:
    return {dep for key, dep in NEEDS_DEPS.items() if key in command}


def _dependencies() -> dict[str, bool]:
    """Whether everything each FETCH command installs is in the cache, as the dependency registry
    says (the one place that knows which trees a command fetches)."""
    from vwwtorch.firmware.toolchain.deps import installed, needed, needed_by_default

    wanted = {"tflm": needed_by_default(), "sparkfun_edge": needed("sparkfun_edge")}
    return {dep: all(installed(d) is not None for d in trees) for dep, trees in wanted.items()}


def argv_of(command: str, workspace: "Workspace") -> tuple[dict[str, str], list[str], str | None]:
    """(environment prefix, argv, file stdout goes to) for a README command, placeholders replaced
    and shrunk."""
    tokens = shlex.split(command)
    env = {}
    while tokens and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", tokens[0]):
        name, _, value = tokens.pop(0).partition("=")
        env[name] = value
    stdout = None
    if ">" in tokens:
        at = tokens.index(">")
        stdout, tokens = tokens[at + 1], tokens[:at]
    if tokens[0] == ".venv/bin/vwwtorch":
        tokens[0] = "vwwtorch"
    assert tokens[0] == "vwwtorch", command
    values = {"best": str(workspace.best), "last": str(workspace.last)}
    tokens = [PLACEHOLDERS.get(t, t).format(**values) if t in PLACEHOLDERS else t for t in tokens]
    for key, extra in SHRINK:
        if key in command:
            tokens += extra
    return env, [VWWTORCH, *tokens[1:]], stdout


@dataclass
class Workspace:
    root: Path
    best: Path | None = None
    last: Path | None = None
    deps: dict | None = None

    def run(self, command: str) -> subprocess.CompletedProcess:
        env, argv, stdout = argv_of(command, self)
        key = shlex.join([*(f"{k}={v}" for k, v in env.items()), *argv, *([">", stdout] if stdout else [])])
        if key in ALREADY_RUN:
            return ALREADY_RUN[key]
        full_env = {**os.environ, **env, "COLUMNS": "200"}
        result = subprocess.run(argv, cwd=self.root, env=full_env, capture_output=True, text=True, timeout=900)
        if stdout:
            (self.root / stdout).write_text(result.stdout)
        assert result.returncode == 0, (f"README command failed (exit {result.returncode}): {command}\n"
                                        f"ran: {shlex.join(argv)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        for key_text, text in EXPECT:
            if key_text in command:
                assert text in result.stdout, (command, result.stdout[-2000:])
        ALREADY_RUN[key] = result
        return result


def _write_images(folder: Path, n: int, person: bool, size: int = 96, seed: int = 0) -> None:
    """Grey pictures: a bright disc (person) or none, over noise; enough for photo-shaped inputs."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        image = rng.integers(0, 80, size=(size, size)).astype(np.uint8)
        if person:
            cy, cx = rng.integers(size // 4, 3 * size // 4, size=2)
            image[(yy - cy) ** 2 + (xx - cx) ** 2 < (size // 6) ** 2] = 230
        Image.fromarray(image).save(folder / f"img_{i:03d}.png")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    """A folder laid out like the README assumes: configs/, data/ (the built-in scenes, small, also
    standing for data/vww, data/my_photos and data/wake_vision), a trained checkpoint from the README's
    own `fit --config quickstart` and its export in export/ (both shrunk), photos to predict."""
    root = tmp_path_factory.mktemp("readme")
    ws = Workspace(root)
    (root / "configs").symlink_to(REPO / "configs")
    ws.run(_command("vwwtorch data synthetic"))
    for name in ("vww", "my_photos", "wake_vision"):
        (root / "data" / name).symlink_to("synthetic")
    _write_images(root / "photos/my_classes/person", 24, person=True, seed=1)
    _write_images(root / "photos/my_classes/no_person", 24, person=False, seed=2)
    _write_images(root / "more_photos", 3, person=True, seed=3)
    for name, person in (("photo.jpg", True), ("person.png", True), ("no_person.png", False)):
        _write_images(root / "tmp_images", 1, person=person, seed=len(name))
        image = Image.open(root / "tmp_images/img_000.png")
        image.convert("L").save(root / name)
    ws.run(_command("vwwtorch fit --config quickstart"))
    checkpoints = root / "runs/quickstart/version_0/checkpoints"
    ws.best = next(checkpoints.glob("best-*.ckpt"))
    ws.last = checkpoints / "last.ckpt"
    ws.run(_command("vwwtorch export --ckpt runs/.../best-....ckpt"))
    ws.deps = _dependencies()
    return ws


def _command(prefix: str) -> str:
    """The README's command that starts with `prefix` (the fixture runs the README's own commands)."""
    for block in BLOCKS:
        for command in block.commands:
            if command.startswith(prefix):
                return command
    raise AssertionError(f"README no longer has a command starting {prefix!r}")


# --- the tests --------------------------------------------------------------------------------------


def test_every_command_is_run_or_excluded_and_every_key_matches():
    commands = [c for block in BLOCKS for c in block.commands]
    assert len(BLOCKS) >= 20 and commands
    for command in commands:
        kind = classify(command)
        if kind == "run":  # every run command is a `vwwtorch` one
            assert re.match(r"([A-Z_]+=\S+ )*(\.venv/bin/)?vwwtorch ", command), (
                f"README command {command!r} is neither run (a vwwtorch command) nor in EXCLUDED with a reason")
    tables = {"CI_CHECKED": CI_CHECKED, "EXCLUDED": EXCLUDED, "NEEDS_DEPS": NEEDS_DEPS,
              "SHRINK": dict(SHRINK), "EXPECT": dict(EXPECT)}
    for name, table in tables.items():
        for key in table:
            assert any(key in c for c in commands), f"{name} key {key!r} matches no README command any more"
    for token in PLACEHOLDERS:
        assert any(token in shlex.split(c) for c in commands), f"placeholder {token!r} is no longer in README"


def test_the_setup_and_test_commands_are_what_ci_runs():
    ci = (REPO / ".ci/run").read_text()
    setup = [c for c in BLOCKS[0].commands if classify(c) == "ci"]
    assert setup and BLOCKS[1].commands == (".venv/bin/python -m pytest -q",)
    for command in [*setup, *BLOCKS[1].commands]:
        pip = command.replace(".venv/bin/pip install", ".venv/bin/pip install -q")
        assert command in ci or pip in ci, f"README's {command!r} is not what .ci/run does"


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_readme_block(block, workspace):
    skipped = []
    for command in block.commands:
        if classify(command) != "run":
            continue
        missing = sorted(dep for dep in deps_needed(command) if not workspace.deps[dep])
        if missing:
            skipped.append(f"{command!r} needs `{FETCH[missing[0]]}` (its dependencies are not in the cache)")
            continue
        workspace.run(command)
    if skipped:
        pytest.skip("; ".join(skipped))
