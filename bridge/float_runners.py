"""Float references for the parity gate: the PyTorch model itself and its ONNX file in ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def torch_probabilities(model, images: np.ndarray, batch_size: int = 100, progress: bool = True) -> np.ndarray:
    """Softmax of the logits of `model` (eval mode) for NHWC float images."""
    import torch
    from vwwtorch.plumbing.progress import progress_bar

    model = model.eval()
    out = []
    with torch.inference_mode():
        for start in progress_bar(range(0, len(images), batch_size), desc="torch", unit="batch", leave=False,
                          disable=not progress):
            batch = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])).permute(0, 3, 1, 2)
            out.append(torch.softmax(model(batch), dim=1).numpy())
    return np.concatenate(out).astype(np.float32)


def onnx_probabilities(onnx_path: str | Path, images: np.ndarray, progress: bool = True) -> np.ndarray:
    """The exported graph (softmax included) in ONNX Runtime on CPU, one image at a time (static batch 1)."""
    import onnxruntime as ort
    from vwwtorch.plumbing.progress import progress_bar

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    nchw = np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)
    rows = [session.run(None, {name: nchw[i:i + 1]})[0][0]
            for i in progress_bar(range(len(nchw)), desc="ONNX Runtime", unit="img", leave=False, disable=not progress)]
    return np.stack(rows).astype(np.float32)
