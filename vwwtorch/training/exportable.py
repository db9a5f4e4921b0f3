"""What the export needs of a trained classifier: the network and its input and output contract.

The bridge takes this record, never the LightningModule: the recipe (optimizer, schedule, loss,
data) stays in training, and what a checkpoint hands to the export is spelled out here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from torch import nn

from vwwtorch.models.int8_simulation import Int8Simulation


@dataclass(frozen=True)
class ExportableModel:
    model: nn.Module                       # the MobileNetV1, eval mode, EMA weights
    width: float
    in_channels: int
    resolution: int
    num_classes: int
    class_names: list[str]
    input_range: str                       # what the float model scales pixel bytes to
    head: str                              # "conv" or "dense": decides the reference op set
    # The quantization the export keeps, if any: a QAT checkpoint's simulated int8 network, or an
    # imported checkpoint's source int8 ranges (`vwwtorch.training.foreign.importer`).
    int8: Optional[Int8Simulation] = None
    source_quantization: Optional[dict] = None
