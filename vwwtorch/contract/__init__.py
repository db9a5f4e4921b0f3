"""The deployment contract: what every stage of vwwtorch agrees on, written once. The lowest layer:
it imports nothing else of vwwtorch.

    deployment     the byte-to-int8 input table from a model's quantization; the eval crop and resize
    tflite         the one .tflite reader (tensors, quantization, operators)
    litert         a .tflite run by LiteRT (optimized or reference kernels)
    tflm           a .tflite run by TensorFlow Lite Micro, and the arena it uses
    detection_log  the line every board logs per inference, and its parser
    images         image files to pixels (EXIF, modes, decompression bombs)
    outputs        files and folders that are never half-written; names, hashing, progress bars
    errors         UserError (exit 2), GateFailed (exit 1), Stopped (130/143); stopping: signals
    console        library chatter kept off stderr; defaults: each option's default read from its source
"""
