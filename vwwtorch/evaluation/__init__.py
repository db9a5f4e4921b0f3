"""Evaluation: `vwwtorch predict` (label and score per image file) and `vwwtorch report` (how a model
fails, before it ships), for a checkpoint or a deployed int8 `.tflite`, on the same pixels."""
