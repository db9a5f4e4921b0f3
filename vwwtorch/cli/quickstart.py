"""`vwwtorch quickstart`: the whole pipeline on the built-in data, in one command.

Generates the built-in dataset, trains the default model with `configs/quickstart.yaml`, validates
the best checkpoint, exports it to int8 TFLite through the parity gate (`vwwtorch export`), then
turns the verified model into firmware: the generated model sources always, and, when the firmware
dependencies and tools are there, builds for the boards that run here, whose scores are checked against the
TFLM runtime (`vwwtorch.firmware.quickstart_stage`). Says where everything is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from vwwtorch.configs import resolve, shipped
from vwwtorch.plumbing.defaults import HelpFormatter, default
from vwwtorch.data.synthetic import generate


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "quickstart", help="generate the built-in data, train, validate and export the default model",
        formatter_class=HelpFormatter,
        description="Run the whole vwwtorch pipeline on the built-in dataset: generate data, train "
                    "MobileNetV1 0.25 (96x96 grayscale) with configs/quickstart.yaml, validate the best "
                    "checkpoint, export it to ONNX and int8 TFLite and verify parity (export/), then "
                    "generate the firmware model sources and, when `vwwtorch firmware deps` and the "
                    "compilers are installed, build and run the firmware of every board that runs here on validation "
                    "images (firmware/). Everything is written under --out.")
    p.add_argument("--out", required=True, help="output folder (data/, runs/, export/, firmware/)")
    p.add_argument("--epochs", type=int, help="training epochs (default: the config's)")
    p.add_argument("--config", help="training config: a YAML file, or the name of a shipped one (`vwwtorch "
                                     "config list`; default: quickstart)")
    p.add_argument("--train-images", type=int, default=default(generate, "train"),
                   help="size of the generated train split")
    p.add_argument("--no-export", dest="export", action="store_false",
                   help="stop after validation (skip the int8 export, its parity gate and the firmware)")
    p.add_argument("--no-firmware", dest="firmware", action="store_false",
                   help="stop after the export (skip generating, building and running the firmware)")
    p.set_defaults(func=_run)


FIRMWARE_IMAGES = 8   # validation images the firmware builds run on


def _firmware_stage(model: Path, out: Path, data_dir: Path, model_info: dict):
    """Generate, build and run the firmware for the exported model; never fails for missing tools."""
    from vwwtorch.firmware.quickstart_stage import dataset_pixels, firmware_stage

    resolution, channels = model_info["resolution"], model_info["in_channels"]
    pixels = dataset_pixels(data_dir, FIRMWARE_IMAGES, resolution, channels)
    return firmware_stage(model, out, pixels)


def _run(args) -> None:
    from vwwtorch.plumbing.outputs import check_folder

    config = _checked_config(args)
    out = check_folder(args.out, overwrite=True)  # an earlier quickstart's folder is reused
    data_dir, runs_dir, export_dir, firmware_dir = out / "data", out / "runs", out / "export", out / "firmware"
    steps = (5 if args.firmware else 4) if args.export else 3
    started = time.monotonic()

    print(f"[1/{steps}] built-in dataset -> {data_dir}")
    _dataset(data_dir, args.train_images)
    print(f"[2/{steps}] training with {config}")
    run = _train_and_validate(config, data_dir, runs_dir, args.epochs, steps)

    verified, model_info = None, None
    if args.export:
        print(f"[4/{steps}] exporting to int8 TFLite and checking parity -> {export_dir}")
        verified, model_info = _export(run.best, data_dir, export_dir)

    firmware = None
    if args.export and args.firmware:
        print(f"[5/{steps}] firmware for the int8 model -> {firmware_dir}")
        if verified is True:
            stage_started = time.monotonic()
            firmware = _firmware_stage(export_dir / "model_int8.tflite", firmware_dir, data_dir, model_info)
            for line in firmware.lines():
                print(f"      {line}")
            print(f"      ({time.monotonic() - stage_started:.0f} s)")
        else:
            print("      skipped: the int8 model did not pass the parity gate")

    _summary(run, started, data_dir=data_dir, runs_dir=runs_dir, export_dir=export_dir, firmware_dir=firmware_dir,
             verified=verified, firmware=firmware)


def _checked_config(args) -> Path:
    """The training config to use; the options are checked before any work starts."""
    from vwwtorch.plumbing.errors import UserError

    config = Path(resolve(args.config)) if args.config else shipped("quickstart")
    if not config.is_file():
        raise UserError(f"config {config} not found")
    if args.epochs is not None and args.epochs < 1:
        raise UserError("--epochs must be at least 1")
    return config


def _dataset(data_dir: Path, train_images: int) -> None:
    """Generate the built-in dataset, unless a readable one is already there."""
    from vwwtorch.plumbing.errors import UserError
    from vwwtorch.data.format import read_meta

    try:
        read_meta(data_dir)
        print("      already there, reusing it")
    except UserError:
        generate(str(data_dir), train=train_images, overwrite=True)


@dataclass
class _Training:
    best: str                 # best checkpoint
    last: str                 # last checkpoint
    log_dir: str
    metrics: dict[str, float]  # validation of the best checkpoint


def _train_and_validate(config: Path, data_dir: Path, runs_dir: Path, epochs: int | None, steps: int) -> _Training:
    from vwwtorch.plumbing.errors import UserError
    from vwwtorch.training.lightning_cli import run_lightning_cli

    common = ["--config", str(config), "--data.data_dir", str(data_dir),
              "--trainer.logger.init_args.save_dir", str(runs_dir)]
    fit_args = ["fit", *common] + (["--trainer.max_epochs", str(epochs)] if epochs else [])
    cli = run_lightning_cli(fit_args)
    checkpoint = cli.trainer.checkpoint_callback
    best = checkpoint.best_model_path
    if not best:
        raise UserError("training produced no checkpoint")
    log_dir = cli.trainer.logger.log_dir

    print(f"[3/{steps}] validating {best}")
    validate = run_lightning_cli(["validate", *common, "--ckpt_path", best])
    metrics = {k: float(v) for k, v in validate.trainer.callback_metrics.items()}
    return _Training(best=best, last=checkpoint.last_model_path, log_dir=log_dir, metrics=metrics)


def _export(best: str, data_dir: Path, export_dir: Path):
    """(True, the model's report) when the int8 export passes its parity gate, else (the GateFailed, None)."""
    from vwwtorch.plumbing.errors import GateFailed
    from vwwtorch.bridge.export_run import ExportOptions, export

    try:
        exported = export(ExportOptions(ckpt=Path(best), data=data_dir, out=export_dir, overwrite=True))
    except GateFailed as exc:
        # The folder is complete but unverified; say so in the summary, then fail.
        return exc, None
    return True, exported.report["model"]


def _summary(run: _Training, started: float, *, data_dir: Path, runs_dir: Path, export_dir: Path,
             firmware_dir: Path, verified, firmware) -> None:
    """Say where everything is; then fail if the int8 model or the firmware did not verify."""
    from vwwtorch.plumbing.errors import GateFailed

    minutes = (time.monotonic() - started) / 60
    print()
    print(f"quickstart finished in {minutes:.1f} min")
    print(f"  dataset           {data_dir}")
    print(f"  best checkpoint   {run.best}")
    print(f"  last checkpoint   {run.last}")
    print(f"  TensorBoard logs  {run.log_dir}   (tensorboard --logdir {runs_dir})")
    print(f"  val/acc           {run.metrics.get('val/acc', float('nan')):.4f}")
    if verified is True:
        print(f"  int8 model        {export_dir / 'model_int8.tflite'}   (parity verified: {export_dir / 'parity.md'})")
    elif verified is not None:
        print(f"  int8 model        {export_dir / 'model_int8.tflite'}   NOT verified, see {export_dir / 'parity.md'}")
        raise verified
    if firmware is not None:
        status = ", ".join(f"{b.board} " + ("scores verified" if b.scores_match else
                                             "FAILED" if b.failed or b.scores_match is False else "skipped")
                           for b in firmware.boards)
        print(f"  firmware          {firmware_dir}   ({status})")
        problems = firmware.problems()
        if problems:
            raise GateFailed("firmware does not reproduce the verified model: " + " | ".join(problems))
