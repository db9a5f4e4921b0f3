"""The one door for checkpoint files: every file that claims to be a vwwtorch checkpoint comes in here.

Whatever brought it (`--ckpt`, `--ckpt_path FILE|last|best|hpc`, `--model.init_from`, predict,
report, export), a checkpoint is read with `torch.load(..., weights_only=True)`: tensors and plain
data only, so a pickle that would run code is refused, never executed. Lightning's own loading is
routed here too (`SafeCheckpointIO`), whatever `weights_only` it is asked for. Then the content is
checked: a Lightning checkpoint with a `state_dict`, architecture hyper-parameters of the right
types and ranges, class names that match the outputs, and (`check_architecture`, where one is
configured) the same architecture as the model it is loaded into. Every refusal is one line naming
the file. Building a model from a checkpoint is `vwwtorch.training.checkpoint`'s.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from vwwtorch.plumbing.errors import UserError
from vwwtorch.models.mobilenet_v1 import ACTIVATIONS, ARCH_KEYS, HEADS, INPUT_RANGES, VARIANTS

# How torch's weights-only unpickler names a Python object it refused to create.
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def _unpickling_refusal(path: Path, exc: BaseException) -> UserError:
    named = _GLOBAL.search(str(exc))
    if named is None:  # not a reference to code: malformed pickle data
        return UserError(f"checkpoint {path} cannot be read: it is damaged or not a PyTorch checkpoint")
    return UserError(f"checkpoint {path} holds Python objects other than tensors and plain data (it "
                     f"references {named.group(1)}): it may contain code, so it was not loaded")


def read_checkpoint(path: str | os.PathLike) -> dict:
    """A checked Lightning checkpoint of a vwwtorch classifier, loaded as tensors and plain data only."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"checkpoint {path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise _unpickling_refusal(path, exc) from None
    except PermissionError:
        raise UserError(f"checkpoint {path} cannot be read: permission denied") from None
    except Exception:  # torch raises many types for truncated, corrupt or foreign files
        size = path.stat().st_size
        what = "it is empty" if size == 0 else "it is truncated, damaged or not a PyTorch checkpoint"
        raise UserError(f"checkpoint {path} cannot be read: {what}") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise UserError(f"{path} is not a Lightning checkpoint (no state_dict)")
    check_hyper_parameters(checkpoint.get("hyper_parameters"), f"checkpoint {path}")
    if "quantization" in checkpoint:
        check_quantization_record(checkpoint["quantization"], f"checkpoint {path}")
    return checkpoint


def _quantization_ok(entry: Any) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("scale"), float) and 0 < entry["scale"] < 1e6
            and _is_int(entry.get("zero_point")) and -128 <= entry["zero_point"] <= 127)


def _scales_ok(scales: Any) -> bool:
    return isinstance(scales, list) and all(isinstance(v, float) and 0 <= v < 1e6 for v in scales)


def _integers_ok(values: Any) -> bool:
    return isinstance(values, list) and all(_is_int(v) and -2**31 <= v < 2**31 for v in values)


def check_quantization_record(record: Any, source: str) -> None:
    """The int8 ranges an imported checkpoint keeps from its source (`vwwtorch import`), well formed."""
    operators = record.get("operators") if isinstance(record, dict) else None
    if not (isinstance(record, dict) and isinstance(record.get("source"), str) and _quantization_ok(record.get("input"))
            and isinstance(operators, list) and operators
            and all(_quantization_ok(e) and isinstance(e.get("op"), str) and _scales_ok(e.get("weight_scales", []))
                    and _integers_ok(e.get("bias", [])) for e in operators)):
        raise UserError(f"{source} has a damaged quantization record (the int8 ranges of the model it was "
                        "imported from)")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_hyper_parameters(hparams: Any, source: str) -> None:
    """Refuse hyper-parameters that could not have come from `vwwtorch fit` (crafted or damaged)."""
    if not isinstance(hparams, dict):
        raise UserError(f"{source} is not a vwwtorch classifier checkpoint (no hyper_parameters)")
    missing = [k for k in ARCH_KEYS if k not in hparams]
    if missing:
        raise UserError(f"{source} is not a vwwtorch classifier checkpoint (no {', '.join(missing)})")
    width, channels = hparams["width"], hparams["in_channels"]
    resolution, classes = hparams["resolution"], hparams["num_classes"]

    def bad(key: str, value: Any, need: str) -> UserError:
        return UserError(f"{source} has a damaged hyper-parameter {key}={value!r} (must be {need})")

    if not isinstance(width, (int, float)) or isinstance(width, bool) or not 0.1 <= width <= 1.0:
        raise bad("width", width, "a number in [0.1, 1.0]")
    if not _is_int(channels) or channels not in (1, 3):
        raise bad("in_channels", channels, "1 or 3")
    if not _is_int(resolution) or resolution < 32 or resolution % 32:
        raise bad("resolution", resolution, "a positive multiple of 32")
    if not _is_int(classes) or not 2 <= classes <= 10_000:
        raise bad("num_classes", classes, "an integer >= 2")
    for key, allowed in (("activation", ACTIVATIONS), ("head", HEADS), ("input_range", INPUT_RANGES)):
        if key in hparams and hparams[key] not in allowed:
            raise bad(key, hparams[key], "one of " + ", ".join(allowed))
    for key in ("conv_bias", "qat"):
        if key in hparams and not isinstance(hparams[key], bool):
            raise bad(key, hparams[key], "true or false")
    names = hparams.get("class_names")
    if names is not None and (not isinstance(names, (list, tuple)) or len(names) != classes
                              or not all(isinstance(n, str) and n.strip() and "\n" not in n for n in names)):
        raise bad("class_names", names, f"{classes} non-empty names, one per output")


def architecture(hparams: dict) -> dict:
    """ARCH_KEYS and the variant options of a checkpoint's hyper-parameters (slim's variant where a
    checkpoint predates the options)."""
    return {**VARIANTS, **{k: hparams[k] for k in (*ARCH_KEYS, *VARIANTS) if k in hparams}}


def check_architecture(checkpoint: dict, expected: dict, source: str, hint: str = "") -> None:
    """Refuse a checkpoint whose model differs from the configured one (some or all of ARCH_KEYS and
    the variant options), naming the difference."""
    hparams = checkpoint.get("hyper_parameters") or {}
    missing = [k for k in ARCH_KEYS if k not in hparams]
    if missing:
        raise UserError(f"{source} is not a vwwtorch classifier checkpoint (no {', '.join(missing)})")
    saved = architecture(hparams)
    diffs = [f"{k}={saved[k]} (configured {expected[k]})" for k in expected if saved[k] != expected[k]]
    if diffs:
        raise UserError(f"{source} holds a different architecture: " + ", ".join(diffs) + (f"; {hint}" if hint else ""))


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint reader replaced by `read_checkpoint`: `--ckpt_path last|best|hpc` and
    `--weights_only false` cannot open another way in. Saving is Lightning's own."""

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        return read_checkpoint(path)
