"""Transfer learning: start a model from another checkpoint's backbone (`--model.init_from`).

The backbone is every layer of MobileNetV1 except the classifier: the stem, the 13 separable blocks
and their BatchNorm statistics. The classifier is left as initialised, sized for the new dataset's
classes, so a person detector can become, say, a 3-class flower classifier.

`pretrained:NAME` names a registered real model (`vwwtorch pretrained list`), made into a cached
checkpoint on first use. The checkpoint is read with `torch.load(weights_only=True)` (tensors and plain data only). Its
`state_dict` holds the EMA weights, the ones it was evaluated with. Width and input channels decide
the backbone's tensor shapes and must match; the resolution only sets padding positions, which are
the same for every multiple of 32, so a 96x96 backbone can start a 128x128 model.
"""

from __future__ import annotations

import os

from torch import nn

from vwwtorch.contract.errors import UserError
from vwwtorch.training.checkpoint_file import check_architecture, read_checkpoint

BACKBONE_PREFIX = "model.features."  # VWWClassifier.model is the MobileNetV1


def backbone_state(checkpoint: dict, source: str) -> dict:
    """The backbone tensors of a vwwtorch checkpoint, named as in `MobileNetV1.features`."""
    state = {k[len(BACKBONE_PREFIX):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(BACKBONE_PREFIX)}
    if not state:
        raise UserError(f"{source} holds no MobileNetV1 backbone (no {BACKBONE_PREFIX}* weights)")
    return state


def load_backbone(model: nn.Module, path: str | os.PathLike) -> int:
    """Copy the backbone of checkpoint `path` into `model` (a MobileNetV1); returns the tensors copied."""
    from vwwtorch.training.foreign.pretrained import resolve

    source = f"--model.init_from {path}"
    checkpoint = read_checkpoint(resolve(str(path)))
    # Width, input channels and the variant's layers decide the backbone's tensors, and the input
    # range what they were trained on; resolution, classes and the head may differ.
    shared = ("width", "in_channels", "activation", "conv_bias", "input_range")
    check_architecture(checkpoint, {key: model.arch()[key] for key in shared}, source,
                       hint="set --model." + "/--model.".join(shared) + " to the checkpoint's")
    state = backbone_state(checkpoint, source)
    own = model.features.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        first = (missing or unexpected or wrong)[0]
        raise UserError(f"{source} does not fit this model's backbone ({len(missing)} missing, "
                        f"{len(unexpected)} unexpected, {len(wrong)} mis-shaped tensors, e.g. {first})")
    model.features.load_state_dict(state)
    return len(state)
