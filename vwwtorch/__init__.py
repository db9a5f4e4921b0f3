"""vwwtorch: PyTorch-first Visual Wake Words training and TFLM deployment."""
__version__ = "0.1.0"
