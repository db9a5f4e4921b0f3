"""The deployment contract: what a model means from training to the device, written once. It imports
only vwwtorch.plumbing.

    deployment       the byte-to-int8 input table from a model's quantization; the eval crop and resize
    int8_arithmetic  TFLite's int8 arithmetic as TFLM's reference kernels compute it
    tflite           the one .tflite reader (tensors, quantization, operators)
    litert           a .tflite run by LiteRT (optimized or reference kernels)
    tflm             a .tflite run by TensorFlow Lite Micro, and the arena it uses
    detection_log    the line every board logs per inference, and its parser
    images           image files to pixels (EXIF, modes, decompression bombs)
"""
