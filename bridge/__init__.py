"""torch -> ONNX -> TFLite int8 bridge with parity gates."""
