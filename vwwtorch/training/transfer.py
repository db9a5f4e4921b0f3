"""Transfer learning: start a model from another checkpoint (`--model.init_from`).

The backbone (every layer of MobileNetV1 but the classifier: the stem, the 13 separable blocks and
their BatchNorm statistics) always comes from the checkpoint. The classifier comes too when the task
is the same: the checkpoint's class names, in order, are this dataset's and the head is of the same
kind, so a person detector fine-tuned on new person photos starts from the detector it is, not from
a random head (`--model.init_head auto`, the default). `new` starts a fresh classifier anyway;
`keep` demands the checkpoint's and refuses a dataset whose classes differ.

`pretrained:NAME` names a registered real model (`vwwtorch pretrained list`), made into a cached
checkpoint on first use. The checkpoint is read through the one door for checkpoints (tensors and
plain data only). Its `state_dict` holds the EMA weights, the ones it was evaluated with. Width, input
channels and the variant decide the backbone's tensors and must match; the resolution only sets
padding positions, which are the same for every multiple of 32, so a 96x96 backbone can start a
128x128 model.

For quantization-aware training the checkpoint also gives the int8 ranges to start from: an imported
model's source quantization (the ranges it was deployed with), or a QAT checkpoint's own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from vwwtorch.plumbing.errors import UserError
from vwwtorch.contract.tflite import WEIGHTED_OPS
from vwwtorch.training.checkpoint_file import check_architecture, read_checkpoint

BACKBONE_PREFIX = "model.features."    # VWWClassifier.model is the MobileNetV1
HEAD_PREFIX = "model.classifier."
RANGES_PREFIX = "int8."                # VWWClassifier.int8, the QAT simulation's ranges
INIT_HEAD = ("auto", "keep", "new")


@dataclass
class Transferred:
    tensors: int              # backbone tensors copied
    head: bool                # whether the classifier was copied too
    why_not_head: str         # when it was not: the reason, for the log line
    checkpoint: dict          # what was read, for the int8 ranges


def _prefixed(checkpoint: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}


def backbone_state(checkpoint: dict, source: str) -> dict:
    """The backbone tensors of a vwwtorch checkpoint, named as in `MobileNetV1.features`."""
    state = _prefixed(checkpoint, BACKBONE_PREFIX)
    if not state:
        raise UserError(f"{source} holds no MobileNetV1 backbone (no {BACKBONE_PREFIX}* weights)")
    return state


def _copy(module: nn.Module, state: dict, source: str, what: str) -> int:
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        first = (missing or unexpected or wrong)[0]
        raise UserError(f"{source} does not fit this model's {what} ({len(missing)} missing, "
                        f"{len(unexpected)} unexpected, {len(wrong)} mis-shaped tensors, e.g. {first})")
    module.load_state_dict(state)
    return len(state)


def _head_mismatch(checkpoint: dict, model: nn.Module, class_names: list[str]) -> str:
    """Why the checkpoint's classifier cannot serve this model ('' when it can)."""
    hparams = checkpoint["hyper_parameters"]
    theirs = hparams.get("class_names") or [str(i) for i in range(hparams["num_classes"])]
    if list(theirs) != list(class_names):
        return f"its classes {', '.join(theirs)} are not this dataset's {', '.join(class_names)}"
    if hparams.get("head", "conv") != model.head:
        return f"its head is {hparams.get('head', 'conv')}, this model's {model.head}"
    return ""


def load_initial_weights(model: nn.Module, path: str | os.PathLike, class_names: list[str],
                         init_head: str = "auto") -> Transferred:
    """Copy the backbone of checkpoint `path` into `model` (a MobileNetV1), and its classifier when
    `init_head` allows and the task is the same."""
    from vwwtorch.training.foreign.pretrained import resolve

    source = f"--model.init_from {path}"
    checkpoint = read_checkpoint(resolve(str(path)))
    # Width, input channels and the variant's layers decide the backbone's tensors, and the input
    # range what they were trained on; resolution, classes and the head may differ.
    shared = ("width", "in_channels", "activation", "conv_bias", "input_range")
    check_architecture(checkpoint, {key: model.arch()[key] for key in shared}, source,
                       hint="set --model." + "/--model.".join(shared) + " to the checkpoint's")
    tensors = _copy(model.features, backbone_state(checkpoint, source), source, "backbone")
    why_not = "--model.init_head new" if init_head == "new" else _head_mismatch(checkpoint, model, class_names)
    if init_head == "keep" and why_not:
        raise UserError(f"{source}: --model.init_head keep needs the checkpoint's classifier, but {why_not}; "
                        "use --model.init_head new (or auto) to train a new one")
    if not why_not:
        _copy(model.classifier, _prefixed(checkpoint, HEAD_PREFIX), source, "classifier")
    return Transferred(tensors, not why_not, why_not, checkpoint)


@torch.no_grad()
def start_ranges(simulation, checkpoint: dict, head_kept: bool) -> str:
    """Give the QAT simulation the int8 ranges `checkpoint` knows (its own QAT ranges, or its imported
    source's quantization); returns what was used, for the log ('' when nothing)."""
    own = _prefixed(checkpoint, RANGES_PREFIX)
    layers = len(simulation.ranges) - 1
    if own.get("ranges") is not None and tuple(own["ranges"].shape) == tuple(simulation.ranges.shape):
        simulation.ranges.copy_(own["ranges"])
        simulation.observed.copy_(own["observed"])
        source = "the checkpoint's QAT ranges"
    elif checkpoint.get("quantization"):
        record = checkpoint["quantization"]
        weighted = [entry for entry in record["operators"] if entry["op"] in WEIGHTED_OPS]
        if len(weighted) != layers + 1:
            return ""
        for index, entry in enumerate(weighted):
            simulation.set_output_quantization(index, entry["scale"], entry["zero_point"])
        source = f"{record['source']}'s int8 ranges"
    else:
        return ""
    if not head_kept:  # a new classifier's logits have a range of their own, observed from its first batch
        simulation.observed[layers] = False
    return source
