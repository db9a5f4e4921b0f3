"""PyTorch classifier -> ONNX: static 1xCxHxW input, softmax as the last op, checked.

torch's dynamo exporter is used (not the TorchScript one): it traces the global average pool with
the feature map's static size, and its optimizer folds BatchNorm into the convs and the explicit
right/bottom ZeroPad2d of the stride-2 layers into the convs' own (asymmetric) pads, so no Pad node
reaches onnx2tf, which then maps those convs to TF SAME padding (no PAD op in TFLite).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch
from torch import nn

INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"
OPSET = 18


class WithSoftmax(nn.Module):
    """Logits model -> probabilities, so the deployed graph ends in SOFTMAX like the reference."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=1)


def export_onnx(model: nn.Module, path: str | Path, in_channels: int, resolution: int,
                verbose: bool = False) -> Path:
    """Write `model` (eval mode, its current weights) with a softmax head to `path` and check it."""
    import onnx

    path = Path(path)
    wrapped = WithSoftmax(model).eval()
    example = torch.zeros(1, in_channels, resolution, resolution)
    quiet = contextlib.nullcontext() if verbose else _silenced()
    with quiet, torch.no_grad():
        program = torch.onnx.export(wrapped, (example,), dynamo=True, opset_version=OPSET,
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    optimize=True, verbose=verbose)
    model_proto = program.model_proto
    # The exporter records where each node came from (file paths, line numbers); drop that so the
    # file, and everything converted from it, only depends on the weights.
    _strip_metadata(model_proto)
    onnx.save_model(model_proto, str(path))
    check_onnx(path, in_channels, resolution)
    return path


def _strip_metadata(model_proto) -> None:
    del model_proto.metadata_props[:]
    for node in model_proto.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    for value in list(model_proto.graph.value_info):
        del value.metadata_props[:]
    model_proto.doc_string = ""
    model_proto.producer_version = ""


def check_onnx(path: Path, in_channels: int, resolution: int) -> None:
    """onnx.checker plus what the rest of the bridge relies on: static shape, softmax last."""
    import onnx

    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    graph = model.graph
    dims = [d.dim_value if d.HasField("dim_value") else None for d in graph.input[0].type.tensor_type.shape.dim]
    if dims != [1, in_channels, resolution, resolution]:
        raise RuntimeError(f"ONNX input shape {dims} is not static [1, {in_channels}, {resolution}, {resolution}]")
    if not graph.node or graph.node[-1].op_type != "Softmax" or graph.node[-1].output[0] != graph.output[0].name:
        raise RuntimeError("ONNX graph does not end with Softmax")
    pads = [n.name for n in graph.node if n.op_type == "Pad"]
    if pads:
        raise RuntimeError(f"ONNX graph still has Pad nodes ({', '.join(pads[:3])}); "
                           "they would become PAD ops in TFLite")


@contextlib.contextmanager
def _silenced():
    """The exporter narrates every step on stdout and warns about opset conversions."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield
