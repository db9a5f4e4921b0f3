"""Trained models from elsewhere as vwwtorch checkpoints: `vwwtorch import` and `vwwtorch pretrained`.

    structure     recognize a MobileNetV1 (slim's or MLPerf's) in an int8 .tflite, or refuse in one line
    from_tflite   its int8 weights and biases, dequantized, in PyTorch layouts
    keras_h5      a Keras .h5 MobileNetV1 (MLPerf's float model): layers, weights, BatchNorm statistics
    weights       those layers into vwwtorch's MobileNetV1 (identity BatchNorm where folded)
    importer      the checkpoint, in the format training writes, with the source's int8 ranges
    pretrained    the registry of pinned real person detectors (URL, sha256, cache, --from FILE)
    cli           `vwwtorch import` and `vwwtorch pretrained list|get`
"""
