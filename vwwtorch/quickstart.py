"""`vwwtorch quickstart`: the whole pipeline on the built-in data, in one command.

Generates the built-in dataset, trains the default model with `configs/quickstart.yaml`, validates
the best checkpoint, exports it to int8 TFLite through the parity gate (`vwwtorch export`) and says
where everything is. Later stages (firmware) hook in here.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

QUICKSTART_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "quickstart.yaml"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "quickstart", help="generate the built-in data, train, validate and export the default model",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Run the whole vwwtorch pipeline on the built-in dataset: generate data, train "
                    "MobileNetV1 0.25 (96x96 grayscale) with configs/quickstart.yaml, validate the best "
                    "checkpoint, export it to ONNX and int8 TFLite and verify parity (export/). "
                    "Everything is written under --out.")
    p.add_argument("--out", required=True, help="output folder (data/, runs/, export/)")
    p.add_argument("--epochs", type=int, help="training epochs (default: the config's)")
    p.add_argument("--config", default=str(QUICKSTART_CONFIG), help="training config")
    p.add_argument("--train-images", type=int, default=6000, help="size of the generated train split")
    p.add_argument("--no-export", dest="export", action="store_false",
                   help="stop after validation (skip the int8 export and its parity gate)")
    p.set_defaults(func=_run)


def _run(args) -> None:
    from vwwtorch.data.format import read_meta
    from vwwtorch.data.synthetic import generate
    from vwwtorch.errors import UserError
    from vwwtorch.training.lightning_cli import run_lightning_cli

    config = Path(args.config)
    if not config.is_file():
        raise UserError(f"config {config} not found (quickstart runs from a source checkout of vwwtorch)")
    if args.epochs is not None and args.epochs < 1:
        raise UserError("--epochs must be at least 1")
    out = Path(args.out).resolve()
    data_dir, runs_dir, export_dir = out / "data", out / "runs", out / "export"
    steps = 4 if args.export else 3
    started = time.monotonic()

    print(f"[1/{steps}] built-in dataset -> {data_dir}")
    try:
        read_meta(data_dir)
        print("      already there, reusing it")
    except UserError:
        generate(str(data_dir), train=args.train_images, overwrite=True)

    print(f"[2/{steps}] training with {config}")
    common = ["--config", str(config), "--data.data_dir", str(data_dir),
              "--trainer.logger.init_args.save_dir", str(runs_dir)]
    fit_args = ["fit", *common] + (["--trainer.max_epochs", str(args.epochs)] if args.epochs else [])
    cli = run_lightning_cli(fit_args)
    checkpoint = cli.trainer.checkpoint_callback
    best = checkpoint.best_model_path
    if not best:
        raise UserError("training produced no checkpoint")
    log_dir = cli.trainer.logger.log_dir

    print(f"[3/{steps}] validating {best}")
    validate = run_lightning_cli(["validate", *common, "--ckpt_path", best])
    metrics = {k: float(v) for k, v in validate.trainer.callback_metrics.items()}

    verified = None
    if args.export:
        from bridge.errors import GateFailed
        from bridge.pipeline import ExportOptions, export

        print(f"[4/{steps}] exporting to int8 TFLite and checking parity -> {export_dir}")
        try:
            export(ExportOptions(ckpt=Path(best), data=data_dir, out=export_dir, overwrite=True))
            verified = True
        except GateFailed as exc:
            # The folder is complete but unverified; say so in the summary, then fail.
            verified = exc

    minutes = (time.monotonic() - started) / 60
    print()
    print(f"quickstart finished in {minutes:.1f} min")
    print(f"  dataset           {data_dir}")
    print(f"  best checkpoint   {best}")
    print(f"  last checkpoint   {checkpoint.last_model_path}")
    print(f"  TensorBoard logs  {log_dir}   (tensorboard --logdir {runs_dir})")
    print(f"  val/acc           {metrics.get('val/acc', float('nan')):.4f}")
    if verified is True:
        print(f"  int8 model        {export_dir / 'model_int8.tflite'}   (parity verified: {export_dir / 'parity.md'})")
    elif verified is not None:
        print(f"  int8 model        {export_dir / 'model_int8.tflite'}   NOT verified, see {export_dir / 'parity.md'}")
        raise verified
