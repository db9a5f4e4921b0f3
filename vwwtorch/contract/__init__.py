"""The lowest layer: what every stage of vwwtorch agrees on, written once. It imports nothing else
of vwwtorch. Two kinds of module live here.

The deployment contract, what a model means from training to the device:

    deployment       the byte-to-int8 input table from a model's quantization; the eval crop and resize
    int8_arithmetic  TFLite's int8 arithmetic as TFLM's reference kernels compute it
    tflite           the one .tflite reader (tensors, quantization, operators)
    litert           a .tflite run by LiteRT (optimized or reference kernels)
    tflm             a .tflite run by TensorFlow Lite Micro, and the arena it uses
    detection_log    the line every board logs per inference, and its parser
    images           image files to pixels (EXIF, modes, decompression bombs)

The plumbing every command shares:

    errors           UserError (exit 2), GateFailed (exit 1), Stopped (130/143)
    stopping         SIGTERM and Ctrl-C as exceptions where the program is
    outputs          files and folders that are never half-written; records: the JSON a stage leaves
    cache, download  where downloads are kept; one pinned, sha256-checked file
    hashing, names   sha256 of files and bytes; file names as printable text
    text_files       small text files a user hands a command (labels.txt)
    progress         progress bars, where a stop signal lands
    console          library chatter kept off stderr; native_output: what native code prints
    isolation        native runtimes in a child process; children: child programs that end with us
    defaults         each option's default read from where the work is defined
"""
