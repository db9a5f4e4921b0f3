"""Parameter count, multiply-accumulates and peak activation memory of a model, by tracing it once.

MACs count conv and linear layers only (what dominates MobileNet and what papers report).
Peak activation memory is the largest (input + output) of any single layer at int8, the quantity
that bounds the TFLM arena for a sequential network like MobileNetV1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelStats:
    params: int
    macs: int
    peak_activation_bytes: int  # int8 elements, one sample


def model_stats(model: nn.Module, input_shape: tuple[int, int, int]) -> ModelStats:
    macs = 0
    peak = 0

    def count(module: nn.Module, inputs, output) -> None:
        nonlocal macs, peak
        x = inputs[0]
        if isinstance(module, nn.Conv2d):
            k_h, k_w = module.kernel_size
            macs += output.numel() // output.shape[0] * (module.in_channels // module.groups) * k_h * k_w
        elif isinstance(module, nn.Linear):
            macs += module.in_features * module.out_features
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            peak = max(peak, (x.numel() + output.numel()) // x.shape[0])

    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return ModelStats(params=sum(p.numel() for p in model.parameters()), macs=macs, peak_activation_bytes=peak)
