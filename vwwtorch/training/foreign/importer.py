"""`vwwtorch import`'s work: a foreign model file in, a vwwtorch checkpoint out.

The checkpoint has the layout `vwwtorch fit` writes (state_dict with the weights, hyper_parameters
with the architecture, its variant and the class names, the weight-averaging state; the training
recipe keeps its defaults), so validate, test, predict, report, export and `--model.init_from`
load it like any other. Two additions, plain data:
- "imported_from": the source file's name and sha256;
- "quantization": the source's int8 input and per-operator output ranges (and each layer's weight
  scales and int32 biases), in graph order, which
  `vwwtorch export` gives the re-exported model (`vwwtorch.bridge.passes.source_ranges`) so it
  reproduces the source's quantization instead of calibrating its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from vwwtorch.plumbing.errors import UserError
from vwwtorch.plumbing.hashing import sha256_bytes
from vwwtorch.contract.tflite import WEIGHTED_OPS
from vwwtorch.training.foreign.weights import LayerWeights, load_layers

# What VWW models call their two classes, in their order (TFLM: kNotAPersonIndex 0, kPersonIndex 1).
VWW_CLASSES = ["no_person", "person"]


@dataclass
class Imported:
    architecture: dict               # ARCH_KEYS and the variant
    layers: list[LayerWeights]
    source: str                      # file name, for messages and the record
    sha256: str
    quantization: dict | None = None  # the int8 ranges to keep (see module docstring)


def class_names_for(num_classes: int, names: list[str] | None) -> list[str]:
    if names is not None:
        if len(names) != num_classes:
            raise UserError(f"--class-names gives {len(names)} names for a model with {num_classes} classes")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise UserError(f"--class-names names {', '.join(map(repr, repeated))} more than once; each class "
                            "needs its own name")
        return names
    return list(VWW_CLASSES) if num_classes == 2 else [str(i) for i in range(num_classes)]


def quantization_record(info, source: str, sha256: str) -> dict:
    """The int8 ranges of a parsed `.tflite` (ModelFile), as the checkpoint keeps them."""
    return {"source": source, "sha256": sha256,
            "input": {"scale": info.input.scale, "zero_point": info.input.zero_point},
            "operators": [_operator_record(op) for op in info.operators]}


def _operator_record(op) -> dict:
    entry = {"op": op.op, "scale": op.outputs[0].scale, "zero_point": op.outputs[0].zero_point}
    if op.op in WEIGHTED_OPS and len(op.inputs) > 1 and op.inputs[1] is not None:
        entry["weight_scales"] = list(op.inputs[1].scales)
        bias = op.inputs[2] if len(op.inputs) > 2 else None
        if bias is not None and bias.dtype == "INT32" and bias.values() is not None:
            entry["bias"] = [int(v) for v in bias.values()]
    return entry


def from_tflite(path: Path) -> Imported:
    from vwwtorch.contract.tflite import load_tflite
    from vwwtorch.training.foreign.from_tflite import layer_weights
    from vwwtorch.training.foreign.structure import recognize

    data, info = load_tflite(path)
    structure = recognize(info, str(path))
    digest = sha256_bytes(data)
    architecture = {"width": structure.width, "in_channels": structure.in_channels,
                    "resolution": structure.resolution, "num_classes": structure.num_classes,
                    **structure.variant}
    return Imported(architecture, layer_weights(structure), path.name, digest,
                    quantization_record(info, path.name, digest))


def from_keras(path: Path, input_range: str) -> Imported:
    from vwwtorch.plumbing.hashing import sha256_file
    from vwwtorch.training.foreign.keras_h5 import read_keras_h5

    keras = read_keras_h5(path)
    return Imported({**keras.architecture, "input_range": input_range}, keras.layers, path.name, sha256_file(path))


def input_range_of(tflite: Path) -> str:
    """The input range an int8 model's input quantization encodes ("[0, 1]" or "[-1, 1]")."""
    from vwwtorch.contract.deployment import matching_normalization
    from vwwtorch.contract.tflite import load_tflite

    _, info = load_tflite(tflite)
    found = matching_normalization(info.input.scale or 0.0, info.input.zero_point or 0) if info.input.scale else None
    if found is None:
        raise UserError(f"{tflite}: its input quantization maps no camera byte range; pass --input-range")
    return found.name


def with_ranges_from(imported: Imported, tflite: Path) -> Imported:
    """`imported` (a float model) keeping the int8 ranges of `tflite`, the same model quantized."""
    from vwwtorch.contract.tflite import load_tflite
    from vwwtorch.training.foreign.structure import recognize

    data, info = load_tflite(tflite)
    structure = recognize(info, str(tflite))
    theirs = {"width": structure.width, "in_channels": structure.in_channels,
              "resolution": structure.resolution, "num_classes": structure.num_classes, **structure.variant}
    keys = ("width", "in_channels", "resolution", "num_classes", "activation", "head", "input_range")
    different = [f"{k} {imported.architecture[k]} vs {theirs[k]}" for k in keys
                 if imported.architecture[k] != theirs[k]]
    if different:
        raise UserError(f"--ranges-from {tflite} is not the same model as {imported.source} "
                        f"({'; '.join(different)})")
    imported.quantization = quantization_record(info, tflite.name, sha256_bytes(data))
    return imported


def build_checkpoint(imported: Imported, class_names: list[str] | None = None) -> dict:
    """The checkpoint dictionary (what `torch.save` writes): the training module's layout, its recipe
    hyper-parameters left to their defaults."""
    import pytorch_lightning as pl

    from vwwtorch.models.mobilenet_v1 import MobileNetV1

    arch = imported.architecture
    model = MobileNetV1(**arch)
    load_layers(model, imported.layers)
    # VWWClassifier holds the network as `model`.
    state = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    return {
        "epoch": 0, "global_step": 0, "pytorch-lightning_version": pl.__version__,
        "state_dict": state, "hparams_name": "kwargs",
        "hyper_parameters": {**arch, "class_names": class_names_for(arch["num_classes"], class_names)},
        # The weight-averaging callback's state: the imported weights are both the current and the
        # averaged ones, and nothing has been averaged yet.
        "current_model_state": {k: v.clone() for k, v in state.items()},
        "averaging_state": {"n_averaged": torch.tensor(0, dtype=torch.long)},
        "imported_from": {"file": imported.source, "sha256": imported.sha256},
        **({"quantization": imported.quantization} if imported.quantization else {}),
    }


def write_checkpoint(checkpoint: dict, out: Path, flag: str = "--out") -> Path:
    """Write `checkpoint` to `out` atomically (never half-written)."""
    from vwwtorch.plumbing.outputs import check_file, staged_path

    out = check_file(out, flag=flag)
    with staged_path(out, checked=True) as tmp:
        torch.save(checkpoint, tmp)
    return out
